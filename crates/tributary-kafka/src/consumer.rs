//! The consumer: a librdkafka `BaseConsumer` polled on a dedicated thread, positions from the
//! [`OffsetStore`], a fencing rebalance callback, and the check of stored offsets against the
//! log (`probe`, `check_running`; [`OffsetPolicy`]). See the crate docs for the argument.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    base_consumer::PartitionQueue, BaseConsumer, CommitMode, Consumer, ConsumerContext,
    RebalanceProtocol,
};
use rdkafka::error::{KafkaError as RdError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use tributary_model::RawRecord;

use crate::{apply_extra, KafkaError, LogMark, OffsetProblem, OffsetStore};

/// What to do when a stored offset does not fit the partition's log (see the crate docs,
/// "Offsets checked against the log").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetPolicy {
    /// Stop with [`KafkaError::OffsetOutOfRange`] (the default: nothing is skipped silently
    /// and nothing is re-read without a decision).
    #[default]
    Stop,
    /// Re-read the partition from the start of its log (the stored offset and mark are
    /// reset; re-applied records are no-ops in the sink), with an error logged and the
    /// problem recorded for `tributary status`.
    Earliest,
}

/// Where to start a partition the [`OffsetStore`] knows nothing about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetFallback {
    /// The beginning of the partition (the safe default: re-reading is harmless because the
    /// sink dedupes, skipping is not).
    #[default]
    Earliest,
    /// The group's committed offset on the broker, else earliest. Only for migrating from a
    /// consumer that really applied everything up to its committed offsets.
    BrokerCommitted,
}

/// Consumer settings. Build with [`ConsumerConfig::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `host:port[,host:port…]`
    pub brokers: String,
    pub group_id: String,
    /// Topics to subscribe; entries starting with `^` are regular expressions (librdkafka).
    pub topics: Vec<String>,
    pub client_id: String,
    /// librdkafka `session.timeout.ms` (default 6000; librdkafka's 45000 makes the first
    /// assignment against tansu take ~23 s).
    pub session_timeout_ms: u32,
    /// librdkafka `max.poll.interval.ms` (default 10000, must be ≥ the session timeout).
    pub max_poll_interval_ms: u32,
    /// Start position of partitions the store has no offset for.
    pub fallback: OffsetFallback,
    /// A stored offset that does not fit the log: stop, or re-read from the log's start.
    pub on_out_of_range: OffsetPolicy,
    /// Extra librdkafka properties, applied last (override everything above).
    pub extra: Vec<(String, String)>,
}

impl ConsumerConfig {
    pub fn new(
        brokers: impl Into<String>,
        group_id: impl Into<String>,
        topics: Vec<String>,
    ) -> Self {
        ConsumerConfig {
            brokers: brokers.into(),
            group_id: group_id.into(),
            topics,
            client_id: "tributary".into(),
            session_timeout_ms: 6000,
            max_poll_interval_ms: 10000,
            fallback: OffsetFallback::Earliest,
            on_out_of_range: OffsetPolicy::Stop,
            extra: Vec::new(),
        }
    }

    fn client_config(&self) -> Result<ClientConfig, KafkaError> {
        if self.brokers.trim().is_empty() {
            return Err(KafkaError::Config("no Kafka brokers configured".into()));
        }
        if self.group_id.trim().is_empty() {
            return Err(KafkaError::Config("empty Kafka consumer group id".into()));
        }
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            return Err(KafkaError::Config(
                "no (or an empty) Kafka topic to subscribe".into(),
            ));
        }
        if self.max_poll_interval_ms < self.session_timeout_ms {
            return Err(KafkaError::Config(format!(
                "max_poll_interval_ms ({}) must be >= session_timeout_ms ({})",
                self.max_poll_interval_ms, self.session_timeout_ms
            )));
        }
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group_id)
            .set("client.id", &self.client_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "false")
            .set("partition.assignment.strategy", "range")
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            .set(
                "heartbeat.interval.ms",
                (self.session_timeout_ms / 3).clamp(100, 3000).to_string(),
            )
            .set(
                "max.poll.interval.ms",
                self.max_poll_interval_ms.to_string(),
            )
            // Regex subscriptions discover new topics on metadata refresh (default 5 min).
            .set("topic.metadata.refresh.interval.ms", "30000")
            // Back-pressure is librdkafka's own (see `poll_loop`): every assigned partition
            // has its own queue, and with separate partition queues this limit applies per
            // partition (default 64 MiB each). A partition stops being fetched at the limit
            // and is re-checked after fetch.queue.backoff.ms (default 1000 ms: the consumer
            // idled ~1 s whenever a queue had been full).
            .set(
                "queued.max.messages.kbytes",
                PARTITION_QUEUE_KBYTES.to_string(),
            )
            .set("fetch.queue.backoff.ms", "10");
        apply_extra(&mut c, &self.extra)?;
        Ok(c)
    }
}

/// Per-partition progress, for `tributary status` and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionPosition {
    pub topic: String,
    pub partition: i32,
    /// Next offset applied by the sink (store value at assignment, then `commit_advisory`).
    pub applied_next: Option<i64>,
    /// Next offset after the last record handed out by `next_batch`.
    pub delivered_next: Option<i64>,
    /// High watermark as of the last fetch response (cached by librdkafka, no network call).
    pub high_watermark: Option<i64>,
    /// `high_watermark - applied_next` (applied_next defaults to the low watermark).
    pub lag: Option<i64>,
}

/// Result of [`KafkaSource::caught_up`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaughtUp {
    /// Settled and every assigned partition reached its target.
    pub done: bool,
    /// At least one assignment was received and no rebalance happened for the quiet period.
    pub settled: bool,
    /// Assigned partitions not done yet: `(topic, partition, applied_next, target)`;
    /// `target == None` while the end offset is not known yet.
    pub pending: Vec<(String, i32, Option<i64>, Option<i64>)>,
}

#[derive(Debug)]
struct PartState {
    epoch: u64,
    applied_next: Option<i64>,
    delivered_next: Option<i64>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<(u64, RawRecord)>,
    queued_bytes: usize,
    /// topic → partition → state, for the partitions currently assigned to this process.
    parts: HashMap<String, HashMap<i32, PartState>>,
    /// (low, end) captured when a partition was first assigned to this process.
    targets: HashMap<(String, i32), (i64, i64)>,
    /// Applied next offsets (survive revocation; used when a partition comes back).
    applied: HashMap<(String, i32), i64>,
    last_rebalance: Option<Instant>,
    last_was_assign: bool,
    assigned_once: bool,
    first_assigned: Option<Instant>,
    rebalances: u64,
    last_error: Option<RdError>,
    fatal: Option<KafkaError>,
    /// Partitions whose fetch the broker answered with OffsetOutOfRange (librdkafka's
    /// `auto.offset.reset=error` reports it): decided by the poll thread.
    out_of_range: std::collections::HashSet<(String, i32)>,
    /// The broker connection was lost (or an out-of-range error came without its
    /// partition): check every assigned partition against its log once the broker answers.
    recheck_all: bool,
    recheck_tries: u32,
    /// Every offset problem found (handled by the policy or stopping the pipeline).
    problems: Vec<OffsetProblem>,
}

impl State {
    /// Drop buffered records of partitions no longer (or differently: another epoch)
    /// assigned.
    fn drop_stale_queued(&mut self) {
        let mut bytes = self.queued_bytes;
        let parts = &self.parts;
        self.queue.retain(|(epoch, r)| {
            let keep = parts
                .get(&r.topic)
                .and_then(|m| m.get(&r.partition))
                .is_some_and(|p| p.epoch == *epoch);
            if !keep {
                bytes -= rec_bytes(r);
            }
            keep
        });
        self.queued_bytes = bytes;
    }

    fn part(&self, topic: &str, partition: i32) -> Option<&PartState> {
        self.parts.get(topic).and_then(|m| m.get(&partition))
    }
    fn assigned(&self) -> Vec<(String, i32)> {
        let mut v: Vec<(String, i32)> = self
            .parts
            .iter()
            .flat_map(|(t, m)| m.keys().map(move |p| (t.clone(), *p)))
            .collect();
        v.sort();
        v
    }
}

struct Shared {
    state: Mutex<State>,
    notify: tokio::sync::Notify,
    apply_lock: Arc<tokio::sync::Mutex<()>>,
    shutdown: AtomicBool,
    epochs: AtomicU64,
    /// Set by the error callback when the state lock was busy: see `State::recheck_all`.
    recheck_pending: AtomicBool,
    /// The consumer itself, for splitting partition queues in the rebalance callback (which
    /// only gets `&BaseConsumer`). Weak: the consumer owns this struct through its context.
    consumer: OnceLock<Weak<BaseConsumer<Ctx>>>,
    /// One queue per assigned partition. They hold strong references to the consumer, so
    /// they are dropped on revocation and when the poll loop ends (before the consumer).
    queues: Mutex<HashMap<(String, i32), PartitionQueue<Ctx>>>,
}

/// Our buffer (records taken from librdkafka, waiting for `next_batch`). Above these limits
/// the poll loop stops taking records; librdkafka's partition queues then fill up to
/// [`PARTITION_QUEUE_KBYTES`] each and their fetching stops until they drain.
///
/// Why not `pause`/`resume`: librdkafka purges a paused partition's prefetched records and,
/// after a resume, fetches again only when its broker thread next wakes up (measured here:
/// 0.3–1.1 s of an empty buffer after every resume, the Kafka sink ran at 68–86k events/s
/// instead of the ~180k its apply path sustains).
const MAX_QUEUED_RECORDS: usize = 40_000;
const MAX_QUEUED_BYTES: usize = 12 << 20;
/// librdkafka's prefetch limit per assigned partition (`queued.max.messages.kbytes`; soft:
/// checked before each fetch; it also caps librdkafka's automatic `fetch.max.bytes`).
const PARTITION_QUEUE_KBYTES: usize = 1024;

struct Ctx {
    shared: Arc<Shared>,
    store: Arc<dyn OffsetStore>,
    fallback: OffsetFallback,
    policy: OffsetPolicy,
    /// The consumer's settings, for the probe consumer that checks offsets against the log.
    probe_cfg: ClientConfig,
}

impl ClientContext for Ctx {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "librdkafka", fac, "{log_message}")
            }
            L::Warning => tracing::warn!(target: "librdkafka", fac, "{log_message}"),
            L::Notice | L::Info => tracing::info!(target: "librdkafka", fac, "{log_message}"),
            L::Debug => tracing::debug!(target: "librdkafka", fac, "{log_message}"),
        }
    }

    fn error(&self, error: RdError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, "{reason}");
        // A lost broker connection may come back to a broker that lost its log: check every
        // assigned partition against the log once the broker answers again.
        if matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure)
        ) {
            if let Ok(mut st) = self.shared.state.try_lock() {
                st.recheck_all = true;
                st.recheck_tries = 0;
            } else {
                self.shared.recheck_pending.store(true, Ordering::SeqCst);
            }
        }
    }
}

impl ConsumerContext for Ctx {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.on_assign(consumer, tpl, cooperative)
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.on_revoke(consumer, tpl, cooperative)
            }
            other => {
                let code: RDKafkaErrorCode = other.into();
                tracing::error!(%code, "kafka rebalance error: dropping the whole assignment");
                let all = consumer.assignment().unwrap_or_default();
                self.on_revoke(consumer, &all, false);
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::debug!(error = %e, "advisory offset commit to the broker failed (ignored)");
        }
    }
}

impl Ctx {
    fn on_assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList, coop: bool) {
        let parts: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        // Read the stored positions; retry with backoff (PostgreSQL may be restarting). While
        // we wait the partitions stay unassigned here; if this exceeds max.poll.interval.ms
        // librdkafka leaves the group and a healthy member takes over.
        let mut backoff = Duration::from_millis(200);
        let mut tries = 0u32;
        let offsets = loop {
            if parts.is_empty() {
                break Vec::new();
            }
            match self.store.load(&parts) {
                Ok(v) if v.len() == parts.len() => break v,
                Ok(v) => {
                    let e = KafkaError::OffsetStore {
                        message: format!(
                            "offset store returned {} offsets for {} partitions",
                            v.len(),
                            parts.len()
                        ),
                        transient: false,
                    };
                    tracing::error!(error = %e, "cannot assign partitions");
                    self.shared.state.lock().unwrap().fatal = Some(e);
                    self.shared.notify.notify_one();
                    return;
                }
                Err(e) => {
                    use tributary_model::ErrorClass;
                    // A store that gave up (it retries outages itself, bounded: PostgreSQL's
                    // within max_outage_secs) or a definite error: the pipeline stops on it.
                    if !e.is_transient() || tries >= 3 {
                        tracing::error!(error = %e, "cannot load the stored Kafka offsets");
                        self.shared.state.lock().unwrap().fatal.get_or_insert(e);
                        self.shared.notify.notify_one();
                        return;
                    }
                    tracing::warn!(error = %e, "loading stored Kafka offsets failed; retrying");
                    if self.shared.shutdown.load(Ordering::SeqCst) {
                        return;
                    }
                    tries += 1;
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        // Check every stored offset against the partition's log before fetching from it.
        let mut offsets = offsets;
        let mut stopped: std::collections::HashSet<(String, i32)> = Default::default();
        let mut reread: std::collections::HashSet<(String, i32)> = Default::default();
        if offsets.iter().any(Option::is_some) {
            let marks = self.store.load_marks(&parts).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "loading stored log marks failed; checking offsets only");
                vec![None; parts.len()]
            });
            let items: Vec<ProbeItem> = parts
                .iter()
                .zip(offsets.iter().zip(marks))
                .map(|((t, p), (s, m))| ProbeItem {
                    topic: t.clone(),
                    partition: *p,
                    stored: *s,
                    mark: m,
                })
                .collect();
            let t0 = Instant::now();
            let verdicts = probe(&self.probe_cfg, &items, PROBE_TIMEOUT);
            tracing::info!(
                partitions = items.len(),
                ms = t0.elapsed().as_millis() as u64,
                "stored offsets checked against the log"
            );
            for (i, v) in verdicts.into_iter().enumerate() {
                match v {
                    Verdict::Fits => {}
                    Verdict::Unknown => tracing::warn!(
                        topic = %items[i].topic,
                        partition = items[i].partition,
                        stored = ?items[i].stored,
                        "could not check the stored offset against the log in time; continuing \
                         (a fetch out of range is still caught)"
                    ),
                    Verdict::Problem(p) => {
                        let key = (p.topic.clone(), p.partition);
                        if self.handle_problem_unassigned(p) {
                            offsets[i] = None;
                            reread.insert(key.clone());
                            let mut st = self.shared.state.lock().unwrap();
                            st.applied.remove(&key);
                            st.targets.remove(&key);
                        } else {
                            stopped.insert(key);
                        }
                    }
                }
            }
        }
        {
            let mut st = self.shared.state.lock().unwrap();
            for ((topic, partition), stored) in parts.iter().zip(&offsets) {
                if stopped.contains(&(topic.clone(), *partition)) {
                    // The pipeline stops on it: fetch nothing of it (its records would not
                    // be buffered anyway, it is not in `parts`).
                    let _ = tpl.set_partition_offset(topic, *partition, Offset::End);
                    continue;
                }
                let start = match (stored, self.fallback) {
                    (Some(n), _) => Offset::Offset(*n),
                    _ if reread.contains(&(topic.clone(), *partition)) => Offset::Beginning,
                    (None, OffsetFallback::Earliest) => Offset::Beginning,
                    (None, OffsetFallback::BrokerCommitted) => Offset::Stored,
                };
                if let Err(e) = tpl.set_partition_offset(topic, *partition, start) {
                    tracing::error!(%topic, partition, error = %e, "cannot set start offset");
                }
                let key = (topic.clone(), *partition);
                let applied = match stored {
                    Some(n) => {
                        st.applied.insert(key.clone(), *n);
                        Some(*n)
                    }
                    None => st.applied.get(&key).copied(),
                };
                let epoch = self.shared.epochs.fetch_add(1, Ordering::SeqCst) + 1;
                st.parts.entry(topic.clone()).or_default().insert(
                    *partition,
                    PartState {
                        epoch,
                        applied_next: applied,
                        delivered_next: *stored,
                    },
                );
                tracing::info!(%topic, partition, start = ?start, "kafka partition assigned");
            }
            st.assigned_once = true;
            st.first_assigned.get_or_insert_with(Instant::now);
            st.last_was_assign = true;
            st.last_rebalance = Some(Instant::now());
            st.rebalances += 1;
        }
        // Give each partition its own queue *before* assigning it, so no record of it ever
        // reaches the consumer queue (the split outlives later assignments: librdkafka does
        // not re-forward a queue the application forwarded). Should the split fail, the
        // partition's records arrive on the consumer queue, which `poll_loop` also serves.
        match self.shared.consumer.get().and_then(Weak::upgrade) {
            Some(me) => {
                let mut queues = self.shared.queues.lock().unwrap();
                for (topic, partition) in &parts {
                    match me.split_partition_queue(topic, *partition) {
                        Some(q) => {
                            queues.insert((topic.clone(), *partition), q);
                        }
                        None => {
                            tracing::warn!(%topic, partition, "no partition queue; using the consumer queue")
                        }
                    }
                }
            }
            None => tracing::warn!("consumer handle gone; partition queues not split"),
        }
        let res = if coop {
            consumer.incremental_assign(tpl)
        } else {
            consumer.assign(tpl)
        };
        if let Err(e) = res {
            tracing::error!(error = %e, "assigning partitions failed");
            let mut queues = self.shared.queues.lock().unwrap();
            for key in &parts {
                queues.remove(key);
            }
            drop(queues);
            let mut st = self.shared.state.lock().unwrap();
            st.last_error = Some(e);
        }
        self.shared.notify.notify_one();
    }

    /// Apply the policy to a problem found before the partition is assigned. Returns true
    /// when the partition is to be re-read from the start of its log (its stored offset and
    /// mark were reset), false when the pipeline stops on it.
    fn handle_problem_unassigned(&self, p: OffsetProblem) -> bool {
        tracing::error!("{p}");
        let mut st = self.shared.state.lock().unwrap();
        st.problems.push(p.clone());
        if self.policy == OffsetPolicy::Earliest {
            drop(st);
            match self.store.reset(&p) {
                Ok(()) => {
                    tracing::error!(
                        topic = %p.topic,
                        partition = p.partition,
                        stored = p.stored,
                        "on_offset_out_of_range = earliest: re-reading the partition from the start of its log"
                    );
                    return true;
                }
                Err(e) => {
                    let e = KafkaError::OffsetStore {
                        message: format!(
                            "resetting the stored offset of {} [{}]: {e}",
                            p.topic, p.partition
                        ),
                        transient: false,
                    };
                    let mut st = self.shared.state.lock().unwrap();
                    st.fatal.get_or_insert(e);
                    self.shared.notify.notify_one();
                    return false;
                }
            }
        }
        self.store.report(&p);
        st.fatal.get_or_insert(KafkaError::OffsetOutOfRange(p));
        self.shared.notify.notify_one();
        false
    }

    fn on_revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList, coop: bool) {
        // The fence: wait for the batch being applied to commit or roll back.
        let guard = if self.shared.shutdown.load(Ordering::SeqCst) {
            // Shutting down (maybe from a Drop while the caller holds the lock): bounded wait.
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(g) = self.shared.apply_lock.clone().try_lock_owned() {
                    break Some(g);
                }
                if Instant::now() > deadline {
                    tracing::warn!("apply lock not released within 30 s during shutdown");
                    break None;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        } else {
            Some(self.shared.apply_lock.clone().blocking_lock_owned())
        };
        {
            let mut queues = self.shared.queues.lock().unwrap();
            for e in tpl.elements() {
                queues.remove(&(e.topic().to_string(), e.partition()));
            }
        }
        {
            let mut st = self.shared.state.lock().unwrap();
            let lost = consumer.assignment_lost();
            for e in tpl.elements() {
                if let Some(m) = st.parts.get_mut(e.topic()) {
                    m.remove(&e.partition());
                    if m.is_empty() {
                        st.parts.remove(e.topic());
                    }
                }
                tracing::info!(
                    topic = e.topic(),
                    partition = e.partition(),
                    lost,
                    "kafka partition revoked"
                );
            }
            // Drop buffered records of partitions no longer (or differently) assigned.
            st.drop_stale_queued();
            st.last_was_assign = false;
            st.last_rebalance = Some(Instant::now());
            st.rebalances += 1;
        }
        let res = if coop {
            consumer.incremental_unassign(tpl)
        } else {
            consumer.unassign()
        };
        if let Err(e) = res {
            tracing::error!(error = %e, "unassigning partitions failed");
        }
        drop(guard);
    }
}

/// How long a check of stored offsets against the log may take (it runs in the rebalance
/// callback and on the poll thread, both well below `max.poll.interval.ms`).
const PROBE_TIMEOUT: Duration = Duration::from_secs(4);

struct ProbeItem {
    topic: String,
    partition: i32,
    stored: Option<i64>,
    mark: Option<LogMark>,
}

#[derive(Debug)]
enum Verdict {
    /// The stored offset is in the log, and the marked record (if any) is the one applied.
    Fits,
    /// Proof that it does not fit.
    Problem(OffsetProblem),
    /// No answer in time (broker away or slow): nothing proven either way.
    Unknown,
}

/// Check stored offsets against the log with a separate, group-less consumer: fetch the
/// marked record (or, without a mark, the stored offset) of each partition. Only the broker's
/// own answers count as proof — an OffsetOutOfRange error for that fetch, a different record
/// at the marked offset, or a fetch response whose high watermark (exact, unlike tansu's
/// ListOffsets answer) is below the stored offset. No answer is `Unknown`, never a problem.
fn probe(cfg: &ClientConfig, items: &[ProbeItem], timeout: Duration) -> Vec<Verdict> {
    let mut out: Vec<Verdict> = items.iter().map(|_| Verdict::Unknown).collect();
    let mut c = cfg.clone();
    c.set(
        "group.id",
        format!("tributary-offset-check-{}", std::process::id()),
    )
    .set("enable.auto.commit", "false")
    .set("auto.offset.reset", "error")
    .set("enable.partition.eof", "true")
    .set("fetch.wait.max.ms", "100");
    let consumer: BaseConsumer = match c.create() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "offset check: cannot create the probe consumer");
            return out;
        }
    };
    let consumer = Arc::new(consumer);
    let mut tpl = TopicPartitionList::new();
    let mut queues = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let Some(at) = it.mark.map(|m| m.offset).or(it.stored) else {
            out[i] = Verdict::Fits;
            continue;
        };
        let Some(q) = consumer.split_partition_queue(&it.topic, it.partition) else {
            continue;
        };
        if tpl
            .add_partition_offset(&it.topic, it.partition, Offset::Offset(at))
            .is_err()
        {
            continue;
        }
        queues.push((i, at, q));
    }
    if queues.is_empty() {
        return out;
    }
    if let Err(e) = consumer.assign(&tpl) {
        tracing::warn!(error = %e, "offset check: cannot assign the probe consumer");
        return out;
    }
    let problem = |it: &ProbeItem, reason: String| {
        let (lo, hi) = consumer
            .fetch_watermarks(&it.topic, it.partition, Duration::from_secs(2))
            .map(|(l, h)| (Some(l), Some(h)))
            .unwrap_or((None, None));
        let (clo, chi) = probe_cached(&consumer, &it.topic, it.partition);
        Verdict::Problem(OffsetProblem {
            topic: it.topic.clone(),
            partition: it.partition,
            stored: it.stored.or(it.mark.map(|m| m.offset + 1)).unwrap_or(-1),
            log_start: clo.or(lo),
            log_end: match (chi, hi) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
            reason,
        })
    };
    let deadline = Instant::now() + timeout;
    let mut open: Vec<usize> = (0..queues.len()).collect();
    while !open.is_empty() && Instant::now() < deadline {
        let _ = consumer.poll(Duration::from_millis(20));
        open.retain(|&qi| {
            let (i, at, q) = &queues[qi];
            let it = &items[*i];
            let Some(r) = q.poll(Duration::ZERO) else {
                return true;
            };
            let v = match r {
                Ok(m) => {
                    let (_, hi) = probe_cached(&consumer, &it.topic, it.partition);
                    match it.mark {
                        Some(mark) if m.offset() == mark.offset => {
                            if LogMark::of(m.offset(), m.key(), m.payload()) != mark {
                                problem(it, format!(
                                    "the record at offset {} is not the one applied there (its key/value differ): the log was replaced",
                                    mark.offset
                                ))
                            } else {
                                match (it.stored, hi) {
                                    (Some(s), Some(h)) if s > h => problem(it, format!(
                                        "a fetch response reports the log end {h}, below the stored offset"
                                    )),
                                    _ => Verdict::Fits,
                                }
                            }
                        }
                        Some(mark) => {
                            // The marked record is gone (compacted, or deleted by retention):
                            // nothing to compare; the offset itself is in the log.
                            tracing::debug!(topic = %it.topic, partition = it.partition, mark = mark.offset, got = m.offset(), "marked record not in the log; offset check only");
                            Verdict::Fits
                        }
                        None => Verdict::Fits,
                    }
                }
                Err(RdError::PartitionEOF(_)) => {
                    // The fetch at `at` found the end of the log there.
                    match it.mark {
                        Some(mark) if *at == mark.offset => problem(
                            it,
                            format!(
                                "the log ends at {at}, but the record at offset {} was applied",
                                mark.offset
                            ),
                        ),
                        _ => Verdict::Fits,
                    }
                }
                Err(RdError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset)) => problem(
                    it,
                    format!("the broker answered OffsetOutOfRange to a fetch at offset {at}"),
                ),
                Err(e) => {
                    tracing::debug!(topic = %it.topic, partition = it.partition, error = %e, "offset check: fetch error; waiting");
                    return true;
                }
            };
            out[*i] = v;
            false
        });
    }
    drop(queues);
    out
}

fn probe_cached(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
) -> (Option<i64>, Option<i64>) {
    let Ok(t) = std::ffi::CString::new(topic) else {
        return (None, None);
    };
    let (mut lo, mut hi) = (-1i64, -1i64);
    // SAFETY: as in `cached_watermarks`.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            t.as_ptr(),
            partition,
            &mut lo,
            &mut hi,
        )
    };
    if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
        return (None, None);
    }
    ((lo >= 0).then_some(lo), (hi >= 0).then_some(hi))
}

/// On the poll thread: partitions the broker answered OffsetOutOfRange for, and — after a
/// lost broker connection — every assigned partition, checked against the log (stored
/// offsets and marks re-read from the store), and the policy applied to what does not fit.
fn check_running(consumer: &BaseConsumer<Ctx>, shared: &Shared) {
    let ctx = consumer.context();
    let (oor, all) = {
        let mut st = shared.state.lock().unwrap();
        let oor: Vec<(String, i32)> = st.out_of_range.drain().collect();
        let all = std::mem::take(&mut st.recheck_all);
        let assigned = st.assigned();
        let oor: Vec<(String, i32)> = oor.into_iter().filter(|k| assigned.contains(k)).collect();
        let all = if all { assigned } else { Vec::new() };
        (oor, all)
    };
    let parts: Vec<(String, i32)> = {
        let mut v = oor.clone();
        v.extend(all.iter().filter(|k| !oor.contains(k)).cloned());
        v
    };
    if parts.is_empty() {
        return;
    }
    let stored = match ctx.store.load(&parts) {
        Ok(v) if v.len() == parts.len() => v,
        other => {
            tracing::warn!(result = ?other.err(), "offset check: stored offsets not readable; retrying");
            let mut st = shared.state.lock().unwrap();
            st.out_of_range.extend(oor);
            st.recheck_all |= !all.is_empty();
            return;
        }
    };
    let marks = ctx
        .store
        .load_marks(&parts)
        .unwrap_or_else(|_| vec![None; parts.len()]);
    let mut problems = Vec::new();
    let mut items = Vec::new();
    let mut item_keys = Vec::new();
    for (((t, p), s), m) in parts.iter().zip(stored).zip(marks) {
        if oor.contains(&(t.clone(), *p)) {
            match s {
                // The broker's answer is the proof.
                Some(s) => {
                    let (lo, hi) = consumer
                        .fetch_watermarks(t, *p, Duration::from_secs(2))
                        .map(|(l, h)| (Some(l), Some(h)))
                        .unwrap_or((None, None));
                    problems.push(OffsetProblem {
                        topic: t.clone(),
                        partition: *p,
                        stored: s,
                        log_start: lo,
                        log_end: hi,
                        reason: "the broker answered OffsetOutOfRange to the consumer's fetch"
                            .into(),
                    });
                }
                // Nothing stored: the fallback start (a broker-committed offset) was out of
                // range; start at the beginning, as documented for that fallback.
                None => {
                    tracing::info!(topic = %t, partition = p, "no stored offset and the broker's is out of range: reading from the start");
                    let _ = consumer.seek(t, *p, Offset::Beginning, Duration::from_secs(10));
                }
            }
        } else {
            items.push(ProbeItem {
                topic: t.clone(),
                partition: *p,
                stored: s,
                mark: m,
            });
            item_keys.push((t.clone(), *p));
        }
    }
    if !items.is_empty() {
        let verdicts = probe(&ctx.probe_cfg, &items, PROBE_TIMEOUT);
        let mut unknown = false;
        for v in verdicts {
            match v {
                Verdict::Problem(p) => problems.push(p),
                Verdict::Unknown => unknown = true,
                Verdict::Fits => {}
            }
        }
        let mut st = shared.state.lock().unwrap();
        if unknown && st.recheck_tries < 30 {
            // The broker is not answering yet: try again later.
            st.recheck_tries += 1;
            st.recheck_all = true;
        } else if unknown {
            tracing::warn!("offsets not checked against the log after the broker came back (no answer); continuing");
        }
    }
    for p in problems {
        tracing::error!("{p}");
        if ctx.policy == OffsetPolicy::Stop {
            ctx.store.report(&p);
            let mut st = shared.state.lock().unwrap();
            st.problems.push(p.clone());
            st.fatal.get_or_insert(KafkaError::OffsetOutOfRange(p));
            shared.notify.notify_one();
            continue;
        }
        // Re-read from the start: fenced like a revoke (no batch of the partition is being
        // applied while its stored offset is reset and it is sought back).
        let _guard = shared.apply_lock.clone().blocking_lock_owned();
        let key = (p.topic.clone(), p.partition);
        if let Err(e) = ctx.store.reset(&p) {
            let mut st = shared.state.lock().unwrap();
            st.problems.push(p.clone());
            st.fatal.get_or_insert(KafkaError::OffsetStore {
                message: format!(
                    "resetting the stored offset of {} [{}]: {e}",
                    p.topic, p.partition
                ),
                transient: false,
            });
            shared.notify.notify_one();
            continue;
        }
        let mut st = shared.state.lock().unwrap();
        st.problems.push(p.clone());
        if st.part(&p.topic, p.partition).is_none() {
            continue;
        }
        if let Err(e) = consumer.seek(
            &p.topic,
            p.partition,
            Offset::Beginning,
            Duration::from_secs(10),
        ) {
            st.fatal.get_or_insert(KafkaError::Client(e));
            shared.notify.notify_one();
            continue;
        }
        let epoch = shared.epochs.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(ps) = st
            .parts
            .get_mut(&p.topic)
            .and_then(|m| m.get_mut(&p.partition))
        {
            ps.epoch = epoch;
            ps.applied_next = None;
            ps.delivered_next = None;
        }
        st.applied.remove(&key);
        st.targets.remove(&key);
        st.drop_stale_queued();
        tracing::error!(
            topic = %p.topic,
            partition = p.partition,
            stored = p.stored,
            "on_offset_out_of_range = earliest: re-reading the partition from the start of its log"
        );
    }
}

/// Low and high watermark as of the last fetch response for the partition (librdkafka's
/// cache, no network call); `None` before the first fetch response.
fn cached_watermarks(
    consumer: &BaseConsumer<Ctx>,
    topic: &str,
    partition: i32,
) -> (Option<i64>, Option<i64>) {
    let Ok(t) = std::ffi::CString::new(topic) else {
        return (None, None);
    };
    let (mut lo, mut hi) = (-1i64, -1i64);
    // SAFETY: valid client pointer (borrowed consumer), valid C string and out-pointers;
    // rd_kafka_get_watermark_offsets only reads cached partition state.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            t.as_ptr(),
            partition,
            &mut lo,
            &mut hi,
        )
    };
    if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
        return (None, None);
    }
    ((lo >= 0).then_some(lo), (hi >= 0).then_some(hi))
}

/// See [`KafkaSource::targets_delivered`]; `pending` are records taken from the queue but not
/// handed out yet (their offsets count as delivered).
fn targets_delivered(st: &State, pending: &[RawRecord]) -> bool {
    let mut any = false;
    for (topic, parts) in &st.parts {
        for (partition, ps) in parts {
            any = true;
            let Some((lo, end)) = st.targets.get(&(topic.clone(), *partition)) else {
                return false;
            };
            let next = pending
                .iter()
                .rev()
                .find(|r| r.partition == *partition && r.topic == *topic)
                .map(|r| r.offset + 1)
                .or(ps.delivered_next)
                .unwrap_or(*lo);
            if next < *end {
                return false;
            }
        }
    }
    any
}

fn rec_bytes(r: &RawRecord) -> usize {
    r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len()) + 64
}

/// A consumer-group member whose positions live in the sink's store. See the crate docs.
pub struct KafkaSource {
    shared: Arc<Shared>,
    consumer: std::mem::ManuallyDrop<Arc<BaseConsumer<Ctx>>>,
    thread: Option<JoinHandle<()>>,
    /// Partition → epoch of the records handed out by `next_batch`.
    last_epochs: HashMap<(String, i32), u64>,
    /// Partition → epoch of the records of the most recent `next_batch` call only.
    batch_epochs: HashMap<(String, i32), u64>,
    group_id: String,
    /// See [`KafkaSource::set_bounded`].
    bounded: bool,
}

/// The partition epochs of one [`KafkaSource::next_batch`] result, so that batch can be
/// applied after later fetches (decoding one batch ahead): see [`ApplyGuard::retain_fetched`].
#[derive(Debug, Clone, Default)]
pub struct FetchedEpochs(HashMap<(String, i32), u64>);

/// Holds the apply lock; see [`KafkaSource::begin_apply`].
pub struct ApplyGuard {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    shared: Arc<Shared>,
    epochs: HashMap<(String, i32), u64>,
}

impl ApplyGuard {
    /// Remove records whose partition was revoked (or revoked and re-assigned) since they
    /// were fetched; returns how many were removed. Call before applying.
    pub fn retain_current(&self, records: &mut Vec<RawRecord>) -> usize {
        retain_current(&self.shared, &self.epochs, records)
    }

    /// Like [`ApplyGuard::retain_current`] for records of an earlier `next_batch` call
    /// (`fetched` = [`KafkaSource::fetched_epochs`] taken right after that call): a partition
    /// revoked — or revoked and assigned back — since then loses its records.
    pub fn retain_fetched(&self, fetched: &FetchedEpochs, records: &mut Vec<RawRecord>) -> usize {
        retain_current(&self.shared, &fetched.0, records)
    }
}

fn retain_current(
    shared: &Shared,
    epochs: &HashMap<(String, i32), u64>,
    records: &mut Vec<RawRecord>,
) -> usize {
    let st = shared.state.lock().unwrap();
    let before = records.len();
    let mut cache: Option<(String, i32, bool)> = None;
    records.retain(|r| {
        if let Some((t, p, ok)) = &cache {
            if *t == r.topic && *p == r.partition {
                return *ok;
            }
        }
        let fetched = epochs.get(&(r.topic.clone(), r.partition));
        let ok = match (fetched, st.part(&r.topic, r.partition)) {
            (Some(e), Some(p)) => *e == p.epoch,
            _ => false,
        };
        cache = Some((r.topic.clone(), r.partition, ok));
        ok
    });
    before - records.len()
}

impl KafkaSource {
    /// Create the consumer, subscribe, and start the poll thread. Joining the group and the
    /// first assignment happen in the background (~3 s against tansu).
    pub fn new(cfg: ConsumerConfig, store: Arc<dyn OffsetStore>) -> Result<Self, KafkaError> {
        let mut client_cfg = cfg.client_config()?;
        // Out of range is decided here (see `OffsetPolicy`), never by librdkafka's silent
        // reset: it reports the broker's OffsetOutOfRange as an error instead.
        client_cfg.set("auto.offset.reset", "error");
        let probe_cfg = client_cfg.clone();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            notify: tokio::sync::Notify::new(),
            apply_lock: Arc::new(tokio::sync::Mutex::new(())),
            shutdown: AtomicBool::new(false),
            epochs: AtomicU64::new(0),
            recheck_pending: AtomicBool::new(false),
            consumer: OnceLock::new(),
            queues: Mutex::new(HashMap::new()),
        });
        let ctx = Ctx {
            shared: shared.clone(),
            store,
            fallback: cfg.fallback,
            policy: cfg.on_out_of_range,
            probe_cfg,
        };
        let consumer: BaseConsumer<Ctx> = client_cfg
            .create_with_context(ctx)
            .map_err(|e| crate::security::config_error(&client_cfg, e))?;
        let topics: Vec<&str> = cfg.topics.iter().map(|s| s.as_str()).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| KafkaError::Config(format!("subscribing to {topics:?}: {e}")))?;
        let consumer = Arc::new(consumer);
        let _ = shared.consumer.set(Arc::downgrade(&consumer));
        let thread = {
            let consumer = consumer.clone();
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("kafka-consumer-{}", cfg.group_id))
                .spawn(move || poll_loop(&consumer, &shared))
                .map_err(|e| KafkaError::Closed(format!("spawning consumer thread: {e}")))?
        };
        Ok(KafkaSource {
            shared,
            consumer: std::mem::ManuallyDrop::new(consumer),
            thread: Some(thread),
            last_epochs: HashMap::new(),
            batch_epochs: HashMap::new(),
            group_id: cfg.group_id,
            bounded: false,
        })
    }

    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    /// The lock the pipeline holds while applying a batch (from before it filters the batch
    /// with [`KafkaSource::retain_current`] until its transaction committed or rolled back).
    /// The revoke callback takes it, which is the fence.
    pub fn apply_lock(&self) -> Arc<tokio::sync::Mutex<()>> {
        self.shared.apply_lock.clone()
    }

    /// Take the apply lock; the guard filters the last batch with
    /// [`ApplyGuard::retain_current`]. Hold it until the PostgreSQL transaction ended.
    pub async fn begin_apply(&self) -> ApplyGuard {
        ApplyGuard {
            _guard: self.shared.apply_lock.clone().lock_owned().await,
            shared: self.shared.clone(),
            epochs: self.last_epochs.clone(),
        }
    }

    /// Like [`ApplyGuard::retain_current`], for callers holding [`KafkaSource::apply_lock`]
    /// themselves. Must be called with the apply lock held, on records from the most recent
    /// [`KafkaSource::next_batch`] calls.
    pub fn retain_current(&self, records: &mut Vec<RawRecord>) -> usize {
        retain_current(&self.shared, &self.last_epochs, records)
    }

    /// Up to `max_records` records, grouped by partition, each partition in offset order.
    /// Waits until `max_records` are available or `max_wait` elapsed (may return empty).
    /// Returns a transient error when librdkafka reported one (e.g. all brokers down) and no
    /// record is available.
    pub async fn next_batch(
        &mut self,
        max_records: usize,
        max_wait: Duration,
    ) -> Result<Vec<RawRecord>, KafkaError> {
        let deadline = tokio::time::Instant::now() + max_wait;
        let max_records = max_records.max(1);
        let mut out: Vec<RawRecord> = Vec::new();
        let mut epochs: HashMap<(String, i32), u64> = HashMap::new();
        loop {
            {
                let mut st = self.shared.state.lock().unwrap();
                if let Some(e) = st.fatal.take() {
                    return Err(e);
                }
                while out.len() < max_records {
                    let Some((epoch, rec)) = st.queue.pop_front() else {
                        break;
                    };
                    st.queued_bytes -= rec_bytes(&rec);
                    let current = st.part(&rec.topic, rec.partition).map(|p| p.epoch);
                    if current != Some(epoch) {
                        continue;
                    }
                    let key = (rec.topic.clone(), rec.partition);
                    match epochs.get(&key) {
                        Some(e) if *e != epoch => {
                            // Re-assigned while we were collecting: drop the older records.
                            out.retain(|r| !(r.topic == rec.topic && r.partition == rec.partition));
                        }
                        _ => {}
                    }
                    epochs.insert(key, epoch);
                    out.push(rec);
                }
                if out.is_empty() {
                    if let Some(e) = st.last_error.take() {
                        return Err(KafkaError::Client(e));
                    }
                } else if self.bounded && st.queue.is_empty() && targets_delivered(&st, &out) {
                    // A bounded run needs nothing past the targets: don't wait for more.
                    break;
                }
            }
            if out.len() >= max_records {
                break;
            }
            if self.thread.as_ref().is_none_or(|t| t.is_finished()) {
                if out.is_empty() {
                    return Err(KafkaError::Closed("consumer thread exited".into()));
                }
                break;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                break;
            }
            if tokio::time::timeout_at(deadline, self.shared.notify.notified())
                .await
                .is_err()
            {
                // one last drain happens on the next iteration only if time is left
                let st = self.shared.state.lock().unwrap();
                if st.queue.is_empty() {
                    break;
                }
            }
        }
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        {
            let mut st = self.shared.state.lock().unwrap();
            for r in &out {
                if let Some(p) = st
                    .parts
                    .get_mut(&r.topic)
                    .and_then(|m| m.get_mut(&r.partition))
                {
                    p.delivered_next = Some(r.offset + 1);
                }
            }
        }
        self.batch_epochs = epochs.clone();
        self.last_epochs.extend(epochs);
        Ok(out)
    }

    /// A bounded run (`--until-caught-up`): [`KafkaSource::next_batch`] returns without
    /// waiting for a full batch once it holds the last record up to every assigned
    /// partition's caught-up target.
    pub fn set_bounded(&mut self, bounded: bool) {
        self.bounded = bounded;
    }

    /// Every assigned partition has a caught-up target and `next_batch` has handed out the
    /// records up to it (nothing left to fetch for a bounded run).
    pub fn targets_delivered(&self) -> bool {
        targets_delivered(&self.shared.state.lock().unwrap(), &[])
    }

    /// The epochs of the records the last [`KafkaSource::next_batch`] returned.
    pub fn fetched_epochs(&self) -> FetchedEpochs {
        FetchedEpochs(self.batch_epochs.clone())
    }

    /// Partitions currently assigned to this process.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.shared.state.lock().unwrap().assigned()
    }

    /// When this process was first assigned partitions (the end of the initial group join).
    pub fn first_assigned(&self) -> Option<Instant> {
        self.shared.state.lock().unwrap().first_assigned
    }

    /// Records buffered here (taken from librdkafka, not handed out yet) and their bytes.
    pub fn buffered(&self) -> (usize, usize) {
        let st = self.shared.state.lock().unwrap();
        (st.queue.len(), st.queued_bytes)
    }

    /// The limits of [`KafkaSource::buffered`]: above either, nothing more is taken from
    /// librdkafka (whose own per-partition queues then stop fetching).
    pub fn buffer_limits() -> (usize, usize) {
        (MAX_QUEUED_RECORDS, MAX_QUEUED_BYTES)
    }

    /// The configured literal topics (not `^regex` ones) the broker does not have (or has
    /// without partitions). Blocking metadata request (≤ 5 s).
    pub fn missing_topics(&self, topics: &[String]) -> Result<Vec<String>, KafkaError> {
        let md = self.consumer.fetch_metadata(None, Duration::from_secs(5))?;
        let have: std::collections::HashSet<&str> = md
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .map(|t| t.name())
            .collect();
        Ok(topics
            .iter()
            .filter(|t| !t.starts_with('^') && !have.contains(t.as_str()))
            .cloned()
            .collect())
    }

    /// Partition counts of every topic the broker has (with partitions). Blocking metadata
    /// request (≤ 5 s).
    pub fn topic_partitions(&self) -> Result<HashMap<String, usize>, KafkaError> {
        let md = self.consumer.fetch_metadata(None, Duration::from_secs(5))?;
        Ok(md
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .map(|t| (t.name().to_string(), t.partitions().len()))
            .collect())
    }

    /// Every stored offset found not to fit its log so far (stopped on, or re-read per
    /// [`OffsetPolicy::Earliest`]).
    pub fn offset_problems(&self) -> Vec<OffsetProblem> {
        self.shared.state.lock().unwrap().problems.clone()
    }

    /// Number of rebalance events (assign + revoke) seen so far.
    pub fn rebalances(&self) -> u64 {
        self.shared.state.lock().unwrap().rebalances
    }

    /// Per-partition positions and lag for the assigned partitions (no network call).
    pub fn positions(&self) -> Vec<PartitionPosition> {
        let st = self.shared.state.lock().unwrap();
        let mut out = Vec::new();
        for (topic, partition) in st.assigned() {
            let p = st.part(&topic, partition).unwrap();
            let (lo, hi) = cached_watermarks(&self.consumer, &topic, partition);
            let applied = p.applied_next;
            let lag = match (hi, applied.or(lo)) {
                (Some(h), Some(a)) => Some((h - a).max(0)),
                _ => None,
            };
            out.push(PartitionPosition {
                topic,
                partition,
                applied_next: applied,
                delivered_next: p.delivered_next,
                high_watermark: hi,
                lag,
            });
        }
        out
    }

    /// `(topic, partition, lag)` for the assigned partitions whose lag is known.
    pub fn lag(&self) -> Vec<(String, i32, i64)> {
        self.positions()
            .into_iter()
            .filter_map(|p| p.lag.map(|l| (p.topic, p.partition, l)))
            .collect()
    }

    /// End offsets of `partitions`: the broker's answer to ListOffsets(latest) with
    /// `read_committed` (the last stable offset), raised to the high watermark of the last
    /// fetch response when that is larger. (tansu 0.6 answers ListOffsets with the last
    /// *batch's* base offset + 1, not the log end; the fetch response's high watermark is
    /// right.) Blocking network call (≤ 10 s per partition).
    pub fn end_offsets(&self, partitions: &[(String, i32)]) -> Result<Vec<i64>, KafkaError> {
        partitions
            .iter()
            .map(|(t, p)| {
                let (_, hi) = self
                    .consumer
                    .fetch_watermarks(t, *p, Duration::from_secs(10))?;
                let cached = cached_watermarks(&self.consumer, t, *p).1.unwrap_or(-1);
                Ok(hi.max(cached))
            })
            .collect()
    }

    /// Seek the given assigned partitions back to `stored` — the positions the offset store
    /// holds *now* — and drop every record fetched before: for after the store may have
    /// lost commits it had acknowledged (a PostgreSQL crash with `synchronous_commit = off`
    /// loses its last commits, so the stored offsets went back; going on from the fetch
    /// position would skip what was lost, forever). Records of earlier
    /// [`KafkaSource::next_batch`] calls are fenced by the partitions' new epochs
    /// ([`ApplyGuard::retain_fetched`] drops them). Partitions revoked meanwhile are skipped.
    pub fn rewind(&mut self, stored: &[((String, i32), Option<i64>)]) -> Result<(), KafkaError> {
        let fallback = self.consumer.context().fallback;
        // The state lock is held from the seek until the new epochs are set: the poll thread
        // takes records from a partition queue only under it, so no record is buffered under
        // the old epoch after the seek (librdkafka discards what it fetched before a seek).
        let mut st = self.shared.state.lock().unwrap();
        for ((topic, partition), off) in stored {
            if st.part(topic, *partition).is_none() {
                continue;
            }
            let to = match (off, fallback) {
                (Some(n), _) => Offset::Offset(*n),
                (None, _) => Offset::Beginning,
            };
            self.consumer
                .seek(topic, *partition, to, Duration::from_secs(10))
                .map_err(KafkaError::Client)?;
            let epoch = self.shared.epochs.fetch_add(1, Ordering::SeqCst) + 1;
            if let Some(ps) = st.parts.get_mut(topic).and_then(|m| m.get_mut(partition)) {
                ps.epoch = epoch;
                ps.applied_next = *off;
                ps.delivered_next = *off;
            }
            let key = (topic.clone(), *partition);
            match off {
                Some(n) => {
                    st.applied.insert(key, *n);
                }
                None => {
                    st.applied.remove(&key);
                }
            }
            tracing::info!(%topic, partition, to = ?to, "kafka partition rewound to the stored offset");
        }
        st.drop_stale_queued();
        Ok(())
    }

    /// `(topic, partition, end offset)` captured when each currently assigned partition was
    /// first assigned to this process (only those already known).
    pub fn caught_up_targets(&self) -> Vec<(String, i32, i64)> {
        let st = self.shared.state.lock().unwrap();
        st.assigned()
            .into_iter()
            .filter_map(|(t, p)| {
                let end = st.targets.get(&(t.clone(), p)).map(|x| x.1)?;
                Some((t, p, end))
            })
            .collect()
    }

    /// The `--until-caught-up` test (see the crate docs): done when the group settled (an
    /// assignment was received and no rebalance for `quiet`) and every assigned partition is
    /// done: its applied next offset reached the end offset captured at its first assignment
    /// here, or — for logs whose last offsets are transaction markers or compacted away, which
    /// never show up as records — everything delivered was applied, nothing is buffered, and
    /// librdkafka's fetch position is at or past that end offset.
    pub fn caught_up(&self, quiet: Duration) -> CaughtUp {
        // Positions are read under the state lock: the poll thread holds it from polling a
        // record (which advances the position) until the record is buffered.
        let st = self.shared.state.lock().unwrap();
        let positions: HashMap<(String, i32), i64> = self
            .consumer
            .position()
            .map(|tpl| {
                tpl.elements()
                    .iter()
                    .filter_map(|e| match e.offset() {
                        Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let settled = st.assigned_once
            && st.last_was_assign
            && st.last_rebalance.is_some_and(|t| t.elapsed() >= quiet);
        let mut pending = Vec::new();
        for (t, p) in st.assigned() {
            let ps = st.part(&t, p);
            let applied = ps.and_then(|x| x.applied_next);
            let key = (t.clone(), p);
            match st.targets.get(&key) {
                Some((lo, end)) => {
                    let a = applied.unwrap_or(*lo);
                    let done = a >= *end || {
                        let delivered = ps.and_then(|x| x.delivered_next).unwrap_or(*lo);
                        a >= delivered
                            && positions.get(&key).is_some_and(|pos| *pos >= *end)
                            && !st
                                .queue
                                .iter()
                                .any(|(_, r)| r.partition == p && r.topic == t)
                    };
                    if !done {
                        pending.push((t, p, applied, Some(*end)));
                    }
                }
                None => pending.push((t, p, applied, None)),
            }
        }
        CaughtUp {
            done: settled && pending.is_empty(),
            settled,
            pending,
        }
    }

    /// Record that `offsets` (`(topic, partition, next offset)`, i.e. a `Checkpoint::Kafka`)
    /// were committed to PostgreSQL, and commit them to the broker asynchronously
    /// (best-effort, for `kafka-consumer-groups --describe` and lag tools). Correctness never
    /// depends on the broker commit; the recorded positions drive [`KafkaSource::caught_up`].
    pub fn commit_advisory(&self, offsets: &[(String, i32, i64)]) {
        let mut tpl = TopicPartitionList::new();
        {
            let mut st = self.shared.state.lock().unwrap();
            for (t, p, next) in offsets {
                let key = (t.clone(), *p);
                let e = st.applied.entry(key).or_insert(*next);
                *e = (*e).max(*next);
                let v = *e;
                if let Some(ps) = st.parts.get_mut(t).and_then(|m| m.get_mut(p)) {
                    ps.applied_next = Some(ps.applied_next.map_or(v, |a| a.max(v)));
                    let _ = tpl.add_partition_offset(t, *p, Offset::Offset(*next));
                }
            }
        }
        if tpl.count() > 0 {
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
                tracing::debug!(error = %e, "advisory commit not queued");
            }
        }
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // SAFETY: taken exactly once, here; `self.consumer` is not used afterwards.
        let consumer = unsafe { std::mem::ManuallyDrop::take(&mut self.consumer) };
        if consumer.closed() {
            drop(consumer);
        } else {
            // rdkafka's Drop would poll until the group is left, forever if the broker is
            // gone. Leak the handle instead (shutdown only; the process usually exits next).
            tracing::warn!(
                "kafka consumer did not close within 5 s (broker unreachable?); leaking its handle"
            );
            std::mem::forget(consumer);
        }
    }
}

fn poll_loop(consumer: &BaseConsumer<Ctx>, shared: &Shared) {
    let mut last_targets_try = Instant::now() - Duration::from_secs(10);
    let mut last_check = Instant::now();
    let started = Instant::now();
    let mut warned_unassigned = false;
    let mut idle = false;
    while !shared.shutdown.load(Ordering::SeqCst) {
        if !warned_unassigned && started.elapsed() > Duration::from_secs(30) {
            if !shared.state.lock().unwrap().assigned_once {
                tracing::warn!(
                    "subscribed 30 s ago but the group coordinator assigned nothing yet \
                     (rebalance not completing; see librdkafka debug=cgrp)"
                );
            }
            warned_unassigned = true;
        }
        // 1. The consumer queue: rebalance callbacks, errors, and the records of a partition
        //    whose queue could not be split. Served every round regardless of our buffer (no
        //    pause needed: a split partition's records never arrive here — the split
        //    happens before the partition is assigned, and librdkafka does not re-forward a
        //    queue the application forwarded). Polled until it is empty or an event (a
        //    rebalance, an offset commit) was served. While idle (nothing taken last round)
        //    this is where the loop waits: records reaching a partition queue meanwhile wait
        //    ≤ 10 ms.
        let mut got = 0usize;
        let mut timeout = if idle {
            Duration::from_millis(10)
        } else {
            Duration::ZERO
        };
        loop {
            let Some(r) = consumer.poll(timeout) else {
                break;
            };
            timeout = Duration::ZERO;
            if !take(shared, r) {
                break;
            }
            got += 1;
        }
        // 2. The partition queues, while our buffer has room; a fair share each round. The
        //    state lock is held from each poll until its record is in the buffer: polling
        //    advances librdkafka's position, which `caught_up` reads under the same lock
        //    (position past the end + nothing buffered must mean nothing is in transit).
        {
            let queues = shared.queues.lock().unwrap();
            let records = shared.state.lock().unwrap().queue.len();
            let share =
                (MAX_QUEUED_RECORDS.saturating_sub(records) / queues.len().max(1)).clamp(1, 4096);
            for (key, q) in queues.iter() {
                let mut st = shared.state.lock().unwrap();
                for _ in 0..share {
                    if st.queue.len() >= MAX_QUEUED_RECORDS || st.queued_bytes >= MAX_QUEUED_BYTES {
                        break;
                    }
                    let Some(r) = q.poll(Duration::ZERO) else {
                        break;
                    };
                    if !take_into(shared, &mut st, r, Some(key)) {
                        break;
                    }
                    got += 1;
                }
            }
        }
        if got > 0 {
            shared.notify.notify_one();
        }
        idle = got == 0;
        // 3. Offsets out of range / a lost broker connection: check against the log.
        if shared.recheck_pending.swap(false, Ordering::SeqCst) {
            let mut st = shared.state.lock().unwrap();
            st.recheck_all = true;
            st.recheck_tries = 0;
        }
        if last_check.elapsed() >= Duration::from_secs(1) {
            let due = {
                let st = shared.state.lock().unwrap();
                !st.out_of_range.is_empty() || (st.recheck_all && !st.parts.is_empty())
            };
            if due {
                check_running(consumer, shared);
                last_check = Instant::now();
            }
        }
        // Capture end offsets of newly assigned partitions (outside the state lock).
        if last_targets_try.elapsed() >= Duration::from_millis(200) {
            let missing: Vec<(String, i32)> = {
                let st = shared.state.lock().unwrap();
                st.assigned()
                    .into_iter()
                    .filter(|k| !st.targets.contains_key(k))
                    .collect()
            };
            if !missing.is_empty() {
                last_targets_try = Instant::now();
                for (t, p) in missing {
                    // Wait for the first fetch response (its high watermark is exact), then
                    // also ask ListOffsets (read_committed → last stable offset).
                    let (clo, chi) = cached_watermarks(consumer, &t, p);
                    let Some(chi) = chi else { continue };
                    match consumer.fetch_watermarks(&t, p, Duration::from_secs(5)) {
                        Ok((lo, hi)) => {
                            let end = hi.max(chi);
                            let lo = clo.unwrap_or(lo).min(end);
                            tracing::debug!(topic = %t, partition = p, lo, end, "end offset captured");
                            shared
                                .state
                                .lock()
                                .unwrap()
                                .targets
                                .insert((t, p), (lo, end));
                        }
                        Err(e) => {
                            tracing::debug!(topic = %t, partition = p, error = %e, "end offset not available yet");
                            break;
                        }
                    }
                }
            }
        }
    }
    // Leave the group cleanly: serves the final revoke (fenced) before returning.
    if consumer.close_queue().is_ok() {
        let start = Instant::now();
        while !consumer.closed() && start.elapsed() < Duration::from_secs(5) {
            let _ = consumer.poll(Duration::from_millis(100));
        }
    }
    // The partition queues hold the consumer; drop them before it is.
    shared.queues.lock().unwrap().clear();
}

/// Put one polled message (or error) into our buffer. Returns false after an error (the
/// caller stops polling that queue for this round).
fn take(shared: &Shared, r: KafkaResult<rdkafka::message::BorrowedMessage<'_>>) -> bool {
    let mut st = shared.state.lock().unwrap();
    take_into(shared, &mut st, r, None)
}

/// [`take`] with the state lock held by the caller.
fn take_into(
    shared: &Shared,
    st: &mut State,
    r: KafkaResult<rdkafka::message::BorrowedMessage<'_>>,
    from: Option<&(String, i32)>,
) -> bool {
    match r {
        Ok(m) => {
            let rec = RawRecord {
                topic: m.topic().to_string(),
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(|k| k.to_vec()),
                value: m.payload().map(|v| v.to_vec()),
            };
            // Records of a partition not (or no longer) assigned here are not ours to apply.
            if let Some(epoch) = st.part(&rec.topic, rec.partition).map(|p| p.epoch) {
                st.queued_bytes += rec_bytes(&rec);
                st.queue.push_back((epoch, rec));
            }
            true
        }
        Err(RdError::PartitionEOF(_)) => true,
        Err(RdError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset)) => {
            // `auto.offset.reset=error`: the broker answered OffsetOutOfRange to a fetch.
            // librdkafka stopped fetching the partition; `check_running` decides.
            tracing::warn!(partition = ?from, "kafka fetch offset out of range");
            match from {
                Some(k) => {
                    st.out_of_range.insert(k.clone());
                }
                None => st.recheck_all = true,
            }
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "kafka consumer error");
            if matches!(e, RdError::MessageConsumptionFatal(_)) {
                st.fatal = Some(KafkaError::Client(e));
            } else {
                st.last_error = Some(e);
            }
            shared.notify.notify_one();
            false
        }
    }
}
