//! MariaDB 11.8 with its **default** settings (`binlog_legacy_event_pos=OFF`: the headers of the
//! events inside a transaction carry `log_pos` 0; `binlog_row_metadata=NO_LOG`), installed by
//! `scripts/setup` from Debian trixie. Positions taken from those headers were 0, so the current
//! table's stale-update guard refused every streamed change to a snapshot row (history complete,
//! current wrong). These tests stream changes to snapshot rows in direct mode and check current
//! row by row, history exactly once, the stored checkpoint, and that captured records carry the
//! real binlog position of their rows event (as `SHOW BINLOG EVENTS` lists it), increasing.
//! Without 11.8 installed they fail under CI and are skipped (saying so) elsewhere.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as J;
use tributary_testkit::{maria118_or_skip, MariaDb, PgDb};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tributary"));
    c.env("TRIBUTARY_LOG", "warn");
    c
}

fn config(dir: &Path, db: &MariaDb, pg: &PgDb) -> PathBuf {
    let p = dir.join("tributary.toml");
    std::fs::write(
        &p,
        format!(
            "[source]\nkind = \"mysql\"\nurl = \"{}\"\ndatabases = [\"bench\"]\nserver_id = {}\nname = \"dbserver1\"\nsnapshot_chunk_size = 700\n\n[sink]\nurl = \"{}\"\n\n[pipeline]\nbatch_size = 500\nbatch_wait_ms = 20\n",
            db.url(),
            db.server_id + 5000,
            pg.url
        ),
    )
    .unwrap();
    p
}

fn run_until_caught_up(cfg: &Path) {
    let out = bin()
        .args(["run", "-c"])
        .arg(cfg)
        .arg("--until-caught-up")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "run --until-caught-up failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn count(pg: &PgDb, sql: &str) -> i64 {
    pg.query(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .trim()
        .parse()
        .unwrap()
}

const TABLE: &str = "CREATE DATABASE bench;
    CREATE TABLE bench.acct (id INT PRIMARY KEY, v VARCHAR(40), n INT NOT NULL) ENGINE=InnoDB;
    INSERT INTO bench.acct SELECT seq, CONCAT('v', seq), seq FROM bench.seq_1_to_3000;";

/// Changes to snapshot rows (and to rows inserted after it), in every transaction shape:
/// one statement changing 1,000 rows, 200 autocommit single-row updates (repeating rows), a
/// multi-statement transaction changing one row twice, deletes, inserts and their updates.
fn stream_workload(db: &MariaDb) {
    db.sql("UPDATE bench.acct SET v = CONCAT(v, '-u1'), n = n + 1 WHERE id % 3 = 0;")
        .unwrap();
    let singles: String = (1..=200)
        .map(|i| {
            format!(
                "UPDATE bench.acct SET n = n + 100 WHERE id = {};",
                (i * 7) % 1400 + 2
            )
        })
        .collect();
    db.sql(&singles).unwrap();
    db.sql(
        "BEGIN; UPDATE bench.acct SET v = 'a' WHERE id = 5; UPDATE bench.acct SET v = 'b' WHERE id = 5;
         DELETE FROM bench.acct WHERE id = 6; INSERT INTO bench.acct VALUES (5001, 'new', 0);
         UPDATE bench.acct SET n = 1 WHERE id = 5001; COMMIT;",
    )
    .unwrap();
    db.sql("DELETE FROM bench.acct WHERE id % 50 = 1;").unwrap();
    db.sql(
        "INSERT INTO bench.acct SELECT seq, 'ins', 0 FROM bench.seq_3001_to_3100;
         UPDATE bench.acct SET v = 'ins-u', n = id WHERE id > 3000 AND id <= 3100;",
    )
    .unwrap();
}
/// History rows per change type the workload produces.
const UPDATES: i64 = 1000 + 200 + 3 + 100;
const DELETES: i64 = 1 + 61; // id 6; id % 50 = 1 of 1..3000 and 5001
const INSERTS: i64 = 1 + 100;

/// `(file, pos)` of every rows event in the server's binlogs, as the server itself lists them.
fn rows_event_positions(db: &MariaDb) -> BTreeSet<(String, u64)> {
    let mut out = BTreeSet::new();
    for f in db.sql("SHOW BINARY LOGS").unwrap().lines() {
        let file = f.split('\t').next().unwrap();
        for l in db
            .sql(&format!("SHOW BINLOG EVENTS IN '{file}'"))
            .unwrap()
            .lines()
        {
            let c: Vec<&str> = l.split('\t').collect();
            if c[2].ends_with("_rows_v1") || c[2].ends_with("_rows") {
                out.insert((file.to_string(), c[1].parse().unwrap()));
            }
        }
    }
    out
}

fn master_status(db: &MariaDb) -> (String, u64) {
    let s = db.sql("SHOW MASTER STATUS").unwrap();
    let c: Vec<&str> = s.lines().next().unwrap().split('\t').collect();
    (c[0].to_string(), c[1].parse().unwrap())
}

#[test]
fn direct_mode_on_mariadb_118_defaults_applies_streamed_changes_to_snapshot_rows() {
    let Some(db) = maria118_or_skip("direct_mode_on_mariadb_118_defaults") else {
        return;
    };
    assert_eq!(
        db.sql("SELECT @@binlog_legacy_event_pos, @@binlog_row_metadata")
            .unwrap()
            .trim(),
        "0\tNO_LOG",
        "the 11.8 server must run with its defaults"
    );
    let pg = PgDb::new("maria118_direct").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &db, &pg);

    // check: the legacy event position setting is reported as handled, row metadata with its fix.
    let ck = bin().args(["check", "-c"]).arg(&cfg).output().unwrap();
    let text = String::from_utf8_lossy(&ck.stdout);
    assert!(ck.status.success(), "check: {text}");
    assert!(
        text.contains("OK    binlog_legacy_event_pos: OFF — handled"),
        "{text}"
    );
    assert!(
        text.contains("WARN  binlog_row_metadata: found NO_LOG, required FULL"),
        "{text}"
    );
    assert!(
        text.contains("SET GLOBAL binlog_row_metadata=FULL"),
        "{text}"
    );

    db.sql(TABLE).unwrap();
    run_until_caught_up(&cfg);
    assert_eq!(count(&pg, "SELECT count(*) FROM bench.acct_current"), 3000);
    stream_workload(&db);
    run_until_caught_up(&cfg);

    // Current equals the source, row by row.
    let source = db
        .sql("SELECT id, v, n FROM bench.acct ORDER BY id")
        .unwrap();
    let current = pg
        .query("SELECT id, v, n FROM bench.acct_current ORDER BY id")
        .unwrap();
    if source != current {
        let s: BTreeSet<&str> = source.lines().collect();
        let c: BTreeSet<&str> = current.lines().collect();
        let missing: Vec<_> = s.difference(&c).take(5).collect();
        let wrong: Vec<_> = c.difference(&s).take(5).collect();
        panic!(
            "current differs from the source: {} source rows not in current (e.g. {missing:?}), \
             {} current rows not in the source (e.g. {wrong:?})",
            s.difference(&c).count(),
            c.difference(&s).count()
        );
    }
    // History: every change exactly once.
    let kinds = pg
        .query("SELECT change_type, count(*) FROM bench.acct_history GROUP BY 1 ORDER BY 1")
        .unwrap();
    assert_eq!(
        kinds,
        format!("DELETE\t{DELETES}\nINSERT\t{INSERTS}\nSNAPSHOT\t3000\nUPDATE\t{UPDATES}\n")
    );
    // Streamed changes carry the positions of their rows events, each (pos, row) once.
    let events = rows_event_positions(&db);
    let rows = pg
        .query(
            "SELECT _source_file, _source_pos, _source_row FROM bench.acct_history
             WHERE change_type <> 'SNAPSHOT' ORDER BY _source_file, _source_pos, _source_row",
        )
        .unwrap();
    let mut seen = BTreeSet::new();
    for l in rows.lines() {
        let c: Vec<&str> = l.split('\t').collect();
        let at = (c[0].to_string(), c[1].parse::<u64>().unwrap());
        assert!(
            events.contains(&at),
            "history position {at:?} is not a rows event of the binlog"
        );
        assert!(seen.insert((at, c[2].to_string())), "{l} twice");
    }
    // The stored checkpoint is the server's position (caught up), not 0 or a header's value.
    let (file, pos) = master_status(&db);
    let cp = pg
        .query("SELECT position->>'file', position->>'pos' FROM tributary.checkpoints WHERE pipeline = 'mysql:dbserver1'")
        .unwrap();
    assert_eq!(cp.trim(), format!("{file}\t{pos}"));
    // A further bounded run adds nothing.
    run_until_caught_up(&cfg);
    assert_eq!(
        count(&pg, "SELECT count(*) FROM bench.acct_history"),
        3000 + UPDATES + DELETES + INSERTS
    );
}

#[test]
fn capture_on_mariadb_118_defaults_records_real_increasing_positions() {
    let Some(db) = maria118_or_skip("capture_on_mariadb_118_defaults") else {
        return;
    };
    db.sql(TABLE).unwrap();
    // A capture user with a password and only the privileges capture needs (the binlog dump
    // that counts positions authenticates on its own).
    db.sql(
        "CREATE USER cap@'%' IDENTIFIED BY 'cap-pw';
         GRANT SELECT, RELOAD, REPLICATION SLAVE, BINLOG MONITOR ON *.* TO cap@'%';",
    )
    .unwrap();
    let url = format!("mysql://cap:cap-pw@127.0.0.1:{}", db.port);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cap.jsonl");
    let capture = || {
        let o = bin()
            .args(["capture", "--mysql-url", &url, "--databases", "bench"])
            .args(["--topic-prefix", "dbserver1", "--server-id"])
            .arg((db.server_id + 7000).to_string())
            .args(["--until-caught-up", "--output"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "capture failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    capture();
    stream_workload(&db);
    capture();
    let events = rows_event_positions(&db);
    let mut last: Option<(u64, u64, u64)> = None;
    let (mut snapshot, mut streamed) = (0, 0);
    for l in std::fs::read_to_string(&out).unwrap().lines() {
        let j: J = serde_json::from_str(l).unwrap();
        if j["topic"] != "dbserver1.bench.acct" || j["value"].is_null() {
            continue;
        }
        let v = match j["value"].get("payload") {
            Some(p) => p,
            None => &j["value"],
        };
        let s = &v["source"];
        if v["op"] == "r" {
            snapshot += 1;
            continue;
        }
        streamed += 1;
        let file = s["file"].as_str().unwrap().to_string();
        let pos = s["pos"].as_u64().unwrap();
        let row = s["row"].as_u64().unwrap();
        assert!(pos > 0, "{l}");
        assert!(
            events.contains(&(file.clone(), pos)),
            "captured position {file}:{pos} is not a rows event of the binlog: {l}"
        );
        let seq: u64 = file.rsplit('.').next().unwrap().parse().unwrap();
        let key = (seq, pos, row);
        if let Some(prev) = last {
            assert!(key > prev, "positions must increase: {prev:?} then {key:?}");
        }
        last = Some(key);
    }
    assert_eq!(snapshot, 3000);
    assert_eq!(streamed, UPDATES + DELETES + INSERTS);
    // The capture's own stored position is the server's.
    let st: J = serde_json::from_str(
        &std::fs::read_to_string(format!("{}.position.json", out.display())).unwrap(),
    )
    .unwrap();
    let (file, pos) = master_status(&db);
    assert_eq!(
        (st["file"].as_str().unwrap(), st["pos"].as_u64().unwrap()),
        (file.as_str(), pos)
    );
}

/// `binlog_legacy_event_pos` switched from ON to OFF while direct mode streams: the dump opened
/// with header positions is replaced by one that counts them, and nothing is lost.
#[test]
fn legacy_event_pos_switched_off_while_streaming() {
    let Some(db) = tributary_testkit::maria118_or_skip_with(
        "legacy_event_pos_switched_off_while_streaming",
        &["--binlog-legacy-event-pos=ON"],
    ) else {
        return;
    };
    let pg = PgDb::new("maria118_switch").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &db, &pg);
    db.sql(TABLE).unwrap();
    let mut child = tributary_testkit::KillOnDrop(
        bin()
            .args(["run", "-c"])
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let wait_for = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !f() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    wait_for("the snapshot", &|| {
        pg.query("SELECT count(*) FROM bench.acct_current")
            .map(|s| s.trim() == "3000")
            .unwrap_or(false)
    });
    db.sql("UPDATE bench.acct SET v = 'legacy' WHERE id <= 100;")
        .unwrap();
    wait_for("updates with header positions", &|| {
        pg.query("SELECT count(*) FROM bench.acct_current WHERE v = 'legacy'")
            .map(|s| s.trim() == "100")
            .unwrap_or(false)
    });
    db.sql("SET GLOBAL binlog_legacy_event_pos = OFF").unwrap();
    stream_workload(&db);
    let source = db
        .sql("SELECT id, v, n FROM bench.acct ORDER BY id")
        .unwrap();
    wait_for("current to equal the source", &|| {
        pg.query("SELECT id, v, n FROM bench.acct_current ORDER BY id")
            .map(|c| c == source)
            .unwrap_or(false)
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "the pipeline must keep running"
    );
    let kinds = pg
        .query("SELECT change_type, count(*) FROM bench.acct_history GROUP BY 1 ORDER BY 1")
        .unwrap();
    assert_eq!(
        kinds,
        format!(
            "DELETE\t{DELETES}\nINSERT\t{INSERTS}\nSNAPSHOT\t3000\nUPDATE\t{}\n",
            UPDATES + 100
        )
    );
    let events = rows_event_positions(&db);
    for l in pg
        .query("SELECT _source_file, _source_pos FROM bench.acct_history WHERE change_type <> 'SNAPSHOT'")
        .unwrap()
        .lines()
    {
        let (f, p) = l.split_once('\t').unwrap();
        assert!(
            events.contains(&(f.to_string(), p.parse().unwrap())),
            "history position {l} is not a rows event of the binlog"
        );
    }
}

/// A rows event larger than one protocol packet (16 MiB) reaches the warehouse intact, and the
/// positions after it are still counted right.
#[test]
fn rows_event_over_16_mib_on_mariadb_118_defaults() {
    let Some(db) = maria118_or_skip("rows_event_over_16_mib_on_mariadb_118_defaults") else {
        return;
    };
    db.sql("SET GLOBAL max_allowed_packet = 256 * 1024 * 1024")
        .unwrap();
    db.sql(
        "CREATE DATABASE bench; CREATE TABLE bench.big (id INT PRIMARY KEY, b LONGTEXT) ENGINE=InnoDB;
         INSERT INTO bench.big VALUES (1, 'small');",
    )
    .unwrap();
    let pg = PgDb::new("maria118_big").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &db, &pg);
    run_until_caught_up(&cfg);
    // 20 MiB and 17 MiB values: the update's event (before + after image) is ~37 MiB.
    db.sql(
        "INSERT INTO bench.big VALUES (2, REPEAT('x', 20 * 1024 * 1024));
         UPDATE bench.big SET b = CONCAT(REPEAT('y', 17 * 1024 * 1024), 'end') WHERE id = 1;
         UPDATE bench.big SET b = 'after' WHERE id = 2;
         INSERT INTO bench.big VALUES (3, 'last');",
    )
    .unwrap();
    run_until_caught_up(&cfg);
    let source = db
        .sql("SELECT id, LENGTH(b), MD5(b) FROM bench.big ORDER BY id")
        .unwrap();
    let current = pg
        .query("SELECT id, octet_length(b), md5(b) FROM bench.big_current ORDER BY id")
        .unwrap();
    assert_eq!(current, source);
    assert_eq!(
        pg.query("SELECT change_type, count(*) FROM bench.big_history GROUP BY 1 ORDER BY 1")
            .unwrap(),
        "INSERT\t2\nSNAPSHOT\t1\nUPDATE\t2\n"
    );
    let events = rows_event_positions(&db);
    for l in pg
        .query("SELECT _source_file, _source_pos FROM bench.big_history WHERE change_type <> 'SNAPSHOT'")
        .unwrap()
        .lines()
    {
        let (f, p) = l.split_once('\t').unwrap();
        assert!(
            events.contains(&(f.to_string(), p.parse().unwrap())),
            "history position {l} is not a rows event of the binlog"
        );
    }
}
