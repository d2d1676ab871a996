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

use anyhow::{Context, Result};
use tracing::{info, warn};
use tributary_apply::{ApplyError, ApplyStats, OnError, ParallelSink, PgSink, Sink};
use tributary_codec::decode::{Decoded, Decoder};
use tributary_model::{Batch, Checkpoint, DeadLetter, RawRecord, TableId};

use crate::metrics as m;

/// Which records a sink may apply. A record names its own table (`source.db`/`table`); it is
/// applied only when that table is one the configuration captures (`databases`,
/// `include_tables`, `exclude_tables` — as in direct mode) and, unless switched off, when it
/// arrived on the topic Debezium names for that table. Anything else is dead-lettered with
/// stage `route`: a record on `dbserver1.bankdb.bank_accounts` cannot create `hr.salaries`.
#[derive(Debug, Clone)]
pub struct Routing {
    pub databases: Vec<String>,
    pub include_tables: Vec<String>,
    pub exclude_tables: Vec<String>,
    pub require_table_topic: bool,
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            databases: vec![],
            include_tables: vec![],
            exclude_tables: vec![],
            require_table_topic: true,
        }
    }
}

/// Debezium's topic name for a part (`TopicNamingStrategy`): characters other than
/// `[A-Za-z0-9._-]` become `_`.
fn topic_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Routing {
    pub fn from_config(cfg: &crate::config::Config) -> Routing {
        Routing {
            databases: cfg.source.databases.clone(),
            include_tables: cfg.source.include_tables.clone(),
            exclude_tables: cfg.source.exclude_tables.clone(),
            require_table_topic: cfg.sink.require_table_topic,
        }
    }

    /// Why a record for table `t` that arrived on `topic` must not be applied (None = fine).
    pub fn refuse(&self, topic: &str, t: &TableId) -> Option<String> {
        let full = t.to_string();
        if let Some(why) = tributary_model::table_selection_refusal(
            &self.databases,
            &self.include_tables,
            &self.exclude_tables,
            t,
        ) {
            return Some(format!("record for {full}: {why}"));
        }
        if self.require_table_topic {
            let ok = [
                format!("{}.{}", t.db, t.table),
                format!("{}.{}", topic_part(&t.db), topic_part(&t.table)),
            ]
            .iter()
            .any(|suffix| topic == suffix || topic.ends_with(&format!(".{suffix}")));
            if !ok {
                return Some(format!(
                    "record for {full} arrived on topic {topic:?}, which is not that table's topic \
                     (<prefix>.{full}); set [sink] require_table_topic = false if a router renames topics"
                ));
            }
        }
        None
    }
}

/// Decodes and applies raw Debezium records.
pub struct RecordSink {
    pub pg: ParallelSink,
    /// Two decoders: a large batch is decoded in two halves on two threads (PostgreSQL is
    /// idle while a batch is decoded, so both cores are free for it).
    decoders: [Decoder; 2],
    pub pipeline: String,
    /// Which records may be applied (see [`Routing`]).
    pub routing: Routing,
    url: String,
}

/// Drop `v` on a background thread. A decoded batch of 10k records is ~100k allocations;
/// freeing them took ~4 ms of every ~60 ms apply round on the apply loop's critical path.
/// Falls back to dropping here when the background thread is behind (bounded memory).
pub fn drop_behind<T: Send + 'static>(v: T) {
    use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
    use std::sync::OnceLock;
    type Garbage = Box<dyn Send>;
    static TX: OnceLock<Option<SyncSender<Garbage>>> = OnceLock::new();
    let tx = TX.get_or_init(|| {
        let (tx, rx) = sync_channel::<Garbage>(1);
        std::thread::Builder::new()
            .name("drop-behind".into())
            .spawn(move || rx.into_iter().for_each(drop))
            .ok()
            .map(|_| tx)
    });
    if let Some(tx) = tx {
        match tx.try_send(Box::new(v)) {
            Ok(()) => {}
            Err(TrySendError::Full(g) | TrySendError::Disconnected(g)) => drop(g),
        }
    }
}

/// How long a PostgreSQL outage is waited out before the pipeline gives up with the error
/// (`[pipeline] max_outage_secs`, default 600): a supervisor restarting the process sees the
/// failure instead of a process retrying forever.
static MAX_OUTAGE_SECS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(600);

pub fn set_max_outage(d: Duration) {
    MAX_OUTAGE_SECS.store(d.as_secs().max(1), std::sync::atomic::Ordering::Relaxed);
}

pub fn max_outage() -> Duration {
    Duration::from_secs(MAX_OUTAGE_SECS.load(std::sync::atomic::Ordering::Relaxed))
}

/// Exit code: a source, sink or broker that stayed unreachable (or topics that stayed
/// absent) past its deadline (`[pipeline] max_outage_secs`) — a transient error that was
/// given up on.
pub const EXIT_UNREACHABLE: u8 = 5;
/// Exit code: a stored Kafka offset does not fit its partition's log and the policy is
/// `on_offset_out_of_range = "stop"`; or capture found that the broker lost records it had
/// acknowledged.
pub const EXIT_OFFSET_OUT_OF_RANGE: u8 = 6;

/// The process exit code for a pipeline error (README "Exit codes"): classified by the typed
/// errors in its chain, 1 for everything else.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    use tributary_kafka::KafkaError;
    use tributary_model::ErrorClass;
    for c in e.chain() {
        if let Some(k) = c.downcast_ref::<KafkaError>() {
            if matches!(k, KafkaError::OffsetOutOfRange(_) | KafkaError::LogLost(_)) {
                return EXIT_OFFSET_OUT_OF_RANGE;
            }
            if k.is_transient() {
                return EXIT_UNREACHABLE;
            }
        }
        if c.downcast_ref::<ApplyError>()
            .is_some_and(|a| a.is_transient())
            || c.downcast_ref::<tributary_capture::CaptureError>()
                .is_some_and(|a| a.is_transient())
        {
            return EXIT_UNREACHABLE;
        }
    }
    1
}

/// How long PostgreSQL has been unavailable, and the wait before the next attempt: backoff
/// 100 ms → 10 s, the reason on `/health`, and an error once the outage is longer than
/// [`set_max_outage`]. One clock per outage.
pub struct OutageClock {
    started: Instant,
    delay: Duration,
}

impl Default for OutageClock {
    fn default() -> Self {
        OutageClock {
            started: Instant::now(),
            delay: Duration::from_millis(100),
        }
    }
}

impl OutageClock {
    /// After a failed attempt: a definite error, or an outage past the limit, is returned;
    /// otherwise wait (backoff) so the caller tries again.
    pub async fn wait_or_give_up(&mut self, what: &str, e: ApplyError) -> Result<(), ApplyError> {
        m::set_error(&e.to_string());
        if !e.is_transient() {
            return Err(e);
        }
        if self.started.elapsed() >= max_outage() {
            let sqlstate = e.sqlstate().map(String::from);
            return Err(ApplyError::Transient(tributary_apply::Failure {
                message: format!(
                    "{e} — still failing after {:?} ([pipeline] max_outage_secs); giving up",
                    self.started.elapsed()
                ),
                sqlstate,
            }));
        }
        m::counter_retries();
        warn!(
            "{what}: {e}; retrying in {:?} (down for {:?})",
            self.delay,
            self.started.elapsed()
        );
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(Duration::from_secs(10));
        Ok(())
    }
}

/// A batch failed because PostgreSQL went away: counted, shown on `/health`, logged with what
/// happens next. (The long-running pipelines then resume from the stored position: after a
/// crash with `synchronous_commit = off` PostgreSQL may have lost commits it acknowledged.)
pub fn note_lost_batch(e: &ApplyError, next: &str) {
    m::counter_retries();
    m::set_error(&e.to_string());
    warn!("applying batch: {e}; reconnecting, then {next}");
}

/// Reconnect `pg` after an outage, waiting it out for at most [`set_max_outage`].
pub async fn reconnect_within_outage(pg: &mut impl Sink) -> Result<(), ApplyError> {
    let mut clock = OutageClock::default();
    loop {
        match pg.reconnect().await {
            Ok(()) => return Ok(()),
            Err(e) => {
                clock
                    .wait_or_give_up("reconnecting to PostgreSQL", e)
                    .await?
            }
        }
    }
}

/// Apply `batch`, retrying while PostgreSQL is unavailable (reconnecting in between) for at
/// most [`set_max_outage`]. Definite errors are returned at once. For `replay` and
/// `dlq retry`, which re-read nothing; the long-running pipelines re-read from the stored
/// position instead (see `direct.rs`, `kafka_run.rs`).
pub async fn apply_retrying(pg: &mut impl Sink, batch: &Batch) -> Result<ApplyStats, ApplyError> {
    let mut clock = OutageClock::default();
    loop {
        match pg.apply(batch).await {
            Err(e) => {
                clock.wait_or_give_up("applying batch", e).await?;
                if let Err(e) = pg.reconnect().await {
                    warn!("reconnect failed: {e}");
                }
            }
            ok => return ok,
        }
    }
}

/// Decode raw records into one batch (see module docs). With `stop_on_error` an undecodable
/// record is an error instead of a dead letter.
pub fn decode_records(
    decoder: &mut Decoder,
    records: &[RawRecord],
    pipeline: &str,
    stop_on_error: bool,
    routing: &Routing,
) -> Result<Batch> {
    let mut batch = Batch {
        pipeline: pipeline.to_string(),
        ..Default::default()
    };
    batch.events.reserve(records.len());
    let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    let mut allowed: Option<(String, usize)> = None;
    for r in records {
        let after = r.offset.saturating_add(1);
        let e = next.entry((r.topic.as_str(), r.partition)).or_insert(after);
        *e = (*e).max(after);
        let decoded = decoder
            .decode(r)
            .map_err(|e| e.to_string())
            .and_then(|d| match d {
                Decoded::Change(ev) => {
                    // Consecutive records of one topic and table shape: checked once.
                    let shape = std::sync::Arc::as_ptr(&ev.schema) as usize;
                    if allowed
                        .as_ref()
                        .is_some_and(|(t, s)| *s == shape && t == &r.topic)
                    {
                        return Ok(Decoded::Change(ev));
                    }
                    match routing.refuse(&r.topic, &ev.schema.id) {
                        Some(why) => Err(why),
                        None => {
                            allowed = Some((r.topic.clone(), shape));
                            Ok(Decoded::Change(ev))
                        }
                    }
                }
                other => Ok(other),
            });
        match decoded {
            Ok(Decoded::Change(ev)) => {
                // The decoder sets `ev.kafka` from the record's coordinates.
                debug_assert!(ev.kafka.as_ref().is_some_and(|k| k.offset == r.offset));
                batch.events.push(ev);
            }
            Ok(Decoded::Tombstone) => m::counter_skipped("tombstone"),
            Ok(Decoded::SchemaChange(sc)) => {
                m::counter_skipped("schema_change");
                batch.schema_change_after.push(batch.events.len());
                batch.schema_changes.push(sc)
            }
            Err(e) => {
                if stop_on_error {
                    anyhow::bail!("{e} (on_error = \"stop\")");
                }
                let stage = if e.starts_with("record for ") {
                    "route"
                } else {
                    "decode"
                };
                batch.dead_letters.push(DeadLetter {
                    topic: r.topic.clone(),
                    partition: r.partition,
                    offset: r.offset,
                    key: r.key.clone(),
                    value: r.value.clone(),
                    stage: stage.into(),
                    reason: e,
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

/// Connect the sink, waiting up to a minute for PostgreSQL to come up (a service started
/// together with its database); then the error is returned.
pub async fn connect_sink(url: &str, cfg: tributary_apply::ApplyConfig) -> Result<PgSink> {
    retry_connect(url, || PgSink::connect(url, cfg.clone())).await
}

/// [`connect_sink`] for the Kafka sink and `replay` (`[sink] connections` sessions).
pub async fn connect_parallel_sink(
    url: &str,
    cfg: tributary_apply::ApplyConfig,
) -> Result<ParallelSink> {
    retry_connect(url, || ParallelSink::connect(url, cfg.clone())).await
}

async fn retry_connect<T, F: std::future::Future<Output = Result<T, ApplyError>>>(
    url: &str,
    connect: impl Fn() -> F,
) -> Result<T> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        match connect().await {
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
        let mut pg = connect_parallel_sink(url, cfg).await?;
        pg.set_dead_letter_encoder(crate::dead_letter_encoder("tributary"));
        Ok(RecordSink {
            pg,
            decoders: [Decoder::new(), Decoder::new()],
            pipeline,
            routing: Routing::default(),
            url: url.to_string(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Decode `records` into a batch (see module docs).
    pub fn decode(&mut self, records: &[RawRecord]) -> Result<Batch> {
        let stop = self.pg.config().on_error == OnError::Stop;
        let [d0, d1] = &mut self.decoders;
        if records.len() < 2_000 {
            return decode_records(d0, records, &self.pipeline, stop, &self.routing);
        }
        // Contiguous halves, concatenated in order: per-partition order is kept.
        let (a, b) = records.split_at(records.len() / 2);
        let (pipeline, routing) = (&self.pipeline, &self.routing);
        let (ra, rb) = std::thread::scope(|sc| {
            let hb = sc.spawn(|| decode_records(d1, b, pipeline, stop, routing));
            let ra = decode_records(d0, a, pipeline, stop, routing);
            (ra, hb.join().expect("decode thread panicked"))
        });
        let (mut first, second) = (ra?, rb?);
        let n = first.events.len();
        first.events.extend(second.events);
        first.dead_letters.extend(second.dead_letters);
        first
            .schema_change_after
            .extend(second.schema_change_after.iter().map(|a| a + n));
        first.schema_changes.extend(second.schema_changes);
        if let (Some(Checkpoint::Kafka(x)), Some(Checkpoint::Kafka(y))) =
            (&mut first.checkpoint, second.checkpoint)
        {
            let mut m: BTreeMap<(String, i32), i64> =
                x.drain(..).map(|(t, p, o)| ((t, p), o)).collect();
            for (t, p, o) in y {
                let e = m.entry((t, p)).or_insert(o);
                *e = (*e).max(o);
            }
            *x = m.into_iter().map(|((t, p), o)| (t, p, o)).collect();
        }
        Ok(first)
    }

    /// Stored next offsets for partitions (the replay skip rule and the Kafka seek).
    pub async fn stored_offsets(&mut self, parts: &[(String, i32)]) -> Result<Vec<Option<i64>>> {
        let mut clock = OutageClock::default();
        loop {
            match self.pg.load_kafka_offsets(&self.pipeline, parts).await {
                Ok(o) => return Ok(o),
                Err(e) => {
                    clock.wait_or_give_up("reading offsets", e).await?;
                    let _ = self.pg.reconnect().await;
                }
            }
        }
    }
}

/// `tributary replay FILE…`: apply recorded records exactly as the Kafka sink would: records
/// at offsets below the stored next offset of their partition were applied before and are
/// skipped; everything else is applied in batches with its checkpoint.
///
/// Files are streamed (memory is bounded by the batch size, whatever the file size), and
/// reading + decoding runs on its own thread one batch ahead of the apply, so the CPU work of
/// decoding overlaps PostgreSQL's work on the previous batch.
///
/// After a transient error the files are read again from their start with the offsets
/// stored *now*: a PostgreSQL crash can lose commits it had acknowledged (with
/// `synchronous_commit = off`), and what it lost must be applied again, never skipped.
pub async fn replay(
    sink: &mut RecordSink,
    files: &[std::path::PathBuf],
    batch_size: usize,
) -> Result<ApplyStats> {
    let started = Instant::now();
    let mut total = ApplyStats::default();
    let mut n = 0usize;
    loop {
        let done = replay_pass(sink, files, batch_size, &mut total, &mut n).await?;
        if done {
            break;
        }
        reconnect_within_outage(&mut sink.pg)
            .await
            .context("reconnecting to PostgreSQL after an outage")?;
        info!("replaying again from the offsets PostgreSQL holds now");
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

/// One pass over the files; `Ok(false)` when a transient error interrupted it (the caller
/// reconnects and starts a new pass).
async fn replay_pass(
    sink: &mut RecordSink,
    files: &[std::path::PathBuf],
    batch_size: usize,
    total: &mut ApplyStats,
    n: &mut usize,
) -> Result<bool> {
    let batch_size = batch_size.max(1);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<(Batch, usize)>>(1);
    let files = files.to_vec();
    let pipeline = sink.pipeline.clone();
    let stop = sink.pg.config().on_error == OnError::Stop;
    let routing = sink.routing.clone();
    let reader = std::thread::Builder::new()
        .name("replay-decode".into())
        .spawn(move || {
            let mut decoder = Decoder::new();
            let mut run = || -> Result<()> {
                for f in &files {
                    let file = std::fs::File::open(f)
                        .with_context(|| format!("opening {}", f.display()))?;
                    let mut lines = crate::records::Lines::new(
                        std::io::BufReader::with_capacity(1 << 20, file),
                        f.display(),
                    );
                    let mut chunk: Vec<RawRecord> = Vec::with_capacity(batch_size);
                    loop {
                        chunk.clear();
                        for item in lines.by_ref() {
                            let (n, line) = item?;
                            if line.trim().is_empty() {
                                continue;
                            }
                            chunk.push(crate::records::parse_line(
                                &line,
                                format_args!("{}:{n}", f.display()),
                            )?);
                            if chunk.len() == batch_size {
                                break;
                            }
                        }
                        if chunk.is_empty() {
                            break;
                        }
                        let b = decode_records(&mut decoder, &chunk, &pipeline, stop, &routing)?;
                        if tx.blocking_send(Ok((b, chunk.len()))).is_err() {
                            return Ok(()); // the applier stopped
                        }
                    }
                }
                Ok(())
            };
            if let Err(e) = run() {
                let _ = tx.blocking_send(Err(e));
            }
        })?;
    let mut stored: BTreeMap<(String, i32), Option<i64>> = BTreeMap::new();
    while let Some(item) = rx.recv().await {
        let (mut batch, records) = item?;
        // Stored offsets of partitions seen for the first time, then the skip rule.
        let parts: Vec<(String, i32)> = match &batch.checkpoint {
            Some(Checkpoint::Kafka(o)) => o.iter().map(|(t, p, _)| (t.clone(), *p)).collect(),
            _ => vec![],
        };
        let unseen: Vec<(String, i32)> = parts
            .into_iter()
            .filter(|k| !stored.contains_key(k))
            .collect();
        if !unseen.is_empty() {
            let offs = sink.stored_offsets(&unseen).await?;
            stored.extend(unseen.into_iter().zip(offs));
        }
        let applied_before = |t: &str, p: i32, o: i64| -> bool {
            matches!(stored.get(&(t.to_string(), p)), Some(Some(next)) if o < *next)
        };
        batch.events.retain(|e| {
            let k = e.kafka.as_ref().expect("replayed events carry coordinates");
            !applied_before(&k.topic, k.partition, k.offset)
        });
        batch
            .dead_letters
            .retain(|d| !applied_before(&d.topic, d.partition, d.offset));
        let t0 = Instant::now();
        let s = match Sink::apply(&mut sink.pg, &batch).await {
            Ok(s) => s,
            Err(e) if e.is_transient() => {
                note_lost_batch(&e, "replaying from the stored offsets");
                drop(rx); // the reader stops at its next send
                let _ = reader.join();
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        };
        m::record_batch(records, &s, t0.elapsed());
        drop_behind(batch);
        total.applied += s.applied;
        total.duplicates += s.duplicates;
        total.dead_lettered += s.dead_lettered;
        *n += records;
    }
    let _ = reader.join();
    Ok(true)
}

#[cfg(test)]
mod exit_code_tests {
    use super::*;
    use tributary_kafka::{KafkaError, OffsetProblem};

    #[test]
    fn exit_codes_follow_the_typed_error_in_the_chain() {
        let oor = anyhow::Error::new(KafkaError::OffsetOutOfRange(OffsetProblem {
            topic: "t".into(),
            partition: 0,
            stored: 9,
            log_start: Some(0),
            log_end: Some(3),
            reason: "test".into(),
        }))
        .context("Kafka consumer failed");
        assert_eq!(exit_code(&oor), EXIT_OFFSET_OUT_OF_RANGE);
        let lost = anyhow::Error::new(KafkaError::LogLost("gone".into()));
        assert_eq!(exit_code(&lost), EXIT_OFFSET_OUT_OF_RANGE);
        let away = anyhow::Error::new(KafkaError::Timeout("no progress".into())).context("x");
        assert_eq!(exit_code(&away), EXIT_UNREACHABLE);
        let pg = anyhow::Error::new(ApplyError::Transient("down".into()));
        assert_eq!(exit_code(&pg), EXIT_UNREACHABLE);
        let bad = anyhow::Error::new(ApplyError::definite("bad"));
        assert_eq!(exit_code(&bad), 1);
        assert_eq!(exit_code(&anyhow::anyhow!("plain")), 1);
    }
}
