//! Shared by the direct-mode CLI tests: the binary, a config for a private MariaDB and a
//! scratch PostgreSQL, and a bounded run.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use tributary_testkit::{MariaDb, PgDb};

/// The tributary binary, logging warnings only.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tributary"));
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
    let out = bin()
        .args(["run", "--until-caught-up", "-c"])
        .arg(cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
