//! A binlog row that cannot be decoded, in direct mode (real MariaDB): dead-lettered with its
//! bytes and reason, the run ends by itself with exit 0, and later changes are applied.

use tributary_testkit::{MariaDb, PgDb};

mod common;
use common::{bin, direct_config, until_caught_up as run};

#[test]
fn an_undecodable_row_is_dead_lettered_and_the_pipeline_goes_on() {
    // Without row metadata the ENUM labels come from information_schema: a label added, used
    // and removed again before capture reads the row has no known label.
    let db = MariaDb::start_with(&["--binlog-row-metadata=MINIMAL"]).unwrap();
    db.sql(
        "CREATE DATABASE ed; CREATE TABLE ed.t (id INT PRIMARY KEY, e ENUM('a','b'));
            INSERT INTO ed.t VALUES (1, 'b');",
    )
    .unwrap();
    let pg = PgDb::new("direct_hostile").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = direct_config(dir.path(), &db, &pg, "ed", "");
    run(&cfg);
    db.sql("ALTER TABLE ed.t MODIFY e ENUM('a','b','c'); INSERT INTO ed.t VALUES (2, 'c');
            DELETE FROM ed.t WHERE id = 2; ALTER TABLE ed.t MODIFY e ENUM('a','b'); INSERT INTO ed.t VALUES (3, 'a');")
        .unwrap();
    run(&cfg);
    let rows = pg
        .query("SELECT id, e FROM ed.t_current ORDER BY id")
        .unwrap();
    assert_eq!(rows.trim(), "1\tb\n3\ta");
    // The INSERT and the DELETE of the row with the unknown label.
    let dl = pg
        .query("SELECT stage, octet_length(record_value) > 0, reason FROM tributary.dead_letters")
        .unwrap();
    assert_eq!(dl.lines().count(), 2, "{dl}");
    assert!(dl.lines().all(|l| l.starts_with("capture\tt\t")), "{dl}");
    // `dlq retry` cannot re-apply binlog bytes: they stay waiting with their reason.
    let out = bin()
        .args(["dlq", "retry", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let after = pg
        .query("SELECT stage, octet_length(record_value) > 0, reason FROM tributary.dead_letters WHERE resolved_at IS NULL")
        .unwrap();
    assert_eq!(after, dl);
    assert!(dl.contains("ed.t") && dl.contains("column `e`"), "{dl}");
}

/// An XA transaction (prepared, then rolled back) is never applied: capture stops loudly
/// at its XA PREPARE instead of applying changes the source rolled back.
#[test]
fn an_xa_transaction_stops_capture_instead_of_applying_a_rollback() {
    let db = MariaDb::start().unwrap();
    db.sql(
        "CREATE DATABASE xa; CREATE TABLE xa.t (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB;
            INSERT INTO xa.t VALUES (1, 'v1');",
    )
    .unwrap();
    let pg = PgDb::new("direct_xa").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = direct_config(dir.path(), &db, &pg, "xa", "");
    run(&cfg);
    db.sql("XA START 'x1'; INSERT INTO xa.t VALUES (100, 'rolled back'); UPDATE xa.t SET v = 'xa' WHERE id = 1;
            XA END 'x1'; XA PREPARE 'x1'; XA ROLLBACK 'x1'; INSERT INTO xa.t VALUES (101, 'after');")
        .unwrap();
    let out = bin()
        .args(["run", "--until-caught-up", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("XA"), "{err}");
    assert_eq!(
        pg.query("SELECT id, v FROM xa.t_current ORDER BY id")
            .unwrap()
            .trim(),
        "1\tv1"
    );
}
