//! Decode every golden record; check typed values against the source table dump.
#![allow(clippy::approx_constant)]

mod common;

use std::sync::Arc;

use common::{load, load_tsv, raw};
use tributary_codec::num;
use tributary_codec::{decode, Decoded, Decoder};
use tributary_model::{ChangeEvent, ColumnKind, Op, Value};

fn counts(file: &str) -> (usize, usize, usize) {
    let mut c = (0, 0, 0);
    for line in load(file) {
        match decode(&raw(&line)).unwrap_or_else(|e| panic!("{file}: {e}")) {
            Decoded::Change(_) => c.0 += 1,
            Decoded::Tombstone => c.1 += 1,
            Decoded::SchemaChange(_) => c.2 += 1,
        }
    }
    c
}

#[test]
fn every_golden_record_decodes_with_expected_counts() {
    // Scenario: 3 snapshot reads + 9 all_types changes (1 update, 2 inserts, 1 update,
    // 2 deletes, 2 inserts... see scenario/stream.sql) + 5 no_pk changes = 16 changes; each of
    // the 3 deletes is followed by a tombstone in the envelope files (the unwrap SMT drops them);
    // 13 DDL records on the schema-change topic.
    assert_eq!(counts("envelope-schemas.jsonl"), (16, 3, 13));
    assert_eq!(counts("envelope-string-modes.jsonl"), (16, 3, 13));
    assert_eq!(counts("flattened-rewrite.jsonl"), (16, 0, 13));
}

fn events(file: &str) -> Vec<ChangeEvent> {
    let mut d = Decoder::new();
    load(file)
        .iter()
        .filter_map(|l| match d.decode(&raw(l)).unwrap() {
            Decoded::Change(ev) => Some(ev),
            _ => None,
        })
        .collect()
}

fn col<'a>(ev: &'a ChangeEvent, name: &str) -> &'a Value {
    let i = ev
        .schema
        .column_index(name)
        .unwrap_or_else(|| panic!("no column {name}"));
    &ev.row_image().unwrap()[i]
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// What a `mariadb -B` cell means as a model [`Value`] for a column of `kind` (default
/// Debezium modes: BIGINT UNSIGNED wraps to i64, as the golden's long mode does).
fn tsv_value(kind: &ColumnKind, cell: &Option<String>, hex_col: bool) -> Value {
    let Some(t) = cell else { return Value::Null };
    match kind {
        ColumnKind::Int { .. } => Value::Int(
            t.parse::<i64>()
                .unwrap_or_else(|_| t.parse::<u64>().unwrap() as i64),
        ),
        ColumnKind::Decimal { .. } => Value::Decimal(t.clone()),
        ColumnKind::Float => Value::Float(t.parse().unwrap()),
        ColumnKind::Double => Value::Double(t.parse().unwrap()),
        ColumnKind::Bool => Value::Bool(t == "1"),
        ColumnKind::Bits { .. } => Value::Bits(t.parse().unwrap()),
        ColumnKind::Bytes { .. } if hex_col => Value::Bytes(hex_decode(t)),
        ColumnKind::Date => Value::Date(num::parse_date(t).unwrap() as i32),
        ColumnKind::Time { .. } => Value::Time(num::parse_time(t).unwrap()),
        ColumnKind::DateTime { .. } => Value::DateTime(num::parse_datetime(t).unwrap().0),
        // The dump ran with the session in UTC.
        ColumnKind::Timestamp { .. } => Value::Timestamp(num::parse_zoned(t).unwrap()),
        ColumnKind::Year => Value::Year(t.parse().unwrap()),
        _ => Value::String(t.clone()),
    }
}

/// The last change of each row, decoded, equals the source table at the end of the scenario.
#[test]
fn final_images_equal_source_table_dump() {
    let evs = events("envelope-schemas.jsonl");
    let (header, rows) = load_tsv("final-all_types.tsv");
    for row in &rows {
        let id: i64 = row[0].as_ref().unwrap().parse().unwrap();
        let last = evs
            .iter()
            .rfind(|e| e.schema.id.table == "all_types" && *col(e, "id") == Value::Int(id))
            .unwrap_or_else(|| panic!("no event for id {id}"));
        assert_ne!(last.op, Op::Delete);
        for (h, cell) in header.iter().zip(row) {
            let name = h.strip_suffix("_hex").unwrap_or(h);
            let Some(i) = last.schema.column_index(name) else {
                // c_added: rows that existed before the ALTER carry no value for it in any
                // event (README); only the DEFAULT explains the dump.
                assert_eq!(name, "c_added");
                assert!(id < 101);
                continue;
            };
            let c = &last.schema.columns[i];
            let want = tsv_value(&c.kind, cell, h.ends_with("_hex"));
            let got = &last.after.as_ref().unwrap()[i];
            assert_eq!(got, &want, "id {id} column {name}");
        }
    }
    // c_added's DEFAULT travels in the Connect schema.
    let post = evs
        .iter()
        .find(|e| e.schema.column_index("c_added").is_some())
        .unwrap();
    let c = &post.schema.columns[post.schema.column_index("c_added").unwrap()];
    assert_eq!(c.default, Some(Value::String("dflt".into())));

    let (_, no_pk) = load_tsv("final-no_pk.tsv");
    assert_eq!(no_pk.len(), 2);
}

#[test]
fn first_snapshot_row_typed_values() {
    let evs = events("envelope-schemas.jsonl");
    let ev = &evs[0];
    assert_eq!(ev.op, Op::Snapshot);
    assert_eq!(ev.schema.id.to_string(), "typesdb.all_types");
    assert_eq!(ev.schema.key, vec![0]);
    assert_eq!(ev.source.snapshot, tributary_model::SnapshotMarker::First);
    assert_eq!(ev.source.file, "bin.000001");
    let k = ev.kafka.as_ref().unwrap();
    assert_eq!(
        (k.topic.as_str(), k.partition, k.offset),
        ("dbserver1.typesdb.all_types", 0, 0)
    );
    assert_eq!(
        col(ev, "c_dec_big"),
        &Value::Decimal("12345678901234567890.0123456789".into())
    );
    assert_eq!(col(ev, "c_dec"), &Value::Decimal("12345678.90".into()));
    assert_eq!(col(ev, "c_bit10"), &Value::Bits(682));
    assert_eq!(col(ev, "c_bit1"), &Value::Bool(true));
    assert_eq!(
        col(ev, "c_varchar"),
        &Value::String("국민은행 KB 123-456 😀".into())
    );
    assert_eq!(col(ev, "c_time3"), &Value::Time(-3_020_399_000_000));
    assert_eq!(
        col(ev, "c_timestamp3"),
        &Value::Timestamp(num::parse_zoned("2038-01-19T03:14:07.999Z").unwrap())
    );
    assert_eq!(
        col(ev, "c_datetime6"),
        &Value::DateTime(1_758_160_342_123_456)
    );
    assert_eq!(col(ev, "c_float"), &Value::Float(3.14));
    // Long mode: BIGINT UNSIGNED max arrives as -1 (Debezium's own wrap).
    assert_eq!(col(ev, "c_bigint_u"), &Value::Int(-1));
    assert_eq!(col(ev, "c_bigint"), &Value::Int(i64::MIN));

    let kinds: Vec<(&str, &ColumnKind)> = ev
        .schema
        .columns
        .iter()
        .map(|c| (c.name.as_str(), &c.kind))
        .collect();
    assert!(kinds.contains(&(
        "c_dec",
        &ColumnKind::Decimal {
            precision: Some(10),
            scale: Some(2)
        }
    )));
    assert!(kinds.contains(&("c_bit10", &ColumnKind::Bits { len: 10 })));
    assert!(kinds.contains(&(
        "c_enum",
        &ColumnKind::Enum {
            allowed: vec!["small".into(), "medium".into(), "large".into()]
        }
    )));
    assert!(!ev.schema.columns[0].nullable);
    assert!(ev.schema.columns[1].nullable);

    // precise bigint / string decimal / hex binary / connect time modes
    let sm = events("envelope-string-modes.jsonl");
    let ev = &sm[0];
    assert_eq!(
        col(ev, "c_bigint_u"),
        &Value::Decimal("18446744073709551615".into())
    );
    assert_eq!(col(ev, "id"), &Value::Decimal("1".into()));
    assert_eq!(
        col(ev, "c_dec_big"),
        &Value::String("12345678901234567890.0123456789".into())
    );
    assert_eq!(col(ev, "c_blob"), &Value::String("00ff10".into()));
    assert_eq!(col(ev, "c_time"), &Value::Time(45_296_000_000));
    assert_eq!(col(ev, "c_time3"), &Value::Null); // lossy in Debezium's connect mode
    assert_eq!(
        col(ev, "c_datetime6"),
        &Value::DateTime(1_758_160_342_123_000)
    );
}

#[test]
fn flattened_records_decode_to_unresolved_rows() {
    let evs = events("flattened-rewrite.jsonl");
    let del: Vec<_> = evs.iter().filter(|e| e.op == Op::Delete).collect();
    assert_eq!(del.len(), 3);
    for d in &del {
        assert!(d.before.is_some() && d.after.is_none());
    }
    let ev = &evs[0];
    assert_eq!(ev.op, Op::Snapshot);
    assert_eq!(ev.schema.id.to_string(), "typesdb.all_types");
    assert!(ev.schema.columns.iter().all(|c| !c.name.starts_with("__")));
    assert!(ev
        .schema
        .columns
        .iter()
        .all(|c| c.kind == ColumnKind::Unknown));
    assert_eq!(ev.schema.key, vec![0]);
    assert_eq!(
        col(ev, "c_dec"),
        &Value::Unresolved(serde_json::json!("SZYC0g=="))
    );
    assert_eq!(ev.source.ts_ms, 1795624709000);
    let no_pk: Vec<_> = evs
        .iter()
        .filter(|e| e.schema.id.table == "no_pk")
        .collect();
    assert_eq!(no_pk.len(), 5);
    assert!(no_pk.iter().all(|e| e.schema.is_keyless()));
}

#[test]
fn schema_cache_shares_arcs_and_tracks_alter() {
    let evs = events("envelope-schemas.jsonl");
    let at: Vec<_> = evs
        .iter()
        .filter(|e| e.schema.id.table == "all_types")
        .collect();
    let v1 = &at[0].schema;
    let v2 = &at.last().unwrap().schema;
    assert!(at[..at.len() - 1]
        .iter()
        .all(|e| Arc::ptr_eq(&e.schema, v1)));
    assert!(!Arc::ptr_eq(v1, v2));
    assert_eq!(v2.columns.len(), v1.columns.len() + 1);
    let mut d = Decoder::new();
    for l in load("envelope-schemas.jsonl") {
        d.decode(&raw(&l)).unwrap();
    }
    assert_eq!(d.cached_schemas(), 3);
}

#[test]
fn schema_changes_carry_table_shapes() {
    let mut alter = None;
    for l in load("envelope-schemas.jsonl") {
        if let Decoded::SchemaChange(sc) = decode(&raw(&l)).unwrap() {
            if sc.ddl.starts_with("ALTER TABLE all_types") {
                alter = Some(sc);
            }
        }
    }
    let sc = alter.unwrap();
    assert_eq!(sc.db, "typesdb");
    let t = &sc.tables[0];
    assert_eq!(t.id.to_string(), "typesdb.all_types");
    assert_eq!(t.key, vec![0]);
    let c = |n: &str| &t.columns[t.column_index(n).unwrap()];
    assert_eq!(
        c("id").kind,
        ColumnKind::Int {
            bits: 64,
            unsigned: true
        }
    );
    assert_eq!(
        c("c_dec_big").kind,
        ColumnKind::Decimal {
            precision: Some(30),
            scale: Some(10)
        }
    );
    assert_eq!(c("c_timestamp3").kind, ColumnKind::Timestamp { fsp: 3 });
    assert_eq!(
        c("c_set").kind,
        ColumnKind::Set {
            allowed: vec!["a".into(), "b".into(), "c".into()]
        }
    );
    assert_eq!(c("c_added").default, Some(Value::String("dflt".into())));
}
