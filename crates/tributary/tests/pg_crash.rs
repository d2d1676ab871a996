//! A PostgreSQL crash under load (a private cluster stopped with `pg_ctl stop -m immediate`,
//! default settings, tributary's sessions on `synchronous_commit = off`): the crash loses
//! commits PostgreSQL had acknowledged, so the stored position goes back. The surviving
//! tributary process must re-read from that stored position — never go on from the one in
//! its memory, which would leave a gap forever. Direct mode, real MariaDB with binlog.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tributary_testkit::{free_port, KillOnDrop, MariaDb};

/// A private PostgreSQL 15 cluster owned by the `postgres` user, on a free port.
struct PrivatePg {
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
}

fn as_postgres(cmd: &Path) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(cmd);
    c
}

impl PrivatePg {
    fn start() -> PrivatePg {
        let ver = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL binaries in /usr/lib/postgresql")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .max_by_key(|v| v.parse::<u32>().unwrap_or(0))
            .unwrap();
        let bin = PathBuf::from(format!("/usr/lib/postgresql/{ver}/bin"));
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success());
        let data = dir.path().join("data");
        let out = as_postgres(&bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pg = PrivatePg {
            dir,
            port: free_port(),
            bin,
        };
        pg.pg_ctl_start();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn pg_ctl_start(&self) {
        let out = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args([
                "-w",
                "-o",
                &format!(
                    "-p {} -k {} -c listen_addresses=127.0.0.1",
                    self.port,
                    self.dir.path().display()
                ),
                "start",
            ])
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn crash(&self) {
        let out = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "stop"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn query(&self, sql: &str) -> String {
        tributary_testkit::psql(&self.url(), sql).unwrap_or_default()
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

fn count(pg: &PrivatePg, sql: &str) -> i64 {
    pg.query(sql).trim().parse().unwrap_or(-1)
}

#[test]
fn a_postgres_crash_that_loses_commits_is_read_again() {
    let db = MariaDb::start().unwrap();
    let pg = PrivatePg::start();
    db.sql(
        "CREATE DATABASE crash; CREATE TABLE crash.t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB;
         INSERT INTO crash.t SELECT seq, 0 FROM crash.seq_1_to_200;",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("t.toml");
    std::fs::write(
        &cfg,
        format!(
            "[source]\nurl = \"{}\"\ndatabases = [\"crash\"]\nserver_id = {}\n\n[sink]\nurl = \"{}\"\n\n[pipeline]\nbatch_size = 50\nbatch_wait_ms = 5\n",
            db.url(),
            db.server_id + 5000,
            pg.url()
        ),
    )
    .unwrap();
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tributary"))
            .env("TRIBUTARY_LOG", "warn")
            .args(["run", "-c"])
            .arg(&cfg)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut child = KillOnDrop(run(&[]));
    let started = Instant::now();
    while count(&pg, "SELECT count(*) FROM crash.t_current") < 200 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "snapshot not applied"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A steady writer: single-row transactions, while PostgreSQL crashes twice.
    let writer = {
        let port = db.port;
        std::thread::spawn(move || {
            let mut sql = String::new();
            for i in 0..3000 {
                sql.push_str(&format!(
                    "UPDATE crash.t SET v = v + 1 WHERE id = {}; SELECT SLEEP(0.002);\n",
                    1 + i % 200
                ));
            }
            let mut c = Command::new("mariadb")
                .args([
                    "--no-defaults",
                    "-h127.0.0.1",
                    &format!("-P{port}"),
                    "-uroot",
                    "-N",
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            use std::io::Write;
            c.stdin.take().unwrap().write_all(sql.as_bytes()).unwrap();
            assert!(c.wait().unwrap().success());
        })
    };
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(1500));
        pg.crash();
        std::thread::sleep(Duration::from_secs(3));
        pg.pg_ctl_start();
    }
    writer.join().unwrap();
    // The process that survived the crashes catches up by itself.
    let want = db.sql("SELECT sum(v) FROM crash.t").unwrap();
    let started = Instant::now();
    loop {
        let got = pg.query("SELECT sum(v) FROM crash.t_current");
        let hist = count(
            &pg,
            "SELECT count(*) FROM crash.t_history WHERE change_type = 'UPDATE'",
        );
        if got.trim() == want.trim() && hist == 3000 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "warehouse never caught up: sum {got:?} vs source {want:?}, {hist} of 3000 updates in history"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    child.kill().unwrap();
    let _ = child.wait();
    let src = db.sql("SELECT id, v FROM crash.t ORDER BY id").unwrap();
    let dst = pg.query("SELECT id, v FROM crash.t_current ORDER BY id");
    assert_eq!(src.trim(), dst.trim());
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) - count(DISTINCT _event_id) FROM crash.t_history"
        ),
        0
    );
}

/// The same crash under a Kafka sink: the stored offsets go back with the lost commits; the
/// sink must seek back to them, not go on from its fetch position.
#[test]
fn a_postgres_crash_under_the_kafka_sink_is_read_again() {
    use tributary_testkit::{write_bank_workload, RecordForm, Tansu};
    let t = Tansu::start().unwrap();
    let pg = PrivatePg::start();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bank.jsonl");
    let w = write_bank_workload(&f, 6_000, RecordForm::Envelope).unwrap();
    // Published in parts over time, while the sink applies and PostgreSQL crashes.
    let text = std::fs::read_to_string(&f).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let chunks: Vec<PathBuf> = lines
        .chunks(lines.len() / 8 + 1)
        .enumerate()
        .map(|(i, c)| {
            let p = dir.path().join(format!("part{i}.jsonl"));
            std::fs::write(&p, c.join("\n") + "\n").unwrap();
            p
        })
        .collect();
    let publish = |p: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_tributary"))
            .env("TRIBUTARY_LOG", "warn")
            .arg("publish")
            .arg(p)
            .args(["--kafka-brokers", &t.brokers(), "--partitions", "2"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "publish: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    publish(&chunks[0]);
    let mut sink = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_tributary"))
            .env("TRIBUTARY_LOG", "warn")
            .args([
                "run",
                "--source",
                "kafka",
                "--kafka-brokers",
                &t.brokers(),
                "--topics",
                "dbserver1.bankdb.bank_accounts",
                "--group",
                "crash",
                "--postgres-url",
                &pg.url(),
                "--batch-size",
                "300",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while count(&pg, "SELECT count(*) FROM bankdb.bank_accounts_history") < 100 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing applied"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for (i, c) in chunks.iter().enumerate().skip(1) {
        publish(c);
        if i == 3 || i == 6 {
            pg.crash();
            std::thread::sleep(Duration::from_secs(2));
            pg.pg_ctl_start();
        }
    }
    let started = Instant::now();
    loop {
        let n = count(&pg, "SELECT count(DISTINCT (_kafka_partition, _kafka_offset)) FROM bankdb.bank_accounts_history");
        if n == w.events as i64 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{n} of {} changes in history; checkpoints {}",
            w.events,
            pg.query("SELECT topic, kafka_partition, next_offset FROM tributary.checkpoints")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    sink.kill().unwrap();
    let _ = sink.wait();
    assert_eq!(
        count(&pg, "SELECT count(*) FROM bankdb.bank_accounts_history"),
        w.events as i64,
        "every change once"
    );
    assert_eq!(
        count(&pg, "SELECT count(*) FROM bankdb.bank_accounts_current"),
        w.final_rows as i64
    );
    assert_eq!(
        count(&pg, "SELECT count(*) FROM bankdb.bank_accounts_current WHERE account <> 'Bank ' || id || ' v2' OR id % 4 = 1"),
        0
    );
}

/// The same crash under `tributary replay`: the commits PostgreSQL lost are replayed again
/// (the files are read again from the offsets stored after the crash), not skipped.
#[test]
fn a_postgres_crash_under_replay_is_read_again() {
    use tributary_testkit::{write_bank_workload, RecordForm};
    let pg = PrivatePg::start();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bank.jsonl");
    let w = write_bank_workload(&f, 40_000, RecordForm::Envelope).unwrap();
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_tributary"))
            .env("TRIBUTARY_LOG", "warn")
            .arg("replay")
            .arg(&f)
            .args(["--postgres-url", &pg.url(), "--batch-size", "2000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while count(&pg, "SELECT count(*) FROM bankdb.bank_accounts_history") < 5_000 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing applied"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..2 {
        pg.crash();
        std::thread::sleep(Duration::from_millis(1500));
        pg.pg_ctl_start();
        std::thread::sleep(Duration::from_millis(700));
    }
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "replay did not finish"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success());
    assert_eq!(
        count(&pg, "SELECT count(DISTINCT (_kafka_partition, _kafka_offset)) FROM bankdb.bank_accounts_history"),
        w.events as i64,
        "every change applied"
    );
    assert_eq!(
        count(&pg, "SELECT count(*) FROM bankdb.bank_accounts_history"),
        w.events as i64
    );
    assert_eq!(
        count(&pg, "SELECT count(*) FROM bankdb.bank_accounts_current"),
        w.final_rows as i64
    );
}
