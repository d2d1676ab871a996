//! The librdkafka properties every Kafka client tributary creates gets (consumer, offset
//! probe, producer, admin, `status`, capture's end-offset watcher): [`apply_properties`] is the
//! one place they are checked, expanded and set; [`config_error`] the one place librdkafka's
//! configuration errors are turned into messages.
//!
//! ## What the build has
//! librdkafka 2.12 built with OpenSSL from source (`ssl-vendored`; no system headers, no
//! cmake), zlib and zstd: `security.protocol` `plaintext`/`ssl`/`sasl_plaintext`/`sasl_ssl`;
//! `sasl.mechanism` `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`, `OAUTHBEARER` (librdkafka's
//! unsecured-JWT builder or a token refreshed by the application; no OIDC: built without
//! curl); `compression.type` `gzip`, `snappy`, `lz4`, `zstd`. `GSSAPI` (Kerberos) needs
//! cyrus-sasl and is refused here by name.
//!
//! ## Secrets
//! A value may be `${env:NAME}` (the environment variable) or `${file:PATH}` (the file's first
//! line), so `sasl.password` or `ssl.key.password` never has to sit in a config file. The
//! expansion is whole-value only; anything else is taken literally.
//!
//! ## Errors never echo values
//! librdkafka's "Invalid value …" and the rdkafka crate's `ClientConfig` error carry the value
//! that was set — for `sasl.password` (or a misspelled `sasl.pasword`) that is the secret.
//! [`config_error`] names the property and librdkafka's reason with every configured value
//! replaced by `***`.

use rdkafka::error::KafkaError as RdError;
use rdkafka::ClientConfig;

use crate::KafkaError;

fn expand(key: &str, v: &str) -> Result<String, KafkaError> {
    let v = v.trim();
    if let Some(name) = v.strip_prefix("${env:").and_then(|r| r.strip_suffix('}')) {
        return std::env::var(name).map_err(|_| {
            KafkaError::Config(format!(
                "Kafka property {key}: environment variable {name} (from ${{env:{name}}}) is not set"
            ))
        });
    }
    if let Some(path) = v.strip_prefix("${file:").and_then(|r| r.strip_suffix('}')) {
        let text = std::fs::read_to_string(path).map_err(|e| {
            KafkaError::Config(format!("Kafka property {key}: cannot read {path}: {e}"))
        })?;
        return Ok(text
            .lines()
            .next()
            .unwrap_or("")
            .trim_end_matches('\r')
            .to_string());
    }
    Ok(v.to_string())
}

/// Check and expand `props` (see the module docs) into the values to set.
pub fn resolve_properties(props: &[(String, String)]) -> Result<Vec<(String, String)>, KafkaError> {
    let mut out = Vec::with_capacity(props.len());
    for (k, v) in props {
        let k = k.trim();
        if k.is_empty() {
            return Err(KafkaError::Config("empty librdkafka property name".into()));
        }
        let v = expand(k, v)?;
        match k {
            "security.protocol" => {
                if !["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"]
                    .contains(&v.to_ascii_lowercase().as_str())
                {
                    return Err(KafkaError::Config(format!(
                        "Kafka security.protocol={v:?}: expected plaintext, ssl, sasl_plaintext or sasl_ssl"
                    )));
                }
            }
            "sasl.mechanism" | "sasl.mechanisms" => {
                if v.eq_ignore_ascii_case("GSSAPI") {
                    return Err(KafkaError::Config(
                        "Kafka sasl.mechanism=GSSAPI (Kerberos) is not supported by this build (no cyrus-sasl); use PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER".into(),
                    ));
                }
                if !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"].contains(&v.as_str())
                {
                    return Err(KafkaError::Config(format!(
                        "Kafka {k}={v:?}: expected PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER"
                    )));
                }
            }
            "compression.type" | "compression.codec" => {
                if !["none", "gzip", "snappy", "lz4", "zstd"].contains(&v.as_str()) {
                    return Err(KafkaError::Config(format!(
                        "Kafka {k}={v:?}: expected none, gzip, snappy, lz4 or zstd"
                    )));
                }
            }
            _ => {}
        }
        out.push((k.to_string(), v));
    }
    Ok(out)
}

/// Set `props` (checked and expanded) on `cfg`.
pub fn apply_properties(
    cfg: &mut ClientConfig,
    props: &[(String, String)],
) -> Result<(), KafkaError> {
    for (k, v) in resolve_properties(props)? {
        cfg.set(k, v);
    }
    Ok(())
}

/// A librdkafka configuration/creation error as a definite [`KafkaError::Config`] naming the
/// property, with every value configured on `cfg` hidden.
pub fn config_error(cfg: &ClientConfig, e: RdError) -> KafkaError {
    let hide = |mut m: String| {
        let mut values: Vec<&str> = cfg
            .config_map()
            .values()
            .map(|v| &v[..])
            .filter(|v| v.len() >= 3)
            .collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        for v in values {
            if v.len() >= 3 && !is_plain_word(v) {
                m = m.replace(v, "***");
            }
        }
        m
    };
    match e {
        RdError::ClientConfig(_, desc, key, _value) => {
            KafkaError::Config(format!("Kafka property {key}: {}", hide(desc)))
        }
        RdError::ClientCreation(msg) => {
            KafkaError::Config(format!("creating the Kafka client: {}", hide(msg)))
        }
        other => KafkaError::Client(other),
    }
}

/// Values that are clearly not secrets and that librdkafka's messages need to stay readable
/// (`true`, `all`, numbers, property-like words): left as they are.
fn is_plain_word(v: &str) -> bool {
    matches!(
        v,
        "true"
            | "false"
            | "all"
            | "none"
            | "earliest"
            | "latest"
            | "error"
            | "range"
            | "read_committed"
            | "read_uncommitted"
            | "murmur2_random"
            | "tributary"
    ) || v.bytes().all(|b| b.is_ascii_digit())
}

/// A client context that remembers librdkafka's last TLS or SASL failure (`SSL`,
/// `Authentication`: a certificate that does not verify, a wrong password), so that an
/// operation that then times out can say why — and stop as a definite configuration error
/// instead of being retried as a broker outage for `max_outage_secs`.
#[derive(Clone, Default)]
pub struct SecurityContext {
    failure: std::sync::Arc<std::sync::Mutex<Option<(std::time::Instant, String)>>>,
}

impl rdkafka::ClientContext for SecurityContext {
    fn error(&self, error: RdError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode as C;
        if matches!(
            error.rdkafka_error_code(),
            Some(C::SSL | C::Authentication | C::SaslAuthenticationFailed)
        ) {
            *self.failure.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((std::time::Instant::now(), reason.to_string()));
        }
        tracing::error!("librdkafka: {error}: {reason}");
    }
}

impl SecurityContext {
    /// `e` as a definite TLS/SASL configuration error when such a failure was reported in
    /// the last minute and `e` is an outage-like error; otherwise `e`.
    pub fn explain(&self, e: KafkaError) -> KafkaError {
        use tributary_model::ErrorClass;
        if !e.is_transient() {
            return e;
        }
        let failure = self
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match failure {
            Some((at, reason)) if at.elapsed() < std::time::Duration::from_secs(60) => {
                KafkaError::Config(format!(
                    "Kafka TLS/SASL failure (check security.protocol, ssl.ca.location, ssl.endpoint.identification.algorithm, sasl.* in kafka_properties): {reason} — while: {e}"
                ))
            }
            _ => e,
        }
    }
}

/// [`create`] with a context.
pub fn create_with<T: rdkafka::config::FromClientConfigAndContext<C>, C: rdkafka::ClientContext>(
    cfg: &ClientConfig,
    ctx: C,
) -> Result<T, KafkaError> {
    cfg.create_with_context(ctx)
        .map_err(|e| config_error(cfg, e))
}

/// Create a client from `cfg`, with [`config_error`] for its errors.
pub fn create<T: rdkafka::config::FromClientConfig>(cfg: &ClientConfig) -> Result<T, KafkaError> {
    cfg.create().map_err(|e| config_error(cfg, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_expand_and_never_echo() {
        let dir = std::env::temp_dir().join(format!("tributary-kafka-sec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("pw");
        std::fs::write(&f, "fr0m-f1le\n").unwrap();
        let got =
            resolve_properties(&[("sasl.password".into(), format!("${{file:{}}}", f.display()))])
                .unwrap();
        assert_eq!(got[0].1, "fr0m-f1le");
        let e = resolve_properties(&[(
            "sasl.password".into(),
            "${env:TRIBUTARY_SURELY_UNSET_VAR}".into(),
        )])
        .unwrap_err();
        assert!(e.to_string().contains("TRIBUTARY_SURELY_UNSET_VAR"), "{e}");
        assert!(
            resolve_properties(&[("sasl.mechanism".into(), "GSSAPI".into())])
                .unwrap_err()
                .to_string()
                .contains("not supported")
        );
        // A misspelled secret property: the error names it, not its value.
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", "127.0.0.1:1")
            .set("sasl.pasword", "hunter2-secret");
        let e = create::<rdkafka::producer::BaseProducer>(&c)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("sasl.pasword") && !e.contains("hunter2"), "{e}");
        // An invalid value: librdkafka's text quotes it; hidden.
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", "127.0.0.1:1")
            .set("security.protocol", "s3cret-proto");
        let e = create::<rdkafka::producer::BaseProducer>(&c)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("security.protocol") && !e.contains("s3cret"),
            "{e}"
        );
        // What this build has: SSL, SCRAM, zstd.
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", "127.0.0.1:1")
            .set("security.protocol", "sasl_ssl")
            .set("sasl.mechanism", "SCRAM-SHA-512")
            .set("sasl.username", "u")
            .set("sasl.password", "p")
            .set("compression.type", "zstd");
        create::<rdkafka::producer::BaseProducer>(&c).unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }
}
