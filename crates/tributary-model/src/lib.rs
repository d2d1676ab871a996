//! # tributary-model — the one typed change event every stage speaks
//!
//! Data flow: `capture` (binlog) or `codec` (Debezium JSON) **produce** [`ChangeEvent`]s;
//! `codec` can also **encode** them back to Debezium JSON; `apply` **consumes** them into
//! PostgreSQL. Nothing in this crate does I/O.
//!
//! ## Why the model looks like this
//! * A row image is a `Vec<Value>` aligned with a shared [`TableSchema`] (an `Arc`), not a map:
//!   one allocation per image, column metadata stored once per table version, not per event.
//! * [`Value`] is *source-typed and lossless*: an exact decimal stays a decimal string, a
//!   `BIGINT UNSIGNED` stays `u64`, a MySQL `TIME` is signed microseconds (it ranges over
//!   ±838 hours), `DATETIME` (no zone) and `TIMESTAMP` (UTC instant) are different variants.
//!   Encoding choices (Debezium's ms vs µs, base64 decimals, …) belong to the codec; target
//!   types (PostgreSQL `numeric`, `interval`, …) belong to apply.
//! * [`Value::Unresolved`] exists for schemaless input (Debezium `schemas.enable=false`, the
//!   ExtractNewRecordState "flattened" form): the JSON value is kept as received and is turned
//!   into a typed value only once a type is known (from an existing target column), by
//!   `tributary_codec::resolve`. Nothing is guessed silently.
//! * [`SourcePosition`] identifies where a change came from. `(file, pos, row)` plus the
//!   event's op and a content hash is the *dedupe identity* stored (unique) in history tables;
//!   [`SourcePosition::order_key`] is the monotone "newer than" order used by the stale-update
//!   guard of current tables. See those items for the exact guarantees.
//! * Binlog positions are only comparable inside one **epoch**: one numbering of one server's
//!   binlog. `RESET MASTER` / `RESET BINARY LOGS AND GTIDS`, a failover to another server or a
//!   new `log_bin` basename start a new numbering in which `bin.000001:4` comes *after*
//!   everything before it. Capture detects that (see `tributary-capture`'s stream docs) and
//!   counts epochs: [`SourcePosition::epoch`] / [`BinlogCheckpoint::epoch`], 0 for the first
//!   numbering (and for every position stored before epochs existed: the encoding below is
//!   unchanged for epoch 0, so existing current tables stay valid without a migration). The
//!   epoch is folded into the top bits of [`SourcePosition::order_key`], so a new epoch's
//!   positions are always newer than the old epoch's and never compared numerically with them.
//! * [`Checkpoint`] is what a batch covers (Kafka offsets or a binlog position). Apply commits
//!   it in the *same* PostgreSQL transaction as the data: that is the whole exactly-once story.

pub mod ddl;

use std::fmt;
use std::sync::Arc;

/// A source table, `<database>.<table>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableId {
    pub db: String,
    pub table: String,
}

impl TableId {
    pub fn new(db: impl Into<String>, table: impl Into<String>) -> Self {
        TableId {
            db: db.into(),
            table: table.into(),
        }
    }
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.db, self.table)
    }
}

/// Why the table selection (`databases`, `include_tables`, `exclude_tables`: empty lists
/// select everything) leaves out `t`; `None` when it is selected. One rule for what capture
/// reads and what a sink applies.
pub fn table_selection_refusal(
    databases: &[String],
    include_tables: &[String],
    exclude_tables: &[String],
    t: &TableId,
) -> Option<String> {
    let full = t.to_string();
    if !databases.is_empty() && !databases.iter().any(|d| *d == t.db) {
        return Some(format!(
            "database {:?} is not in the configured databases {databases:?}",
            t.db
        ));
    }
    if !include_tables.is_empty() && !include_tables.iter().any(|x| *x == full) {
        return Some(format!(
            "table {full} is not in the configured include_tables"
        ));
    }
    if exclude_tables.iter().any(|x| *x == full) {
        return Some(format!("table {full} is in exclude_tables"));
    }
    None
}

/// The source (MySQL) type family of a column. Enough to pick a Debezium encoding and a
/// PostgreSQL type without losing information.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnKind {
    Bool,
    /// Signed integer held in `bits` (8, 16, 24, 32, 64 for MySQL TINYINT..BIGINT).
    Int {
        bits: u8,
        unsigned: bool,
    },
    Float,
    Double,
    /// Exact decimal. `precision`/`scale` are `None` when unknown (VariableScaleDecimal).
    Decimal {
        precision: Option<u32>,
        scale: Option<u32>,
    },
    /// Character data (CHAR/VARCHAR/TEXT). `max_len` in characters when known.
    String {
        max_len: Option<u32>,
    },
    /// Binary data (BINARY/VARBINARY/BLOB).
    Bytes {
        max_len: Option<u32>,
    },
    /// BIT(n); `Bits { len: 1 }` is conventionally a boolean in Debezium.
    Bits {
        len: u32,
    },
    Enum {
        allowed: Vec<String>,
    },
    Set {
        allowed: Vec<String>,
    },
    /// Days since 1970-01-01.
    Date,
    /// Signed duration since midnight, `fsp` fractional digits (0..=6).
    Time {
        fsp: u8,
    },
    /// Wall-clock date-time without zone (MySQL DATETIME).
    DateTime {
        fsp: u8,
    },
    /// An instant in UTC (MySQL TIMESTAMP).
    Timestamp {
        fsp: u8,
    },
    Year,
    Json,
    /// MySQL 9 `VECTOR(dim)`: 32-bit floats (`dim` when known: information_schema, not the
    /// binlog). Debezium: `io.debezium.data.FloatVector`; PostgreSQL: `real[]`.
    Vector {
        dim: Option<u32>,
    },
    /// Type not known yet (schemaless input); values are [`Value::Unresolved`].
    Unknown,
}

/// One column of a [`TableSchema`].
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub kind: ColumnKind,
    pub nullable: bool,
    /// The source column DEFAULT, when known (Connect schema `default`, or
    /// information_schema). Used when the column is *added* to an existing target table so rows
    /// that existed before the ALTER end up equal to the source.
    pub default: Option<Value>,
    /// The source type as the server spells it, when known (`bigint(20) unsigned`); for
    /// documentation, errors and DDL comments only.
    pub source_type: Option<String>,
    /// A DEFAULT that is an expression, not a value (`current_timestamp()`, MySQL's
    /// `DEFAULT_GENERATED` text), as the server spells it; `default` is `None` then. Never a
    /// value to write (apply ignores it); the Debezium encoder turns CURRENT_TIMESTAMP/NOW into
    /// the epoch, as Debezium's default value converter does.
    pub default_expr: Option<String>,
}

impl Column {
    pub fn new(name: impl Into<String>, kind: ColumnKind) -> Self {
        Column {
            name: name.into(),
            kind,
            nullable: true,
            default: None,
            source_type: None,
            default_expr: None,
        }
    }
}

/// A version of a table's shape. Row images are aligned with `columns`.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    pub id: TableId,
    pub columns: Vec<Column>,
    /// Indexes into `columns` of the primary key, in key order. Empty = keyless table.
    pub key: Vec<usize>,
}

impl TableSchema {
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
    pub fn is_keyless(&self) -> bool {
        self.key.is_empty()
    }
}

/// A source-typed value. See the crate docs for why each variant exists.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f32),
    Double(f64),
    /// Exact decimal in plain notation: `-0.01`, `12345678901234567890.0123456789`.
    Decimal(String),
    String(String),
    Bytes(Vec<u8>),
    /// BIT(n) value as an unsigned integer (n ≤ 64).
    Bits(u64),
    /// Days since 1970-01-01 (may be negative).
    Date(i32),
    /// Signed microseconds (MySQL TIME ranges over ±838:59:59.999999).
    Time(i64),
    /// Microseconds since 1970-01-01T00:00:00, no zone (MySQL DATETIME).
    DateTime(i64),
    /// Microseconds since the Unix epoch, UTC (MySQL TIMESTAMP).
    Timestamp(i64),
    Year(i32),
    /// JSON document as text (kept as the source spelled it).
    Json(String),
    /// MySQL 9 VECTOR value: its 32-bit floats.
    Vector(Vec<f32>),
    /// A value from schemaless input whose type is not known yet.
    Unresolved(serde_json::Value),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

/// A row image aligned with the columns of the event's [`TableSchema`].
pub type Row = Vec<Value>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `c`
    Insert,
    /// `u`
    Update,
    /// `d`
    Delete,
    /// `r` — a snapshot read.
    Snapshot,
}

impl Op {
    pub fn debezium_code(self) -> &'static str {
        match self {
            Op::Insert => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Snapshot => "r",
        }
    }
    pub fn from_debezium(code: &str) -> Option<Op> {
        Some(match code {
            "c" => Op::Insert,
            "u" => Op::Update,
            "d" => Op::Delete,
            "r" => Op::Snapshot,
            _ => return None,
        })
    }
    /// History `change_type`.
    pub fn change_type(self) -> &'static str {
        match self {
            Op::Insert => "INSERT",
            Op::Update => "UPDATE",
            Op::Delete => "DELETE",
            Op::Snapshot => "SNAPSHOT",
        }
    }
}

/// Debezium's `source.snapshot` marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotMarker {
    #[default]
    False,
    True,
    First,
    Last,
    FirstInDataCollection,
    LastInDataCollection,
    Incremental,
}

impl SnapshotMarker {
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotMarker::False => "false",
            SnapshotMarker::True => "true",
            SnapshotMarker::First => "first",
            SnapshotMarker::Last => "last",
            SnapshotMarker::FirstInDataCollection => "first_in_data_collection",
            SnapshotMarker::LastInDataCollection => "last_in_data_collection",
            SnapshotMarker::Incremental => "incremental",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "false" => SnapshotMarker::False,
            "true" => SnapshotMarker::True,
            "first" => SnapshotMarker::First,
            "last" => SnapshotMarker::Last,
            "first_in_data_collection" => SnapshotMarker::FirstInDataCollection,
            "last_in_data_collection" => SnapshotMarker::LastInDataCollection,
            "incremental" => SnapshotMarker::Incremental,
            _ => return None,
        })
    }
}

/// Where a change came from in the source (Debezium's `source` block, MySQL flavour).
///
/// Coordinates as tributary's capture produces them: `file`/`pos` is the binlog file and
/// the start position of the *rows event* that carried the change, `row` the row's index in that
/// event — unique per row change. For snapshot reads `file`/`pos` is the binlog position the
/// snapshot is consistent with and `row` is the 1-based ordinal of the row in the table's
/// snapshot (primary-key order). Real Debezium sets `pos` to the transaction's start and `row` to
/// the index in the rows event, so several changes of one transaction can share `(file, pos,
/// row)`; that is why the dedupe identity also includes the op and a content hash.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SourcePosition {
    pub file: String,
    pub pos: u64,
    pub row: u32,
    pub gtid: Option<String>,
    pub server_id: u32,
    /// Commit time of the source transaction, ms since the epoch.
    pub ts_ms: i64,
    pub snapshot: SnapshotMarker,
    pub thread: Option<u64>,
    pub query: Option<String>,
    /// Connector name (`source.name`, the topic prefix).
    pub name: String,
    /// The binlog numbering this position belongs to (see the crate docs): 0 until the source's
    /// binlog numbering restarts (RESET MASTER, failover, new basename); Debezium records carry
    /// none (0).
    pub epoch: u32,
}

impl SourcePosition {
    /// Numeric part of a binlog file name (`bin.000042` → 42); 0 when there is none.
    pub fn file_seq(&self) -> u64 {
        binlog_file_seq(&self.file)
    }

    /// Monotone order of positions across binlog epochs:
    /// `(epoch << 56) | (file sequence << 32) | pos` — bit 63 stays 0 (a positive `bigint`),
    /// 7 bits of epoch, 24 bits of file sequence, 32 bits of position. Binlog files are < 4 GiB,
    /// so this is exact within a file; a later epoch is greater than every position of an
    /// earlier one whatever its file names. For epoch 0 it is the encoding used before epochs
    /// existed (`(file sequence << 32) | pos`), so stored keys keep their meaning. Used by the
    /// current table's stale-update guard; equal keys (same transaction under Debezium's
    /// convention) are "not older". Positions outside the encodable range are refused by
    /// [`SourcePosition::order_key_checked`] (apply dead-letters them).
    pub fn order_key(&self) -> i64 {
        (((self.epoch as u64 & MAX_EPOCH as u64) << 56)
            | ((self.file_seq() & MAX_FILE_SEQ) << 32)
            | (self.pos & 0xFFFF_FFFF)) as i64
    }

    /// [`order_key`](Self::order_key), or why this position cannot be ordered exactly.
    pub fn order_key_checked(&self) -> Result<i64, String> {
        if self.pos >= 1 << 32 {
            return Err(format!(
                "binlog position {} is beyond 4 GiB: the stale-update guard cannot order it",
                self.pos
            ));
        }
        if self.file_seq() > MAX_FILE_SEQ {
            return Err(format!(
                "binlog file {:?}: sequence {} is beyond {MAX_FILE_SEQ}: the stale-update guard \
                 cannot order it (RESET MASTER on the source starts a new numbering)",
                self.file,
                self.file_seq()
            ));
        }
        if self.epoch > MAX_EPOCH {
            return Err(format!(
                "binlog epoch {} is beyond {MAX_EPOCH} (the source's binlog numbering restarted \
                 that often): re-create the warehouse tables and snapshot again",
                self.epoch
            ));
        }
        Ok(self.order_key())
    }
}

/// Highest binlog epoch [`SourcePosition::order_key`] can encode (7 bits).
pub const MAX_EPOCH: u32 = 127;
/// Highest binlog file sequence [`SourcePosition::order_key`] can encode (24 bits).
pub const MAX_FILE_SEQ: u64 = (1 << 24) - 1;

/// `bin.000042` → `bin`: the `log_bin` basename of a binlog file name.
pub fn binlog_basename(file: &str) -> &str {
    match file.rsplit_once('.') {
        Some((base, ext)) if ext.parse::<u64>().is_ok() => base,
        _ => file,
    }
}

/// `bin.000042` → 42. Returns 0 for names without a numeric extension.
pub fn binlog_file_seq(file: &str) -> u64 {
    file.rsplit('.')
        .next()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0)
}

/// A Kafka record's coordinates, when the event was consumed from (or replayed as) Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KafkaCoord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Debezium's `transaction` block (present when transaction metadata is enabled).
#[derive(Debug, Clone, PartialEq)]
pub struct TxInfo {
    pub id: String,
    pub total_order: i64,
    pub data_collection_order: i64,
}

/// One row change.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    pub schema: Arc<TableSchema>,
    pub op: Op,
    /// Row image before the change (updates, deletes), when the source provides it.
    pub before: Option<Row>,
    /// Row image after the change (inserts, updates, snapshot reads).
    pub after: Option<Row>,
    pub source: SourcePosition,
    /// When the event was processed by the connector, ms since the epoch.
    pub ts_ms: i64,
    pub transaction: Option<TxInfo>,
    /// Set by the Kafka consumer / replay; `None` in direct mode.
    pub kafka: Option<KafkaCoord>,
}

impl ChangeEvent {
    /// The image that identifies the row: `after` for inserts/updates/reads, `before` for
    /// deletes (Debezium puts the deleted row in `before`).
    pub fn row_image(&self) -> Option<&Row> {
        match self.op {
            Op::Delete => self.before.as_ref().or(self.after.as_ref()),
            _ => self.after.as_ref().or(self.before.as_ref()),
        }
    }
}

/// A DDL statement seen in the source stream (Debezium's schema-change topic). Carried so the
/// JSONL/Kafka output can include it and so apply can evolve target tables early.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaChange {
    pub db: String,
    pub ddl: String,
    pub source: SourcePosition,
    /// New table shapes the DDL produced, when known.
    pub tables: Vec<Arc<TableSchema>>,
}

/// What a batch of work covers, committed atomically with the data it produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Checkpoint {
    /// Next offset to read per (topic, partition) — Kafka convention: last applied + 1.
    Kafka(Vec<(String, i32, i64)>),
    /// Binlog position to resume streaming from (always a transaction boundary), plus the
    /// snapshot state if a snapshot is still in progress.
    Binlog(BinlogCheckpoint),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct BinlogCheckpoint {
    pub file: String,
    pub pos: u64,
    /// MariaDB/MySQL GTID set executed up to this point, when known.
    pub gtid_set: Option<String>,
    /// Serialized snapshot progress (owned by capture), `None` once the snapshot finished.
    pub snapshot: Option<String>,
    /// The binlog numbering `file`/`pos` belong to (see the crate docs); 0 in checkpoints
    /// stored before epochs existed.
    pub epoch: u32,
    /// Identity of the server `file`/`pos` belong to: MySQL `@@server_uuid`, MariaDB
    /// `@@server_id` (as text). `None` in checkpoints stored before it was recorded. A
    /// different server means the file/pos are meaningless there: capture resumes from
    /// `gtid_set` instead (or stops, saying so).
    pub server: Option<String>,
    /// Tables whose snapshot the batch carrying this checkpoint completes, when `epoch > 0`
    /// (a `tributary resnapshot`): apply deletes their current rows from earlier epochs — rows
    /// the new snapshot did not read, i.e. gone from the source — with a DELETE in history, in
    /// the same transaction. Not stored.
    pub tables_snapshotted: Vec<TableId>,
}

impl BinlogCheckpoint {
    /// The checkpoint as stored in `tributary.checkpoints.position` (and `capture`'s state
    /// file); missing keys read back as their defaults, so older stored positions load.
    pub fn to_json(&self) -> serde_json::Value {
        let mut j = serde_json::json!({
            "file": self.file, "pos": self.pos, "gtid_set": self.gtid_set,
            "snapshot": self.snapshot,
        });
        if self.epoch != 0 {
            j["epoch"] = self.epoch.into();
        }
        if let Some(s) = &self.server {
            j["server"] = s.clone().into();
        }
        j
    }

    /// Inverse of [`to_json`](Self::to_json); `None` when `file` or `pos` is missing.
    pub fn from_json(j: &serde_json::Value) -> Option<BinlogCheckpoint> {
        Some(BinlogCheckpoint {
            file: j.get("file")?.as_str()?.to_string(),
            pos: j.get("pos")?.as_u64()?,
            gtid_set: j.get("gtid_set").and_then(|g| g.as_str()).map(String::from),
            snapshot: j.get("snapshot").and_then(|g| g.as_str()).map(String::from),
            epoch: j
                .get("epoch")
                .and_then(|e| e.as_u64())
                .and_then(|e| u32::try_from(e).ok())
                .unwrap_or(0),
            server: j.get("server").and_then(|g| g.as_str()).map(String::from),
            tables_snapshotted: vec![],
        })
    }
}

/// A record as it sits on Kafka (or in a replay JSONL line): coordinates and raw bytes.
/// `value == None` is a tombstone.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// A record that could not be decoded or applied: stored in `tributary.dead_letters` with
/// everything needed to inspect and retry it. Never dropped silently.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Which stage refused it (`decode`, `apply`, …).
    pub stage: String,
    pub reason: String,
}

/// A unit of work for a sink: events to apply, records to dead-letter, and the checkpoint
/// that covers all of them. Applied in one transaction or not at all.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub events: Vec<ChangeEvent>,
    pub schema_changes: Vec<SchemaChange>,
    /// For each of `schema_changes`, how many of `events` arrived before it: the order of
    /// DDL among records that carry no source position (may be empty: then positions order
    /// them, or it is taken as 0).
    pub schema_change_after: Vec<usize>,
    pub dead_letters: Vec<DeadLetter>,
    pub checkpoint: Option<Checkpoint>,
    /// Name of the pipeline / source whose checkpoint this is (`kafka:<group>` or
    /// `mysql:<server>`), the checkpoint table's key.
    pub pipeline: String,
    /// Part of one source transaction that goes on in the next batch (a transaction larger
    /// than the batch size, direct mode): the sink keeps its PostgreSQL transaction open and
    /// commits it with the batch that ends the source transaction. Such a batch has no
    /// checkpoint. Memory stays bounded by the batch size, atomicity is kept.
    pub continues: bool,
    /// The source was restarted inside a transaction it had already handed out in part and
    /// reads it again from its start: the sink first rolls back what it holds of it.
    pub restarts_txn: bool,
}

/// Errors are split by what the caller must do: retry the same work later (`Transient`) or
/// give up on this input (`Definite`: dead-letter the record, or stop).
pub trait ErrorClass {
    fn is_transient(&self) -> bool;
}

/// Proleptic-Gregorian calendar arithmetic (Howard Hinnant's algorithms), shared by every
/// stage that turns dates into day counts and back.
pub mod calendar {
    /// Days since 1970-01-01 of a date.
    pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = if y >= 0 { y } else { y - 399 } / 400;
        let yoe = y - era * 400;
        let m = m as i64;
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// `(year, month, day)` of a day count since 1970-01-01 (inverse of [`days_from_civil`]).
    pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
        let z = z + 719_468;
        let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let y = yoe + era * 400;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        (if m <= 2 { y + 1 } else { y }, m, d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_round_trips() {
        use calendar::*;
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2025, 9, 18), 20349);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        for d in [-800_000i64, -1, 0, 59, 60, 20349, 2_932_896] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }

    #[test]
    fn order_key_orders_files_then_positions() {
        let a = SourcePosition {
            file: "bin.000001".into(),
            pos: 4_000_000_000,
            ..Default::default()
        };
        let b = SourcePosition {
            file: "bin.000002".into(),
            pos: 4,
            ..Default::default()
        };
        assert!(a.order_key() < b.order_key());
        assert_eq!(binlog_file_seq("mysql-bin.000123"), 123);
        assert_eq!(binlog_file_seq("nofile"), 0);
    }

    #[test]
    fn a_later_epoch_orders_after_every_position_of_an_earlier_one() {
        let old = SourcePosition {
            file: "bin.000900".into(),
            pos: 4_000_000_000,
            ..Default::default()
        };
        // Epoch 0 keeps the encoding stored before epochs existed.
        assert_eq!(old.order_key(), ((900u64 << 32) | 4_000_000_000) as i64);
        let new = SourcePosition {
            file: "bin.000001".into(),
            pos: 4,
            epoch: 1,
            ..Default::default()
        };
        assert!(old.order_key() < new.order_key());
        let last = SourcePosition {
            file: "x.016777215".into(),
            pos: 0xFFFF_FFFF,
            epoch: MAX_EPOCH,
            ..Default::default()
        };
        assert!(last.order_key() > 0);
        assert!(last.order_key_checked().is_ok());
        let too_far = SourcePosition {
            epoch: MAX_EPOCH + 1,
            ..last.clone()
        };
        assert!(too_far.order_key_checked().is_err());
        assert_eq!(binlog_basename("mysql-bin.000123"), "mysql-bin");
        assert_eq!(binlog_basename("odd"), "odd");
    }

    #[test]
    fn checkpoints_round_trip_through_json_and_old_ones_load() {
        let cp = BinlogCheckpoint {
            file: "bin.000002".into(),
            pos: 77,
            gtid_set: Some("0-1-5".into()),
            snapshot: None,
            epoch: 3,
            server: Some("12".into()),
            tables_snapshotted: vec![],
        };
        assert_eq!(BinlogCheckpoint::from_json(&cp.to_json()), Some(cp));
        let old =
            serde_json::json!({"file": "bin.000001", "pos": 4, "gtid_set": null, "snapshot": null});
        let got = BinlogCheckpoint::from_json(&old).unwrap();
        assert_eq!((got.epoch, got.server), (0, None));
    }

    #[test]
    fn op_codes_round_trip() {
        for op in [Op::Insert, Op::Update, Op::Delete, Op::Snapshot] {
            assert_eq!(Op::from_debezium(op.debezium_code()), Some(op));
        }
        assert_eq!(Op::from_debezium("x"), None);
    }
}
