//! A broker that loses its log, topics that are deleted or never existed, a broker that is
//! down: every case ends in a loud, documented stop (its own exit code) or a re-read that
//! leaves current == source and history with every change once — never a silent skip or a
//! process that waits forever.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tributary_testkit::{write_bank_workload, KillOnDrop, PgDb, RecordForm, Tansu};

const TOPIC: &str = "dbserver1.bankdb.bank_accounts";

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tributary"));
    c.env("TRIBUTARY_LOG", "warn");
    c
}

fn publish(brokers: &str, file: &Path) {
    let out = bin()
        .arg("publish")
        .arg(file)
        .args(["--kafka-brokers", brokers, "--partitions", "1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "publish: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `tributary run --source kafka --until-caught-up` with `toml` as its config file.
fn sink_until_caught_up(
    dir: &Path,
    brokers: &str,
    pg: &PgDb,
    topics: &str,
    toml: &str,
) -> std::process::Output {
    let cfg = dir.join(format!("sink-{}.toml", unique()));
    std::fs::write(&cfg, toml).unwrap();
    bin()
        .args(["run", "--until-caught-up", "-c"])
        .arg(&cfg)
        .args([
            "--source",
            "kafka",
            "--kafka-brokers",
            brokers,
            "--topics",
            topics,
            "--group",
            "loss",
            "--postgres-url",
            &pg.url,
            "--batch-size",
            "500",
        ])
        .output()
        .unwrap()
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

fn count(pg: &PgDb, sql: &str) -> i64 {
    pg.query(sql)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(-1)
}

/// Lines `from..to` of `src` into a new file.
fn slice(src: &Path, from: usize, to: usize, name: &str) -> PathBuf {
    let text = std::fs::read_to_string(src).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let p = src.with_file_name(name);
    std::fs::write(&p, lines[from..to.min(lines.len())].join("\n") + "\n").unwrap();
    p
}

/// The bank workload's final state and every change exactly once in history (by source
/// position: the Kafka offsets of the two logs overlap).
fn assert_bank_exact(pg: &PgDb, events: u64, final_rows: u64) {
    assert_eq!(
        pg.query("SELECT count(*), count(DISTINCT _source_pos) FROM bankdb.bank_accounts_history")
            .unwrap()
            .trim(),
        format!("{events}\t{events}"),
        "every change exactly once in history"
    );
    assert_eq!(
        count(pg, "SELECT count(*) FROM bankdb.bank_accounts_current"),
        final_rows as i64
    );
    assert_eq!(
        count(pg, "SELECT count(*) FROM bankdb.bank_accounts_current WHERE account <> 'Bank ' || id || ' v2' OR id % 4 = 1"),
        0,
        "current holds the final state"
    );
}

/// The case: the sink applied the first part of a topic, the broker lost its log,
/// the producer went on publishing the later changes into the new (shorter-numbered) log, and
/// its end grew past the stored offset. Seeking to the stored offset would skip every later
/// change below it. With the default policy the sink stops (exit code 6) naming the
/// partition, the stored offset and the evidence, and `status` shows it; with
/// `on_offset_out_of_range = "earliest"` it re-reads the new log and ends exact.
#[test]
fn a_broker_that_lost_its_log_is_a_loud_stop_or_a_re_read() {
    let mut t = Tansu::start().unwrap();
    let pg = PgDb::new("broker_loss").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bank.jsonl");
    let w = write_bank_workload(&f, 400, RecordForm::Envelope).unwrap();
    let events = w.events as usize;
    let first = 600;
    publish(&t.brokers(), &slice(&f, 0, first, "first.jsonl"));
    let out = sink_until_caught_up(dir.path(), &t.brokers(), &pg, TOPIC, "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        count(&pg, "SELECT next_offset FROM tributary.checkpoints WHERE topic = 'dbserver1.bankdb.bank_accounts'"),
        first as i64
    );

    // The broker loses its log; the later changes land in a new log at offsets 0…
    t.restart_empty().unwrap();
    publish(&t.brokers(), &slice(&f, first, events, "rest.jsonl"));
    assert!(
        events - first > first,
        "the new log must grow past the stored offset"
    );

    let t0 = Instant::now();
    let out = sink_until_caught_up(dir.path(), &t.brokers(), &pg, TOPIC, "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "stderr: {err}");
    assert!(
        err.contains("offset out of range")
            && err.contains(TOPIC)
            && err.contains("partition 0")
            && err.contains(&format!("stored next offset {first}"))
            && err.contains("on_offset_out_of_range"),
        "{err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(60));
    // Nothing of the new log was applied past the stored offset.
    assert_eq!(
        count(&pg, "SELECT count(*) FROM bankdb.bank_accounts_history"),
        first as i64
    );
    let status = bin()
        .args(["status", "--json", "--postgres-url", &pg.url])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("offset_problem") && status.contains("stopped"),
        "status: {status}"
    );

    // The documented re-read policy: every change once, current == source.
    let out = sink_until_caught_up(
        dir.path(),
        &t.brokers(),
        &pg,
        TOPIC,
        "[source]\non_offset_out_of_range = \"earliest\"\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_bank_exact(&pg, w.events, w.final_rows);
    assert_eq!(
        count(&pg, "SELECT next_offset FROM tributary.checkpoints WHERE topic = 'dbserver1.bankdb.bank_accounts'"),
        (events - first) as i64
    );
    // And the next run is a no-op (the reset offset and the new mark hold).
    let out = sink_until_caught_up(dir.path(), &t.brokers(), &pg, TOPIC, "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_bank_exact(&pg, w.events, w.final_rows);
}

/// The same loss while the sink is running: it is idle at the end of the log when the broker
/// comes back empty and the later changes arrive. It must not skip them.
#[test]
fn a_running_sink_re_reads_a_lost_log_with_the_earliest_policy() {
    let mut t = Tansu::start().unwrap();
    let pg = PgDb::new("broker_loss_run").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bank.jsonl");
    let w = write_bank_workload(&f, 300, RecordForm::Envelope).unwrap();
    let events = w.events as usize;
    let first = 400;
    publish(&t.brokers(), &slice(&f, 0, first, "first.jsonl"));
    let cfg = dir.path().join("run.toml");
    std::fs::write(&cfg, "[source]\non_offset_out_of_range = \"earliest\"\n").unwrap();
    let mut sink = KillOnDrop(
        bin()
            .args(["run", "-c"])
            .arg(&cfg)
            .args([
                "--source",
                "kafka",
                "--kafka-brokers",
                &t.brokers(),
                "--topics",
                TOPIC,
                "--group",
                "loss-run",
                "--postgres-url",
                &pg.url,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while count(&pg, "SELECT count(*) FROM bankdb.bank_accounts_history") < first as i64 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "first part not applied"
        );
        assert!(sink.0.try_wait().unwrap().is_none(), "sink exited");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3)); // a mark is written
    t.restart_empty().unwrap();
    publish(&t.brokers(), &slice(&f, first, events, "rest.jsonl"));
    let started = Instant::now();
    while count(&pg, "SELECT count(*) FROM bankdb.bank_accounts_history") < events as i64 {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "not everything applied: {} of {events} in history",
            count(&pg, "SELECT count(*) FROM bankdb.bank_accounts_history")
        );
        assert!(sink.0.try_wait().unwrap().is_none(), "sink exited");
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_bank_exact(&pg, w.events, w.final_rows);
    drop(sink);
}

/// `--until-caught-up` against a topic that does not exist, and against a broker that is not
/// there: a non-zero exit (5) within the deadline (`[pipeline] max_outage_secs`), not a hang.
#[test]
fn until_caught_up_ends_with_an_error_when_topics_or_broker_are_missing() {
    let t = Tansu::start().unwrap();
    let pg = PgDb::new("broker_loss_absent").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let toml = "[pipeline]\nmax_outage_secs = 8\n";
    let t0 = Instant::now();
    let out = sink_until_caught_up(dir.path(), &t.brokers(), &pg, "no.such.topic", toml);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "stderr: {err}");
    assert!(
        err.contains("no.such.topic") && err.contains("max_outage_secs"),
        "{err}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(40),
        "took {:?}",
        t0.elapsed()
    );

    let dead = format!("127.0.0.1:{}", tributary_testkit::free_port());
    let t0 = Instant::now();
    let out = sink_until_caught_up(dir.path(), &dead, &pg, TOPIC, toml);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "stderr: {err}");
    assert!(err.contains("max_outage_secs"), "{err}");
    assert!(
        t0.elapsed() < Duration::from_secs(40),
        "took {:?}",
        t0.elapsed()
    );
}
