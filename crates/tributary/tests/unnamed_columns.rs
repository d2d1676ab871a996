//! Binlogs without column names — Oracle MySQL's default `binlog_row_metadata=MINIMAL` and
//! MariaDB 11.8's default `NO_LOG` — over every column type: capture names the columns from
//! information_schema after checking the TABLE_MAP's types agree (`schema::enrich`), and that
//! check must never refuse a table that did not change (no false stop). Streamed rows reach the
//! warehouse under the source's column names, and current equals the source for the columns
//! compared as text. Without the servers installed: fail under CI, skipped elsewhere.

use std::path::Path;
use std::process::Command;

use tributary_testkit::{maria118_or_skip, mysql97_or_skip, MariaDb, PgDb};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tributary"));
    c.env("TRIBUTARY_LOG", "warn");
    c
}

fn until_caught_up(cfg: &Path) {
    let out = bin()
        .args(["run", "--until-caught-up", "-c"])
        .arg(cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "run --until-caught-up failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every type both servers have, plus the server's own (`json` on MySQL).
fn table(db: &MariaDb) -> String {
    let json = if db.flavor == tributary_testkit::Flavor::Mysql97 {
        "JSON"
    } else {
        "LONGTEXT"
    };
    format!(
        "CREATE DATABASE w;
         CREATE TABLE w.t (
           id INT PRIMARY KEY, ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, mi MEDIUMINT UNSIGNED,
           bi BIGINT, bu BIGINT UNSIGNED, b1 BOOL, f FLOAT, d DOUBLE, de DECIMAL(12,3),
           bt BIT(5), c CHAR(4), vc VARCHAR(30), bn BINARY(3), vb VARBINARY(10), tx TEXT,
           bl BLOB, e ENUM('red','green','blue'), st SET('a','b','c'), dt DATE, tm TIME(3),
           dtm DATETIME(6), ts TIMESTAMP(2) NULL, yr YEAR, j {json}, pt POINT,
           l1 VARCHAR(10) CHARACTER SET latin1
         ) ENGINE=InnoDB;"
    )
}

fn row(i: u32) -> String {
    format!(
        "({i}, -{i}, {i}, 300, 70000, -5000000000, 18000000000000000000, {b}, 1.5, 2.25, 12.345,
          b'10101', 'ab', 'vc{i}', 'xyz', 'vb', 'text {i}', X'00FF80', 'green', 'a,c', '2024-02-29',
          '12:34:56.789', '2024-02-29 13:14:15.123456', '2024-02-29 13:14:15.12', 2024,
          '{{\"k\": {i}}}', ST_GeomFromText('POINT(1 2)'), 'café{i}')",
        b = i % 2
    )
}

fn scenario(db: MariaDb, metadata: &str, tag: &str) {
    assert_eq!(
        db.sql("SELECT @@binlog_row_metadata").unwrap().trim(),
        metadata
    );
    let pg = PgDb::new(tag).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("t.toml");
    std::fs::write(
        &cfg,
        format!(
            "[source]\nurl = \"{}\"\ndatabases = [\"w\"]\nserver_id = {}\n\n[sink]\nurl = \"{}\"\n",
            db.url(),
            db.server_id + 5000,
            pg.url
        ),
    )
    .unwrap();
    db.sql(&table(&db)).unwrap();
    db.sql(&format!("INSERT INTO w.t VALUES {}, {};", row(1), row(2)))
        .unwrap();
    until_caught_up(&cfg);
    // Streamed: inserts, an update of every column kind, a delete.
    db.sql(&format!(
        "INSERT INTO w.t VALUES {}, {};
         UPDATE w.t SET ti = ti + 1, tu = tu + 1, vc = CONCAT(vc, '-u'), e = 'blue', st = 'b',
           tm = '01:02:03.004', dtm = '2025-01-01 00:00:00.5', de = de + 1, bt = b'00001',
           yr = 1999, tx = 'changed', bl = 'changed', vb = 'c', pt = ST_GeomFromText('POINT(3 4)')
           WHERE id IN (1, 3);
         DELETE FROM w.t WHERE id = 2;",
        row(3),
        row(4)
    ))
    .unwrap();
    until_caught_up(&cfg);
    // The warehouse's columns are the source's, by name.
    let src_cols = db
        .sql("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'w' AND TABLE_NAME = 't' ORDER BY ORDINAL_POSITION")
        .unwrap();
    let wh_cols = pg
        .query("SELECT column_name FROM information_schema.columns WHERE table_schema = 'w' AND table_name = 't_current' AND column_name NOT LIKE '\\_%' ORDER BY ordinal_position")
        .unwrap();
    assert_eq!(wh_cols, src_cols);
    // Values: the ones both sides print the same way.
    let cols = "id, ti, tu, si, mi, bi, bu, vc, e, de, yr, tx, l1";
    // Binary columns are bytes in the warehouse, byte for byte.
    assert_eq!(
        pg.query("SELECT id, upper(encode(bn, 'hex')), upper(encode(vb, 'hex')), upper(encode(bl, 'hex')) FROM w.t_current ORDER BY id")
            .unwrap(),
        db.sql("SELECT id, HEX(bn), HEX(vb), HEX(bl) FROM w.t ORDER BY id")
            .unwrap()
    );
    assert_eq!(
        pg.query(&format!("SELECT {cols} FROM w.t_current ORDER BY id"))
            .unwrap(),
        db.sql(&format!("SELECT {cols} FROM w.t ORDER BY id"))
            .unwrap()
    );
    assert_eq!(
        pg.query("SELECT change_type, count(*) FROM w.t_history GROUP BY 1 ORDER BY 1")
            .unwrap(),
        "DELETE\t1\nINSERT\t2\nSNAPSHOT\t2\nUPDATE\t2\n"
    );
}

#[test]
fn every_type_without_column_names_on_mysql_97_minimal() {
    let Some(db) = mysql97_or_skip("every_type_without_column_names_on_mysql_97_minimal") else {
        return;
    };
    scenario(db, "MINIMAL", "unnamed97");
}

#[test]
fn every_type_without_column_names_on_mariadb_118_no_log() {
    let Some(db) = maria118_or_skip("every_type_without_column_names_on_mariadb_118_no_log") else {
        return;
    };
    scenario(db, "NO_LOG", "unnamed118");
}

#[test]
fn every_type_without_column_names_on_mariadb_10_11_minimal() {
    let db = MariaDb::start_with(&["--binlog-row-metadata=MINIMAL"]).unwrap();
    scenario(db, "MINIMAL", "unnamed1011");
}

/// The same table with names in the binlog (MariaDB 10.11, FULL): the reference.
#[test]
fn every_type_with_column_names_on_mariadb_10_11_full() {
    scenario(MariaDb::start().unwrap(), "FULL", "named1011");
}
