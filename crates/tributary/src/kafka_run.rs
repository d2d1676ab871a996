//! Kafka mode sink: Debezium topics → PostgreSQL, as one member of a consumer group.
//!
//! Offsets live in PostgreSQL (`tributary.checkpoints`, pipeline `kafka:<group>`), written in
//! the same transaction as the data. On every assignment the consumer reads them and seeks
//! ([`PgOffsetStore`]); the broker's committed offsets are only advisory (kept current for lag
//! tools). While a batch is applied this process holds the consumer's apply lock; a revoke
//! waits for it, and records fetched before a revoke are dropped
//! (`ApplyGuard::retain_current`), so after a rebalance the new owner starts exactly where
//! the last committed transaction ended — no loss, no duplicate (and if anything did arrive
//! twice, history's unique event identity would refuse it).
//!
//! Decoding runs one batch ahead on its own thread: while batch N is applied, batch N+1 is
//! already fetched and being decoded. Batch N is still fenced by the epochs it was *fetched*
//! under (`ApplyGuard::retain_fetched`), so reading ahead does not weaken the argument above;
//! a batch whose partition was revoked in between is re-decoded without those records.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tracing::{info, warn};
use tributary_codec::decode::Decoder;
use tributary_kafka::{ConsumerConfig, KafkaError, KafkaSource, OffsetStore};
use tributary_model::{Batch, Checkpoint, ErrorClass, RawRecord};

use crate::config::{redact, Config};
use crate::metrics as m;
use crate::sink::RecordSink;

/// Reads the sink's stored offsets; called on the consumer's own thread during a rebalance.
pub struct PgOffsetStore {
    url: String,
    control_schema: String,
    pipeline: String,
    handle: tokio::runtime::Handle,
}

impl OffsetStore for PgOffsetStore {
    fn load(&self, partitions: &[(String, i32)]) -> Result<Vec<Option<i64>>, KafkaError> {
        // Retry outages here: assigning a partition without knowing its offset is not an option.
        let mut delay = Duration::from_millis(100);
        loop {
            let res = self.handle.block_on(async {
                let client = tributary_apply::connect(&self.url).await?;
                tributary_apply::load_kafka_offsets(
                    &client,
                    &self.control_schema,
                    &self.pipeline,
                    partitions,
                )
                .await
            });
            match res {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() => {
                    warn!("loading offsets from PostgreSQL: {e}; retrying in {delay:?}");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(KafkaError::Config(format!("loading offsets: {e}"))),
            }
        }
    }
}

pub fn consumer_config(cfg: &Config) -> Result<ConsumerConfig> {
    let brokers = cfg.source.brokers.clone().context(
        "no Kafka brokers: set [source] brokers, --kafka-brokers or TRIBUTARY_KAFKA_BROKERS",
    )?;
    anyhow::ensure!(
        !cfg.source.topics.is_empty(),
        "no topics: set [source] topics, --topics or TRIBUTARY_TOPICS (\"^regex\" allowed)"
    );
    let mut c = ConsumerConfig::new(
        brokers,
        cfg.source.group_id.clone(),
        cfg.source.topics.clone(),
    );
    c.extra = cfg
        .source
        .kafka_properties
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(c)
}

pub async fn run(cfg: &Config, until_caught_up: bool) -> Result<()> {
    let pg_url = cfg.postgres_url()?.to_string();
    let cc = consumer_config(cfg)?;
    let pipeline = format!("kafka:{}", cc.group_id);
    info!(
        "Kafka sink: {} topics {:?} group {} → {}",
        cc.brokers,
        cc.topics,
        cc.group_id,
        redact(&pg_url)
    );
    let mut sink = RecordSink::connect(&pg_url, cfg.sink.apply.clone(), pipeline.clone()).await?;
    let store = Arc::new(PgOffsetStore {
        url: pg_url.clone(),
        control_schema: cfg.sink.apply.control_schema.clone(),
        pipeline,
        handle: tokio::runtime::Handle::current(),
    });
    let mut source = KafkaSource::new(cc, store).context("creating Kafka consumer")?;
    source.set_bounded(until_caught_up);
    let stop_on_error = sink.pg.config().on_error == tributary_apply::OnError::Stop;
    sink.routing = crate::sink::Routing::from_config(cfg);
    let mut decoder =
        DecodeAhead::start(sink.pipeline.clone(), stop_on_error, sink.routing.clone())?;
    let shutdown = crate::shutdown_signal();
    tokio::pin!(shutdown);
    let wait = Duration::from_millis(cfg.pipeline.batch_wait_ms.clamp(10, 1000));
    let started = Instant::now();
    let mut total = 0u64;
    let mut last_log = Instant::now();
    // The batch handed to the decode thread last round, with the epochs it was fetched under.
    let mut in_flight: Option<tributary_kafka::FetchedEpochs> = None;
    loop {
        let t_fetch = Instant::now();
        // A bounded run with everything up to its targets fetched: apply the batch in flight
        // right away instead of waiting for records it does not need.
        let drained = until_caught_up && in_flight.is_some() && source.targets_delivered();
        let recs = if drained {
            Ok(Vec::new())
        } else {
            tokio::select! {
                r = source.next_batch(cfg.pipeline.batch_size, wait) => r,
                _ = &mut shutdown => { info!("signal received: stopping after the last committed batch"); break; }
            }
        };
        let recs = match recs {
            Ok(r) => r,
            Err(e) if e.is_transient() => {
                warn!("Kafka: {e}; retrying");
                m::set_error(&e.to_string());
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => return Err(e).context("Kafka consumer failed"),
        };
        tracing::debug!(
            records = recs.len(),
            ms = t_fetch.elapsed().as_millis() as u64,
            "fetched"
        );
        // Hand the new batch to the decode thread first, then apply the previous one while
        // it decodes.
        let next = if recs.is_empty() {
            None
        } else {
            let epochs = source.fetched_epochs();
            decoder.send(recs)?;
            Some(epochs)
        };
        if let Some(epochs) = in_flight.take() {
            let t_dec = Instant::now();
            let (mut raw, decoded) = decoder.recv().await?;
            let dec_wait = t_dec.elapsed();
            let guard = source.begin_apply().await;
            let dropped = guard.retain_fetched(&epochs, &mut raw);
            if dropped > 0 {
                info!("{dropped} fetched record(s) of revoked partitions dropped (the new owner applies them)");
            }
            if !raw.is_empty() {
                let t0 = Instant::now();
                let batch = if dropped > 0 {
                    sink.decode(&raw)?
                } else {
                    decoded?
                };
                let stats = match tributary_apply::Sink::apply(&mut sink.pg, &batch).await {
                    Ok(s) => s,
                    Err(e) if e.is_transient() => {
                        // PostgreSQL went away: what it had not committed is gone — and after
                        // a crash with `synchronous_commit = off` also commits it had
                        // acknowledged. The stored offsets are the truth: reconnect, read
                        // them, seek back there (the records in flight are fenced off).
                        crate::sink::note_lost_batch(&e, "resuming from the stored offsets");
                        drop(guard);
                        crate::sink::drop_behind((raw, batch));
                        rewind_to_stored(&mut sink, &mut source).await?;
                        in_flight = next;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                let took = t0.elapsed();
                tracing::debug!(
                    records = raw.len(),
                    decode_wait_ms = dec_wait.as_millis() as u64,
                    apply_ms = took.as_millis() as u64,
                    "applied"
                );
                m::record_batch(raw.len(), &stats, took);
                if let Some(Checkpoint::Kafka(offsets)) = &batch.checkpoint {
                    source.commit_advisory(offsets);
                }
                total += raw.len() as u64;
                crate::sink::drop_behind((raw, batch));
            }
            drop(guard);
        } else if next.is_none() {
            m::mark_ok();
        }
        in_flight = next;
        for (t, p, lag) in source.lag() {
            m::set_lag(&t, p, lag);
        }
        if last_log.elapsed() > Duration::from_secs(5) {
            last_log = Instant::now();
            info!(
                "{total} records applied ({:.0}/s); assignment {:?}; lag {:?}",
                total as f64 / started.elapsed().as_secs_f64().max(1e-9),
                source.assignment(),
                source.lag()
            );
        }
        if until_caught_up && in_flight.is_none() {
            let c = source.caught_up(Duration::from_secs(2));
            if c.done {
                let since_join = source
                    .first_assigned()
                    .map_or(0.0, |t| t.elapsed().as_secs_f64());
                info!(
                    "caught up: {total} records applied in {:.2}s ({since_join:.2}s after the first assignment); partitions {:?}",
                    started.elapsed().as_secs_f64(),
                    source.assignment()
                );
                break;
            }
        }
    }
    Ok(())
}

/// The decode thread: raw batches in, decoded batches out, in order, one batch ahead of the
/// apply (the channels hold at most one batch each way).
struct DecodeAhead {
    tx: std::sync::mpsc::SyncSender<Vec<RawRecord>>,
    rx: tokio::sync::mpsc::Receiver<(Vec<RawRecord>, Result<Batch>)>,
}

impl DecodeAhead {
    fn start(
        pipeline: String,
        stop_on_error: bool,
        routing: crate::sink::Routing,
    ) -> Result<DecodeAhead> {
        let (tx, raw_rx) = std::sync::mpsc::sync_channel::<Vec<RawRecord>>(1);
        let (done_tx, rx) = tokio::sync::mpsc::channel(1);
        std::thread::Builder::new()
            .name("kafka-decode".into())
            .spawn(move || {
                let mut decoder = Decoder::new();
                for recs in raw_rx {
                    let b = crate::sink::decode_records(
                        &mut decoder,
                        &recs,
                        &pipeline,
                        stop_on_error,
                        &routing,
                    );
                    if done_tx.blocking_send((recs, b)).is_err() {
                        return;
                    }
                }
            })?;
        Ok(DecodeAhead { tx, rx })
    }

    fn send(&self, recs: Vec<RawRecord>) -> Result<()> {
        self.tx
            .send(recs)
            .map_err(|_| anyhow::anyhow!("the decode thread stopped"))
    }

    async fn recv(&mut self) -> Result<(Vec<RawRecord>, Result<Batch>)> {
        self.rx.recv().await.context("the decode thread stopped")
    }
}

/// Reconnect the sink (for at most `[pipeline] max_outage_secs`), read the stored offsets of
/// the assigned partitions, and seek the consumer back to them.
async fn rewind_to_stored(sink: &mut RecordSink, source: &mut KafkaSource) -> Result<()> {
    crate::sink::reconnect_within_outage(&mut sink.pg)
        .await
        .context("reconnecting to PostgreSQL after an outage")?;
    let parts = source.assignment();
    let stored = sink.stored_offsets(&parts).await?;
    let pairs: Vec<((String, i32), Option<i64>)> = parts.into_iter().zip(stored).collect();
    info!("rewinding to the stored offsets {pairs:?}");
    source
        .rewind(&pairs)
        .context("seeking to the stored offsets")?;
    Ok(())
}
