//! Hostile names, tables and coordinates against a real PostgreSQL: every record ends applied
//! intact (values in the column the name mapping says) or dead-lettered with its bytes and a
//! reason — never a value in the wrong column or nowhere, never a stopped pipeline, never SQL
//! written by a record.

use std::sync::Arc;

use serde_json::{json, Value as J};
use tributary_apply::{ApplyConfig, PgSink};
use tributary_codec::decode::Decoder;
use tributary_model::{
    Batch, ChangeEvent, Column, ColumnKind, Op, RawRecord, SourcePosition, TableId, TableSchema,
    Value,
};
use tributary_testkit::PgDb;

mod common;

/// A schemaless Debezium envelope record.
fn record(
    offset: i64,
    db: &str,
    table: &str,
    op: &str,
    key: Option<J>,
    before: J,
    after: J,
) -> RawRecord {
    let value = json!({
        "before": before,
        "after": after,
        "source": {
            "version": "3.6.3.Final", "connector": "mysql", "name": "srv", "ts_ms": 1758160342000i64,
            "snapshot": "false", "db": db, "table": table, "server_id": 1, "gtid": null,
            "file": "bin.000001", "pos": 1000 + offset, "row": 0
        },
        "op": op, "ts_ms": 1758160342000i64
    });
    RawRecord {
        topic: format!("srv.{db}.{table}"),
        partition: 0,
        offset,
        key: key.map(|k| serde_json::to_vec(&k).unwrap()),
        value: Some(serde_json::to_vec(&value).unwrap()),
    }
}

fn batch(records: &[RawRecord]) -> Batch {
    common::kafka_batch(&mut Decoder::new(), "hostile", records)
}

/// The warehouse column that holds source column `source` of `db.table`.
fn target_of(db: &PgDb, table: &str, source: &str) -> String {
    let out = db
        .query(&format!(
            "SELECT target_column FROM tributary.columns WHERE source = '{table}' AND source_column = '\\x{}'::bytea",
            hex(source.as_bytes())
        ))
        .unwrap();
    let t = out.trim();
    if t.is_empty() {
        source.to_string()
    } else {
        t.to_string()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn qi(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// 64-byte names, two names equal in their first 63 bytes, and a 60-byte table name: every
/// value lands in its own column, and the mapping is in `tributary.columns`.
#[tokio::test]
async fn long_names_keep_every_value() {
    let db = PgDb::new("hostile_long").unwrap();
    let mut sink = PgSink::connect(&db.url, ApplyConfig::default())
        .await
        .unwrap();
    let n64 = "c".repeat(64);
    let n1 = format!("{}1", "d".repeat(63));
    let n2 = format!("{}2", "d".repeat(63));
    let long_table = format!("t{}", "x".repeat(59));
    let after = json!({"id": 1, n64.clone(): "v64", n1.clone(): "v1", n2.clone(): "v2"});
    let recs = [
        record(
            0,
            "shop",
            "items",
            "c",
            Some(json!({"id": 1})),
            J::Null,
            after.clone(),
        ),
        record(
            1,
            "shop",
            &long_table,
            "c",
            Some(json!({"id": 1})),
            J::Null,
            after,
        ),
    ];
    let s = sink.apply(&batch(&recs)).await.unwrap();
    assert_eq!((s.applied, s.dead_lettered), (2, 0));

    for (name, want) in [(&n64, "v64"), (&n1, "v1"), (&n2, "v2")] {
        let col = target_of(&db, "shop.items", name);
        assert!(col.len() <= 63, "{col}");
        for t in ["items_current", "items_history"] {
            let v = db
                .query(&format!("SELECT {} FROM shop.{t}", qi(&col)))
                .unwrap();
            assert_eq!(v.trim(), want, "{name} in {t} ({col})");
        }
    }
    // The long table: found through tributary.tables, holding its row.
    let row = db
        .query(&format!(
            "SELECT target_schema, current_table, history_table FROM tributary.tables WHERE source = 'shop.{long_table}'"
        ))
        .unwrap();
    let parts: Vec<&str> = row.trim().split('\t').collect();
    assert_eq!(parts.len(), 3, "{row}");
    assert!(parts[1].len() <= 63 && parts[2].len() <= 63 && parts[1] != parts[2]);
    let col = target_of(&db, &format!("shop.{long_table}"), &n1);
    let v = db
        .query(&format!("SELECT {} FROM shop.{}", qi(&col), qi(parts[1])))
        .unwrap();
    assert_eq!(v.trim(), "v1");

    // A second batch with the same names (a new sink: mapping read back from the catalog).
    let mut sink = PgSink::connect(&db.url, ApplyConfig::default())
        .await
        .unwrap();
    let recs = [record(
        2,
        "shop",
        "items",
        "u",
        Some(json!({"id": 1})),
        J::Null,
        json!({"id": 1, n64.clone(): "w64", n1.clone(): "w1", n2.clone(): "w2"}),
    )];
    let s = sink.apply(&batch(&recs)).await.unwrap();
    assert_eq!((s.applied, s.dead_lettered), (1, 0));
    let col = target_of(&db, "shop.items", &n2);
    let v = db
        .query(&format!("SELECT {} FROM shop.items_current", qi(&col)))
        .unwrap();
    assert_eq!(v.trim(), "w2");
}

/// Source columns named like tributary's metadata columns keep their values, and the
/// metadata columns keep theirs.
#[tokio::test]
async fn columns_named_like_metadata_keep_their_values() {
    let db = PgDb::new("hostile_meta").unwrap();
    let mut sink = PgSink::connect(&db.url, ApplyConfig::default())
        .await
        .unwrap();
    let names = [
        "change_type",
        "_op",
        "_event_id",
        "_updated_at",
        "valid_to",
        "valid_from",
        "_kafka_offset",
        "_source_pos",
        "_applied_at",
        "_source_file",
    ];
    let image = |v: &str| {
        let mut m = serde_json::Map::new();
        m.insert("id".into(), json!(7));
        for n in names {
            m.insert(n.into(), json!(format!("{v}-{n}")));
        }
        J::Object(m)
    };
    let recs = [
        record(
            0,
            "shop",
            "meta",
            "c",
            Some(json!({"id": 7})),
            J::Null,
            image("a"),
        ),
        record(
            1,
            "shop",
            "meta",
            "u",
            Some(json!({"id": 7})),
            image("a"),
            image("b"),
        ),
    ];
    let s = sink.apply(&batch(&recs)).await.unwrap();
    assert_eq!((s.applied, s.dead_lettered), (2, 0));
    for n in names {
        let col = target_of(&db, "shop.meta", n);
        assert_ne!(col, n, "{n} must be mapped");
        let v = db
            .query(&format!("SELECT {} FROM shop.meta_current", qi(&col)))
            .unwrap();
        assert_eq!(v.trim(), format!("b-{n}"));
        let v = db
            .query(&format!(
                "SELECT string_agg({}, ',' ORDER BY _source_pos) FROM shop.meta_history",
                qi(&col)
            ))
            .unwrap();
        assert_eq!(v.trim(), format!("a-{n},b-{n}"));
    }
    // The metadata itself is intact.
    let v = db
        .query("SELECT _op, _source_pos FROM shop.meta_current")
        .unwrap();
    assert_eq!(v.trim(), "u\t4294968297"); // file 1 << 32 | pos 1001
    let v = db
        .query("SELECT string_agg(change_type || ':' || (valid_to IS NULL)::text, ',' ORDER BY _source_pos) FROM shop.meta_history")
        .unwrap();
    assert_eq!(v.trim(), "INSERT:false,UPDATE:true");
}

/// Empty names, a NUL byte, a dollar-quote tag and a double quote in names of a keyless
/// table (whose apply runs a PL/pgSQL block): values kept through insert, update, delete.
#[tokio::test]
async fn unrepresentable_names_in_a_keyless_table() {
    let db = PgDb::new("hostile_keyless").unwrap();
    let mut sink = PgSink::connect(&db.url, ApplyConfig::default())
        .await
        .unwrap();
    let names = ["", "a\u{0}b", "x$tributary$y", "q\"uote", "$tributary_0$"];
    let image = |v: i64| {
        let mut m = serde_json::Map::new();
        for (i, n) in names.iter().enumerate() {
            m.insert(n.to_string(), json!(format!("{v}:{i}")));
        }
        J::Object(m)
    };
    let recs = [
        record(0, "shop", "nokey", "c", None, J::Null, image(1)),
        record(1, "shop", "nokey", "c", None, J::Null, image(2)),
        record(2, "shop", "nokey", "u", None, image(1), image(3)),
        record(3, "shop", "nokey", "d", None, image(2), J::Null),
    ];
    let s = sink.apply(&batch(&recs)).await.unwrap();
    assert_eq!((s.applied, s.dead_lettered), (4, 0));
    for (i, n) in names.iter().enumerate() {
        let col = target_of(&db, "shop.nokey", n);
        assert!(!col.is_empty() && !col.contains('\0'));
        let v = db
            .query(&format!(
                "SELECT string_agg({}, ',') FROM shop.nokey_current",
                qi(&col)
            ))
            .unwrap();
        assert_eq!(v.trim(), format!("3:{i}"), "column {n:?} as {col:?}");
    }
    let v = db.query("SELECT count(*) FROM shop.nokey_history").unwrap();
    assert_eq!(v.trim(), "4");
}

/// With `standard_conforming_strings = off` on the warehouse, backslashes and quotes in a
/// record's database, table, column names and DEFAULT cannot end a literal: no statement
/// but tributary's runs, and the names and values arrive exactly.
#[tokio::test]
async fn backslashes_cannot_inject_sql() {
    let db = PgDb::new("hostile_sql").unwrap();
    db.query(&format!(
        "ALTER DATABASE {} SET standard_conforming_strings = off; CREATE TABLE public.victim (x int);",
        db.name
    ))
    .unwrap();
    let mut sink = PgSink::connect(&db.url, ApplyConfig::default())
        .await
        .unwrap();
    let evil_db = "x\\'; DROP TABLE public.victim; --";
    let evil_col = "c\\'; DROP TABLE public.victim; --";
    let dflt = "d\\'; DROP TABLE public.victim; --";
    // A Connect schema with a string DEFAULT (copied into the warehouse DDL).
    let value = json!({
        "schema": {"type": "struct", "optional": false, "name": "srv.x.t.Envelope", "fields": [
            {"field": "before", "type": "struct", "optional": true, "name": "srv.x.t.Value", "fields": [
                {"field": "id", "type": "int32", "optional": false},
                {"field": evil_col, "type": "string", "optional": true, "default": dflt}]},
            {"field": "after", "type": "struct", "optional": true, "name": "srv.x.t.Value", "fields": [
                {"field": "id", "type": "int32", "optional": false},
                {"field": evil_col, "type": "string", "optional": true, "default": dflt}]},
            {"field": "source", "type": "struct", "optional": false, "fields": [
                {"field": "db", "type": "string", "optional": false},
                {"field": "table", "type": "string", "optional": true},
                {"field": "file", "type": "string", "optional": false},
                {"field": "pos", "type": "int64", "optional": false},
                {"field": "row", "type": "int32", "optional": false},
                {"field": "ts_ms", "type": "int64", "optional": false}]},
            {"field": "op", "type": "string", "optional": false},
            {"field": "ts_ms", "type": "int64", "optional": true}]},
        "payload": {
            "before": null,
            "after": {"id": 1, evil_col: "v\\'; DROP TABLE public.victim; --"},
            "source": {"db": evil_db, "table": "t\\'", "file": "bin.000001", "pos": 10, "row": 0, "ts_ms": 1},
            "op": "c", "ts_ms": 1}
    });
    let rec = RawRecord {
        topic: "srv.x.t".into(),
        partition: 0,
        offset: 0,
        key: Some(br#"{"id":1}"#.to_vec()),
        value: Some(serde_json::to_vec(&value).unwrap()),
    };
    let s = sink.apply(&batch(&[rec])).await.unwrap();
    assert_eq!((s.applied, s.dead_lettered), (1, 0));
    assert_eq!(
        db.query("SELECT count(*) FROM public.victim")
            .unwrap()
            .trim(),
        "0"
    );
    let v = db
        .query(&format!(
            "SELECT {} FROM {}.{}",
            qi(evil_col),
            qi(evil_db),
            qi("t\\'_current")
        ))
        .unwrap();
    assert_eq!(v.trim(), "v\\'; DROP TABLE public.victim; --");
    let d = db
        .query(&format!(
            "SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d JOIN pg_attribute a
             ON a.attrelid = d.adrelid AND a.attnum = d.adnum WHERE a.attname = $q${evil_col}$q$"
        ))
        .unwrap();
    assert!(
        d.contains("DROP TABLE"),
        "the DEFAULT is the text itself: {d}"
    );
}

/// A table whose warehouse tables cannot be created (more columns than PostgreSQL allows)
/// does not stop the pipeline: its records are dead-lettered with SQLSTATE, statement and
/// their bytes; the other table of the same batch commits with the checkpoint.
#[tokio::test]
async fn a_table_that_cannot_be_created_is_dead_lettered_alone() {
    let db = PgDb::new("hostile_ddl").unwrap();
    let mut sink = PgSink::connect(&db.url, ApplyConfig::default())
        .await
        .unwrap();
    sink.dead_letter_encoder = Some(Arc::new(|_ev: &ChangeEvent| {
        (Some(b"k".to_vec()), Some(b"encoded".to_vec()))
    }));
    let mut wide = serde_json::Map::new();
    wide.insert("id".into(), json!(1));
    for i in 0..1700 {
        wide.insert(format!("c{i}"), json!(i));
    }
    let recs = [
        record(
            0,
            "shop",
            "wide",
            "c",
            Some(json!({"id": 1})),
            J::Null,
            J::Object(wide),
        ),
        record(
            1,
            "shop",
            "fine",
            "c",
            Some(json!({"id": 1})),
            J::Null,
            json!({"id": 1, "v": "ok"}),
        ),
    ];
    let s = sink.apply(&batch(&recs)).await.unwrap();
    assert_eq!((s.applied, s.dead_lettered), (1, 1));
    assert_eq!(
        db.query("SELECT v FROM shop.fine_current").unwrap().trim(),
        "ok"
    );
    let dl = db
        .query("SELECT topic, kafka_offset, stage, reason, record_value IS NOT NULL FROM tributary.dead_letters")
        .unwrap();
    assert!(dl.starts_with("srv.shop.wide\t0\tddl\t"), "{dl}");
    assert!(dl.contains("54011"), "SQLSTATE in the reason: {dl}");
    assert!(dl.contains("CREATE TABLE"), "statement in the reason: {dl}");
    assert!(dl.trim_end().ends_with("\tt"), "bytes kept: {dl}");
    // With on_error = "stop" the same failure stops, typed: its SQLSTATE is kept.
    let stop = ApplyConfig {
        on_error: tributary_apply::OnError::Stop,
        ..Default::default()
    };
    let mut stopping = PgSink::connect(&db.url, stop).await.unwrap();
    let err = stopping.apply(&batch(&recs[..1])).await.unwrap_err();
    assert!(!err.is_transient());
    assert_eq!(err.sqlstate(), Some("54011"), "{err}");
    let cp = db
        .query("SELECT string_agg(topic || ':' || next_offset, ',' ORDER BY topic) FROM tributary.checkpoints WHERE pipeline = 'hostile'")
        .unwrap();
    assert_eq!(
        cp.trim(),
        "srv.shop.fine:2,srv.shop.wide:1",
        "both offsets committed"
    );
}

fn event(schema: &Arc<TableSchema>, pos: u64, row: u32, ts_ms: i64, id: i64) -> ChangeEvent {
    ChangeEvent {
        schema: schema.clone(),
        op: Op::Insert,
        before: None,
        after: Some(vec![Value::Int(id), Value::String(format!("v{id}"))]),
        source: SourcePosition {
            file: "bin.000001".into(),
            pos,
            row,
            ts_ms,
            name: "srv".into(),
            ..Default::default()
        },
        ts_ms: 0,
        transaction: None,
        kafka: None,
    }
}

fn schema() -> Arc<TableSchema> {
    let mut id = Column::new(
        "id",
        ColumnKind::Int {
            bits: 64,
            unsigned: false,
        },
    );
    id.nullable = false;
    Arc::new(TableSchema {
        id: TableId::new("shop", "versions"),
        columns: vec![id, Column::new("v", ColumnKind::String { max_len: None })],
        key: vec![0],
    })
}

/// More than 256 schema versions of one table in one batch (every DDL makes one in direct
/// mode): applied, no panic.
#[tokio::test]
async fn hundreds_of_schema_versions_in_one_batch() {
    let db = PgDb::new("hostile_versions").unwrap();
    let mut sink = PgSink::connect(&db.url, ApplyConfig::default())
        .await
        .unwrap();
    let events: Vec<ChangeEvent> = (0..600)
        .map(|i| event(&schema(), 100 + i as u64, 0, 1_700_000_000_000, i))
        .collect();
    let b = Batch {
        pipeline: "hostile".into(),
        events,
        ..Default::default()
    };
    let s = sink.apply(&b).await.unwrap();
    assert_eq!((s.applied, s.dead_lettered), (600, 0));
    assert_eq!(
        db.query("SELECT count(*) FROM shop.versions_current")
            .unwrap()
            .trim(),
        "600"
    );
}

/// Coordinates that do not fit their columns (a commit time past year 292277, a position
/// over i64::MAX) are dead-lettered with a reason, not wrapped; the rest applies.
#[tokio::test]
async fn coordinates_out_of_range_are_dead_lettered() {
    let db = PgDb::new("hostile_coords").unwrap();
    let mut sink = PgSink::connect(&db.url, ApplyConfig::default())
        .await
        .unwrap();
    let s = schema();
    let b = Batch {
        pipeline: "hostile".into(),
        events: vec![
            event(&s, 100, 0, i64::MAX, 1),
            event(&s, u64::MAX, 0, 1, 2),
            event(&s, 101, u32::MAX, 1, 3),
            event(&s, 102, 0, 1, 4),
        ],
        ..Default::default()
    };
    let st = sink.apply(&b).await.unwrap();
    assert_eq!((st.applied, st.dead_lettered), (1, 3));
    assert_eq!(
        db.query("SELECT id FROM shop.versions_current")
            .unwrap()
            .trim(),
        "4"
    );
    let reasons = db
        .query("SELECT string_agg(reason, ' | ' ORDER BY reason) FROM tributary.dead_letters")
        .unwrap();
    for want in ["ts_ms", "source pos", "source row"] {
        assert!(reasons.contains(want), "{want} in {reasons}");
    }
}

/// Direct-mode dead letters (no Kafka coordinates) never share coordinates: a snapshot row
/// 1000 and the next position's first row once did.
#[test]
fn direct_mode_dead_letter_coordinates_are_distinct() {
    let s = schema();
    let mut seen = std::collections::HashSet::new();
    for pos in 100..103u64 {
        for row in [0u32, 1, 999, 1000, 1001, 2000] {
            let d = tributary_apply::dead_letter_for(&event(&s, pos, row, 1, 1), "apply", "x");
            assert!(d.offset >= 0);
            assert!(
                seen.insert((d.topic, d.partition, d.offset)),
                "pos {pos} row {row}"
            );
        }
    }
}

/// PostgreSQL's system column names and the keyless loop's variable name (and `r`, its old
/// name) as source columns of a keyless table: mapped or harmless; updates and deletes apply.
#[tokio::test]
async fn system_column_names_in_a_keyless_table() {
    let db = PgDb::new("hostile_sysnames").unwrap();
    let mut sink = PgSink::connect(&db.url, ApplyConfig::default())
        .await
        .unwrap();
    let names = ["xmin", "xmax", "ctid", "tableoid", "r", "tributary_r"];
    let image = |v: i64| {
        let mut m = serde_json::Map::new();
        for n in names {
            m.insert(n.to_string(), json!(format!("{v}-{n}")));
        }
        J::Object(m)
    };
    let recs = [
        record(0, "shop", "gis", "c", None, J::Null, image(1)),
        record(1, "shop", "gis", "c", None, J::Null, image(2)),
        record(2, "shop", "gis", "u", None, image(1), image(3)),
        record(3, "shop", "gis", "d", None, image(2), J::Null),
    ];
    let s = sink.apply(&batch(&recs)).await.unwrap();
    assert_eq!((s.applied, s.dead_lettered), (4, 0));
    for n in names {
        let col = target_of(&db, "shop.gis", n);
        let v = db
            .query(&format!(
                "SELECT string_agg({}, ',') FROM shop.gis_current",
                qi(&col)
            ))
            .unwrap();
        assert_eq!(v.trim(), format!("3-{n}"), "{n} as {col}");
    }
}

/// A configured name PostgreSQL would truncate is refused at start, not silently NULL.
#[tokio::test]
async fn configured_names_over_63_bytes_are_refused() {
    let db = PgDb::new("hostile_cfgnames").unwrap();
    let mut cfg = ApplyConfig::default();
    let mut m = tributary_apply::config::TableMapping::default();
    m.rename.insert("v".into(), "r".repeat(70));
    cfg.tables.insert("d3.t3".into(), m);
    let err = PgSink::connect(&db.url, cfg).await.err().expect("refused");
    assert!(err.to_string().contains("at most 63 bytes"), "{err}");
}

/// A changed source primary key, a warehouse column whose type tributary cannot write, and
/// two source tables whose names map to the same warehouse tables: each refused loudly
/// (`ddl` dead letters), none merges or drops rows.
#[tokio::test]
async fn key_changes_foreign_types_and_shared_targets_are_refused() {
    let db = PgDb::new("hostile_refuse").unwrap();
    let mut sink = PgSink::connect(&db.url, ApplyConfig::default())
        .await
        .unwrap();
    let s = sink
        .apply(&batch(&[
            record(
                0,
                "k",
                "p",
                "c",
                Some(json!({"id": 1})),
                J::Null,
                json!({"id": 1, "ver": 1, "v": "a"}),
            ),
            record(
                0,
                "k",
                "q",
                "c",
                Some(json!({"id": 1})),
                J::Null,
                json!({"id": 1, "v": "a"}),
            ),
        ]))
        .await
        .unwrap();
    assert_eq!(s.applied, 2);
    // The source key becomes (id, ver).
    let s = sink
        .apply(&batch(&[record(
            1,
            "k",
            "p",
            "c",
            Some(json!({"id": 1, "ver": 2})),
            J::Null,
            json!({"id": 1, "ver": 2, "v": "b"}),
        )]))
        .await
        .unwrap();
    assert_eq!((s.applied, s.dead_lettered), (0, 1));
    assert_eq!(db.query("SELECT v FROM k.p_current").unwrap().trim(), "a");
    // A user changed a column to a type tributary does not write.
    db.query("CREATE EXTENSION IF NOT EXISTS citext; ALTER TABLE k.q_current ALTER v TYPE citext; ALTER TABLE k.q_history ALTER v TYPE citext").unwrap();
    let mut sink = PgSink::connect(&db.url, ApplyConfig::default())
        .await
        .unwrap();
    let s = sink
        .apply(&batch(&[record(
            2,
            "k",
            "q",
            "u",
            Some(json!({"id": 1})),
            J::Null,
            json!({"id": 1, "v": "new"}),
        )]))
        .await
        .unwrap();
    assert_eq!((s.applied, s.dead_lettered), (0, 1));
    // A database named `{table}` must not expand into another table's names.
    let s = sink
        .apply(&batch(&[record(
            3,
            "{table}",
            "p",
            "c",
            Some(json!({"id": 9})),
            J::Null,
            json!({"id": 9, "ver": 9, "v": "evil"}),
        )]))
        .await
        .unwrap();
    assert_eq!(s.applied, 1);
    assert_eq!(
        db.query("SELECT count(*) FROM \"{table}\".p_current")
            .unwrap()
            .trim(),
        "1"
    );
    assert_eq!(
        db.query("SELECT count(*) FROM k.p_current").unwrap().trim(),
        "1"
    );
    // Two sources configured onto the same warehouse tables: the second is refused.
    let mut cfg = ApplyConfig::default();
    let mut m = tributary_apply::config::TableMapping::default();
    m.schema = Some("k".into());
    m.current = Some("p_current".into());
    m.history = Some("p_history".into());
    cfg.tables.insert("other.p".into(), m);
    let mut sink = PgSink::connect(&db.url, cfg).await.unwrap();
    let s = sink
        .apply(&batch(&[record(
            4,
            "other",
            "p",
            "c",
            Some(json!({"id": 5})),
            J::Null,
            json!({"id": 5, "ver": 1, "v": "x"}),
        )]))
        .await
        .unwrap();
    assert_eq!((s.applied, s.dead_lettered), (0, 1));
    assert_eq!(
        db.query("SELECT count(*) FROM k.p_current").unwrap().trim(),
        "1"
    );
    let reasons = db
        .query("SELECT string_agg(stage || ': ' || reason, E'\\n' ORDER BY id) FROM tributary.dead_letters")
        .unwrap();
    for want in [
        "primary key is (id, ver)",
        "type citext",
        "already hold the source table k.p",
    ] {
        assert!(reasons.contains(want), "{want:?} in {reasons}");
    }
}

/// A dead letter whose reason holds a NUL (from a column name) is stored, not a failed batch.
#[tokio::test]
async fn dead_letters_with_nul_in_their_reason_are_stored() {
    let db = PgDb::new("hostile_nulreason").unwrap();
    let mut sink = PgSink::connect(&db.url, ApplyConfig::default())
        .await
        .unwrap();
    let s = sink
        .apply(&batch(&[
            record(
                0,
                "n",
                "t",
                "c",
                Some(json!({"id": 1})),
                J::Null,
                json!({"id": 1, "a\u{0}b": 5}),
            ),
            record(
                1,
                "n",
                "t",
                "c",
                Some(json!({"id": 2})),
                J::Null,
                json!({"id": 2, "a\u{0}b": "not a number"}),
            ),
            record(
                2,
                "n",
                "t",
                "c",
                Some(json!({"id": 3})),
                J::Null,
                json!({"id": 3, "a\u{0}b": 7}),
            ),
        ]))
        .await
        .unwrap();
    assert_eq!((s.applied, s.dead_lettered), (2, 1));
    let r = db
        .query("SELECT reason FROM tributary.dead_letters")
        .unwrap();
    assert!(r.contains("a\\0b"), "{r}");
}
