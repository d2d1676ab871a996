//! # Parallel apply: one batch over several PostgreSQL connections
//!
//! One connection is one PostgreSQL backend, i.e. one CPU core of the warehouse: the
//! set-based statements of a 20k-event batch keep that core busy while the others idle.
//! [`ParallelSink`] owns `[sink] connections` [`PgSink`]s ("lanes") and splits a batch of
//! Kafka records by the *target* primary key of each event: all events of one current-table
//! row go to the same lane, a keyless table's events all go to one lane. The lanes apply their
//! shares concurrently, each in its own transaction, and the batch's checkpoint is written
//! only after every lane has committed, in one more (single-statement) transaction.
//!
//! ## Why this is still exactly once
//! * **Order per row.** Every statement that reads or writes a current row, its SCD2
//!   versions or its position guard is keyed by that row's key; one key is handled by one
//!   lane per batch, and batch N+1 starts only after every lane of batch N committed. So each
//!   row sees its changes in stream order, as with one connection. Lanes never touch the same
//!   current row, so they cannot deadlock on rows; history inserts of distinct event ids do
//!   not conflict.
//! * **Crash between lane commits.** The checkpoint still covers only fully applied batches.
//!   A crash after some lanes committed (or an outage that made one lane fail) leaves the
//!   previous checkpoint in place; the batch is read again and every event a lane had
//!   committed is refused by history's unique `_event_id` — and current only applies what
//!   history accepted (see the crate docs), so those events change nothing. The events of the
//!   lanes that had not committed are applied normally. The test
//!   `tests/parallel.rs` makes one lane fail after the other committed and checks that the
//!   checkpoint did not move and a re-run applies the rest exactly once.
//! * **DDL and new schemas.** A batch that needs DDL, a catalog read or a schema this process
//!   has not mapped yet is applied by lane 0 alone, in one transaction with its checkpoint,
//!   exactly like [`PgSink::apply`]; only batches whose tables are already known are split.
//!   Small batches (under [`MIN_SPLIT`] events), direct mode's binlog checkpoints (a source
//!   transaction must never be half visible) and sinks with `on_error = "stop"` (a failed lane
//!   would leave the other lanes' share visible while the pipeline stands still) are never
//!   split either.
//!
//! What changes with lanes: a batch's data becomes visible lane by lane (readers can see part
//! of a batch for milliseconds; after an outage that failed one lane, until the retry), and
//! after an outage the events a lane had already committed are counted as duplicates when the
//! batch is retried (and the batch's dead letters, written by lane 0, are upserted again:
//! their `retry_count` goes up by one).

use futures::future::join_all;
use tributary_model::{Batch, Checkpoint};

use crate::{ApplyConfig, ApplyError, ApplyStats, DeadLetterEncoder, Part, PgSink};

/// Batches with fewer events are applied on one connection (splitting costs two extra
/// commits; it pays off only when the statements, not the round trips, dominate).
pub const MIN_SPLIT: usize = 1_000;

/// The PostgreSQL sink of the Kafka consumer and `replay`: see the module docs.
pub struct ParallelSink {
    lanes: Vec<PgSink>,
    /// How many connections the last `apply` used (1 = not split).
    last_split: usize,
}

impl ParallelSink {
    /// Connect `cfg.connections` sessions (at least one).
    pub async fn connect(url: &str, cfg: ApplyConfig) -> Result<ParallelSink, ApplyError> {
        let n = cfg.connections.clamp(1, 64);
        let mut lanes = Vec::with_capacity(n);
        for _ in 0..n {
            lanes.push(PgSink::connect(url, cfg.clone()).await?);
        }
        Ok(ParallelSink {
            lanes,
            last_split: 0,
        })
    }

    pub fn config(&self) -> &ApplyConfig {
        self.lanes[0].config()
    }

    pub fn set_dead_letter_encoder(&mut self, enc: DeadLetterEncoder) {
        for l in &mut self.lanes {
            l.dead_letter_encoder = Some(enc.clone());
        }
    }

    /// How many connections the last [`ParallelSink::apply`] spread its events over (1 when
    /// it was applied in one transaction).
    pub fn last_split(&self) -> usize {
        self.last_split
    }

    /// Drop every connection and connect again (after a transient error).
    pub async fn reconnect(&mut self) -> Result<(), ApplyError> {
        for l in &mut self.lanes {
            l.reconnect().await?;
        }
        Ok(())
    }

    /// Stored Kafka next-offsets (see [`PgSink::load_kafka_offsets`]).
    pub async fn load_kafka_offsets(
        &self,
        pipeline: &str,
        parts: &[(String, i32)],
    ) -> Result<Vec<Option<i64>>, ApplyError> {
        self.lanes[0].load_kafka_offsets(pipeline, parts).await
    }

    /// Apply a batch: split over the lanes when it can be (module docs), else in one
    /// transaction on the first connection.
    pub async fn apply(&mut self, batch: &Batch) -> Result<ApplyStats, ApplyError> {
        let started = std::time::Instant::now();
        let n = self.lanes.len();
        // With on_error = "stop" a failing lane must not leave the other lanes' changes
        // committed while the pipeline stands still: such batches stay in one transaction.
        let splittable = n > 1
            && !batch.continues
            && !self.lanes[0].in_open_transaction()
            && self.config().on_error != crate::OnError::Stop
            && batch.events.len() >= MIN_SPLIT
            // DDL is applied at its position among the events: one transaction, in order.
            && batch.schema_changes.is_empty()
            && matches!(batch.checkpoint, None | Some(Checkpoint::Kafka(_)));
        let assignment = if splittable {
            self.lanes[0].lanes_for(&batch.events, n)
        } else {
            None
        };
        let Some(assignment) = assignment else {
            self.last_split = 1;
            return self.lanes[0].apply(batch).await;
        };
        let mut parts: Vec<Part> = (0..n)
            .map(|i| Part {
                pipeline: &batch.pipeline,
                events: Vec::with_capacity(batch.events.len() / n + 64),
                schema_changes: &[],
                schema_change_after: &[],
                dead_letters: if i == 0 { &batch.dead_letters } else { &[] },
                checkpoint: None,
                continues: false,
            })
            .collect();
        for (ev, &lane) in batch.events.iter().zip(&assignment) {
            parts[lane as usize].events.push(ev);
        }
        self.last_split = parts.iter().filter(|p| !p.events.is_empty()).count();
        let split_ms = started.elapsed().as_millis() as u64;
        let results = run_lanes(&mut self.lanes, &parts).await;
        let mut stats = ApplyStats::default();
        let mut failure: Option<ApplyError> = None;
        for r in results {
            match r {
                Ok(s) => {
                    stats.applied += s.applied;
                    stats.duplicates += s.duplicates;
                    stats.dead_lettered += s.dead_lettered;
                    stats.snapshot_copied += s.snapshot_copied;
                }
                // A definite error wins: it stops the pipeline, retrying would not help.
                Err(e) => match &failure {
                    Some(ApplyError::Definite(_)) => {}
                    _ => failure = Some(e),
                },
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        // Every lane committed: now the batch is applied as a whole.
        if let Some(cp) = &batch.checkpoint {
            self.lanes[0].write_checkpoint(&batch.pipeline, cp).await?;
        }
        tracing::debug!(
            events = batch.events.len(),
            lanes = self.last_split,
            split_ms,
            ms = started.elapsed().as_millis() as u64,
            "split batch committed"
        );
        Ok(stats)
    }
}

/// Apply each lane's part on its connection, concurrently (interleaved futures on this task:
/// the CPU work per lane is small next to PostgreSQL's, measured no faster on threads).
async fn run_lanes(
    lanes: &mut [PgSink],
    parts: &[Part<'_>],
) -> Vec<Result<ApplyStats, ApplyError>> {
    join_all(lanes.iter_mut().zip(parts).map(|(lane, part)| async move {
        if part.events.is_empty() && part.dead_letters.is_empty() {
            Ok(ApplyStats::default())
        } else {
            lane.apply_part(part).await
        }
    }))
    .await
}
