//! Source transactions larger than a batch (direct mode, real MariaDB with binlog): applied
//! in bounded parts inside one PostgreSQL transaction — all of it or nothing, also when the
//! process is killed between two parts — and the warehouse equals the source.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use tributary_testkit::{mysql97_or_skip, KillOnDrop, MariaDb, PgDb};

mod common;
use common::{bin, until_caught_up};

fn config(dir: &std::path::Path, db: &MariaDb, pg: &PgDb, batch: usize) -> std::path::PathBuf {
    common::direct_config(
        dir,
        db,
        pg,
        "big",
        &format!("[pipeline]\nbatch_size = {batch}\nbatch_wait_ms = 20\n"),
    )
}

fn spawn(cfg: &std::path::Path) -> Child {
    bin()
        .args(["run", "-c"])
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn count(pg: &PgDb, sql: &str) -> i64 {
    pg.query(sql).unwrap().trim().parse().unwrap_or(-1)
}

fn source_rows(db: &MariaDb) -> String {
    db.sql("SELECT id, v FROM big.t ORDER BY id").unwrap()
}

fn warehouse_rows(pg: &PgDb) -> String {
    pg.query("SELECT id, v FROM big.t_current ORDER BY id")
        .unwrap()
}

#[test]
fn a_transaction_larger_than_a_batch_is_applied_whole() {
    let db = MariaDb::start().unwrap();
    let pg = PgDb::new("large_txn").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &db, &pg, 1_000);
    db.sql(
        "CREATE DATABASE big; CREATE TABLE big.t (id INT PRIMARY KEY, v VARCHAR(40)) ENGINE=InnoDB;
         INSERT INTO big.t VALUES (0, 'before');",
    )
    .unwrap();
    until_caught_up(&cfg);
    // One transaction: 20k inserts, 20k updates, 5k deletes (45k changes, 45 batches).
    db.sql(
        "START TRANSACTION;
         INSERT INTO big.t SELECT seq, CONCAT('v', seq) FROM big.seq_1_to_20000;
         UPDATE big.t SET v = CONCAT(v, '-u') WHERE id > 0;
         DELETE FROM big.t WHERE id % 4 = 0 AND id > 0;
         COMMIT;",
    )
    .unwrap();
    until_caught_up(&cfg);
    assert_eq!(warehouse_rows(&pg), source_rows(&db));
    assert_eq!(
        count(&pg, "SELECT count(*) FROM big.t_history"),
        1 + 20_000 + 20_000 + 5_000
    );
    assert_eq!(
        count(&pg, "SELECT count(DISTINCT coalesce(_source_gtid, 'none')) FROM big.t_history WHERE change_type <> 'SNAPSHOT'"),
        1,
        "one source transaction"
    );
    // Applied once: running again changes nothing.
    until_caught_up(&cfg);
    assert_eq!(count(&pg, "SELECT count(*) FROM big.t_history"), 45_001);
}

/// kill -9 while the parts of one large transaction are being applied: PostgreSQL holds
/// none of it (the parts were never committed), and the restart applies all of it once.
#[test]
fn kill_9_inside_a_large_transaction_leaves_nothing_half_applied() {
    kill_9_inside_a_large_transaction(MariaDb::start().unwrap(), "large_txn_kill");
}

/// The same on Oracle MySQL 9.7 with its defaults (GTIDs on, row metadata MINIMAL).
#[test]
fn kill_9_inside_a_large_transaction_on_mysql_97() {
    let Some(db) = mysql97_or_skip("kill_9_inside_a_large_transaction_on_mysql_97") else {
        return;
    };
    kill_9_inside_a_large_transaction(db, "large_txn_kill97");
}

fn kill_9_inside_a_large_transaction(db: MariaDb, tag: &str) {
    let pg = PgDb::new(tag).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &db, &pg, 500);
    db.sql(
        "CREATE DATABASE big; CREATE TABLE big.t (id INT PRIMARY KEY, v VARCHAR(40)) ENGINE=InnoDB;
         INSERT INTO big.t VALUES (0, 'before');",
    )
    .unwrap();
    until_caught_up(&cfg);
    db.sql(&format!(
        "INSERT INTO big.t SELECT seq, CONCAT('v', seq) FROM {} s;",
        db.seq(1, 150_000)
    ))
    .unwrap();
    let mut child = KillOnDrop(spawn(&cfg));
    // Wait until the sink holds an open transaction with part of it.
    let started = Instant::now();
    loop {
        let open = count(
            &pg,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND xact_start IS NOT NULL AND pid <> pg_backend_pid() AND now() - xact_start > interval '300 ms'",
        );
        if open > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no open transaction seen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let n = count(&pg, "SELECT count(*) FROM big.t_history");
    assert!(
        n == 1 || n == 150_001,
        "half a transaction committed: {n} history rows"
    );
    until_caught_up(&cfg);
    assert_eq!(warehouse_rows(&pg), source_rows(&db));
    assert_eq!(count(&pg, "SELECT count(*) FROM big.t_history"), 150_001);
}
