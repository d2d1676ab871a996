//! Warehouse layout configuration: where each source table lands and what its columns are
//! called. Defaults follow the brief (`<db>.<table>_current` / `<db>.<table>_history`);
//! every name, including each metadata column, can be changed or (where it is optional)
//! switched off, which is how `examples/bank.toml` reproduces the seed's exact tables.

use std::collections::BTreeMap;

use serde::Deserialize;
use tributary_model::TableId;

/// What to do with a record that cannot be decoded or applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Store it in `tributary.dead_letters` and go on (default).
    #[default]
    DeadLetter,
    /// Stop the pipeline with an error (nothing after it is applied).
    Stop,
}

/// What `DROP COLUMN` / `DROP TABLE` in the source does to the warehouse (see `ddl.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DropPolicy {
    /// Keep it: a dropped column stays in current (NULL for changes after the drop), a
    /// dropped table's warehouse tables stay, marked dropped. History keeps every value.
    #[default]
    Keep,
    /// Drop it from current too (history keeps the column / a dropped table's history table
    /// is dropped as well — only for users who want the warehouse to mirror the source schema).
    Drop,
}

/// Metadata columns of the current table. `None` switches a column off.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CurrentMeta {
    /// Last op applied to the row (`c`, `u`, `r`).
    pub op: Option<String>,
    /// Source position order key of the event the row reflects. Switching it off disables the
    /// stale-update guard (documented; history dedupe still applies).
    pub source_pos: Option<String>,
    /// When the row was last written by tributary.
    pub updated_at: Option<String>,
}

impl Default for CurrentMeta {
    fn default() -> Self {
        CurrentMeta {
            op: Some("_op".into()),
            source_pos: Some("_source_pos".into()),
            updated_at: Some("_updated_at".into()),
        }
    }
}

/// Metadata columns of the history table. `None` switches a column off, except the event id,
/// which is what makes re-applying the same change a no-op and is always present.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryMeta {
    pub change_type: String,
    pub event_id: String,
    pub source_file: Option<String>,
    pub source_pos: Option<String>,
    pub source_row: Option<String>,
    pub source_gtid: Option<String>,
    /// Source commit time of the change.
    pub source_ts: Option<String>,
    pub kafka_topic: Option<String>,
    pub kafka_partition: Option<String>,
    pub kafka_offset: Option<String>,
    /// SCD2 validity interval (keyed tables).
    pub valid_from: Option<String>,
    pub valid_to: Option<String>,
    pub applied_at: Option<String>,
}

impl Default for HistoryMeta {
    fn default() -> Self {
        HistoryMeta {
            change_type: "change_type".into(),
            event_id: "_event_id".into(),
            source_file: Some("_source_file".into()),
            source_pos: Some("_source_pos".into()),
            source_row: Some("_source_row".into()),
            source_gtid: Some("_source_gtid".into()),
            source_ts: Some("_source_ts".into()),
            kafka_topic: Some("_kafka_topic".into()),
            kafka_partition: Some("_kafka_partition".into()),
            kafka_offset: Some("_kafka_offset".into()),
            valid_from: Some("valid_from".into()),
            valid_to: Some("valid_to".into()),
            applied_at: Some("_applied_at".into()),
        }
    }
}

/// A metadata column of the current table that tributary writes with every row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurrentCol {
    Op,
    SourcePos,
    UpdatedAt,
}

/// A metadata column of the history table that tributary writes with every change (after
/// the source columns, `change_type` and the event id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryCol {
    SourceTs,
    SourceFile,
    SourcePos,
    SourceRow,
    SourceGtid,
    KafkaTopic,
    KafkaPartition,
    KafkaOffset,
    ValidFrom,
}

/// PostgreSQL type of a metadata column, as written in DDL and as `format_type` reports it.
pub struct MetaType {
    pub ddl: &'static str,
    pub formatted: &'static str,
}

const TEXT: MetaType = MetaType {
    ddl: "text",
    formatted: "text",
};
const BIGINT: MetaType = MetaType {
    ddl: "bigint",
    formatted: "bigint",
};
const INTEGER: MetaType = MetaType {
    ddl: "integer",
    formatted: "integer",
};
const TIMESTAMPTZ: MetaType = MetaType {
    ddl: "timestamptz",
    formatted: "timestamp with time zone",
};

impl CurrentCol {
    pub fn ty(self) -> MetaType {
        match self {
            CurrentCol::Op => TEXT,
            CurrentCol::SourcePos => BIGINT,
            CurrentCol::UpdatedAt => TIMESTAMPTZ,
        }
    }
}

impl HistoryCol {
    pub fn ty(self) -> MetaType {
        match self {
            HistoryCol::SourceFile | HistoryCol::SourceGtid | HistoryCol::KafkaTopic => TEXT,
            HistoryCol::SourcePos | HistoryCol::KafkaOffset => BIGINT,
            HistoryCol::SourceRow | HistoryCol::KafkaPartition => INTEGER,
            HistoryCol::SourceTs | HistoryCol::ValidFrom => TIMESTAMPTZ,
        }
    }
}

impl CurrentMeta {
    /// The switched-on metadata columns, in table order: (name, which).
    pub fn written(&self) -> impl Iterator<Item = (&str, CurrentCol)> {
        [
            (&self.op, CurrentCol::Op),
            (&self.source_pos, CurrentCol::SourcePos),
            (&self.updated_at, CurrentCol::UpdatedAt),
        ]
        .into_iter()
        .filter_map(|(c, w)| Some((c.as_deref()?, w)))
    }
}

impl HistoryMeta {
    /// The switched-on per-change metadata columns, in table order: (name, which).
    pub fn written(&self) -> impl Iterator<Item = (&str, HistoryCol)> {
        [
            (&self.source_ts, HistoryCol::SourceTs),
            (&self.source_file, HistoryCol::SourceFile),
            (&self.source_pos, HistoryCol::SourcePos),
            (&self.source_row, HistoryCol::SourceRow),
            (&self.source_gtid, HistoryCol::SourceGtid),
            (&self.kafka_topic, HistoryCol::KafkaTopic),
            (&self.kafka_partition, HistoryCol::KafkaPartition),
            (&self.kafka_offset, HistoryCol::KafkaOffset),
            (&self.valid_from, HistoryCol::ValidFrom),
        ]
        .into_iter()
        .filter_map(|(c, w)| Some((c.as_deref()?, w)))
    }
}

/// Per-table overrides (`[sink.tables."bankdb.bank_accounts"]` in TOML).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TableMapping {
    pub schema: Option<String>,
    pub current: Option<String>,
    pub history: Option<String>,
    /// Source column name → target column name.
    pub rename: BTreeMap<String, String>,
    pub current_meta: Option<CurrentMeta>,
    pub history_meta: Option<HistoryMeta>,
    /// Column order for tables tributary creates (target names; names a table does not have
    /// are ignored, columns not listed follow in their natural order).
    pub column_order: Vec<String>,
}

/// The sink's layout configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApplyConfig {
    /// Target schema; `{db}` is replaced by the source database.
    pub schema: String,
    /// Current table name; `{table}` is replaced by the source table.
    pub current: String,
    pub history: String,
    pub current_meta: CurrentMeta,
    pub history_meta: HistoryMeta,
    /// Keys are `"<db>.<table>"`.
    pub tables: BTreeMap<String, TableMapping>,
    pub on_error: OnError,
    /// Schema for the checkpoint and dead-letter tables.
    pub control_schema: String,
    /// PostgreSQL `synchronous_commit` for the sink's sessions (default `off`). Safe here:
    /// a commit lost in a PostgreSQL crash loses its checkpoint *with* its data, so the
    /// source is re-read from the previous checkpoint — exactly once either way; what `off`
    /// saves is a WAL flush wait per batch. Set `on` if other readers need durability first.
    pub synchronous_commit: String,
    /// Write snapshot-only batches with plain COPYs when PostgreSQL can prove them new (see
    /// `fast_snapshot.rs`; default on). Off forces the staged path for every batch.
    pub snapshot_fast_path: bool,
    /// PostgreSQL connections a Kafka sink or `replay` applies one batch over (default 2; see
    /// `parallel.rs` — rows are split by primary key, the checkpoint follows the last lane).
    /// 1 = every batch in one transaction. Direct mode always uses one.
    pub connections: usize,
    /// Source `DROP COLUMN`: keep the column in current (default) or drop it (history keeps it).
    pub on_drop_column: DropPolicy,
    /// Source `DROP TABLE`: keep the warehouse tables, marked dropped (default), or drop them.
    pub on_drop_table: DropPolicy,
}

impl Default for ApplyConfig {
    fn default() -> Self {
        ApplyConfig {
            schema: "{db}".into(),
            current: "{table}_current".into(),
            history: "{table}_history".into(),
            current_meta: CurrentMeta::default(),
            history_meta: HistoryMeta::default(),
            tables: BTreeMap::new(),
            on_error: OnError::DeadLetter,
            control_schema: "tributary".into(),
            synchronous_commit: "off".into(),
            snapshot_fast_path: true,
            connections: 2,
            on_drop_column: DropPolicy::Keep,
            on_drop_table: DropPolicy::Keep,
        }
    }
}

/// Resolved names for one source table.
#[derive(Debug, Clone)]
pub struct Layout {
    pub schema: String,
    pub current: String,
    pub history: String,
    pub rename: BTreeMap<String, String>,
    pub column_order: Vec<String>,
    pub current_meta: CurrentMeta,
    pub history_meta: HistoryMeta,
}

impl Layout {
    /// Whether `name` is one of the metadata columns of this table's current or history
    /// table (a source column of that name is mapped, see `names.rs`).
    pub fn is_reserved(&self, name: &str) -> bool {
        let cm = &self.current_meta;
        let hm = &self.history_meta;
        // PostgreSQL's system columns, and the keyless apply's loop variable.
        const SYSTEM: [&str; 7] = ["tableoid", "xmin", "cmin", "xmax", "cmax", "ctid", "oid"];
        SYSTEM.contains(&name)
            || name == crate::table::LOOP_VAR
            || cm.written().any(|(c, _)| c == name)
            || hm.written().any(|(c, _)| c == name)
            || hm.change_type == name
            || hm.event_id == name
            || hm.valid_to.as_deref() == Some(name)
            || hm.applied_at.as_deref() == Some(name)
    }
}

fn off_if_empty(c: &mut Option<String>) {
    if c.as_deref() == Some("") {
        *c = None;
    }
}

impl CurrentMeta {
    /// An empty name switches a column off (TOML has no null).
    fn normalized(mut self) -> Self {
        for c in [&mut self.op, &mut self.source_pos, &mut self.updated_at] {
            off_if_empty(c);
        }
        self
    }
}

impl HistoryMeta {
    fn normalized(mut self) -> Self {
        for c in [
            &mut self.source_file,
            &mut self.source_pos,
            &mut self.source_row,
            &mut self.source_gtid,
            &mut self.source_ts,
            &mut self.kafka_topic,
            &mut self.kafka_partition,
            &mut self.kafka_offset,
            &mut self.valid_from,
            &mut self.valid_to,
            &mut self.applied_at,
        ] {
            off_if_empty(c);
        }
        self
    }
}

impl ApplyConfig {
    pub fn layout(&self, t: &TableId) -> Layout {
        let m = self.tables.get(&t.to_string());
        // Names PostgreSQL cannot hold as they are (> 63 bytes, empty, NUL) follow the one
        // mapping rule of `names.rs`.
        let sub = |pat: &str| crate::names::pg_relation_name(&substitute(pat, t));
        Layout {
            schema: sub(m.and_then(|m| m.schema.as_deref()).unwrap_or(&self.schema)),
            current: sub(m
                .and_then(|m| m.current.as_deref())
                .unwrap_or(&self.current)),
            history: sub(m
                .and_then(|m| m.history.as_deref())
                .unwrap_or(&self.history)),
            rename: m.map(|m| m.rename.clone()).unwrap_or_default(),
            column_order: m.map(|m| m.column_order.clone()).unwrap_or_default(),
            current_meta: m
                .and_then(|m| m.current_meta.clone())
                .unwrap_or_else(|| self.current_meta.clone())
                .normalized(),
            history_meta: m
                .and_then(|m| m.history_meta.clone())
                .unwrap_or_else(|| self.history_meta.clone())
                .normalized(),
        }
    }
}

/// `{db}` and `{table}` of a name pattern replaced in one pass (a database named `{table}`
/// is not expanded again).
fn substitute(pat: &str, t: &TableId) -> String {
    let mut out = String::with_capacity(pat.len() + t.db.len() + t.table.len());
    let mut rest = pat;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(r) = tail.strip_prefix("{db}") {
            out.push_str(&t.db);
            rest = r;
        } else if let Some(r) = tail.strip_prefix("{table}") {
            out.push_str(&t.table);
            rest = r;
        } else {
            out.push('{');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

impl ApplyConfig {
    /// Every name the configuration gives must be one PostgreSQL keeps as it is (1–63 bytes,
    /// no NUL): a longer one would be truncated by PostgreSQL and its values lost.
    pub fn validate(&self) -> Result<(), String> {
        let check = |what: &str, n: &str| -> Result<(), String> {
            if n.len() > crate::names::MAX_IDENT_BYTES || n.contains('\0') {
                return Err(format!(
                    "{what} = {n:?}: a PostgreSQL name must be at most 63 bytes, without NUL"
                ));
            }
            Ok(())
        };
        let metas = |where_: &str, cm: &CurrentMeta, hm: &HistoryMeta| -> Result<(), String> {
            for (n, _) in cm.written() {
                check(&format!("{where_}current_meta"), n)?;
            }
            for (n, _) in hm.written() {
                check(&format!("{where_}history_meta"), n)?;
            }
            for n in [&hm.change_type, &hm.event_id] {
                if n.is_empty() {
                    return Err(format!(
                        "{where_}history_meta: change_type and event_id cannot be switched off"
                    ));
                }
                check(&format!("{where_}history_meta"), n)?;
            }
            for n in [&hm.valid_to, &hm.applied_at].into_iter().flatten() {
                check(&format!("{where_}history_meta"), n)?;
            }
            Ok(())
        };
        metas(
            "[sink] ",
            &self.current_meta.clone().normalized(),
            &self.history_meta.clone().normalized(),
        )?;
        for (t, m) in &self.tables {
            let w = format!("[sink.tables.{t:?}] ");
            for (src, target) in &m.rename {
                if target.is_empty() {
                    return Err(format!("{w}rename {src:?}: empty target name"));
                }
                check(&format!("{w}rename {src:?}"), target)?;
            }
            if let Some(cm) = &m.current_meta {
                metas(
                    &w,
                    &cm.clone().normalized(),
                    &self.history_meta.clone().normalized(),
                )?;
            }
            if let Some(hm) = &m.history_meta {
                metas(
                    &w,
                    &self.current_meta.clone().normalized(),
                    &hm.clone().normalized(),
                )?;
            }
        }
        Ok(())
    }
}

/// Quote an SQL identifier.
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quote an SQL string literal. A string holding a backslash is written as an escape string
/// (`E'…'`, backslashes doubled), which PostgreSQL reads the same whatever the session's
/// `standard_conforming_strings` (the sessions also force it on, see `connect`).
pub fn lit(s: &str) -> String {
    let q = s.replace('\'', "''");
    if q.contains('\\') {
        format!("E'{}'", q.replace('\\', "\\\\"))
    } else {
        format!("'{q}'")
    }
}
