//! `tributary capture`: binlog → Debezium records, into a JSONL file (the replay format) or
//! Kafka topics.
//!
//! Capture keeps its own resumable position in a small state file, written (atomically, by
//! rename) only *after* the records of a batch are durable: fsynced to the output file, or
//! acknowledged by every partition leader (idempotent producer, `acks=all`). A crash between
//! the two re-publishes the last batch on restart — at-least-once — and the sink's
//! coordinate-based identity makes the duplicates no-ops (tested). A partial last line left
//! in the output file by a crash is cut off before appending.
//!
//! Publishing to Kafka survives broker trouble without waiting forever or losing silently:
//! * a failed send is retried with backoff for at most `[pipeline] max_outage_secs` (then the
//!   error ends capture with exit code 5); every wait also ends on SIGTERM/Ctrl-C (the batch
//!   not acknowledged is published again on restart);
//! * before a retry, and before a batch at most once a second, the end offsets of the batch's
//!   topics are compared with the highest seen ([`LogWatch`]): a partition whose end went
//!   back, or a topic that vanished after this process saw records in it, means the broker
//!   lost records it had acknowledged. Capture stops then (exit code 6) with the topic,
//!   partition and both ends, and the fix — its position is past records that are gone, and
//!   going on would hand the sinks a log with a hole. With `[publish] on_log_lost =
//!   "continue"` the loss is logged as an error instead, the topic is created again and
//!   publishing goes on (a sink that had applied everything before the loss stays exact with
//!   `on_offset_out_of_range = "earliest"`; one that had not misses the lost records — the
//!   reason `stop` is the default). A topic that is missing without such evidence (deleted
//!   while empty, or before this process saw it) is simply created again.

use std::collections::HashMap;
use std::io::{BufRead, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tracing::{info, warn};
use tributary_codec::encode::{
    encode, encode_schema_change_records, EncodeOptions, EncodedRecord, UnwrapOptions,
};
use tributary_kafka::{KafkaError, KafkaSink, OutRecord, ProducerConfig};
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

fn out_record(r: EncodedRecord) -> OutRecord {
    OutRecord {
        topic: r.topic,
        key: r.key,
        value: r.value,
    }
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
    let mut producer_cfg = None;
    if let Some(p) = &o.output {
        file = Some(open_output(p)?);
    } else {
        let mut pc = ProducerConfig::new(o.brokers.clone().unwrap());
        pc.extra = cfg.kafka_properties();
        pc.partitions_for_new_topics = o.partitions.max(1);
        pc.replication_factor = o.replication_factor;
        producer = Some(KafkaSink::new(pc.clone()).context("creating Kafka producer")?);
        producer_cfg = Some(pc);
    }
    let mut known_topics: std::collections::HashSet<String> = Default::default();
    let continue_on_loss = match cfg.publish.as_ref().map(|p| p.on_log_lost.as_str()) {
        None | Some("stop") => false,
        Some("continue") => true,
        Some(other) => {
            anyhow::bail!("[publish] on_log_lost = {other:?}: expected \"stop\" or \"continue\"")
        }
    };
    let mut watch = match &o.brokers {
        Some(b) => Some(LogWatch::new(b, &cfg.kafka_properties())?),
        None => None,
    };
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
    let mut source_down: Option<Instant> = None;
    loop {
        let batch = tokio::select! {
            b = src.next_batch(cfg.pipeline.batch_size) => b,
            _ = &mut shutdown => { info!("signal received: stopping"); break; }
        };
        let batch = match batch {
            Ok(b) => {
                source_down = None;
                b
            }
            Err(e) if e.is_transient() => {
                let since = *source_down.get_or_insert_with(Instant::now);
                if since.elapsed() >= crate::sink::max_outage() {
                    return Err(e).context(format!(
                        "source unreachable for {:?} ([pipeline] max_outage_secs)",
                        since.elapsed()
                    ));
                }
                warn!("source: {e}; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = &mut shutdown => { info!("signal received: stopping"); break; }
                }
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
        // Schema changes and data in binlog order, as Debezium writes them: a DDL record goes
        // before the first row event that follows it (both lists are in binlog order).
        let mut out: Vec<OutRecord> = Vec::with_capacity(batch.events.len() + 1);
        let mut ddl = batch.schema_changes.iter().peekable();
        for ev in &batch.events {
            let at = ev.source.order_key();
            while let Some(sc) = ddl.next_if(|sc| sc.source.order_key() <= at) {
                out.extend(
                    encode_schema_change_records(sc, &opts)
                        .into_iter()
                        .map(out_record),
                );
            }
            out.extend(encode(ev, &opts).into_iter().map(out_record));
        }
        for sc in ddl {
            out.extend(
                encode_schema_change_records(sc, &opts)
                    .into_iter()
                    .map(out_record),
            );
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
            if let (Some(pc), Some(watch)) = (&producer_cfg, &mut watch) {
                let topics: Vec<String> = out
                    .iter()
                    .map(|r| r.topic.clone())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let mut new: Vec<String> = topics
                    .iter()
                    .filter(|t| !known_topics.contains(*t))
                    .cloned()
                    .collect();
                // After a loss (with on_log_lost = continue) the producer is created anew: the
                // broker forgot its idempotent producer id, and the old one stalls on it.
                let mut renew = false;
                if watch.due() && watch.check(&topics, &state_path, continue_on_loss)? {
                    new = topics.clone();
                    renew = true;
                }
                let n = out.len();
                let mut delay = Duration::from_millis(200);
                let failing_since = Instant::now();
                loop {
                    if renew {
                        drop(producer.take());
                        producer =
                            Some(KafkaSink::new(pc.clone()).context("creating Kafka producer")?);
                        renew = false;
                    }
                    let p = producer.as_ref().expect("producer with producer_cfg");
                    let res = {
                        let attempt = async {
                            if !new.is_empty() {
                                p.ensure_topics(&new).await?;
                            }
                            p.send_batch(out.clone()).await
                        };
                        tokio::pin!(attempt);
                        // While the send waits (up to message.timeout.ms when a topic is gone),
                        // the end offsets are checked every 2 s.
                        loop {
                            tokio::select! {
                                r = &mut attempt => break r,
                                _ = &mut shutdown => {
                                    info!("signal received: stopping (the batch not acknowledged is published again on restart)");
                                    return Ok(());
                                }
                                _ = tokio::time::sleep(Duration::from_secs(2)) => {
                                    if watch.check(&topics, &state_path, continue_on_loss)? {
                                        // Lost and re-created: publish this batch again from the top.
                                        renew = true;
                                        break Err(KafkaError::Timeout("topic lost; creating it again".into()));
                                    }
                                }
                            }
                        }
                    };
                    match res {
                        Ok(()) => {
                            known_topics.extend(new.drain(..));
                            watch.acked(&topics);
                            break;
                        }
                        Err(e) if e.is_transient() => {
                            if failing_since.elapsed() >= crate::sink::max_outage() {
                                return Err(e).context(format!(
                                    "publishing to Kafka: failing for {:?} ([pipeline] max_outage_secs); giving up",
                                    failing_since.elapsed()
                                ));
                            }
                            warn!("publishing {n} records: {e}; retrying in {delay:?}");
                            // A topic deleted meanwhile is created again — unless records it
                            // had acknowledged are gone (then capture stops).
                            renew |= watch.check(&topics, &state_path, continue_on_loss)?;
                            new = topics.clone();
                            tokio::select! {
                                _ = tokio::time::sleep(delay) => {}
                                _ = &mut shutdown => {
                                    info!("signal received: stopping (the batch not acknowledged is published again on restart)");
                                    return Ok(());
                                }
                            }
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

/// The highest end offset seen per partition of the topics capture publishes to, to notice a
/// broker that lost records it had acknowledged (see the module docs). End offsets come from
/// ListOffsets; tansu answers it with the last batch's base offset + 1 (below the true end),
/// which still only grows while the log is intact, so comparing answers with answers is sound.
struct LogWatch {
    consumer: rdkafka::consumer::BaseConsumer,
    seen: HashMap<(String, i32), i64>,
    /// Topics the broker acknowledged records of (to this process).
    acked: std::collections::HashSet<String>,
    last: Option<Instant>,
}

impl LogWatch {
    fn new(brokers: &str, props: &[(String, String)]) -> Result<LogWatch> {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", brokers);
        tributary_kafka::security::apply_properties(&mut c, props)?;
        c.set("client.id", "tributary-capture-watch");
        let consumer = tributary_kafka::security::create(&c)
            .context("creating the Kafka end-offset watcher")?;
        Ok(LogWatch {
            consumer,
            seen: HashMap::new(),
            acked: Default::default(),
            last: None,
        })
    }

    /// The broker acknowledged a batch with records of `topics`.
    fn acked(&mut self, topics: &[String]) {
        self.acked.extend(topics.iter().cloned());
    }

    fn due(&self) -> bool {
        self.last
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
    }

    /// Compare the end offsets of `topics` with the highest seen. No answer (broker away) is
    /// not evidence of anything; a lower end, or a topic gone after records were acknowledged
    /// in it, is — a definite error naming both ends and the fix; with `go_on` it is logged as
    /// an error instead, what was seen of the topic is forgotten, and `true` is returned.
    fn check(&mut self, topics: &[String], state: &Path, go_on: bool) -> Result<bool> {
        match self.check_once(topics, state) {
            Ok(()) => Ok(false),
            Err((topic, e)) if go_on => {
                tracing::error!(
                    "{e:#} — [publish] on_log_lost = \"continue\": creating {topic} again and publishing on"
                );
                self.seen.retain(|(t, _), _| *t != topic);
                self.acked.remove(&topic);
                Ok(true)
            }
            Err((_, e)) => Err(e),
        }
    }

    fn check_once(
        &mut self,
        topics: &[String],
        state: &Path,
    ) -> Result<(), (String, anyhow::Error)> {
        use rdkafka::consumer::Consumer;
        self.last = Some(Instant::now());
        for t in topics {
            let md = match tokio::task::block_in_place(|| {
                self.consumer
                    .fetch_metadata(Some(t), Duration::from_secs(3))
            }) {
                Ok(md) => md,
                Err(e) => {
                    tracing::debug!(topic = %t, error = %e, "end-offset check: no metadata");
                    continue;
                }
            };
            let Some(mt) = md.topics().iter().find(|mt| mt.name() == t) else {
                tracing::debug!(topic = %t, "end-offset check: topic not in the metadata answer");
                continue;
            };
            tracing::debug!(topic = %t, error = ?mt.error(), partitions = mt.partitions().len(), "end-offset check: metadata");
            let partitions: Vec<i32> = if mt.error().is_some() || mt.partitions().is_empty() {
                Vec::new()
            } else {
                mt.partitions().iter().map(|p| p.id()).collect()
            };
            if partitions.is_empty() {
                // The topic is gone: lost only if it had acknowledged records of ours.
                if self.acked.contains(t) {
                    let (p, seen) = self
                        .seen
                        .iter()
                        .filter(|((st, _), _)| st == t)
                        .map(|((_, p), n)| (*p, *n))
                        .max_by_key(|x| x.1)
                        .unwrap_or((0, 1));
                    return Err((t.clone(), log_lost(t, p, seen.max(1), None, state)));
                }
                continue;
            }
            let mut ends = Vec::new();
            for p in partitions {
                let hi = match tokio::task::block_in_place(|| {
                    self.consumer.fetch_watermarks(t, p, Duration::from_secs(3))
                }) {
                    Ok((_, hi)) => hi,
                    Err(_) => continue,
                };
                tracing::debug!(topic = %t, partition = p, hi, seen = ?self.seen.get(&(t.clone(), p)), "end-offset check");
                let e = self.seen.entry((t.clone(), p)).or_insert(hi);
                if hi < *e {
                    return Err((t.clone(), log_lost(t, p, *e, Some(hi), state)));
                }
                *e = hi;
                ends.push(hi);
            }
            // Re-created empty (e.g. by a broker's auto-create) after records were acknowledged.
            if self.acked.contains(t) && !ends.is_empty() && ends.iter().all(|h| *h == 0) {
                return Err((t.clone(), log_lost(t, 0, 1, Some(0), state)));
            }
        }
        Ok(())
    }
}

fn log_lost(
    topic: &str,
    partition: i32,
    seen: i64,
    now: Option<i64>,
    state: &Path,
) -> anyhow::Error {
    let now = now.map_or("the topic no longer exists".to_string(), |n| {
        format!("it now ends at {n}")
    });
    anyhow::Error::new(KafkaError::LogLost(format!(
        "the broker lost records it had acknowledged: topic {topic} partition {partition} ended at >= {seen}, {now} \
         (the broker lost its log, or the topic was deleted). Capture stops: its position ({}) is past records that \
         are gone. Fix: restore the broker's data, or delete {} to snapshot again into the new log \
         (sinks then need [source] on_offset_out_of_range = \"earliest\")",
        state.display(),
        state.display()
    )))
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
