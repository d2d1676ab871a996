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
    /// Extra librdkafka consumer properties.
    pub kafka_properties: std::collections::BTreeMap<String, String>,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            kind: SourceKind::Mysql,
            url: None,
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
        }
    }
}

#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub url: Option<String>,
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
            require_table_topic: true,
            apply: ApplyConfig::default(),
        }
    }
}

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
                    "expected one of `url`, `require_table_topic`, ",
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
        Ok(())
    }

    pub fn postgres_url(&self) -> Result<&str> {
        self.sink.url.as_deref().context(
            "no PostgreSQL URL: set [sink] url in the config, --postgres-url, or TRIBUTARY_POSTGRES_URL",
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

/// Hide the password of a `scheme://user:password@host` URL (and `password=` parameters).
pub fn redact(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest = &out[scheme_end + 3..];
        if let Some(at) = rest.find('@') {
            if let Some(colon) = rest[..at].find(':') {
                let start = scheme_end + 3 + colon + 1;
                let end = scheme_end + 3 + at;
                out.replace_range(start..end, "***");
            }
        }
    }
    if let Some(i) = out.find("password=") {
        let end = out[i..]
            .find(['&', ' '])
            .map(|e| i + e)
            .unwrap_or(out.len());
        out.replace_range(i + 9..end, "***");
    }
    out
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
