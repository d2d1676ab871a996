//! Every MySQL/MariaDB connection option tributary uses is built here ([`mysql_opts`]):
//! the snapshot and `check` connections, the binlog pool, `verify` and direct mode's start
//! checks all read the same URL the same way.
//!
//! ## TLS (mysql_async over rustls, `ring` provider; MySQL client semantics)
//! `ssl-mode` (also `ssl_mode`; as a URL parameter or `[source] ssl_mode`):
//!
//! | ssl-mode | TLS | server certificate |
//! |---|---|---|
//! | `DISABLED` | never | — |
//! | `PREFERRED` (default) | when the server offers it, else plaintext (logged) | not checked |
//! | `REQUIRED` | always | not checked — with `ssl-ca` given: as `VERIFY_CA` (as the MySQL client) |
//! | `VERIFY_CA` | always | chain to `ssl-ca` |
//! | `VERIFY_IDENTITY` | always | chain to `ssl-ca` and the host name (or IP) |
//!
//! `ssl-ca` is a PEM file (or `system`: Mozilla's roots compiled into the binary); `ssl-cert`
//! + `ssl-key` send a client certificate (`REQUIRE X509` users). mysql_async's own
//! `require_ssl`/`verify_ca`/`verify_identity` parameters are still read when `ssl-mode` is
//! not given.
//!
//! `VERIFY_CA` note: mysql_async 0.37's "skip domain validation" recognises a name mismatch by
//! the text `NotValidForName` in rustls' error, which rustls ≥ 0.23.2x no longer prints (it
//! says "certificate not valid for name …"). rustls checks the chain *before* the name, so
//! tributary asks for the name `NotValidForName.invalid` (never in a real certificate: the
//! `.invalid` TLD is reserved): a certificate whose chain verifies then fails only on the name,
//! with that text, and is accepted; one whose chain does not verify fails on the chain. The
//! test `tls.rs` checks both.
//!
//! ## Passwords
//! The URL's password, else `password_file=PATH` (URL parameter or `[source] password_file`;
//! its first line, read at every connect so a rotated secret is picked up).
//!
//! ## Errors
//! A bad parameter, an unreadable file, a certificate that does not verify or a server without
//! TLS when TLS is required are definite [`CaptureError::Config`] errors naming the setting —
//! never retried as an outage, never a panic.

use std::path::PathBuf;

use mysql_async::{ClientIdentity, Opts, OptsBuilder, SslOpts};
use tracing::warn;

use crate::CaptureError;

/// MySQL's `--ssl-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disabled,
    Preferred,
    Required,
    VerifyCa,
    VerifyIdentity,
}

impl SslMode {
    pub fn parse(s: &str) -> Result<SslMode, String> {
        Ok(match s.to_ascii_uppercase().replace('-', "_").as_str() {
            "DISABLED" => SslMode::Disabled,
            "PREFERRED" => SslMode::Preferred,
            "REQUIRED" => SslMode::Required,
            "VERIFY_CA" => SslMode::VerifyCa,
            "VERIFY_IDENTITY" => SslMode::VerifyIdentity,
            _ => {
                return Err(format!(
                    "ssl-mode={s:?}: expected DISABLED, PREFERRED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY"
                ))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disabled => "DISABLED",
            SslMode::Preferred => "PREFERRED",
            SslMode::Required => "REQUIRED",
            SslMode::VerifyCa => "VERIFY_CA",
            SslMode::VerifyIdentity => "VERIFY_IDENTITY",
        }
    }
}

/// The parameters tributary takes out of a MySQL URL (canonical name, accepted spellings).
const TAKEN: &[(&str, &[&str])] = &[
    ("ssl-mode", &["ssl-mode", "ssl_mode", "sslmode"]),
    ("ssl-ca", &["ssl-ca", "ssl_ca"]),
    ("ssl-cert", &["ssl-cert", "ssl_cert"]),
    ("ssl-key", &["ssl-key", "ssl_key"]),
    ("password_file", &["password_file", "password-file"]),
];

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let v = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a `%` not followed by two hex digits")?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent-decoded text is not UTF-8".to_string())
}

/// Split tributary's TLS/password parameters (canonical names) off a MySQL URL.
pub fn split_tls_params(url: &str) -> Result<(String, Vec<(String, String)>), CaptureError> {
    let Some(q) = url.find('?') else {
        return Ok((url.to_string(), vec![]));
    };
    let mut kept = vec![];
    let mut taken = vec![];
    for pair in url[q + 1..].split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match TAKEN.iter().find(|(_, names)| names.contains(&k)) {
            Some((canon, _)) => {
                let v = percent_decode(v)
                    .map_err(|e| CaptureError::Config(format!("MySQL URL parameter {k}: {e}")))?;
                taken.push((canon.to_string(), v));
            }
            None => kept.push(pair),
        }
    }
    let mut rest = url[..q].to_string();
    if !kept.is_empty() {
        rest.push('?');
        rest.push_str(&kept.join("&"));
    }
    Ok((rest, taken))
}

/// A parsed MySQL target: the options, and what TLS was asked for.
#[derive(Debug, Clone)]
pub struct MySqlTarget {
    pub opts: Opts,
    pub mode: SslMode,
    /// `PREFERRED`: the same options without TLS, for a server that does not offer it.
    pub plaintext: Opts,
}

impl MySqlTarget {
    /// `host:port (ssl-mode=…)` for messages.
    pub fn describe(&self) -> String {
        format!(
            "MySQL {}:{} (ssl-mode={})",
            self.opts.ip_or_hostname(),
            self.opts.tcp_port(),
            self.mode.as_str()
        )
    }
}

/// Parse a MySQL URL with tributary's TLS and password parameters.
pub fn mysql_target(url: &str) -> Result<MySqlTarget, CaptureError> {
    let (rest, taken) = split_tls_params(url)?;
    let get = |k: &str| {
        taken
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let base = Opts::from_url(&rest).map_err(|e| {
        CaptureError::Config(format!("invalid MySQL URL {}: {e}", redact_mysql_url(url)))
    })?;
    let mode = match get("ssl-mode") {
        Some(m) => SslMode::parse(&m).map_err(|e| CaptureError::Config(format!("MySQL {e}")))?,
        None => match base.ssl_opts() {
            None => SslMode::Preferred,
            Some(s) if s.accept_invalid_certs() => SslMode::Required,
            Some(s) if s.skip_domain_validation() => SslMode::VerifyCa,
            Some(_) => SslMode::VerifyIdentity,
        },
    };
    let ca = get("ssl-ca");
    let mode = match (mode, &ca) {
        // The MySQL client: REQUIRED with a CA verifies the CA.
        (SslMode::Required, Some(_)) => SslMode::VerifyCa,
        (m, _) => m,
    };
    // mysql_async's own `require_ssl`/`verify_*` parameters verify against the built-in
    // (Mozilla) roots unless a CA is given.
    let ca = ca.or_else(|| {
        (get("ssl-mode").is_none() && matches!(mode, SslMode::VerifyCa | SslMode::VerifyIdentity))
            .then(|| "system".to_string())
    });
    let mut b = OptsBuilder::from_opts(base.clone());
    if let Some(p) = get("password_file") {
        let pw = std::fs::read_to_string(&p).map_err(|e| {
            CaptureError::Config(format!("MySQL password_file: cannot read {p}: {e}"))
        })?;
        let pw = pw.lines().next().unwrap_or("").trim_end_matches('\r');
        if base.pass().is_some() {
            return Err(CaptureError::Config(
                "MySQL: both a password in the URL and password_file are set; use one".into(),
            ));
        }
        b = b.pass(Some(pw.to_string()));
    }
    let plaintext = Opts::from(b.clone().ssl_opts(None::<SslOpts>));
    let ssl = match mode {
        SslMode::Disabled => None,
        SslMode::Preferred | SslMode::Required => Some(
            SslOpts::default()
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
        ),
        SslMode::VerifyCa | SslMode::VerifyIdentity => {
            let Some(ca) = ca.clone() else {
                return Err(CaptureError::Config(format!(
                    "MySQL ssl-mode={} needs ssl-ca: the PEM file of the CA that signed the server's certificate (or `system`)",
                    mode.as_str()
                )));
            };
            let mut s = SslOpts::default();
            if ca != "system" {
                let path = PathBuf::from(&ca);
                check_pem(&path, "MySQL ssl-ca", "CERTIFICATE")?;
                s = s
                    .with_root_certs(vec![path.into()])
                    .with_disable_built_in_roots(true);
            }
            if mode == SslMode::VerifyCa {
                s = s
                    .with_danger_skip_domain_validation(true)
                    .with_danger_tls_hostname_override(Some("NotValidForName.invalid"));
            }
            Some(s)
        }
    };
    let ssl = match (ssl, get("ssl-cert"), get("ssl-key")) {
        (s, None, None) => s,
        (Some(s), Some(c), Some(k)) => {
            check_pem(&PathBuf::from(&c), "MySQL ssl-cert", "CERTIFICATE")?;
            check_pem(&PathBuf::from(&k), "MySQL ssl-key", "PRIVATE KEY")?;
            Some(s.with_client_identity(Some(ClientIdentity::new(
                PathBuf::from(c).into(),
                PathBuf::from(k).into(),
            ))))
        }
        (None, Some(_), _) | (None, _, Some(_)) => {
            return Err(CaptureError::Config(
                "MySQL ssl-cert/ssl-key are set but ssl-mode=DISABLED".into(),
            ))
        }
        (Some(_), _, _) => {
            return Err(CaptureError::Config(
                "MySQL ssl-cert and ssl-key go together: set both".into(),
            ))
        }
    };
    // A `localhost` URL would otherwise switch to the Unix socket, where no TLS is used:
    // explicit TLS stays on TCP.
    if !matches!(mode, SslMode::Disabled | SslMode::Preferred) {
        b = b.prefer_socket(false);
    }
    Ok(MySqlTarget {
        opts: Opts::from(b.ssl_opts(ssl)),
        mode,
        plaintext,
    })
}

fn check_pem(path: &PathBuf, what: &str, label: &str) -> Result<(), CaptureError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CaptureError::Config(format!("{what} {}: cannot read: {e}", path.display()))
    })?;
    if !text.contains("-----BEGIN ") || !text.contains(label) {
        return Err(CaptureError::Config(format!(
            "{what} {}: no PEM {label} in the file",
            path.display()
        )));
    }
    Ok(())
}

/// Turn a connection failure into an error naming the TLS setting when TLS is the cause.
pub(crate) fn connect_error(t: &MySqlTarget, e: mysql_async::Error) -> CaptureError {
    use mysql_async::{DriverError, Error as E, IoError};
    // A handshake failure arrives from tokio-rustls as an I/O error of kind InvalidData
    // carrying rustls' error.
    let handshake = match &e {
        E::Io(IoError::Io(io)) if t.mode != SslMode::Disabled => io
            .get_ref()
            .filter(|_| io.kind() == std::io::ErrorKind::InvalidData)
            .map(|inner| inner.to_string()),
        E::Io(IoError::Tls(te)) => Some(te.to_string()),
        _ => None,
    };
    match &e {
        _ if handshake.is_some() => CaptureError::Config(format!(
            "{}: TLS failed: {}{}",
            t.describe(),
            handshake.unwrap_or_default(),
            match t.mode {
                SslMode::VerifyCa | SslMode::VerifyIdentity => {
                    " (check ssl-ca: is it the CA that signed the server's certificate? VERIFY_IDENTITY also needs the host name in the certificate)"
                }
                _ => "",
            }
        )),
        E::Driver(DriverError::NoClientSslFlagFromServer) => CaptureError::Config(format!(
            "{}: the server does not offer TLS (start it with ssl_cert/ssl_key, or set ssl-mode=PREFERRED/DISABLED)",
            t.describe()
        )),
        // 1045 is authentication, not a missing grant.
        E::Server(s) if s.code == 1045 && t.mode == SslMode::Disabled => CaptureError::Config(
            format!(
                "{}: login refused: {s} (wrong user or password — or, without TLS, a REQUIRE SSL user: set ssl-mode=REQUIRED or stronger)",
                t.describe()
            ),
        ),
        E::Server(s) if s.code == 1045 => CaptureError::Config(format!(
            "{}: login refused: {s} (wrong user or password, or the user's REQUIRE clause: ssl-cert/ssl-key?)",
            t.describe()
        )),
        _ => CaptureError::from(e),
    }
}

/// Connect one session, as `ssl-mode` says (PREFERRED falls back to plaintext when the server
/// does not offer TLS).
pub async fn connect_target(t: &MySqlTarget) -> Result<mysql_async::Conn, CaptureError> {
    match mysql_async::Conn::new(t.opts.clone()).await {
        Ok(c) => Ok(c),
        Err(mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer))
            if t.mode == SslMode::Preferred =>
        {
            warn!(
                "{}: the server does not offer TLS; connecting without (ssl-mode=PREFERRED)",
                t.describe()
            );
            mysql_async::Conn::new(t.plaintext.clone())
                .await
                .map_err(|e| connect_error(t, e))
        }
        Err(e) => Err(connect_error(t, e)),
    }
}

/// The options a pool should use: for `PREFERRED`, one probe connection decides whether the
/// server offers TLS.
pub async fn pool_opts(t: &MySqlTarget) -> Result<Opts, CaptureError> {
    if t.mode != SslMode::Preferred {
        return Ok(t.opts.clone());
    }
    match mysql_async::Conn::new(t.opts.clone()).await {
        Ok(c) => {
            let _ = c.disconnect().await;
            Ok(t.opts.clone())
        }
        Err(mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer)) => {
            warn!(
                "{}: the server does not offer TLS; connecting without (ssl-mode=PREFERRED)",
                t.describe()
            );
            Ok(t.plaintext.clone())
        }
        Err(e) => Err(connect_error(t, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_modes_and_params() {
        let (rest, taken) = split_tls_params(
            "mysql://u:p@h:3306/db?ssl-mode=required&prefer_socket=false&ssl_ca=%2Fx",
        )
        .unwrap();
        assert_eq!(rest, "mysql://u:p@h:3306/db?prefer_socket=false");
        assert_eq!(
            taken,
            vec![
                ("ssl-mode".to_string(), "required".to_string()),
                ("ssl-ca".to_string(), "/x".to_string())
            ]
        );
        let t = mysql_target("mysql://u@h/db").unwrap();
        assert_eq!(t.mode, SslMode::Preferred);
        assert!(t.opts.ssl_opts().is_some() && t.plaintext.ssl_opts().is_none());
        let t = mysql_target("mysql://u@h/db?ssl-mode=DISABLED").unwrap();
        assert!(t.opts.ssl_opts().is_none());
        let e = mysql_target("mysql://u@h/db?ssl-mode=VERIFY_CA").unwrap_err();
        assert!(e.to_string().contains("needs ssl-ca"), "{e}");
        let e = mysql_target("mysql://u@h/db?ssl-mode=sometimes").unwrap_err();
        assert!(e.to_string().contains("ssl-mode=\"sometimes\""), "{e}");
        let e =
            mysql_target("mysql://u@h/db?ssl-mode=VERIFY_CA&ssl-ca=/nonexistent.pem").unwrap_err();
        assert!(e.to_string().contains("/nonexistent.pem"), "{e}");
    }
}

/// Hide the password of a `mysql://user:password@host` URL (the user part ends at the last
/// `@` before the query: a password may hold `@`).
pub fn redact_mysql_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let start = scheme_end + 3;
        let end = out[start..]
            .find('?')
            .map(|q| start + q)
            .unwrap_or(out.len());
        if let Some(at) = out[start..end].rfind('@') {
            let at = start + at;
            if let Some(colon) = out[start..at].find(':') {
                out.replace_range(start + colon + 1..at, "***");
            }
        }
    }
    out
}
