//! Every PostgreSQL connection tributary opens is built here ([`crate::connect`] calls
//! [`PgTarget::parse`] then [`PgTarget::connect`]), so TLS, passwords and their errors behave
//! the same for the sink, `status`, `dlq`, `verify` and the demo.
//!
//! ## libpq's semantics, with rustls
//! The URL (`postgres://…?sslmode=…` or `host=… sslmode=…`) takes libpq's TLS parameters;
//! tokio-postgres itself only knows disable/prefer/require, so they are taken out of the URL
//! here and the rest is parsed by tokio-postgres. Missing values come from libpq's environment
//! (`PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`, `PGHOST`, `PGPORT`, `PGUSER`,
//! `PGDATABASE`, `PGPASSWORD`, `PGPASSFILE`), then libpq's defaults:
//!
//! | sslmode | TLS | server certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `allow` | only when plaintext is refused | not checked |
//! | `prefer` (default) | when the server offers it, else plaintext (logged at info) | not checked |
//! | `require` | always | not checked — unless a root CA is given (or `~/.postgresql/root.crt` exists): then as `verify-ca` |
//! | `verify-ca` | always | chain to `sslrootcert` |
//! | `verify-full` | always | chain to `sslrootcert` and the host name (or IP) in the certificate |
//!
//! `sslrootcert=system` uses Mozilla's root bundle (`webpki-roots`, compiled in — not the OS
//! store). `sslcert`/`sslkey` (default `~/.postgresql/postgresql.crt`/`.key` when both exist)
//! send a client certificate (PEM; PKCS#1, PKCS#8 or SEC1 keys; encrypted keys are not
//! supported). Unix-socket hosts never use TLS (as libpq).
//!
//! ## Passwords
//! In order: the URL's password, `password_file=PATH` (a tributary parameter: the file's
//! first line, re-read on every connect so a rotated Docker/Kubernetes secret is picked up),
//! `PGPASSWORD`, then the pgpass file (`PGPASSFILE` or `~/.pgpass`, libpq's format and
//! matching; ignored with a warning when group/world readable, as libpq does).
//!
//! ## Errors
//! A parameter with a bad value, a file that cannot be read, a certificate that does not
//! verify, a server refusing plaintext: all are definite errors naming the setting (never the
//! password), so the pipeline stops instead of retrying them as an outage. Only failures to
//! reach the server (and the server's own transient SQLSTATEs) are transient.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::{Host, SslMode as PgSslMode};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;
use tracing::{debug, warn};

use crate::{pg_err, ApplyError};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn parse(s: &str) -> Result<SslMode, String> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode={other:?}: expected disable, allow, prefer, require, verify-ca or verify-full"
                ))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// The TLS parameters tributary takes out of a connection string before tokio-postgres sees it.
const TAKEN: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "passfile",
    "password_file",
];
/// libpq parameters tributary does not implement: refused by name rather than ignored.
const UNSUPPORTED: &[&str] = &[
    "sslpassword",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "requirepeer",
    "gssencmode",
    "krbsrvname",
    "service",
    "sslcompression",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "sslcertmode",
];

/// A parsed PostgreSQL connection target.
#[derive(Clone)]
pub struct PgTarget {
    pub config: tokio_postgres::Config,
    pub sslmode: SslMode,
    pub sslrootcert: Option<String>,
    pub sslcert: Option<PathBuf>,
    pub sslkey: Option<PathBuf>,
    /// Where the password came from (for messages; never the password).
    pub password_source: &'static str,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("hosts", &self.hosts_text())
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .field("sslcert", &self.sslcert)
            .field("sslkey", &self.sslkey)
            .field("password_source", &self.password_source)
            .finish()
    }
}

fn definite(m: String) -> ApplyError {
    ApplyError::definite(m)
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "a `%` not followed by two hex digits".to_string())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent-decoded text is not UTF-8".to_string())
}

/// Split a `key=value key='quoted value'` connection string (libpq's keyword form).
fn split_keyword_form(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = vec![];
    let mut it = s.chars().peekable();
    loop {
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        if it.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(&c) = it.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            it.next();
        }
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        if it.next() != Some('=') {
            return Err(format!("`{key}` is not followed by `=`"));
        }
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        let mut val = String::new();
        if it.peek() == Some(&'\'') {
            it.next();
            loop {
                match it.next() {
                    None => return Err(format!("unterminated quoted value of `{key}`")),
                    Some('\\') => match it.next() {
                        Some(c) => val.push(c),
                        None => return Err(format!("unterminated quoted value of `{key}`")),
                    },
                    Some('\'') => break,
                    Some(c) => val.push(c),
                }
            }
        } else {
            while let Some(&c) = it.peek() {
                if c.is_whitespace() {
                    break;
                }
                it.next();
                if c == '\\' {
                    if let Some(n) = it.next() {
                        val.push(n);
                    }
                } else {
                    val.push(c);
                }
            }
        }
        out.push((key, val));
    }
}

fn quote_keyword_value(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Take tributary's TLS/password parameters out of `url`; returns the rest (for
/// tokio-postgres) and the taken `(key, value)` pairs.
pub fn take_params(url: &str) -> Result<(String, Vec<(String, String)>), String> {
    let mut taken = vec![];
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let check = |k: &str| -> Result<(), String> {
        if UNSUPPORTED.contains(&k) {
            return Err(format!(
                "the connection parameter `{k}` is not supported by tributary (see README \"Security\")"
            ));
        }
        Ok(())
    };
    if is_url {
        let fixed = encode_raw_at(url);
        let url = fixed.as_str();
        let Some(q) = url.find('?') else {
            return Ok((url.to_string(), taken));
        };
        let mut kept = vec![];
        for pair in url[q + 1..].split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(k).map_err(|e| format!("URL parameter: {e}"))?;
            check(&key)?;
            if TAKEN.contains(&key.as_str()) {
                let val = percent_decode(v).map_err(|e| format!("URL parameter `{key}`: {e}"))?;
                taken.push((key, val));
            } else {
                kept.push(pair);
            }
        }
        let mut rest = url[..q].to_string();
        if !kept.is_empty() {
            rest.push('?');
            rest.push_str(&kept.join("&"));
        }
        Ok((rest, taken))
    } else {
        let mut kept = vec![];
        for (k, v) in split_keyword_form(url).map_err(|e| format!("connection string: {e}"))? {
            check(&k)?;
            if TAKEN.contains(&k.as_str()) {
                taken.push((k, v));
            } else {
                kept.push(format!("{k}={}", quote_keyword_value(&v)));
            }
        }
        Ok((kept.join(" "), taken))
    }
}

/// A password with a raw `@` (`postgres://u:p@ss@host/db`): the user part ends at the *last*
/// `@` before the query, so the earlier ones are percent-encoded (tokio-postgres would take the
/// first and make the password's tail the host name — and print it in every error).
fn encode_raw_at(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let start = scheme_end + 3;
    let end = url[start..]
        .find('?')
        .map(|q| start + q)
        .unwrap_or(url.len());
    let Some(last) = url[start..end].rfind('@').map(|i| start + i) else {
        return url.to_string();
    };
    format!(
        "{}{}{}",
        &url[..start],
        url[start..last].replace('@', "%40"),
        &url[last..]
    )
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

/// The first line of a secret file (a trailing newline is not part of the secret).
pub fn read_secret_file(path: &Path, what: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{what}: cannot read {}: {e}", path.display()))?;
    let line = text.lines().next().unwrap_or("");
    Ok(line.trim_end_matches('\r').to_string())
}

/// One pgpass field matches (`*` matches anything; `\:` and `\\` are escapes).
fn pgpass_lookup(text: &str, host: &str, port: &str, db: &str, user: &str) -> Option<String> {
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = vec![String::new()];
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        fields.last_mut().unwrap().push(n);
                    }
                }
                ':' if fields.len() < 5 => fields.push(String::new()),
                c => fields.last_mut().unwrap().push(c),
            }
        }
        if fields.len() != 5 {
            continue;
        }
        let m = |f: &str, v: &str| f == "*" || f == v;
        if m(&fields[0], host) && m(&fields[1], port) && m(&fields[2], db) && m(&fields[3], user) {
            return Some(fields[4].clone());
        }
    }
    None
}

impl PgTarget {
    /// Parse `url` with libpq's environment read through `env`.
    pub fn parse(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<PgTarget, ApplyError> {
        let (rest, taken) =
            take_params(url).map_err(|e| definite(format!("PostgreSQL URL: {e}")))?;
        let get = |k: &str| {
            taken
                .iter()
                .rev()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        let mut config: tokio_postgres::Config = rest
            .parse()
            .map_err(|e| definite(format!("PostgreSQL URL {}: {e}", redact_url(url))))?;
        // libpq's environment fills what the URL leaves out.
        if config.get_hosts().is_empty() {
            match env("PGHOST") {
                Some(h) => {
                    for h in h.split(',') {
                        config.host(h);
                    }
                }
                None => {
                    config.host("localhost");
                }
            }
        }
        if config.get_ports().is_empty() {
            if let Some(p) = env("PGPORT") {
                let p: u16 = p
                    .parse()
                    .map_err(|_| definite(format!("PGPORT={p:?} is not a port number")))?;
                config.port(p);
            }
        }
        if config.get_user().is_none() {
            if let Some(u) = env("PGUSER").or_else(|| env("USER")) {
                config.user(u);
            }
        }
        if config.get_dbname().is_none() {
            if let Some(d) = env("PGDATABASE") {
                config.dbname(d);
            }
        }
        let sslmode = match get("sslmode").or_else(|| env("PGSSLMODE")) {
            Some(m) => SslMode::parse(&m).map_err(|e| definite(format!("PostgreSQL {e}")))?,
            None => SslMode::Prefer,
        };
        let sslrootcert = get("sslrootcert").or_else(|| env("PGSSLROOTCERT"));
        let sslcert = get("sslcert")
            .or_else(|| env("PGSSLCERT"))
            .map(PathBuf::from);
        let sslkey = get("sslkey").or_else(|| env("PGSSLKEY")).map(PathBuf::from);
        let (sslcert, sslkey) = match (sslcert, sslkey) {
            (Some(c), Some(k)) => (Some(c), Some(k)),
            (Some(_), None) => return Err(definite(
                "PostgreSQL sslcert is set but sslkey is not: a client certificate needs its key"
                    .into(),
            )),
            (None, Some(_)) => return Err(definite(
                "PostgreSQL sslkey is set but sslcert is not: a client key needs its certificate"
                    .into(),
            )),
            (None, None) => {
                let d = home().map(|h| h.join(".postgresql"));
                match d {
                    Some(d)
                        if d.join("postgresql.crt").is_file()
                            && d.join("postgresql.key").is_file() =>
                    {
                        (
                            Some(d.join("postgresql.crt")),
                            Some(d.join("postgresql.key")),
                        )
                    }
                    _ => (None, None),
                }
            }
        };
        let mut password_source = "the URL";
        if config.get_password().is_none() {
            password_source = "none";
            if let Some(p) = get("password_file") {
                let pw = read_secret_file(Path::new(&p), "PostgreSQL password_file")
                    .map_err(definite)?;
                config.password(pw);
                password_source = "password_file";
            } else if let Some(pw) = env("PGPASSWORD") {
                config.password(pw);
                password_source = "PGPASSWORD";
            } else {
                let file = get("passfile")
                    .or_else(|| env("PGPASSFILE"))
                    .map(PathBuf::from)
                    .or_else(|| home().map(|h| h.join(".pgpass")));
                if let Some(file) = file.filter(|f| f.is_file()) {
                    if let Some(pw) = Self::from_pgpass(&file, &config) {
                        config.password(pw);
                        password_source = "the pgpass file";
                    }
                }
            }
        }
        Ok(PgTarget {
            config,
            sslmode,
            sslrootcert,
            sslcert,
            sslkey,
            password_source,
        })
    }

    fn from_pgpass(file: &Path, config: &tokio_postgres::Config) -> Option<String> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(m) = std::fs::metadata(file) {
                if m.permissions().mode() & 0o077 != 0 {
                    warn!(
                        "password file {} has group or world access; permissions should be u=rw (0600) or less: ignored",
                        file.display()
                    );
                    return None;
                }
            }
        }
        let text = std::fs::read_to_string(file).ok()?;
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(_)) | None => "localhost".to_string(),
        };
        let port = config
            .get_ports()
            .first()
            .copied()
            .unwrap_or(5432)
            .to_string();
        let user = config.get_user().unwrap_or("");
        let db = config.get_dbname().unwrap_or(user);
        pgpass_lookup(&text, &host, &port, db, user)
    }

    fn hosts_text(&self) -> String {
        let ports = self.config.get_ports();
        self.config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                match h {
                    Host::Tcp(h) => format!("{h}:{port}"),
                    Host::Unix(p) => format!("{}:{port}", p.display()),
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    fn on_unix_socket(&self) -> bool {
        self.config
            .get_hosts()
            .iter()
            .all(|h| matches!(h, Host::Unix(_)))
    }

    /// The root certificates: `sslrootcert`, else `~/.postgresql/root.crt` when it exists.
    fn roots(&self) -> Result<Option<(RootCertStore, String)>, ApplyError> {
        let path = match &self.sslrootcert {
            Some(p) if p == "system" => {
                let roots = RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                };
                return Ok(Some((roots, "system".into())));
            }
            Some(p) => PathBuf::from(p),
            None => match home().map(|h| h.join(".postgresql/root.crt")) {
                Some(p) if p.is_file() => p,
                _ => return Ok(None),
            },
        };
        let certs = load_certs(&path, "PostgreSQL sslrootcert")?;
        let mut roots = RootCertStore::empty();
        for c in certs {
            roots.add(c).map_err(|e| {
                definite(format!(
                    "PostgreSQL sslrootcert {}: not a usable CA certificate: {e}",
                    path.display()
                ))
            })?;
        }
        Ok(Some((roots, path.display().to_string())))
    }

    /// The rustls configuration for this target's sslmode (None: no TLS at all).
    pub fn tls_config(&self) -> Result<Option<ClientConfig>, ApplyError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| definite(format!("TLS setup: {e}")))?;
        let roots = match self.sslmode {
            SslMode::Disable => return Ok(None),
            _ => self.roots()?,
        };
        let builder = match (self.sslmode, roots) {
            (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
                return Err(definite(format!(
                    "PostgreSQL sslmode={} needs the CA that signed the server's certificate: set sslrootcert (a PEM file, or `system`); ~/.postgresql/root.crt does not exist",
                    self.sslmode.as_str()
                )))
            }
            (SslMode::VerifyFull, Some((roots, _))) => builder.with_root_certificates(roots),
            // libpq: require with a root CA file behaves as verify-ca.
            (SslMode::VerifyCa | SslMode::Require, Some((roots, _))) => {
                let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| definite(format!("PostgreSQL sslrootcert: {e}")))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)))
            }
            (_, _) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider))),
        };
        let cfg = match (&self.sslcert, &self.sslkey) {
            (Some(c), Some(k)) => {
                let chain = load_certs(c, "PostgreSQL sslcert")?;
                let key = PrivateKeyDer::from_pem_file(k).map_err(|e| {
                    definite(format!(
                        "PostgreSQL sslkey {}: no usable private key (PEM PKCS#1, PKCS#8 or SEC1, unencrypted): {e}",
                        k.display()
                    ))
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    definite(format!(
                        "PostgreSQL sslcert {} / sslkey {}: {e}",
                        c.display(),
                        k.display()
                    ))
                })?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(Some(cfg))
    }

    fn describe(&self, mode: SslMode) -> String {
        let mut s = format!(
            "PostgreSQL {} (sslmode={}",
            self.hosts_text(),
            mode.as_str()
        );
        if let Some(r) = &self.sslrootcert {
            s.push_str(&format!(", sslrootcert={r}"));
        }
        if let Some(c) = &self.sslcert {
            s.push_str(&format!(", sslcert={}", c.display()));
        }
        s.push(')');
        s
    }

    /// Open a session as the sslmode says.
    pub async fn connect(&self) -> Result<Client, ApplyError> {
        let mode = if self.on_unix_socket() {
            SslMode::Disable
        } else {
            self.sslmode
        };
        let tls = self.tls_config()?.map(MakeRustlsConnect::new);
        let ctx = format!("connecting to {}", self.describe(mode));
        let res = match (mode, tls) {
            (SslMode::Disable, _) | (_, None) => {
                open(&self.config, PgSslMode::Disable, tokio_postgres::NoTls).await
            }
            (SslMode::Allow, Some(tls)) => {
                match open(&self.config, PgSslMode::Disable, tokio_postgres::NoTls).await {
                    Err(e) if e.code().is_some() => {
                        debug!("plaintext refused ({e}); sslmode=allow tries TLS");
                        open(&self.config, PgSslMode::Require, tls).await
                    }
                    r => r,
                }
            }
            (SslMode::Prefer, Some(tls)) => {
                match open(&self.config, PgSslMode::Prefer, tls).await {
                    // libpq's prefer: a failed TLS handshake is retried without TLS.
                    Err(e) if is_tls_failure(&e) => {
                        warn!("{ctx}: TLS failed ({e}); sslmode=prefer retries without TLS");
                        open(&self.config, PgSslMode::Disable, tokio_postgres::NoTls).await
                    }
                    r => r,
                }
            }
            (_, Some(tls)) => open(&self.config, PgSslMode::Require, tls).await,
        };
        if let (Ok(client), SslMode::Prefer | SslMode::Allow) = (&res, mode) {
            // Not silent: say when `prefer`/`allow` ended up without encryption.
            if let Ok(row) = client
                .query_one(
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    &[],
                )
                .await
            {
                if !row.get::<_, bool>(0) {
                    tracing::info!(
                        "{}: not encrypted (sslmode={} and the server offers no TLS)",
                        self.describe(mode),
                        mode.as_str()
                    );
                }
            }
        }
        res.map_err(|e| {
            let plaintext_refused = mode == SslMode::Disable
                && e.code().map(|c| c.code()) == Some("28000")
                && e.as_db_error()
                    .is_some_and(|d| d.message().contains("no encryption"));
            let tls = is_tls_failure(&e);
            // tokio-postgres prints only its error kind ("error performing TLS handshake"):
            // the cause (the certificate problem) is in the source chain.
            let chain = if e.code().is_none() {
                let mut c = String::new();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    c.push_str(&format!(": {s}"));
                    src = s.source();
                }
                c
            } else {
                String::new()
            };
            let mut err = pg_err(&ctx, e);
            let (ApplyError::Definite(f) | ApplyError::Transient(f)) = &mut err;
            f.message.push_str(&chain);
            if plaintext_refused {
                f.message.push_str(
                    " — the server accepts this user only over TLS: set sslmode=require (or verify-ca/verify-full with sslrootcert)",
                );
            }
            if f.sqlstate.as_deref() == Some("28P01") {
                f.message
                    .push_str(&format!(" (password from {})", self.password_source));
            }
            // A certificate that does not verify, or a server without TLS when it is
            // required, is not an outage: stop with the message instead of retrying.
            if tls {
                if let ApplyError::Transient(f) = err {
                    err = ApplyError::Definite(f);
                }
            }
            err
        })
    }
}

fn is_tls_failure(e: &tokio_postgres::Error) -> bool {
    e.code().is_none() && {
        let m = e.to_string();
        m.contains("TLS") || m.contains("certificate") || m.contains("handshake")
    }
}

async fn open<T>(
    config: &tokio_postgres::Config,
    mode: PgSslMode,
    tls: T,
) -> Result<Client, tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket> + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let mut config = config.clone();
    config.ssl_mode(mode);
    let (client, conn) = config.connect(tls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            debug!("PostgreSQL connection ended: {e}");
        }
    });
    Ok(client)
}

fn load_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, ApplyError> {
    let bytes = std::fs::read(path)
        .map_err(|e| definite(format!("{what} {}: cannot read: {e}", path.display())))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            definite(format!(
                "{what} {}: not a PEM certificate file: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(definite(format!(
            "{what} {}: no PEM certificate in the file",
            path.display()
        )));
    }
    Ok(certs)
}

/// `verify-ca` (and `require` with a root CA): the chain must lead to a trusted root; the
/// name in the certificate is not compared with the host.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            r => r,
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer`/`require`/`allow` without a root CA: encryption without authentication (libpq's
/// semantics); the handshake signatures are still checked.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_tls_params_out_of_both_forms() {
        let (rest, taken) = take_params(
            "postgres://u:p@h:5/db?sslmode=verify-full&application_name=x&sslrootcert=%2Ftmp%2Fca.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p@h:5/db?application_name=x");
        assert_eq!(
            taken,
            vec![
                ("sslmode".into(), "verify-full".into()),
                ("sslrootcert".into(), "/tmp/ca.pem".into())
            ]
        );
        let (rest, taken) =
            take_params("host=h user=u sslmode=require sslcert='/a b/c.pem' password='x\\'y'")
                .unwrap();
        assert_eq!(rest, "host='h' user='u' password='x\\'y'");
        assert_eq!(taken[1], ("sslcert".into(), "/a b/c.pem".into()));
        assert_eq!(
            take_params("postgres://u:p@ss@h/db?sslmode=require")
                .unwrap()
                .0,
            "postgres://u:p%40ss@h/db"
        );
        assert!(take_params("postgres://h/db?sslcrl=x")
            .unwrap_err()
            .contains("sslcrl"));
    }

    #[test]
    fn env_and_pgpass() {
        let env = |k: &str| match k {
            "PGSSLMODE" => Some("verify-ca".to_string()),
            "PGPASSWORD" => Some("from-env".to_string()),
            _ => None,
        };
        let t = PgTarget::parse("postgres://u@h/db", &env).unwrap();
        assert_eq!(t.sslmode, SslMode::VerifyCa);
        assert_eq!(t.config.get_password(), Some(&b"from-env"[..]));
        let t = PgTarget::parse("postgres://u@h/db?sslmode=disable", &env).unwrap();
        assert_eq!(t.sslmode, SslMode::Disable);
        let e = PgTarget::parse("postgres://u@h/db?sslmode=verify", &env).unwrap_err();
        assert!(e.to_string().contains("sslmode=\"verify\""), "{e}");
        assert_eq!(
            pgpass_lookup(
                "# c\nh:5432:*:u:a\\:b\n*:*:*:*:any\n",
                "h",
                "5432",
                "db",
                "u"
            ),
            Some("a:b".into())
        );
        assert_eq!(
            pgpass_lookup("h:5432:*:u:x\n*:*:*:*:any\n", "g", "5432", "db", "u"),
            Some("any".into())
        );
    }
}

/// Hide the password of a `scheme://user:password@host/…` URL — a password may itself hold
/// `@`, `:` or `/`, so the user part ends at the *last* `@` before the query — and of
/// `password=` parameters (URL query or keyword form, quoted or not).
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let start = scheme_end + 3;
        let end_of_authority = out[start..]
            .find('?')
            .map(|q| start + q)
            .unwrap_or(out.len());
        if let Some(at) = out[start..end_of_authority].rfind('@') {
            let at = start + at;
            if let Some(colon) = out[start..at].find(':') {
                out.replace_range(start + colon + 1..at, "***");
            }
        }
    }
    let mut from = 0;
    while let Some(i) = out[from..].find("password=").map(|i| from + i) {
        let v = i + "password=".len();
        let end = if out[v..].starts_with('\'') {
            // keyword form, quoted: up to the closing quote (backslash escapes)
            let b = out.as_bytes();
            let mut j = v + 1;
            while j < b.len() && b[j] != b'\'' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            (j + 1).min(out.len())
        } else {
            out[v..]
                .find(['&', ' '])
                .map(|e| v + e)
                .unwrap_or(out.len())
        };
        out.replace_range(v..end, "***");
        from = v + 3;
    }
    out
}

/// [`redact_url`] for free text (an error message, a log line): every `scheme://…` word and
/// every `password=` parameter in it.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.contains("://") {
            out.push_str(&redact_url(word));
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_whitespace() || c == '"' || c == '\'' || c == '(' || c == ')' {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    // `password=` anywhere (keyword connection strings, URL queries)
    if out.contains("password=") {
        out = redact_url(&out);
    }
    out
}

#[cfg(test)]
mod redact_tests {
    use super::{redact_text, redact_url};

    #[test]
    fn redacts_urls_inside_text() {
        assert_eq!(
            redact_text("connecting to mysql://u:p@ss@h:1/db failed (\"postgres://a:b@c/d\")"),
            "connecting to mysql://u:***@h:1/db failed (\"postgres://a:***@c/d\")"
        );
        assert_eq!(
            redact_text("bad host=h password=sec user=u"),
            "bad host=h password=*** user=u"
        );
    }

    #[test]
    fn redacts_every_form() {
        assert_eq!(
            redact_url("mysql://root:s3cret@h:3306/db"),
            "mysql://root:***@h:3306/db"
        );
        assert_eq!(
            redact_url("postgres://u:p@ss@w/rd@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("postgres://u@h/db?a=b@c"),
            "postgres://u@h/db?a=b@c"
        );
        assert_eq!(
            redact_url("host=h password=x user=u"),
            "host=h password=*** user=u"
        );
        assert_eq!(
            redact_url("host=h password='a b\\' c' user=u"),
            "host=h password=*** user=u"
        );
        assert_eq!(
            redact_url("postgres://h/db?password=x&sslmode=require"),
            "postgres://h/db?password=***&sslmode=require"
        );
    }
}
