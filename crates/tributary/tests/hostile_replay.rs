//! Hostile records through `tributary replay` and `tributary dlq` as users run them: a record
//! only reaches the tables its topic and the configuration allow, every dead letter keeps
//! the record's bytes, and `dlq retry` resolves only what it applied.

use std::io::Write;
use std::process::Command;

use serde_json::json;
use tributary_testkit::PgDb;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tributary"));
    c.env("TRIBUTARY_LOG", "warn");
    c
}

fn line(topic: &str, offset: i64, db: &str, table: &str, id: i64, name: &str) -> String {
    let value = json!({
        "before": null,
        "after": {"id": id, "name": name},
        "source": {"version": "3.6.3.Final", "connector": "mysql", "name": "dbserver1",
                   "ts_ms": 1758160342000i64, "snapshot": "false", "db": db, "table": table,
                   "server_id": 1, "file": "bin.000001", "pos": 100 + offset, "row": 0},
        "op": "c", "ts_ms": 1758160342000i64
    });
    json!({"topic": topic, "partition": 0, "offset": offset,
           "key": {"id": id}, "value": value})
    .to_string()
}

fn write(lines: &[String]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    f
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = bin().args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A record on `dbserver1.bankdb.bank_accounts` that names `hr.salaries` creates nothing:
/// it is dead-lettered (stage `route`) with its bytes; `--tables` is honoured by replay.
#[test]
fn a_record_only_reaches_the_tables_its_topic_and_config_allow() {
    let db = PgDb::new("hostile_route").unwrap();
    let f = write(&[
        line(
            "dbserver1.bankdb.bank_accounts",
            0,
            "bankdb",
            "bank_accounts",
            1,
            "ok",
        ),
        line(
            "dbserver1.bankdb.bank_accounts",
            1,
            "hr",
            "salaries",
            2,
            "evil",
        ),
        line(
            "dbserver1.bankdb.other",
            0,
            "bankdb",
            "other",
            3,
            "not included",
        ),
    ]);
    let (ok, out, err) = run(&[
        "replay",
        f.path().to_str().unwrap(),
        "--postgres-url",
        &db.url,
        "--tables",
        "bankdb.bank_accounts",
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        "applied 1 change(s), 0 already applied, 2 dead-lettered"
    );
    let schemas = db
        .query("SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace WHERE nspname IN ('hr', 'bankdb')")
        .unwrap();
    assert_eq!(schemas.trim(), "bankdb");
    let tables = db
        .query("SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE nspname = 'bankdb' AND relkind = 'r'")
        .unwrap();
    assert_eq!(tables.trim(), "bank_accounts_current,bank_accounts_history");
    let dl = db
        .query("SELECT topic, kafka_offset, stage, record_value IS NOT NULL, reason FROM tributary.dead_letters ORDER BY topic, kafka_offset")
        .unwrap();
    let rows: Vec<&str> = dl.lines().collect();
    assert_eq!(rows.len(), 2, "{dl}");
    assert!(
        rows[0].starts_with("dbserver1.bankdb.bank_accounts\t1\troute\tt\t"),
        "{dl}"
    );
    assert!(rows[0].contains("hr.salaries"), "{dl}");
    assert!(
        rows[1].starts_with("dbserver1.bankdb.other\t0\troute\tt\t"),
        "{dl}"
    );
}

/// A change that fails in apply (a NUL in a text value, which PostgreSQL cannot store) is
/// dead-lettered with its key and value even when the batch is re-applied one event at a
/// time; `dlq retry` leaves it (and a dead letter stored without bytes) waiting instead of
/// calling it resolved.
#[test]
fn apply_dead_letters_keep_their_bytes_and_retry_resolves_only_what_it_applied() {
    let db = PgDb::new("hostile_dlq").unwrap();
    let f = write(&[
        line("dbserver1.shop.items", 0, "shop", "items", 1, "fine"),
        line(
            "dbserver1.shop.items",
            1,
            "shop",
            "items",
            2,
            "nul\u{0}byte",
        ),
        line("dbserver1.shop.items", 2, "shop", "items", 3, "fine too"),
    ]);
    let (ok, out, err) = run(&[
        "replay",
        f.path().to_str().unwrap(),
        "--postgres-url",
        &db.url,
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        "applied 2 change(s), 0 already applied, 1 dead-lettered"
    );
    let dl = db
        .query("SELECT kafka_offset, stage, record_key IS NOT NULL, record_value IS NOT NULL FROM tributary.dead_letters")
        .unwrap();
    assert_eq!(dl.trim(), "1\tapply\tt\tt");

    // An old dead letter without bytes.
    db.query(
        "INSERT INTO tributary.dead_letters (pipeline, topic, kafka_partition, kafka_offset, stage, reason)
         VALUES ('replay', 'dbserver1.shop.items', 0, 99, 'apply', 'old')",
    )
    .unwrap();
    let (ok, _, _) = run(&["dlq", "retry", "--postgres-url", &db.url]);
    assert!(!ok, "retry must report waiting dead letters");
    let waiting = db
        .query("SELECT string_agg(kafka_offset::text, ',' ORDER BY kafka_offset) FROM tributary.dead_letters WHERE resolved_at IS NULL")
        .unwrap();
    assert_eq!(waiting.trim(), "1,99");
    let n = db.query("SELECT count(*) FROM shop.items_current").unwrap();
    assert_eq!(n.trim(), "2");
}

/// A misspelled key is an error naming the nearest valid key, for every command.
#[test]
fn a_misspelled_config_key_is_an_error() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        f,
        "[sink]\nurl = \"postgres://x@127.0.0.1:1/x\"\non_eror = \"stop\""
    )
    .unwrap();
    let (ok, _, err) = run(&["dlq", "list", "-c", f.path().to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("on_eror") && err.contains("did you mean `on_error`?"),
        "{err}"
    );
}
