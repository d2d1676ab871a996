//! Oracle MySQL 9.7 (Debian sid's, installed by `scripts/setup`) with MySQL's defaults and GTIDs
//! on: `binlog_row_metadata=MINIMAL`, `caching_sha2_password`, no `SHOW MASTER STATUS` (only
//! `SHOW BINARY LOG STATUS`), optionally `binlog_transaction_compression=ON`. Direct mode and
//! capture through a user with a password and only the grants capture needs: current equals the
//! source row by row, history has every change once at the position of its rows event, GTIDs
//! (also tagged ones, `uuid:tag:N`) in the source block, `--until-caught-up` ends at the
//! server's position, `check` reports what silently breaks capture with its fix.
//! Without MySQL 9.7 installed they fail under CI and are skipped (saying so) elsewhere.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use tributary_testkit::{mysql97_or_skip, mysql97_or_skip_with, MariaDb, PgDb};

/// What capture needs on MySQL 8.4+: SELECT (snapshot), RELOAD (FLUSH TABLES WITH READ LOCK),
/// REPLICATION CLIENT (SHOW BINARY LOG STATUS), REPLICATION SLAVE (the binlog dump).
const GRANTS: &str = "SELECT, RELOAD, REPLICATION CLIENT, REPLICATION SLAVE";

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tributary"));
    c.env("TRIBUTARY_LOG", "warn");
    c
}

fn config(dir: &Path, url: &str, db: &MariaDb, pg: &PgDb) -> PathBuf {
    let p = dir.join("tributary.toml");
    std::fs::write(
        &p,
        format!(
            "[source]\nkind = \"mysql\"\nurl = \"{url}\"\ndatabases = [\"bench\"]\nserver_id = {}\nname = \"dbserver1\"\nsnapshot_chunk_size = 700\n\n[sink]\nurl = \"{}\"\n\n[pipeline]\nbatch_size = 500\nbatch_wait_ms = 20\n",
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

fn table(db: &MariaDb) -> String {
    format!(
        "CREATE DATABASE bench;
         CREATE TABLE bench.acct (id INT PRIMARY KEY, v VARCHAR(40), n INT NOT NULL, u INT UNSIGNED,
           e ENUM('x','y','z') NOT NULL DEFAULT 'x') ENGINE=InnoDB;
         INSERT INTO bench.acct SELECT seq, CONCAT('v', seq), seq, 4000000000 + seq, 'y' FROM {} s;",
        db.seq(1, 3000)
    )
}

/// Changes to snapshot rows (and to rows inserted after it), in every transaction shape, one of
/// them with a tagged GTID (`SET gtid_next = 'AUTOMATIC:tag'`, MySQL ≥ 8.3).
fn stream_workload(db: &MariaDb) {
    db.sql("UPDATE bench.acct SET v = CONCAT(v, '-u1'), n = n + 1, e = 'z' WHERE id % 3 = 0;")
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
         DELETE FROM bench.acct WHERE id = 6; INSERT INTO bench.acct VALUES (5001, 'new', 0, 0, 'x');
         UPDATE bench.acct SET n = 1 WHERE id = 5001; COMMIT;",
    )
    .unwrap();
    db.sql(
        "SET gtid_next = 'AUTOMATIC:batch7'; DELETE FROM bench.acct WHERE id % 50 = 1; \
         SET gtid_next = 'AUTOMATIC';",
    )
    .unwrap();
    db.sql(&format!(
        "INSERT INTO bench.acct SELECT seq, 'ins', 0, NULL, 'y' FROM {} s;
         UPDATE bench.acct SET v = 'ins-u', n = id WHERE id > 3000 AND id <= 3100;",
        db.seq(3001, 3100)
    ))
    .unwrap();
}
const UPDATES: i64 = 1000 + 200 + 3 + 100;
const DELETES: i64 = 1 + 61; // id 6; id % 50 = 1 of 1..3000 and 5001
const INSERTS: i64 = 1 + 100;
const SOURCE: &str = "SELECT id, v, n, u, e FROM bench.acct ORDER BY id";
const CURRENT: &str =
    "SELECT id, v, n, coalesce(u::text, 'NULL'), e FROM bench.acct_current ORDER BY id";

/// `(file, pos)` of every rows event in the server's binlogs as the server lists them, and of
/// every compressed transaction payload (its events share the payload's position).
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
            if c[2].ends_with("_rows") || c[2] == "Transaction_payload" {
                out.insert((file.to_string(), c[1].parse().unwrap()));
            }
        }
    }
    out
}

fn assert_current_equals_source(db: &MariaDb, pg: &PgDb) {
    let source = db.sql(SOURCE).unwrap();
    let current = pg.query(CURRENT).unwrap();
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
}

fn direct_mode(db: MariaDb, tag: &str) {
    let url = db.create_user("cdc", "cdc-pw-97", GRANTS).unwrap();
    let pg = PgDb::new(tag).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &url, &db, &pg);
    db.sql(&table(&db)).unwrap();
    run_until_caught_up(&cfg);
    assert_eq!(count(&pg, "SELECT count(*) FROM bench.acct_current"), 3000);
    stream_workload(&db);
    run_until_caught_up(&cfg);
    assert_current_equals_source(&db, &pg);
    let kinds = pg
        .query("SELECT change_type, count(*) FROM bench.acct_history GROUP BY 1 ORDER BY 1")
        .unwrap();
    assert_eq!(
        kinds,
        format!("DELETE\t{DELETES}\nINSERT\t{INSERTS}\nSNAPSHOT\t3000\nUPDATE\t{UPDATES}\n")
    );
    // Streamed changes carry the positions of their rows events (or compressed payloads), each
    // (pos, row) once, and the GTID of their transaction.
    let events = rows_event_positions(&db);
    let uuid = db.sql("SELECT @@server_uuid").unwrap().trim().to_string();
    let rows = pg
        .query(
            "SELECT _source_file, _source_pos, _source_row, coalesce(_source_gtid, 'NULL')
             FROM bench.acct_history
             WHERE change_type <> 'SNAPSHOT' ORDER BY _source_file, _source_pos, _source_row",
        )
        .unwrap();
    let mut seen = BTreeSet::new();
    let mut tagged = 0;
    for l in rows.lines() {
        let c: Vec<&str> = l.split('\t').collect();
        let at = (c[0].to_string(), c[1].parse::<u64>().unwrap());
        assert!(
            events.contains(&at),
            "history position {at:?} is not a rows event of the binlog"
        );
        assert!(seen.insert((at, c[2].to_string())), "{l} twice");
        assert!(c[3].starts_with(&format!("{uuid}:")), "gtid of {l}");
        if c[3].starts_with(&format!("{uuid}:batch7:")) {
            tagged += 1;
        }
    }
    assert_eq!(tagged, DELETES - 1, "the tagged transaction's GTID");
    // The stored checkpoint is the server's position (caught up).
    let (file, pos, _) = db.binlog_status().unwrap();
    let cp = pg
        .query("SELECT position->>'file', position->>'pos' FROM tributary.checkpoints WHERE pipeline = 'mysql:dbserver1'")
        .unwrap();
    assert_eq!(cp.trim(), format!("{file}\t{pos}"));
    // ... with the server's executed GTID set (tagged GTIDs included).
    let stored = pg
        .query("SELECT position->>'gtid_set' FROM tributary.checkpoints WHERE pipeline = 'mysql:dbserver1'")
        .unwrap();
    assert_same_gtid_set(&db, stored.trim());
    // `status` reads the server's position with SHOW BINARY LOG STATUS: no lag.
    let st = bin().args(["status", "-c"]).arg(&cfg).output().unwrap();
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(
        st.status.success(),
        "status: {text}{}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert!(
        text.contains(&format!("{file}:{pos}")) && text.contains("0 bytes"),
        "{text}"
    );
    // `check` passes for this user (its grants are exactly what capture needs).
    let ck = bin().args(["check", "-c"]).arg(&cfg).output().unwrap();
    let text = String::from_utf8_lossy(&ck.stdout);
    assert!(ck.status.success(), "check: {text}");
    assert!(!text.contains("privileges"), "{text}");
    // A further bounded run adds nothing.
    run_until_caught_up(&cfg);
    assert_eq!(
        count(&pg, "SELECT count(*) FROM bench.acct_history"),
        3000 + UPDATES + DELETES + INSERTS
    );
}

/// MySQL's defaults (binlog_row_metadata=MINIMAL): names and keys come from information_schema.
#[test]
fn direct_mode_on_mysql97_defaults_with_a_caching_sha2_user() {
    let Some(db) = mysql97_or_skip("direct_mode_on_mysql97_defaults") else {
        return;
    };
    assert_eq!(
        db.sql("SELECT @@binlog_row_metadata, @@gtid_mode, @@binlog_transaction_compression")
            .unwrap()
            .trim(),
        "MINIMAL\tON\t0"
    );
    direct_mode(db, "mysql97_direct");
}

/// `binlog_transaction_compression=ON` (and metadata FULL): the events inside a compressed
/// transaction get its real position; updates after the snapshot reach current.
#[test]
fn direct_mode_on_mysql97_with_transaction_compression() {
    let Some(db) = mysql97_or_skip_with(
        "direct_mode_on_mysql97_with_transaction_compression",
        &[
            "--binlog-transaction-compression=ON",
            "--binlog-row-metadata=FULL",
        ],
    ) else {
        return;
    };
    direct_mode(db, "mysql97_zstd");
}

/// Capture to a file through a caching_sha2_password user (RSA key exchange over plaintext):
/// positions real and increasing, GTIDs (tagged ones too) in the source block, the stored
/// position the server's.
#[test]
fn capture_on_mysql97_records_real_positions_and_gtids() {
    let Some(db) = mysql97_or_skip("capture_on_mysql97_records_real_positions_and_gtids") else {
        return;
    };
    db.sql(&table(&db)).unwrap();
    let url = db.create_user("cap", "cap-pw", GRANTS).unwrap();
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
    let uuid = db.sql("SELECT @@server_uuid").unwrap().trim().to_string();
    let mut last: Option<(u64, u64, u64)> = None;
    let (mut snapshot, mut streamed, mut tagged) = (0, 0, 0);
    for l in std::fs::read_to_string(&out).unwrap().lines() {
        let j: serde_json::Value = serde_json::from_str(l).unwrap();
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
        assert!(
            events.contains(&(file.clone(), pos)),
            "captured position {file}:{pos} is not a rows event of the binlog: {l}"
        );
        let gtid = s["gtid"].as_str().unwrap_or_else(|| panic!("no gtid: {l}"));
        assert!(gtid.starts_with(&format!("{uuid}:")), "{l}");
        if gtid.starts_with(&format!("{uuid}:batch7:")) {
            tagged += 1;
        }
        let seq: u64 = file.rsplit('.').next().unwrap().parse().unwrap();
        let key = (seq, pos, row);
        if let Some(prev) = last {
            assert!(key > prev, "positions must increase: {prev:?} then {key:?}");
        }
        last = Some(key);
    }
    assert_eq!(snapshot, 3000);
    assert_eq!(streamed, UPDATES + DELETES + INSERTS);
    assert_eq!(tagged, DELETES - 1);
    let st: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}.position.json", out.display())).unwrap(),
    )
    .unwrap();
    let (file, pos, _) = db.binlog_status().unwrap();
    assert_eq!(
        (st["file"].as_str().unwrap(), st["pos"].as_u64().unwrap()),
        (file.as_str(), pos)
    );
    assert_same_gtid_set(&db, st["gtid_set"].as_str().unwrap_or_default());
}

/// `stored` is the server's executed GTID set now (compared by the server itself), and holds
/// the tagged transaction of the workload.
fn assert_same_gtid_set(db: &MariaDb, stored: &str) {
    let (_, _, executed) = db.binlog_status().unwrap();
    assert!(stored.contains(":batch7:"), "stored GTID set {stored:?}");
    let same = db
        .sql(&format!(
            "SELECT GTID_SUBSET('{stored}', '{executed}') AND GTID_SUBSET('{executed}', '{stored}')"
        ))
        .unwrap();
    assert_eq!(
        same.trim(),
        "1",
        "stored GTID set {stored:?}, server's {executed:?}"
    );
}

/// `check` on MySQL 9.7 reports every setting that silently breaks capture, each with its fix:
/// partial JSON updates and a MINIMAL row image are fatal (and `run` refuses to start), GTIDs
/// off, MINIMAL row metadata and missing grants are warnings, compression is handled.
#[test]
fn check_on_mysql97_reports_each_setting_with_its_fix() {
    let Some(db) = mysql97_or_skip_with(
        "check_on_mysql97_reports_each_setting_with_its_fix",
        &[
            "--binlog-row-value-options=PARTIAL_JSON",
            "--binlog-row-image=MINIMAL",
            "--gtid-mode=OFF",
            "--binlog-transaction-compression=ON",
        ],
    ) else {
        return;
    };
    db.sql("CREATE DATABASE bench").unwrap();
    let url = db.create_user("weak", "weak-pw", "SELECT").unwrap();
    let pg = PgDb::new("mysql97_check").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &url, &db, &pg);
    let ck = bin().args(["check", "-c"]).arg(&cfg).output().unwrap();
    let text = String::from_utf8_lossy(&ck.stdout);
    assert_eq!(ck.status.code(), Some(2), "check must fail: {text}");
    for want in [
        "ERROR binlog_row_value_options: found PARTIAL_JSON",
        "SET GLOBAL binlog_row_value_options=''",
        "ERROR binlog_row_image: found MINIMAL",
        "SET GLOBAL binlog_row_image=FULL",
        "WARN  gtid_mode: found OFF",
        "WARN  binlog_row_metadata: found MINIMAL",
        "SET GLOBAL binlog_row_metadata=FULL",
        "WARN  privileges: found no RELOAD, REPLICATION CLIENT, REPLICATION SLAVE",
        "OK    binlog_transaction_compression: ON",
    ] {
        assert!(text.contains(want), "{want:?} missing in:\n{text}");
    }
    // run refuses to start, naming the fixes.
    let out = bin()
        .args(["run", "--until-caught-up", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("binlog_row_value_options"), "{err}");
    assert!(err.contains("binlog_row_image"), "{err}");
}

/// binlog_row_metadata=MINIMAL and capture reading behind a DDL that changed a column's type:
/// the TABLE_MAP (INT) disagrees with information_schema (BIGINT) — capture stops with the fix
/// instead of naming the values by today's schema; nothing of it reaches the warehouse.
#[test]
fn minimal_row_metadata_behind_a_ddl_stops_with_the_fix() {
    let Some(db) = mysql97_or_skip("minimal_row_metadata_behind_a_ddl_stops_with_the_fix") else {
        return;
    };
    let pg = PgDb::new("mysql97_minimal").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &db.url(), &db, &pg);
    db.sql(&table(&db)).unwrap();
    run_until_caught_up(&cfg);
    // Written with the old shape, read after the DDL.
    db.sql("UPDATE bench.acct SET n = n + 1 WHERE id <= 10;")
        .unwrap();
    db.sql("ALTER TABLE bench.acct MODIFY n BIGINT NOT NULL;")
        .unwrap();
    let out = bin()
        .args(["run", "--until-caught-up", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must stop: {err}");
    assert!(
        err.contains("bench.acct") && err.contains("SET GLOBAL binlog_row_metadata=FULL"),
        "{err}"
    );
    assert!(err.contains("`n` is bigint"), "{err}");
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM bench.acct_history WHERE change_type = 'UPDATE'"
        ),
        0
    );
    // With names in the binlog, what is written after the switch streams again: the fix works
    // for new events (the ones before it still need a re-snapshot; not exercised here).
}

/// A partial JSON update written by a client that set `binlog_row_value_options=PARTIAL_JSON`
/// for its session only (the global setting, which `check` reads, is empty): capture stops on
/// the event with the fix; the update is never applied partially or dropped silently.
#[test]
fn a_session_partial_json_update_stops_capture_with_the_fix() {
    let Some(db) = mysql97_or_skip("a_session_partial_json_update_stops_capture_with_the_fix")
    else {
        return;
    };
    let pg = PgDb::new("mysql97_partial").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &db.url(), &db, &pg);
    db.sql(
        "CREATE DATABASE bench; CREATE TABLE bench.j (id INT PRIMARY KEY, doc JSON);
         INSERT INTO bench.j VALUES (1, JSON_OBJECT('a', REPEAT('x', 100), 'b', 1));",
    )
    .unwrap();
    run_until_caught_up(&cfg);
    db.sql(
        "SET SESSION binlog_row_value_options = 'PARTIAL_JSON';
         UPDATE bench.j SET doc = JSON_SET(doc, '$.b', 2) WHERE id = 1;",
    )
    .unwrap();
    assert!(db
        .sql("SHOW BINLOG EVENTS")
        .unwrap()
        .contains("Update_rows_partial"));
    let out = bin()
        .args(["run", "--until-caught-up", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must stop: {err}");
    assert!(
        err.contains("PARTIAL_UPDATE_ROWS_EVENT")
            && err.contains("SET GLOBAL binlog_row_value_options=''"),
        "{err}"
    );
    assert_eq!(
        pg.query("SELECT doc->>'b' FROM bench.j_current")
            .unwrap()
            .trim(),
        "1"
    );
}

/// binlog_row_metadata=MINIMAL and rows of a table dropped before capture read them: the
/// columns cannot be named, so capture stops with the fix — never rows with `@1…@N` names.
#[test]
fn minimal_row_metadata_rows_of_a_dropped_table_stop_with_the_fix() {
    let Some(db) = mysql97_or_skip("minimal_row_metadata_rows_of_a_dropped_table") else {
        return;
    };
    let pg = PgDb::new("mysql97_dropped").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &db.url(), &db, &pg);
    db.sql(&table(&db)).unwrap();
    run_until_caught_up(&cfg);
    db.sql(
        "CREATE TABLE bench.tmp (id INT PRIMARY KEY, x VARCHAR(10));
         INSERT INTO bench.tmp VALUES (1, 'a'), (2, 'b');
         DROP TABLE bench.tmp;",
    )
    .unwrap();
    let out = bin()
        .args(["run", "--until-caught-up", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must stop: {err}");
    assert!(
        err.contains("bench.tmp")
            && err.contains("no longer exists")
            && err.contains("SET GLOBAL binlog_row_metadata=FULL"),
        "{err}"
    );
    let tables = pg
        .query("SELECT count(*) FROM information_schema.columns WHERE column_name LIKE '@%'")
        .unwrap();
    assert_eq!(tables.trim(), "0", "no @N columns in the warehouse");
}

/// Kafka mode on MySQL 9.7 (defaults, GTIDs on, compressed transactions): `tributary capture`
/// to a private broker, then `tributary run --source kafka`, both bounded; after the snapshot
/// and after the streamed workload the warehouse equals the source, history exactly once.
#[test]
fn kafka_mode_on_mysql97_capture_then_sink() {
    let Some(db) = mysql97_or_skip_with(
        "kafka_mode_on_mysql97_capture_then_sink",
        &["--binlog-transaction-compression=ON"],
    ) else {
        return;
    };
    let t = tributary_testkit::Tansu::start().unwrap();
    let url = db.create_user("cdc", "cdc-pw-97", GRANTS).unwrap();
    let pg = PgDb::new("mysql97_kafka").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("k.toml");
    std::fs::write(
        &cfg,
        format!(
            "[source]\nkind = \"kafka\"\nurl = \"{url}\"\ndatabases = [\"bench\"]\nserver_id = {}\nname = \"dbserver1\"\nbrokers = \"{}\"\ngroup_id = \"wh97\"\ntopics = [\"dbserver1.bench.acct\"]\n\n[sink]\nurl = \"{}\"\n\n[pipeline]\nbatch_size = 500\nbatch_wait_ms = 20\n",
            db.server_id + 5000,
            t.brokers(),
            pg.url
        ),
    )
    .unwrap();
    let state = dir.path().join("capture-position.json");
    let round = || {
        let c = bin()
            .args(["capture", "-c"])
            .arg(&cfg)
            .args(["--kafka-brokers", &t.brokers(), "--state"])
            .arg(&state)
            .arg("--until-caught-up")
            .output()
            .unwrap();
        assert!(
            c.status.success(),
            "capture: {}",
            String::from_utf8_lossy(&c.stderr)
        );
        let s = bin()
            .args(["run", "--source", "kafka", "--until-caught-up", "-c"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(
            s.status.success(),
            "sink: {}",
            String::from_utf8_lossy(&s.stderr)
        );
    };
    db.sql(&table(&db)).unwrap();
    round();
    assert_eq!(count(&pg, "SELECT count(*) FROM bench.acct_current"), 3000);
    stream_workload(&db);
    round();
    assert_current_equals_source(&db, &pg);
    assert_eq!(
        pg.query("SELECT change_type, count(*) FROM bench.acct_history GROUP BY 1 ORDER BY 1")
            .unwrap(),
        format!("DELETE\t{DELETES}\nINSERT\t{INSERTS}\nSNAPSHOT\t3000\nUPDATE\t{UPDATES}\n")
    );
}
