//! A configuration that names what the source does not have is an error naming it, not an
//! empty capture that exits 0 (real MariaDB with binlog).

use std::process::Command;

use tributary_testkit::{MariaDb, PgDb};

fn run_with(db: &MariaDb, pg: &PgDb, source_keys: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.toml");
    std::fs::write(
        &p,
        format!(
            "[source]\nurl = \"{}\"\n{source_keys}\nserver_id = {}\n\n[sink]\nurl = \"{}\"\n",
            db.url(),
            db.server_id + 5000,
            pg.url
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .env("TRIBUTARY_LOG", "warn")
        .args(["run", "--until-caught-up", "-c"])
        .arg(&p)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_database_or_table_that_does_not_exist_is_an_error() {
    let db = MariaDb::start().unwrap();
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.items (id int primary key)")
        .unwrap();
    let pg = PgDb::new("cfg_missing").unwrap();
    let (ok, err) = run_with(&db, &pg, "databases = [\"shpo\"]");
    assert!(!ok);
    assert!(
        err.contains("\"shpo\"") && err.contains("does not exist"),
        "{err}"
    );
    let (ok, err) = run_with(
        &db,
        &pg,
        "databases = [\"shop\"]\ninclude_tables = [\"shop.itmes\"]",
    );
    assert!(!ok);
    assert!(err.contains("\"shop.itmes\""), "{err}");
    let (ok, err) = run_with(
        &db,
        &pg,
        "databases = [\"shop\"]\ninclude_tables = [\"shop.items\"]",
    );
    assert!(ok, "{err}");
}

/// `verify` compares a source table whose names need quoting and mapping (a back-tick in the
/// table name, a primary key named like a metadata column, a 64-character column) with the
/// warehouse table under its mapped names.
#[test]
fn verify_resolves_quoted_and_mapped_names() {
    let db = MariaDb::start().unwrap();
    let long = "k".repeat(64);
    db.sql(&format!(
        "CREATE DATABASE shop; CREATE TABLE shop.`we``ird` (`_op` INT, `{long}` INT, v INT, PRIMARY KEY (`_op`, `{long}`));
         INSERT INTO shop.`we``ird` VALUES (1, 10, 100), (2, 20, 200);"
    ))
    .unwrap();
    let pg = PgDb::new("cfg_verify").unwrap();
    let (ok, err) = run_with(&db, &pg, "databases = [\"shop\"]");
    assert!(ok, "{err}");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v.toml");
    std::fs::write(
        &p,
        format!(
            "[source]\nurl = \"{}\"\ndatabases = [\"shop\"]\n\n[sink]\nurl = \"{}\"\n",
            db.url(),
            pg.url
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .env("TRIBUTARY_LOG", "warn")
        .args(["verify", "-c"])
        .arg(&p)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && stdout.contains("shop.we`ird: source rows 2 / warehouse rows 2 — OK"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A difference is found through the mapped names too.
    db.sql("UPDATE shop.`we``ird` SET `_op` = 3 WHERE `_op` = 2")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .env("TRIBUTARY_LOG", "warn")
        .args(["verify", "-c"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
