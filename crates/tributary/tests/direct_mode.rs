//! Direct mode (MariaDB → PostgreSQL, no Kafka) against a private MariaDB with binlog and the
//! real PostgreSQL: the golden scenario end to end, bounded re-runs, `kill -9` during the
//! snapshot and during streaming, and a MariaDB restart mid-stream.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tributary_testkit::{
    assert_final, golden, maria118_or_skip, mysql97_or_skip, KillOnDrop, MariaDb, PgDb,
};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tributary"));
    c.env("TRIBUTARY_LOG", "warn");
    c
}

fn config(
    dir: &std::path::Path,
    db: &MariaDb,
    pg: &PgDb,
    databases: &str,
    chunk: usize,
) -> std::path::PathBuf {
    let p = dir.join("tributary.toml");
    std::fs::write(
        &p,
        format!(
            "[source]\nkind = \"mysql\"\nurl = \"{}\"\ndatabases = [\"{databases}\"]\nserver_id = {}\nname = \"dbserver1\"\nsnapshot_chunk_size = {chunk}\n\n[sink]\nurl = \"{}\"\n\n[pipeline]\nbatch_size = 2000\nbatch_wait_ms = 20\n",
            db.url(),
            db.server_id + 5000,
            pg.url
        ),
    )
    .unwrap();
    p
}

fn run_until_caught_up(cfg: &std::path::Path) {
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

fn spawn_run(cfg: &std::path::Path) -> Child {
    bin()
        .args(["run", "-c"])
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn count(pg: &PgDb, sql: &str) -> i64 {
    pg.query(sql)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(-1)
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn golden_scenario_direct_reaches_the_source_state_exactly_once() {
    let db = MariaDb::start().unwrap();
    let pg = PgDb::new("direct_golden").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &db, &pg, "typesdb", 10_000);
    db.sql_file(&golden("scenario/init.sql")).unwrap();
    run_until_caught_up(&cfg);
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM typesdb.all_types_history WHERE change_type = 'SNAPSHOT'"
        ),
        3
    );
    db.sql_file(&golden("scenario/stream.sql")).unwrap();
    run_until_caught_up(&cfg);
    // Direct mode has no Debezium conversion in between: BIGINT UNSIGNED max stays exact.
    assert_final(&pg, "typesdb", "all_types", "id", &[]);
    assert_final(&pg, "typesdb", "no_pk", "a, b", &[]);
    let h = pg.query("SELECT id, change_type FROM typesdb.all_types_history ORDER BY _source_pos, _source_row, change_type").unwrap();
    let kinds: Vec<&str> = h.lines().map(|l| l.split('\t').nth(1).unwrap()).collect();
    let mut sorted = kinds.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "DELETE", "DELETE", "INSERT", "INSERT", "INSERT", "INSERT", "SNAPSHOT", "SNAPSHOT",
            "SNAPSHOT", "UPDATE", "UPDATE"
        ],
        "{h}"
    );
    assert_eq!(count(&pg, "SELECT count(*) FROM typesdb.no_pk_history"), 5);
    // A third bounded run adds nothing.
    let before = pg
        .query("SELECT count(*) FROM typesdb.all_types_history")
        .unwrap();
    run_until_caught_up(&cfg);
    assert_eq!(
        pg.query("SELECT count(*) FROM typesdb.all_types_history")
            .unwrap(),
        before
    );
    assert_final(&pg, "typesdb", "all_types", "id", &[]);
    // verify agrees.
    let v = bin().args(["verify", "-c"]).arg(&cfg).output().unwrap();
    assert!(
        v.status.success(),
        "verify: {}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
    // …and notices a difference made behind its back.
    pg.query("DELETE FROM typesdb.all_types_current WHERE id = 5")
        .unwrap();
    let v = bin().args(["verify", "-c"]).arg(&cfg).output().unwrap();
    assert_eq!(v.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&v.stdout)
        .contains("typesdb.all_types: source rows 5 / warehouse rows 4"));
    // status: the binlog position, caught up (0 bytes behind), row counts, no dead letters.
    let st = bin()
        .args(["status", "--json", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(j["dead_letters"], 0);
    assert_eq!(j["positions"][0]["pipeline"], "mysql:dbserver1");
    assert_eq!(j["positions"][0]["lag"], "0 bytes");
    let tables: Vec<String> = j["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| format!("{} {}", t["source"], t["history_rows"]))
        .collect();
    assert_eq!(tables, ["\"typesdb.all_types\" 11", "\"typesdb.no_pk\" 5"]);
}

fn source_rows(db: &MariaDb, table: &str) -> String {
    db.sql(&format!("SELECT id, v FROM bench.{table} ORDER BY id"))
        .unwrap()
}

fn warehouse_rows(pg: &PgDb, table: &str) -> String {
    let s = pg
        .query(&format!(
            "SELECT id, v FROM bench.{table}_current ORDER BY id"
        ))
        .unwrap();
    s
}

#[test]
fn kill_9_during_snapshot_and_streaming_then_restart_is_exact() {
    kill_9_during_snapshot_and_streaming(MariaDb::start().unwrap(), "direct_kill");
}

/// The same on MariaDB 11.8 with its default settings (event headers inside transactions carry
/// log_pos 0: positions are counted from the stream).
#[test]
fn kill_9_during_snapshot_and_streaming_on_mariadb_118_defaults_is_exact() {
    let Some(db) = maria118_or_skip("kill_9_during_snapshot_and_streaming_on_mariadb_118") else {
        return;
    };
    kill_9_during_snapshot_and_streaming(db, "direct_kill118");
}

/// The same on Oracle MySQL 9.7 with its defaults (GTIDs on, binlog_row_metadata=MINIMAL,
/// SHOW BINARY LOG STATUS).
#[test]
fn kill_9_during_snapshot_and_streaming_on_mysql_97_is_exact() {
    let Some(db) = mysql97_or_skip("kill_9_during_snapshot_and_streaming_on_mysql_97") else {
        return;
    };
    kill_9_during_snapshot_and_streaming(db, "direct_kill97");
}

fn kill_9_during_snapshot_and_streaming(db: MariaDb, tag: &str) {
    let pg = PgDb::new(tag).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &db, &pg, "bench", 500);
    db.sql(&format!(
        "CREATE DATABASE bench; CREATE TABLE bench.t (id INT PRIMARY KEY, v VARCHAR(40)) ENGINE=InnoDB;
         INSERT INTO bench.t SELECT seq, CONCAT('v', seq) FROM {} s;",
        db.seq(1, 60000)
    ))
    .unwrap();

    // 1. kill -9 in the middle of the snapshot.
    let mut child = KillOnDrop(spawn_run(&cfg));
    wait_for("part of the snapshot", 120, || {
        count(&pg, "SELECT count(*) FROM bench.t_current") >= 5_000
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = count(&pg, "SELECT count(*) FROM bench.t_current");
    assert!(
        partial < 60_000,
        "snapshot finished before the kill ({partial} rows)"
    );
    // Changes while the pipeline is down: rows already snapshotted and rows not yet.
    db.sql(&format!(
        "UPDATE bench.t SET v = CONCAT(v, '-a') WHERE id % 100 = 0;
         DELETE FROM bench.t WHERE id % 250 = 1;
         INSERT INTO bench.t SELECT seq, 'new' FROM {} s;",
        db.seq(60001, 60500)
    ))
    .unwrap();
    run_until_caught_up(&cfg);
    assert_eq!(warehouse_rows(&pg, "t"), source_rows(&db, "t"));
    // Each source row was snapshotted at most once; each change applied exactly once.
    assert_eq!(
        count(&pg, "SELECT count(*) FROM (SELECT id FROM bench.t_history WHERE change_type = 'SNAPSHOT' GROUP BY id HAVING count(*) > 1) d"),
        0
    );
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM bench.t_history WHERE change_type = 'UPDATE'"
        ),
        600
    );
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM bench.t_history WHERE change_type = 'DELETE'"
        ),
        240
    );
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM bench.t_history WHERE change_type = 'INSERT'"
        ),
        500
    );

    // 2. kill -9 while streaming many small transactions.
    let mut child = KillOnDrop(spawn_run(&cfg));
    let writer = {
        let mut client = db.client();
        std::thread::spawn(move || {
            let sql: String = (1..=3000)
                .map(|i| {
                    format!(
                        "UPDATE bench.t SET v = 'w{i}' WHERE id = {};",
                        (i * 7) % 60000 + 2
                    )
                })
                .collect();
            use std::io::Write;
            let mut c = client.stdin(Stdio::piped()).spawn().unwrap();
            c.stdin.take().unwrap().write_all(sql.as_bytes()).unwrap();
            assert!(c.wait().unwrap().success());
        })
    };
    wait_for("some streamed updates", 120, || {
        count(
            &pg,
            "SELECT count(*) FROM bench.t_history WHERE change_type = 'UPDATE'",
        ) >= 900
    });
    child.kill().unwrap();
    child.wait().unwrap();
    writer.join().unwrap();
    run_until_caught_up(&cfg);
    assert_eq!(warehouse_rows(&pg, "t"), source_rows(&db, "t"));
    // Updates of deleted ids (id % 250 = 1) match no row and log nothing.
    let streamed = (1..=3000i64)
        .filter(|i| ((i * 7) % 60000 + 2) % 250 != 1)
        .count() as i64;
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM bench.t_history WHERE change_type = 'UPDATE'"
        ),
        600 + streamed
    );
    // And nothing more on a further run.
    run_until_caught_up(&cfg);
    // The resumed snapshot read the rest of the table at a later consistent point, so rows
    // inserted while the pipeline was down are both streamed (INSERT) and read (SNAPSHOT);
    // rows deleted before that point were not read. Every change still appears exactly once.
    let snapshots = count(
        &pg,
        "SELECT count(*) FROM bench.t_history WHERE change_type = 'SNAPSHOT'",
    );
    assert!((59_760..=60_500).contains(&snapshots), "{snapshots}");
    assert_eq!(
        count(&pg, "SELECT count(*) FROM bench.t_history"),
        snapshots + 600 + 240 + 500 + streamed
    );
}

#[test]
fn mariadb_restart_mid_stream_resumes_by_itself() {
    mariadb_restart_mid_stream(MariaDb::start().unwrap(), "direct_restart");
}

/// The same on MariaDB 11.8 with its default settings (the binlog dump that counts positions
/// reconnects too).
#[test]
fn mariadb_118_restart_mid_stream_resumes_by_itself() {
    let Some(db) = maria118_or_skip("mariadb_118_restart_mid_stream") else {
        return;
    };
    mariadb_restart_mid_stream(db, "direct_restart118");
}

/// The same on Oracle MySQL 9.7 (restarted with its arguments; GTIDs on).
#[test]
fn mysql_97_restart_mid_stream_resumes_by_itself() {
    let Some(db) = mysql97_or_skip("mysql_97_restart_mid_stream") else {
        return;
    };
    mariadb_restart_mid_stream(db, "direct_restart97");
}

fn mariadb_restart_mid_stream(mut db: MariaDb, tag: &str) {
    let pg = PgDb::new(tag).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &db, &pg, "bench", 1000);
    db.sql("CREATE DATABASE bench; CREATE TABLE bench.r (id INT PRIMARY KEY, v VARCHAR(40)); INSERT INTO bench.r VALUES (1, 'a');")
        .unwrap();
    let metrics_port = tributary_testkit::free_port();
    let mut child = KillOnDrop(
        bin()
            .args(["run", "-c"])
            .arg(&cfg)
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the snapshot", 60, || {
        count(&pg, "SELECT count(*) FROM bench.r_current") == 1
    });
    db.sql(&format!(
        "INSERT INTO bench.r SELECT seq, 'before' FROM {} s;",
        db.seq(2, 100)
    ))
    .unwrap();
    wait_for("rows before the restart", 60, || {
        count(&pg, "SELECT count(*) FROM bench.r_current") == 100
    });
    db.restart().unwrap();
    db.sql(&format!(
        "INSERT INTO bench.r SELECT seq, 'after' FROM {} s; UPDATE bench.r SET v = 'changed' WHERE id = 1;",
        db.seq(101, 200)
    ))
    .unwrap();
    wait_for("rows after the restart", 120, || {
        count(&pg, "SELECT count(*) FROM bench.r_current") == 200
            && count(
                &pg,
                "SELECT count(*) FROM bench.r_current WHERE v = 'changed'",
            ) == 1
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "the pipeline must survive the restart"
    );
    // Prometheus metrics and health from the running pipeline.
    let get = |path: &str| -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", metrics_port)).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let metrics = get("/metrics");
    assert!(
        metrics.contains("tributary_events_applied_total"),
        "{metrics}"
    );
    assert!(metrics.contains("tributary_batches_total"), "{metrics}");
    let health = get("/health");
    assert!(health.contains(" 200 "), "{health}");
    // SIGTERM: finishes its batch and exits 0.
    Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let st = child.wait().unwrap();
    assert!(st.success(), "exit after SIGTERM: {st}");
    assert_eq!(count(&pg, "SELECT count(*) FROM bench.r_history"), 201);
}
