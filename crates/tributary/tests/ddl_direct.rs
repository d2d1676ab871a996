//! Every schema change kept, direct mode: the DDL scenario of `fixtures/ddl/` (RENAME COLUMN,
//! INT→BIGINT, VARCHAR and DECIMAL widening, CHANGE COLUMN, DROP COLUMN, ADD COLUMN … AFTER,
//! signed→unsigned, TRUNCATE of a keyless and a keyed table, RENAME TABLE, DROP TABLE, CREATE
//! TABLE mid-stream, ADD INDEX, multi-table transactions, primary-key changes) streamed from a
//! live server into PostgreSQL. Then every current table must equal the source table row by
//! row and column by column (a dropped table: what it held when it was dropped, kept by the
//! default `on_drop_table = "keep"`), and history must hold each row change once — as many
//! as real Debezium emitted for the same SQL (`fixtures/ddl/debezium-default.jsonl`, an
//! independent oracle).
//!
//! Runs on MariaDB 10.11, MariaDB 11.8 and MySQL 9.7 (binlog_row_metadata=FULL: with NO_LOG/MINIMAL the column
//! names of rows written before a DDL cannot be known once capture is behind it — see README).

use std::collections::BTreeMap;

mod common;
use common::{direct_config, until_caught_up};
use tributary_testkit::{maria118_or_skip_with, render_table, repo_root, MariaDb, PgDb};

/// The source tables after the scenario, with their ORDER BY (keyless: every column).
const TABLES: &[(&str, &str)] = &[
    ("customers", "id"),
    ("orders", "order_id, line_no"),
    ("events_log", "msg, level, at"),
    ("items", "sku"),
    ("promotions", "code"),
];

fn norm(cell: &str) -> String {
    // Fractional seconds: MariaDB prints `.000`, PostgreSQL leaves zeros out.
    let c = cell.trim_end();
    if c.len() >= 19 && c.as_bytes().get(4) == Some(&b'-') && c.contains(':') {
        if let Some((head, frac)) = c.rsplit_once('.') {
            let f = frac.trim_end_matches('0');
            return if f.is_empty() {
                head.to_string()
            } else {
                format!("{head}.{f}")
            };
        }
    }
    c.to_string()
}

fn source_columns(db: &MariaDb, schema: &str, table: &str) -> Vec<String> {
    db.sql(&format!(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = '{schema}' \
         AND table_name = '{table}' ORDER BY ordinal_position"
    ))
    .unwrap()
    .lines()
    .map(String::from)
    .collect()
}

fn source_rows(
    db: &MariaDb,
    schema: &str,
    table: &str,
    cols: &[String],
    order: &str,
) -> Vec<Vec<String>> {
    db.sql(&format!(
        "SET time_zone = '+00:00'; SELECT {} FROM {schema}.{table} ORDER BY {order}",
        cols.iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
    .unwrap()
    .lines()
    .map(|l| l.split('\t').map(norm).collect())
    .collect()
}

fn warehouse_rows(pg: &PgDb, table: &str, cols: &[String], order: &str) -> Vec<Vec<String>> {
    let header: Vec<&str> = cols.iter().map(|c| c.as_str()).collect();
    render_table(pg, "ddldb", &format!("{table}_current"), &header, order)
        .into_iter()
        .map(|r| r.iter().map(|c| norm(c)).collect())
        .collect()
}

/// Row changes per table in the real-Debezium capture of the same scenario (ops c/u/d/r; a
/// renamed table's records counted under its last name).
fn debezium_counts() -> BTreeMap<String, i64> {
    let text = std::fs::read_to_string(repo_root().join("fixtures/ddl/debezium-default.jsonl"))
        .expect("fixtures/ddl/debezium-default.jsonl");
    let mut n: BTreeMap<String, i64> = BTreeMap::new();
    for line in text.lines() {
        let rec: serde_json::Value = serde_json::from_str(line).unwrap();
        let Some(topic) = rec["topic"].as_str() else {
            continue;
        };
        let parts: Vec<&str> = topic.split('.').collect();
        if parts.len() != 3 || parts[1] != "ddldb" {
            continue;
        }
        let value = match &rec["value"] {
            serde_json::Value::String(s) => serde_json::from_str(s).unwrap_or_default(),
            v => v.clone(),
        };
        let payload = if value.get("payload").is_some() {
            &value["payload"]
        } else {
            &value
        };
        if payload["op"]
            .as_str()
            .is_some_and(|o| ["c", "u", "d", "r"].contains(&o))
        {
            let t = if parts[2] == "staging_items" {
                "items"
            } else {
                parts[2]
            };
            *n.entry(t.to_string()).or_default() += 1;
        }
    }
    n
}

fn count(pg: &PgDb, sql: &str) -> i64 {
    pg.query(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .trim()
        .parse()
        .unwrap()
}

fn scenario(db: &MariaDb, label: &str) {
    let dir = tempfile::tempdir().unwrap();
    let pg = PgDb::new(&format!("ddl_{label}")).unwrap();
    let fx = repo_root().join("fixtures/ddl");
    db.sql_file(&fx.join("init.sql")).unwrap();
    let cfg = direct_config(
        dir.path(),
        db,
        &pg,
        "ddldb",
        "[pipeline]\nbatch_size = 7\nbatch_wait_ms = 20\n",
    );
    until_caught_up(&cfg);
    db.sql_file(&fx.join("stream.sql")).unwrap();
    until_caught_up(&cfg);
    compare(db, &pg, label);
    // Applying again changes nothing (every schema change is logged once).
    until_caught_up(&cfg);
    compare(db, &pg, label);
}

fn compare(db: &MariaDb, pg: &PgDb, label: &str) {
    let dead = pg
        .query("SELECT stage, reason FROM tributary.dead_letters")
        .unwrap();
    assert!(dead.trim().is_empty(), "{label}: dead letters: {dead}");
    for (t, order) in TABLES {
        let cols = source_columns(db, "ddldb", t);
        let src = source_rows(db, "ddldb", t, &cols, order);
        let wh = warehouse_rows(pg, t, &cols, order);
        assert_eq!(wh, src, "{label}: ddldb.{t}: warehouse current != source");
    }
    // The dropped table: kept as it was when dropped, and marked.
    let cols = source_columns(db, "ddlsnap", "temp_audit_at_drop");
    let src = source_rows(db, "ddlsnap", "temp_audit_at_drop", &cols, "id");
    assert_eq!(
        warehouse_rows(pg, "temp_audit", &cols, "id"),
        src,
        "{label}: kept temp_audit"
    );
    assert_eq!(
        count(pg, "SELECT count(*) FROM tributary.tables WHERE source = 'ddldb.temp_audit' AND dropped_at IS NOT NULL"),
        1,
        "{label}: temp_audit marked dropped"
    );
    // The renamed table left no stale copy behind.
    assert_eq!(
        count(pg, "SELECT count(*) FROM pg_tables WHERE schemaname = 'ddldb' AND tablename LIKE 'staging_items%'"),
        0,
        "{label}: staging_items tables must have followed the rename"
    );
    // History: every row change once, as many as Debezium emitted; one record per TRUNCATE.
    for (t, n) in debezium_counts() {
        let got = count(
            pg,
            &format!(
                "SELECT count(*) FROM ddldb.{t}_history WHERE change_type IN ('INSERT','UPDATE','DELETE','SNAPSHOT')"
            ),
        );
        assert_eq!(
            got, n,
            "{label}: ddldb.{t}_history row changes (Debezium: {n})"
        );
    }
    for t in ["events_log", "items"] {
        assert_eq!(
            count(
                pg,
                &format!("SELECT count(*) FROM ddldb.{t}_history WHERE change_type = 'TRUNCATE'")
            ),
            1,
            "{label}: {t} truncate record"
        );
    }
    // Renamed columns carry the values written under both names: rows with an e-mail before
    // and after the rename never read NULL under the new name.
    assert_eq!(
        count(
            pg,
            "SELECT count(*) FROM ddldb.customers_history WHERE id IN (1, 2, 5) \
             AND contact_email IS NULL AND change_type <> 'DELETE'"
        ),
        0,
        "{label}: history before the rename reads under the new name"
    );
    assert!(
        count(
            pg,
            "SELECT count(*) FROM ddldb.customers_history WHERE contact_email = 'bo@new.example'"
        ) >= 1
    );
    assert!(
        count(
            pg,
            "SELECT count(*) FROM tributary.schema_changes WHERE source_table = 'ddldb.customers' \
             AND action LIKE '%RENAME COLUMN \"email\" TO \"contact_email\"'"
        ) == 1,
        "{label}: the rename is logged once"
    );
}

#[test]
fn ddl_scenario_direct_mariadb_10_11() {
    let db = MariaDb::start().unwrap();
    scenario(&db, "m1011");
}

#[test]
fn ddl_scenario_direct_mariadb_11_8() {
    let Some(db) = maria118_or_skip_with(
        "ddl_scenario_direct_mariadb_11_8",
        &["--binlog-row-metadata=FULL"],
    ) else {
        return;
    };
    scenario(&db, "m118");
}

#[test]
fn ddl_scenario_direct_mysql_9_7() {
    let Some(db) = tributary_testkit::mysql97_or_skip_with(
        "ddl_scenario_direct_mysql_9_7",
        &["--binlog-row-metadata=FULL"],
    ) else {
        return;
    };
    scenario(&db, "my97");
}
