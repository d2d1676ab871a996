//! Binlog epochs and lost positions, direct mode against a private MariaDB and PostgreSQL.
//!
//! * `RESET MASTER` while tributary streams: the open dump waited on the deleted file forever
//!   and every later change was silently missing; and a restart compared the new numbering's
//!   `bin.000001` positions with the old ones, so the current table's guard refused them. Now
//!   the new numbering is a new epoch: changes after the reset reach current, history has each
//!   once, the stored checkpoint says epoch 2 after two resets.
//! * A purged stored position: a clear error naming the file and the fix, `check` reports it,
//!   `tributary resnapshot` recovers — rows deleted while tributary was away are deleted from
//!   current with a DELETE in history (no ghost rows), and streaming goes on.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{bin, direct_config};

/// `tributary run --until-caught-up -c cfg`, which must succeed within 120 s.
fn until_caught_up(cfg: &std::path::Path) {
    common::until_caught_up_within(cfg, Duration::from_secs(120));
}

use tributary_testkit::{maria118_or_skip, mysql97_or_skip, Flavor, KillOnDrop, MariaDb, PgDb};

fn source_rows(db: &MariaDb) -> String {
    db.sql("SELECT id, v FROM ep.t ORDER BY id").unwrap()
}

fn current_rows(pg: &PgDb) -> String {
    pg.query("SELECT id, v FROM ep.t_current ORDER BY id")
        .unwrap_or_default()
}

fn count(pg: &PgDb, sql: &str) -> i64 {
    pg.query(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .trim()
        .parse()
        .unwrap()
}

/// Wait until current equals the source (a running `tributary run`), or fail saying how they
/// differ and what tributary logged.
fn wait_equal(db: &MariaDb, pg: &PgDb, log: &Path, what: &str) {
    let t0 = Instant::now();
    loop {
        let (s, c) = (source_rows(db), current_rows(pg));
        if s == c {
            return;
        }
        if t0.elapsed() > Duration::from_secs(40) {
            let diff: Vec<String> = s
                .lines()
                .zip(c.lines())
                .filter(|(a, b)| a != b)
                .take(5)
                .map(|(a, b)| format!("source {a:?} current {b:?}"))
                .collect();
            panic!(
                "{what}: current never equalled the source ({} vs {} rows; first differences \
                 {diff:?}); tributary log:\n{}",
                s.lines().count(),
                c.lines().count(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn spawn_run(cfg: &Path, log: &Path) -> KillOnDrop {
    KillOnDrop(
        bin()
            .args(["run", "-c"])
            .arg(cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

fn stored_epoch(pg: &PgDb) -> i64 {
    count(
        pg,
        "SELECT COALESCE((position->>'epoch')::int, 0) FROM tributary.checkpoints WHERE kafka_partition = -1",
    )
}

fn setup(db: &MariaDb) -> String {
    format!(
        "CREATE DATABASE ep;
         CREATE TABLE ep.t (id INT PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB;
         INSERT INTO ep.t SELECT seq, 0 FROM {} AS s;",
        db.seq(1, 50)
    )
}

#[test]
fn reset_master_mid_stream_and_while_stopped_changes_after_it_reach_current() {
    reset_master(MariaDb::start().unwrap(), "epoch_reset");
}

/// The same on MariaDB 11.8 with its defaults (positions counted by tributary's own dump).
#[test]
fn reset_master_on_mariadb_118_defaults() {
    let Some(db) = maria118_or_skip("reset_master_on_mariadb_118_defaults") else {
        return;
    };
    reset_master(db, "epoch_reset118");
}

/// The same on Oracle MySQL 9.7 (`RESET BINARY LOGS AND GTIDS`, GTIDs on).
#[test]
fn reset_binary_logs_and_gtids_on_mysql_97() {
    let Some(db) = mysql97_or_skip("reset_binary_logs_and_gtids_on_mysql_97") else {
        return;
    };
    reset_master(db, "epoch_reset97");
}

fn reset_master(db: MariaDb, tag: &str) {
    let reset = if db.flavor == Flavor::Mysql97 {
        "RESET BINARY LOGS AND GTIDS"
    } else {
        "RESET MASTER"
    };
    let pg = PgDb::new(tag).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = direct_config(dir.path(), &db, &pg, "ep", "[pipeline]\nbatch_size = 100\n");
    let log = dir.path().join("run.log");
    db.sql(&setup(&db)).unwrap();
    let mut updates = 0i64;
    {
        let _run = spawn_run(&cfg, &log);
        wait_equal(&db, &pg, &log, "snapshot");
        // Enough changes to move the position well past where the new numbering starts.
        for _ in 0..20 {
            db.sql("UPDATE ep.t SET v = v + 1 WHERE id <= 25").unwrap();
            updates += 25;
        }
        wait_equal(&db, &pg, &log, "before the reset");
        db.sql(reset).unwrap();
        for i in 0..5 {
            db.sql(&format!(
                "UPDATE ep.t SET v = v + 1000 WHERE id % 2 = {}",
                i % 2
            ))
            .unwrap();
            updates += 25;
        }
        db.sql("DELETE FROM ep.t WHERE id = 3; INSERT INTO ep.t VALUES (51, 7)")
            .unwrap();
        wait_equal(&db, &pg, &log, "after RESET MASTER while streaming");
    }
    assert_eq!(stored_epoch(&pg), 1, "one new numbering seen");

    // Stopped across another reset; the new bin.000001 grows past the stored position (same
    // file name, different file) before tributary starts again.
    db.sql(reset).unwrap();
    for i in 0..30 {
        db.sql(&format!("UPDATE ep.t SET v = v + 3 WHERE id > {}", i + 10))
            .unwrap();
        updates += 40 - i as i64 + 1;
    }
    until_caught_up(&cfg);
    assert_eq!(
        source_rows(&db),
        current_rows(&pg),
        "after a reset while stopped"
    );
    assert_eq!(stored_epoch(&pg), 2);

    // History: every change once.
    let kinds = pg
        .query("SELECT change_type, count(*) FROM ep.t_history GROUP BY 1 ORDER BY 1")
        .unwrap();
    assert_eq!(
        kinds,
        format!("DELETE\t1\nINSERT\t1\nSNAPSHOT\t50\nUPDATE\t{updates}\n")
    );
}

fn history_kinds(pg: &PgDb) -> String {
    pg.query("SELECT change_type, count(*) FROM ep.t_history GROUP BY 1 ORDER BY 1")
        .unwrap()
}

#[test]
fn purged_stored_position_is_a_clear_error_check_reports_it_and_resnapshot_recovers() {
    let db = MariaDb::start().unwrap();
    let pg = PgDb::new("epoch_purge").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = direct_config(dir.path(), &db, &pg, "ep", "[pipeline]\nbatch_size = 100\n");
    db.sql(&setup(&db)).unwrap();
    until_caught_up(&cfg);
    assert_eq!(source_rows(&db), current_rows(&pg));

    // While tributary is stopped: changes, then the binlogs holding them are purged.
    db.sql(
        "UPDATE ep.t SET v = 9 WHERE id <= 10; DELETE FROM ep.t WHERE id > 40;
         INSERT INTO ep.t VALUES (60, 60); FLUSH BINARY LOGS;
         UPDATE ep.t SET v = 8 WHERE id = 1; FLUSH BINARY LOGS;",
    )
    .unwrap();
    let last = db.sql("SHOW BINARY LOGS").unwrap();
    let last = last.lines().last().unwrap().split('\t').next().unwrap();
    // (MariaDB keeps a file until its binlog checkpoint is written: retry the purge.)
    let t0 = Instant::now();
    loop {
        db.sql(&format!("PURGE BINARY LOGS TO '{last}'")).unwrap();
        let first = db.sql("SHOW BINARY LOGS").unwrap();
        if first.lines().next().unwrap().starts_with(last) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "binlogs not purged: {first}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A clear, definite error naming the file and the fix (was: a raw ERROR 1236).
    let out = bin()
        .env("TRIBUTARY_LOG", "info")
        .args(["run", "--until-caught-up", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "run must stop: {err}");
    assert!(
        err.contains("bin.000001")
            && err.contains("purged")
            && err.contains("tributary resnapshot"),
        "{err}"
    );
    // check reports it.
    let ck = bin().args(["check", "-c"]).arg(&cfg).output().unwrap();
    let text = String::from_utf8_lossy(&ck.stdout);
    assert_eq!(ck.status.code(), Some(2), "check must fail: {text}");
    assert!(
        text.contains("FAIL stored position") && text.contains("bin.000001 was purged"),
        "{text}"
    );

    // resnapshot: current equals the source (the 10 rows deleted while away are gone, with a
    // DELETE each in history: no ghost rows), then streaming goes on.
    let out = bin()
        .env("TRIBUTARY_LOG", "info")
        .args(["resnapshot", "--until-caught-up", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(source_rows(&db), current_rows(&pg), "after resnapshot");
    assert_eq!(history_kinds(&pg), "DELETE\t10\nSNAPSHOT\t91\n");
    let deleted = pg
        .query("SELECT string_agg(id::text, ',' ORDER BY id) FROM ep.t_history WHERE change_type = 'DELETE'")
        .unwrap();
    assert_eq!(deleted.trim(), "41,42,43,44,45,46,47,48,49,50");
    db.sql("UPDATE ep.t SET v = 77 WHERE id = 2; DELETE FROM ep.t WHERE id = 3;")
        .unwrap();
    until_caught_up(&cfg);
    assert_eq!(
        source_rows(&db),
        current_rows(&pg),
        "streaming after resnapshot"
    );
    assert_eq!(history_kinds(&pg), "DELETE\t11\nSNAPSHOT\t91\nUPDATE\t1\n");
    let ck = bin().args(["check", "-c"]).arg(&cfg).output().unwrap();
    assert!(
        ck.status.success(),
        "{}",
        String::from_utf8_lossy(&ck.stdout)
    );

    // One table re-read while streaming goes on from the stored position: a row the warehouse
    // holds but the source does not (a ghost) goes, with its DELETE; changes made meanwhile
    // arrive once.
    pg.query("INSERT INTO ep.t_current (id, v, _source_pos) VALUES (999, 1, 0)")
        .unwrap();
    db.sql("UPDATE ep.t SET v = 5 WHERE id = 4").unwrap();
    let out = bin()
        .args(["resnapshot", "ep.t", "--until-caught-up", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(source_rows(&db), current_rows(&pg), "after resnapshot ep.t");
    assert_eq!(history_kinds(&pg), "DELETE\t12\nSNAPSHOT\t131\nUPDATE\t2\n");
}
