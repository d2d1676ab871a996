//! # tributary-capture — MySQL/MariaDB → [`tributary_model::ChangeEvent`]s
//!
//! * [`check`] inspects a server's binlog settings and reports every problem with its fix.
//! * [`MySqlSource`] takes a consistent snapshot (see [`snapshot`] for the algorithm and its
//!   resume guarantee), then streams the binlog (ROW format) from the snapshot's position.
//! * [`MySqlSource::next_batch`] only ever returns whole source transactions, with the binlog
//!   position *after* the last one as the batch checkpoint: storing that checkpoint atomically
//!   with the batch's data and passing it back as `resume` gives exactly-once delivery.
//!   A single transaction larger than `max_events` is returned whole (a batch may exceed
//!   `max_events` in that case).
//!
//! Types: see `decode` (binlog) and `schema` (snapshot / information_schema); both produce
//! identical [`Value`](tributary_model::Value)s for identical data. Documented limits:
//! * zero dates (`0000-00-00`) are captured as NULL with a warning naming table and column;
//! * text in every character set is decoded by the server's own table (`decode::charset`:
//!   MySQL's `latin1` is windows-1252, `sjis` 0x8160 is U+301C, …), so the snapshot and the
//!   stream give the same text for the same bytes; bytes undefined in the column's character set
//!   (legacy data, a corrupt binlog) are captured as U+FFFD with a warning naming table, column
//!   and bytes — the snapshot reads them as the server converts them, `?`;
//! * an ENUM/SET value without a known label, a binlog value out of its type's range and a
//!   snapshot value that does not parse or fit stop capture with a definite error naming
//!   table, column and value ([`CaptureError::Decode`] / [`CaptureError::Value`]), never `""`,
//!   `0` or a wrapped number;
//! * MariaDB `JSON` is a `LONGTEXT` alias: it is captured as `ColumnKind::String` (exactly
//!   what Debezium reports for MariaDB); MySQL 8 binary JSON is `ColumnKind::Json`;
//! * without `binlog_row_metadata=FULL` (MySQL's default MINIMAL, MariaDB 11.8's NO_LOG),
//!   names/keys/signedness/ENUM labels come from information_schema at the time the table
//!   version is first seen, by position, after checking that the TABLE_MAP's column count and
//!   types agree with it (`schema::enrich`): capture reading behind a DDL that changed them
//!   stops with the fix `SET GLOBAL binlog_row_metadata=FULL`, never `@N` names or values under
//!   the wrong columns; a DDL keeping count and types (a rename) is not detectable without FULL.
//!   Where the TABLE_MAP lacks them (NO_LOG) signedness, text character sets (by collation id)
//!   and bytes-vs-text also come from information_schema (`stream`'s TABLE_MAP handling);
//! * on MySQL ≥ 8.4 the server position is `SHOW BINARY LOG STATUS` (`snapshot::master_status`),
//!   GTIDs (also tagged `uuid:tag:N`) go into each record's source block and the executed GTID
//!   set into every stored position (`stream::mysql_gtid`), and [`check`] warns
//!   about `gtid_mode` other than ON and about missing grants (SELECT, RELOAD, REPLICATION
//!   CLIENT, REPLICATION SLAVE), besides the fatal row image / format / partial JSON settings;
//! * schema changes carry the DDL text; `SchemaChange::tables` is left empty — the new
//!   shape arrives with the next rows event's TableMap (with DEFAULTs from
//!   information_schema);
//! * compressed MariaDB binlog events (`log_bin_compress=ON`) and MySQL partial JSON updates
//!   are refused by [`check`].
//! * binlog positions are counted from the stream, never taken from event headers (which carry
//!   0 on MariaDB ≥ 11.4 with `binlog_legacy_event_pos=OFF` and inside MySQL compressed
//!   transactions): see `stream`. On such MariaDB servers the binlog is read by tributary's own
//!   dump connection (it must ask for ANNOTATE_ROWS events), which authenticates with
//!   `mysql_native_password` (or no password) only, without TLS (`ssl-mode` REQUIRED or
//!   stronger is refused for it by name).
//! * Every connection's options (TLS `ssl-mode`, CA, client certificate, `password_file`)
//!   come from one place, [`mysqlconn`].

use std::fmt;
use std::time::Duration;

use mysql_async::prelude::*;
use tributary_model::ErrorClass;

mod decode;
pub mod mysqlconn;
mod schema;
pub mod snapshot;
mod stream;

pub use mysqlconn::{mysql_target, split_tls_params};
pub use snapshot::SnapshotProgress;
pub use stream::{Lag, MySqlSource};

/// How the source starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotMode {
    /// Snapshot the selected tables, then stream (unless resuming a finished snapshot).
    #[default]
    Initial,
    /// Stream only, from the checkpoint or the server's current position.
    Never,
    /// Snapshot only; after it, `next_batch` returns empty batches and
    /// [`MySqlSource::finished`] is true.
    Only,
}

#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// `mysql://user:pass@host:port`
    pub url: String,
    /// Databases to capture (empty = all non-system databases).
    pub databases: Vec<String>,
    /// `db.table` names to include (empty = all tables of the selected databases).
    pub include_tables: Vec<String>,
    /// `db.table` names to exclude.
    pub exclude_tables: Vec<String>,
    /// Replica server id used for the binlog dump (must be unique among replicas).
    pub server_id: u32,
    /// Topic prefix / connector name → `SourcePosition::name`, checkpoint key `mysql:<name>`.
    pub name: String,
    pub snapshot: SnapshotMode,
    /// Rows per snapshot chunk.
    pub chunk_size: usize,
    /// Binlog heartbeat period; also the longest `next_batch` waits when idle.
    pub heartbeat: Duration,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            url: String::new(),
            databases: vec![],
            include_tables: vec![],
            exclude_tables: vec![],
            server_id: 5400,
            name: "tributary".into(),
            snapshot: SnapshotMode::Initial,
            chunk_size: 10_000,
            heartbeat: Duration::from_secs(1),
        }
    }
}

impl CaptureConfig {
    /// Whether `db.table` is captured.
    pub fn includes(&self, db: &str, table: &str) -> bool {
        !is_system_db(db)
            && tributary_model::table_selection_refusal(
                &self.databases,
                &self.include_tables,
                &self.exclude_tables,
                &tributary_model::TableId::new(db, table),
            )
            .is_none()
    }

    fn includes_db(&self, db: &str) -> bool {
        !is_system_db(db) && (self.databases.is_empty() || self.databases.iter().any(|d| d == db))
    }
}

pub(crate) fn is_system_db(db: &str) -> bool {
    matches!(
        db,
        "mysql" | "information_schema" | "performance_schema" | "sys"
    )
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The server went away or could not be reached: retry later.
    #[error("connection to MySQL/MariaDB failed: {0}")]
    Connection(String),
    /// Any other server/driver error.
    #[error("MySQL/MariaDB error: {0}")]
    Sql(String, bool),
    /// Server settings prevent capture (every problem listed, with its fix).
    #[error("server settings prevent capture:\n{0}")]
    Settings(String),
    /// Bad configuration of tributary itself.
    #[error("capture configuration: {0}")]
    Config(String),
    /// Missing privilege.
    #[error("missing privilege: {0}")]
    Privilege(String),
    /// Binlog content that cannot be decoded.
    #[error("binlog decode error at {file}:{pos}: {reason}")]
    Decode {
        file: String,
        pos: u64,
        reason: String,
    },
    /// The checkpoint passed to `start` is unusable.
    #[error("bad checkpoint: {0}")]
    Checkpoint(String),
    /// A source value that cannot be captured exactly (a snapshot number that does not parse
    /// or fit, a date out of range, a value of an unexpected type): definite, never replaced
    /// by a guess such as 0 or "".
    #[error("value of {table}.{column} cannot be captured exactly: {reason} (value {value})")]
    Value {
        table: String,
        column: String,
        value: String,
        reason: String,
    },
}

impl ErrorClass for CaptureError {
    fn is_transient(&self) -> bool {
        match self {
            CaptureError::Connection(_) => true,
            CaptureError::Sql(_, t) => *t,
            _ => false,
        }
    }
}

impl From<mysql_async::Error> for CaptureError {
    fn from(e: mysql_async::Error) -> Self {
        use mysql_async::Error as E;
        match &e {
            E::Io(_) => CaptureError::Connection(e.to_string()),
            E::Driver(mysql_async::DriverError::ConnectionClosed)
            | E::Driver(mysql_async::DriverError::PoolDisconnected) => {
                CaptureError::Connection(e.to_string())
            }
            E::Server(s) => match s.code {
                1044 | 1045 | 1142 | 1143 | 1227 => CaptureError::Privilege(format!(
                    "{} (grant the capture user SELECT, RELOAD, REPLICATION SLAVE, \
                     REPLICATION CLIENT / BINLOG MONITOR)",
                    s
                )),
                // too many connections, shutdown in progress, lock wait, deadlock, read-only
                1040 | 1053 | 1205 | 1213 | 1290 | 2006 | 2013 => {
                    CaptureError::Sql(e.to_string(), true)
                }
                _ => CaptureError::Sql(e.to_string(), false),
            },
            E::Url(_) => CaptureError::Config(e.to_string()),
            _ => CaptureError::Sql(e.to_string(), false),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    MariaDb,
    MySql,
}

/// One setting that is wrong for capture.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub setting: String,
    pub found: String,
    pub required: String,
    /// How to fix it (`SET GLOBAL …` and/or the my.cnf line).
    pub fix: String,
    /// Capture cannot work at all while this problem exists.
    pub fatal: bool,
}

/// A setting that breaks other capture tools silently and that tributary handles (said by
/// `check` so nobody "fixes" it needlessly, and so its absence from `problems` is explained).
#[derive(Debug, Clone, PartialEq)]
pub struct Handled {
    pub setting: String,
    pub found: String,
    /// Why capture is correct with it.
    pub how: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    pub flavor: Flavor,
    pub version: String,
    pub problems: Vec<Problem>,
    pub handled: Vec<Handled>,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        !self.problems.iter().any(|p| p.fatal)
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flavor = match self.flavor {
            Flavor::MariaDb => "MariaDB",
            Flavor::MySql => "MySQL",
        };
        writeln!(f, "{flavor} {}", self.version)?;
        if self.problems.is_empty() {
            writeln!(f, "all binlog settings OK for capture")?;
        }
        for h in &self.handled {
            writeln!(f, "OK    {}: {} — handled: {}", h.setting, h.found, h.how)?;
        }
        for p in &self.problems {
            writeln!(
                f,
                "{} {}: found {}, required {} — fix: {}",
                if p.fatal { "ERROR" } else { "WARN " },
                p.setting,
                p.found,
                p.required,
                p.fix
            )?;
        }
        Ok(())
    }
}

/// One session to the source (TLS and password as [`mysqlconn`] says).
pub(crate) async fn connect(url: &str) -> Result<mysql_async::Conn, CaptureError> {
    mysqlconn::connect_target(&mysqlconn::mysql_target(url)?).await
}

/// The server's current binlog `(file, position)` (`SHOW BINARY LOG STATUS` on MySQL ≥ 8.2,
/// `SHOW MASTER STATUS` elsewhere; see [`snapshot`]), over a session made as [`mysqlconn`] says.
pub async fn binlog_position(url: &str) -> Result<(String, u64), CaptureError> {
    let mut conn = connect(url).await?;
    let fp = snapshot::master_status(&mut conn).await;
    let _ = conn.disconnect().await;
    fp.map(|f| (f.file, f.pos))
}

/// The capture privileges a MySQL `SHOW GRANTS` output does not grant on `*.*`.
fn missing_mysql_grants(grants: &[String]) -> Vec<&'static str> {
    let global: Vec<String> = grants
        .iter()
        .map(|g| g.to_ascii_uppercase())
        .filter(|g| g.contains(" ON *.* "))
        .collect();
    if global
        .iter()
        .any(|g| g.starts_with("GRANT ALL PRIVILEGES ON"))
    {
        return vec![];
    }
    [
        "SELECT",
        "RELOAD",
        "REPLICATION CLIENT",
        "REPLICATION SLAVE",
    ]
    .into_iter()
    .filter(|need| {
        !global.iter().any(|g| {
            let list = g
                .strip_prefix("GRANT ")
                .and_then(|r| r.split(" ON *.* ").next())
                .unwrap_or("");
            list.split(',').any(|p| p.trim() == *need)
        })
    })
    .collect()
}

async fn var(conn: &mut mysql_async::Conn, name: &str) -> Result<Option<String>, CaptureError> {
    let q = format!("SHOW GLOBAL VARIABLES LIKE '{name}'");
    let row: Option<(String, String)> = conn.query_first(q).await?;
    Ok(row.map(|r| r.1))
}

/// Inspect the server: flavor, version and every setting that prevents (fatal) or degrades
/// (warning) capture, each with its fix.
pub async fn check(url: &str, server_id: u32) -> Result<CheckReport, CaptureError> {
    let mut conn = connect(url).await?;
    let version: String = conn
        .query_first("SELECT VERSION()")
        .await?
        .unwrap_or_default();
    let flavor = if version.to_ascii_lowercase().contains("mariadb") {
        Flavor::MariaDb
    } else {
        Flavor::MySql
    };
    let mut problems = Vec::new();
    let mut p = |setting: &str, found: &str, required: &str, fix: String, fatal: bool| {
        problems.push(Problem {
            setting: setting.into(),
            found: found.into(),
            required: required.into(),
            fix,
            fatal,
        })
    };
    let log_bin = var(&mut conn, "log_bin").await?.unwrap_or_default();
    if !log_bin.eq_ignore_ascii_case("ON") && log_bin != "1" {
        p(
            "log_bin",
            &log_bin,
            "ON",
            "add `log_bin=mysql-bin` (and a unique `server_id`) to the [mysqld] section of my.cnf and restart".into(),
            true,
        );
    }
    let fmt_ = var(&mut conn, "binlog_format").await?.unwrap_or_default();
    if !fmt_.eq_ignore_ascii_case("ROW") {
        p(
            "binlog_format",
            &fmt_,
            "ROW",
            "SET GLOBAL binlog_format=ROW (and `binlog_format=ROW` in my.cnf [mysqld] so it survives a restart)".into(),
            true,
        );
    }
    let image = var(&mut conn, "binlog_row_image")
        .await?
        .unwrap_or_default();
    if !image.eq_ignore_ascii_case("FULL") {
        p(
            "binlog_row_image",
            &image,
            "FULL",
            "SET GLOBAL binlog_row_image=FULL (and `binlog_row_image=FULL` in my.cnf [mysqld])"
                .into(),
            true,
        );
    }
    match var(&mut conn, "binlog_row_metadata").await? {
        Some(m) if m.eq_ignore_ascii_case("FULL") => {}
        Some(m) => p(
            "binlog_row_metadata",
            &m,
            "FULL (recommended)",
            "SET GLOBAL binlog_row_metadata=FULL (and `binlog_row_metadata=FULL` in my.cnf [mysqld]); without it the binlog carries no column names: tributary names columns by position from information_schema, checking count and types against each TABLE_MAP — capture reading behind a DDL that changed them stops with this fix, a DDL that keeps them (a rename) is not seen".into(),
            false,
        ),
        None => p(
            "binlog_row_metadata",
            "(not supported by this server)",
            "FULL (recommended)",
            "upgrade to MySQL ≥ 8.0.1 / MariaDB ≥ 10.5 for binlog_row_metadata=FULL".into(),
            false,
        ),
    }
    let sid = var(&mut conn, "server_id").await?.unwrap_or_default();
    if sid == "0" {
        p(
            "server_id",
            &sid,
            "non-zero",
            "SET GLOBAL server_id=1 (and `server_id=1` in my.cnf [mysqld])".into(),
            true,
        );
    } else if sid == server_id.to_string() {
        p(
            "capture server_id",
            &server_id.to_string(),
            &format!("different from the server's own server_id ({sid})"),
            "choose another --server-id for tributary".into(),
            true,
        );
    }
    if let Some(c) = var(&mut conn, "log_bin_compress").await? {
        if c.eq_ignore_ascii_case("ON") {
            p(
                "log_bin_compress",
                &c,
                "OFF",
                "SET GLOBAL log_bin_compress=OFF (compressed binlog events are not supported)"
                    .into(),
                true,
            );
        }
    }
    if let Some(c) = var(&mut conn, "binlog_row_value_options").await? {
        if c.to_ascii_uppercase().contains("PARTIAL_JSON") {
            p(
                "binlog_row_value_options",
                &c,
                "'' (empty)",
                "SET GLOBAL binlog_row_value_options='' (partial JSON updates are not supported)"
                    .into(),
                true,
            );
        }
    }
    if flavor == Flavor::MySql {
        // GTIDs: without them records carry no GTID and a failover cannot be resumed by GTID.
        if let Some(g) = var(&mut conn, "gtid_mode").await? {
            if !g.eq_ignore_ascii_case("ON") {
                p(
                    "gtid_mode",
                    &g,
                    "ON (recommended)",
                    "SET GLOBAL enforce_gtid_consistency=ON, then gtid_mode step by step \
                     (OFF_PERMISSIVE, ON_PERMISSIVE, ON) and both in my.cnf [mysqld]; without \
                     GTIDs records carry no gtid and capture cannot follow a failover by GTID"
                        .into(),
                    false,
                );
            }
        }
        // The grants capture needs (MySQL: SHOW GRANTS lists them per user; through roles
        // they may be there without being listed, hence a warning).
        if let Ok(grants) = conn.query::<String, _>("SHOW GRANTS").await {
            let missing = missing_mysql_grants(&grants);
            if !missing.is_empty() {
                p(
                    "privileges",
                    &format!("no {}", missing.join(", ")),
                    "SELECT, RELOAD, REPLICATION CLIENT, REPLICATION SLAVE",
                    format!(
                        "GRANT {} ON *.* TO <capture user> (SELECT and RELOAD for the snapshot, \
                         REPLICATION CLIENT for SHOW BINARY LOG STATUS, REPLICATION SLAVE for \
                         the binlog dump)",
                        missing.join(", ")
                    ),
                    false,
                );
            }
        }
    }
    // Settings that make binlog event headers carry position 0; capture counts positions from
    // the bytes it reads (stream.rs), so they are safe — reported as such.
    let mut handled = Vec::new();
    if let Some(v) = var(&mut conn, "binlog_legacy_event_pos").await? {
        if v.eq_ignore_ascii_case("OFF") || v == "0" {
            handled.push(Handled {
                setting: "binlog_legacy_event_pos".into(),
                found: v,
                how: "event headers inside transactions carry log_pos 0; tributary counts \
                      binlog positions from the bytes it reads and never uses that field"
                    .into(),
            });
        }
    }
    if let Some(v) = var(&mut conn, "binlog_transaction_compression").await? {
        if v.eq_ignore_ascii_case("ON") || v == "1" {
            handled.push(Handled {
                setting: "binlog_transaction_compression".into(),
                found: v,
                how: "events inside a compressed transaction carry log_pos 0; tributary gives \
                      them the position of the compressed payload and numbers their rows in order"
                    .into(),
            });
        }
    }
    let _ = conn.disconnect().await;
    Ok(CheckReport {
        flavor,
        version,
        problems,
        handled,
    })
}

#[cfg(test)]
mod grant_tests {
    use super::missing_mysql_grants;

    #[test]
    fn mysql_grants_are_read_from_show_grants() {
        let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(missing_mysql_grants(&g(&[
            "GRANT SELECT, RELOAD, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `cdc`@`%`"
        ]))
        .is_empty());
        assert!(missing_mysql_grants(&g(&[
            "GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION"
        ]))
        .is_empty());
        assert_eq!(
            missing_mysql_grants(&g(&[
                "GRANT SELECT ON *.* TO `cdc`@`%`",
                "GRANT RELOAD, REPLICATION SLAVE ON `db`.* TO `cdc`@`%`"
            ])),
            vec!["RELOAD", "REPLICATION CLIENT", "REPLICATION SLAVE"]
        );
    }
}
