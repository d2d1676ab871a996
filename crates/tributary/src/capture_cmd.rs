//! `tributary capture`: binlog → Debezium records, into a JSONL file (the replay format) or
//! Kafka topics.
//!
//! Capture keeps its own resumable position in a small state file, written (atomically, by
//! rename) only *after* the records of a batch are durable: fsynced to the output file, or
//! acknowledged by every partition leader (idempotent producer, `acks=all`). A crash between
//! the two re-publishes the last batch on restart — at-least-once — and the sink's
//! coordinate-based identity makes the duplicates no-ops (tested). A partial last line left
//! in the output file by a crash is cut off before appending.

use std::collections::HashMap;
use std::io::{BufRead, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tracing::{info, warn};
use tributary_codec::encode::{encode, encode_schema_change, EncodeOptions, UnwrapOptions};
use tributary_kafka::{KafkaSink, OutRecord, ProducerConfig};
use tributary_model::{BinlogCheckpoint, Checkpoint, ErrorClass};

use crate::config::Config;

pub struct CaptureOpts {
    pub output: Option<PathBuf>,
    pub state: Option<PathBuf>,
    pub brokers: Option<String>,
    pub partitions: i32,
    /// Replication factor of topics capture creates (`[publish] replication_factor`).
    pub replication_factor: i16,
    pub encode: EncodeOptions,
    pub until_caught_up: bool,
}

/// Encoder settings from Debezium's option names (errors name the bad value).
pub fn encode_options(
    prefix: &str,
    schemas: bool,
    unwrap_fields: Option<Vec<String>>,
    decimal: &str,
    bigint_unsigned: &str,
    binary: &str,
    time: &str,
) -> Result<EncodeOptions> {
    use tributary_codec::encode::{
        BigintUnsignedMode, BinaryMode, DecimalMode, DeleteHandling, TimePrecisionMode,
    };
    Ok(EncodeOptions {
        topic_prefix: prefix.to_string(),
        schemas_enable: schemas,
        decimal_mode: match decimal {
            "precise" => DecimalMode::Precise,
            "string" => DecimalMode::String,
            "double" => DecimalMode::Double,
            o => anyhow::bail!("--decimal-handling {o:?}: expected precise, string or double"),
        },
        bigint_unsigned_mode: match bigint_unsigned {
            "long" => BigintUnsignedMode::Long,
            "precise" => BigintUnsignedMode::Precise,
            o => anyhow::bail!("--bigint-unsigned-handling {o:?}: expected long or precise"),
        },
        binary_mode: match binary {
            "bytes" => BinaryMode::Bytes,
            "base64" => BinaryMode::Base64,
            "hex" => BinaryMode::Hex,
            o => anyhow::bail!("--binary-handling {o:?}: expected bytes, base64 or hex"),
        },
        time_precision: match time {
            "adaptive_time_microseconds" | "adaptive" => {
                TimePrecisionMode::AdaptiveTimeMicroseconds
            }
            "connect" => TimePrecisionMode::Connect,
            o => anyhow::bail!(
                "--time-precision {o:?}: expected adaptive_time_microseconds or connect"
            ),
        },
        unwrap: unwrap_fields.map(|f| UnwrapOptions {
            add_fields: f,
            delete_handling: DeleteHandling::Rewrite,
            drop_tombstones: true,
        }),
        ..Default::default()
    })
}

fn load_state(p: &Path) -> Result<Option<BinlogCheckpoint>> {
    if !p.exists() {
        return Ok(None);
    }
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p)?)
        .with_context(|| format!("capture state file {} is not valid JSON", p.display()))?;
    Ok(Some(
        BinlogCheckpoint::from_json(&j).context("state: file and pos expected")?,
    ))
}

fn save_state(p: &Path, b: &BinlogCheckpoint) -> Result<()> {
    let tmp = p.with_extension("tmp");
    let j = b.to_json();
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(j.to_string().as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, p)?;
    Ok(())
}

/// Open the output for appending: cut a partial last line, and count records per topic so
/// offsets continue.
fn open_output(p: &Path) -> Result<(std::fs::File, HashMap<String, i64>)> {
    let mut next: HashMap<String, i64> = HashMap::new();
    let mut good_len = 0u64;
    if p.exists() {
        let f = std::fs::File::open(p)?;
        let mut r = std::io::BufReader::new(f);
        let mut line = String::new();
        loop {
            line.clear();
            let n = r.read_line(&mut line)?;
            if n == 0 {
                break;
            }
            if !line.ends_with('\n') {
                warn!(
                    "{}: cutting a partial last line left by a crash",
                    p.display()
                );
                break;
            }
            good_len += n as u64;
            if let Ok(rec) = crate::records::parse_line(line.trim_end(), "output") {
                let e = next.entry(rec.topic).or_insert(0);
                *e = (*e).max(rec.offset + 1);
            }
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(p)
        .with_context(|| format!("opening {}", p.display()))?;
    f.set_len(good_len)?;
    f.seek(std::io::SeekFrom::End(0))?;
    Ok((f, next))
}

pub async fn run(cfg: &Config, o: CaptureOpts) -> Result<()> {
    let cc = crate::direct::capture_config(cfg)?;
    anyhow::ensure!(
        o.output.is_some() != o.brokers.is_some(),
        "capture needs exactly one of --output FILE.jsonl or --kafka-brokers HOSTS"
    );
    let state_path = o.state.clone().unwrap_or_else(|| match &o.output {
        Some(out) => PathBuf::from(format!("{}.position.json", out.display())),
        None => PathBuf::from(format!("{}.capture-position.json", cc.name)),
    });
    let resume = load_state(&state_path)?;
    if let Some(r) = &resume {
        info!(
            "capture resuming from {}:{} ({})",
            r.file,
            r.pos,
            state_path.display()
        );
    }
    let opts = o.encode;
    let mut file = None;
    let mut producer = None;
    if let Some(p) = &o.output {
        file = Some(open_output(p)?);
    } else {
        let mut pc = ProducerConfig::new(o.brokers.clone().unwrap());
        pc.extra = cfg.kafka_properties();
        pc.partitions_for_new_topics = o.partitions.max(1);
        pc.replication_factor = o.replication_factor;
        producer = Some(KafkaSink::new(pc).context("creating Kafka producer")?);
    }
    let mut known_topics: std::collections::HashSet<String> = Default::default();
    let mut src = crate::direct::start_source(&cc, resume).await?;
    let target = if o.until_caught_up {
        Some(crate::direct::catch_up_target(&mut src).await?)
    } else {
        None
    };
    let shutdown = crate::shutdown_signal();
    tokio::pin!(shutdown);
    let started = Instant::now();
    let mut total = 0u64;
    let mut last_log = Instant::now();
    loop {
        let batch = tokio::select! {
            b = src.next_batch(cfg.pipeline.batch_size) => b,
            _ = &mut shutdown => { info!("signal received: stopping"); break; }
        };
        let batch = match batch {
            Ok(b) => b,
            Err(e) if e.is_transient() => {
                warn!("source: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => return Err(e).context("capture failed"),
        };
        // Capture to a file or Kafka has no dead-letter table: a row the binlog decoder
        // could not read stops it (Debezium's default event.processing.failure.handling.mode
        // = fail), before anything of its transaction is written and the position moves.
        if let Some(d) = batch.dead_letters.first() {
            anyhow::bail!(
                "capture stopped on an undecodable binlog row ({} more): {}",
                batch.dead_letters.len() - 1,
                d.reason
            );
        }
        let mut out: Vec<OutRecord> = Vec::with_capacity(batch.events.len() + 1);
        for sc in &batch.schema_changes {
            let r = encode_schema_change(sc, &opts);
            out.push(OutRecord {
                topic: r.topic,
                key: r.key,
                value: r.value,
            });
        }
        for ev in &batch.events {
            for r in encode(ev, &opts) {
                out.push(OutRecord {
                    topic: r.topic,
                    key: r.key,
                    value: r.value,
                });
            }
        }
        if !out.is_empty() {
            if let Some((f, next)) = &mut file {
                let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut *f);
                for r in &out {
                    let off = next.entry(r.topic.clone()).or_insert(0);
                    crate::records::write_line(
                        &mut w,
                        &r.topic,
                        0,
                        *off,
                        r.key.as_deref(),
                        r.value.as_deref(),
                    )?;
                    *off += 1;
                }
                w.flush()?;
                drop(w);
                f.sync_data()?;
            }
            if let Some(p) = &producer {
                let new: Vec<String> = out
                    .iter()
                    .map(|r| r.topic.clone())
                    .filter(|t| !known_topics.contains(t))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                if !new.is_empty() {
                    p.ensure_topics(&new).await.context("creating topics")?;
                    known_topics.extend(new);
                }
                let n = out.len();
                let mut delay = Duration::from_millis(200);
                loop {
                    match p.send_batch(out.clone()).await {
                        Ok(()) => break,
                        Err(e) if e.is_transient() => {
                            warn!("publishing {n} records: {e}; retrying in {delay:?}");
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(10));
                        }
                        Err(e) => return Err(e).context("publishing to Kafka"),
                    }
                }
            }
            total += out.len() as u64;
        }
        if let Some(Checkpoint::Binlog(b)) = &batch.checkpoint {
            save_state(&state_path, b)?;
        }
        if last_log.elapsed() > Duration::from_secs(5) {
            last_log = Instant::now();
            info!(
                "{total} records captured ({:.0}/s)",
                total as f64 / started.elapsed().as_secs_f64().max(1e-9)
            );
        }
        if target
            .as_ref()
            .is_some_and(|t| crate::direct::reached(t, &batch))
        {
            info!(
                "caught up: {total} records captured in {:.1}s",
                started.elapsed().as_secs_f64()
            );
            break;
        }
    }
    Ok(())
}

/// `tributary publish FILE…`: recorded records to Kafka (key and value bytes as recorded;
/// the partition follows from the key, as for any producer). Returns the number published.
pub async fn publish_files(
    brokers: &str,
    partitions: i32,
    files: &[PathBuf],
    batch: usize,
    kafka_properties: &[(String, String)],
) -> Result<u64> {
    let mut pc = ProducerConfig::new(brokers.to_string());
    pc.extra = kafka_properties.to_vec();
    pc.partitions_for_new_topics = partitions.max(1);
    let producer = KafkaSink::new(pc).context("creating Kafka producer")?;
    let mut known: std::collections::HashSet<String> = Default::default();
    let mut n = 0u64;
    let started = Instant::now();
    for f in files {
        let records = crate::records::read_file(f)?;
        for chunk in records.chunks(batch.max(1)) {
            let new: std::collections::BTreeSet<String> = chunk
                .iter()
                .map(|r| r.topic.clone())
                .filter(|t| !known.contains(t))
                .collect();
            if !new.is_empty() {
                let new: Vec<String> = new.into_iter().collect();
                producer
                    .ensure_topics(&new)
                    .await
                    .context("creating topics")?;
                known.extend(new);
            }
            let out: Vec<OutRecord> = chunk
                .iter()
                .map(|r| OutRecord {
                    topic: r.topic.clone(),
                    key: r.key.clone(),
                    value: r.value.clone(),
                })
                .collect();
            producer.send_batch(out).await.context("publishing")?;
            n += chunk.len() as u64;
        }
    }
    info!(
        "published {n} records in {:.2}s",
        started.elapsed().as_secs_f64()
    );
    Ok(n)
}
