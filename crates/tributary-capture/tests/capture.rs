//! Capture against a real private MariaDB (tributary-testkit), no mocks.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tributary_capture::{check, CaptureConfig, MySqlSource, SnapshotMode};
use tributary_model::{BinlogCheckpoint, ChangeEvent, Checkpoint, Op, SnapshotMarker, Value};
use tributary_testkit::{golden, MariaDb};

/// Start a private MariaDB; starts are serialized and retried (concurrent
/// `mariadb-install-db` runs on this machine occasionally fail).
fn start_db(extra: &[&str]) -> MariaDb {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut last = None;
    for _ in 0..3 {
        match MariaDb::start_with(extra) {
            Ok(db) => return db,
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("MariaDB did not start: {:?}", last.unwrap());
}

fn cfg(db: &MariaDb, dbname: &str) -> CaptureConfig {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "tributary_capture=info".into()),
        )
        .with_test_writer()
        .try_init();
    CaptureConfig {
        url: db.url(),
        databases: vec![dbname.into()],
        server_id: 60000 + db.server_id,
        name: "dbserver1".into(),
        heartbeat: Duration::from_millis(200),
        ..Default::default()
    }
}

fn cp(b: &tributary_model::Batch) -> BinlogCheckpoint {
    match b.checkpoint.clone() {
        Some(Checkpoint::Binlog(c)) => c,
        other => panic!("unexpected checkpoint {other:?}"),
    }
}

/// Read batches until `done(all events)` or timeout.
async fn collect_until(
    src: &mut MySqlSource,
    out: &mut Vec<ChangeEvent>,
    max: usize,
    secs: u64,
    done: impl Fn(&[ChangeEvent]) -> bool,
) -> Option<BinlogCheckpoint> {
    let t0 = Instant::now();
    let mut last = None;
    while !done(out) {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timeout; got {} events: {:?}",
            out.len(),
            out.iter().map(|e| e.op).collect::<Vec<_>>()
        );
        let b = src.next_batch(max).await.unwrap();
        last = Some(cp(&b));
        out.extend(b.events);
    }
    last
}

fn key_of(e: &ChangeEvent) -> Vec<Value> {
    let img = e.row_image().unwrap();
    e.schema.key.iter().map(|&k| img[k].clone()).collect()
}

fn col(e: &ChangeEvent, name: &str) -> Value {
    let i = e.schema.column_index(name).unwrap();
    e.row_image().unwrap()[i].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_problems_and_fixes() {
    let bad = start_db(&["--binlog-format=STATEMENT"]);
    let r = check(&bad.url(), 4242).await.unwrap();
    let p = r
        .problems
        .iter()
        .find(|p| p.setting == "binlog_format")
        .expect("binlog_format problem");
    assert!(p.fatal);
    assert_eq!(p.found, "STATEMENT");
    assert!(p.fix.contains("SET GLOBAL binlog_format=ROW"), "{}", p.fix);
    assert!(r.to_string().contains("binlog_format"));
    // start() refuses with a definite error naming the setting.
    let err = match MySqlSource::start(cfg(&bad, "x"), None).await {
        Err(e) => e,
        Ok(_) => panic!("start must refuse"),
    };
    assert!(err.to_string().contains("binlog_format"), "{err}");
    assert!(!tributary_model::ErrorClass::is_transient(&err));

    let good = start_db(&[]);
    let r = check(&good.url(), 4242).await.unwrap();
    assert_eq!(r.flavor, tributary_capture::Flavor::MariaDb);
    assert!(r.problems.is_empty(), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_matches_golden() {
    let db = start_db(&[]);
    db.sql_file(&golden("scenario/init.sql")).unwrap();
    let mut src = MySqlSource::start(cfg(&db, "typesdb"), None).await.unwrap();
    let mut ev = Vec::new();
    let mut snap_cp = None;
    while src.snapshot_progress().is_some() || ev.is_empty() {
        let b = src.next_batch(1000).await.unwrap();
        snap_cp = Some(cp(&b));
        ev.extend(b.events);
    }
    assert_eq!(ev.len(), 3);
    let snap_cp = snap_cp.unwrap();
    assert!(
        snap_cp.snapshot.is_none(),
        "last snapshot batch ends the snapshot"
    );
    assert_eq!(
        ev.iter().map(|e| e.source.snapshot).collect::<Vec<_>>(),
        vec![
            SnapshotMarker::First,
            SnapshotMarker::True,
            SnapshotMarker::Last
        ]
    );
    assert_eq!(
        ev.iter().map(|e| e.source.row).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    // Typed values of the first row (final-all_types.tsv / init.sql).
    let r = &ev[0];
    let expect: Vec<(&str, Value)> = vec![
        ("id", Value::UInt(1)),
        ("c_tinyint", Value::Int(-128)),
        ("c_tinyint_u", Value::Int(255)),
        ("c_bool", Value::Int(1)),
        ("c_smallint", Value::Int(-32768)),
        ("c_mediumint", Value::Int(-8388608)),
        ("c_int", Value::Int(-2147483648)),
        ("c_int_u", Value::Int(4294967295)),
        ("c_bigint", Value::Int(i64::MIN)),
        ("c_bigint_u", Value::UInt(u64::MAX)),
        ("c_dec", Value::Decimal("12345678.90".into())),
        (
            "c_dec_big",
            Value::Decimal("12345678901234567890.0123456789".into()),
        ),
        ("c_float", Value::Float(3.14)),
        ("c_double", Value::Double(2.718281828459045)),
        ("c_bit1", Value::Bits(1)),
        ("c_bit10", Value::Bits(682)),
        ("c_char", Value::String("ab".into())),
        ("c_varchar", Value::String("국민은행 KB 123-456 😀".into())),
        (
            "c_text",
            Value::String("long text 'quoted' \\ backslash".into()),
        ),
        ("c_blob", Value::Bytes(vec![0x00, 0xFF, 0x10])),
        ("c_binary", Value::Bytes(vec![0xDE, 0xAD, 0xBE, 0xEF])),
        ("c_varbinary", Value::Bytes(vec![0x01, 0x02])),
        ("c_enum", Value::String("medium".into())),
        ("c_set", Value::String("a,c".into())),
        ("c_date", Value::Date(20349)),
        ("c_time", Value::Time(45_296_000_000)),
        ("c_time3", Value::Time(-3_020_399_000_000)),
        ("c_datetime", Value::DateTime(1_758_160_342_000_000)),
        ("c_datetime6", Value::DateTime(1_758_160_342_123_456)),
        ("c_timestamp", Value::Timestamp(1_758_160_342_000_000)),
        ("c_timestamp3", Value::Timestamp(2_147_483_647_999_000)),
        ("c_year", Value::Year(2025)),
        (
            "c_json",
            Value::String(r#"{"k": [1, 2.5, "x", null, true], "n": {"a": "b"}}"#.into()),
        ),
    ];
    for (name, v) in &expect {
        assert_eq!(&col(r, name), v, "column {name}");
    }

    db.sql_file(&golden("scenario/stream.sql")).unwrap();
    collect_until(&mut src, &mut ev, 1000, 20, |e| {
        e.last()
            .map(|x| x.schema.id.table == "no_pk" && x.op == Op::Delete)
            .unwrap_or(false)
    })
    .await;
    let ops: String = ev
        .iter()
        .map(|e| e.op.debezium_code())
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(ops, "r,r,r,u,c,c,u,d,d,c,c,c,c,c,u,d");
    let keys: Vec<Value> = ev
        .iter()
        .filter(|e| e.schema.id.table == "all_types")
        .map(|e| key_of(e)[0].clone())
        .collect();
    let ids: Vec<Value> = [1u64, 2, 3, 1, 4, 5, 2, 3, 4, 100, 101]
        .iter()
        .map(|&i| Value::UInt(i))
        .collect();
    assert_eq!(keys, ids);
    for e in ev.iter().filter(|e| e.schema.id.table == "no_pk") {
        assert!(e.schema.key.is_empty());
    }
    // Streamed before-image of row 1 equals its snapshot image: snapshot and binlog decode
    // every type identically, and share the schema shape.
    let upd = &ev[3];
    assert_eq!(upd.before.as_ref().unwrap(), ev[0].after.as_ref().unwrap());
    assert_eq!(*upd.schema, *ev[0].schema);
    assert_eq!(col(upd, "c_dec"), Value::Decimal("-0.01".into()));
    assert_eq!(
        col(upd, "c_varchar"),
        Value::String("신한은행 987-654".into())
    );
    // Transaction events share the GTID; positions are rows-event starts with row indexes.
    let tx: Vec<&ChangeEvent> = ev[4..8].iter().collect();
    assert!(tx
        .iter()
        .all(|e| e.source.gtid.is_some() && e.source.gtid == tx[0].source.gtid));
    assert_eq!((tx[0].source.row, tx[1].source.row), (0, 1));
    assert_eq!(tx[0].source.pos, tx[1].source.pos);
    assert!(tx[2].source.pos > tx[1].source.pos);
    // PK change: delete of id 4 then create of id 100 at the same position.
    assert_eq!((ev[8].op, ev[9].op), (Op::Delete, Op::Insert));
    assert_eq!(ev[8].source.pos, ev[9].source.pos);
    // After the ALTER: the new column with its DEFAULT from information_schema.
    let after_alter = &ev[10];
    let c = &after_alter.schema.columns[after_alter.schema.column_index("c_added").unwrap()];
    assert_eq!(c.default, Some(Value::String("dflt".into())));
    assert_eq!(
        col(after_alter, "c_added"),
        Value::String("after-alter".into())
    );
    assert_eq!(col(after_alter, "id"), Value::UInt(101));
    for e in &ev {
        assert_eq!(e.source.name, "dbserver1");
        assert_eq!(e.source.server_id, db.server_id);
    }
    src.close().await;
}

// The encoded comparison with the real Debezium records (all three converter setups) is
// crates/tributary/tests/capture_golden.rs: it needs the codec and the CLI.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_are_atomic_and_resume_exactly() {
    let db = start_db(&[]);
    db.sql("CREATE DATABASE t1; CREATE TABLE t1.a (id INT PRIMARY KEY, v VARCHAR(10)); CREATE TABLE t1.b (id INT PRIMARY KEY, n INT); INSERT INTO t1.a VALUES (0,'init');")
        .unwrap();
    let mut c = cfg(&db, "t1");
    c.snapshot = SnapshotMode::Initial;
    let mut src = MySqlSource::start(c.clone(), None).await.unwrap();
    let mut ev = Vec::new();
    collect_until(&mut src, &mut ev, 100, 10, |e| e.len() == 1).await;
    db.sql("BEGIN; INSERT INTO t1.a VALUES (1,'x'),(2,'y'); INSERT INTO t1.b VALUES (1,10); UPDATE t1.a SET v='z' WHERE id=1; DELETE FROM t1.a WHERE id=0; COMMIT;")
        .unwrap();
    // max_events = 2 < transaction size 5: the transaction arrives in parts of at most 2
    // that continue it (no checkpoint), then its last part with the checkpoint after it.
    let mut parts: Vec<tributary_model::Batch> = Vec::new();
    loop {
        let b = src.next_batch(2).await.unwrap();
        if b.events.is_empty() && !b.continues {
            continue;
        }
        let last = !b.continues;
        parts.push(b);
        if last {
            break;
        }
    }
    let shape: Vec<(usize, bool, bool)> = parts
        .iter()
        .map(|b| (b.events.len(), b.continues, b.checkpoint.is_some()))
        .collect();
    assert_eq!(
        shape,
        vec![(2, true, false), (2, true, false), (1, false, true)],
        "parts (events, continues, checkpoint)"
    );
    assert!(parts.iter().all(|b| !b.restarts_txn));
    let batch = parts.pop().unwrap();
    let after_tx = cp(&batch);
    let master = db.sql("SHOW MASTER STATUS").unwrap();
    let mpos: u64 = master.split('\t').nth(1).unwrap().parse().unwrap();
    assert_eq!(after_tx.pos, mpos, "checkpoint = position after the COMMIT");
    assert!(after_tx.gtid_set.is_some());
    drop(src);

    db.sql("INSERT INTO t1.a VALUES (3,'after'); UPDATE t1.b SET n=11 WHERE id=1;")
        .unwrap();
    let mut src = MySqlSource::start(c, Some(after_tx.clone())).await.unwrap();
    let mut ev2 = Vec::new();
    collect_until(&mut src, &mut ev2, 100, 10, |e| e.len() >= 2).await;
    // Nothing more arrives.
    let b = src.next_batch(100).await.unwrap();
    assert!(b.events.is_empty());
    let got: Vec<(String, Op)> = ev2
        .iter()
        .map(|e| (e.schema.id.table.clone(), e.op))
        .collect();
    assert_eq!(
        got,
        vec![("a".to_string(), Op::Insert), ("b".to_string(), Op::Update)]
    );
    assert!(ev2[0].source.pos > after_tx.pos);
}

/// Apply events with the sink's stale-update guard: keep, per key, the last event by
/// (order_key, arrival); deletes remove.
fn apply_guarded(events: &[ChangeEvent]) -> BTreeMap<String, String> {
    let mut state: BTreeMap<String, (i64, Option<Vec<Value>>)> = BTreeMap::new();
    for e in events {
        let k = format!("{:?}", key_of(e));
        let ok = e.source.order_key();
        if let Some((cur, _)) = state.get(&k) {
            if ok < *cur {
                continue;
            }
        }
        let img = if e.op == Op::Delete {
            None
        } else {
            e.after.clone()
        };
        state.insert(k, (ok, img));
    }
    state
        .into_iter()
        .filter_map(|(k, (_, v))| v.map(|v| (k, format!("{v:?}"))))
        .collect()
}

async fn table_contents(db: &MariaDb, q: &str) -> BTreeMap<String, String> {
    let out = db.sql(q).unwrap();
    out.lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let id = Value::Int(f[0].parse().unwrap());
            let v = Value::String(f[1].to_string());
            let n = Value::Int(f[2].parse().unwrap());
            (
                format!("{:?}", vec![id.clone()]),
                format!("{:?}", vec![id, v, n]),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_mid_snapshot_converges() {
    let db = start_db(&[]);
    db.sql(
        "CREATE DATABASE r; USE r; CREATE TABLE r.big (id INT PRIMARY KEY, v VARCHAR(20), n INT); \
            CREATE TABLE r.small (id INT PRIMARY KEY, v VARCHAR(20), n INT); \
            INSERT INTO r.big SELECT seq, CONCAT('v', seq), 0 FROM seq_1_to_5000; \
            INSERT INTO r.small SELECT seq, 's', 0 FROM seq_1_to_50;",
    )
    .unwrap();
    let mut c = cfg(&db, "r");
    c.chunk_size = 500;
    let mut src = MySqlSource::start(c.clone(), None).await.unwrap();
    let mut ev = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        let b = src.next_batch(10_000).await.unwrap();
        assert_eq!(b.events.len(), 500);
        last = Some(cp(&b));
        ev.extend(b.events);
    }
    let last = last.unwrap();
    assert!(last.snapshot.is_some());
    let p1 = (last.file.clone(), last.pos);
    drop(src);
    // Changes while the source is down: before and after last_pk (1500), and in the other table.
    db.sql("UPDATE r.big SET n = n + 1, v = 'early' WHERE id IN (10, 1499, 1500); \
            UPDATE r.big SET n = 7, v = 'late' WHERE id IN (1501, 3000, 4999); \
            DELETE FROM r.big WHERE id IN (20, 2000); \
            DELETE FROM r.big WHERE id = 1600; INSERT INTO r.big VALUES (6000, 'new', 1), (1600, 'moved', 2); \
            DELETE FROM r.big WHERE id = 1600; INSERT INTO r.big VALUES (1600, 'again', 3), (7001, 'x', 0); \
            DELETE FROM r.big WHERE id = 7001; \
            UPDATE r.small SET v = 'changed' WHERE id = 5; DELETE FROM r.small WHERE id = 6;")
        .unwrap();
    let mut src = MySqlSource::start(c, Some(last)).await.unwrap();
    // finish the snapshot
    while src.snapshot_progress().is_some() {
        let b = src.next_batch(10_000).await.unwrap();
        if src.snapshot_progress().is_some() {
            assert!(cp(&b).snapshot.is_some());
        }
        assert_eq!((cp(&b).file, cp(&b).pos), p1.clone(), "checkpoint keeps P1");
        ev.extend(b.events);
    }
    // rows read at P2 carry pos = P2 > P1
    let p2_rows: Vec<&ChangeEvent> = ev[1500..].iter().filter(|e| e.op == Op::Snapshot).collect();
    assert!(p2_rows
        .iter()
        .all(|e| e.source.pos > p1.1 || e.source.file != p1.0));
    assert_eq!(
        ev.iter()
            .filter(|e| e.source.snapshot == SnapshotMarker::Last)
            .count(),
        1
    );
    // then stream from P1 until caught up
    db.sql("UPDATE r.big SET v = 'final' WHERE id = 1;")
        .unwrap();
    collect_until(&mut src, &mut ev, 10_000, 20, |e| {
        e.last()
            .map(|x| x.op == Op::Update && col(x, "v") == Value::String("final".into()))
            .unwrap_or(false)
    })
    .await;
    for t in ["big", "small"] {
        let evs: Vec<ChangeEvent> = ev
            .iter()
            .filter(|e| e.schema.id.table == t)
            .cloned()
            .collect();
        let got = apply_guarded(&evs);
        let want = table_contents(&db, &format!("SELECT id, v, n FROM r.{t}")).await;
        assert_eq!(got.len(), want.len(), "{t} row count");
        assert_eq!(got, want, "{t} contents differ");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_server_restart() {
    let mut db = start_db(&[]);
    db.sql("CREATE DATABASE rc; CREATE TABLE rc.t (id INT PRIMARY KEY, n INT);")
        .unwrap();
    let mut c = cfg(&db, "rc");
    c.snapshot = SnapshotMode::Never;
    let mut src = MySqlSource::start(c, None).await.unwrap();
    db.sql("INSERT INTO rc.t VALUES (1,1),(2,2);").unwrap();
    let mut ev = Vec::new();
    collect_until(&mut src, &mut ev, 100, 10, |e| e.len() >= 2).await;
    db.restart().unwrap();
    db.sql("INSERT INTO rc.t VALUES (3,3); UPDATE rc.t SET n=10 WHERE id=1;")
        .unwrap();
    collect_until(&mut src, &mut ev, 100, 30, |e| e.len() >= 4).await;
    // restart again while idle, then more changes
    db.restart().unwrap();
    db.sql("DELETE FROM rc.t WHERE id=2;").unwrap();
    collect_until(&mut src, &mut ev, 100, 30, |e| e.len() >= 5).await;
    let b = src.next_batch(100).await.unwrap();
    ev.extend(b.events);
    let got: Vec<(Op, Value)> = ev.iter().map(|e| (e.op, key_of(e)[0].clone())).collect();
    assert_eq!(
        got,
        vec![
            (Op::Insert, Value::Int(1)),
            (Op::Insert, Value::Int(2)),
            (Op::Insert, Value::Int(3)),
            (Op::Update, Value::Int(1)),
            (Op::Delete, Value::Int(2)),
        ]
    );
}
