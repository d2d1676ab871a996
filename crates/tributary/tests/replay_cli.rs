//! `tributary replay` as users run it: real PostgreSQL, real files, real process kills.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tributary_testkit::{golden, write_bank_workload, PgDb, RecordForm};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tributary"));
    c.env("TRIBUTARY_LOG", "warn");
    c
}

fn replay(db: &PgDb, files: &[&std::path::Path], extra: &[&str]) -> String {
    let out = bin()
        .arg("replay")
        .args(files)
        .args(["--postgres-url", &db.url])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn golden_replay_twice_is_a_no_op() {
    let db = PgDb::new("cli_golden").unwrap();
    let files = [golden("envelope-schemas.jsonl")];
    let files: Vec<&std::path::Path> = files.iter().map(|p| p.as_path()).collect();
    let out = replay(&db, &files, &["--batch-size", "5"]);
    assert_eq!(
        out.trim(),
        "applied 16 change(s), 0 already applied, 0 dead-lettered"
    );
    let snapshot = db
        .query("SELECT * FROM typesdb.all_types_current ORDER BY id")
        .unwrap();
    let hist = db
        .query("SELECT count(*) FROM typesdb.all_types_history")
        .unwrap();
    // Same file again: the stored offsets skip everything.
    let out = replay(&db, &files, &[]);
    assert_eq!(
        out.trim(),
        "applied 0 change(s), 0 already applied, 0 dead-lettered"
    );
    // Under another pipeline name nothing is skipped by offset: history's identity refuses it.
    let out = replay(&db, &files, &["--pipeline", "other"]);
    assert_eq!(
        out.trim(),
        "applied 0 change(s), 16 already applied, 0 dead-lettered"
    );
    assert_eq!(
        db.query("SELECT * FROM typesdb.all_types_current ORDER BY id")
            .unwrap(),
        snapshot
    );
    assert_eq!(
        db.query("SELECT count(*) FROM typesdb.all_types_history")
            .unwrap(),
        hist
    );
}

#[test]
fn bad_records_are_dead_lettered_with_coordinates_and_retryable() {
    let db = PgDb::new("cli_dlq").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.jsonl");
    let good = r#"{"topic":"dbserver1.bankdb.bank_accounts","partition":0,"offset":0,"key":{"id":1},"value":{"id":1,"user_id":1001,"account":"KB","__deleted":"false"}}"#;
    let not_json = r#"{"topic":"dbserver1.bankdb.bank_accounts","partition":0,"offset":1,"key":{"id":2},"value":"{not json"}"#;
    let bad_op = r#"{"topic":"dbserver1.bankdb.bank_accounts","partition":0,"offset":2,"key":{"id":3},"value":{"before":null,"after":{"id":3},"source":{"db":"bankdb","table":"bank_accounts","file":"f.1","pos":1,"row":0},"op":"x"}}"#;
    let good2 = r#"{"topic":"dbserver1.bankdb.bank_accounts","partition":0,"offset":3,"key":{"id":4},"value":{"id":4,"user_id":1004,"account":"Hana","__deleted":"false"}}"#;
    std::fs::write(&f, [good, not_json, bad_op, good2].join("\n")).unwrap();
    let out = replay(&db, &[&f], &[]);
    assert_eq!(
        out.trim(),
        "applied 2 change(s), 0 already applied, 2 dead-lettered"
    );
    let dl = db
        .query("SELECT kafka_offset, stage, record_value IS NOT NULL, reason FROM tributary.dead_letters ORDER BY kafka_offset")
        .unwrap();
    let lines: Vec<&str> = dl.lines().collect();
    assert_eq!(lines.len(), 2, "{dl}");
    assert!(
        lines[0].starts_with("1\tdecode\tt\t") && lines[0].contains("bank_accounts/0@1"),
        "{dl}"
    );
    assert!(
        lines[1].starts_with("2\tdecode\tt\t") && lines[1].contains("\"x\""),
        "{dl}"
    );
    // The checkpoint moved past the bad records: nothing stalls behind them.
    assert_eq!(
        db.query("SELECT next_offset FROM tributary.checkpoints")
            .unwrap()
            .trim(),
        "4"
    );
    // dlq list shows them; retry keeps failing ones (exit 4) and says why.
    let list = bin()
        .args(["dlq", "list", "--postgres-url", &db.url])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains("decode stage"));
    let retry = bin()
        .args(["dlq", "retry", "--postgres-url", &db.url])
        .output()
        .unwrap();
    assert_eq!(
        retry.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&retry.stderr)
    );
    assert_eq!(
        db.query("SELECT count(*), min(retry_count) FROM tributary.dead_letters WHERE resolved_at IS NULL").unwrap().trim(),
        "2\t1"
    );
    // Fix the record in place (as an operator would after fixing the producer) and retry it.
    db.query(&format!(
        "UPDATE tributary.dead_letters SET record_value = convert_to('{}', 'UTF8') WHERE kafka_offset = 1",
        r#"{"id":2,"user_id":1002,"account":"Shinhan","__deleted":"false"}"#
    ))
    .unwrap();
    let retry = bin()
        .args(["dlq", "retry", "--postgres-url", &db.url])
        .output()
        .unwrap();
    assert_eq!(retry.status.code(), Some(4));
    assert_eq!(
        db.query("SELECT id, account FROM bankdb.bank_accounts_current ORDER BY id")
            .unwrap()
            .trim(),
        "1\tKB\n2\tShinhan\n4\tHana"
    );
    assert_eq!(
        db.query("SELECT count(*) FROM tributary.dead_letters WHERE resolved_at IS NULL")
            .unwrap()
            .trim(),
        "1"
    );
}

/// `kill -9` of replay in the middle of a large file, then a restart: the final tables are
/// exact and no history row is duplicated. Repeated at several points of the run.
#[test]
fn kill_9_mid_replay_then_restart_is_exact() {
    let db = PgDb::new("cli_kill").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bank.jsonl");
    let w = write_bank_workload(&f, 12_000, RecordForm::Envelope).unwrap();
    let mut kills = 0;
    for target in [3_000u64, 15_000, 30_000] {
        let mut child = bin()
            .arg("replay")
            .arg(&f)
            .args(["--postgres-url", &db.url, "--batch-size", "500"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let n: u64 = db
                .query("SELECT count(*) FROM bankdb.bank_accounts_history")
                .map(|s| s.trim().parse().unwrap_or(0))
                .unwrap_or(0);
            if n >= target || child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(
        kills >= 2,
        "the replay finished before it could be killed; make the workload larger"
    );
    let out = replay(&db, &[&f], &["--batch-size", "500"]);
    assert!(out.contains("0 already applied"), "{out}");
    let hist = db
        .query("SELECT count(*), count(DISTINCT _event_id), count(DISTINCT _kafka_offset) FROM bankdb.bank_accounts_history")
        .unwrap();
    assert_eq!(hist.trim(), format!("{0}\t{0}\t{0}", w.events));
    assert_eq!(
        db.query("SELECT count(*) FROM bankdb.bank_accounts_current")
            .unwrap()
            .trim(),
        w.final_rows.to_string()
    );
    assert_eq!(
        db.query("SELECT count(*) FROM bankdb.bank_accounts_current WHERE account <> 'Bank ' || id || ' v2' OR id % 4 = 1")
            .unwrap()
            .trim(),
        "0"
    );
    assert_eq!(
        db.query("SELECT next_offset FROM tributary.checkpoints WHERE pipeline = 'replay'")
            .unwrap()
            .trim(),
        w.events.to_string()
    );
}

/// A TCP proxy in front of PostgreSQL that can cut every connection and refuse new ones.
struct Proxy {
    port: u16,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    fn start(target: u16) -> Proxy {
        use std::sync::atomic::Ordering;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (d, c) = (down.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in l.incoming() {
                let Ok(client) = client else { continue };
                if d.load(Ordering::SeqCst) {
                    drop(client); // refused while "down"
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                c.lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                for (mut a, mut b) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut a, &mut b);
                        let _ = b.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, down, conns }
    }

    /// Cut every connection and refuse new ones.
    fn outage(&self) {
        self.down.store(true, std::sync::atomic::Ordering::SeqCst);
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn recover(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A PostgreSQL outage in the middle of a replay is retried (with backoff and reconnect),
/// not dead-lettered, and the result is exact.
#[test]
fn postgres_outage_mid_replay_is_retried_not_dead_lettered() {
    let db = PgDb::new("cli_outage").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bank.jsonl");
    let w = write_bank_workload(&f, 12_000, RecordForm::Envelope).unwrap();
    let port: u16 = tributary_testkit::pg_base_url()
        .rsplit_once(':')
        .and_then(|(_, r)| r.split('/').next()?.parse().ok())
        .unwrap_or(5432);
    let proxy = Proxy::start(port);
    let url = db
        .url
        .replacen(&format!(":{port}/"), &format!(":{}/", proxy.port), 1);
    assert_ne!(url, db.url, "the proxy must be in the path");
    let child = bin()
        .arg("replay")
        .arg(&f)
        .args(["--postgres-url", &url, "--batch-size", "500"])
        .env("TRIBUTARY_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while db
        .query("SELECT count(*) FROM bankdb.bank_accounts_history")
        .map(|s| s.trim().parse::<u64>().unwrap_or(0))
        .unwrap_or(0)
        < 5_000
    {
        assert!(Instant::now() < deadline, "replay made no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    proxy.outage();
    std::thread::sleep(Duration::from_secs(3));
    proxy.recover();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("retrying"),
        "the outage was seen and retried: {stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 dead-lettered"));
    assert_eq!(
        db.query("SELECT count(*), count(DISTINCT _event_id) FROM bankdb.bank_accounts_history")
            .unwrap()
            .trim(),
        format!("{0}\t{0}", w.events)
    );
    assert_eq!(
        db.query("SELECT count(*) FROM bankdb.bank_accounts_current")
            .unwrap()
            .trim(),
        w.final_rows.to_string()
    );
    assert_eq!(
        db.query("SELECT count(*) FROM tributary.dead_letters")
            .unwrap()
            .trim(),
        "0"
    );
}
