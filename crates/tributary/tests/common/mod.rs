//! Shared by the direct-mode CLI tests: the binary, a config for a private MariaDB and a
//! scratch PostgreSQL, and a bounded run.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use tributary_testkit::{MariaDb, PgDb};

/// The tributary binary (`TRIBUTARY_TEST_BIN` runs the tests against another build, e.g. to
/// see them fail on an older tributary), logging warnings only.
pub fn bin() -> Command {
    let exe = std::env::var_os("TRIBUTARY_TEST_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_tributary").into());
    let mut c = Command::new(exe);
    c.env("TRIBUTARY_LOG", "warn");
    c
}

/// A direct-mode config in `dir` capturing `databases` of `db` into `pg`, with `extra` TOML
/// appended (e.g. a `[pipeline]` section).
pub fn direct_config(dir: &Path, db: &MariaDb, pg: &PgDb, databases: &str, extra: &str) -> PathBuf {
    let p = dir.join("t.toml");
    std::fs::write(
        &p,
        format!(
            "[source]\nurl = \"{}\"\ndatabases = [\"{databases}\"]\nserver_id = {}\n\n[sink]\nurl = \"{}\"\n\n{extra}",
            db.url(),
            db.server_id + 5000,
            pg.url
        ),
    )
    .unwrap();
    p
}

/// `tributary run --until-caught-up -c cfg`, which must succeed.
pub fn until_caught_up(cfg: &Path) {
    until_caught_up_within(cfg, std::time::Duration::from_secs(600));
}

/// [`until_caught_up`] that must also finish within `limit` (its stderr in the failure).
pub fn until_caught_up_within(cfg: &Path, limit: std::time::Duration) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = bin()
        .args(["run", "--until-caught-up", "-c"])
        .arg(cfg)
        .stdout(std::process::Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let err = std::fs::read_to_string(log.path()).unwrap_or_default();
            assert!(st.success(), "run --until-caught-up failed: {err}");
            return;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("run --until-caught-up did not finish within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
