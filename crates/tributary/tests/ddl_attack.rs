//! Adversarial DDL, direct mode (issue 12): odd-but-valid MySQL/MariaDB schema changes a DBA
//! may run, streamed from a live MariaDB into PostgreSQL. After each scenario every current
//! table must equal its source table row by row and column by column (warehouse names looked
//! up in `tributary.tables` / `tributary.columns`), with no dead letters unless the scenario
//! expects one.

mod common;
use common::{direct_config, until_caught_up};
use tributary_testkit::{MariaDb, PgDb};

/// Source column names of `db.table`, in order.
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

fn source_rows(db: &MariaDb, schema: &str, table: &str, cols: &[String]) -> Vec<String> {
    let list = cols
        .iter()
        .map(|c| format!("`{}`", c.replace('`', "``")))
        .collect::<Vec<_>>()
        .join(", ");
    let mut rows: Vec<String> = db
        .sql(&format!(
            "SELECT {list} FROM `{schema}`.`{}` ORDER BY 1",
            table.replace('`', "``")
        ))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    rows.sort();
    rows
}

fn pg_lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn pg_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The warehouse current table of source `db.table` (from the control table).
fn warehouse_table(pg: &PgDb, source: &str) -> Option<String> {
    let r = pg
        .query(&format!(
            "SELECT quote_ident(target_schema) || '.' || quote_ident(current_table) \
             FROM tributary.tables WHERE source = {}",
            pg_lit(source)
        ))
        .unwrap();
    let r = r.trim();
    (!r.is_empty()).then(|| r.to_string())
}

/// The warehouse column of a source column (a mapped name, else the name as written).
fn warehouse_column(pg: &PgDb, source: &str, col: &str) -> String {
    let r = pg
        .query(&format!(
            "SELECT target_column FROM tributary.columns WHERE source = {} AND source_name = {}",
            pg_lit(source),
            pg_lit(col)
        ))
        .unwrap_or_default();
    let r = r.trim();
    if r.is_empty() {
        col.to_string()
    } else {
        r.lines().next().unwrap().to_string()
    }
}

fn warehouse_rows(pg: &PgDb, source: &str, cols: &[String]) -> Vec<String> {
    let t =
        warehouse_table(pg, source).unwrap_or_else(|| panic!("no warehouse table for {source}"));
    let list = cols
        .iter()
        .map(|c| {
            format!(
                "coalesce({}::text, 'NULL')",
                pg_ident(&warehouse_column(pg, source, c))
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut rows: Vec<String> = pg
        .query(&format!("SELECT {list} FROM {t}"))
        .unwrap_or_else(|e| panic!("{source}: {e}"))
        .lines()
        .map(String::from)
        .collect();
    rows.sort();
    rows
}

fn dead_letters(pg: &PgDb) -> String {
    pg.query("SELECT stage, reason FROM tributary.dead_letters")
        .unwrap()
        .trim()
        .to_string()
}

/// Every table of `tables` equal in source and warehouse.
fn assert_equal(db: &MariaDb, pg: &PgDb, schema: &str, tables: &[&str], label: &str) {
    for t in tables {
        let cols = source_columns(db, schema, t);
        assert!(
            !cols.is_empty(),
            "{label}: source table {schema}.{t} missing"
        );
        let src = source_rows(db, schema, t, &cols);
        let wh = warehouse_rows(pg, &format!("{schema}.{t}"), &cols);
        assert_eq!(
            wh, src,
            "{label}: {schema}.{t} warehouse current != source (columns {cols:?})"
        );
    }
}

struct Run {
    db: MariaDb,
    pg: PgDb,
    _dir: tempfile::TempDir,
    cfg: std::path::PathBuf,
}

/// A MariaDB with database `atk` holding `setup`, caught up into a fresh PostgreSQL.
fn start(label: &str, setup: &str, extra: &str) -> Run {
    let db = MariaDb::start().unwrap();
    db.sql(&format!("CREATE DATABASE atk; USE atk; {setup}"))
        .unwrap();
    let pg = PgDb::new(&format!("atk_{label}")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = direct_config(
        dir.path(),
        &db,
        &pg,
        "atk",
        &format!("{extra}\n[pipeline]\nbatch_size = 5\nbatch_wait_ms = 20\n"),
    );
    until_caught_up(&cfg);
    Run {
        db,
        pg,
        _dir: dir,
        cfg,
    }
}

impl Run {
    fn stream(&self, sql: &str) {
        self.db.sql(&format!("USE atk; {sql}")).unwrap();
        until_caught_up(&self.cfg);
    }
}

/// `ALTER TABLE t CHANGE a b …, CHANGE b a …` swaps two columns' names in one statement
/// (MySQL applies the clauses together). The values must stay with their columns.
#[test]
fn swap_two_columns_in_one_alter() {
    let r = start(
        "swapcol",
        "CREATE TABLE t (id INT PRIMARY KEY, a INT, b INT); INSERT INTO t VALUES (1, 10, 20), (2, 11, 21);",
        "",
    );
    r.stream(
        "ALTER TABLE t CHANGE a b INT, CHANGE b a INT; \
         INSERT INTO t (id, a, b) VALUES (3, 30, 40); UPDATE t SET a = 99 WHERE id = 2;",
    );
    assert_equal(&r.db, &r.pg, "atk", &["t"], "swap columns");
    assert_eq!(dead_letters(&r.pg), "");
}

/// `RENAME TABLE a TO tmp, b TO a, tmp TO b` swaps two tables in one statement.
#[test]
fn swap_two_tables_in_one_rename() {
    let r = start(
        "swaptab",
        "CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(10)); CREATE TABLE b (id INT PRIMARY KEY, v VARCHAR(10)); \
         INSERT INTO a VALUES (1, 'a1'), (2, 'a2'); INSERT INTO b VALUES (1, 'b1'), (3, 'b3');",
        "",
    );
    r.stream(
        "RENAME TABLE a TO tmp, b TO a, tmp TO b; \
         INSERT INTO a VALUES (4, 'new-a'); UPDATE b SET v = 'b-was-a1' WHERE id = 1; DELETE FROM a WHERE id = 3;",
    );
    assert_equal(&r.db, &r.pg, "atk", &["a", "b"], "swap tables");
    assert_eq!(dead_letters(&r.pg), "");
}

/// A rename chain a → b → c with DML under every name, in one catch-up (batches of 5).
#[test]
fn rename_chain_with_dml_between() {
    let r = start(
        "chain",
        "CREATE TABLE a (id INT PRIMARY KEY, v INT); INSERT INTO a VALUES (1, 1), (2, 2);",
        "",
    );
    r.stream(
        "UPDATE a SET v = 10 WHERE id = 1; RENAME TABLE a TO b; INSERT INTO b VALUES (3, 3); \
         ALTER TABLE b RENAME TO c; UPDATE c SET v = 30 WHERE id = 3; CREATE TABLE a (id INT PRIMARY KEY, v INT); \
         INSERT INTO a VALUES (1, 100);",
    );
    assert_equal(&r.db, &r.pg, "atk", &["a", "c"], "rename chain");
    assert_eq!(dead_letters(&r.pg), "");
}

/// Quoted identifiers with backticks, dots, spaces and non-ASCII in RENAME COLUMN and
/// RENAME TABLE.
#[test]
fn quoted_identifiers_in_renames() {
    let r = start(
        "quoted",
        "CREATE TABLE `we.ird t` (id INT PRIMARY KEY, `a b` INT, `x``y` VARCHAR(5)); \
         INSERT INTO `we.ird t` VALUES (1, 1, 'p'), (2, 2, 'q');",
        "",
    );
    r.stream(
        "ALTER TABLE `we.ird t` RENAME COLUMN `a b` TO `ü.c d`, CHANGE `x``y` `z``w` VARCHAR(5); \
         INSERT INTO `we.ird t` VALUES (3, 3, 'r'); \
         RENAME TABLE `we.ird t` TO `Über Tab`; UPDATE `Über Tab` SET `ü.c d` = 20 WHERE id = 2;",
    );
    assert_equal(&r.db, &r.pg, "atk", &["Über Tab"], "quoted");
    assert_eq!(dead_letters(&r.pg), "");
    assert!(
        warehouse_table(&r.pg, "atk.we.ird t").is_none(),
        "the old name left a control row"
    );
}

/// DROP COLUMN then ADD COLUMN of the same name with another type and a DEFAULT: the source's
/// existing rows read the new default, not the dropped column's old values.
#[test]
fn drop_then_add_same_column_name() {
    let r = start(
        "readd",
        "CREATE TABLE t (id INT PRIMARY KEY, x INT); INSERT INTO t VALUES (1, 5), (2, 6);",
        "",
    );
    r.stream(
        "ALTER TABLE t DROP COLUMN x; ALTER TABLE t ADD COLUMN x VARCHAR(10) DEFAULT 'fresh'; \
         INSERT INTO t (id) VALUES (3);",
    );
    assert_equal(&r.db, &r.pg, "atk", &["t"], "drop + add");
    assert_eq!(dead_letters(&r.pg), "");
}

/// Same, with `on_drop_column = "drop"`.
#[test]
fn drop_then_add_same_column_name_policy_drop() {
    let r = start(
        "readdd",
        "CREATE TABLE t (id INT PRIMARY KEY, x INT); INSERT INTO t VALUES (1, 5), (2, 6);",
        "on_drop_column = \"drop\"\n",
    );
    r.stream(
        "ALTER TABLE t DROP COLUMN x; ALTER TABLE t ADD COLUMN x VARCHAR(10) DEFAULT 'fresh'; \
         INSERT INTO t (id) VALUES (3);",
    );
    assert_equal(&r.db, &r.pg, "atk", &["t"], "drop + add (policy drop)");
    assert_eq!(dead_letters(&r.pg), "");
}

/// A narrowing MODIFY changes the source's stored values without any row event: DECIMAL
/// scale decrease rounds.
#[test]
#[ignore = "known limit (README): a narrowing MODIFY that rounds stored values writes no row events; the warehouse keeps the wider value"]
fn decimal_scale_decrease_rounds_in_source() {
    let r = start(
        "decnarrow",
        "CREATE TABLE t (id INT PRIMARY KEY, d DECIMAL(10,4)); INSERT INTO t VALUES (1, 1.2345), (2, 2.5);",
        "",
    );
    r.stream("ALTER TABLE t MODIFY d DECIMAL(10,2); INSERT INTO t VALUES (3, 3.14);");
    // Compare numerically (scale printing differs): the source now holds 1.23.
    let src = r.db.sql("SELECT d FROM atk.t WHERE id = 1").unwrap();
    let wh =
        r.pg.query("SELECT d::numeric(10,4) = 1.2300 FROM atk.t_current WHERE id = 1")
            .unwrap();
    assert_eq!(
        wh.trim(),
        "t",
        "source holds {src:?} after DECIMAL(10,4) -> DECIMAL(10,2); warehouse: {:?}",
        r.pg.query("SELECT d FROM atk.t_current WHERE id = 1")
            .unwrap()
    );
}

/// TRUNCATE of a table never seen by the warehouse (no rows yet) and a DROP of one, then rows.
#[test]
fn truncate_and_drop_of_unseen_tables() {
    let r = start(
        "unseen",
        "CREATE TABLE e (id INT PRIMARY KEY); CREATE TABLE f (id INT PRIMARY KEY);",
        "",
    );
    r.stream(
        "TRUNCATE TABLE e; DROP TABLE f; INSERT INTO e VALUES (1), (2); \
         CREATE TABLE f (id INT PRIMARY KEY, w INT); INSERT INTO f VALUES (7, 7);",
    );
    assert_equal(&r.db, &r.pg, "atk", &["e", "f"], "unseen");
    assert_eq!(dead_letters(&r.pg), "");
}

/// TRUNCATE with keys that come back (SCD2 on by default): current equal, one open version per
/// live key.
#[test]
fn truncate_then_same_keys_back() {
    let r = start(
        "trkeys",
        "CREATE TABLE t (id INT PRIMARY KEY, v INT); INSERT INTO t VALUES (1, 1), (2, 2);",
        "",
    );
    r.stream("UPDATE t SET v = 11 WHERE id = 1; TRUNCATE t; INSERT INTO t VALUES (1, 100); UPDATE t SET v = 101 WHERE id = 1;");
    assert_equal(&r.db, &r.pg, "atk", &["t"], "truncate keys back");
    let open =
        r.pg.query(
            "SELECT id, count(*) FROM atk.t_history WHERE valid_to IS NULL GROUP BY id ORDER BY id",
        )
        .unwrap();
    assert_eq!(open.trim(), "1\t1", "open SCD2 versions");
    assert_eq!(dead_letters(&r.pg), "");
}

/// MariaDB's CREATE OR REPLACE TABLE of a table the warehouse holds: the source table starts
/// empty.
#[test]
fn create_or_replace_table() {
    let r = start(
        "cor",
        "CREATE TABLE t (id INT PRIMARY KEY, v INT); INSERT INTO t VALUES (1, 1), (2, 2);",
        "",
    );
    r.stream("CREATE OR REPLACE TABLE t (id INT PRIMARY KEY, v INT); INSERT INTO t VALUES (3, 3);");
    assert_equal(&r.db, &r.pg, "atk", &["t"], "create or replace");
    assert_eq!(dead_letters(&r.pg), "");
}

/// The online-schema-change pattern (pt-online-schema-change / gh-ost) run twice: copy into a
/// new table, swap names, drop the old one. With `on_drop_table = "keep"` the first run leaves
/// a kept `_t_old`; the second run renames onto that name.
#[test]
fn online_schema_change_twice() {
    let r = start(
        "osc",
        "CREATE TABLE t (id INT PRIMARY KEY, v INT); INSERT INTO t VALUES (1, 1), (2, 2);",
        "",
    );
    let osc = |col: &str| {
        format!(
            "CREATE TABLE _t_new LIKE t; ALTER TABLE _t_new ADD COLUMN {col} INT DEFAULT 0; \
             INSERT INTO _t_new (id, v) SELECT id, v FROM t; \
             RENAME TABLE t TO _t_old, _t_new TO t; DROP TABLE _t_old;"
        )
    };
    r.stream(&osc("c1"));
    r.stream("INSERT INTO t (id, v) VALUES (3, 3);");
    assert_equal(&r.db, &r.pg, "atk", &["t"], "osc 1");
    assert_eq!(dead_letters(&r.pg), "", "osc 1");
    r.stream(&osc("c2"));
    r.stream("UPDATE t SET v = 30 WHERE id = 3; DELETE FROM t WHERE id = 1;");
    assert_equal(&r.db, &r.pg, "atk", &["t"], "osc 2");
    assert_eq!(dead_letters(&r.pg), "", "osc 2");
}

/// DDL inside a large transaction's neighbourhood: a transaction spanning several batches, a
/// RENAME COLUMN, and another transaction, with batch_size 5.
#[test]
fn ddl_between_large_transactions() {
    let r = start(
        "bigtx",
        "CREATE TABLE t (id INT PRIMARY KEY, a INT, b VARCHAR(20));",
        "",
    );
    let mut sql = String::from("BEGIN;");
    for i in 1..=23 {
        sql.push_str(&format!("INSERT INTO t VALUES ({i}, {i}, 'v{i}');"));
    }
    sql.push_str("COMMIT; ALTER TABLE t RENAME COLUMN a TO a2, MODIFY b VARCHAR(30); BEGIN;");
    for i in 1..=23 {
        sql.push_str(&format!(
            "UPDATE t SET a2 = a2 + 100, b = 'after' WHERE id = {i};"
        ));
    }
    sql.push_str("COMMIT; TRUNCATE t; INSERT INTO t VALUES (1, 1, 'x');");
    r.stream(&sql);
    assert_equal(&r.db, &r.pg, "atk", &["t"], "big tx");
    assert_eq!(dead_letters(&r.pg), "");
}
