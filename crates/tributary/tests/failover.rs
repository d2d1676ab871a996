//! Failover: a MariaDB primary and a replica with GTID replication (`MASTER_USE_GTID =
//! slave_pos`, `log_slave_updates`), tributary streaming from the primary in direct mode under
//! a write load and killed part-way, the primary stopped, the replica promoted and tributary
//! pointed at it (config change + restart). The replica's binlog file names and positions
//! differ from the primary's: tributary resumes there from the stored GTID state, in a new
//! binlog epoch. Checked: the warehouse equals the promoted server row by row, history has
//! every change exactly once.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{bin, direct_config};

/// `tributary run --until-caught-up -c cfg`, which must succeed within 120 s.
fn until_caught_up(cfg: &std::path::Path) {
    common::until_caught_up_within(cfg, Duration::from_secs(120));
}

use tributary_testkit::{KillOnDrop, MariaDb, PgDb};

fn rows(db: &MariaDb) -> String {
    db.sql("SELECT id, v FROM fo.t ORDER BY id").unwrap()
}

fn current(pg: &PgDb) -> String {
    pg.query("SELECT id, v FROM fo.t_current ORDER BY id")
        .unwrap_or_default()
}

fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn failover_to_a_gtid_replica_resumes_from_the_gtid_state_with_every_change_once() {
    let args = ["--log-slave-updates=ON", "--gtid-strict-mode=ON"];
    let mut primary = MariaDb::start_with(&args).unwrap();
    let replica = MariaDb::start_with(&args).unwrap();
    replica
        .sql(&format!(
            "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='root', \
             MASTER_PASSWORD='', MASTER_USE_GTID=slave_pos; START SLAVE;",
            primary.port
        ))
        .unwrap();
    primary
        .sql(
            "CREATE DATABASE fo;
             CREATE TABLE fo.t (id INT PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB;
             INSERT INTO fo.t SELECT seq, 0 FROM fo.seq_1_to_40;",
        )
        .unwrap();
    // The replica's binlog is laid out differently from the primary's from the start.
    replica
        .sql("FLUSH BINARY LOGS; FLUSH BINARY LOGS;")
        .unwrap();

    let pg = PgDb::new("failover").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("run.log");
    let cfg = direct_config(
        dir.path(),
        &primary,
        &pg,
        "fo",
        "[pipeline]\nbatch_size = 50\n",
    );
    let mut updates = 0i64;
    {
        let _run = KillOnDrop(
            bin()
                .args(["run", "-c"])
                .arg(&cfg)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        wait_for("the snapshot", 40, || rows(&primary) == current(&pg));
        for i in 0..15 {
            primary
                .sql(&format!(
                    "UPDATE fo.t SET v = v + 1 WHERE id % 3 = {}",
                    i % 3
                ))
                .unwrap();
            updates += if i % 3 == 1 { 14 } else { 13 };
        }
        std::thread::sleep(Duration::from_millis(300));
        // killed here (drop: SIGKILL), somewhere in the middle of the load
    }
    for i in 0..15 {
        primary
            .sql(&format!(
                "UPDATE fo.t SET v = v + 10 WHERE id <= {}; INSERT INTO fo.t VALUES ({}, {i})",
                i + 5,
                100 + i
            ))
            .unwrap();
        updates += i + 5;
    }
    primary
        .sql("DELETE FROM fo.t WHERE id IN (7, 8, 101)")
        .unwrap();
    // The replica has everything the primary committed; then the primary dies.
    let gtid = primary.sql("SELECT @@gtid_binlog_pos").unwrap();
    let waited = replica
        .sql(&format!("SELECT MASTER_GTID_WAIT('{}', 30)", gtid.trim()))
        .unwrap();
    assert_eq!(waited.trim(), "0", "replica caught up with {gtid}");
    assert_eq!(rows(&primary), rows(&replica));
    primary.kill();

    // Promote the replica and write on it.
    replica
        .sql("STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = OFF;")
        .unwrap();
    for i in 0..10 {
        replica
            .sql(&format!(
                "UPDATE fo.t SET v = v * 2 + 1 WHERE id > {}",
                30 + i
            ))
            .unwrap();
    }
    let n_after: i64 = (0..10)
        .map(|i| {
            // ids 31..40 and 100..114 minus the deleted 101
            let base = (40 - (30 + i)).max(0) as i64;
            base + 14
        })
        .sum();
    updates += n_after;
    replica.sql("DELETE FROM fo.t WHERE id = 1").unwrap();

    // tributary pointed at the promoted server: same pipeline, same warehouse.
    let cfg2 = direct_config(
        dir.path(),
        &replica,
        &pg,
        "fo",
        "[pipeline]\nbatch_size = 50\n",
    );
    until_caught_up(&cfg2);
    assert_eq!(
        rows(&replica),
        current(&pg),
        "warehouse equals the promoted server"
    );
    let kinds = pg
        .query("SELECT change_type, count(*) FROM fo.t_history GROUP BY 1 ORDER BY 1")
        .unwrap();
    assert_eq!(
        kinds,
        format!("DELETE\t4\nINSERT\t15\nSNAPSHOT\t40\nUPDATE\t{updates}\n"),
        "history: every change exactly once"
    );
    let epoch = pg
        .query("SELECT position->>'epoch' FROM tributary.checkpoints WHERE kafka_partition = -1")
        .unwrap();
    assert_eq!(epoch.trim(), "1");
    // Streaming goes on from real positions on the new server.
    replica.sql("UPDATE fo.t SET v = -1 WHERE id = 2").unwrap();
    until_caught_up(&cfg2);
    assert_eq!(rows(&replica), current(&pg));
}

/// The same on Oracle MySQL 9.7: GTID auto-positioning replication (`SOURCE_AUTO_POSITION = 1`),
/// tributary resumes on the promoted replica with COM_BINLOG_DUMP_GTID from the stored GTID set.
#[test]
fn failover_to_a_mysql_97_gtid_replica_resumes_from_the_gtid_set() {
    let Some(mut primary) = tributary_testkit::mysql97_or_skip("failover_mysql_97") else {
        return;
    };
    let replica = tributary_testkit::mysql97_or_skip("failover_mysql_97").unwrap();
    replica
        .sql(&format!(
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST='127.0.0.1', SOURCE_PORT={}, \
             SOURCE_USER='root', SOURCE_PASSWORD='', SOURCE_AUTO_POSITION=1, \
             GET_SOURCE_PUBLIC_KEY=1; START REPLICA;",
            primary.port
        ))
        .unwrap();
    primary
        .sql(&format!(
            "CREATE DATABASE fo;
             CREATE TABLE fo.t (id INT PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB;
             INSERT INTO fo.t SELECT seq, 0 FROM {} AS s;",
            primary.seq(1, 40)
        ))
        .unwrap();
    replica
        .sql("FLUSH BINARY LOGS; FLUSH BINARY LOGS;")
        .unwrap();

    let pg = PgDb::new("failover97").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("run.log");
    let cfg = direct_config(
        dir.path(),
        &primary,
        &pg,
        "fo",
        "[pipeline]\nbatch_size = 50\n",
    );
    let mut updates = 0i64;
    {
        let _run = KillOnDrop(
            bin()
                .args(["run", "-c"])
                .arg(&cfg)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        wait_for("the snapshot", 60, || rows(&primary) == current(&pg));
        for i in 0..15 {
            primary
                .sql(&format!(
                    "UPDATE fo.t SET v = v + 1 WHERE id % 3 = {}",
                    i % 3
                ))
                .unwrap();
            updates += if i % 3 == 1 { 14 } else { 13 };
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    for i in 0..15 {
        primary
            .sql(&format!(
                "UPDATE fo.t SET v = v + 10 WHERE id <= {}; INSERT INTO fo.t VALUES ({}, {i})",
                i + 5,
                100 + i
            ))
            .unwrap();
        updates += i + 5;
    }
    primary
        .sql("DELETE FROM fo.t WHERE id IN (7, 8, 101)")
        .unwrap();
    let gtid = primary
        .sql("SELECT @@gtid_executed")
        .unwrap()
        .replace('\n', "");
    let waited = replica
        .sql(&format!(
            "SELECT WAIT_FOR_EXECUTED_GTID_SET('{}', 30)",
            gtid.trim()
        ))
        .unwrap();
    assert_eq!(waited.trim(), "0", "replica caught up with {gtid}");
    assert_eq!(rows(&primary), rows(&replica));
    primary.kill();

    replica.sql("STOP REPLICA; RESET REPLICA ALL;").unwrap();
    for i in 0..10 {
        replica
            .sql(&format!(
                "UPDATE fo.t SET v = v * 2 + 1 WHERE id > {}",
                30 + i
            ))
            .unwrap();
        updates += (10 - i) as i64 + 14;
    }
    replica.sql("DELETE FROM fo.t WHERE id = 1").unwrap();

    let cfg2 = direct_config(
        dir.path(),
        &replica,
        &pg,
        "fo",
        "[pipeline]\nbatch_size = 50\n",
    );
    until_caught_up(&cfg2);
    assert_eq!(
        rows(&replica),
        current(&pg),
        "warehouse equals the promoted server"
    );
    let kinds = pg
        .query("SELECT change_type, count(*) FROM fo.t_history GROUP BY 1 ORDER BY 1")
        .unwrap();
    assert_eq!(
        kinds,
        format!("DELETE\t4\nINSERT\t15\nSNAPSHOT\t40\nUPDATE\t{updates}\n"),
        "history: every change exactly once"
    );
    let epoch = pg
        .query("SELECT position->>'epoch' FROM tributary.checkpoints WHERE kafka_partition = -1")
        .unwrap();
    assert_eq!(epoch.trim(), "1");
    replica.sql("UPDATE fo.t SET v = -1 WHERE id = 2").unwrap();
    until_caught_up(&cfg2);
    assert_eq!(rows(&replica), current(&pg));
}
