//! Capture throughput on a private MariaDB:
//! `cargo run --release -p tributary-capture --example capture_bench [rows]`
//!
//! Snapshots `rows` rows (default 200 000), then generates `rows` single-row UPDATE
//! transactions with a stored procedure and streams that binlog backlog. Prints events/s for
//! both phases and the peak RSS (VmHWM).

use std::time::{Duration, Instant};

use tributary_capture::{CaptureConfig, MySqlSource};
use tributary_testkit::MariaDb;

fn vm_hwm() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_else(|| "?".into())
}

#[tokio::main]
async fn main() {
    let rows: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let db = MariaDb::start().expect("start MariaDB");
    db.sql(&format!(
        "CREATE DATABASE bench; USE bench; \
         CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL, s VARCHAR(32), d DECIMAL(10,2), ts DATETIME(6)); \
         INSERT INTO t SELECT seq, 0, CONCAT('row-', seq), seq / 100, NOW(6) FROM seq_1_to_{rows};"
    ))
    .expect("load");
    let cfg = CaptureConfig {
        url: db.url(),
        databases: vec!["bench".into()],
        server_id: 77_000 + db.server_id,
        name: "bench".into(),
        heartbeat: Duration::from_millis(500),
        ..Default::default()
    };
    let mut src = MySqlSource::start(cfg, None).await.expect("start source");

    let t0 = Instant::now();
    let mut n = 0u64;
    while src.snapshot_progress().is_some() {
        n += src.next_batch(10_000).await.expect("batch").events.len() as u64;
    }
    let snap_secs = t0.elapsed().as_secs_f64();
    println!(
        "snapshot:  {n} rows in {snap_secs:.2} s = {:.0} events/s",
        n as f64 / snap_secs
    );

    let g0 = Instant::now();
    db.sql(&format!(
        "USE bench;\nDELIMITER //\nCREATE PROCEDURE upd() BEGIN DECLARE i INT DEFAULT 1; \
         WHILE i <= {rows} DO UPDATE t SET v = v + 1 WHERE id = i; SET i = i + 1; END WHILE; END //\n\
         DELIMITER ;\nCALL upd();"
    ))
    .expect("updates");
    println!(
        "generated: {rows} single-row UPDATE transactions in {:.2} s (server side)",
        g0.elapsed().as_secs_f64()
    );

    let t1 = Instant::now();
    let mut m = 0u64;
    let mut batches = 0u64;
    while m < rows {
        let b = src.next_batch(10_000).await.expect("batch");
        m += b.events.len() as u64;
        batches += 1;
    }
    let secs = t1.elapsed().as_secs_f64();
    println!(
        "streaming: {m} events in {secs:.2} s = {:.0} events/s ({batches} batches)",
        m as f64 / secs
    );
    println!("peak RSS (VmHWM): {}", vm_hwm());
    src.close().await;
}
