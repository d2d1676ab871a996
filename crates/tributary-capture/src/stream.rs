//! The source: snapshot first (optional), then binlog streaming with transaction-aligned
//! batches, reconnect with backoff, table filtering.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use mysql_async::binlog::events::{EventData, TableMapEvent};
use mysql_async::prelude::*;
use mysql_async::{BinlogStream, BinlogStreamRequest};
use tributary_model::{
    Batch, BinlogCheckpoint, ChangeEvent, Checkpoint, ErrorClass, Op, SchemaChange, SnapshotMarker,
    SourcePosition, TableId,
};

use crate::decode::{decode_image, table_version, TableVersion};
use crate::schema::{enrich, load_table};
use crate::snapshot::{master_status, now_ms, SnapshotState, Snapshotter};
use crate::{check, connect, CaptureConfig, CaptureError, Flavor, SnapshotMode, SnapshotProgress};

/// How far the source is behind the server.
#[derive(Debug, Clone, PartialEq)]
pub struct Lag {
    pub server_file: String,
    pub server_pos: u64,
    pub checkpoint_file: String,
    pub checkpoint_pos: u64,
    /// Bytes behind when both are in the same file.
    pub bytes_behind: Option<u64>,
    /// Number of binlog files between the checkpoint and the server position.
    pub files_behind: u64,
    /// Nothing left to read (modulo a snapshot still running).
    pub caught_up: bool,
}

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const RECONNECT_GIVE_UP: Duration = Duration::from_secs(120);

/// MySQL/MariaDB change source. See the crate docs for the batch contract.
pub struct MySqlSource {
    cfg: CaptureConfig,
    flavor: Flavor,
    pool: mysql_async::Pool,
    pipeline: String,
    server_id: u32,
    // position
    file: String,
    boundary_file: String,
    boundary_pos: u64,
    gtids: BTreeMap<u32, (u32, u64)>,
    cur_gtid: Option<String>,
    in_txn: bool,
    thread: Option<u64>,
    pending: Vec<ChangeEvent>,
    pending_ddl: Vec<SchemaChange>,
    tables: HashMap<u64, Arc<TableVersion>>,
    versions: HashMap<TableId, Arc<TableVersion>>,
    stream: Option<BinlogStream>,
    snap: Option<Snapshotter>,
    finished: bool,
}

impl MySqlSource {
    /// Check the server, then either resume from `resume` or start per `cfg.snapshot`.
    pub async fn start(
        cfg: CaptureConfig,
        resume: Option<BinlogCheckpoint>,
    ) -> Result<Self, CaptureError> {
        let report = check(&cfg.url, cfg.server_id).await?;
        if !report.is_ok() {
            let list = report
                .problems
                .iter()
                .filter(|p| p.fatal)
                .map(|p| {
                    format!(
                        "  {}: found {}, required {} — fix: {}",
                        p.setting, p.found, p.required, p.fix
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            return Err(CaptureError::Settings(list));
        }
        for p in report.problems.iter().filter(|p| !p.fatal) {
            tracing::warn!(setting = %p.setting, found = %p.found, fix = %p.fix, "capture setting");
        }
        let opts = mysql_async::Opts::from_url(&cfg.url)
            .map_err(|e| CaptureError::Config(e.to_string()))?;
        let pool = mysql_async::Pool::new(opts);
        let mut conn = pool.get_conn().await?;
        conn.query_drop("SET SESSION time_zone = '+00:00'").await?;
        let server_id: u32 = conn.query_first("SELECT @@server_id").await?.unwrap_or(0);
        drop(conn);
        let mut src = MySqlSource {
            pipeline: format!("mysql:{}", cfg.name),
            flavor: report.flavor,
            pool,
            server_id,
            file: String::new(),
            boundary_file: String::new(),
            boundary_pos: 4,
            gtids: BTreeMap::new(),
            cur_gtid: None,
            in_txn: false,
            thread: None,
            pending: vec![],
            pending_ddl: vec![],
            tables: HashMap::new(),
            versions: HashMap::new(),
            stream: None,
            snap: None,
            finished: false,
            cfg,
        };
        let mut gtid_set = None;
        match resume {
            Some(cp) => {
                if cp.file.is_empty() {
                    return Err(CaptureError::Checkpoint("empty binlog file name".into()));
                }
                src.boundary_file = cp.file.clone();
                src.boundary_pos = cp.pos;
                gtid_set = cp.gtid_set.clone();
                if let Some(js) = &cp.snapshot {
                    let st: SnapshotState = serde_json::from_str(js)
                        .map_err(|e| CaptureError::Checkpoint(format!("snapshot state: {e}")))?;
                    if src.cfg.snapshot != SnapshotMode::Never {
                        src.snap = Some(
                            Snapshotter::open(&src.cfg, src.flavor, server_id, Some(st)).await?,
                        );
                    }
                } else if src.cfg.snapshot == SnapshotMode::Only {
                    src.finished = true;
                }
            }
            None => match src.cfg.snapshot {
                SnapshotMode::Initial | SnapshotMode::Only => {
                    let s = Snapshotter::open(&src.cfg, src.flavor, server_id, None).await?;
                    src.boundary_file = s.position.file.clone();
                    src.boundary_pos = s.position.pos;
                    src.snap = Some(s);
                }
                SnapshotMode::Never => {
                    let mut c = connect(&src.cfg.url).await?;
                    let fp = master_status(&mut c).await?;
                    let _ = c.disconnect().await;
                    src.boundary_file = fp.file;
                    src.boundary_pos = fp.pos;
                }
            },
        }
        if gtid_set.is_none() && src.flavor == Flavor::MariaDb {
            let mut c = src.pool.get_conn().await?;
            gtid_set = c
                .exec_first::<Option<String>, _, _>(
                    "SELECT BINLOG_GTID_POS(?, ?)",
                    (src.boundary_file.as_str(), src.boundary_pos),
                )
                .await
                .ok()
                .flatten()
                .flatten();
        }
        if let Some(g) = gtid_set {
            src.gtids = parse_gtid_set(&g);
        }
        src.file = src.boundary_file.clone();
        tracing::info!(
            name = %src.cfg.name, file = %src.boundary_file, pos = src.boundary_pos,
            snapshot = src.snap.is_some(), "capture source started"
        );
        Ok(src)
    }

    /// The server's own `server_id`.
    pub fn server_id(&self) -> u32 {
        self.server_id
    }

    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// True once a `SnapshotMode::Only` snapshot is complete.
    pub fn finished(&self) -> bool {
        self.finished
    }

    pub fn snapshot_progress(&self) -> Option<SnapshotProgress> {
        self.snap.as_ref().map(|s| s.progress())
    }

    fn checkpoint(&self, snapshot: Option<String>) -> Checkpoint {
        Checkpoint::Binlog(BinlogCheckpoint {
            file: self.boundary_file.clone(),
            pos: self.boundary_pos,
            gtid_set: if self.gtids.is_empty() {
                None
            } else {
                Some(format_gtid_set(&self.gtids))
            },
            snapshot,
        })
    }

    /// The next batch: snapshot chunk, or whole binlog transactions (at least one when any is
    /// available within the heartbeat period; an empty batch otherwise). Never splits a
    /// transaction; may exceed `max_events` only by the size of the last transaction.
    pub async fn next_batch(&mut self, max_events: usize) -> Result<Batch, CaptureError> {
        let max = max_events.max(1);
        if let Some(snap) = self.snap.as_mut() {
            let (events, done) = snap.next_chunk(max, self.flavor).await?;
            let state = if done {
                None
            } else {
                Some(serde_json::to_string(&snap.state()).expect("serializable"))
            };
            if done {
                self.snap = None;
                if self.cfg.snapshot == SnapshotMode::Only {
                    self.finished = true;
                }
            }
            return Ok(Batch {
                events,
                checkpoint: Some(self.checkpoint(state)),
                pipeline: self.pipeline.clone(),
                ..Default::default()
            });
        }
        let mut out = Batch {
            pipeline: self.pipeline.clone(),
            ..Default::default()
        };
        if self.finished {
            out.checkpoint = Some(self.checkpoint(None));
            return Ok(out);
        }
        let idle = self.cfg.heartbeat.max(Duration::from_millis(10));
        let started = Instant::now();
        let mut have_txn = false;
        loop {
            if self.stream.is_none() {
                self.reconnect().await?;
            }
            let stream = self.stream.as_mut().unwrap();
            let next = match stream.next().now_or_never() {
                Some(x) => Some(x),
                None => {
                    let wait = if have_txn {
                        Duration::from_millis(5)
                    } else {
                        idle.saturating_sub(started.elapsed())
                    };
                    if wait.is_zero() {
                        None
                    } else {
                        tokio::time::timeout(wait, stream.next()).await.ok()
                    }
                }
            };
            match next {
                None => break,
                Some(None) | Some(Some(Err(_))) => {
                    if let Some(Some(Err(e))) = next {
                        let e = CaptureError::from(e);
                        if !e.is_transient() {
                            self.drop_stream();
                            return Err(e);
                        }
                        tracing::warn!(error = %e, "binlog stream lost");
                    } else {
                        tracing::warn!("binlog stream ended");
                    }
                    self.drop_stream();
                    if have_txn {
                        break;
                    }
                }
                Some(Some(Ok(ev))) => {
                    if self.handle(ev, &mut out).await? {
                        have_txn = true;
                        if out.events.len() >= max {
                            break;
                        }
                    }
                }
            }
        }
        out.checkpoint = Some(self.checkpoint(None));
        Ok(out)
    }

    /// Forget the connection and any partially read transaction; the next read reconnects at
    /// the last transaction boundary.
    fn drop_stream(&mut self) {
        self.stream = None;
        self.pending.clear();
        self.pending_ddl.clear();
        self.in_txn = false;
        self.cur_gtid = None;
        self.file = self.boundary_file.clone();
    }

    async fn reconnect(&mut self) -> Result<(), CaptureError> {
        self.drop_stream();
        let mut delay = BACKOFF_START;
        let t0 = Instant::now();
        loop {
            match self.open_stream().await {
                Ok(s) => {
                    self.stream = Some(s);
                    return Ok(());
                }
                Err(e) if e.is_transient() && t0.elapsed() < RECONNECT_GIVE_UP => {
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "binlog reconnect failed");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(BACKOFF_MAX);
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn open_stream(&mut self) -> Result<BinlogStream, CaptureError> {
        let mut conn = connect(&self.cfg.url).await?;
        if self.flavor == Flavor::MariaDb {
            conn.query_drop("SET @mariadb_slave_capability = 4").await?;
        }
        let hb = self.cfg.heartbeat.as_nanos().max(1_000_000);
        conn.query_drop(format!("SET @master_heartbeat_period = {hb}"))
            .await?;
        let file = self.boundary_file.clone();
        let req = BinlogStreamRequest::new(self.cfg.server_id)
            .with_filename(file.as_bytes())
            .with_pos(self.boundary_pos);
        let s = conn.get_binlog_stream(req).await?;
        tracing::info!(file = %file, pos = self.boundary_pos, "binlog streaming");
        Ok(s)
    }

    /// Commit the buffered transaction into `out` at boundary `log_pos`.
    fn commit(&mut self, log_pos: u32, out: &mut Batch) {
        out.events.append(&mut self.pending);
        out.schema_changes.append(&mut self.pending_ddl);
        self.in_txn = false;
        self.cur_gtid = None;
        self.thread = None;
        if log_pos > 0 {
            self.boundary_file = self.file.clone();
            self.boundary_pos = log_pos as u64;
        }
    }

    /// Handle one binlog event; returns true when a transaction boundary was reached.
    async fn handle(
        &mut self,
        ev: mysql_async::binlog::events::Event,
        out: &mut Batch,
    ) -> Result<bool, CaptureError> {
        let h = ev.header();
        let ty = h.event_type_raw();
        let log_pos = h.log_pos();
        let start = (log_pos as u64).saturating_sub(h.event_size() as u64);
        let derr = |file: &str, reason: String| CaptureError::Decode {
            file: file.to_string(),
            pos: start,
            reason,
        };
        match ty {
            // ROTATE
            4 => {
                let d = ev.data();
                if d.len() < 8 {
                    return Err(derr(&self.file, "short rotate event".into()));
                }
                let position = u64::from_le_bytes(d[0..8].try_into().unwrap());
                let mut name = &d[8..];
                // The fake rotate sent before the FDE still carries its CRC32 (the reader does
                // not know the checksum algorithm yet): strip it when it verifies.
                if name.len() > 4 {
                    let mut whole = Vec::with_capacity(19 + d.len());
                    let mut hdr = [0u8; 19];
                    hdr[0..4].copy_from_slice(&h.timestamp().to_le_bytes());
                    hdr[4] = ty;
                    hdr[5..9].copy_from_slice(&h.server_id().to_le_bytes());
                    hdr[9..13].copy_from_slice(&h.event_size().to_le_bytes());
                    hdr[13..17].copy_from_slice(&h.log_pos().to_le_bytes());
                    hdr[17..19].copy_from_slice(&h.flags_raw().to_le_bytes());
                    whole.extend_from_slice(&hdr);
                    whole.extend_from_slice(&d[..d.len() - 4]);
                    let crc = u32::from_le_bytes(d[d.len() - 4..].try_into().unwrap());
                    if crc32(&whole) == crc {
                        name = &name[..name.len() - 4];
                    }
                }
                self.file = String::from_utf8_lossy(name).into_owned();
                if !self.in_txn {
                    self.boundary_file = self.file.clone();
                    self.boundary_pos = position;
                }
                Ok(false)
            }
            // MariaDB GTID
            162 => {
                let d = ev.data();
                if d.len() >= 13 {
                    let seq = u64::from_le_bytes(d[0..8].try_into().unwrap());
                    let domain = u32::from_le_bytes(d[8..12].try_into().unwrap());
                    let flags = d[12];
                    let server = h.server_id();
                    self.gtids.insert(domain, (server, seq));
                    self.cur_gtid = Some(format!("{domain}-{server}-{seq}"));
                    // FL_STANDALONE (1): a single statement (DDL) without BEGIN/COMMIT.
                    self.in_txn = flags & 1 == 0;
                }
                Ok(false)
            }
            // MySQL GTID
            33 => {
                if let Ok(Some(EventData::GtidEvent(g))) = ev.read_data() {
                    let sid = g.sid();
                    let hex: String = sid.iter().map(|b| format!("{b:02x}")).collect();
                    self.cur_gtid = Some(format!(
                        "{}-{}-{}-{}-{}:{}",
                        &hex[0..8],
                        &hex[8..12],
                        &hex[12..16],
                        &hex[16..20],
                        &hex[20..32],
                        g.gno()
                    ));
                }
                Ok(false)
            }
            // QUERY
            2 => {
                let Ok(Some(EventData::QueryEvent(q))) = ev.read_data() else {
                    return Err(derr(&self.file, "bad query event".into()));
                };
                let sql = q.query();
                let t = sql.trim();
                let upper: String = t.chars().take(16).collect::<String>().to_ascii_uppercase();
                if upper.starts_with("BEGIN") || upper.starts_with("XA START") {
                    self.in_txn = true;
                    self.thread = Some(q.thread_id() as u64);
                    return Ok(false);
                }
                if upper.starts_with("COMMIT") || upper.starts_with("XA COMMIT") {
                    self.commit(log_pos, out);
                    return Ok(true);
                }
                if upper.starts_with("ROLLBACK") && !upper.starts_with("ROLLBACK TO") {
                    self.pending.clear();
                    self.pending_ddl.clear();
                    self.commit(log_pos, out);
                    return Ok(true);
                }
                if upper.starts_with("SAVEPOINT")
                    || upper.starts_with("XA ")
                    || upper.starts_with("ROLLBACK TO")
                {
                    return Ok(false);
                }
                // DDL (or another statement-logged query).
                let db = q.schema().into_owned();
                // Table shapes may have changed (also DEFAULTs, which TableMaps don't carry).
                self.tables.clear();
                self.versions.clear();
                if db.is_empty() || self.cfg.includes_db(&db) {
                    self.pending_ddl.push(SchemaChange {
                        db,
                        ddl: t.to_string(),
                        source: SourcePosition {
                            file: self.file.clone(),
                            pos: start,
                            row: 0,
                            gtid: self.cur_gtid.clone(),
                            server_id: h.server_id(),
                            ts_ms: h.timestamp() as i64 * 1000,
                            snapshot: SnapshotMarker::False,
                            thread: Some(q.thread_id() as u64),
                            query: None,
                            name: self.cfg.name.clone(),
                        },
                        tables: vec![],
                    });
                }
                if !self.in_txn {
                    self.commit(log_pos, out);
                    return Ok(true);
                }
                Ok(false)
            }
            // XID
            16 => {
                self.commit(log_pos, out);
                Ok(true)
            }
            // TABLE_MAP
            19 => {
                self.table_map(&ev).await?;
                Ok(false)
            }
            // rows events v1 (23-25) / v2 (30-32)
            23..=25 | 30..=32 => {
                self.rows(&ev, start).await?;
                Ok(false)
            }
            39 => Err(derr(
                &self.file,
                "PARTIAL_UPDATE_ROWS_EVENT: set binlog_row_value_options='' on the server".into(),
            )),
            165..=172 => Err(derr(
                &self.file,
                "compressed binlog event: set log_bin_compress=OFF on the server".into(),
            )),
            // binlog checkpoint / GTID list: positions between transactions.
            161 | 163 => {
                if !self.in_txn && log_pos > 0 {
                    self.boundary_file = self.file.clone();
                    self.boundary_pos = log_pos as u64;
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    async fn table_map(
        &mut self,
        ev: &mysql_async::binlog::events::Event,
    ) -> Result<(), CaptureError> {
        let data = ev.data();
        let table_id = le48(data);
        let body = data.get(6..).unwrap_or(&[]);
        if let Some(tv) = self.tables.get(&table_id) {
            if tv.raw == body {
                return Ok(());
            }
        }
        let tme: TableMapEvent<'_> = ev.read_event().map_err(|e| CaptureError::Decode {
            file: self.file.clone(),
            pos: 0,
            reason: format!("table map: {e}"),
        })?;
        let id = TableId::new(tme.database_name(), tme.table_name());
        if let Some(tv) = self.versions.get(&id) {
            if tv.raw == body {
                self.tables.insert(table_id, tv.clone());
                return Ok(());
            }
        }
        let included = self.cfg.includes(&id.db, &id.table);
        let mut tv = table_version(&tme, body.to_vec(), included).map_err(|reason| {
            CaptureError::Decode {
                file: self.file.clone(),
                pos: 0,
                reason: format!("{id}: {reason}"),
            }
        })?;
        if included {
            let mut conn = self.pool.get_conn().await?;
            if let Some((cols, pk)) = load_table(&mut conn, &id, self.flavor).await? {
                let mut s = (*tv.schema).clone();
                enrich(&mut s, tv.has_names, &cols, &pk);
                tv.schema = Arc::new(s);
            }
            tracing::debug!(table = %id, "new table version");
        }
        let tv = Arc::new(tv);
        self.versions.insert(id, tv.clone());
        self.tables.insert(table_id, tv);
        Ok(())
    }

    async fn rows(
        &mut self,
        ev: &mysql_async::binlog::events::Event,
        start: u64,
    ) -> Result<(), CaptureError> {
        let h = ev.header();
        let ty = h.event_type_raw();
        let data = ev.data();
        let table_id = le48(data);
        let Some(tv) = self.tables.get(&table_id).cloned() else {
            return Err(CaptureError::Decode {
                file: self.file.clone(),
                pos: start,
                reason: format!("rows event for unknown table id {table_id}"),
            });
        };
        if !tv.included {
            return Ok(());
        }
        let derr = |reason: String| CaptureError::Decode {
            file: self.file.clone(),
            pos: start,
            reason: format!("{}: {reason}", tv.schema.id),
        };
        let rd = match ev.read_data().map_err(|e| derr(e.to_string()))? {
            Some(EventData::RowsEvent(r)) => r,
            _ => return Err(derr("not a rows event".into())),
        };
        let before_cols: Option<Vec<bool>> = rd
            .columns_before_image()
            .map(|b| b.iter().by_vals().collect());
        let after_cols: Option<Vec<bool>> = rd
            .columns_after_image()
            .map(|b| b.iter().by_vals().collect());
        let nb = before_cols
            .as_ref()
            .map(|v| v.iter().filter(|x| **x).count())
            .unwrap_or(0);
        let na = after_cols
            .as_ref()
            .map(|v| v.iter().filter(|x| **x).count())
            .unwrap_or(0);
        let buf = rd.rows_data();
        let (is_write, is_update) = match ty {
            23 | 30 => (true, false),
            24 | 31 => (false, true),
            _ => (false, false),
        };
        let ts = now_ms();
        let mut p = 0usize;
        let mut row: u32 = 0;
        let key = &tv.schema.key;
        while p < buf.len() {
            let before = if !is_write {
                Some(
                    decode_image(&tv, before_cols.as_deref().unwrap_or(&[]), nb, buf, &mut p)
                        .map_err(derr)?,
                )
            } else {
                None
            };
            let after = if is_write || is_update {
                Some(
                    decode_image(&tv, after_cols.as_deref().unwrap_or(&[]), na, buf, &mut p)
                        .map_err(derr)?,
                )
            } else {
                None
            };
            let source = SourcePosition {
                file: self.file.clone(),
                pos: start,
                row,
                gtid: self.cur_gtid.clone(),
                server_id: h.server_id(),
                ts_ms: h.timestamp() as i64 * 1000,
                snapshot: SnapshotMarker::False,
                thread: self.thread,
                query: None,
                name: self.cfg.name.clone(),
            };
            row += 1;
            let mk = |op, before, after, source| ChangeEvent {
                schema: tv.schema.clone(),
                op,
                before,
                after,
                source,
                ts_ms: ts,
                transaction: None,
                kafka: None,
            };
            if is_write {
                self.pending.push(mk(Op::Insert, None, after, source));
            } else if is_update {
                let (b, a) = (before.unwrap(), after.unwrap());
                if !key.is_empty() && key.iter().any(|&k| b.get(k) != a.get(k)) {
                    // Primary-key change: Debezium emits a delete of the old key, then a create.
                    self.pending
                        .push(mk(Op::Delete, Some(b), None, source.clone()));
                    self.pending.push(mk(Op::Insert, None, Some(a), source));
                } else {
                    self.pending.push(mk(Op::Update, Some(b), Some(a), source));
                }
            } else {
                self.pending.push(mk(Op::Delete, before, None, source));
            }
        }
        Ok(())
    }

    /// How far behind the server's current binlog position the last delivered batch is.
    pub async fn lag(&mut self) -> Option<Lag> {
        let mut conn = self.pool.get_conn().await.ok()?;
        let row: Option<mysql_async::Row> = conn.query_first("SHOW MASTER STATUS").await.ok()?;
        let v: Vec<mysql_async::Value> = row?.unwrap();
        let server_file = crate::schema::vstr(&v[0])?;
        let server_pos = crate::schema::vu64(&v[1])?;
        let fs = tributary_model::binlog_file_seq(&server_file);
        let cs = tributary_model::binlog_file_seq(&self.boundary_file);
        let same = server_file == self.boundary_file;
        Some(Lag {
            bytes_behind: same.then(|| server_pos.saturating_sub(self.boundary_pos)),
            files_behind: fs.saturating_sub(cs),
            caught_up: self.snap.is_none() && same && self.boundary_pos >= server_pos,
            server_file,
            server_pos,
            checkpoint_file: self.boundary_file.clone(),
            checkpoint_pos: self.boundary_pos,
        })
    }

    /// Close connections.
    pub async fn close(mut self) {
        if let Some(s) = self.stream.take() {
            let _ = s.close().await;
        }
        let _ = self.pool.disconnect().await;
    }
}

fn le48(d: &[u8]) -> u64 {
    let mut v = 0u64;
    for (i, b) in d.iter().take(6).enumerate() {
        v |= (*b as u64) << (8 * i);
    }
    v
}

fn parse_gtid_set(s: &str) -> BTreeMap<u32, (u32, u64)> {
    let mut m = BTreeMap::new();
    for part in s.split(',') {
        let mut it = part.trim().split('-');
        if let (Some(d), Some(sv), Some(n)) = (it.next(), it.next(), it.next()) {
            if let (Ok(d), Ok(sv), Ok(n)) = (d.parse(), sv.parse(), n.parse()) {
                m.insert(d, (sv, n));
            }
        }
    }
    m
}

fn format_gtid_set(m: &BTreeMap<u32, (u32, u64)>) -> String {
    m.iter()
        .map(|(d, (s, n))| format!("{d}-{s}-{n}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// CRC-32 (IEEE), as used for binlog event checksums.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
