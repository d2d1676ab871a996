//! # Consistent snapshot, chunked by primary key, resumable after a crash
//!
//! ## Taking the snapshot
//! * **MariaDB** (no global lock): `START TRANSACTION WITH CONSISTENT SNAPSHOT`, then
//!   `SHOW STATUS LIKE 'binlog_snapshot_%'` returns `binlog_snapshot_file` /
//!   `binlog_snapshot_position`: the binlog position that is *exactly* consistent with the
//!   transaction's read view (MariaDB takes both under the commit-ordering lock; this is what
//!   `mysqldump --single-transaction --master-data` relies on).
//! * **MySQL**: `FLUSH TABLES WITH READ LOCK`, `SHOW BINARY LOG STATUS` (8.2+; the only form
//!   since 8.4 — `SHOW MASTER STATUS` before, see [`master_status`]), `START TRANSACTION WITH
//!   CONSISTENT SNAPSHOT`, `UNLOCK TABLES` — the lock is held only for the two statements. The
//!   user needs `SELECT`, `RELOAD` (the lock), `REPLICATION CLIENT` (the status) and
//!   `REPLICATION SLAVE` (the dump); tested with exactly these on MySQL 9.7.
//!
//! The session uses `time_zone='+00:00'` so TIMESTAMP columns read as UTC instants, and the
//! binary protocol (prepared statements) so values are typed exactly like the binlog decoder's
//! (`schema::from_mysql`).
//!
//! Each table is read in primary-key order in chunks:
//! `SELECT cols FROM t WHERE (pk) > (last) ORDER BY pk LIMIT chunk+1` (the extra row only
//! tells whether the table has more rows). Keyless tables are read with `LIMIT/OFFSET` inside
//! the same transaction (a stable order within one read view). Events are `Op::Snapshot` with
//! `SourcePosition { file, pos = snapshot position, row = 1-based ordinal in the table,
//! snapshot = Last (very last row) / First (very first row) / LastInDataCollection (a table's
//! last row) / FirstInDataCollection (a table's first row) / True }` — Debezium's markers and
//! precedence, except that empty tables are skipped for `first`/`last` (Debezium ties them to
//! the first/last table in its order, so an empty last table leaves no `last` record). The
//! ordinal `row` and the server's id stay in the event; the Debezium encoder writes
//! `server_id` 0 for snapshot records, as Debezium, but keeps the ordinal `row` (Debezium: 0)
//! — the sink's identity needs it to recognise a re-published snapshot of a keyless table.
//!
//! Every snapshot batch's checkpoint is `Binlog { file/pos = P1 (where streaming must start),
//! snapshot: Some(json {position, tables_done, current_table, last_pk, rows_done}) }`; the
//! batch that finishes the snapshot carries `snapshot: None`.
//!
//! ## Resuming after a crash mid-snapshot
//! The original transaction (consistent with position P1) is gone. The source opens a **new**
//! consistent snapshot at position P2 ≥ P1, continues the unfinished table after `last_pk`
//! and reads the remaining tables — all at P2, their events carry `pos = P2` — and afterwards
//! streams the binlog from the **original** P1.
//!
//! **Guarantee:** after the stream has passed P2, the sink's current tables equal the source
//! (no change lost, none applied out of order), given the sink's stale-update guard: an event
//! whose [`SourcePosition::order_key`](tributary_model::SourcePosition::order_key) is lower
//! than the one stored with the row does not overwrite (or delete) it.
//!
//! **Why it is correct.** Split rows by where they were read:
//! * rows read at P1 (tables done, and the current table up to `last_pk`): the sink holds
//!   their P1 image; streaming from P1 replays *every* change after P1 in order, so they end
//!   up current — exactly as with an uninterrupted snapshot;
//! * rows read at P2 (the rest): the sink holds their P2 image tagged `pos = P2`. Streaming
//!   from P1 replays changes in (P1, P2) that are already reflected in that image; each of
//!   them has a rows-event start position < P2 (P2 is a transaction boundary, so no rows
//!   event starts at P2), hence a lower order key, so the guard ignores it — including
//!   deletes and inserts of rows in that key range. Changes after P2 have higher keys and
//!   apply normally.
//! * rows that exist at neither point need no event; a row deleted in (P1, P2) is absent from
//!   the P2 read and its delete replays harmlessly.
//! Tagging the P2 rows with P1 instead would make the replayed (P1, P2) events look newer
//! and roll rows back to older images: that is why `pos = P2` is essential.
//!
//! History tables still receive the (P1, P2) events (they are real changes); their source
//! coordinates are unique, so nothing is duplicated. Keyless tables cannot be resumed by key:
//! an unfinished keyless table is re-read from its start at P2 (documented duplicate risk in
//! history for that table only). DDL between P1 and P2 is replayed from P1 as usual.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use mysql_async::prelude::*;
use mysql_async::Value as MyValue;
use serde::{Deserialize, Serialize};
use tributary_model::{
    ChangeEvent, Op, SchemaChange, SnapshotMarker, SourcePosition, TableId, TableSchema, Value,
};

use crate::schema::{from_mysql, load_table, schema_from_info, to_param};
use crate::{connect, CaptureConfig, CaptureError, Flavor};

/// Progress of a running snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotProgress {
    /// `db.table` being read.
    pub table: String,
    /// Rows read so far (all tables, this run and before a resume).
    pub rows_done: u64,
    /// Estimate of the total from information_schema.TABLES.
    pub rows_total_estimate: u64,
    pub rows_per_sec: f64,
}

/// The JSON stored in `BinlogCheckpoint::snapshot`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct SnapshotState {
    /// Position the rows read so far are consistent with (P1, or P2 after a resume).
    pub position: FilePos,
    pub tables_done: Vec<String>,
    pub current_table: Option<String>,
    /// Primary key of the last row emitted from `current_table` (tagged values).
    pub last_pk: Option<Vec<serde_json::Value>>,
    /// Rows emitted from `current_table` so far (ordinals continue after it).
    pub rows_done: u64,
    /// Rows emitted over all tables.
    #[serde(default)]
    pub total_done: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct FilePos {
    pub file: String,
    pub pos: u64,
}

fn tag(v: &Value) -> serde_json::Value {
    use serde_json::json;
    match v {
        Value::Null => json!(["n"]),
        Value::Bool(b) => json!(["i", *b as i64]),
        Value::Int(i) => json!(["i", i.to_string()]),
        Value::UInt(u) => json!(["u", u.to_string()]),
        Value::Float(f) => json!(["f", f.to_string()]),
        Value::Double(f) => json!(["d", f.to_string()]),
        Value::Decimal(s) => json!(["dec", s]),
        Value::String(s) => json!(["s", s]),
        Value::Json(s) => json!(["j", s]),
        Value::Bytes(b) => json!([
            "b",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        ]),
        Value::Bits(b) => json!(["bit", b.to_string()]),
        Value::Date(d) => json!(["date", d]),
        Value::Time(t) => json!(["time", t.to_string()]),
        Value::DateTime(t) => json!(["dt", t.to_string()]),
        Value::Timestamp(t) => json!(["ts", t.to_string()]),
        Value::Year(y) => json!(["y", y]),
        Value::Vector(v) => json!(["vec", v]),
        Value::Unresolved(j) => json!(["x", j]),
    }
}

fn untag(j: &serde_json::Value) -> Result<Value, CaptureError> {
    let bad = || CaptureError::Checkpoint(format!("bad last_pk value {j}"));
    let a = j.as_array().ok_or_else(bad)?;
    let t = a.first().and_then(|x| x.as_str()).ok_or_else(bad)?;
    let s = a
        .get(1)
        .map(|x| {
            x.as_str()
                .map(|s| s.to_string())
                .unwrap_or_else(|| x.to_string())
        })
        .unwrap_or_default();
    let p = |s: &str| s.parse::<i64>().map_err(|_| bad());
    Ok(match t {
        "n" => Value::Null,
        "i" => Value::Int(p(&s)?),
        "u" => Value::UInt(s.parse().map_err(|_| bad())?),
        "f" => Value::Float(s.parse().map_err(|_| bad())?),
        "d" => Value::Double(s.parse().map_err(|_| bad())?),
        "dec" => Value::Decimal(s),
        "s" => Value::String(s),
        "j" => Value::Json(s),
        "b" => Value::Bytes(
            (0..s.len() / 2)
                .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad()))
                .collect::<Result<_, _>>()?,
        ),
        "bit" => Value::Bits(s.parse().map_err(|_| bad())?),
        "date" => Value::Date(p(&s)? as i32),
        "time" => Value::Time(p(&s)?),
        "dt" => Value::DateTime(p(&s)?),
        "ts" => Value::Timestamp(p(&s)?),
        "y" => Value::Year(p(&s)? as i32),
        "x" => Value::Unresolved(a.get(1).cloned().unwrap_or_default()),
        "vec" => Value::Vector(
            serde_json::from_value(a.get(1).cloned().unwrap_or_default()).map_err(|_| bad())?,
        ),
        _ => return Err(bad()),
    })
}

fn qi(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

fn full(id: &TableId) -> String {
    format!("{}.{}", id.db, id.table)
}

struct Current {
    id: TableId,
    schema: Arc<TableSchema>,
    sql: String,
    sql_first: String,
    last_pk: Option<Vec<Value>>,
    rows_done: u64,
}

pub(crate) struct Snapshotter {
    conn: Option<mysql_async::Conn>,
    pub(crate) position: FilePos,
    /// MySQL: the GTID set executed at `position` (read under the same lock).
    pub(crate) gtid_executed: Option<String>,
    /// The binlog epoch `position` belongs to (set by the stream; see the model's docs).
    pub(crate) epoch: u32,
    server_id: u32,
    name: String,
    chunk: usize,
    remaining: Vec<(TableId, u64)>,
    tables_done: Vec<String>,
    cur: Option<Current>,
    total_done: u64,
    total_estimate: u64,
    first_done: bool,
    started: Instant,
    rows_this_run: u64,
    last_log: Instant,
    /// The schema-change records of a fresh snapshot (see [`Snapshotter::schema_history`]),
    /// handed out with its first batch.
    history: Vec<SchemaChange>,
}

impl Snapshotter {
    /// Open a consistent snapshot; `resume` continues an interrupted one (at a new position).
    pub(crate) async fn open(
        cfg: &CaptureConfig,
        flavor: Flavor,
        server_id: u32,
        resume: Option<SnapshotState>,
    ) -> Result<Snapshotter, CaptureError> {
        let mut conn = connect(&cfg.url).await?;
        conn.query_drop("SET SESSION time_zone = '+00:00'").await?;
        conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .await?;
        let mut gtid_executed = None;
        let position = match flavor {
            Flavor::MariaDb => {
                conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                    .await?;
                let rows: Vec<(String, String)> =
                    conn.query("SHOW STATUS LIKE 'binlog_snapshot_%'").await?;
                let mut fp = FilePos::default();
                for (k, v) in rows {
                    match k.to_ascii_lowercase().as_str() {
                        "binlog_snapshot_file" => fp.file = v,
                        "binlog_snapshot_position" => fp.pos = v.parse().unwrap_or(0),
                        _ => {}
                    }
                }
                if fp.file.is_empty() {
                    return Err(CaptureError::Settings(
                        "binlog_snapshot_file is empty: is log_bin enabled?".into(),
                    ));
                }
                fp
            }
            Flavor::MySql => {
                conn.query_drop("FLUSH TABLES WITH READ LOCK").await?;
                let (fp, g) = binlog_status(&mut conn).await?;
                gtid_executed = g;
                conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                    .await?;
                conn.query_drop("UNLOCK TABLES").await?;
                fp
            }
        };
        // Tables to read, in a stable order.
        let rows: Vec<(String, String, Option<u64>)> = conn
            .query(
                "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES \
                 WHERE TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_SCHEMA, TABLE_NAME",
            )
            .await?;
        let resume = resume.unwrap_or_default();
        let mut remaining: Vec<(TableId, u64)> = rows
            .into_iter()
            .filter(|(db, t, _)| cfg.includes(db, t))
            .map(|(db, t, n)| (TableId::new(db, t), n.unwrap_or(0)))
            .filter(|(id, _)| !resume.tables_done.contains(&full(id)))
            .collect();
        // The unfinished table goes first.
        if let Some(cur) = &resume.current_table {
            if let Some(i) = remaining.iter().position(|(id, _)| &full(id) == cur) {
                let t = remaining.remove(i);
                remaining.insert(0, t);
            }
        }
        let total_estimate = resume.total_done + remaining.iter().map(|r| r.1).sum::<u64>();
        tracing::info!(
            file = %position.file, pos = position.pos, tables = remaining.len(),
            resumed = resume.current_table.is_some() || !resume.tables_done.is_empty(),
            "snapshot opened"
        );
        let mut s = Snapshotter {
            conn: Some(conn),
            position,
            gtid_executed,
            epoch: 0,
            server_id,
            name: cfg.name.clone(),
            chunk: cfg.chunk_size.max(1),
            remaining,
            tables_done: resume.tables_done.clone(),
            cur: None,
            total_done: resume.total_done,
            total_estimate,
            first_done: resume.total_done > 0,
            started: Instant::now(),
            rows_this_run: 0,
            last_log: Instant::now(),
            history: Vec::new(),
        };
        let fresh = resume.total_done == 0
            && resume.tables_done.is_empty()
            && resume.current_table.is_none();
        if fresh {
            s.history = s.schema_history().await?;
        }
        if let Some(cur) = &resume.current_table {
            if s.remaining.first().map(|r| full(&r.0)).as_ref() == Some(cur) {
                s.start_table(flavor).await?;
                if let Some(c) = s.cur.as_mut() {
                    if !c.schema.key.is_empty() {
                        if let Some(pk) = &resume.last_pk {
                            c.last_pk = Some(pk.iter().map(untag).collect::<Result<_, _>>()?);
                            c.rows_done = resume.rows_done;
                        }
                    } else {
                        // Keyless: restart the table (its earlier rows were counted).
                        s.total_done = s.total_done.saturating_sub(resume.rows_done);
                    }
                }
            }
        }
        Ok(s)
    }

    /// The statements Debezium's snapshot writes to the schema-change topic to rebuild its
    /// schema (`BinlogSnapshotChangeEventSource.readTableStructure`), read inside the snapshot's
    /// transaction: `SET character_set_server=…, collation_server=…`, `DROP TABLE IF EXISTS`
    /// for every table of the server (system databases excepted — Debezium's default
    /// `store.only.captured.tables.ddl=false` records them all), then per database `DROP DATABASE IF EXISTS`, `CREATE
    /// DATABASE … CHARSET … COLLATE …`, `USE`, and each table's `SHOW CREATE TABLE` text. All
    /// at the snapshot position with `snapshot: true`: descriptions, which apply ignores. Only
    /// a fresh snapshot writes them (a resumed one wrote them with its first batch).
    async fn schema_history(&mut self) -> Result<Vec<SchemaChange>, CaptureError> {
        let conn = self.conn.as_mut().unwrap();
        let ts = now_ms();
        let source = SourcePosition {
            file: self.position.file.clone(),
            pos: self.position.pos,
            row: 0,
            gtid: None,
            server_id: self.server_id,
            ts_ms: ts,
            snapshot: SnapshotMarker::True,
            thread: None,
            query: None,
            name: self.name.clone(),
            epoch: self.epoch,
        };
        let rec = |db: &str, ddl: String| SchemaChange {
            db: db.to_string(),
            ddl,
            source: source.clone(),
            tables: vec![],
        };
        let vars: Vec<(String, String)> = conn
            .query(
                "SHOW VARIABLES WHERE Variable_name IN ('character_set_server', \
                 'collation_server')",
            )
            .await?;
        let var = |n: &str| {
            vars.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let mut out = vec![rec(
            "",
            format!(
                "SET character_set_server={}, collation_server={}",
                var("character_set_server"),
                var("collation_server")
            ),
        )];
        // Debezium's default `schema.history.internal.store.only.captured.tables.ddl=false`:
        // every table of the server outside its system databases, not only the captured ones.
        let all: Vec<(String, String)> = conn
            .query(
                "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
                 WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN \
                 ('mysql', 'sys', 'performance_schema', 'information_schema') \
                 ORDER BY TABLE_SCHEMA, TABLE_NAME",
            )
            .await?;
        let tables: Vec<TableId> = all.into_iter().map(|(d, t)| TableId::new(d, t)).collect();
        for id in &tables {
            out.push(rec(
                &id.db,
                format!("DROP TABLE IF EXISTS {}.{}", qi(&id.db), qi(&id.table)),
            ));
        }
        let mut dbs: Vec<&str> = Vec::new();
        for id in &tables {
            if !dbs.contains(&id.db.as_str()) {
                dbs.push(&id.db);
            }
        }
        for db in dbs {
            out.push(rec(db, format!("DROP DATABASE IF EXISTS {}", qi(db))));
            let locale: Option<(Option<String>, Option<String>)> = conn
                .exec_first(
                    "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME \
                     FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
                    (db,),
                )
                .await?;
            let mut create = format!("CREATE DATABASE {}", qi(db));
            if let Some((cs, coll)) = locale {
                if let Some(cs) = cs {
                    create.push_str(&format!(" CHARSET {cs}"));
                }
                if let Some(coll) = coll {
                    create.push_str(&format!(" COLLATE {coll}"));
                }
            }
            out.push(rec(db, create));
            out.push(rec(db, format!("USE {}", qi(db))));
            for id in tables.iter().filter(|t| t.db == db) {
                let row: Option<(String, String)> = conn
                    .query_first(format!(
                        "SHOW CREATE TABLE {}.{}",
                        qi(&id.db),
                        qi(&id.table)
                    ))
                    .await?;
                if let Some((_, ddl)) = row {
                    out.push(rec(db, ddl));
                }
            }
        }
        Ok(out)
    }

    /// The snapshot's schema-change records (once: the first call after a fresh open).
    pub(crate) fn take_history(&mut self) -> Vec<SchemaChange> {
        std::mem::take(&mut self.history)
    }

    async fn start_table(&mut self, flavor: Flavor) -> Result<(), CaptureError> {
        let (id, _) = self.remaining.remove(0);
        let conn = self.conn.as_mut().unwrap();
        let Some((cols, pk)) = load_table(conn, &id, flavor).await? else {
            self.tables_done.push(full(&id));
            return Ok(());
        };
        let schema = Arc::new(schema_from_info(&id, &cols, &pk));
        let list = schema
            .columns
            .iter()
            .map(|c| qi(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let from = format!("{}.{}", qi(&id.db), qi(&id.table));
        let (sql, sql_first) = if schema.key.is_empty() {
            let s = format!("SELECT {list} FROM {from} LIMIT ? OFFSET ?");
            (s.clone(), s)
        } else {
            let keys: Vec<String> = schema
                .key
                .iter()
                .map(|&k| qi(&schema.columns[k].name))
                .collect();
            let order = keys.join(", ");
            let marks = vec!["?"; keys.len()].join(", ");
            (
                format!(
                    "SELECT {list} FROM {from} WHERE ({order}) > ({marks}) ORDER BY {order} LIMIT ?"
                ),
                format!("SELECT {list} FROM {from} ORDER BY {order} LIMIT ?"),
            )
        };
        self.cur = Some(Current {
            id,
            schema,
            sql,
            sql_first,
            last_pk: None,
            rows_done: 0,
        });
        Ok(())
    }

    /// Drop remaining tables that have no rows (so the Last marker lands on the real last
    /// row). Returns whether any remaining table has rows.
    async fn more_rows_remaining(&mut self) -> Result<bool, CaptureError> {
        while let Some((id, _)) = self.remaining.first().cloned() {
            let conn = self.conn.as_mut().unwrap();
            let q = format!("SELECT 1 FROM {}.{} LIMIT 1", qi(&id.db), qi(&id.table));
            let r: Option<i64> = conn.query_first(q).await?;
            if r.is_some() {
                return Ok(true);
            }
            self.remaining.remove(0);
            self.tables_done.push(full(&id));
        }
        Ok(false)
    }

    /// Read up to `max` rows. Returns the events and whether the snapshot is complete.
    pub(crate) async fn next_chunk(
        &mut self,
        max: usize,
        flavor: Flavor,
    ) -> Result<(Vec<ChangeEvent>, bool), CaptureError> {
        let mut events = Vec::new();
        loop {
            if self.cur.is_none() {
                if !self.more_rows_remaining().await? {
                    self.finish().await?;
                    return Ok((events, true));
                }
                self.start_table(flavor).await?;
                continue;
            }
            if !events.is_empty() {
                return Ok((events, false));
            }
            let limit = self.chunk.min(max).max(1);
            let cur = self.cur.as_mut().unwrap();
            let conn = self.conn.as_mut().unwrap();
            let rows: Vec<mysql_async::Row> = if cur.schema.key.is_empty() {
                conn.exec(
                    &cur.sql,
                    vec![
                        MyValue::UInt(limit as u64 + 1),
                        MyValue::UInt(cur.rows_done),
                    ],
                )
                .await?
            } else if let Some(pk) = &cur.last_pk {
                let mut params: Vec<MyValue> = pk.iter().map(to_param).collect::<Result<_, _>>()?;
                params.push(MyValue::UInt(limit as u64 + 1));
                conn.exec(&cur.sql, params).await?
            } else {
                conn.exec(&cur.sql_first, vec![MyValue::UInt(limit as u64 + 1)])
                    .await?
            };
            let more_in_table = rows.len() > limit;
            let n = rows.len().min(limit);
            let table_done = !more_in_table;
            let last_overall = table_done && {
                // Only the remaining tables decide whether this chunk ends the snapshot.
                let id = cur.id.clone();
                let _ = id;
                self.remaining.is_empty() || !self.more_rows_remaining().await?
            };
            let cur = self.cur.as_mut().unwrap();
            let ts = now_ms();
            for (i, row) in rows.into_iter().take(n).enumerate() {
                let vals: Vec<MyValue> = row.unwrap();
                let after: Vec<Value> = vals
                    .into_iter()
                    .zip(cur.schema.columns.iter())
                    .map(|(v, c)| from_mysql(v, c, &cur.id))
                    .collect::<Result<_, _>>()?;
                cur.rows_done += 1;
                self.total_done += 1;
                self.rows_this_run += 1;
                // Debezium's precedence (RelationalSnapshotChangeEventSource.setSnapshotMarker):
                // last overall, first overall, last of its table, first of its table, else true.
                let first_overall = !self.first_done;
                self.first_done = true;
                let last_in_table = table_done && i + 1 == n;
                let marker = if last_overall && i + 1 == n {
                    SnapshotMarker::Last
                } else if first_overall {
                    SnapshotMarker::First
                } else if last_in_table {
                    SnapshotMarker::LastInDataCollection
                } else if cur.rows_done == 1 {
                    SnapshotMarker::FirstInDataCollection
                } else {
                    SnapshotMarker::True
                };
                if i + 1 == n && !cur.schema.key.is_empty() {
                    cur.last_pk = Some(cur.schema.key.iter().map(|&k| after[k].clone()).collect());
                }
                events.push(ChangeEvent {
                    schema: cur.schema.clone(),
                    op: Op::Snapshot,
                    before: None,
                    after: Some(after),
                    source: SourcePosition {
                        file: self.position.file.clone(),
                        pos: self.position.pos,
                        row: cur.rows_done as u32,
                        gtid: None,
                        server_id: self.server_id,
                        ts_ms: ts,
                        snapshot: marker,
                        thread: None,
                        query: None,
                        name: self.name.clone(),
                        epoch: self.epoch,
                    },
                    ts_ms: ts,
                    transaction: None,
                    kafka: None,
                });
            }
            if table_done {
                let cur = self.cur.take().unwrap();
                tracing::info!(table = %cur.id, rows = cur.rows_done, "snapshot of table done");
                self.tables_done.push(full(&cur.id));
            }
            self.log_progress();
            if events.is_empty() {
                continue;
            }
            if self.cur.is_none() && self.remaining.is_empty() {
                self.finish().await?;
                return Ok((events, true));
            }
            return Ok((events, false));
        }
    }

    fn log_progress(&mut self) {
        if self.last_log.elapsed().as_secs() >= 5 {
            self.last_log = Instant::now();
            let p = self.progress();
            let left = p.rows_total_estimate.saturating_sub(p.rows_done) as f64;
            let eta = if p.rows_per_sec > 0.0 {
                left / p.rows_per_sec
            } else {
                0.0
            };
            tracing::info!(
                table = %p.table, rows = p.rows_done, estimate = p.rows_total_estimate,
                rows_per_sec = p.rows_per_sec as u64, eta_secs = eta as u64, "snapshot progress"
            );
        }
    }

    async fn finish(&mut self) -> Result<(), CaptureError> {
        if let Some(mut c) = self.conn.take() {
            let _ = c.query_drop("COMMIT").await;
            let _ = c.disconnect().await;
        }
        tracing::info!(
            rows = self.total_done,
            secs = self.started.elapsed().as_secs_f64(),
            "snapshot complete"
        );
        Ok(())
    }

    pub(crate) fn state(&self) -> SnapshotState {
        SnapshotState {
            position: self.position.clone(),
            tables_done: self.tables_done.clone(),
            current_table: self.cur.as_ref().map(|c| full(&c.id)),
            last_pk: self
                .cur
                .as_ref()
                .and_then(|c| c.last_pk.as_ref().map(|pk| pk.iter().map(tag).collect())),
            rows_done: self.cur.as_ref().map(|c| c.rows_done).unwrap_or(0),
            total_done: self.total_done,
        }
    }

    pub(crate) fn progress(&self) -> SnapshotProgress {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        SnapshotProgress {
            table: self
                .cur
                .as_ref()
                .map(|c| full(&c.id))
                .or_else(|| self.remaining.first().map(|r| full(&r.0)))
                .unwrap_or_default(),
            rows_done: self.total_done,
            rows_total_estimate: self.total_estimate.max(self.total_done),
            rows_per_sec: self.rows_this_run as f64 / secs,
        }
    }
}

/// The server's current binlog position: `SHOW BINARY LOG STATUS` (MySQL ≥ 8.2; the only form
/// since 8.4, where `SHOW MASTER STATUS` is a syntax error), else `SHOW MASTER STATUS` (MariaDB,
/// older MySQL) — as Debezium's MySQL connector does. Only a syntax error (1064) moves on to the
/// other statement; a missing privilege or a lost connection is that error, never masked.
pub(crate) async fn master_status(conn: &mut mysql_async::Conn) -> Result<FilePos, CaptureError> {
    Ok(binlog_status(conn).await?.0)
}

/// [`master_status`] and, on MySQL, the `Executed_Gtid_Set` of the same row (the GTID set
/// executed up to that position; `None` on MariaDB, whose status has no such column).
pub(crate) async fn binlog_status(
    conn: &mut mysql_async::Conn,
) -> Result<(FilePos, Option<String>), CaptureError> {
    let mut row: Option<mysql_async::Row> = None;
    let mut used = "";
    for q in ["SHOW BINARY LOG STATUS", "SHOW MASTER STATUS"] {
        used = q;
        match conn.query_first(q).await {
            Ok(r) => {
                row = r;
                break;
            }
            Err(mysql_async::Error::Server(e)) if e.code == 1064 && q != "SHOW MASTER STATUS" => {}
            Err(e) => return Err(e.into()),
        }
    }
    let row = row.ok_or_else(|| {
        CaptureError::Settings(format!(
            "{used} returned nothing: log_bin is OFF — add `log_bin=mysql-bin` (and a unique \
             `server_id`) to the [mysqld] section of my.cnf and restart"
        ))
    })?;
    let v: Vec<MyValue> = row.unwrap();
    let file = v.first().and_then(crate::schema::vstr).unwrap_or_default();
    let pos = v.get(1).and_then(crate::schema::vu64);
    let gtids = v.get(4).and_then(crate::schema::vstr);
    match pos {
        Some(pos) if !file.is_empty() => Ok((FilePos { file, pos }, gtids)),
        _ => Err(CaptureError::Sql(
            format!("{used} returned no file/position: {v:?}"),
            false,
        )),
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
