//! Debezium records → PostgreSQL: the part shared by `replay`, the Kafka sink (`run` with a
//! Kafka source) and `dlq retry`.
//!
//! A list of raw records becomes one [`Batch`]: every record is decoded; change events are
//! applied, tombstones and schema-change records are consumed (their offsets still advance),
//! records that cannot be decoded become dead letters with their raw bytes and the reason.
//! The batch's checkpoint is *next offset = last offset + 1* per partition, covering every
//! record of the batch — whatever happened to it — so nothing is ever read past without being
//! accounted for, and nothing accounted for is read again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use tracing::{info, warn};
use tributary_apply::{ApplyError, ApplyStats, OnError, PgSink};
use tributary_codec::decode::{Decoded, Decoder};
use tributary_model::{Batch, Checkpoint, DeadLetter, KafkaCoord, RawRecord};

use crate::metrics as m;

/// Decodes and applies raw Debezium records.
pub struct RecordSink {
    pub pg: PgSink,
    decoder: Decoder,
    pub pipeline: String,
    url: String,
}

/// Apply `batch`, retrying while PostgreSQL is unavailable (reconnecting in between, backoff
/// 100 ms → 10 s). Definite errors are returned at once.
pub async fn apply_retrying(pg: &mut PgSink, batch: &Batch) -> Result<ApplyStats, ApplyError> {
    let mut delay = Duration::from_millis(100);
    let started = Instant::now();
    loop {
        match pg.apply(batch).await {
            Err(e) if e.is_transient() => {
                m::counter_retries();
                m::set_error(&e.to_string());
                warn!(
                    "applying batch: {e}; retrying in {delay:?} (down for {:?})",
                    started.elapsed()
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
                if let Err(e) = pg.reconnect().await {
                    warn!("reconnect failed: {e}");
                }
            }
            other => return other,
        }
    }
}

/// Connect the sink, waiting up to a minute for PostgreSQL to come up (a service started
/// together with its database); then the error is returned.
pub async fn connect_sink(url: &str, cfg: tributary_apply::ApplyConfig) -> Result<PgSink> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        match PgSink::connect(url, cfg.clone()).await {
            Ok(pg) => return Ok(pg),
            Err(e) if e.is_transient() && started.elapsed() < Duration::from_secs(60) => {
                warn!("{e}; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "connecting to PostgreSQL {}",
                    crate::config::redact(url)
                )))
            }
        }
    }
}

impl RecordSink {
    pub async fn connect(
        url: &str,
        cfg: tributary_apply::ApplyConfig,
        pipeline: String,
    ) -> Result<Self> {
        let mut pg = connect_sink(url, cfg).await?;
        pg.dead_letter_encoder = Some(crate::dead_letter_encoder("tributary"));
        Ok(RecordSink {
            pg,
            decoder: Decoder::new(),
            pipeline,
            url: url.to_string(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Decode `records` into a batch (see module docs).
    pub fn decode(&mut self, records: &[RawRecord]) -> Result<Batch> {
        let mut batch = Batch {
            pipeline: self.pipeline.clone(),
            ..Default::default()
        };
        let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for r in records {
            let e = next
                .entry((r.topic.as_str(), r.partition))
                .or_insert(r.offset + 1);
            *e = (*e).max(r.offset + 1);
            match self.decoder.decode(r) {
                Ok(Decoded::Change(mut ev)) => {
                    ev.kafka = Some(KafkaCoord {
                        topic: r.topic.clone(),
                        partition: r.partition,
                        offset: r.offset,
                    });
                    batch.events.push(ev);
                }
                Ok(Decoded::Tombstone) => m::counter_skipped("tombstone"),
                Ok(Decoded::SchemaChange(sc)) => {
                    m::counter_skipped("schema_change");
                    batch.schema_changes.push(sc)
                }
                Err(e) => {
                    if self.pg.config().on_error == OnError::Stop {
                        anyhow::bail!("{e} (on_error = \"stop\")");
                    }
                    batch.dead_letters.push(DeadLetter {
                        topic: r.topic.clone(),
                        partition: r.partition,
                        offset: r.offset,
                        key: r.key.clone(),
                        value: r.value.clone(),
                        stage: "decode".into(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        batch.checkpoint = Some(Checkpoint::Kafka(
            next.into_iter()
                .map(|((t, p), o)| (t.to_string(), p, o))
                .collect(),
        ));
        Ok(batch)
    }

    /// Decode and apply records as one transaction, retrying outages.
    pub async fn apply_records(&mut self, records: &[RawRecord]) -> Result<ApplyStats> {
        if records.is_empty() {
            return Ok(ApplyStats::default());
        }
        let started = Instant::now();
        let batch = self.decode(records)?;
        let stats = apply_retrying(&mut self.pg, &batch).await?;
        m::record_batch(records.len(), &stats, started.elapsed());
        Ok(stats)
    }

    /// Stored next offsets for partitions (the replay skip rule and the Kafka seek).
    pub async fn stored_offsets(&mut self, parts: &[(String, i32)]) -> Result<Vec<Option<i64>>> {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.pg.load_kafka_offsets(&self.pipeline, parts).await {
                Err(e) if e.is_transient() => {
                    warn!("reading offsets: {e}; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                    let _ = self.pg.reconnect().await;
                }
                other => return Ok(other?),
            }
        }
    }
}

/// `tributary replay FILE…`: apply recorded records exactly as the Kafka sink would: records
/// at offsets below the stored next offset of their partition were applied before and are
/// skipped; everything else is applied in batches with its checkpoint.
pub async fn replay(
    sink: &mut RecordSink,
    files: &[std::path::PathBuf],
    batch_size: usize,
) -> Result<ApplyStats> {
    let mut total = ApplyStats::default();
    let started = Instant::now();
    let mut n = 0usize;
    for f in files {
        let records = crate::records::read_file(f)?;
        let mut parts: Vec<(String, i32)> = records
            .iter()
            .map(|r| (r.topic.clone(), r.partition))
            .collect();
        parts.sort();
        parts.dedup();
        let stored: BTreeMap<(String, i32), i64> = parts
            .iter()
            .cloned()
            .zip(sink.stored_offsets(&parts).await?)
            .filter_map(|(k, o)| Some((k, o?)))
            .collect();
        let todo: Vec<RawRecord> = records
            .into_iter()
            .filter(|r| {
                stored
                    .get(&(r.topic.clone(), r.partition))
                    .is_none_or(|&next| r.offset >= next)
            })
            .collect();
        for chunk in todo.chunks(batch_size.max(1)) {
            let s = sink.apply_records(chunk).await?;
            total.applied += s.applied;
            total.duplicates += s.duplicates;
            total.dead_lettered += s.dead_lettered;
            n += chunk.len();
        }
    }
    let secs = started.elapsed().as_secs_f64();
    info!(
        records = n,
        applied = total.applied,
        duplicates = total.duplicates,
        dead_lettered = total.dead_lettered,
        "replay done in {secs:.2}s ({:.0} records/s)",
        n as f64 / secs.max(1e-9)
    );
    Ok(total)
}
