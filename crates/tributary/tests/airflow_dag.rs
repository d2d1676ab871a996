//! The Airflow example (`examples/airflow/dags/tributary_bank.py`) run by a real Apache Airflow:
//! `scripts/test-airflow` installs Airflow into a cached venv (first run ~1-3 min, then seconds),
//! starts a private MariaDB with binlog and a scratch PostgreSQL database, and runs the DAG with
//! `airflow dags test` through the seed's scenario (snapshot, changes, idempotent re-run, a loud
//! failure). This test hands it the binary cargo just built.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

#[test]
fn airflow_dag_runs_the_seed_scenario() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("scripts/test-airflow");
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_tributary"))
        .current_dir(&root)
        .output()
        .expect("running scripts/test-airflow");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "scripts/test-airflow: {} in {:.0}s\n--- stderr\n{stderr}--- stdout\n{stdout}",
        out.status,
        started.elapsed().as_secs_f64()
    );
    assert!(
        out.status.success() && stdout.contains("PASS"),
        "scripts/test-airflow failed ({}); output above",
        out.status
    );
}
