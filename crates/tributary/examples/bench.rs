//! Benchmarks that print numbers (not tests). Run with the release binary built:
//!
//! ```text
//! cargo build --release -p tributary
//! cargo run --release -p tributary --example bench -- [all|replay|kafka|baseline|direct|direct-1m|direct-bigtxn] [EVENTS]
//! ```
//!
//! * `replay`   — EVENTS (default 1,000,000) seed-format records (ExtractNewRecordState with
//!   `__deleted`, as the seed's DAG consumed them) through `tributary replay` into current +
//!   history: events/s and the peak RSS of the tributary process.
//! * `kafka`    — the same records published to a 4-partition topic on a private tansu
//!   broker, then `tributary run --source kafka --until-caught-up`: events/s, peak RSS.
//! * `baseline` — the hand-written staged-SQL batch the issue measured against: psql COPY into
//!   a staging table + DISTINCT ON upsert + history insert in one transaction.
//! * `direct`   — a 200k-row MariaDB table snapshotted by `tributary run --until-caught-up`
//!   (direct mode, no Kafka), then 200k single-row updates streamed into PostgreSQL; then a
//!   1M-row snapshot (`direct-1m` alone), where the ~0.2 s start-up weighs less.
//! * `direct-bigtxn 2000000` — one 2M-row UPDATE transaction streamed in direct mode (peak RSS).
//!
//! Peak RSS is GNU time's "maximum resident set size" of the tributary process.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use tributary_testkit::{write_bank_workload, MariaDb, PgDb, RecordForm, Tansu};

fn exe() -> std::path::PathBuf {
    let p = tributary_testkit::repo_root().join("target/release/tributary");
    assert!(
        p.exists(),
        "build the release binary first: cargo build --release -p tributary"
    );
    p
}

/// Run `tributary ARGS` under GNU time; returns (seconds, peak RSS MiB).
fn timed(args: &[&str]) -> (f64, f64) {
    let (secs, rss, _) = timed_log(args, "warn");
    (secs, rss)
}

/// [`timed`] with log filter `log` (unless `BENCH_LOG` is set); also returns stderr.
fn timed_log(args: &[&str], log: &str) -> (f64, f64, String) {
    let rss_file = std::env::temp_dir().join(format!("trib-bench-rss-{}", std::process::id()));
    let t0 = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(&rss_file)
        .arg(exe())
        .args(args)
        .env(
            "TRIBUTARY_LOG",
            std::env::var("BENCH_LOG").unwrap_or_else(|_| log.into()),
        )
        .output()
        .unwrap();
    let secs = t0.elapsed().as_secs_f64();
    if std::env::var_os("BENCH_LOG").is_some() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(
        out.status.success(),
        "tributary {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kb: f64 = std::fs::read_to_string(&rss_file)
        .unwrap()
        .trim()
        .lines()
        .last()
        .unwrap()
        .parse()
        .unwrap();
    (
        secs,
        kb / 1024.0,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn report(what: &str, events: u64, secs: f64, rss: Option<f64>) {
    println!(
        "{what:<58} {events:>9} events {secs:>7.2} s {:>9.0} events/s{}",
        events as f64 / secs,
        rss.map(|r| format!("  peak RSS {r:.0} MiB"))
            .unwrap_or_default()
    );
}

fn workload(dir: &Path, events: u64) -> (std::path::PathBuf, tributary_testkit::BankWorkload) {
    let f = dir.join("bank-1m.jsonl");
    // accounts + 2 updates each + a quarter deleted = 3.25 events per account.
    let w = write_bank_workload(&f, (events as f64 / 3.25) as u64, RecordForm::Flattened).unwrap();
    (f, w)
}

/// The seed's warehouse layout (examples/bank.toml): the issue's "seed-format events
/// (current + history)".
/// `BENCH_SINK_CONFIG=FILE` replaces it (e.g. to try `[sink] connections` or Kafka properties).
fn bank_config() -> String {
    if let Ok(f) = std::env::var("BENCH_SINK_CONFIG") {
        return f;
    }
    tributary_testkit::repo_root()
        .join("examples/bank.toml")
        .to_str()
        .unwrap()
        .to_string()
}

fn replay(dir: &Path, events: u64) {
    let (f, w) = workload(dir, events);
    let file = f.to_str().unwrap();
    let cfg = bank_config();
    let pg = PgDb::new("bench_replay").unwrap();
    let (secs, rss) = timed(&[
        "replay",
        file,
        "-c",
        &cfg,
        "--postgres-url",
        &pg.url,
        "--batch-size",
        "20000",
    ]);
    report(
        "replay, seed layout (examples/bank.toml)",
        w.events,
        secs,
        Some(rss),
    );
    let n = pg
        .query("SELECT count(*) FROM public.bank_accounts_history")
        .unwrap();
    assert_eq!(n.trim(), w.events.to_string());
    let (secs2, _) = timed(&[
        "replay",
        file,
        "-c",
        &cfg,
        "--postgres-url",
        &pg.url,
        "--pipeline",
        "again",
    ]);
    report(
        "replay again (all duplicates, refused by history)",
        w.events,
        secs2,
        None,
    );
    let pg2 = PgDb::new("bench_replay_default").unwrap();
    let (secs3, rss3) = timed(&[
        "replay",
        file,
        "--postgres-url",
        &pg2.url,
        "--batch-size",
        "20000",
    ]);
    report(
        "replay, default layout (+ position guard, SCD2)",
        w.events,
        secs3,
        Some(rss3),
    );
}

/// `tributary run` as a Kafka sink of the bank topic in consumer group `group`, seed layout
/// with its own batch size (10k: a decoded batch and the prefetch buffer share the RSS budget).
fn kafka_sink_args(t: &Tansu, group: &str, pg: &PgDb) -> Vec<String> {
    [
        "run",
        "-c",
        &bank_config(),
        "--source",
        "kafka",
        "--kafka-brokers",
        &t.brokers(),
        "--topics",
        "dbserver1.bankdb.bank_accounts",
        "--group",
        group,
        "--postgres-url",
        &pg.url,
        "--until-caught-up",
    ]
    .map(String::from)
    .to_vec()
}

fn kafka(dir: &Path, events: u64) {
    let (f, w) = workload(dir, events);
    let t = Tansu::start().unwrap();
    let t0 = Instant::now();
    let out = Command::new(exe())
        .args([
            "publish",
            f.to_str().unwrap(),
            "--kafka-brokers",
            &t.brokers(),
            "--partitions",
            "4",
            "--batch-size",
            "50000",
        ])
        .env("TRIBUTARY_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    report(
        "publish to tansu (4 partitions, idempotent, acks=all)",
        w.events,
        t0.elapsed().as_secs_f64(),
        None,
    );
    let pg = PgDb::new("bench_kafka").unwrap();
    let args = kafka_sink_args(&t, "bench", &pg);
    let (secs, rss, log) = timed_log(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        "warn,tributary::kafka_run=info",
    );
    report(
        "Kafka sink, seed layout (whole run incl. group join)",
        w.events,
        secs,
        Some(rss),
    );
    // The consumer-group join is a fixed wait of the broker (tansu holds the first JoinGroup
    // for half the session timeout; Kafka delays a new group's first rebalance by
    // group.initial.rebalance.delay.ms, 3 s by default): the sink's own rate is measured from
    // its first assignment to caught up, as logged by the sink.
    let after_join = log
        .lines()
        .find_map(|l| {
            let rest = l.split("s after the first assignment").next()?;
            (rest.len() < l.len()).then(|| rest.rsplit('(').next()?.parse::<f64>().ok())?
        })
        .expect("the sink logs its caught-up time");
    report(
        "Kafka sink, seed layout (first assignment → caught up)",
        w.events,
        after_join,
        None,
    );
    let n = pg
        .query("SELECT count(*) FROM public.bank_accounts_history")
        .unwrap();
    assert_eq!(n.trim(), w.events.to_string());

    // Scale-out: two sink processes in one consumer group (two partitions each), each with
    // its own PostgreSQL connection — Kafka mode's way to use more than one backend.
    let pg2 = PgDb::new("bench_kafka2").unwrap();
    let t0 = Instant::now();
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(exe())
                .args(kafka_sink_args(&t, "bench2", &pg2))
                .env("TRIBUTARY_LOG", "warn")
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    report(
        "Kafka sink, 2 processes in one group (incl. group join)",
        w.events,
        t0.elapsed().as_secs_f64(),
        None,
    );
    let n = pg2
        .query("SELECT count(*) FROM public.bank_accounts_history")
        .unwrap();
    assert_eq!(n.trim(), w.events.to_string());
}

/// CPU cost of decoding the seed-format records into batches (what the decode thread of the
/// Kafka sink and of `replay` does), in process, one thread, 10k-record batches.
fn decode_only(dir: &Path, events: u64) {
    let (f, w) = workload(dir, events);
    let recs: Vec<tributary_model::RawRecord> = std::fs::read_to_string(&f)
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, l)| tributary::records::parse_line(l, i).unwrap())
        .collect();
    let mut d = tributary_codec::Decoder::new();
    let t0 = Instant::now();
    let mut n = 0;
    for chunk in recs.chunks(10_000) {
        let b = tributary::sink::decode_records(&mut d, chunk, "bench", true, &Default::default())
            .unwrap();
        n += b.events.len();
    }
    assert_eq!(n as u64, w.events);
    report(
        "decode only (seed-format records → batches, 1 thread)",
        w.events,
        t0.elapsed().as_secs_f64(),
        None,
    );
}

/// The hand-written reference: one psql session, COPY into staging, DISTINCT ON upsert and
/// history insert in one transaction per batch of 20k.
fn baseline(dir: &Path, events: u64) {
    let (f, w) = workload(dir, events);
    // Flatten the JSONL into CSV the way a hand-written job would pre-process it.
    let csv = dir.join("bank.csv");
    {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&csv).unwrap());
        for l in std::fs::read_to_string(&f).unwrap().lines() {
            let j: serde_json::Value = serde_json::from_str(l).unwrap();
            let v = &j["value"];
            writeln!(
                out,
                "{},{},{},\"{}\",{},{}",
                j["offset"],
                v["id"],
                v["user_id"],
                v["account"].as_str().unwrap(),
                v["registered_at"].as_str().unwrap(),
                v["__deleted"].as_str().unwrap()
            )
            .unwrap();
        }
    }
    let pg = PgDb::new("bench_base").unwrap();
    pg.query(
        "CREATE TABLE cur (id int PRIMARY KEY, user_id int, account text, registered_at timestamptz, updated_at timestamptz);
         CREATE TABLE hist (kafka_offset bigint UNIQUE, id int, user_id int, account text, registered_at timestamptz, change_type text, changed_at timestamptz);",
    )
    .unwrap();
    let batch = 20_000;
    let mut script = String::from("\\set ON_ERROR_STOP 1\nCREATE TEMP TABLE stg (off bigint, id int, user_id int, account text, registered_at timestamptz, deleted boolean);\n");
    let lines: Vec<String> = std::fs::read_to_string(&csv)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    for (i, chunk) in lines.chunks(batch).enumerate() {
        let part = dir.join(format!("part{i}.csv"));
        std::fs::write(&part, chunk.join("\n") + "\n").unwrap();
        script.push_str(&format!(
            "BEGIN;\nTRUNCATE stg;\n\\copy stg FROM '{}' WITH (FORMAT csv)\n\
             INSERT INTO hist SELECT off, id, user_id, account, registered_at, CASE WHEN deleted THEN 'DELETE' ELSE 'UPSERT' END, now() FROM stg ON CONFLICT DO NOTHING;\n\
             DELETE FROM cur USING (SELECT DISTINCT ON (id) id, deleted FROM stg ORDER BY id, off DESC) l WHERE l.deleted AND cur.id = l.id;\n\
             INSERT INTO cur SELECT id, user_id, account, registered_at, now() FROM (SELECT DISTINCT ON (id) * FROM stg ORDER BY id, off DESC) l WHERE NOT deleted\n\
               ON CONFLICT (id) DO UPDATE SET user_id = EXCLUDED.user_id, account = EXCLUDED.account, registered_at = EXCLUDED.registered_at, updated_at = now();\n\
             COMMIT;\n",
            part.display()
        ));
    }
    let sql = dir.join("baseline.sql");
    std::fs::write(&sql, script).unwrap();
    let t0 = Instant::now();
    let out = Command::new("psql")
        .args(["-X", "-q", &pg.url, "-f"])
        .arg(&sql)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    report(
        "baseline: hand-written psql COPY + DISTINCT ON upsert (CSV given)",
        w.events,
        t0.elapsed().as_secs_f64(),
        None,
    );
}

/// A MariaDB with `bench.accounts` of `rows` rows and a direct-mode config for it.
fn direct_setup(rows: u64, pg: &PgDb) -> (MariaDb, std::path::PathBuf) {
    let db = MariaDb::start().unwrap();
    db.sql(&format!(
        "CREATE DATABASE bench; CREATE TABLE bench.accounts (id INT PRIMARY KEY, user_id INT, account VARCHAR(100), balance DECIMAL(12,2), registered_at DATETIME);
         INSERT INTO bench.accounts SELECT seq, 1000 + seq, CONCAT('Bank ', seq, ' 123-456-789012'), seq / 100, '2025-09-18 01:52:22' FROM bench.seq_1_to_{rows};"
    ))
    .unwrap();
    let cfg = std::env::temp_dir().join(format!("trib-bench-{}-{rows}.toml", std::process::id()));
    std::fs::write(
        &cfg,
        format!(
            "[source]\nurl = \"{}\"\ndatabases = [\"bench\"]\nserver_id = {}\nsnapshot_chunk_size = 20000\n[sink]\nurl = \"{}\"\n[pipeline]\nbatch_size = 20000\n",
            db.url(),
            db.server_id + 9000,
            pg.url
        ),
    )
    .unwrap();
    (db, cfg)
}

/// `rows` rows snapshotted by `tributary run --until-caught-up` (direct mode); reported.
fn direct_snapshot(rows: u64, db_name: &str, what: &str) -> (MariaDb, std::path::PathBuf, PgDb) {
    let pg = PgDb::new(db_name).unwrap();
    let (db, cfg) = direct_setup(rows, &pg);
    let (secs, rss) = timed(&["run", "-c", cfg.to_str().unwrap(), "--until-caught-up"]);
    report(what, rows, secs, Some(rss));
    (db, cfg, pg)
}

/// Snapshot throughput without the fixed start-up cost dominating: 1M rows.
fn direct_large() {
    let rows = 1_000_000u64;
    let (_db, _cfg, pg) = direct_snapshot(
        rows,
        "bench_direct_1m",
        "direct mode: snapshot 1M rows → PostgreSQL",
    );
    let n = pg
        .query("SELECT count(*) FROM bench.accounts_history")
        .unwrap();
    assert_eq!(n.trim(), rows.to_string());
}

fn direct() {
    let rows = 200_000u64;
    let (db, cfg, pg) = direct_snapshot(
        rows,
        "bench_direct",
        "direct mode: snapshot 200k rows → PostgreSQL",
    );
    // 200k single-row update transactions, generated server-side, then streamed.
    let t0 = Instant::now();
    {
        use std::io::Write;
        let mut c = Command::new("mariadb")
            .args([
                "--no-defaults",
                "-h127.0.0.1",
                &format!("-P{}", db.port),
                "-uroot",
                "bench",
            ])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(
                b"DELIMITER //\nCREATE PROCEDURE upd() BEGIN DECLARE i INT DEFAULT 1; WHILE i <= 200000 DO \
                  UPDATE accounts SET balance = balance + 1 WHERE id = i; SET i = i + 1; END WHILE; END//\n\
                  DELIMITER ;\nCALL upd();\n",
            )
            .unwrap();
        assert!(c.wait().unwrap().success());
    }
    println!(
        "  (generating 200k single-row update transactions in MariaDB took {:.1} s)",
        t0.elapsed().as_secs_f64()
    );
    let (secs, rss) = timed(&["run", "-c", cfg.to_str().unwrap(), "--until-caught-up"]);
    report(
        "direct mode: stream 200k single-row updates → PostgreSQL",
        rows,
        secs,
        Some(rss),
    );
    let n = pg
        .query("SELECT count(*) FROM bench.accounts_history")
        .unwrap();
    assert_eq!(n.trim(), (2 * rows).to_string());
}

/// One source transaction of `rows` updates (2M by default), streamed in direct mode: peak
/// RSS stays bounded by the batch size (the transaction is applied in parts inside one
/// PostgreSQL transaction), not by the transaction's size.
fn direct_big_transaction(rows: u64) {
    let pg = PgDb::new("bench_bigtxn").unwrap();
    let (db, cfg) = direct_setup(rows, &pg);
    let (secs, rss) = timed(&["run", "-c", cfg.to_str().unwrap(), "--until-caught-up"]);
    report(
        &format!("direct mode: snapshot {rows} rows"),
        rows,
        secs,
        Some(rss),
    );
    let t0 = Instant::now();
    db.sql("UPDATE bench.accounts SET balance = balance + 1")
        .unwrap();
    println!(
        "  (one UPDATE of {rows} rows in MariaDB took {:.1} s)",
        t0.elapsed().as_secs_f64()
    );
    let (secs, rss) = timed(&["run", "-c", cfg.to_str().unwrap(), "--until-caught-up"]);
    report(
        &format!("direct mode: one {rows}-row transaction → PostgreSQL"),
        rows,
        secs,
        Some(rss),
    );
    let n = pg
        .query("SELECT count(*) FROM bench.accounts_history")
        .unwrap();
    assert_eq!(n.trim(), (2 * rows).to_string());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map(String::as_str).unwrap_or("all");
    let events: u64 = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    println!(
        "tributary benchmarks on {} cores ({what})",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    if matches!(what, "all" | "replay") {
        replay(dir.path(), events);
    }
    if matches!(what, "all" | "kafka") {
        kafka(dir.path(), events);
    }
    if matches!(what, "all" | "baseline") {
        baseline(dir.path(), events);
    }
    if matches!(what, "all" | "decode") {
        decode_only(dir.path(), events);
    }
    if matches!(what, "all" | "direct") {
        direct();
    }
    if matches!(what, "all" | "direct" | "direct-1m") {
        direct_large();
    }
    if what == "direct-bigtxn" {
        direct_big_transaction(events.min(2_000_000));
    }
}
