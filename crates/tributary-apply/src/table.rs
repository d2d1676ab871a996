//! One source table's target tables: creation, evolution, and the set-based statements that
//! apply a table's events of a batch (see the crate docs for the order and the guarantees).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use tracing::info;
use tributary_model::{ChangeEvent, ColumnKind, DeadLetter, Op, TableId, TableSchema, Value};

use crate::config::{ident, CurrentCol, HistoryCol, Layout};
use crate::names::{self, Mapped};
use crate::pgtype::{encode_field, sql_literal, PgType};
use crate::{copy_header, copy_in, copy_trailer, pg_err, ApplyError, OnError, PgSink};

/// A source column as it exists in the target tables.
#[derive(Debug, Clone)]
pub(crate) struct TCol {
    pub source: String,
    pub target: String,
    pub ty: PgType,
    /// The current table's constant DEFAULT: written for events whose schema does not have
    /// this column (changes captured before the column was added — after the ALTER the source
    /// row holds the DEFAULT too).
    pub default: Option<Value>,
}

/// Cached state of one source table's targets.
#[derive(Debug)]
pub(crate) struct TargetTable {
    pub layout: Layout,
    pub cols: Vec<TCol>,
    /// Indexes into `cols` of the current table's primary key; empty = keyless.
    pub key: Vec<usize>,
    /// Columns of the current table whose type tributary cannot write (a user's `citext`,
    /// `inet`, …): (name, type). A source column that lands on one is refused, not dropped.
    pub opaque: Vec<(String, String)>,
    /// Event schema (by Arc pointer, Arc kept alive) → for each target column, its index in
    /// that schema's row images.
    mappings: HashMap<usize, (Arc<TableSchema>, Vec<Option<usize>>)>,
    /// Whether the snapshot fast path may be used (see `fast_snapshot.rs`); `None` = not
    /// checked yet in this session.
    pub fast_snapshot: Option<bool>,
    /// The last batch held events history already had: skip the all-new attempt (see the
    /// keyed statement in `apply_table`).
    pub expect_duplicates: bool,
    /// Source column renames applied to these tables (`ddl.rs`, from
    /// `tributary.schema_changes`): (old name, new name). An event schema naming a column
    /// the target no longer has under that name is from before the rename (delivered late
    /// — the schema-change topic read ahead of a data topic — or again): its values go to the
    /// renamed column, never to a re-added ghost column.
    pub renamed: Vec<(String, String, i64)>,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct TableStats {
    pub applied: u64,
    pub duplicates: u64,
    pub snapshot_copied: u64,
}

/// Current tables are updated in place all the time: free space on each page lets
/// PostgreSQL make those HOT updates (no new index entry per update; measured ~10-20% faster
/// upserts in the replay benchmark).
const CURRENT_FILLFACTOR: u32 = 80;

/// The record variable of the keyless tables' PL/pgSQL loop: a column of this name would be
/// ambiguous in its statements, so the name is reserved (`Layout::is_reserved`).
pub(crate) const LOOP_VAR: &str = "tributary_r";

/// Event schemas whose column mapping a target table keeps (see `ensure_table`).
const MAX_CACHED_SCHEMAS: usize = 256;

const STAGE_META: &str = "_seq int4, _event_id uuid, _op text, _order int8, _src_file text, \
     _src_pos int8, _src_row int4, _src_gtid text, _src_ts timestamptz, _k_topic text, \
     _k_part int4, _k_off int8";
const STAGE_META_COLS: &str = "_seq, _event_id, _op, _order, _src_file, _src_pos, _src_row, \
     _src_gtid, _src_ts, _k_topic, _k_part, _k_off";

impl TargetTable {
    fn is_keyless(&self) -> bool {
        self.key.is_empty()
    }
    /// Map an event schema's columns onto the target columns (cached by schema object; the
    /// cache is bounded by `ensure_table`, which empties it only *before* mapping a batch's
    /// schemas, so a mapping is never dropped while its batch is applied).
    fn add_mapping(&mut self, schema: &Arc<TableSchema>) {
        // target column → index in this schema's row images
        let m = self
            .cols
            .iter()
            .map(|tc| {
                schema
                    .columns
                    .iter()
                    .position(|c| c.name == tc.source)
                    .or_else(|| {
                        schema.columns.iter().position(|c| {
                            self.col_index(&c.name).is_none()
                                && self.renamed_to(&c.name).as_deref() == Some(tc.source.as_str())
                        })
                    })
            })
            .collect();
        self.mappings
            .insert(Arc::as_ptr(schema) as usize, (schema.clone(), m));
    }
    pub(crate) fn col_index(&self, source: &str) -> Option<usize> {
        self.cols.iter().position(|c| c.source == source)
    }
    /// The name a since-renamed source column has now (renames followed in order, names
    /// compared as MySQL does, case-insensitively); `None` if it was never renamed.
    pub(crate) fn renamed_to(&self, source: &str) -> Option<String> {
        self.renamed_after(source, None)
    }
    /// [`Self::renamed_to`], following only renames after the position `key` (all when the
    /// event has no position).
    pub(crate) fn renamed_after(&self, source: &str, key: Option<i64>) -> Option<String> {
        let mut name: Option<String> = None;
        for (old, new, k) in &self.renamed {
            if key.is_some_and(|key| *k <= key) {
                continue;
            }
            if old.eq_ignore_ascii_case(name.as_deref().unwrap_or(source)) {
                name = Some(new.clone());
            }
        }
        name
    }
    /// The warehouse name of a source column: the configured rename, else the one mapping
    /// rule of `names.rs` (metadata column names reserved).
    pub(crate) fn target_name(layout: &Layout, source: &str) -> (String, Mapped) {
        match layout.rename.get(source) {
            Some(t) => (t.clone(), Mapped::Config),
            None => names::pg_ident(source, |n| layout.is_reserved(n)),
        }
    }
    /// The event's schema → target column mapping (made by `ensure_table`).
    pub(crate) fn mapping(
        &self,
        ev: &ChangeEvent,
    ) -> Result<&(Arc<TableSchema>, Vec<Option<usize>>), String> {
        self.mappings
            .get(&(Arc::as_ptr(&ev.schema) as usize))
            .ok_or_else(|| format!("{}: event schema not mapped (internal error)", ev.schema.id))
    }
    pub(crate) fn q_current(&self) -> String {
        format!(
            "{}.{}",
            ident(&self.layout.schema),
            ident(&self.layout.current)
        )
    }
    pub(crate) fn q_history(&self) -> String {
        format!(
            "{}.{}",
            ident(&self.layout.schema),
            ident(&self.layout.history)
        )
    }
    /// Staging table name: one per table shape in this session.
    fn staging_name(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.layout.schema.hash(&mut h);
        self.layout.current.hash(&mut h);
        for c in &self.cols {
            c.ty.hash(&mut h);
        }
        self.key.hash(&mut h);
        format!("tributary_stage_{:016x}", h.finish())
    }
}

/// Columns of an existing table: (name, type text), in order; empty when it does not exist.
async fn load_columns(
    client: &tokio_postgres::Client,
    schema: &str,
    table: &str,
) -> Result<Vec<(String, String, Option<String>)>, ApplyError> {
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), pg_get_expr(d.adbin, d.adrelid)
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum",
            &[&schema, &table],
        )
        .await
        .map_err(|e| pg_err("reading target table columns", e))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// The value of a constant DEFAULT expression (`'dflt'::character varying`, `42`, `-1.5`);
/// `None` for anything else (`now()`, `nextval(…)`).
fn constant_default(expr: &str, ty: &PgType) -> Option<Value> {
    let e = expr.trim();
    let literal = if let Some(rest) = e.strip_prefix('\'') {
        let end = rest.rfind('\'')?;
        let tail = &rest[end + 1..];
        if !(tail.is_empty() || tail.starts_with("::"))
            || tail.contains('(') && !tail.ends_with(')')
        {
            return None;
        }
        rest[..end].replace("''", "'")
    } else if e
        .trim_start_matches(['(', '-'])
        .chars()
        .next()?
        .is_ascii_digit()
    {
        e.trim_matches(|c| c == '(' || c == ')')
            .split("::")
            .next()?
            .to_string()
    } else {
        return None;
    };
    tributary_codec::resolve::resolve(&serde_json::Value::String(literal), &ty.as_kind()).ok()
}

async fn load_pk(
    client: &tokio_postgres::Client,
    schema: &str,
    table: &str,
) -> Result<Vec<String>, ApplyError> {
    let rows = client
        .query(
            "SELECT a.attname::text
             FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
             WHERE n.nspname = $1 AND c.relname = $2 AND i.indisprimary
             ORDER BY k.ord",
            &[&schema, &table],
        )
        .await
        .map_err(|e| pg_err("reading target primary key", e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The kind of a schemaless column, inferred from the first non-null value in the batch.
fn infer_kind(events: &[&ChangeEvent], schema: &TableSchema, idx: usize) -> ColumnKind {
    let name = &schema.columns[idx].name;
    for ev in events {
        if ev.schema.columns.get(idx).map(|c| &c.name) != Some(name) {
            continue;
        }
        for row in [ev.after.as_ref(), ev.before.as_ref()]
            .into_iter()
            .flatten()
        {
            if let Some(Value::Unresolved(j)) = row.get(idx) {
                if !j.is_null() {
                    return tributary_codec::resolve::infer(j).0;
                }
            }
        }
    }
    ColumnKind::String { max_len: None }
}

impl PgSink {
    /// For each event, the lane (`0..lanes`) that applies it: events of one current-table row
    /// (same target primary key) always share a lane; a keyless table's events all go to one
    /// lane. `None` when a table or an event schema is not known to this connection yet (the
    /// batch then needs DDL or a catalog read first, which one connection does alone).
    pub(crate) fn lanes_for(&mut self, events: &[ChangeEvent], lanes: usize) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(events.len());
        let mut scratch = BytesMut::with_capacity(64);
        for ev in events {
            // A schema not mapped yet whose columns the target already has (e.g. a decoder
            // that made a new schema object for the same table) needs no DDL: map it here.
            let ptr = Arc::as_ptr(&ev.schema) as usize;
            let t = self.tables.get_mut(&ev.schema.id)?;
            if !t.mappings.contains_key(&ptr) {
                if ev
                    .schema
                    .columns
                    .iter()
                    .any(|c| t.col_index(&c.name).is_none())
                {
                    return None;
                }
                t.add_mapping(&ev.schema);
            }
            let (_, map) = t.mappings.get(&ptr)?;
            // The key as PostgreSQL will see it: each key column encoded for its target type
            // (so `5` as Int, UInt or unresolved JSON is one key), from the image staging
            // uses. A key change is never one event (Debezium and tributary's capture emit
            // delete + create). Keyless: the whole table in one lane (its multiset updates are
            // ordered).
            scratch.clear();
            for &k in &t.key {
                let start = scratch.len();
                if encode_column(&mut scratch, ev.row_image(), map[k], &t.cols[k]).is_err() {
                    // Not encodable: the event is dead-lettered by whichever lane gets it.
                    scratch.truncate(start);
                    scratch.put_slice(b"?");
                }
            }
            let h = xxhash_rust::xxh3::xxh3_64(&scratch);
            out.push((h % lanes as u64) as u8);
        }
        Some(out)
    }

    /// Whether `ensure_table` has anything to look at: a table or an event schema not known
    /// to this session yet.
    pub(crate) fn needs_ddl_check(&self, tid: &TableId, events: &[&ChangeEvent]) -> bool {
        match self.tables.get(tid) {
            None => true,
            Some(t) => events
                .iter()
                .any(|e| !t.mappings.contains_key(&(Arc::as_ptr(&e.schema) as usize))),
        }
    }

    /// Make sure the target tables of `tid` exist and have every column the events carry
    /// (called when [`PgSink::needs_ddl_check`] says there is something to look at).
    pub(crate) async fn ensure_table(
        &mut self,
        tid: &TableId,
        events: &[&ChangeEvent],
    ) -> Result<(), ApplyError> {
        if !self.tables.contains_key(tid) {
            let layout = self.cfg.layout(tid);
            self.check_owner(tid, &layout).await?;
            let t = self.load_target(tid, layout).await?;
            if let Some(t) = t {
                self.tables.insert(tid.clone(), t);
            }
        }
        // Which source columns are missing from the target?
        let mut missing: Vec<(String, PgType, Option<Value>, bool)> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut key_sources: Vec<String> = Vec::new();
        // Existing columns whose source type changed to one the warehouse type cannot hold
        // (`widen.rs`): target index → the type holding both.
        let mut widened: Vec<(usize, PgType)> = Vec::new();
        for ev in events {
            let s = &ev.schema;
            if key_sources.is_empty() {
                key_sources = s.key.iter().map(|&k| s.columns[k].name.clone()).collect();
            }
            for (i, c) in s.columns.iter().enumerate() {
                let existing = self
                    .tables
                    .get(tid)
                    .and_then(|t| t.col_index(&c.name).map(|j| (j, &t.cols[j].ty)));
                if let Some((j, have)) = existing {
                    let kind = match &c.kind {
                        ColumnKind::Unknown => self
                            .declared_column(tid, &c.name)
                            .map(|d| d.kind)
                            .unwrap_or(ColumnKind::Unknown),
                        k => k.clone(),
                    };
                    if kind != ColumnKind::Unknown {
                        let have = widened
                            .iter()
                            .find(|(k, _)| *k == j)
                            .map(|(_, w)| w)
                            .unwrap_or(have);
                        if let Some(w) = crate::widen::widen(have, &PgType::for_kind(&kind)) {
                            widened.retain(|(k, _)| *k != j);
                            widened.push((j, w));
                        }
                    }
                    continue;
                }
                if !seen.insert(c.name.clone()) {
                    continue;
                }
                // A column renamed since this event's schema: its values map to the new
                // name (`add_mapping`), nothing to add.
                // (Only renames after the event: a column dropped — kept under another name —
                // and added again later is a new column for the events after the ADD.)
                let key = (!ev.source.file.is_empty()).then(|| ev.source.order_key());
                if self.tables.get(tid).is_some_and(|t| {
                    t.renamed_after(&c.name, key)
                        .is_some_and(|n| t.col_index(&n).is_some())
                }) {
                    continue;
                }
                // A schemaless record (flattened, no schemas): the table definition of the
                // schema-change topic (`tableChanges`) when one was read, else the values.
                let declared = (c.kind == ColumnKind::Unknown)
                    .then(|| self.declared_column(tid, &c.name))
                    .flatten();
                let (kind, default) = match (&c.kind, declared) {
                    (ColumnKind::Unknown, Some(d)) => (d.kind, d.default),
                    (ColumnKind::Unknown, None) => (infer_kind(events, s, i), c.default.clone()),
                    (k, _) => (k.clone(), c.default.clone()),
                };
                let ty = PgType::for_kind(&kind);
                missing.push((c.name.clone(), ty, default, s.key.contains(&i)));
            }
        }
        if let Some(t) = self.tables.get(tid) {
            // A source column landing on a warehouse column of a type tributary cannot write
            // is refused (it would otherwise be dropped as if the user had added it).
            for (name, ..) in &missing {
                let target = TargetTable::target_name(&t.layout, name).0;
                if let Some((_, ty)) = t.opaque.iter().find(|(n, _)| *n == target) {
                    return Err(ApplyError::definite(format!(
                        "{tid}: column {:?} lands on the warehouse column {target:?} of type {ty}, \
                         which tributary cannot write; change its type back (ALTER TABLE … \
                         ALTER COLUMN … TYPE …) or map the column elsewhere with rename, then \
                         tributary dlq retry",
                        names::printable(name)
                    )));
                }
            }
            // A changed source primary key: upserts and deletes by the old key would merge
            // or lose rows. Refused until the warehouse key is changed to match.
            if !t.key.is_empty() {
                for ev in events {
                    let s = &ev.schema;
                    if s.key.is_empty() {
                        continue;
                    }
                    let want: Option<Vec<&str>> = s
                        .key
                        .iter()
                        .map(|&k| {
                            t.col_index(&s.columns[k].name)
                                .map(|i| t.cols[i].target.as_str())
                        })
                        .collect();
                    let have: Vec<&str> =
                        t.key.iter().map(|&i| t.cols[i].target.as_str()).collect();
                    if let Some(want) = want {
                        if want != have {
                            return Err(ApplyError::definite(format!(
                                "{tid}: the source primary key is ({}) but the warehouse table's is ({}); \
                                 change it (ALTER TABLE {} DROP CONSTRAINT …, ADD PRIMARY KEY ({})), then \
                                 tributary dlq retry",
                                want.join(", "),
                                have.join(", "),
                                t.q_current(),
                                want.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")
                            )));
                        }
                    }
                }
            }
        }
        if !widened.is_empty() {
            self.widen_columns(tid, &widened).await?;
        }
        if !missing.is_empty() {
            self.create_or_evolve(tid, &missing, &key_sources).await?;
        }
        // Mappings for every event schema in this batch. The cache is bounded here, before
        // this batch's schemas are mapped (a process can see thousands of schema versions
        // of one table: every DDL makes one).
        let t = self.tables.get_mut(tid).ok_or_else(|| {
            ApplyError::definite(format!("target tables for {tid} missing after creation"))
        })?;
        if t.mappings.len() + events.len().min(MAX_CACHED_SCHEMAS) > MAX_CACHED_SCHEMAS {
            t.mappings.clear();
        }
        for ev in events {
            let ptr = Arc::as_ptr(&ev.schema) as usize;
            if t.mappings.contains_key(&ptr) {
                continue;
            }
            t.add_mapping(&ev.schema);
        }
        Ok(())
    }

    /// Column `name` of `tid` as the last schema-change record declared the table
    /// (`tableChanges`; names compared as MySQL does).
    fn declared_column(&self, tid: &TableId, name: &str) -> Option<tributary_model::Column> {
        self.declared
            .get(tid)?
            .columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
            .cloned()
    }

    /// Widen `tid`'s warehouse columns to the types a schema-change record declared (records
    /// without schemas show no type change themselves).
    pub(crate) async fn widen_to_declared(&mut self, tid: &TableId) -> Result<(), ApplyError> {
        if !self.tables.contains_key(tid) {
            let layout = self.cfg.layout(tid);
            match self.load_target(tid, layout).await? {
                Some(t) => {
                    self.tables.insert(tid.clone(), t);
                }
                None => return Ok(()),
            }
        }
        let (Some(t), Some(decl)) = (self.tables.get(tid), self.declared.get(tid)) else {
            return Ok(());
        };
        let widened: Vec<(usize, PgType)> = decl
            .columns
            .iter()
            .filter(|c| c.kind != ColumnKind::Unknown)
            .filter_map(|c| {
                let j = t.col_index(&c.name)?;
                crate::widen::widen(&t.cols[j].ty, &PgType::for_kind(&c.kind)).map(|w| (j, w))
            })
            .collect();
        if widened.is_empty() {
            return Ok(());
        }
        self.widen_columns(tid, &widened).await
    }

    /// Change the types of `tid`'s warehouse columns to ones that hold the source's new type
    /// (current and history, lossless `USING` casts; see `widen.rs`).
    async fn widen_columns(
        &mut self,
        tid: &TableId,
        widened: &[(usize, PgType)],
    ) -> Result<(), ApplyError> {
        let t = self.tables.get(tid).expect("checked by the caller");
        let (q_cur, q_hist) = (t.q_current(), t.q_history());
        let mut ddl = format!(
            "SELECT pg_advisory_xact_lock(hashtext({}));\n",
            crate::config::lit(&format!(
                "tributary:ddl:{}.{}",
                t.layout.schema, t.layout.current
            ))
        );
        for (j, w) in widened {
            let c = &t.cols[*j];
            let col = ident(&c.target);
            let using = crate::widen::using(&col, &c.ty, w);
            for q in [&q_cur, &q_hist] {
                ddl.push_str(&format!(
                    "ALTER TABLE {q} ALTER COLUMN {col} TYPE {} USING {using};\n",
                    w.ddl()
                ));
            }
            info!(
                "{tid}: source column {:?} changed type; warehouse column {col} {} -> {}",
                names::printable(&c.source),
                c.ty.ddl(),
                w.ddl()
            );
        }
        self.client
            .batch_execute(&ddl)
            .await
            .map_err(|e| pg_err(&format!("changing column types of {tid}"), e))
            .map_err(|e| with_statement(e, &ddl))?;
        let layout = self.tables.get(tid).expect("checked").layout.clone();
        let t = self.load_target(tid, layout).await?.ok_or_else(|| {
            ApplyError::definite(format!("target tables for {tid} missing after ALTER"))
        })?;
        self.tables.insert(tid.clone(), t);
        Ok(())
    }

    /// The warehouse tables of `tid` must not hold another source table (two sources whose
    /// names map to the same warehouse names would merge silently).
    async fn check_owner(&self, tid: &TableId, layout: &Layout) -> Result<(), ApplyError> {
        let cs = ident(&self.cfg.control_schema);
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT source FROM {cs}.tables WHERE target_schema = $1
                       AND (current_table = $2 OR history_table = $3) AND source <> $4"
                ),
                &[
                    &layout.schema,
                    &layout.current,
                    &layout.history,
                    &tid.to_string(),
                ],
            )
            .await
            .map_err(|e| pg_err("reading the table ownership", e))?;
        if let Some(r) = rows.first() {
            let other: String = r.get(0);
            return Err(ApplyError::definite(format!(
                "{tid}: its warehouse tables {}.{} already hold the source table {other}; give one \
                 of them other names in [sink.tables.\"…\"] (schema, current, history)",
                layout.schema, layout.current
            )));
        }
        Ok(())
    }

    /// Load an existing target (current table is the source of truth for column types).
    pub(crate) async fn load_target(
        &self,
        tid: &TableId,
        layout: Layout,
    ) -> Result<Option<TargetTable>, ApplyError> {
        let cols = load_columns(&self.client, &layout.schema, &layout.current).await?;
        if cols.is_empty() {
            return Ok(None);
        }
        let hist = load_columns(&self.client, &layout.schema, &layout.history).await?;
        if hist.is_empty() {
            return Err(ApplyError::definite(format!(
                "{}.{} exists but its history table {}.{} does not; create it or drop the current table",
                layout.schema, layout.current, layout.schema, layout.history
            )));
        }
        // Everything exactly-once rests on history refusing a known event id (the all-new
        // statement relies on it to fail): a history table without that unique index is refused.
        let unique_id = self
            .client
            .query_one(
                "SELECT EXISTS (
                   SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                   JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
                   WHERE n.nspname = $1 AND c.relname = $2 AND i.indisunique AND i.indimmediate
                     AND i.indpred IS NULL AND i.indnkeyatts = 1 AND a.attname = $3)",
                &[
                    &layout.schema,
                    &layout.history,
                    &layout.history_meta.event_id,
                ],
            )
            .await
            .map_err(|e| pg_err("reading history indexes", e))?;
        if !unique_id.get::<_, bool>(0) {
            return Err(ApplyError::definite(format!(
                "{s}.{h} has no unique index on {id}: tributary needs it to refuse changes it already \
                 applied; create it with CREATE UNIQUE INDEX ON {qs}.{qh} ({qid})",
                s = layout.schema,
                h = layout.history,
                id = layout.history_meta.event_id,
                qs = ident(&layout.schema),
                qh = ident(&layout.history),
                qid = ident(&layout.history_meta.event_id),
            )));
        }
        let pk = load_pk(&self.client, &layout.schema, &layout.current).await?;
        let meta: HashSet<&str> = layout.current_meta.written().map(|(c, _)| c).collect();
        // Warehouse name → source name: what `names.rs` recorded for this table, then the
        // configured renames; any other column has its source's name.
        let recorded =
            names::load_column_names(&self.client, &self.cfg.control_schema, &tid.to_string())
                .await?;
        let reverse: HashMap<&str, &str> = layout
            .rename
            .iter()
            .map(|(s, t)| (t.as_str(), s.as_str()))
            .chain(recorded.iter().map(|(s, t)| (t.as_str(), s.as_str())))
            .collect();
        let mut tcols = Vec::new();
        let mut opaque = Vec::new();
        for (name, ty, default) in &cols {
            if meta.contains(name.as_str()) {
                continue;
            }
            // Columns the source does not know (e.g. a serial `id` the user added) are left
            // alone: tributary never writes them, their DEFAULT fills them.
            let Some(pty) = PgType::parse(ty) else {
                opaque.push((name.clone(), ty.clone()));
                continue;
            };
            let source = reverse
                .get(name.as_str())
                .map(|s| s.to_string())
                .unwrap_or(name.clone());
            let default = default.as_deref().and_then(|d| constant_default(d, &pty));
            tcols.push(TCol {
                source,
                target: name.clone(),
                ty: pty,
                default,
            });
        }
        let key = pk
            .iter()
            .filter_map(|k| tcols.iter().position(|c| &c.target == k))
            .collect();
        // Binary COPY does not cast: the fast path is off for tables whose columns do not
        // have exactly the types it writes.
        let fast_snapshot =
            (!crate::fast_snapshot::types_match(&layout, &cols, &hist, &tcols)).then_some(false);
        let renamed = self
            .client
            .query(
                &format!(
                    "SELECT old_name, new_name, order_key FROM {}.schema_changes
                     WHERE source_table = $1 AND kind = 'rename_column' ORDER BY order_key, id",
                    ident(&self.cfg.control_schema)
                ),
                &[&tid.to_string()],
            )
            .await
            .map_err(|e| pg_err("reading the schema-change log", e))?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        Ok(Some(TargetTable {
            layout,
            cols: tcols,
            key,
            opaque,
            mappings: HashMap::new(),
            fast_snapshot,
            expect_duplicates: false,
            renamed,
        }))
    }

    async fn create_or_evolve(
        &mut self,
        tid: &TableId,
        missing: &[(String, PgType, Option<Value>, bool)],
        key_sources: &[String],
    ) -> Result<(), ApplyError> {
        let layout = self.cfg.layout(tid);
        // Serialise DDL between sinks, then look again: another sink may have done it.
        self.client
            .execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))",
                &[&format!(
                    "tributary:ddl:{}.{}",
                    layout.schema, layout.current
                )],
            )
            .await
            .map_err(|e| pg_err("taking DDL lock", e))?;
        let existing = self.load_target(tid, layout.clone()).await?;
        // Every new column's warehouse name: distinct from each other, from the columns the
        // target has, and from its metadata columns — or the table is refused (definite).
        let mut taken: HashMap<String, String> = existing
            .iter()
            .flat_map(|t| t.cols.iter().map(|c| (c.target.clone(), c.source.clone())))
            .collect();
        let mut mapped: Vec<(String, String, Mapped)> = Vec::new();
        for (name, ..) in missing {
            if existing
                .as_ref()
                .is_some_and(|t| t.col_index(name).is_some())
            {
                continue;
            }
            let (target, why) = TargetTable::target_name(&layout, name);
            if layout.is_reserved(&target) && why != Mapped::Same {
                return Err(ApplyError::definite(format!(
                    "{tid}: column {:?} would be written to {target:?}, a metadata column of the \
                     warehouse tables; rename it in [sink.tables.\"{tid}\"] rename",
                    names::printable(name)
                )));
            }
            if let Some(other) = taken.insert(target.clone(), name.clone()) {
                return Err(ApplyError::definite(format!(
                    "{tid}: columns {:?} and {:?} both map to the warehouse column {target:?}; \
                     give one a name with [sink.tables.\"{tid}\"] rename",
                    names::printable(&other),
                    names::printable(name)
                )));
            }
            mapped.push((name.clone(), target, why));
        }
        let target_of: HashMap<&str, &str> = mapped
            .iter()
            .map(|(s, t, _)| (s.as_str(), t.as_str()))
            .collect();
        let target_name = |source: &str| -> String {
            target_of
                .get(source)
                .map(|t| t.to_string())
                .unwrap_or_else(|| TargetTable::target_name(&layout, source).0)
        };
        let q_cur = format!("{}.{}", ident(&layout.schema), ident(&layout.current));
        let q_hist = format!("{}.{}", ident(&layout.schema), ident(&layout.history));
        let mut ddl = String::new();
        match &existing {
            None => {
                let keyless = key_sources.is_empty();
                let cm = &layout.current_meta;
                let hm = &layout.history_meta;
                let mut cur_cols = Vec::new();
                let mut hist_cols = Vec::new();
                let with_scd2 = hm.valid_to.is_some() && !keyless;
                for (name, ty, default, is_key) in missing {
                    // The DEFAULT matters for changes captured before the column existed (see
                    // TCol::default), e.g. a batch spanning an ALTER TABLE … ADD COLUMN.
                    let tn = ident(&target_name(name));
                    let nn = if *is_key { " NOT NULL" } else { "" };
                    let dflt = default
                        .as_ref()
                        .and_then(|d| default_clause(d, ty, name))
                        .unwrap_or_default();
                    cur_cols.push(format!("{tn} {}{nn}{dflt}", ty.ddl()));
                    hist_cols.push(format!("{tn} {}", ty.ddl()));
                }
                for (c, which) in cm.written() {
                    let extra = if which == CurrentCol::UpdatedAt {
                        " NOT NULL DEFAULT now()"
                    } else {
                        ""
                    };
                    cur_cols.push(format!("{} {}{extra}", ident(c), which.ty().ddl));
                }
                order_columns(&mut cur_cols, &layout.column_order);
                if !keyless {
                    let keys: Vec<String> =
                        key_sources.iter().map(|k| ident(&target_name(k))).collect();
                    cur_cols.push(format!("PRIMARY KEY ({})", keys.join(", ")));
                }
                hist_cols.push(format!("{} text NOT NULL", ident(&hm.change_type)));
                hist_cols.extend(
                    hm.written()
                        .map(|(c, which)| format!("{} {}", ident(c), which.ty().ddl)),
                );
                let opt =
                    |c: &Option<String>, ty: &str| c.as_ref().map(|c| format!("{} {ty}", ident(c)));
                hist_cols.extend(
                    [
                        opt(&hm.valid_to, "timestamptz"),
                        opt(&hm.applied_at, "timestamptz NOT NULL DEFAULT now()"),
                    ]
                    .into_iter()
                    .flatten(),
                );
                hist_cols.push(format!("{} uuid NOT NULL UNIQUE", ident(&hm.event_id)));
                order_columns(&mut hist_cols, &layout.column_order);
                ddl.push_str(&format!(
                    "CREATE SCHEMA IF NOT EXISTS {};\nCREATE TABLE {q_cur} (\n  {}\n) WITH (fillfactor = {CURRENT_FILLFACTOR});\nCREATE TABLE {q_hist} (\n  {}\n);\n",
                    ident(&layout.schema),
                    cur_cols.join(",\n  "),
                    hist_cols.join(",\n  ")
                ));
                if with_scd2 {
                    let keys: Vec<String> =
                        key_sources.iter().map(|k| ident(&target_name(k))).collect();
                    ddl.push_str(&format!(
                        "CREATE INDEX ON {q_hist} ({}) WHERE {} IS NULL;\n",
                        keys.join(", "),
                        ident(hm.valid_to.as_ref().unwrap())
                    ));
                }
                info!("creating warehouse tables for {tid}: {q_cur}, {q_hist}");
            }
            Some(t) => {
                for (name, ty, default, _) in missing {
                    if t.col_index(name).is_some() {
                        continue;
                    }
                    let tn = ident(&target_name(name));
                    // The source DEFAULT fills rows that existed before the ALTER, exactly as
                    // the source did; history rows of the past get NULL (not observed).
                    let dflt = default
                        .as_ref()
                        .and_then(|d| default_clause(d, ty, name))
                        .unwrap_or_default();
                    ddl.push_str(&format!(
                        "ALTER TABLE {q_cur} ADD COLUMN IF NOT EXISTS {tn} {}{dflt};\nALTER TABLE {q_hist} ADD COLUMN IF NOT EXISTS {tn} {};\n",
                        ty.ddl(),
                        ty.ddl()
                    ));
                    info!("adding column {tn} {} to {q_cur} and {q_hist}", ty.ddl());
                }
            }
        }
        if !ddl.is_empty() {
            self.client
                .batch_execute(&ddl)
                .await
                .map_err(|e| pg_err(&format!("creating/evolving tables for {tid}"), e))
                .map_err(|e| with_statement(e, &ddl))?;
        }
        self.record_names(
            tid,
            &layout,
            existing.is_none(),
            key_sources.is_empty(),
            &mapped,
        )
        .await?;
        let t = self.load_target(tid, layout).await?.ok_or_else(|| {
            ApplyError::definite(format!("target tables for {tid} missing after creation"))
        })?;
        self.tables.insert(tid.clone(), t);
        Ok(())
    }

    /// Record in the control schema where a source table's rows land and every column whose
    /// warehouse name differs from its source name (bind parameters: names are input).
    pub(crate) async fn record_names(
        &self,
        tid: &TableId,
        layout: &Layout,
        created: bool,
        keyless: bool,
        mapped: &[(String, String, Mapped)],
    ) -> Result<(), ApplyError> {
        let cs = ident(&self.cfg.control_schema);
        let source = tid.to_string();
        if created {
            self.client
                .execute(
                    &format!(
                        "INSERT INTO {cs}.tables (source, target_schema, current_table, history_table, keyless)
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (source) DO UPDATE
                         SET target_schema = EXCLUDED.target_schema, current_table = EXCLUDED.current_table,
                             history_table = EXCLUDED.history_table, keyless = EXCLUDED.keyless"
                    ),
                    &[&source, &layout.schema, &layout.current, &layout.history, &keyless],
                )
                .await
                .map_err(|e| pg_err("recording the table in the control schema", e))?;
        }
        for (name, target, why) in mapped {
            if *why == Mapped::Same {
                continue;
            }
            self.client
                .execute(
                    &format!(
                        "INSERT INTO {cs}.columns (source, source_column, source_name, target_column, reason)
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (source, source_column) DO UPDATE
                         SET target_column = EXCLUDED.target_column, reason = EXCLUDED.reason"
                    ),
                    &[&source, &name.as_bytes(), &names::printable(name), target, &why.as_str()],
                )
                .await
                .map_err(|e| pg_err("recording the column name mapping", e))?;
        }
        Ok(())
    }

    /// Stage, then apply, one table's events (already ensured). Events whose values cannot be
    /// written are dead-lettered (or fail the batch with `on_error = stop`).
    pub(crate) async fn apply_table(
        &mut self,
        tid: &TableId,
        events: &[&ChangeEvent],
        dead: &mut Vec<DeadLetter>,
    ) -> Result<TableStats, ApplyError> {
        if let Some(n) = self.apply_snapshot_fast(tid, events).await? {
            return Ok(TableStats {
                applied: n,
                duplicates: 0,
                snapshot_copied: n,
            });
        }
        let t = self.tables.get(tid).expect("ensured");
        let ncols = t.cols.len();
        let keyless = t.is_keyless();
        let stage = t.staging_name();

        // ---- build the COPY stream
        let t_encode = std::time::Instant::now();
        let mut buf = BytesMut::with_capacity(events.len() * (64 + ncols * 16));
        copy_header(&mut buf);
        let mut seen_ids: HashSet<[u8; 16]> = HashSet::with_capacity(events.len());
        let mut staged = 0u64;
        for (seq, ev) in events.iter().enumerate() {
            let id = crate::identity::event_id(ev);
            if !seen_ids.insert(id) {
                continue; // the same change twice in one batch
            }
            let row_start = buf.len();
            let res = (|| -> Result<(), String> {
                let (_, map) = t.mapping(ev)?;
                if keyless && ev.op == Op::Update && ev.before.is_none() {
                    return Err("keyless table: an update without its before image cannot be matched \
                                to a row (ExtractNewRecordState drops the before image; consume the \
                                envelope form for tables without a primary key)"
                        .into());
                }
                let nfields = 12 + ncols + if keyless { ncols } else { 0 };
                let meta = SourceMeta::of(ev)?;
                buf.put_i16(i16::try_from(nfields).map_err(|_| "too many columns".to_string())?);
                let s = &ev.source;
                put_i32(
                    &mut buf,
                    i32::try_from(seq).map_err(|_| "batch too large".to_string())?,
                );
                buf.put_i32(16);
                buf.put_slice(&id);
                put_text(&mut buf, ev.op.debezium_code());
                put_i64(&mut buf, s.order_key());
                put_text(&mut buf, &s.file);
                put_i64(&mut buf, meta.pos);
                put_i32(&mut buf, meta.row);
                match &s.gtid {
                    Some(g) => put_text(&mut buf, g),
                    None => buf.put_i32(-1),
                }
                match meta.ts_pg_us {
                    Some(us) => put_i64(&mut buf, us),
                    None => buf.put_i32(-1),
                }
                match &ev.kafka {
                    Some(k) => {
                        put_text(&mut buf, &k.topic);
                        put_i32(&mut buf, k.partition);
                        put_i64(&mut buf, k.offset);
                    }
                    None => {
                        buf.put_i32(-1);
                        buf.put_i32(-1);
                        buf.put_i32(-1);
                    }
                }
                encode_image(&mut buf, ev.row_image(), map, &t.cols, "")?;
                if keyless {
                    let b = if ev.op == Op::Update {
                        ev.before.as_ref()
                    } else {
                        ev.row_image()
                    };
                    encode_image(&mut buf, b, map, &t.cols, " (before image)")?;
                }
                Ok(())
            })();
            match res {
                Ok(()) => staged += 1,
                Err(reason) => {
                    buf.truncate(row_start);
                    let reason = format!("{tid}: {reason}");
                    if self.cfg.on_error == OnError::Stop {
                        return Err(ApplyError::definite(reason));
                    }
                    dead.push(self.dead_letter(ev, "apply", &reason));
                }
            }
        }
        copy_trailer(&mut buf);
        if staged == 0 {
            return Ok(TableStats::default());
        }
        let encode_ms = t_encode.elapsed().as_millis() as u64;

        // ---- staging table
        let stage_cols: Vec<String> = (0..ncols)
            .map(|i| format!("c{i}"))
            .chain(if keyless {
                (0..ncols).map(|i| format!("b{i}")).collect()
            } else {
                vec![]
            })
            .collect();
        if !self.staging.contains_key(&stage) {
            let typed: Vec<String> = t
                .cols
                .iter()
                .enumerate()
                .map(|(i, c)| format!("c{i} {}", c.ty.ddl()))
                .chain(if keyless {
                    t.cols
                        .iter()
                        .enumerate()
                        .map(|(i, c)| format!("b{i} {}", c.ty.ddl()))
                        .collect()
                } else {
                    vec![]
                })
                .collect();
            self.client
                .batch_execute(&format!(
                    "CREATE TEMP TABLE IF NOT EXISTS {stage} ({STAGE_META}, {}{} _new boolean NOT NULL DEFAULT false) ON COMMIT DELETE ROWS",
                    typed.join(", "),
                    if typed.is_empty() { "" } else { "," }
                ))
                .await
                .map_err(|e| pg_err("creating staging table", e))?;
            self.staging.insert(stage.clone(), 0);
        }
        // Rows of an earlier statement in this same transaction (one-by-one mode) — also when
        // the map forgot the table after a `ROLLBACK TO SAVEPOINT`, which brings back the rows
        // staged before the savepoint. In a transaction that spans batches (a large source
        // transaction) TRUNCATE: rows DELETEd inside a transaction stay in the table until it
        // ends, and every later statement would scan all of them (a 2M-row transaction in
        // 10k parts: 8k events/s with DELETE).
        let clear = if self.in_txn_parts > 1 {
            "TRUNCATE"
        } else {
            "DELETE FROM"
        };
        self.client
            .batch_execute(&format!("{clear} {stage}"))
            .await
            .map_err(|e| pg_err("clearing staging table", e))?;
        let t = self.tables.get(tid).expect("ensured");
        let t_copy = std::time::Instant::now();
        copy_in(
            &self.client,
            &format!(
                "COPY {stage} ({STAGE_META_COLS}{}{}) FROM STDIN (FORMAT binary)",
                if stage_cols.is_empty() { "" } else { ", " },
                stage_cols.join(", ")
            ),
            buf,
        )
        .await?;

        // ---- history: insert what is new, mark it in staging
        let hm = &t.layout.history_meta;
        let mut hcols: Vec<String> = t.cols.iter().map(|c| ident(&c.target)).collect();
        let mut hvals: Vec<String> = (0..ncols).map(|i| format!("c{i}")).collect();
        hcols.push(ident(&hm.change_type));
        hvals.push("CASE _op WHEN 'c' THEN 'INSERT' WHEN 'u' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'SNAPSHOT' END".into());
        hcols.push(ident(&hm.event_id));
        hvals.push("_event_id".into());
        for (c, which) in hm.written() {
            hcols.push(ident(c));
            hvals.push(
                match which {
                    HistoryCol::SourceTs => "_src_ts",
                    HistoryCol::SourceFile => "NULLIF(_src_file, '')",
                    HistoryCol::SourcePos => "_src_pos",
                    HistoryCol::SourceRow => "_src_row",
                    HistoryCol::SourceGtid => "_src_gtid",
                    HistoryCol::KafkaTopic => "_k_topic",
                    HistoryCol::KafkaPartition => "_k_part",
                    HistoryCol::KafkaOffset => "_k_off",
                    HistoryCol::ValidFrom => "COALESCE(_src_ts, now())",
                }
                .into(),
            );
        }
        // Statistics for the staging table: without them the planner guesses its size and
        // can pick nested loops over thousands of rows. They are gathered again only when the
        // batch size changed a lot: the planner scales the row density they record by the
        // table's current size, and the column statistics of one table's batches are alike.
        let analyzed = self.staging.get(&stage).copied().unwrap_or(0);
        if analyzed == 0 || staged > analyzed * 2 || staged * 2 < analyzed {
            self.client
                .batch_execute(&format!("ANALYZE {stage}"))
                .await
                .map_err(|e| pg_err("analyzing staging table", e))?;
            self.staging.insert(stage.clone(), staged);
        }
        let q_hist = t.q_history();
        let q_cur = t.q_current();
        let copy_ms = t_copy.elapsed().as_millis() as u64;
        let t_apply = std::time::Instant::now();
        let eid = ident(&hm.event_id);

        // ---- current: columns and values
        let cm = &t.layout.current_meta;
        let mut icols: Vec<String> = t.cols.iter().map(|c| ident(&c.target)).collect();
        let mut ivals: Vec<String> = (0..ncols).map(|i| format!("c{i}")).collect();
        for (c, which) in cm.written() {
            icols.push(ident(c));
            ivals.push(
                match which {
                    CurrentCol::Op => "_op",
                    CurrentCol::SourcePos => "_order",
                    CurrentCol::UpdatedAt => "now()",
                }
                .into(),
            );
        }

        let n_new = if !keyless {
            // One statement: history takes what is new (RETURNING), SCD2 closes the versions
            // that were open before this statement (an UPDATE in a WITH sees the table as it
            // was when the statement began, i.e. never the rows `ins` adds), and current
            // applies the last new event per key, guarded by source position.
            let keys: Vec<String> = t.key.iter().map(|&k| ident(&t.cols[k].target)).collect();
            let skeys: Vec<String> = t.key.iter().map(|&k| format!("c{k}")).collect();
            let (sk, k) = (skeys.join(", "), keys.join(", "));
            let mut hcols = hcols;
            let mut hvals = hvals;
            // SCD2: the versions that were open before this statement end where the key's
            // first change of `src` begins.
            let mut closed: Box<dyn Fn(&str) -> String + Send + Sync> = Box::new(|_| String::new());
            if let (Some(vt), Some(_)) = (&hm.valid_to, &hm.valid_from) {
                // Within the batch, a version ends where the key's next change begins.
                hcols.push(ident(vt));
                hvals.push(format!(
                    "lead(COALESCE(_src_ts, now())) OVER (PARTITION BY {sk} ORDER BY _seq)"
                ));
                let join: Vec<String> = t
                    .key
                    .iter()
                    .map(|&i| format!("h.{} = f.c{i}", ident(&t.cols[i].target)))
                    .collect();
                let (vt, join) = (ident(vt), join.join(" AND "));
                let (sk, q_hist) = (sk.clone(), q_hist.clone());
                closed = Box::new(move |src| {
                    format!(
                        ", firsts AS (
                           SELECT DISTINCT ON ({sk}) {sk}, COALESCE(_src_ts, now()) AS vf FROM {src} ORDER BY {sk}, _seq
                         ), closed AS (
                           UPDATE {q_hist} h SET {vt} = f.vf FROM firsts f WHERE {join} AND h.{vt} IS NULL
                         )"
                    )
                });
            }
            let join: Vec<String> = t
                .key
                .iter()
                .map(|&i| format!("c.{} = l.c{i}", ident(&t.cols[i].target)))
                .collect();
            let guard_del = cm
                .source_pos
                .as_ref()
                .map(|p| format!(" AND (c.{p} IS NULL OR c.{p} <= l._order)", p = ident(p)))
                .unwrap_or_default();
            let guard_up = cm
                .source_pos
                .as_ref()
                .map(|p| {
                    format!(
                        " WHERE t.{p} IS NULL OR t.{p} <= EXCLUDED.{p}",
                        p = ident(p)
                    )
                })
                .unwrap_or_default();
            let sets: Vec<String> = icols
                .iter()
                .filter(|c| !keys.contains(c))
                .map(|c| format!("{c} = EXCLUDED.{c}"))
                .collect();
            let on_conflict = if sets.is_empty() {
                "DO NOTHING".to_string()
            } else {
                format!("DO UPDATE SET {}{guard_up}", sets.join(", "))
            };
            let (hc, hv) = (hcols.join(", "), hvals.join(", "));
            let (join, ic, iv) = (join.join(" AND "), icols.join(", "), ivals.join(", "));
            // The statement, for `src` = the events to apply to current: `new` (those history
            // accepted, found by joining its RETURNING with staging) or, when every staged
            // event is known to be new, staging itself — then history takes a plain INSERT
            // (no speculative insertion, no RETURNING, no join).
            let statement = |all_new: bool| -> String {
                let (insert, new, src) = if all_new {
                    (
                        format!("INSERT INTO {q_hist} ({hc}) SELECT {hv} FROM {stage}"),
                        String::new(),
                        stage.as_str(),
                    )
                } else {
                    (
                        format!(
                            "INSERT INTO {q_hist} ({hc}) SELECT {hv} FROM {stage}
                             ON CONFLICT ({eid}) DO NOTHING RETURNING {eid}"
                        ),
                        format!(
                            ", new AS (SELECT s.* FROM {stage} s JOIN ins ON s._event_id = ins.{eid})"
                        ),
                        "new",
                    )
                };
                format!(
                    "WITH ins AS (
                       {insert}
                     ){new}, last AS (
                       SELECT DISTINCT ON ({sk}) * FROM {src} ORDER BY {sk}, _seq DESC
                     ){closed}, del AS (
                       DELETE FROM {q_cur} c USING last l WHERE l._op = 'd' AND {join}{guard_del}
                     ), ups AS (
                       INSERT INTO {q_cur} AS t ({ic}) SELECT {iv} FROM last WHERE _op <> 'd'
                       ON CONFLICT ({k}) {on_conflict}
                     )
                     SELECT count(*) FROM {src}",
                    closed = closed(src),
                )
            };
            // Usually every event of a batch is new (the checkpoint makes re-reads rare): try
            // the plain statement under a savepoint; history's unique index refuses it if one
            // is not, and the general statement runs instead. After such a batch the general
            // statement is used until a batch turns out all new again (a replay of applied
            // input costs one failed attempt, not one per batch).
            let mut applied = None;
            if !t.expect_duplicates {
                self.savepoint("tributary_all_new").await?;
                match self.client.query_one(&statement(true), &[]).await {
                    Ok(row) => {
                        self.end_savepoint("tributary_all_new", true).await?;
                        applied = Some(row.get::<_, i64>(0) as u64);
                    }
                    Err(e)
                        if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) =>
                    {
                        self.end_savepoint("tributary_all_new", false).await?;
                    }
                    Err(e) => return Err(pg_err(&format!("applying to {q_hist} and {q_cur}"), e)),
                }
            }
            let n = match applied {
                Some(n) => n,
                None => {
                    let row = self
                        .client
                        .query_one(&statement(false), &[])
                        .await
                        .map_err(|e| pg_err(&format!("applying to {q_hist} and {q_cur}"), e))?;
                    row.get::<_, i64>(0) as u64
                }
            };
            let t = self.tables.get_mut(tid).expect("ensured");
            t.expect_duplicates = n < staged;
            n
        } else {
            // Keyless: history first, marking what is new in staging; then the current table
            // as a multiset, in stream order: an insert adds a row, a delete removes one row
            // equal to the before image, an update does both.
            let n_new = self
                .client
                .execute(
                    &format!(
                        "WITH ins AS (
                           INSERT INTO {q_hist} ({}) SELECT {} FROM {stage} ORDER BY _seq
                           ON CONFLICT ({eid}) DO NOTHING RETURNING {eid}
                         )
                         UPDATE {stage} s SET _new = true FROM ins WHERE s._event_id = ins.{eid}",
                        hcols.join(", "),
                        hvals.join(", "),
                    ),
                    &[],
                )
                .await
                .map_err(|e| pg_err(&format!("inserting into {q_hist}"), e))?;
            if n_new > 0 {
                let eq = |prefix: &str| -> String {
                    t.cols
                        .iter()
                        .enumerate()
                        .map(|(i, c)| {
                            format!(
                                "{} IS NOT DISTINCT FROM {LOOP_VAR}.{prefix}{i}",
                                ident(&c.target)
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(" AND ")
                };
                // The same values as `ivals`, read from the loop's record.
                let rvals: Vec<String> = (0..ncols)
                    .map(|i| format!("{LOOP_VAR}.c{i}"))
                    .chain(cm.written().map(|(_, which)| match which {
                        CurrentCol::Op => format!("{LOOP_VAR}._op"),
                        CurrentCol::SourcePos => format!("{LOOP_VAR}._order"),
                        CurrentCol::UpdatedAt => "now()".to_string(),
                    }))
                    .collect();
                // A snapshot is the whole table as of its position: its first row (ordinal 1)
                // replaces every row that an earlier position produced (a re-snapshot of a
                // keyless table must not double it).
                let resnap = match &cm.source_pos {
                    Some(p) => format!(
                        "DELETE FROM {q_cur} WHERE {p} IS NULL OR {p} < {LOOP_VAR}._order;",
                        p = ident(p)
                    ),
                    None => format!("DELETE FROM {q_cur};"),
                };
                let body = format!(
                    "DECLARE {LOOP_VAR} record; BEGIN
                       FOR {LOOP_VAR} IN SELECT * FROM {stage} WHERE _new ORDER BY _seq LOOP
                         IF {LOOP_VAR}._op = 'r' AND {LOOP_VAR}._src_row = 1 THEN
                           {resnap}
                         END IF;
                         IF {LOOP_VAR}._op IN ('d', 'u') THEN
                           DELETE FROM {q_cur} WHERE ctid = (SELECT ctid FROM {q_cur} WHERE {beq} LIMIT 1);
                         END IF;
                         IF {LOOP_VAR}._op <> 'd' THEN
                           INSERT INTO {q_cur} ({ic}) VALUES ({rv});
                         END IF;
                       END LOOP;
                     END",
                    beq = eq("b"),
                    ic = icols.join(", "),
                    rv = rvals.join(", "),
                );
                // Identifiers are input: the dollar-quote tag must not occur in the body.
                let tag = (0u32..)
                    .map(|n| format!("$tributary_{n}$"))
                    .find(|t| !body.contains(t.as_str()))
                    .expect("some tag is free");
                let sql = format!("DO {tag} {body} {tag}");
                self.client
                    .batch_execute(&sql)
                    .await
                    .map_err(|e| pg_err(&format!("applying to {q_cur}"), e))?;
            }
            n_new
        };
        tracing::debug!(
            table = %tid, staged, new = n_new, encode_ms, copy_ms,
            apply_ms = t_apply.elapsed().as_millis() as u64, "table applied"
        );
        Ok(TableStats {
            applied: n_new,
            duplicates: staged - n_new,
            snapshot_copied: 0,
        })
    }
}

/// Encode an event's row image as the target columns (no copies: values are encoded from
/// the event), resolving schemaless values against the target type. Columns the event does
/// not carry are NULL.
pub(crate) fn encode_image(
    buf: &mut BytesMut,
    image: Option<&Vec<Value>>,
    map: &[Option<usize>],
    cols: &[TCol],
    what: &str,
) -> Result<(), String> {
    for (c, src) in cols.iter().zip(map) {
        encode_column(buf, image, *src, c)
            .map_err(|e| format!("column {}{what}: {e}", names::printable(&c.source)))?;
    }
    Ok(())
}

/// Encode one target column of a row image: the image's value (`src` = its index there), the
/// column's DEFAULT when the image lacks the column, NULL without an image; schemaless
/// values resolved against the target type.
pub(crate) fn encode_column(
    buf: &mut BytesMut,
    image: Option<&Vec<Value>>,
    src: Option<usize>,
    c: &TCol,
) -> Result<(), String> {
    let v = match (image, src) {
        (Some(img), Some(i)) => img.get(i).unwrap_or(&Value::Null),
        (Some(_), None) => c.default.as_ref().unwrap_or(&Value::Null),
        (None, _) => &Value::Null,
    };
    match v {
        Value::Unresolved(j) => {
            let r =
                tributary_codec::resolve::resolve(j, &c.ty.as_kind()).map_err(|e| e.to_string())?;
            encode_field(buf, &r, &c.ty)
        }
        v => encode_field(buf, v, &c.ty),
    }
    .map_err(|e| e.to_string())
}

/// A failed DDL's error with the statement that failed (so the dead letter says what to fix).
fn with_statement(e: ApplyError, ddl: &str) -> ApplyError {
    match e {
        ApplyError::Definite(mut f) => {
            let mut stmt: String = ddl.chars().take(2000).collect();
            if stmt.len() < ddl.len() {
                stmt.push_str(" …");
            }
            f.message = format!("{}; statement: {stmt}", f.message);
            ApplyError::Definite(f)
        }
        e => e,
    }
}

/// Reorder column definitions (`"name" type …`) by `order` (stable; unlisted keep their
/// relative order after the listed ones).
fn order_columns(defs: &mut [String], order: &[String]) {
    if order.is_empty() {
        return;
    }
    let rank = |d: &String| {
        order
            .iter()
            .position(|o| d.starts_with(&format!("{} ", ident(o))))
            .unwrap_or(order.len())
    };
    defs.sort_by_key(rank);
}

/// ` DEFAULT <literal>` for a source default that the target type can hold; expression
/// defaults (`current_timestamp()`, …) that are not values are skipped with a warning.
fn default_clause(v: &Value, ty: &PgType, column: &str) -> Option<String> {
    if v.is_null() {
        return None;
    }
    let v = match v {
        Value::Unresolved(j) => tributary_codec::resolve::resolve(j, &ty.as_kind()).ok()?,
        v => v.clone(),
    };
    let mut scratch = BytesMut::new();
    match encode_field(&mut scratch, &v, ty) {
        Ok(()) => Some(format!(" DEFAULT {}", sql_literal(&v, ty))),
        Err(e) => {
            tracing::warn!("not copying source DEFAULT of column {column}: {e}");
            None
        }
    }
}

/// PostgreSQL's epoch (2000-01-01) in Unix microseconds.
pub(crate) const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// An event's source coordinates as the warehouse columns hold them, converted with checks:
/// a position, row number or timestamp from a record that does not fit its column is an
/// error naming it, never a wrapped number.
pub(crate) struct SourceMeta {
    /// Source commit time, microseconds since PostgreSQL's epoch (None = unknown).
    pub ts_pg_us: Option<i64>,
    pub pos: i64,
    pub row: i32,
}

impl SourceMeta {
    pub(crate) fn of(ev: &ChangeEvent) -> Result<SourceMeta, String> {
        let s = &ev.source;
        let ts_ms = if s.ts_ms > 0 { s.ts_ms } else { ev.ts_ms };
        let ts_pg_us = if ts_ms > 0 {
            Some(
                ts_ms
                    .checked_mul(1000)
                    .and_then(|us| us.checked_sub(PG_EPOCH_US))
                    .ok_or_else(|| format!("source ts_ms {ts_ms} is out of range"))?,
            )
        } else {
            None
        };
        // The stale-update guard orders by `SourcePosition::order_key` (epoch, file sequence,
        // position): a position, file sequence or epoch that does not fit it would invert the
        // order, silently.
        let pos = i64::try_from(s.pos)
            .ok()
            .filter(|p| *p <= u32::MAX as i64)
            .ok_or_else(|| format!("source pos {} is out of range (max {})", s.pos, u32::MAX))?;
        s.order_key_checked()?;
        let row = i32::try_from(s.row)
            .map_err(|_| format!("source row {} is out of range (max {})", s.row, i32::MAX))?;
        Ok(SourceMeta { ts_pg_us, pos, row })
    }
}

pub(crate) fn put_i32(buf: &mut BytesMut, v: i32) {
    buf.put_i32(4);
    buf.put_i32(v);
}
pub(crate) fn put_i64(buf: &mut BytesMut, v: i64) {
    buf.put_i32(8);
    buf.put_i64(v);
}
pub(crate) fn put_text(buf: &mut BytesMut, s: &str) {
    buf.put_i32(s.len() as i32);
    buf.put_slice(s.as_bytes());
}

impl PgSink {
    /// After a re-snapshot of `tid` in binlog epoch `cp.epoch` (> 0) completed: every current
    /// row whose stale-update key is from an earlier epoch was not read by the new snapshot —
    /// snapshot rows carry keys of the new epoch and the stream has applied nothing of it yet —
    /// so its source row is gone. Each is deleted from current and gets a DELETE in history
    /// (its last image; source file/pos = the position the re-snapshot streams from; SCD2:
    /// the open version is closed), in the batch's transaction. Without a position column on
    /// the current table there is no way to tell: refused, with the fix.
    pub(crate) async fn reconcile_snapshot(
        &mut self,
        tid: &TableId,
        cp: &tributary_model::BinlogCheckpoint,
    ) -> Result<u64, ApplyError> {
        if cp.epoch == 0 {
            return Ok(0);
        }
        if !self.tables.contains_key(tid) {
            let layout = self.cfg.layout(tid);
            match self.load_target(tid, layout).await? {
                Some(t) => {
                    self.tables.insert(tid.clone(), t);
                }
                None => return Ok(0), // no warehouse table: nothing to reconcile
            }
        }
        let t = self.tables.get(tid).expect("loaded");
        let cm = &t.layout.current_meta;
        let hm = &t.layout.history_meta;
        let Some(sp) = cm.source_pos.as_deref() else {
            return Err(ApplyError::definite(format!(
                "{tid}: a re-snapshot must delete the warehouse rows that are gone from the source, \
                 which it recognises by the current table's position column — switched off for \
                 this table; switch it on ([sink.tables] current source_pos) or truncate {} \
                 before re-snapshotting",
                t.q_current()
            )));
        };
        let threshold = tributary_model::SourcePosition {
            epoch: cp.epoch,
            ..Default::default()
        }
        .order_key();
        let (q_cur, q_hist) = (t.q_current(), t.q_history());
        let cols: Vec<String> = t.cols.iter().map(|c| ident(&c.target)).collect();
        let gcols: Vec<String> = cols.iter().map(|c| format!("g.{c}")).collect();
        let mut hcols = cols.clone();
        let mut hvals = gcols.clone();
        hcols.push(ident(&hm.change_type));
        hvals.push("'DELETE'".into());
        hcols.push(ident(&hm.event_id));
        // Unique per (table, epoch, row image): a re-run of the same re-snapshot rolls back
        // with its transaction, so this never meets itself.
        hvals.push(format!(
            "md5({} || ':' || $2::text || ':' || g::text)::uuid",
            crate::config::lit(&tid.to_string())
        ));
        for (c, which) in hm.written() {
            let v = match which {
                HistoryCol::SourceFile => "$3::text".to_string(),
                HistoryCol::SourcePos => "$4::bigint".to_string(),
                HistoryCol::SourceRow => "0".to_string(),
                HistoryCol::ValidFrom => "now()".to_string(),
                _ => continue, // NULL: no source time, GTID or Kafka coordinates
            };
            hcols.push(ident(c));
            hvals.push(v);
        }
        let closed = match (&hm.valid_to, t.is_keyless()) {
            (Some(vt), false) => {
                let join: Vec<String> = t
                    .key
                    .iter()
                    .map(|&i| {
                        let c = ident(&t.cols[i].target);
                        format!("h.{c} = g.{c}")
                    })
                    .collect();
                format!(
                    ", closed AS (UPDATE {q_hist} h SET {vt} = now() FROM gone g WHERE {} AND h.{vt} IS NULL)",
                    join.join(" AND "),
                    vt = ident(vt)
                )
            }
            _ => String::new(),
        };
        let sql = format!(
            "WITH gone AS (
               DELETE FROM {q_cur} c WHERE c.{sp} < $1 RETURNING {}
             ){closed}
             INSERT INTO {q_hist} ({}) SELECT {} FROM gone g",
            cols.iter()
                .map(|c| format!("c.{c}"))
                .collect::<Vec<_>>()
                .join(", "),
            hcols.join(", "),
            hvals.join(", "),
            sp = ident(sp),
        );
        let pos = i64::try_from(cp.pos).unwrap_or(i64::MAX);
        let n = self
            .client
            .execute(&sql, &[&threshold, &cp.epoch.to_string(), &cp.file, &pos])
            .await
            .map_err(|e| pg_err(&format!("reconciling {q_cur} after its re-snapshot"), e))?;
        if n > 0 {
            info!(table = %tid, deleted = n, epoch = cp.epoch,
                "re-snapshot: rows gone from the source deleted from current (DELETE in history)");
        }
        Ok(n)
    }
}
