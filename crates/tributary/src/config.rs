//! Configuration: one TOML file (`-c FILE`), overridden by `TRIBUTARY_*` environment variables,
//! overridden by command-line flags. Secrets (passwords in URLs) are never logged: use
//! [`redact`] whenever a URL is printed.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use tributary_apply::ApplyConfig;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub source: SourceConfig,
    pub sink: SinkConfig,
    /// Optional: also publish captured events to Kafka (capture → Kafka).
    pub publish: Option<PublishConfig>,
    pub pipeline: PipelineConfig,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    #[default]
    Mysql,
    Kafka,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceConfig {
    pub kind: SourceKind,
    // --- mysql
    pub url: Option<String>,
    /// MySQL TLS: `DISABLED`, `PREFERRED`, `REQUIRED`, `VERIFY_CA`, `VERIFY_IDENTITY`.
    pub ssl_mode: Option<String>,
    /// PEM file of the CA(s) that signed the server's certificate.
    pub ssl_ca: Option<String>,
    /// Client certificate (PEM) and its key, for `REQUIRE X509` users.
    pub ssl_cert: Option<String>,
    pub ssl_key: Option<String>,
    /// A file holding the MySQL password (its first line), read at every connect.
    pub password_file: Option<String>,
    pub databases: Vec<String>,
    pub include_tables: Vec<String>,
    pub exclude_tables: Vec<String>,
    pub server_id: u32,
    /// Logical server name: Debezium's `topic.prefix`.
    pub name: String,
    /// `initial` (default), `never`, `only`.
    pub snapshot: String,
    pub snapshot_chunk_size: usize,
    // --- kafka
    pub brokers: Option<String>,
    pub group_id: String,
    /// Topic names; entries starting with `^` are regular expressions.
    pub topics: Vec<String>,
    /// librdkafka properties for every Kafka client (TLS, SASL, compression, tuning); see
    /// [`Config::kafka_properties`].
    pub kafka_properties: std::collections::BTreeMap<String, String>,
    /// A stored offset that does not fit its partition's log (the broker lost its log, the
    /// topic was re-created): `"stop"` (default) or `"earliest"` (re-read the partition).
    pub on_offset_out_of_range: String,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            kind: SourceKind::Mysql,
            url: None,
            ssl_mode: None,
            ssl_ca: None,
            ssl_cert: None,
            ssl_key: None,
            password_file: None,
            databases: vec![],
            include_tables: vec![],
            exclude_tables: vec![],
            server_id: 5401,
            name: "dbserver1".into(),
            snapshot: "initial".into(),
            snapshot_chunk_size: 10_000,
            brokers: None,
            group_id: "tributary".into(),
            topics: vec![],
            kafka_properties: Default::default(),
            on_offset_out_of_range: "stop".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub url: Option<String>,
    /// libpq TLS settings and `password_file`, added to the URL unless it sets them itself
    /// (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`, `password_file`; see
    /// `tributary_apply::pgconn`).
    pub tls: std::collections::BTreeMap<String, String>,
    /// A record is applied only when its topic is the one Debezium names for its table
    /// (`<prefix>.<db>.<table>`, Debezium's character replacement included); others are
    /// dead-lettered (stage `route`). `false` for topics renamed by a router SMT.
    pub require_table_topic: bool,
    pub apply: ApplyConfig,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            url: None,
            tls: Default::default(),
            require_table_topic: true,
            apply: ApplyConfig::default(),
        }
    }
}

/// `[sink]` connection keys (libpq's names), merged into the PostgreSQL URL.
const SINK_CONNECTION_KEYS: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "password_file",
];

/// `[sink]` is the sink's own keys plus the apply layout's: read by hand because serde's
/// `flatten` would accept (and ignore) any misspelled key.
impl<'de> Deserialize<'de> for SinkConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        let mut t = toml::Table::deserialize(d)?;
        let mut out = SinkConfig::default();
        if let Some(v) = t.remove("url") {
            out.url = Some(
                v.try_into()
                    .map_err(|e| D::Error::custom(format!("url: {e}")))?,
            );
        }
        for k in SINK_CONNECTION_KEYS {
            if let Some(v) = t.remove(*k) {
                let v: String = v
                    .try_into()
                    .map_err(|e| D::Error::custom(format!("{k}: {e}")))?;
                out.tls.insert(k.to_string(), v);
            }
        }
        if let Some(v) = t.remove("require_table_topic") {
            out.require_table_topic = v
                .try_into()
                .map_err(|e| D::Error::custom(format!("require_table_topic: {e}")))?;
        }
        out.apply = toml::Value::Table(t)
            .try_into()
            .map_err(|e: toml::de::Error| {
                D::Error::custom(e.message().replace(
                    "expected one of ",
                    "expected one of `url`, `require_table_topic`, `sslmode`, `sslrootcert`, `sslcert`, `sslkey`, `password_file`, ",
                ))
            })?;
        Ok(out)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublishConfig {
    pub brokers: String,
    pub partitions: i32,
    pub replication_factor: i16,
    /// `true` (default): Debezium's `schemas.enable=true` envelope.
    pub schemas: bool,
    /// Emit the ExtractNewRecordState ("unwrap", `__deleted`) form instead of the envelope.
    pub unwrap: bool,
    /// Where capture keeps its own resumable binlog position.
    pub state_file: Option<String>,
    /// The broker lost records it had acknowledged (end offsets went back, a topic vanished):
    /// `"stop"` (default, exit code 6) or `"continue"` (logged as an error; topics are created
    /// again and publishing goes on — sinks then see their own offsets not fit the log).
    pub on_log_lost: String,
    /// librdkafka properties for the producer and its admin client, on top of
    /// `[source] kafka_properties` (see [`Config::kafka_properties`]).
    pub kafka_properties: std::collections::BTreeMap<String, String>,
    /// Write a NULL in a column with a schema default as the default, as Kafka's
    /// JsonConverter does by default (`replace.null.with.default=true`). Off by default: it
    /// loses the NULL for every consumer (the warehouse would hold the default).
    pub replace_null_with_default: bool,
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            brokers: String::new(),
            partitions: 1,
            replication_factor: 1,
            schemas: true,
            unwrap: false,
            state_file: None,
            on_log_lost: "stop".into(),
            kafka_properties: Default::default(),
            replace_null_with_default: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// Events (or Kafka records) per batch / transaction.
    pub batch_size: usize,
    /// How long to wait for a batch to fill, milliseconds.
    pub batch_wait_ms: u64,
    /// Prometheus metrics + health endpoint (`/metrics`, `/health`), e.g. `127.0.0.1:9464`.
    pub metrics_addr: Option<String>,
    /// How long a PostgreSQL outage is retried before the pipeline stops with the error.
    pub max_outage_secs: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            batch_size: 10_000,
            batch_wait_ms: 200,
            metrics_addr: None,
            max_outage_secs: 600,
        }
    }
}

impl Config {
    /// Load a TOML file (if given), then apply `TRIBUTARY_*` environment overrides.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let mut cfg = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading config file {}", p.display()))?;
                toml::from_str::<Config>(&text)
                    .map_err(|e| anyhow::anyhow!("{}", with_suggestion(&e.to_string())))
                    .with_context(|| format!("invalid config file {}", p.display()))?
            }
            None => Config::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        cfg.sink
            .apply
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        Ok(cfg)
    }

    /// `TRIBUTARY_MYSQL_URL`, `TRIBUTARY_POSTGRES_URL`, `TRIBUTARY_KAFKA_BROKERS`,
    /// `TRIBUTARY_GROUP_ID`, `TRIBUTARY_TOPICS` (comma-separated), `TRIBUTARY_DATABASES`,
    /// `TRIBUTARY_SOURCE` (`mysql`|`kafka`), `TRIBUTARY_SERVER_ID`, `TRIBUTARY_TOPIC_PREFIX`,
    /// `TRIBUTARY_BATCH_SIZE`, `TRIBUTARY_METRICS_ADDR`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<()> {
        let list = |s: String| -> Vec<String> {
            s.split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect()
        };
        if let Some(v) = get("TRIBUTARY_MYSQL_URL") {
            self.source.url = Some(v);
        }
        if let Some(v) = get("TRIBUTARY_POSTGRES_URL") {
            self.sink.url = Some(v);
        }
        if let Some(v) = get("TRIBUTARY_KAFKA_BROKERS") {
            self.source.brokers = Some(v);
        }
        if let Some(v) = get("TRIBUTARY_GROUP_ID") {
            self.source.group_id = v;
        }
        if let Some(v) = get("TRIBUTARY_TOPICS") {
            self.source.topics = list(v);
        }
        if let Some(v) = get("TRIBUTARY_DATABASES") {
            self.source.databases = list(v);
        }
        if let Some(v) = get("TRIBUTARY_TOPIC_PREFIX") {
            self.source.name = v;
        }
        if let Some(v) = get("TRIBUTARY_SOURCE") {
            self.source.kind = match v.as_str() {
                "mysql" => SourceKind::Mysql,
                "kafka" => SourceKind::Kafka,
                other => bail!("TRIBUTARY_SOURCE={other:?}: expected \"mysql\" or \"kafka\""),
            };
        }
        if let Some(v) = get("TRIBUTARY_SERVER_ID") {
            self.source.server_id = v
                .parse()
                .with_context(|| format!("TRIBUTARY_SERVER_ID={v:?} is not a number"))?;
        }
        if let Some(v) = get("TRIBUTARY_BATCH_SIZE") {
            self.pipeline.batch_size = v
                .parse()
                .with_context(|| format!("TRIBUTARY_BATCH_SIZE={v:?} is not a number"))?;
        }
        if let Some(v) = get("TRIBUTARY_METRICS_ADDR") {
            self.pipeline.metrics_addr = Some(v);
        }
        // Docker/Kubernetes secrets: a URL or a password in a file, never in the environment.
        if let Some(p) = get("TRIBUTARY_MYSQL_URL_FILE") {
            self.source.url = Some(read_secret(&p, "TRIBUTARY_MYSQL_URL_FILE")?);
        }
        if let Some(p) = get("TRIBUTARY_POSTGRES_URL_FILE") {
            self.sink.url = Some(read_secret(&p, "TRIBUTARY_POSTGRES_URL_FILE")?);
        }
        if let Some(p) = get("TRIBUTARY_MYSQL_PASSWORD_FILE") {
            self.source.password_file = Some(p);
        }
        if let Some(p) = get("TRIBUTARY_POSTGRES_PASSWORD_FILE") {
            self.sink.tls.insert("password_file".into(), p);
        }
        Ok(())
    }

    /// Fold the connection keys of `[source]` (`ssl_mode`, `ssl_ca`, `ssl_cert`, `ssl_key`,
    /// `password_file`) and `[sink]` (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`,
    /// `password_file`) into the MySQL and PostgreSQL URLs, where the one connection builder of
    /// each side reads them (`tributary_capture::mysql_opts`, `tributary_apply::pgconn`). A
    /// parameter the URL sets itself wins. Call after flags were applied.
    pub fn resolve_connections(&mut self) -> Result<()> {
        if let Some(url) = &self.sink.url {
            let (_, present) = tributary_apply::pgconn::take_params(url)
                .map_err(|e| anyhow::anyhow!("PostgreSQL URL {}: {e}", redact(url)))?;
            let mut url = url.clone();
            for (k, v) in &self.sink.tls {
                if present.iter().any(|(pk, _)| pk == k) {
                    continue;
                }
                url = add_url_param(&url, k, v);
            }
            self.sink.url = Some(url);
        }
        if let Some(url) = &self.source.url {
            let src = &self.source;
            let mut url = url.clone();
            for (k, v) in [
                ("ssl-mode", &src.ssl_mode),
                ("ssl-ca", &src.ssl_ca),
                ("ssl-cert", &src.ssl_cert),
                ("ssl-key", &src.ssl_key),
                ("password_file", &src.password_file),
            ] {
                let Some(v) = v else { continue };
                let (_, present) = tributary_capture::split_tls_params(&url)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                if present.iter().any(|(pk, _)| pk == k) {
                    continue;
                }
                url = add_url_param(&url, k, v);
            }
            self.source.url = Some(url);
        }
        Ok(())
    }

    /// The librdkafka properties every Kafka client of this configuration gets (consumer,
    /// producer, admin, `status`, capture's watcher): `[source] kafka_properties`, then
    /// `[publish] kafka_properties` over them. Values may be `${env:NAME}` / `${file:PATH}`
    /// (see `tributary_kafka::security`).
    pub fn kafka_properties(&self) -> Vec<(String, String)> {
        let mut m = self.source.kafka_properties.clone();
        if let Some(p) = &self.publish {
            m.extend(p.kafka_properties.clone());
        }
        m.into_iter().collect()
    }

    pub fn postgres_url(&self) -> Result<&str> {
        self.sink.url.as_deref().context(
            "no PostgreSQL URL: set [sink] url in the config, --postgres-url, or TRIBUTARY_POSTGRES_URL",
        )
    }
}

fn read_secret(path: &str, what: &str) -> Result<String> {
    tributary_apply::pgconn::read_secret_file(Path::new(path), what).map_err(|e| anyhow::anyhow!(e))
}

/// `url` with `key=value` added: a query parameter of a `scheme://` URL (percent-encoded), or
/// a quoted `key='value'` of a keyword connection string.
pub fn add_url_param(url: &str, key: &str, value: &str) -> String {
    if url.contains("://") {
        let enc: String = value
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}{key}={enc}")
    } else {
        format!(
            "{url} {key}='{}'",
            value.replace('\\', "\\\\").replace('\'', "\\'")
        )
    }
}

/// A misspelled key's error with the nearest valid key: serde says "unknown field `on_eror`,
/// expected one of `a`, `b`, …"; this adds "did you mean `on_error`?".
pub fn with_suggestion(msg: &str) -> String {
    let Some(start) = msg.find("unknown field `") else {
        return msg.to_string();
    };
    let rest = &msg[start + "unknown field `".len()..];
    let Some(end) = rest.find('`') else {
        return msg.to_string();
    };
    let bad = &rest[..end];
    let Some(list) = rest.find("expected one of ").map(|i| &rest[i..]) else {
        return msg.to_string();
    };
    let best = list
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|k| (strsim::damerau_levenshtein(bad, k), k))
        .min();
    match best {
        Some((d, k)) if d <= bad.len().max(3) / 2 + 1 => {
            format!("{} (did you mean `{k}`?)", msg.trim_end())
        }
        _ => msg.to_string(),
    }
}

/// Hide the password of a `scheme://user:password@host` URL (the user part ends at the last
/// `@`: a raw `@` in a password is hidden too) and of `password=` parameters.
pub fn redact(url: &str) -> String {
    tributary_apply::redact_url(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("mysql://root:s3cret@h:3306/db"),
            "mysql://root:***@h:3306/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact("host=h password=x user=u"),
            "host=h password=*** user=u"
        );
        assert_eq!(
            redact("mysql://root:p@ss:w@rd@h:3306/db"),
            "mysql://root:***@h:3306/db"
        );
    }

    #[test]
    fn misspelled_keys_are_errors_with_the_nearest_key() {
        for (text, want) in [
            ("[sink]\non_eror = \"stop\"\n", "did you mean `on_error`?"),
            ("[sink]\nurll = \"x\"\n", "did you mean `url`?"),
            (
                "[source]\ndatabses = [\"a\"]\n",
                "did you mean `databases`?",
            ),
            ("[pipeline]\nbatch_sise = 5\n", "did you mean `batch_size`?"),
            (
                "[sink.tables.\"a.b\"]\nrenmae = { x = \"y\" }\n",
                "did you mean `rename`?",
            ),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("c.toml");
            std::fs::write(&p, text).unwrap();
            let e = format!("{:#}", Config::load(Some(&p)).unwrap_err());
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let c: Config = toml::from_str("[sink]\nurl = \"u\"\non_error = \"stop\"\n").unwrap();
        assert_eq!(c.sink.url.as_deref(), Some("u"));
        assert_eq!(c.sink.apply.on_error, tributary_apply::OnError::Stop);
        assert!(c.sink.require_table_topic);
    }

    #[test]
    fn connection_keys_fold_into_the_urls() {
        let mut c: Config = toml::from_str(
            "[source]\nurl = \"mysql://u@h:3306?ssl-mode=DISABLED\"\nssl_mode = \"VERIFY_CA\"\nssl_ca = \"/c a.pem\"\npassword_file = \"/run/s\"\n\n[sink]\nurl = \"postgres://u@h/db\"\nsslmode = \"verify-full\"\nsslrootcert = \"/ca.pem\"\n",
        )
        .unwrap();
        c.apply_env(|k| (k == "TRIBUTARY_POSTGRES_PASSWORD_FILE").then(|| "/run/pg".to_string()))
            .unwrap();
        c.resolve_connections().unwrap();
        // The URL's own ssl-mode wins over the key; the others are added.
        assert_eq!(
            c.source.url.as_deref(),
            Some("mysql://u@h:3306?ssl-mode=DISABLED&ssl-ca=/c%20a.pem&password_file=/run/s")
        );
        assert_eq!(
            c.sink.url.as_deref(),
            Some("postgres://u@h/db?password_file=/run/pg&sslmode=verify-full&sslrootcert=/ca.pem")
        );
        let mut k: Config =
            toml::from_str("[sink]\nurl = \"host=h user=u\"\nsslmode = \"require\"\n").unwrap();
        k.resolve_connections().unwrap();
        assert_eq!(
            k.sink.url.as_deref(),
            Some("host=h user=u sslmode='require'")
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("url");
        std::fs::write(&f, "postgres://from@file/db\n").unwrap();
        let mut e = Config::default();
        e.apply_env(|k| (k == "TRIBUTARY_POSTGRES_URL_FILE").then(|| f.display().to_string()))
            .unwrap();
        assert_eq!(e.postgres_url().unwrap(), "postgres://from@file/db");
    }

    #[test]
    fn bank_example_parses_and_env_overrides() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/bank.toml");
        let mut c = toml::from_str::<Config>(&std::fs::read_to_string(p).unwrap()).unwrap();
        let l = c
            .sink
            .apply
            .layout(&tributary_model::TableId::new("bankdb", "bank_accounts"));
        assert_eq!(l.current, "bank_accounts_current");
        assert_eq!(l.rename.get("id").map(String::as_str), Some("original_id"));
        c.apply_env(|k| (k == "TRIBUTARY_POSTGRES_URL").then(|| "postgres://x@y/z".to_string()))
            .unwrap();
        assert_eq!(c.postgres_url().unwrap(), "postgres://x@y/z");
        assert!(c
            .apply_env(|k| (k == "TRIBUTARY_SOURCE").then(|| "oracle".to_string()))
            .is_err());
    }
}
