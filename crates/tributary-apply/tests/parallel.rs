//! Parallel apply (`ParallelSink`, several PostgreSQL connections per batch) against a real
//! PostgreSQL: it must leave exactly the tables one connection leaves, and a batch whose
//! lanes did not all commit must neither advance the checkpoint nor, when read again, apply
//! anything twice.

use tributary_apply::{ApplyConfig, ApplyStats, OnError, ParallelSink, PgSink, Sink};
use tributary_codec::decode::Decoder;
use tributary_model::{Batch, RawRecord};
use tributary_testkit::PgDb;

mod common;

const TOPIC: &str = "srv.shop.items";

/// A Debezium envelope record (schemas off) for `shop.items`; `pos` orders the changes.
fn record(offset: i64, op: &str, id: i64, name: &str) -> RawRecord {
    let img = |n: &str| format!(r#"{{"id":{id},"name":"{n}","qty":{}}}"#, id * 10);
    let (before, after) = match op {
        "d" => (img(name), "null".to_string()),
        "u" => (img("previous"), img(name)),
        _ => ("null".to_string(), img(name)),
    };
    let pos = 1000 + offset as u64 * 100;
    let value = format!(
        r#"{{"before":{before},"after":{after},"source":{{"version":"3.6.3.Final","connector":"mysql","name":"srv","ts_ms":{},"snapshot":"false","db":"shop","table":"items","server_id":1,"gtid":null,"file":"bin.000001","pos":{pos},"row":0}},"op":"{op}","ts_ms":1758160342000}}"#,
        1_758_160_342_000u64 + offset as u64,
    );
    RawRecord {
        topic: TOPIC.into(),
        partition: 0,
        offset,
        key: Some(format!(r#"{{"id":{id}}}"#).into_bytes()),
        value: Some(value.into_bytes()),
    }
}

fn batch(records: &[RawRecord]) -> Batch {
    common::kafka_batch(&mut Decoder::new(), "t", records)
}

/// Batches of a workload: 1,200 keys inserted (the first, small batch creates the tables),
/// then updated twice, a third deleted and some re-inserted — several changes of one key in
/// one batch, so a lane that reordered a key's changes would leave the wrong row.
fn workload() -> Vec<Vec<RawRecord>> {
    let mut recs = Vec::new();
    let mut off = 0i64;
    let mut push = |op: &str, id: i64, name: String| {
        recs.push(record(off, op, id, &name));
        off += 1;
    };
    for id in 1..=1200 {
        push("c", id, format!("item {id}"));
    }
    for v in 1..=2 {
        for id in 1..=1200 {
            push("u", id, format!("item {id} v{v}"));
        }
    }
    for id in (1..=1200).step_by(3) {
        push("d", id, format!("item {id} v2"));
    }
    for id in (1..=1200).step_by(6) {
        push("c", id, format!("item {id} again"));
    }
    let mut out = vec![recs[..50].to_vec()];
    out.extend(recs[50..].chunks(1500).map(|c| c.to_vec()));
    out
}

/// Every column of both tables except the wall-clock ones tributary sets itself.
fn tables(db: &PgDb) -> (String, String) {
    let cur = db
        .query("SELECT id, name, qty, _op, _source_pos FROM shop.items_current ORDER BY id")
        .unwrap();
    let hist = db
        .query(
            "SELECT id, name, qty, change_type, _event_id, _source_ts, _source_file, _source_pos,
                    _source_row, _kafka_offset, valid_from, valid_to
             FROM shop.items_history ORDER BY _kafka_offset",
        )
        .unwrap();
    (cur, hist)
}

fn checkpoint(db: &PgDb) -> String {
    db.query("SELECT next_offset FROM tributary.checkpoints WHERE pipeline = 't'")
        .unwrap()
        .trim()
        .to_string()
}

fn config(connections: usize) -> ApplyConfig {
    ApplyConfig {
        connections,
        ..Default::default()
    }
}

#[tokio::test]
async fn split_batches_leave_what_one_connection_leaves() {
    let par_db = PgDb::new("parallel_a").unwrap();
    let one_db = PgDb::new("parallel_b").unwrap();
    let mut par = ParallelSink::connect(&par_db.url, config(3)).await.unwrap();
    let mut one = PgSink::connect(&one_db.url, config(1)).await.unwrap();
    let batches = workload();
    let mut total = 0;
    for (i, recs) in batches.iter().enumerate() {
        let b = batch(recs);
        let p = par.apply(&b).await.unwrap();
        let o = one.apply(&b).await.unwrap();
        assert_eq!(p, o, "batch {i}: stats differ");
        assert_eq!(p.applied, recs.len() as u64);
        // The first batch creates the tables (one connection); every later one is split.
        assert_eq!(par.last_split(), if i == 0 { 1 } else { 3 }, "batch {i}");
        total += recs.len();
        assert_eq!(checkpoint(&par_db), total.to_string(), "batch {i}");
    }
    let (pc, ph) = tables(&par_db);
    let (oc, oh) = tables(&one_db);
    assert_eq!(ph.lines().count(), total);
    assert_eq!(pc.lines().count(), 1200 - 400 + 200);
    assert_eq!(pc, oc, "current tables differ");
    assert_eq!(ph, oh, "history tables differ");

    // Independent oracle: current holds the last image of every key not deleted last, and
    // the SCD2 versions of each key chain up (each ends where the next begins, the last is
    // open) — whichever statement (all-new or general) applied them.
    let mut last: std::collections::BTreeMap<i64, Option<String>> = Default::default();
    for recs in &batches {
        for r in recs {
            let v: serde_json::Value = serde_json::from_slice(r.value.as_ref().unwrap()).unwrap();
            let id = if v["op"] == "d" {
                &v["before"]["id"]
            } else {
                &v["after"]["id"]
            };
            last.insert(
                id.as_i64().unwrap(),
                v["after"]["name"].as_str().map(String::from),
            );
        }
    }
    let expected: String = last
        .iter()
        .filter_map(|(id, name)| name.as_ref().map(|n| format!("{id}|{n}\n")))
        .collect();
    let got = par_db
        .query("SELECT id || '|' || name FROM shop.items_current ORDER BY id")
        .unwrap();
    assert_eq!(
        got.trim(),
        expected.trim(),
        "current is not the last image per key"
    );
    assert_scd2_chains(&par_db);

    // The whole workload again: every event refused, nothing changes.
    for recs in &batches {
        let s = par.apply(&batch(recs)).await.unwrap();
        assert_eq!((s.applied, s.duplicates), (0, recs.len() as u64));
    }
    assert_eq!(tables(&par_db), (pc, ph));

    // New changes after a batch of duplicates are applied in full.
    let more: Vec<RawRecord> = (0..1200)
        .map(|i| {
            record(
                total as i64 + i,
                "u",
                2 + 3 * (i % 400),
                &format!("later {i}"),
            )
        })
        .collect();
    let s = par.apply(&batch(&more)).await.unwrap();
    assert_eq!((s.applied, s.duplicates), (1200, 0));
    let n = par_db
        .query("SELECT count(*) FROM shop.items_current WHERE name LIKE 'later %'")
        .unwrap();
    assert_eq!(n.trim(), "400");
    assert_scd2_chains(&par_db);
}

/// Every history version of a key ends exactly where the key's next version begins; the last
/// one is open.
fn assert_scd2_chains(db: &PgDb) {
    let broken = db
        .query(
            "SELECT count(*) FROM (
               SELECT valid_to, lead(valid_from) OVER (PARTITION BY id ORDER BY _kafka_offset) AS next_from
               FROM shop.items_history) v
             WHERE valid_to IS DISTINCT FROM next_from",
        )
        .unwrap();
    assert_eq!(broken.trim(), "0", "SCD2 versions do not chain");
}

#[tokio::test]
async fn a_batch_whose_lanes_did_not_all_commit_keeps_its_checkpoint_and_applies_once_when_read_again(
) {
    let db = PgDb::new("parallel_c").unwrap();
    // Sessions give up on a row lock after 300 ms (lock_timeout: a transient error).
    let url = format!("{}?options=-c%20lock_timeout%3D300", db.url);
    let mut sink = ParallelSink::connect(&url, config(2)).await.unwrap();
    let batches = workload();
    let first = batch(&batches[0]);
    sink.apply(&first).await.unwrap();
    assert_eq!(checkpoint(&db), "50");

    // Another session holds the current row of key 1, which the next batch updates: the lane
    // with key 1 fails (lock timeout), the other lane commits.
    let recs = batches[1].clone();
    assert!(recs
        .iter()
        .any(|r| r.key.as_deref() == Some(br#"{"id":1}"#.as_slice())));
    let locker = tributary_apply::connect(&db.url).await.unwrap();
    locker
        .batch_execute("BEGIN; SELECT * FROM shop.items_current WHERE id = 1 FOR UPDATE")
        .await
        .unwrap();
    let b = batch(&recs);
    let err = sink.apply(&b).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(sink.last_split(), 2);
    let committed: u64 = db
        .query("SELECT count(*) FROM shop.items_history WHERE _kafka_offset >= 50")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        committed > 0 && committed < recs.len() as u64,
        "one lane committed, one did not: {committed} of {}",
        recs.len()
    );
    assert_eq!(
        checkpoint(&db),
        "50",
        "checkpoint moved past a half-applied batch"
    );

    // The lock goes away; a restarted sink reads the batch again.
    locker.batch_execute("ROLLBACK").await.unwrap();
    let mut sink = ParallelSink::connect(&db.url, config(2)).await.unwrap();
    let s: ApplyStats = Sink::apply(&mut sink, &b).await.unwrap();
    assert_eq!(s.duplicates, committed, "what a lane committed is refused");
    assert_eq!(s.applied + s.duplicates, recs.len() as u64);
    assert_eq!(checkpoint(&db), (50 + recs.len()).to_string());
    let n = db.query("SELECT count(*) FROM shop.items_history").unwrap();
    assert_eq!(n.trim(), (50 + recs.len()).to_string(), "every change once");
    // Current equals what one connection makes of the same two batches.
    let one_db = PgDb::new("parallel_d").unwrap();
    let mut one = PgSink::connect(&one_db.url, config(1)).await.unwrap();
    one.apply(&first).await.unwrap();
    one.apply(&b).await.unwrap();
    assert_eq!(tables(&db), tables(&one_db));

    // With on_error = "stop" batches are not split (a failed lane would leave the others'
    // share visible while the pipeline stands still).
    let mut stop = ParallelSink::connect(
        &db.url,
        ApplyConfig {
            on_error: OnError::Stop,
            ..config(2)
        },
    )
    .await
    .unwrap();
    stop.apply(&batch(&batches[2])).await.unwrap();
    assert_eq!(stop.last_split(), 1);
}

/// Many sessions (two sink processes with two connections each, …) starting at once on a
/// fresh database all create the control tables without tripping over each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_connections_create_the_control_tables_once() {
    for round in 0..4 {
        let db = PgDb::new("parallel_e").unwrap();
        let connects = (0..8).map(|_| ParallelSink::connect(&db.url, config(1)));
        for (i, r) in futures::future::join_all(connects)
            .await
            .into_iter()
            .enumerate()
        {
            if let Err(e) = r {
                panic!("round {round}, session {i}: {e}");
            }
        }
    }
}
