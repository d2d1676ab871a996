//! `tributary` — the command line. Every subcommand's settings come from `-c FILE` (TOML),
//! then `TRIBUTARY_*` environment variables, then flags (see `tributary::config`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use tributary::config::{redact, Config, SourceKind};

/// Decoding builds many short-lived values; mimalloc's thread-local free lists make that
/// markedly cheaper than glibc malloc (measured: see README, Benchmarks).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tributary",
    version,
    about = "MySQL/MariaDB change data capture into PostgreSQL — direct, or through Kafka in Debezium's format"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Log filter (RUST_LOG syntax), e.g. `info`, `tributary=debug`.
    #[arg(long, global = true, env = "TRIBUTARY_LOG", default_value = "info")]
    log: String,
}

#[derive(Args, Clone, Default)]
struct Common {
    /// TOML configuration file.
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// Source MySQL/MariaDB URL (mysql://user:pass@host:port).
    #[arg(long)]
    mysql_url: Option<String>,
    /// Databases to capture (comma-separated).
    #[arg(long, value_delimiter = ',')]
    databases: Vec<String>,
    /// Tables to capture, `db.table` (comma-separated; default all of --databases).
    #[arg(long, value_delimiter = ',')]
    tables: Vec<String>,
    /// Target PostgreSQL URL.
    #[arg(long)]
    postgres_url: Option<String>,
    /// Kafka bootstrap servers.
    #[arg(long)]
    kafka_brokers: Option<String>,
    /// Kafka consumer group (Kafka source).
    #[arg(long)]
    group: Option<String>,
    /// Kafka topics to consume (comma-separated; `^regex` allowed).
    #[arg(long, value_delimiter = ',')]
    topics: Vec<String>,
    /// Debezium topic prefix / logical server name.
    #[arg(long)]
    topic_prefix: Option<String>,
    /// Replication server id used for the binlog connection.
    #[arg(long)]
    server_id: Option<u32>,
    /// Events per batch (one transaction each).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Serve Prometheus /metrics and /health here (e.g. 127.0.0.1:9464).
    #[arg(long)]
    metrics_addr: Option<String>,
}

impl Common {
    fn load(&self) -> Result<Config> {
        let mut c = Config::load(self.config.as_deref())?;
        tributary::sink::set_max_outage(std::time::Duration::from_secs(c.pipeline.max_outage_secs));
        if let Some(v) = &self.mysql_url {
            c.source.url = Some(v.clone());
        }
        if !self.databases.is_empty() {
            c.source.databases = self.databases.clone();
        }
        if !self.tables.is_empty() {
            c.source.include_tables = self.tables.clone();
        }
        if let Some(v) = &self.postgres_url {
            c.sink.url = Some(v.clone());
        }
        if let Some(v) = &self.kafka_brokers {
            c.source.brokers = Some(v.clone());
        }
        if let Some(v) = &self.group {
            c.source.group_id = v.clone();
        }
        if !self.topics.is_empty() {
            c.source.topics = self.topics.clone();
        }
        if let Some(v) = &self.topic_prefix {
            c.source.name = v.clone();
        }
        if let Some(v) = self.server_id {
            c.source.server_id = v;
        }
        if let Some(v) = self.batch_size {
            c.pipeline.batch_size = v;
        }
        if let Some(v) = &self.metrics_addr {
            c.pipeline.metrics_addr = Some(v.clone());
        }
        c.resolve_connections()?;
        Ok(c)
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the configured pipeline (source mysql → PostgreSQL directly, or source kafka → PostgreSQL).
    Run {
        #[command(flatten)]
        common: Common,
        /// Source kind, overriding the config (`mysql` or `kafka`).
        #[arg(long)]
        source: Option<String>,
        /// Exit 0 once everything available at start has been applied.
        #[arg(long)]
        until_caught_up: bool,
    },
    /// Apply recorded Debezium records (JSONL: topic, partition, offset, key, value; or kcat -J).
    Replay {
        files: Vec<PathBuf>,
        #[command(flatten)]
        common: Common,
        /// Checkpoint namespace (offsets already applied under it are skipped).
        #[arg(long, default_value = "replay")]
        pipeline: String,
    },
    /// Capture the binlog into Debezium records: a JSONL file or Kafka topics.
    Capture {
        #[command(flatten)]
        common: Common,
        /// Write records to this JSONL file (appends; replay format).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Where capture keeps its resumable binlog position (default: next to the output).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Partitions for topics capture creates (default: `[publish] partitions`, else 1).
        #[arg(long)]
        partitions: Option<i32>,
        /// Emit ExtractNewRecordState records (the seed's format: `__deleted` "true"/"false",
        /// delete.tombstone.handling.mode=rewrite) instead of envelopes.
        #[arg(long)]
        unwrap: bool,
        /// With --unwrap: source fields added as `__<field>` (Debezium's add.fields).
        #[arg(long, value_delimiter = ',', default_value = "op,table,source.ts_ms")]
        unwrap_fields: Vec<String>,
        /// Envelope without the Connect schema (schemas.enable=false).
        #[arg(long)]
        no_schemas: bool,
        /// Debezium decimal.handling.mode: precise (default), string, double.
        #[arg(long, default_value = "precise")]
        decimal_handling: String,
        /// Debezium bigint.unsigned.handling.mode: long (default), precise.
        #[arg(long, default_value = "long")]
        bigint_unsigned_handling: String,
        /// Debezium binary.handling.mode: bytes (default), base64, hex.
        #[arg(long, default_value = "bytes")]
        binary_handling: String,
        /// Debezium time.precision.mode: adaptive_time_microseconds (default), connect.
        #[arg(long, default_value = "adaptive_time_microseconds")]
        time_precision: String,
        /// Kafka JsonConverter replace.null.with.default: write a NULL in a column with a
        /// default as the default (byte-for-byte Debezium; loses the NULL). Also `[publish]`.
        #[arg(long)]
        replace_null_with_default: bool,
        /// Exit once the binlog position of the start has been captured.
        #[arg(long)]
        until_caught_up: bool,
    },
    /// Publish recorded records (JSONL, the replay format) to Kafka, keyed as recorded.
    Publish {
        files: Vec<PathBuf>,
        #[command(flatten)]
        common: Common,
        /// Partitions for topics that do not exist yet.
        #[arg(long, default_value_t = 1)]
        partitions: i32,
    },
    /// Positions, lag, row counts and dead letters.
    Status {
        #[command(flatten)]
        common: Common,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Read tables again (all captured ones, or the named `db.table`s) in a new binlog epoch,
    /// delete warehouse rows gone from the source (with a DELETE in history), stream on. The
    /// way out of a purged binlog position.
    Resnapshot {
        /// Tables to re-read (`db.table`); none = every captured table, streaming from the new
        /// snapshot's position.
        #[arg(value_name = "TABLE")]
        resnapshot_tables: Vec<String>,
        #[command(flatten)]
        common: Common,
        /// Exit 0 once everything available at start has been applied.
        #[arg(long)]
        until_caught_up: bool,
    },
    /// Check the source server's settings and privileges (and the sink's reachability).
    Check {
        #[command(flatten)]
        common: Common,
    },
    /// Compare source tables with the warehouse's current tables (row counts and keys).
    Verify {
        #[command(flatten)]
        common: Common,
    },
    /// Dead letters: list them, or retry (re-apply) them.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// The seed's scenario end to end on this machine: private MariaDB → PostgreSQL.
    Demo {
        #[command(flatten)]
        common: Common,
        /// Go through a Kafka-protocol broker (capture → Kafka → sink) instead of direct mode.
        #[arg(long)]
        via_kafka: bool,
        /// Keep the demo's MariaDB/broker running for inspection (Ctrl-C to end).
        #[arg(long)]
        keep: bool,
    },
}

#[derive(Subcommand)]
enum DlqAction {
    List {
        #[command(flatten)]
        common: Common,
        /// Include resolved ones.
        #[arg(long)]
        all: bool,
    },
    Retry {
        #[command(flatten)]
        common: Common,
        /// Only this dead letter id.
        #[arg(long)]
        id: Option<i64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let env = tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "info".into());
    let max_level = env
        .max_level_hint()
        .unwrap_or(tracing_subscriber::filter::LevelFilter::TRACE);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .with_filter(env)
        // rdkafka's consumer Drop closes the group queue a second time after our orderly
        // close and logs the (harmless) refusal as an ERROR on every clean exit; that is the
        // only error that module logs, so it alone is dropped.
        .with_filter(
            tracing_subscriber::filter::filter_fn(|m| {
                !(m.target() == "rdkafka::consumer::base_consumer"
                    && *m.level() == tracing::Level::ERROR)
            })
            .with_max_level_hint(max_level),
        );
    tracing_subscriber::registry().with(fmt).init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(cli.cmd)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(tributary::sink::exit_code(&e))
        }
    }
}

async fn run(cmd: Cmd) -> Result<ExitCode> {
    match cmd {
        Cmd::Run {
            common,
            source,
            until_caught_up,
        } => {
            let mut cfg = common.load()?;
            if let Some(s) = source {
                cfg.source.kind = match s.as_str() {
                    "mysql" => SourceKind::Mysql,
                    "kafka" => SourceKind::Kafka,
                    other => anyhow::bail!("--source {other:?}: expected mysql or kafka"),
                };
            }
            if let Some(addr) = &cfg.pipeline.metrics_addr {
                tributary::metrics::serve(addr).await?;
            }
            match cfg.source.kind {
                SourceKind::Mysql => tributary::direct::run(&cfg, until_caught_up).await?,
                SourceKind::Kafka => tributary::kafka_run::run(&cfg, until_caught_up).await?,
            }
        }
        Cmd::Replay {
            files,
            common,
            pipeline,
        } => {
            anyhow::ensure!(!files.is_empty(), "replay needs at least one FILE.jsonl");
            let cfg = common.load()?;
            let url = cfg.postgres_url()?;
            tracing::info!("replaying {} file(s) into {}", files.len(), redact(url));
            let mut sink =
                tributary::sink::RecordSink::connect(url, cfg.sink.apply.clone(), pipeline).await?;
            sink.routing = tributary::sink::Routing::from_config(&cfg);
            let s = tributary::sink::replay(&mut sink, &files, cfg.pipeline.batch_size).await?;
            println!(
                "applied {} change(s), {} already applied, {} dead-lettered",
                s.applied, s.duplicates, s.dead_lettered
            );
        }
        Cmd::Capture {
            common,
            output,
            state,
            partitions,
            unwrap,
            unwrap_fields,
            no_schemas,
            decimal_handling,
            bigint_unsigned_handling,
            binary_handling,
            time_precision,
            replace_null_with_default,
            until_caught_up,
        } => {
            let cfg = common.load()?;
            // `[publish]` gives the defaults; flags override them.
            let publish = cfg.publish.clone().unwrap_or_default();
            let opts = tributary::capture_cmd::CaptureOpts {
                output,
                state: state.or(publish.state_file.clone().map(PathBuf::from)),
                brokers: common
                    .kafka_brokers
                    .clone()
                    .or(cfg.publish.as_ref().map(|p| p.brokers.clone())),
                partitions: partitions.unwrap_or(publish.partitions),
                replication_factor: publish.replication_factor,
                encode: tributary::capture_cmd::encode_options(
                    &cfg.source.name,
                    !no_schemas && publish.schemas,
                    (unwrap || publish.unwrap).then_some(unwrap_fields),
                    &decimal_handling,
                    &bigint_unsigned_handling,
                    &binary_handling,
                    &time_precision,
                )
                .map(|mut o| {
                    o.replace_null_with_default =
                        replace_null_with_default || publish.replace_null_with_default;
                    o
                })?,
                until_caught_up,
            };
            tributary::capture_cmd::run(&cfg, opts).await?;
        }
        Cmd::Publish {
            files,
            common,
            partitions,
        } => {
            let cfg = common.load()?;
            let brokers = cfg
                .source
                .brokers
                .clone()
                .context("publish needs --kafka-brokers")?;
            let n = tributary::capture_cmd::publish_files(
                &brokers,
                partitions,
                &files,
                cfg.pipeline.batch_size,
                &cfg.kafka_properties(),
            )
            .await?;
            println!("published {n} record(s)");
        }
        Cmd::Status { common, json } => {
            let cfg = common.load()?;
            tributary::status::status(&cfg, json).await?;
        }
        Cmd::Resnapshot {
            resnapshot_tables: tables,
            common,
            until_caught_up,
        } => {
            let cfg = common.load()?;
            if cfg.source.kind != SourceKind::Mysql {
                anyhow::bail!(
                    "resnapshot re-reads a MySQL/MariaDB source: [source] kind = \"mysql\""
                );
            }
            tributary::direct::resnapshot(&cfg, &tables, until_caught_up).await?;
        }
        Cmd::Check { common } => {
            let cfg = common.load()?;
            if !tributary::status::check(&cfg).await? {
                return Ok(ExitCode::from(2));
            }
        }
        Cmd::Verify { common } => {
            let cfg = common.load()?;
            if !tributary::status::verify(&cfg).await? {
                return Ok(ExitCode::from(3));
            }
        }
        Cmd::Dlq { action } => match action {
            DlqAction::List { common, all } => {
                let cfg = common.load()?;
                tributary::dlq::list(&cfg, all).await?;
            }
            DlqAction::Retry { common, id } => {
                let cfg = common.load()?;
                let left = tributary::dlq::retry(&cfg, id).await?;
                if left > 0 {
                    return Ok(ExitCode::from(4));
                }
            }
        },
        Cmd::Demo {
            common,
            via_kafka,
            keep,
        } => {
            let cfg = common.load()?;
            tributary::demo::run(&cfg, via_kafka, keep)
                .await
                .context("demo failed")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
