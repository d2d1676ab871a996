//! The snapshot fast path (plain COPY into current + history) against a real PostgreSQL:
//! it must write exactly what the staged path writes, be taken only when PostgreSQL proves
//! the rows new, and fall back — without losing or doubling anything — when they are not.

use tributary_apply::{ApplyConfig, ApplyStats, PgSink};
use tributary_codec::decode::{Decoded, Decoder};
use tributary_model::{Batch, Checkpoint, RawRecord};
use tributary_testkit::PgDb;

mod common;

const TOPIC: &str = "srv.shop.items";

/// A Debezium envelope record (schemas off) for `shop.items`.
fn record(offset: i64, op: &str, id: i64, name: Option<&str>, pos: u64) -> RawRecord {
    let img = |n: Option<&str>| match n {
        Some(n) => format!(r#"{{"id":{id},"name":"{n}","qty":{}}}"#, id * 10),
        None => "null".into(),
    };
    let (before, after) = match op {
        "d" => (img(Some("gone")), img(None)),
        "u" => (img(Some("old")), img(name)),
        _ => (img(None), img(name)),
    };
    let value = format!(
        r#"{{"before":{before},"after":{after},"source":{{"version":"3.6.3.Final","connector":"mysql","name":"srv","ts_ms":{},"snapshot":"{}","db":"shop","table":"items","server_id":1,"gtid":null,"file":"bin.000001","pos":{pos},"row":0}},"op":"{op}","ts_ms":1758160342000}}"#,
        1_758_160_342_000u64 + pos,
        if op == "r" { "true" } else { "false" }
    );
    RawRecord {
        topic: TOPIC.into(),
        partition: 0,
        offset,
        key: Some(format!(r#"{{"id":{id}}}"#).into_bytes()),
        value: Some(value.into_bytes()),
    }
}

async fn apply(sink: &mut PgSink, records: &[RawRecord]) -> ApplyStats {
    let b = common::kafka_batch(&mut Decoder::new(), "t", records);
    sink.apply(&b).await.unwrap()
}

fn snapshot(first_offset: i64, ids: std::ops::RangeInclusive<i64>, pos: u64) -> Vec<RawRecord> {
    ids.enumerate()
        .map(|(i, id)| {
            record(
                first_offset + i as i64,
                "r",
                id,
                Some(&format!("item {id}")),
                pos,
            )
        })
        .collect()
}

/// SCD2 invariant: every key has exactly one open history version.
fn assert_one_open_version_per_key(db: &PgDb, history: &str, key: &str) {
    let open = db
        .query(&format!(
            "SELECT {key}, count(*) FROM shop.{history} WHERE valid_to IS NULL GROUP BY {key} HAVING count(*) <> 1"
        ))
        .unwrap();
    assert_eq!(open.trim(), "", "keys with other than one open version");
}

/// Every column of both tables except the wall-clock ones tributary sets itself.
fn tables(db: &PgDb) -> (String, String) {
    let cur = db
        .query("SELECT id, name, qty, _op, _source_pos FROM shop.items_current ORDER BY id")
        .unwrap();
    let hist = db
        .query(
            "SELECT id, name, qty, change_type, _event_id, _source_ts, _source_file, _source_pos,
                    _source_row, _source_gtid, _kafka_topic, _kafka_partition, _kafka_offset,
                    valid_from, valid_to
             FROM shop.items_history ORDER BY _kafka_offset",
        )
        .unwrap();
    (cur, hist)
}

#[tokio::test]
async fn fast_path_writes_what_the_staged_path_writes() {
    let fast_db = PgDb::new("fast_snap_a").unwrap();
    let staged_db = PgDb::new("fast_snap_b").unwrap();
    let mut fast = PgSink::connect(&fast_db.url, ApplyConfig::default())
        .await
        .unwrap();
    let mut staged = PgSink::connect(
        &staged_db.url,
        ApplyConfig {
            snapshot_fast_path: false,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let batches = [
        snapshot(0, 1..=500, 100),
        snapshot(500, 501..=1000, 100),
        vec![
            record(1000, "u", 7, Some("seven"), 200),
            record(1001, "d", 8, None, 300),
        ],
    ];
    for (i, b) in batches.iter().enumerate() {
        let f = apply(&mut fast, b).await;
        let s = apply(&mut staged, b).await;
        assert_eq!(f.applied, s.applied, "batch {i}");
        assert_eq!(s.snapshot_copied, 0, "fast path switched off");
        assert_eq!(f.snapshot_copied, if i < 2 { b.len() as u64 } else { 0 });
    }
    let (fc, fh) = tables(&fast_db);
    let (sc, sh) = tables(&staged_db);
    assert_eq!(fc.lines().count(), 999);
    assert_eq!(fh.lines().count(), 1002);
    assert_eq!(fc, sc, "current tables differ");
    assert_eq!(fh, sh, "history tables differ");
}

#[tokio::test]
async fn fast_path_falls_back_on_duplicates_and_reinserted_deleted_keys() {
    let db = PgDb::new("fast_snap_c").unwrap();
    let mut sink = PgSink::connect(&db.url, ApplyConfig::default())
        .await
        .unwrap();
    let a = snapshot(0, 1..=5, 100);
    let s = apply(&mut sink, &a).await;
    assert_eq!((s.applied, s.snapshot_copied), (5, 5));

    // The same snapshot again (a capture re-published it): refused, nothing written twice.
    let s = apply(&mut sink, &a).await;
    assert_eq!((s.applied, s.duplicates, s.snapshot_copied), (0, 5, 0));

    // A new session continuing the snapshot (history holds only snapshot rows): fast again.
    let mut sink = PgSink::connect(&db.url, ApplyConfig::default())
        .await
        .unwrap();
    let s = apply(&mut sink, &snapshot(5, 6..=8, 100)).await;
    assert_eq!((s.applied, s.snapshot_copied), (3, 3));

    // Key 3 deleted, then a later re-snapshot reads it again (re-inserted in the source).
    apply(&mut sink, &[record(8, "d", 3, None, 300)]).await;
    let mut sink = PgSink::connect(&db.url, ApplyConfig::default())
        .await
        .unwrap();
    let s = apply(&mut sink, &snapshot(9, 3..=3, 400)).await;
    assert_eq!(
        (s.applied, s.snapshot_copied),
        (1, 0),
        "key 3 has an open DELETE version the staged path must close"
    );
    // SCD2 invariant: exactly one open version per key; the DELETE version was closed.
    assert_one_open_version_per_key(&db, "items_history", "id");
    let del = db
        .query("SELECT valid_to IS NOT NULL FROM shop.items_history WHERE change_type = 'DELETE'")
        .unwrap();
    assert_eq!(del.trim(), "t");
    let cur = db
        .query("SELECT string_agg(id::text, ',' ORDER BY id) FROM shop.items_current")
        .unwrap();
    assert_eq!(cur.trim(), "1,2,3,4,5,6,7,8");
    let hist = db.query("SELECT count(*) FROM shop.items_history").unwrap();
    assert_eq!(hist.trim(), "10");

    // Another sink (another process of the group) deletes key 5 while this session stays
    // open; a later snapshot read of key 5 must still close the DELETE's open version.
    let mut other = PgSink::connect(&db.url, ApplyConfig::default())
        .await
        .unwrap();
    apply(&mut other, &[record(20, "d", 5, None, 450)]).await;
    let s = apply(&mut sink, &snapshot(21, 5..=5, 460)).await;
    assert_eq!((s.applied, s.snapshot_copied), (1, 0));
    assert_one_open_version_per_key(&db, "items_history", "id");

    // A snapshot batch overlapping rows current already holds: the COPY fails on the key,
    // the staged path applies it (new position → new history rows, current updated).
    let s = apply(&mut sink, &snapshot(10, 7..=9, 500)).await;
    assert_eq!((s.applied, s.duplicates, s.snapshot_copied), (3, 0, 0));
    let n = db.query("SELECT count(*) FROM shop.items_current").unwrap();
    assert_eq!(n.trim(), "9");
}

#[tokio::test]
async fn fast_path_is_off_for_tables_whose_types_it_would_not_cast() {
    let db = PgDb::new("fast_snap_d").unwrap();
    // The user created the tables; history's qty is numeric where current's is bigint.
    db.query(
        "CREATE SCHEMA shop;
         CREATE TABLE shop.items_current (id bigint PRIMARY KEY, name text, qty bigint,
           _op text, _source_pos bigint, _updated_at timestamptz NOT NULL DEFAULT now());
         CREATE TABLE shop.items_history (id bigint, name text, qty numeric, change_type text NOT NULL,
           _source_ts timestamptz, _source_file text, _source_pos bigint, _source_row integer,
           _source_gtid text, _kafka_topic text, _kafka_partition integer, _kafka_offset bigint,
           valid_from timestamptz, valid_to timestamptz, _applied_at timestamptz NOT NULL DEFAULT now(),
           _event_id uuid NOT NULL UNIQUE);",
    )
    .unwrap();
    let mut sink = PgSink::connect(&db.url, ApplyConfig::default())
        .await
        .unwrap();
    let s = apply(&mut sink, &snapshot(0, 1..=3, 100)).await;
    assert_eq!(
        (s.applied, s.snapshot_copied),
        (3, 0),
        "staged path (casts)"
    );
    let q = db
        .query("SELECT string_agg(qty::text, ',' ORDER BY id) FROM shop.items_history")
        .unwrap();
    assert_eq!(q.trim(), "10,20,30");
}

/// Keys other than a single integer (here text) take the post-COPY check for open versions.
#[tokio::test]
async fn text_keys_check_open_versions_after_the_copy() {
    let db = PgDb::new("fast_snap_e").unwrap();
    let mut sink = PgSink::connect(&db.url, ApplyConfig::default())
        .await
        .unwrap();
    let rec = |offset: i64, op: &str, code: &str, pos: u64| {
        let img = format!(r#"{{"code":"{code}","qty":1}}"#);
        let (before, after) = if op == "d" {
            (img.as_str(), "null")
        } else {
            ("null", img.as_str())
        };
        RawRecord {
            topic: "srv.shop.codes".into(),
            partition: 0,
            offset,
            key: Some(format!(r#"{{"code":"{code}"}}"#).into_bytes()),
            value: Some(format!(
                r#"{{"before":{before},"after":{after},"source":{{"name":"srv","ts_ms":{},"snapshot":"{}","db":"shop","table":"codes","server_id":1,"file":"bin.000001","pos":{pos},"row":0}},"op":"{op}","ts_ms":1758160342000}}"#,
                1_758_160_342_000u64 + pos,
                if op == "r" { "true" } else { "false" }
            ).into_bytes()),
        }
    };
    let mut dec = Decoder::new();
    let mut run = |recs: Vec<RawRecord>| {
        let mut b = Batch {
            pipeline: "t".into(),
            ..Default::default()
        };
        for r in &recs {
            let Decoded::Change(ev) = dec.decode(r).unwrap() else {
                panic!()
            };
            b.events.push(ev);
        }
        b.checkpoint = Some(Checkpoint::Kafka(vec![(
            "srv.shop.codes".into(),
            0,
            recs.last().unwrap().offset + 1,
        )]));
        b
    };
    let b = run(vec![rec(0, "r", "a", 100), rec(1, "r", "b", 100)]);
    let s = sink.apply(&b).await.unwrap();
    assert_eq!((s.applied, s.snapshot_copied), (2, 2));
    let b = run(vec![rec(2, "d", "a", 200)]);
    sink.apply(&b).await.unwrap();
    let b = run(vec![rec(3, "r", "a", 300)]);
    let s = sink.apply(&b).await.unwrap();
    assert_eq!(
        (s.applied, s.snapshot_copied),
        (1, 0),
        "open DELETE version of a"
    );
    assert_one_open_version_per_key(&db, "codes_history", "code");
    let b = run(vec![rec(4, "r", "c", 400)]);
    let s = sink.apply(&b).await.unwrap();
    assert_eq!((s.applied, s.snapshot_copied), (1, 1));
}
