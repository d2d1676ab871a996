//! # tributary-apply — change events into PostgreSQL, exactly once
//!
//! Owns everything tributary writes to the warehouse: per source table a *current* table
//! (one row per source row) and a *history* table (one row per change), plus the control
//! tables `tributary.checkpoints`, `tributary.dead_letters` and `tributary.tables`.
//!
//! ## One batch = one transaction
//! [`PgSink::apply`] takes a [`Batch`] (events, dead letters and the [`Checkpoint`] covering
//! them) and commits all of it in **one** PostgreSQL transaction:
//! 1. per table: create/evolve target tables (DDL is transactional in PostgreSQL; concurrent
//!    sinks serialise DDL with an advisory transaction lock),
//! 2. binary `COPY` of the table's events into a temp staging table,
//! 3. `INSERT … SELECT … ON CONFLICT (_event_id) DO NOTHING RETURNING` into history — the
//!    events history *accepted* are marked in staging (keyed tables first try, under a
//!    savepoint, a plain `INSERT` of all staged events: when every event is new — the usual
//!    case — that is the same result without speculative insertion and the `RETURNING` join;
//!    if history's unique index refuses one, the savepoint is rolled back and the general
//!    statement runs),
//! 4. set-based upsert/delete of the last accepted event per key into current, guarded so an
//!    event older (by [`SourcePosition::order_key`]) than what the row reflects never
//!    overwrites it (keyless tables: ordered row-by-row multiset semantics — an insert adds a
//!    row, a delete removes one matching row),
//! 5. dead letters, then the checkpoint upsert, then `COMMIT`.
//!
//! Steps 2–4 have a shortcut for what an initial snapshot is made of — batches of snapshot
//! reads of keys the tables do not hold yet: two plain binary COPYs into current and history,
//! under a savepoint, falling back to the staged path whenever PostgreSQL's unique indexes
//! say a row is not new or (with SCD2) a key still has an open history version (see
//! `fast_snapshot.rs` for why the result is the same).
//!
//! ## Why this is exactly once
//! The checkpoint (Kafka next-offsets or binlog position) commits atomically with the data it
//! covers, and sources resume from the stored checkpoint; so after any crash the data and the
//! position agree. Should a source deliver something again anyway (a replay file applied
//! twice, a capture that re-published after a crash, a second consumer after a rebalance), the
//! history table's unique `_event_id` (see [`identity`]) refuses the duplicate and, because
//! step 4 only uses events history accepted, the current table is untouched too.
//!
//! ## Errors
//! [`ApplyError::is_transient`] separates outages (connection lost, serialization failure,
//! deadlock, admin shutdown: retry the same batch) from definite problems (a value that does
//! not fit its column, …). On a definite data error the batch is re-applied one event at a
//! time under savepoints inside one transaction, so exactly the offending events are
//! dead-lettered (or, with `on_error = "stop"`, the error is returned) and the rest commit
//! together with the checkpoint.

pub mod config;
mod ddl;
mod fast_snapshot;
pub mod identity;
pub mod names;
mod parallel;
pub mod pgconn;
pub mod pgtype;
mod table;
mod widen;

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use bytes::{BufMut, BytesMut};
use futures::SinkExt;
use tokio_postgres::Client;
use tracing::{debug, warn};
use tributary_model::{
    Batch, BinlogCheckpoint, ChangeEvent, Checkpoint, DeadLetter, ErrorClass, SchemaChange, TableId,
};

pub use config::{ApplyConfig, OnError};
/// Dead-letter stage of a source schema change the warehouse refused.
pub use ddl::STAGE as SCHEMA_STAGE;
pub use parallel::ParallelSink;
pub use pgconn::redact_url;
pub use pgtype::PgType;
use table::TargetTable;

/// What failed, and PostgreSQL's SQLSTATE when it reported one (the class of an error is
/// decided from the SQLSTATE, never from message text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    pub sqlstate: Option<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::ops::Deref for Failure {
    type Target = str;
    fn deref(&self) -> &str {
        &self.message
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure {
            message,
            sqlstate: None,
        }
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        message.to_string().into()
    }
}

/// Errors of the apply stage.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// PostgreSQL unreachable, connection lost, serialization failure, deadlock: retry.
    #[error("PostgreSQL unavailable: {0}")]
    Transient(Failure),
    /// A problem retrying cannot fix.
    #[error("{0}")]
    Definite(Failure),
}

impl ErrorClass for ApplyError {
    fn is_transient(&self) -> bool {
        matches!(self, ApplyError::Transient(_))
    }
}

impl ApplyError {
    pub fn is_transient(&self) -> bool {
        ErrorClass::is_transient(self)
    }

    /// PostgreSQL's SQLSTATE of the error, when it came from the server.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            ApplyError::Transient(f) | ApplyError::Definite(f) => f.sqlstate.as_deref(),
        }
    }

    /// A definite error with `message` (no SQLSTATE).
    pub fn definite(message: impl Into<String>) -> Self {
        ApplyError::Definite(Failure::from(message.into()))
    }
}

/// Classify a tokio-postgres error.
pub(crate) fn pg_err(context: &str, e: tokio_postgres::Error) -> ApplyError {
    let transient = match e.code() {
        // No SQLSTATE: the connection went away (I/O, closed, timeout) — or the client could
        // not encode what it was asked to send (e.g. a NUL byte in a statement), which no
        // retry fixes. tokio-postgres does not expose its error kind, only its text.
        None => {
            let m = e.to_string();
            e.is_closed()
                || m.starts_with("error communicating with the server")
                || m.starts_with("error connecting to server")
                || m.starts_with("timeout")
        }
        Some(c) => {
            let s = c.code();
            s.starts_with("08") // connection exception
                || s.starts_with("53") // insufficient resources
                || s.starts_with("57P") // admin shutdown, crash shutdown, cannot connect now
                || s == "40001" // serialization failure
                || s == "40P01" // deadlock
                || s == "55P03" // lock not available
        }
    };
    let detail = match e.as_db_error() {
        Some(db) => {
            let mut m = format!("{}: {}", db.code().code(), db.message());
            if let Some(d) = db.detail() {
                m.push_str(&format!(" ({d})"));
            }
            if let Some(c) = db.column() {
                m.push_str(&format!(" [column {c}]"));
            }
            m
        }
        None => e.to_string(),
    };
    let f = Failure {
        message: format!("{context}: {detail}"),
        sqlstate: e.code().map(|c| c.code().to_string()),
    };
    if transient {
        ApplyError::Transient(f)
    } else {
        ApplyError::Definite(f)
    }
}

/// What one `apply` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ApplyStats {
    /// Events accepted into history (new changes).
    pub applied: u64,
    /// Events refused as already applied (replays, re-publications).
    pub duplicates: u64,
    /// Records written to the dead-letter table.
    pub dead_lettered: u64,
    /// Of `applied`: snapshot reads written by the COPY-only fast path (`fast_snapshot.rs`).
    pub snapshot_copied: u64,
}

/// The PostgreSQL sink.
pub struct PgSink {
    client: Client,
    url: String,
    cfg: ApplyConfig,
    tables: HashMap<TableId, TargetTable>,
    /// Table renames per source table (order key, new name), from the schema-change log
    /// (`ddl.rs`, `PgSink::route`).
    table_renames: HashMap<TableId, Vec<(i64, TableId)>>,
    /// The table definitions schema-change records carried (`tableChanges`), latest per
    /// table: the types of schemaless (flattened) records' columns.
    declared: HashMap<TableId, std::sync::Arc<tributary_model::TableSchema>>,
    /// Staging tables that exist in this session (cleared on rollback), with the row count
    /// their statistics were last gathered at (0 = never).
    staging: HashMap<String, u64>,
    control_ready: bool,
    /// A transaction is open across batches (a source transaction larger than a batch).
    in_txn: bool,
    /// Parts applied in the open transaction, this one included (see `apply_table`'s
    /// staging clear).
    pub(crate) in_txn_parts: u32,
    /// Turns an event that failed in apply into dead-letter key/value bytes (the pipeline sets
    /// a Debezium encoder, so `dlq retry` can decode the record again).
    pub dead_letter_encoder: Option<DeadLetterEncoder>,
}

/// See [`PgSink::dead_letter_encoder`].
pub type DeadLetterEncoder =
    std::sync::Arc<dyn Fn(&ChangeEvent) -> (Option<Vec<u8>>, Option<Vec<u8>>) + Send + Sync>;

/// What one transaction applies: a whole [`Batch`], or one lane's share of it
/// ([`ParallelSink`]: that lane's events, and no checkpoint).
pub(crate) struct Part<'a> {
    pub pipeline: &'a str,
    pub events: Vec<&'a ChangeEvent>,
    /// Source DDL, applied at its position among `events` (see `ddl.rs`).
    pub schema_changes: &'a [SchemaChange],
    /// See [`Batch::schema_change_after`].
    pub schema_change_after: &'a [usize],
    pub dead_letters: &'a [DeadLetter],
    pub checkpoint: Option<&'a Checkpoint>,
    /// The source transaction goes on in the next part: do not commit (see
    /// [`Batch::continues`]).
    pub continues: bool,
}

impl<'a> Part<'a> {
    pub fn whole(batch: &'a Batch) -> Self {
        Part {
            pipeline: &batch.pipeline,
            events: batch.events.iter().collect(),
            schema_changes: &batch.schema_changes,
            schema_change_after: &batch.schema_change_after,
            dead_letters: &batch.dead_letters,
            checkpoint: batch.checkpoint.as_ref(),
            continues: batch.continues,
        }
    }
}

/// Connect to PostgreSQL: the one place every tributary session is opened ([`pgconn`]:
/// libpq's `sslmode`/`sslrootcert`/`sslcert`/`sslkey`, `PGPASSWORD`/`PGSSLMODE`/… and
/// `~/.pgpass`, over rustls).
///
/// Every session reads string literals the standard way whatever the server's or the
/// database's setting (`standard_conforming_strings = off` makes a backslash an escape
/// character: a record's backslash could otherwise end a literal), and keeps PostgreSQL's
/// NOTICEs (`IF NOT EXISTS` on every start) out of the log.
pub async fn connect(url: &str) -> Result<Client, ApplyError> {
    let target = pgconn::PgTarget::parse(url, &|k| std::env::var(k).ok())?;
    let client = target.connect().await?;
    client
        .batch_execute("SET standard_conforming_strings = on; SET client_min_messages = warning")
        .await
        .map_err(|e| pg_err("setting up the PostgreSQL session", e))?;
    Ok(client)
}

impl PgSink {
    /// Connect and make sure the control tables exist.
    pub async fn connect(url: &str, cfg: ApplyConfig) -> Result<PgSink, ApplyError> {
        cfg.validate().map_err(ApplyError::definite)?;
        let client = connect(url).await?;
        let mut s = PgSink {
            client,
            url: url.to_string(),
            cfg,
            tables: HashMap::new(),
            table_renames: HashMap::new(),
            declared: HashMap::new(),
            staging: HashMap::new(),
            control_ready: false,
            in_txn: false,
            in_txn_parts: 0,
            dead_letter_encoder: None,
        };
        s.ensure_control().await?;
        Ok(s)
    }

    pub fn config(&self) -> &ApplyConfig {
        &self.cfg
    }

    /// The underlying client (for status queries).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Drop the connection and connect again (after a transient error).
    pub async fn reconnect(&mut self) -> Result<(), ApplyError> {
        self.client = connect(&self.url).await?;
        self.staging.clear();
        self.tables.clear();
        self.control_ready = false;
        self.in_txn = false;
        self.ensure_control().await
    }

    async fn ensure_control(&mut self) -> Result<(), ApplyError> {
        if self.control_ready {
            return Ok(());
        }
        let cs = config::ident(&self.cfg.control_schema);
        let sc = match self.cfg.synchronous_commit.as_str() {
            v @ ("on" | "off" | "local" | "remote_write" | "remote_apply") => v,
            other => {
                return Err(ApplyError::definite(format!(
                    "synchronous_commit = {other:?}: expected on, off, local, remote_write or remote_apply"
                )))
            }
        };
        // One simple-query string = one implicit transaction. The lock is a *transaction*
        // lock: released only after that transaction committed the schema and tables, so a
        // session starting at the same moment waits and then finds them (a session-level
        // lock unlocked at the end of the string was released before the commit: concurrent
        // first starts failed with 23505 on pg_namespace).
        let sql = format!(
            "SET synchronous_commit = {sc};
             SET work_mem = '64MB';
             SELECT pg_advisory_xact_lock(hashtext('tributary:control'));
             CREATE SCHEMA IF NOT EXISTS {cs};
             CREATE TABLE IF NOT EXISTS {cs}.checkpoints (
               pipeline text NOT NULL,
               topic text NOT NULL,
               kafka_partition integer NOT NULL,
               next_offset bigint,
               position jsonb,
               updated_at timestamptz NOT NULL DEFAULT now(),
               PRIMARY KEY (pipeline, topic, kafka_partition));
             CREATE TABLE IF NOT EXISTS {cs}.dead_letters (
               id bigserial PRIMARY KEY,
               pipeline text NOT NULL,
               topic text NOT NULL,
               kafka_partition integer NOT NULL,
               kafka_offset bigint NOT NULL,
               record_key bytea,
               record_value bytea,
               stage text NOT NULL,
               reason text NOT NULL,
               created_at timestamptz NOT NULL DEFAULT now(),
               retry_count integer NOT NULL DEFAULT 0,
               last_retry_at timestamptz,
               resolved_at timestamptz);
             CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_coords
               ON {cs}.dead_letters (pipeline, topic, kafka_partition, kafka_offset);
             CREATE TABLE IF NOT EXISTS {cs}.columns (
               source text NOT NULL,
               source_column bytea NOT NULL,
               source_name text NOT NULL,
               target_column text NOT NULL,
               reason text NOT NULL,
               PRIMARY KEY (source, source_column));
             CREATE TABLE IF NOT EXISTS {cs}.tables (
               source text PRIMARY KEY,
               target_schema text NOT NULL,
               current_table text NOT NULL,
               history_table text NOT NULL,
               keyless boolean NOT NULL,
               created_at timestamptz NOT NULL DEFAULT now());
             ALTER TABLE {cs}.tables ADD COLUMN IF NOT EXISTS dropped_at timestamptz;
             ALTER TABLE {cs}.tables ADD COLUMN IF NOT EXISTS dropped_by text;
             CREATE TABLE IF NOT EXISTS {cs}.schema_changes (
               id bigserial PRIMARY KEY,
               pipeline text NOT NULL,
               source_table text NOT NULL,
               action text NOT NULL,
               kind text NOT NULL,
               old_name text,
               new_name text,
               order_key bigint NOT NULL,
               position text NOT NULL,
               ddl text NOT NULL,
               src_file text,
               src_pos bigint,
               src_gtid text,
               src_ts timestamptz,
               applied_at timestamptz NOT NULL DEFAULT now(),
               UNIQUE (source_table, action, position));
"
        );
        self.client
            .batch_execute(&sql)
            .await
            .map_err(|e| pg_err("creating control tables", e))?;
        self.control_ready = true;
        Ok(())
    }

    /// Stored Kafka next-offsets for `(topic, partition)`s of a pipeline (None = never applied).
    pub async fn load_kafka_offsets(
        &self,
        pipeline: &str,
        parts: &[(String, i32)],
    ) -> Result<Vec<Option<i64>>, ApplyError> {
        load_kafka_offsets(&self.client, &self.cfg.control_schema, pipeline, parts).await
    }

    /// Stored binlog checkpoint of a pipeline.
    pub async fn load_binlog_checkpoint(
        &self,
        pipeline: &str,
    ) -> Result<Option<BinlogCheckpoint>, ApplyError> {
        let cs = config::ident(&self.cfg.control_schema);
        let row = self
            .client
            .query_opt(
                &format!(
                    "SELECT position FROM {cs}.checkpoints WHERE pipeline = $1 AND topic = '' AND kafka_partition = -1"
                ),
                &[&pipeline],
            )
            .await
            .map_err(|e| pg_err("reading checkpoint", e))?;
        Ok(row.and_then(|r| {
            let j: Option<serde_json::Value> = r.get(0);
            BinlogCheckpoint::from_json(&j?)
        }))
    }

    /// Apply a batch in one transaction. See the crate docs. A batch that
    /// [`continues`](Batch::continues) its source transaction leaves the transaction open;
    /// the batch that ends the source transaction commits all of it with its checkpoint.
    pub async fn apply(&mut self, batch: &Batch) -> Result<ApplyStats, ApplyError> {
        if batch.restarts_txn {
            self.abandon_open_transaction().await;
        }
        self.apply_part(&Part::whole(batch)).await
    }

    /// Roll back a transaction left open by batches that continue a source transaction (the
    /// source re-reads that transaction from its start).
    pub async fn abandon_open_transaction(&mut self) {
        if self.in_txn {
            warn!("rolling back a partly applied source transaction: the source reads it again");
            self.rollback().await;
        }
    }

    /// Whether batches of an unfinished source transaction are applied but not committed.
    pub fn in_open_transaction(&self) -> bool {
        self.in_txn
    }

    pub(crate) async fn apply_part(&mut self, batch: &Part<'_>) -> Result<ApplyStats, ApplyError> {
        self.ensure_control().await?;
        let started = Instant::now();
        // A part that starts a transaction is undone with ROLLBACK on a definite error; one
        // that continues an open transaction (earlier parts of the same source transaction
        // are in it and no longer in memory) is undone alone, with a savepoint.
        let continuing = self.in_txn;
        self.in_txn_parts = if continuing { self.in_txn_parts + 1 } else { 1 };
        let opened = if continuing {
            self.savepoint("tributary_part").await
        } else {
            self.begin().await
        };
        if let Err(e) = opened {
            self.rollback().await;
            return Err(e);
        }
        let res = self.apply_once(batch, false).await;
        let res = match res {
            Err(ApplyError::Definite(msg)) if !batch.events.is_empty() => {
                let undone = if continuing {
                    let r = self.end_savepoint("tributary_part", false).await;
                    // DDL of the undone part is gone too.
                    self.staging.clear();
                    self.tables.clear();
                    r
                } else {
                    self.rollback().await;
                    Ok(())
                };
                if self.cfg.on_error == OnError::Stop && batch.events.len() == 1 || undone.is_err()
                {
                    self.rollback().await;
                    return Err(undone.err().unwrap_or(ApplyError::Definite(msg)));
                }
                warn!(
                    "batch of {} events failed ({msg}); re-applying one event at a time to isolate the bad ones",
                    batch.events.len()
                );
                match if continuing {
                    Ok(())
                } else {
                    self.begin().await
                } {
                    Ok(()) => self.apply_once(batch, true).await,
                    Err(e) => Err(e),
                }
            }
            Ok(s) if continuing && self.in_txn => {
                self.end_savepoint("tributary_part", true).await.map(|()| s)
            }
            other => other,
        };
        if res.is_err() {
            self.rollback().await;
        }
        let stats = res?;
        debug!(
            events = batch.events.len(),
            applied = stats.applied,
            duplicates = stats.duplicates,
            dead = stats.dead_lettered,
            ms = started.elapsed().as_millis() as u64,
            "batch committed"
        );
        Ok(stats)
    }

    /// Open savepoint `name` (a part of the transaction that can be undone alone).
    pub(crate) async fn savepoint(&self, name: &str) -> Result<(), ApplyError> {
        self.client
            .batch_execute(&format!("SAVEPOINT {name}"))
            .await
            .map_err(|e| pg_err("SAVEPOINT", e))
    }

    /// End savepoint `name`: keep its work, or undo it (the transaction goes on either way).
    pub(crate) async fn end_savepoint(&self, name: &str, keep: bool) -> Result<(), ApplyError> {
        let sql = if keep {
            format!("RELEASE SAVEPOINT {name}")
        } else {
            format!("ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}")
        };
        self.client
            .batch_execute(&sql)
            .await
            .map_err(|e| pg_err("ending savepoint", e))
    }

    async fn begin(&mut self) -> Result<(), ApplyError> {
        self.client
            .batch_execute("BEGIN")
            .await
            .map_err(|e| pg_err("BEGIN", e))?;
        self.in_txn = true;
        Ok(())
    }

    async fn rollback(&mut self) {
        self.in_txn = false;
        let _ = self.client.batch_execute("ROLLBACK").await;
        self.staging.clear();
        // Table shapes may have been evolved inside the rolled-back transaction.
        self.tables.clear();
    }

    /// Apply a part inside the open transaction (`BEGIN` or a savepoint done by the caller),
    /// then its dead letters and checkpoint, then `COMMIT` unless the part continues.
    async fn apply_once(
        &mut self,
        batch: &Part<'_>,
        one_by_one: bool,
    ) -> Result<ApplyStats, ApplyError> {
        let mut stats = ApplyStats::default();
        let mut dead: Vec<DeadLetter> = batch.dead_letters.to_vec();
        if batch.schema_changes.is_empty() {
            self.apply_events(&batch.events, one_by_one, &mut stats, &mut dead)
                .await?;
        } else {
            // Source DDL at its place in the change order: the events before it, then it,
            // then the next stretch (stream order kept inside each stretch). The order is
            // the source position when every record has one, else the order of arrival
            // (records without positions: ExtractNewRecordState's flattened form).
            let positioned = batch.events.iter().all(|e| !e.source.file.is_empty())
                && batch
                    .schema_changes
                    .iter()
                    .all(|sc| !sc.source.file.is_empty());
            let mut ddl: Vec<(usize, &SchemaChange)> = batch
                .schema_changes
                .iter()
                .enumerate()
                .map(|(i, sc)| (batch.schema_change_after.get(i).copied().unwrap_or(0), sc))
                .collect();
            if positioned {
                ddl.sort_by_key(|(_, sc)| sc.source.order_key());
            } else {
                ddl.sort_by_key(|(after, _)| *after);
            }
            let mut stretches: Vec<Vec<&ChangeEvent>> = vec![Vec::new(); ddl.len() + 1];
            for (n, ev) in batch.events.iter().enumerate() {
                let i = if positioned {
                    let k = ev.source.order_key();
                    ddl.partition_point(|(_, sc)| sc.source.order_key() < k)
                } else {
                    ddl.partition_point(|(after, _)| *after <= n)
                };
                stretches[i].push(*ev);
            }
            let ddl: Vec<&SchemaChange> = ddl.into_iter().map(|(_, sc)| sc).collect();
            for (i, events) in stretches.iter().enumerate() {
                self.apply_events(events, one_by_one, &mut stats, &mut dead)
                    .await?;
                if let Some(sc) = ddl.get(i) {
                    self.apply_schema_change(batch.pipeline, sc, &mut dead)
                        .await?;
                }
            }
        }
        if !dead.is_empty() && self.cfg.on_error == OnError::Stop {
            let d = &dead[0];
            return Err(ApplyError::definite(format!(
                "refusing {}[{}]@{}: {} ({}) — on_error = \"stop\"",
                d.topic, d.partition, d.offset, d.reason, d.stage
            )));
        }
        stats.dead_lettered = self.write_dead_letters(batch.pipeline, &dead).await?;
        if let Some(Checkpoint::Binlog(b)) = batch.checkpoint {
            // A re-snapshot completed these tables: rows it did not read are gone (table.rs).
            for tid in &b.tables_snapshotted {
                self.reconcile_snapshot(tid, b).await?;
            }
        }
        if let Some(cp) = batch.checkpoint {
            self.write_checkpoint(batch.pipeline, cp).await?;
        }
        if !batch.continues {
            self.in_txn = false;
            self.client
                .batch_execute("COMMIT")
                .await
                .map_err(|e| pg_err("COMMIT", e))?;
        }
        Ok(stats)
    }

    /// Apply events table by table (one stretch of a batch, inside its transaction).
    async fn apply_events(
        &mut self,
        events: &[&ChangeEvent],
        one_by_one: bool,
        stats: &mut ApplyStats,
        dead: &mut Vec<DeadLetter>,
    ) -> Result<(), ApplyError> {
        // Group by table (a table renamed since an event: its new name, see `route`),
        // keeping stream order inside each table.
        let mut by_source: BTreeMap<&TableId, Vec<&ChangeEvent>> = BTreeMap::new();
        for ev in events {
            by_source.entry(&ev.schema.id).or_default().push(*ev);
        }
        let mut by_table: BTreeMap<TableId, Vec<&ChangeEvent>> = BTreeMap::new();
        for (tid, evs) in by_source {
            if !self.renamed_since(tid).await? {
                by_table.entry(tid.clone()).or_default().extend(evs);
                continue;
            }
            for ev in evs {
                let to = self.route(tid, ev).await?;
                by_table.entry(to).or_default().push(ev);
            }
        }
        for (tid, events) in by_table.iter() {
            // A table that cannot be created or evolved (any definite DDL error) does not
            // stop the others: its events are dead-lettered with the reason and the
            // statement, and a later `dlq retry` (after fixing the cause) applies them.
            if let Err(reason) = self.ensure_table_or_refuse(tid, events).await? {
                if self.cfg.on_error == OnError::Stop {
                    return Err(ApplyError::Definite(reason));
                }
                for ev in events {
                    dead.push(self.dead_letter(ev, "ddl", &reason));
                }
                continue;
            }
            if !one_by_one {
                let s = self.apply_table(tid, events, dead).await?;
                stats.applied += s.applied;
                stats.duplicates += s.duplicates;
                stats.snapshot_copied += s.snapshot_copied;
            } else {
                for (i, ev) in events.iter().enumerate() {
                    self.savepoint("one_event").await?;
                    match self.apply_table(tid, &[*ev], dead).await {
                        Ok(s) => {
                            stats.applied += s.applied;
                            stats.duplicates += s.duplicates;
                            stats.snapshot_copied += s.snapshot_copied;
                            self.end_savepoint("one_event", true).await?;
                        }
                        Err(ApplyError::Definite(reason)) => {
                            self.end_savepoint("one_event", false).await?;
                            // The staging table may have been created in the rolled-back part.
                            self.staging.clear();
                            if self.cfg.on_error == OnError::Stop {
                                return Err(ApplyError::definite(format!(
                                    "{} event {} of batch: {reason}",
                                    tid, i
                                )));
                            }
                            dead.push(self.dead_letter(ev, "apply", &reason));
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(())
    }

    /// Ensure `tid`'s target tables under a savepoint: `Ok(Err(reason))` when a definite
    /// error refused them (the savepoint is rolled back, the transaction goes on).
    async fn ensure_table_or_refuse(
        &mut self,
        tid: &TableId,
        events: &[&ChangeEvent],
    ) -> Result<Result<(), Failure>, ApplyError> {
        if !self.needs_ddl_check(tid, events) {
            return Ok(Ok(()));
        }
        self.savepoint("tributary_ddl").await?;
        match self.ensure_table(tid, events).await {
            Ok(()) => {
                self.end_savepoint("tributary_ddl", true).await?;
                Ok(Ok(()))
            }
            Err(ApplyError::Definite(reason)) => {
                self.end_savepoint("tributary_ddl", false).await?;
                // Whatever this table's rolled-back DDL did is gone; forget it.
                self.tables.remove(tid);
                self.staging.clear();
                warn!("{tid}: warehouse tables refused ({reason}); its records are dead-lettered");
                Ok(Err(Failure {
                    message: format!(
                        "{tid}: cannot create or evolve the warehouse tables: {}",
                        reason.message
                    ),
                    sqlstate: reason.sqlstate,
                }))
            }
            Err(e) => Err(e),
        }
    }

    /// A dead letter for an event that failed at `stage`, carrying the event re-encoded as a
    /// Debezium record (key and value) so `dlq retry` can apply it again.
    pub(crate) fn dead_letter(&self, ev: &ChangeEvent, stage: &str, reason: &str) -> DeadLetter {
        let mut dl = dead_letter_for(ev, stage, reason);
        if let Some(enc) = &self.dead_letter_encoder {
            let (k, v) = enc(ev);
            dl.key = k;
            dl.value = v;
        }
        dl
    }

    async fn write_dead_letters(
        &self,
        pipeline: &str,
        dead: &[DeadLetter],
    ) -> Result<u64, ApplyError> {
        if dead.is_empty() {
            return Ok(0);
        }
        let cs = config::ident(&self.cfg.control_schema);
        let stmt = self
            .client
            .prepare(&format!(
                "INSERT INTO {cs}.dead_letters (pipeline, topic, kafka_partition, kafka_offset, record_key, record_value, stage, reason)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (pipeline, topic, kafka_partition, kafka_offset)
                 DO UPDATE SET reason = EXCLUDED.reason, stage = EXCLUDED.stage,
                   retry_count = {cs}.dead_letters.retry_count + 1, last_retry_at = now(),
                   resolved_at = NULL"
            ))
            .await
            .map_err(|e| pg_err("preparing dead-letter insert", e))?;
        for d in dead {
            warn!(
                topic = %d.topic, partition = d.partition, offset = d.offset, stage = %d.stage,
                "dead-lettered: {}", d.reason
            );
            // Texts from input must not make the dead letter itself unstorable (PostgreSQL
            // text cannot hold NUL): they are stored printable.
            let (topic, stage, reason) = (
                names::printable(&d.topic),
                names::printable(&d.stage),
                names::printable(&d.reason),
            );
            self.client
                .execute(
                    &stmt,
                    &[
                        &pipeline,
                        &topic,
                        &d.partition,
                        &d.offset,
                        &d.key,
                        &d.value,
                        &stage,
                        &reason,
                    ],
                )
                .await
                .map_err(|e| pg_err("writing dead letter", e))?;
        }
        Ok(dead.len() as u64)
    }

    pub(crate) async fn write_checkpoint(
        &self,
        pipeline: &str,
        cp: &Checkpoint,
    ) -> Result<(), ApplyError> {
        let cs = config::ident(&self.cfg.control_schema);
        match cp {
            Checkpoint::Kafka(offsets) => {
                if offsets.is_empty() {
                    return Ok(());
                }
                let topics: Vec<&str> = offsets.iter().map(|o| o.0.as_str()).collect();
                let parts: Vec<i32> = offsets.iter().map(|o| o.1).collect();
                let next: Vec<i64> = offsets.iter().map(|o| o.2).collect();
                self.client
                    .execute(
                        &format!(
                            "INSERT INTO {cs}.checkpoints (pipeline, topic, kafka_partition, next_offset)
                             SELECT $1, t, p, o FROM unnest($2::text[], $3::int[], $4::bigint[]) AS u(t, p, o)
                             ON CONFLICT (pipeline, topic, kafka_partition) DO UPDATE
                             SET next_offset = GREATEST({cs}.checkpoints.next_offset, EXCLUDED.next_offset),
                                 updated_at = now()"
                        ),
                        &[&pipeline, &topics, &parts, &next],
                    )
                    .await
                    .map_err(|e| pg_err("writing Kafka checkpoint", e))?;
            }
            Checkpoint::Binlog(b) => {
                let pos = b.to_json();
                self.client
                    .execute(
                        &format!(
                            "INSERT INTO {cs}.checkpoints (pipeline, topic, kafka_partition, position)
                             VALUES ($1, '', -1, $2)
                             ON CONFLICT (pipeline, topic, kafka_partition) DO UPDATE
                             SET position = EXCLUDED.position, updated_at = now()"
                        ),
                        &[&pipeline, &pos],
                    )
                    .await
                    .map_err(|e| pg_err("writing binlog checkpoint", e))?;
            }
        }
        Ok(())
    }

    /// Remove a table from the in-memory cache (after out-of-band DDL).
    pub fn forget_tables(&mut self) {
        self.tables.clear();
        self.staging.clear();
    }
}

/// Read stored Kafka next-offsets (shared with the consumer's offset store).
pub async fn load_kafka_offsets(
    client: &Client,
    control_schema: &str,
    pipeline: &str,
    parts: &[(String, i32)],
) -> Result<Vec<Option<i64>>, ApplyError> {
    let cs = config::ident(control_schema);
    let rows = client
        .query(
            &format!(
                "SELECT topic, kafka_partition, next_offset FROM {cs}.checkpoints WHERE pipeline = $1 AND kafka_partition >= 0"
            ),
            &[&pipeline],
        )
        .await
        .map_err(|e| pg_err("reading Kafka checkpoints", e))?;
    let stored: HashMap<(String, i32), i64> = rows
        .iter()
        .filter_map(|r| {
            let o: Option<i64> = r.get(2);
            Some(((r.get::<_, String>(0), r.get::<_, i32>(1)), o?))
        })
        .collect();
    Ok(parts
        .iter()
        .map(|(t, p)| stored.get(&(t.clone(), *p)).copied())
        .collect())
}

/// A dead letter for an event that failed in apply (direct mode has no Kafka coordinates:
/// the topic is the source table and the offset the source order key).
pub fn dead_letter_for(ev: &ChangeEvent, stage: &str, reason: &str) -> DeadLetter {
    match &ev.kafka {
        Some(k) => DeadLetter {
            topic: k.topic.clone(),
            partition: k.partition,
            offset: k.offset,
            key: None,
            value: None,
            stage: stage.into(),
            reason: reason.into(),
        },
        // One (topic, partition, offset) per change: the event identity folded to 63 bits
        // (positions and row numbers alone collide: a snapshot row 1000 and the next
        // position's first row once did).
        None => DeadLetter {
            topic: format!("{}.{}", ev.source.name, ev.schema.id),
            partition: -1,
            offset: (xxhash_rust::xxh3::xxh3_64(&identity::event_id(ev)) >> 1) as i64,
            key: None,
            value: None,
            stage: stage.into(),
            reason: reason.into(),
        },
    }
}

/// Write a COPY BINARY stream to PostgreSQL.
pub(crate) async fn copy_in(client: &Client, sql: &str, data: BytesMut) -> Result<u64, ApplyError> {
    let sink = client
        .copy_in::<_, bytes::Bytes>(sql)
        .await
        .map_err(|e| pg_err("starting COPY", e))?;
    futures::pin_mut!(sink);
    sink.send(data.freeze())
        .await
        .map_err(|e| pg_err("sending COPY data", e))?;
    sink.finish().await.map_err(|e| pg_err("COPY", e))
}

/// Header of a binary COPY stream.
pub(crate) fn copy_header(buf: &mut BytesMut) {
    buf.put_slice(b"PGCOPY\n\xff\r\n\0");
    buf.put_i32(0);
    buf.put_i32(0);
}

pub(crate) fn copy_trailer(buf: &mut BytesMut) {
    buf.put_i16(-1);
}

pub use table::TableStats;

/// What a pipeline applies batches to: one connection ([`PgSink`], direct mode) or several
/// ([`ParallelSink`], Kafka and replay). The retry loop of the binary is written once
/// against it.
#[allow(async_fn_in_trait)]
pub trait Sink {
    async fn apply(&mut self, batch: &Batch) -> Result<ApplyStats, ApplyError>;
    async fn reconnect(&mut self) -> Result<(), ApplyError>;
}

impl Sink for PgSink {
    async fn apply(&mut self, batch: &Batch) -> Result<ApplyStats, ApplyError> {
        PgSink::apply(self, batch).await
    }
    async fn reconnect(&mut self) -> Result<(), ApplyError> {
        PgSink::reconnect(self).await
    }
}

impl Sink for ParallelSink {
    async fn apply(&mut self, batch: &Batch) -> Result<ApplyStats, ApplyError> {
        ParallelSink::apply(self, batch).await
    }
    async fn reconnect(&mut self) -> Result<(), ApplyError> {
        ParallelSink::reconnect(self).await
    }
}
