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
//!
//! Stored offsets are checked against the log (crate `tributary-kafka`, "Offsets checked
//! against the log"): [`PgOffsetStore`] keeps a log mark per partition in the checkpoint row's
//! `position` (`{"mark": {"offset", "hash"}}`, written by [`MarkWriter`] after a commit, at most
//! every 2 s, only for an offset below the stored one), resets offset and mark for
//! `[source] on_offset_out_of_range = "earliest"`, and records a problem there for `status`.
//! Waits are bounded: Kafka errors for longer than `[pipeline] max_outage_secs` end the run
//! (exit 5), and so does a `--until-caught-up` run without progress for that long (absent
//! topics, no assignment, partitions pending), with the reason. Stored offsets of partitions the
//! broker no longer has are reported every 30 s ([`check_presence`]): nobody is assigned them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tracing::{info, warn};
use tributary_apply::config::ident;
use tributary_codec::decode::Decoder;
use tributary_kafka::{
    ConsumerConfig, KafkaError, KafkaSource, LogMark, OffsetPolicy, OffsetProblem, OffsetStore,
};
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

impl PgOffsetStore {
    /// Run one statement against the store, retrying outages for at most
    /// `[pipeline] max_outage_secs` (called on the consumer's thread).
    fn exec(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, KafkaError> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            let res: Result<_, (String, bool)> = self.handle.block_on(async {
                let client = tributary_apply::connect(&self.url)
                    .await
                    .map_err(|e| (e.to_string(), e.is_transient()))?;
                client.query(sql, params).await.map_err(|e| {
                    // No SQLSTATE: the connection went away; 08/57P: connection or shutdown.
                    let transient = e
                        .code()
                        .is_none_or(|c| c.code().starts_with("08") || c.code().starts_with("57P"));
                    let state = e.code().map(|c| format!(" (SQLSTATE {})", c.code()));
                    (format!("{e}{}", state.unwrap_or_default()), transient)
                })
            });
            match res {
                Ok(rows) => return Ok(rows),
                Err((e, true)) if started.elapsed() < crate::sink::max_outage() => {
                    warn!("{what}: {e}; retrying in {delay:?}");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err((e, transient)) => {
                    return Err(KafkaError::OffsetStore {
                        message: format!("{what}: {e}"),
                        transient,
                    })
                }
            }
        }
    }
}

/// Marks live in the checkpoint row's `position` (unused for Kafka partitions otherwise):
/// `{"mark": {"offset": N, "hash": "<16 hex>"}, "offset_problem": "…", "offset_problem_at": "…"}`.
fn mark_json(m: &LogMark) -> serde_json::Value {
    serde_json::json!({"offset": m.offset, "hash": format!("{:016x}", m.hash)})
}

fn mark_from_json(v: &serde_json::Value) -> Option<LogMark> {
    Some(LogMark {
        offset: v["offset"].as_i64()?,
        hash: u64::from_str_radix(v["hash"].as_str()?, 16).ok()?,
    })
}

impl OffsetStore for PgOffsetStore {
    fn load_marks(&self, partitions: &[(String, i32)]) -> Result<Vec<Option<LogMark>>, KafkaError> {
        let cs = ident(&self.control_schema);
        let rows = self.exec(
            "reading Kafka log marks",
            &format!("SELECT topic, kafka_partition, position::text FROM {cs}.checkpoints WHERE pipeline = $1 AND kafka_partition >= 0"),
            &[&self.pipeline],
        )?;
        let mut map = std::collections::HashMap::new();
        for r in rows {
            let pos: Option<String> = r.get(2);
            let mark = pos
                .and_then(|p| serde_json::from_str::<serde_json::Value>(&p).ok())
                .and_then(|j| mark_from_json(&j["mark"]));
            map.insert((r.get::<_, String>(0), r.get::<_, i32>(1)), mark);
        }
        Ok(partitions
            .iter()
            .map(|k| map.get(k).copied().flatten())
            .collect())
    }

    fn reset(&self, problem: &OffsetProblem) -> Result<(), KafkaError> {
        let cs = ident(&self.control_schema);
        let note = serde_json::json!({
            "offset_problem": problem.to_string(),
            "offset_problem_action": "re-read from the start of the log (on_offset_out_of_range = earliest)",
        });
        self.exec(
            "resetting a Kafka offset",
            &format!(
                "UPDATE {cs}.checkpoints SET next_offset = NULL, updated_at = now(),
                   position = $4::text::jsonb || jsonb_build_object('offset_problem_at', now()::text)
                 WHERE pipeline = $1 AND topic = $2 AND kafka_partition = $3"
            ),
            &[&self.pipeline, &problem.topic, &problem.partition, &note.to_string()],
        )?;
        Ok(())
    }

    fn report(&self, problem: &OffsetProblem) {
        let cs = ident(&self.control_schema);
        let note = serde_json::json!({
            "offset_problem": problem.to_string(),
            "offset_problem_action": "stopped (on_offset_out_of_range = stop)",
        });
        if let Err(e) = self.exec(
            "recording a Kafka offset problem",
            &format!(
                "UPDATE {cs}.checkpoints SET
                   position = coalesce(position, '{{}}'::jsonb) || $4::text::jsonb || jsonb_build_object('offset_problem_at', now()::text)
                 WHERE pipeline = $1 AND topic = $2 AND kafka_partition = $3"
            ),
            &[&self.pipeline, &problem.topic, &problem.partition, &note.to_string()],
        ) {
            warn!("{e}");
        }
    }

    fn load(&self, partitions: &[(String, i32)]) -> Result<Vec<Option<i64>>, KafkaError> {
        // Retry outages here (for at most `[pipeline] max_outage_secs`): assigning a partition
        // without knowing its offset is not an option.
        let mut delay = Duration::from_millis(100);
        let started = Instant::now();
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
                Err(e) if e.is_transient() && started.elapsed() >= crate::sink::max_outage() => {
                    return Err(KafkaError::OffsetStore {
                        message: format!(
                            "loading offsets: {e} — still failing after {:?} ([pipeline] max_outage_secs)",
                            started.elapsed()
                        ),
                        transient: true,
                    })
                }
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
    c.on_out_of_range = match cfg.source.on_offset_out_of_range.as_str() {
        "stop" => OffsetPolicy::Stop,
        "earliest" => OffsetPolicy::Earliest,
        other => anyhow::bail!(
            "[source] on_offset_out_of_range = {other:?}: expected \"stop\" or \"earliest\""
        ),
    };
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
    let topics = cc.topics.clone();
    let mut source = KafkaSource::new(cc, store).context("creating Kafka consumer")?;
    let mut marks = MarkWriter::new(&pg_url, &cfg.sink.apply.control_schema, &sink.pipeline);
    let mut problems_seen = 0usize;
    // First presence check ~5 s after start, then every 30 s.
    let mut last_presence = Instant::now()
        .checked_sub(Duration::from_secs(25))
        .unwrap_or_else(Instant::now);
    // Since when the broker keeps reporting errors (cleared by records, or 30 s without one).
    let mut outage: Option<(Instant, Instant)> = None;
    // A bounded run's deadline without progress (see `Bounded`).
    let mut last_progress = Instant::now();
    let mut progress_total = 0u64;
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
        let problems = source.offset_problems();
        if problems.len() > problems_seen {
            problems_seen = problems.len();
            m::set_error(&problems[problems.len() - 1].to_string());
        }
        let recs = match recs {
            Ok(r) => {
                if outage.is_some_and(|(_, last)| {
                    !r.is_empty() || last.elapsed() > Duration::from_secs(30)
                }) {
                    outage = None;
                }
                r
            }
            Err(e @ KafkaError::OffsetStore { .. }) => {
                // The store already waited out `max_outage_secs` (or the error is definite).
                return Err(e).context("reading the stored Kafka offsets");
            }
            Err(e) if e.is_transient() => {
                let (since, _) = *outage.get_or_insert((Instant::now(), Instant::now()));
                outage = Some((since, Instant::now()));
                if since.elapsed() >= crate::sink::max_outage() {
                    return Err(e).context(format!(
                        "Kafka unreachable for {:?} ([pipeline] max_outage_secs); giving up",
                        since.elapsed()
                    ));
                }
                warn!("Kafka: {e}; retrying (failing for {:?})", since.elapsed());
                m::set_error(&e.to_string());
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = &mut shutdown => { info!("signal received: stopping"); break; }
                }
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
                // Under the apply lock: a reset of a partition (out-of-range policy) cannot
                // be overwritten by a mark of its old log.
                marks.write(&raw).await;
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
        if last_presence.elapsed() >= Duration::from_secs(30) {
            last_presence = Instant::now();
            check_presence(&source, &mut marks).await;
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
        if total != progress_total {
            progress_total = total;
            last_progress = Instant::now();
        }
        if until_caught_up && in_flight.is_none() {
            let c = source.caught_up(Duration::from_secs(2));
            // A configured topic that does not exist is not "caught up": it is waited for
            // (it may be being created), within the deadline below.
            let missing = if c.done || last_progress.elapsed() >= crate::sink::max_outage() {
                source.missing_topics(&topics).unwrap_or_default()
            } else {
                Vec::new()
            };
            if last_progress.elapsed() >= crate::sink::max_outage()
                && !(c.done && missing.is_empty())
            {
                let why = if !missing.is_empty() {
                    format!("topics {missing:?} do not exist on the broker")
                } else if !c.settled {
                    "no partition assignment from the broker (unreachable, or the group does not settle)".to_string()
                } else {
                    format!("partitions not caught up: {:?}", c.pending)
                };
                return Err(anyhow::Error::new(KafkaError::Timeout(format!(
                    "--until-caught-up: no progress for {:?} ([pipeline] max_outage_secs): {why}",
                    last_progress.elapsed()
                ))));
            }
            if c.done && missing.is_empty() {
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

/// Writes the [`LogMark`] of the last applied record of each partition next to its stored
/// offset (at most every 2 s, after the batch committed, best-effort: a mark is only evidence
/// for the check against the log, and any applied offset serves — an older mark is as good).
struct MarkWriter {
    url: String,
    sql: String,
    stored_sql: String,
    client: Option<tokio_postgres::Client>,
    last: Option<Instant>,
    pipeline: String,
}

impl MarkWriter {
    fn new(url: &str, control_schema: &str, pipeline: &str) -> MarkWriter {
        let cs = ident(control_schema);
        MarkWriter {
            url: url.to_string(),
            sql: format!(
                "UPDATE {cs}.checkpoints AS c
                 SET position = coalesce(c.position, '{{}}'::jsonb) || jsonb_build_object('mark', u.m::jsonb)
                 FROM unnest($2::text[], $3::int[], $4::text[]) AS u(t, p, m)
                 WHERE c.pipeline = $1 AND c.topic = u.t AND c.kafka_partition = u.p
                   AND c.next_offset > (u.m::jsonb->>'offset')::bigint"
            ),
            stored_sql: format!(
                "SELECT topic, kafka_partition FROM {cs}.checkpoints
                 WHERE pipeline = $1 AND kafka_partition >= 0 AND next_offset IS NOT NULL"
            ),
            client: None,
            last: None,
            pipeline: pipeline.to_string(),
        }
    }

    async fn write(&mut self, applied: &[RawRecord]) {
        if applied.is_empty()
            || self
                .last
                .is_some_and(|t| t.elapsed() < Duration::from_secs(2))
        {
            return;
        }
        let mut last: std::collections::BTreeMap<(&str, i32), &RawRecord> = Default::default();
        for r in applied {
            let e = last.entry((r.topic.as_str(), r.partition)).or_insert(r);
            if r.offset > e.offset {
                *e = r;
            }
        }
        let topics: Vec<&str> = last.keys().map(|k| k.0).collect();
        let parts: Vec<i32> = last.keys().map(|k| k.1).collect();
        let marks: Vec<String> = last
            .values()
            .map(|r| mark_json(&LogMark::of_record(r)).to_string())
            .collect();
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            match tributary_apply::connect(&self.url).await {
                Ok(c) => self.client = Some(c),
                Err(e) => {
                    tracing::debug!("log marks not written: {e}");
                    return;
                }
            }
        }
        let c = self.client.as_ref().unwrap();
        match c
            .execute(&self.sql, &[&self.pipeline, &topics, &parts, &marks])
            .await
        {
            Ok(_) => self.last = Some(Instant::now()),
            Err(e) => {
                tracing::debug!("log marks not written: {e}");
                self.client = None;
            }
        }
    }
}

/// Every 30 s: stored offsets of partitions the broker no longer has (topic deleted, or
/// re-created with fewer partitions) are not assigned to anyone, so nothing else would notice
/// them. They are logged as errors and shown on `/health` (a topic may be being re-created:
/// when it comes back, its assignment checks the offsets against the new log).
async fn check_presence(source: &KafkaSource, marks: &mut MarkWriter) {
    let have = match tokio::task::block_in_place(|| source.topic_partitions()) {
        Ok(h) => h,
        Err(e) => {
            tracing::debug!("topic presence not checked: {e}");
            return;
        }
    };
    let stored = match marks.stored_partitions().await {
        Some(s) => s,
        None => return,
    };
    let gone: Vec<String> = stored
        .into_iter()
        .filter(|(t, p)| have.get(t).is_none_or(|n| *p as usize >= *n))
        .map(|(t, p)| format!("{t} [{p}]"))
        .collect();
    if !gone.is_empty() {
        let msg = format!(
            "stored Kafka offsets for partitions the broker no longer has: {} \
             (topic deleted or re-created with fewer partitions; what was not applied from them is gone)",
            gone.join(", ")
        );
        tracing::error!("{msg}");
        m::set_error(&msg);
    }
}

impl MarkWriter {
    /// `(topic, partition)` of the stored offsets of this pipeline (None: not readable now).
    async fn stored_partitions(&mut self) -> Option<Vec<(String, i32)>> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = tributary_apply::connect(&self.url).await.ok();
        }
        let c = self.client.as_ref()?;
        let rows = c.query(&self.stored_sql, &[&self.pipeline]).await.ok()?;
        Some(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}
