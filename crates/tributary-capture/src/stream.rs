//! The source: snapshot first (optional), then binlog streaming with transaction-aligned
//! batches, reconnect with backoff, table filtering.
//!
//! ## Positions come from what was read, never from the event header
//!
//! An event header's `log_pos` (the end of the event) is 0 for events written from a
//! transaction cache on MariaDB ≥ 11.4 with `binlog_legacy_event_pos=OFF` (11.8's default:
//! ANNOTATE/TABLE_MAP/ROWS events) and for every event inside a MySQL compressed transaction
//! (`binlog_transaction_compression=ON`). Taken as the source position, 0 made every streamed
//! change look older than the snapshot rows to the current table's stale-update guard. So
//! [`PosTracker`] counts bytes the way a replica does: the dump starts with a (fake) ROTATE
//! carrying the requested position; every event that is in the file starts where the last one
//! ended (next = start + event size); a real ROTATE moves to `(new file, position)`; a
//! FORMAT_DESCRIPTION is at offset 4 (one re-sent by a dump that starts later in the file is not
//! counted); heartbeats and events flagged `LOG_EVENT_ARTIFICIAL_F` are not in the file. Events
//! decompressed from a TRANSACTION_PAYLOAD event all get the payload event's position, and their
//! rows are numbered consecutively across the payload, so `(file, pos, row)` stays unique and
//! ordered. Where a header does carry a position, it must agree with the count (checked; a
//! disagreement is logged and the header's value taken — never worse than before).
//!
//! Counting needs every event of the file. A MariaDB primary leaves out the ANNOTATE_ROWS event
//! in front of each statement unless the replica asks for it, which `mysql_async` cannot do: on
//! MariaDB with `binlog_legacy_event_pos=OFF` the source therefore reads through
//! [`dump::MariaDump`], which asks (`BINLOG_SEND_ANNOTATE_ROWS_EVENT`). With legacy positions
//! (MariaDB < 11.4, or the setting ON) every header has its position and `mysql_async` is used;
//! should the setting be switched off while such a dump is open, the first rows event without a
//! position makes the source reopen the dump at the last transaction boundary.
//! A compressed payload whose events do not all arrive (the next event has a header position
//! before the payload's uncompressed bytes were handed out) stops capture with a decode error.
//!
//! ## Binlog epochs, lost positions, another server
//!
//! A file/position only means something in one numbering of one server's binlog. Every time a
//! dump is opened (start, reconnect) the boundary position is checked against the server
//! (`locate`), and positions carry the numbering's **epoch** (model docs: folded into the top
//! bits of the stale-update key, so a new epoch is never compared numerically with an old one):
//! * **Another server** (MySQL `@@server_uuid`, MariaDB `@@server_id` differ from the
//!   checkpoint's — a failover, a VIP moved): its file names and positions are unrelated. The
//!   dump starts from the stored GTID state in a new epoch — MariaDB `@slave_connect_state`
//!   (strict mode), MySQL COM_BINLOG_DUMP_GTID with the stored GTID set (`mysql_sids`); the
//!   server skips what the state contains. The positions of the skipped part are unknown, so
//!   until the first transaction read there ends no checkpoint is handed out (the stored one
//!   stays the truth) and positions come from the headers (a GTID event always has one).
//!   Without a stored GTID state it is a definite error with the fix (`tributary
//!   resnapshot`).
//! * **Purged**: the file is gone and every later file of the same basename is there — a
//!   definite error naming the file, what it means and the fix (`purged_error`); a dump that
//!   reports ERROR 1236 says the same.
//! * **Restarted numbering** (`RESET MASTER`, a new basename, or the file of that name is a
//!   new one: shorter than the position, or MariaDB's `BINLOG_GTID_POS` there is behind what
//!   was read, or no event starts at the position — `SHOW BINLOG EVENTS … FROM pos` says
//!   "Wrong offset"): streaming goes on at the start of the server's first binlog in epoch + 1,
//!   with a warning that changes written between the old position and the reset are not in
//!   the binlog (the fix, if there were any: `tributary resnapshot`).
//! * A dump open across `RESET MASTER` (MariaDB) waits on the deleted file forever without an
//!   error: an idle stream checks every 2 s whether its file is still listed and long enough,
//!   and whether MariaDB's GTID counters went back, and reopens (then `locate` decides). A real
//!   ROTATE to a lower sequence or another basename is a new epoch too.
//! * A re-snapshot (`tributary resnapshot`) is a new epoch: a batch that completes a table's
//!   snapshot in epoch > 0 names it in `BinlogCheckpoint::tables_snapshotted`, and apply
//!   deletes that table's current rows from earlier epochs (not read by the snapshot: gone)
//!   with a DELETE in history.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use mysql_async::binlog::events::{EventData, TableMapEvent, TransactionPayloadEvent};
use mysql_async::prelude::*;
use mysql_async::{BinlogStream, BinlogStreamRequest};
use tributary_model::{
    Batch, BinlogCheckpoint, ChangeEvent, Checkpoint, DeadLetter, ErrorClass, Op, SchemaChange,
    SnapshotMarker, SourcePosition, TableId,
};

use crate::decode::{decode_image, table_version, TableVersion};
use crate::schema::{enrich, load_table};
use crate::snapshot::{binlog_status, master_status, now_ms, SnapshotState, Snapshotter};
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
    /// Byte offset in `file` of the next event, counted from what was read.
    at: PosTracker,
    /// The dump may leave out events of the file (MariaDB's ANNOTATE_ROWS through
    /// `mysql_async`): counted positions are exact only up to the next header position.
    holes_possible: bool,
    /// Set by `handle` when the dump must be reopened (positions cannot be counted on it).
    reopen: bool,
    boundary_file: String,
    boundary_pos: u64,
    gtids: BTreeMap<u32, (u32, u64)>,
    /// MySQL: the GTID set executed up to the position read (`None` = unknown, not stored).
    mysql_gtids: Option<mysql_gtid::GtidSet>,
    /// MySQL: `(uuid, tag, gno)` of the transaction being read, added to `mysql_gtids` when it
    /// commits (a checkpoint never claims a transaction it does not include).
    mysql_txn_gtid: Option<(String, String, u64)>,
    cur_gtid: Option<String>,
    in_txn: bool,
    thread: Option<u64>,
    pending: Vec<ChangeEvent>,
    pending_ddl: Vec<SchemaChange>,
    /// Rows events of the current transaction that could not be decoded: dead-lettered with
    /// the transaction (see `rows`).
    pending_dead: Vec<DeadLetter>,
    /// Part of the current transaction was handed out in a batch that `continues`.
    handed_partial: bool,
    /// The stream was dropped after `handed_partial`: the next batch `restarts_txn`.
    restart_txn: bool,
    tables: HashMap<u64, Arc<TableVersion>>,
    versions: HashMap<TableId, Arc<TableVersion>>,
    stream: Option<Dump>,
    snap: Option<Snapshotter>,
    finished: bool,
    /// The binlog numbering the boundary position belongs to (see "Binlog epochs" above).
    epoch: u32,
    /// Identity of the server the boundary position belongs to (MySQL `@@server_uuid`,
    /// MariaDB `@@server_id`); `None` only for checkpoints stored before it was recorded.
    server: Option<String>,
    /// Resuming on another server from the GTID state: until the first transaction read there
    /// ends, checkpoints repeat this (the last one of the old server).
    gtid_resume: Option<BinlogCheckpoint>,
    /// Last time an idle stream checked that the server's binlog numbering is still its own.
    last_numbering_check: Instant,
    /// `gtids` as of the boundary position: a GTID event is recorded when read, before its
    /// transaction ends; a dump reopened at the boundary reads it again (and `locate` compares
    /// the server's state at the boundary with this).
    committed_gtids: BTreeMap<u32, (u32, u64)>,
}

/// Where a stored position is on the server now.
#[derive(Debug, Clone, PartialEq)]
enum Located {
    /// The file is there and holds the position.
    Here,
    /// The file is gone and every later file of the same numbering is there: purged.
    Purged { oldest: String },
    /// The server's numbering restarted (RESET MASTER, a new basename, a rewritten file):
    /// streaming goes on at the start of `first`, in a new epoch.
    Restarted { first: String, why: String },
}

/// The error for a stored position whose binlog file is gone.
pub(crate) fn purged_error(file: &str, pos: u64, oldest: &str) -> CaptureError {
    CaptureError::Checkpoint(format!(
        "the stored binlog position {file}:{pos} is no longer on the server: {file} was purged \
         (the oldest binlog there is {oldest}; binlog_expire_logs_seconds / expire_logs_days or \
         PURGE BINARY LOGS removed it). The changes between that position and {oldest} cannot \
         be read any more, so streaming cannot go on without losing them. Fix: run `tributary \
         resnapshot -c <config>` — it reads every table again, deletes warehouse rows that no \
         longer exist (with a DELETE in history) and streams from the new position; keep \
         binlogs longer than tributary can be stopped to avoid this"
    ))
}

/// A MySQL GTID set (`uuid:1-5:7,uuid:tag:1-3`) as COM_BINLOG_DUMP_GTID's SIDs: one per
/// (uuid, tag), parsed by mysql_common (which also turns the inclusive ends into the wire's
/// exclusive ones).
fn mysql_sids(set: &str) -> Result<Vec<mysql_async::Sid<'static>>, CaptureError> {
    let mut out = Vec::new();
    for entry in set.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let mut parts = entry.split(':');
        let uuid = parts.next().unwrap_or_default();
        // (tag, intervals) groups: a part starting with a digit is an interval of the last tag.
        let mut groups: Vec<(String, Vec<&str>)> = vec![(String::new(), vec![])];
        for p in parts {
            if p.starts_with(|c: char| c.is_ascii_digit()) {
                groups.last_mut().expect("one group").1.push(p);
            } else {
                groups.push((p.to_string(), vec![]));
            }
        }
        for (tag, ivs) in groups.into_iter().filter(|g| !g.1.is_empty()) {
            let text = if tag.is_empty() {
                format!("{uuid}:{}", ivs.join(":"))
            } else {
                format!("{uuid}:{tag}:{}", ivs.join(":"))
            };
            let sid: mysql_async::Sid<'static> = text.parse().map_err(|e| {
                CaptureError::Checkpoint(format!("stored GTID set {set:?}: {text:?}: {e}"))
            })?;
            out.push(sid);
        }
    }
    Ok(out)
}

/// Identity of the server behind `conn` (see [`MySqlSource::server`]).
async fn server_identity(
    conn: &mut mysql_async::Conn,
    flavor: Flavor,
) -> Result<String, CaptureError> {
    Ok(match flavor {
        Flavor::MySql => conn
            .query_first::<String, _>("SELECT @@server_uuid")
            .await?
            .unwrap_or_default(),
        Flavor::MariaDb => conn
            .query_first::<u64, _>("SELECT @@server_id")
            .await?
            .unwrap_or(0)
            .to_string(),
    })
}

/// `SHOW BINARY LOGS`: (file, size) in the server's order.
async fn binary_logs(conn: &mut mysql_async::Conn) -> Result<Vec<(String, u64)>, CaptureError> {
    let rows: Vec<mysql_async::Row> = conn.query("SHOW BINARY LOGS").await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let v: Vec<mysql_async::Value> = r.unwrap();
            Some((
                crate::schema::vstr(v.first()?)?,
                crate::schema::vu64(v.get(1)?)?,
            ))
        })
        .collect())
}

/// Where `file:pos` (read with GTID state `gtids`) is on the server behind `conn`.
async fn locate(
    conn: &mut mysql_async::Conn,
    flavor: Flavor,
    file: &str,
    pos: u64,
    gtids: &BTreeMap<u32, (u32, u64)>,
) -> Result<Located, CaptureError> {
    let logs = binary_logs(conn).await?;
    let Some(first) = logs.first().map(|l| l.0.clone()) else {
        return Err(CaptureError::Settings(
            "SHOW BINARY LOGS lists no binlog: is log_bin enabled?".into(),
        ));
    };
    if let Some((_, size)) = logs.iter().find(|(n, _)| n == file) {
        if pos > *size {
            return Ok(Located::Restarted {
                first,
                why: format!("{file} is now {size} bytes, shorter than the stored position {pos}"),
            });
        }
        if pos > 4 && pos < *size {
            // An event must start at the position (it is a transaction boundary): a file of
            // that name written anew (RESET, then as many bytes again) has its events elsewhere.
            let q = format!(
                "SHOW BINLOG EVENTS IN '{}' FROM {pos} LIMIT 1",
                file.replace('\\', "\\\\").replace('\'', "''")
            );
            match conn.query_drop(q).await {
                Ok(()) => {}
                // ER_ERROR_WHEN_EXECUTING_COMMAND: "Wrong offset or I/O error".
                Err(mysql_async::Error::Server(e)) if e.code == 1220 => {
                    return Ok(Located::Restarted {
                        first,
                        why: format!(
                            "no event starts at {file}:{pos} (the server says: {}): the file of \
                             that name is a new one",
                            e.message
                        ),
                    })
                }
                Err(e) => return Err(e.into()),
            }
        }
        if flavor == Flavor::MariaDb && !gtids.is_empty() && pos > 4 {
            // The GTID state at the position must be what was read up to it: otherwise the
            // file of that name is a new one (RESET MASTER, then as many files again).
            // A failed query is an error (retried by the caller when transient), never taken
            // for a rewritten binlog (that would re-read every retained file in a new epoch).
            let at: Option<Option<String>> = conn
                .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (file, pos))
                .await?;
            let there = at.flatten().map(|s| parse_gtid_set(&s));
            // Behind = a domain the server has there with a lower sequence than was read
            // (a domain missing from the answer — e.g. deleted with DELETE_DOMAIN_ID — is no
            // evidence).
            let behind = match &there {
                None => true,
                Some(m) => gtids
                    .iter()
                    .any(|(d, (_, seq))| m.get(d).is_some_and(|x| x.1 < *seq)),
            };
            if behind {
                return Ok(Located::Restarted {
                    first,
                    why: format!(
                        "the GTID state at {file}:{pos} is {:?}, not {} as read there: the file \
                         of that name is a new one",
                        there.map(|m| format_gtid_set(&m)).unwrap_or_default(),
                        format_gtid_set(gtids)
                    ),
                });
            }
        }
        return Ok(Located::Here);
    }
    let base = tributary_model::binlog_basename(file);
    let seq = tributary_model::binlog_file_seq(file);
    let same: Vec<&(String, u64)> = logs
        .iter()
        .filter(|(n, _)| tributary_model::binlog_basename(n) == base)
        .collect();
    if !same.is_empty()
        && same
            .iter()
            .all(|(n, _)| tributary_model::binlog_file_seq(n) > seq)
    {
        return Ok(Located::Purged {
            oldest: same[0].0.clone(),
        });
    }
    Ok(Located::Restarted {
        why: if same.is_empty() {
            format!("the server's binlogs are named {first}…, not {base}.*")
        } else {
            format!("{file} is gone and the server's binlogs start again at {first}")
        },
        first,
    })
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
        let opts = crate::mysqlconn::pool_opts(&crate::mysqlconn::mysql_target(&cfg.url)?).await?;
        let pool = mysql_async::Pool::new(opts);
        let mut conn = pool.get_conn().await?;
        conn.query_drop("SET SESSION time_zone = '+00:00'").await?;
        let server_id: u32 = conn.query_first("SELECT @@server_id").await?.unwrap_or(0);
        let identity = server_identity(&mut conn, report.flavor).await?;
        drop(conn);
        let mut src = MySqlSource {
            pipeline: format!("mysql:{}", cfg.name),
            flavor: report.flavor,
            pool,
            server_id,
            file: String::new(),
            at: PosTracker::default(),
            holes_possible: false,
            reopen: false,
            boundary_file: String::new(),
            boundary_pos: 4,
            gtids: BTreeMap::new(),
            mysql_gtids: None,
            mysql_txn_gtid: None,
            cur_gtid: None,
            in_txn: false,
            thread: None,
            pending: vec![],
            pending_ddl: vec![],
            pending_dead: vec![],
            handed_partial: false,
            restart_txn: false,
            tables: HashMap::new(),
            versions: HashMap::new(),
            stream: None,
            snap: None,
            finished: false,
            epoch: resume.as_ref().map(|c| c.epoch).unwrap_or(0),
            server: Some(identity.clone()),
            gtid_resume: None,
            last_numbering_check: Instant::now(),
            committed_gtids: BTreeMap::new(),
            cfg,
        };
        let mut gtid_set = None;
        // A checkpoint without a file is a new start in the epoch it names (written by
        // `tributary resnapshot`): the snapshot's rows are newer than every stored row.
        let resume = resume.filter(|cp| !(cp.file.is_empty() && cp.snapshot.is_none()));
        match resume {
            Some(cp) => {
                if cp.file.is_empty() {
                    return Err(CaptureError::Checkpoint("empty binlog file name".into()));
                }
                if cp.server.is_some() {
                    src.server = cp.server.clone();
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
                    if src.flavor == Flavor::MySql {
                        gtid_set = s.gtid_executed.clone();
                    }
                    src.boundary_file = s.position.file.clone();
                    src.boundary_pos = s.position.pos;
                    src.snap = Some(s);
                }
                SnapshotMode::Never => {
                    let mut c = connect(&src.cfg.url).await?;
                    let (fp, g) = binlog_status(&mut c).await?;
                    let _ = c.disconnect().await;
                    if src.flavor == Flavor::MySql {
                        gtid_set = g;
                    }
                    src.boundary_file = fp.file;
                    src.boundary_pos = fp.pos;
                }
            },
        }
        if let Some(s) = src.snap.as_mut() {
            s.epoch = src.epoch;
        }
        if gtid_set.is_none()
            && src.flavor == Flavor::MariaDb
            && src.server.as_deref() == Some(&identity)
        {
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
        match gtid_set {
            Some(g) if src.flavor == Flavor::MySql => {
                let set = mysql_gtid::GtidSet::parse(&g).map_err(CaptureError::Checkpoint)?;
                src.mysql_gtids = Some(set);
            }
            Some(g) => src.gtids = parse_gtid_set(&g),
            None => {}
        }
        src.committed_gtids = src.gtids.clone();
        src.file = src.boundary_file.clone();
        tracing::info!(
            name = %src.cfg.name, file = %src.boundary_file, pos = src.boundary_pos,
            epoch = src.epoch, snapshot = src.snap.is_some(), "capture source started"
        );
        Ok(src)
    }

    /// What `tributary check` says about a stored position on the server at `url`: `None`
    /// when streaming can resume from it; `Some((fatal, text))` otherwise — purged (fatal, with
    /// the fix), a restarted numbering (capture goes on in a new epoch; a warning), another
    /// server without a GTID position to resume from (fatal).
    pub async fn stored_position_problem(
        url: &str,
        cp: &BinlogCheckpoint,
    ) -> Result<Option<(bool, String)>, CaptureError> {
        if cp.file.is_empty() {
            return Ok(None);
        }
        let mut conn = connect(url).await?;
        let version: String = conn
            .query_first("SELECT VERSION()")
            .await?
            .unwrap_or_default();
        let flavor = if version.to_ascii_lowercase().contains("mariadb") {
            Flavor::MariaDb
        } else {
            Flavor::MySql
        };
        let identity = server_identity(&mut conn, flavor).await?;
        let gtids = parse_gtid_set(cp.gtid_set.as_deref().unwrap_or(""));
        if cp.server.as_deref().is_some_and(|s| s != identity) {
            let _ = conn.disconnect().await;
            if cp.gtid_set.as_deref().is_some_and(|g| !g.trim().is_empty()) {
                return Ok(None); // resumed from the GTID state (see `open_stream`)
            }
            return Ok(Some((
                true,
                format!(
                    "the stored position {}:{} belongs to server {}, this is server \
                     {identity}, and there is no GTID position to resume from — fix: \
                     tributary resnapshot -c <config>",
                    cp.file,
                    cp.pos,
                    cp.server.as_deref().unwrap_or("?")
                ),
            )));
        }
        let at = locate(&mut conn, flavor, &cp.file, cp.pos, &gtids).await?;
        let _ = conn.disconnect().await;
        Ok(match at {
            Located::Here => None,
            Located::Purged { oldest } => {
                Some((true, purged_error(&cp.file, cp.pos, &oldest).to_string()))
            }
            Located::Restarted { first, why } => Some((
                false,
                format!(
                    "the stored position {}:{} is from an earlier binlog numbering ({why}): \
                     capture goes on at {first}:4 in a new epoch; changes written between the \
                     stored position and the restart are not in the binlog — if there can have \
                     been any, run tributary resnapshot -c <config>",
                    cp.file, cp.pos
                ),
            )),
        })
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
        if let Some(cp) = &self.gtid_resume {
            // Nothing read on the new server yet: the old server's position stays the truth.
            return Checkpoint::Binlog(BinlogCheckpoint {
                snapshot,
                ..cp.clone()
            });
        }
        Checkpoint::Binlog(BinlogCheckpoint {
            file: self.boundary_file.clone(),
            pos: self.boundary_pos,
            gtid_set: if let Some(m) = self.mysql_gtids.as_ref().filter(|m| !m.is_empty()) {
                Some(m.to_string())
            // The set as of the last *completed* transaction: a MariaDB GTID event enters
            // `gtids` when it is read, and a batch can end inside its transaction (the stored
            // set must never claim a transaction the stored file/position has not reached:
            // a failover would skip it, a restart would see a rewritten binlog).
            } else if self.committed_gtids.is_empty() {
                None
            } else {
                Some(format_gtid_set(&self.committed_gtids))
            },
            snapshot,
            epoch: self.epoch,
            server: self.server.clone(),
            tables_snapshotted: vec![],
        })
    }

    /// The GTID state at the boundary as the server's syntax spells it (MariaDB
    /// `domain-server-seq,…`, MySQL `uuid:1-5,…`).
    fn gtid_state(&self) -> String {
        match self.flavor {
            Flavor::MariaDb => format_gtid_set(&self.gtids),
            Flavor::MySql => self
                .mysql_gtids
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default(),
        }
    }

    /// The binlog epoch of the position streaming is at (see "Binlog epochs" above).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// A new binlog numbering begins at `file:4`.
    fn new_epoch(&mut self, file: String, why: &str) -> Result<(), CaptureError> {
        if self.epoch >= tributary_model::MAX_EPOCH {
            return Err(CaptureError::Checkpoint(format!(
                "the source's binlog numbering restarted ({why}) more than {} times: re-create \
                 the warehouse tables and snapshot again",
                tributary_model::MAX_EPOCH
            )));
        }
        tracing::warn!(
            old_file = %self.boundary_file, old_pos = self.boundary_pos, new_file = %file,
            epoch = self.epoch + 1, why,
            "the source's binlog numbering restarted (RESET MASTER, a new log_bin basename or \
             another server): streaming goes on at the start of its first binlog in a new epoch. \
             Changes written after the old position and before the restart are not in the new \
             binlog; if there can have been any, run `tributary resnapshot`"
        );
        self.epoch += 1;
        self.boundary_file = file;
        self.boundary_pos = 4;
        self.gtids.clear();
        self.committed_gtids.clear();
        // MySQL: RESET BINARY LOGS AND GTIDS empties gtid_executed too; what the new numbering
        // holds is not known from here, so no set is stored in this epoch.
        self.mysql_gtids = None;
        self.cur_gtid = None;
        Ok(())
    }

    /// Called while the stream is idle (at most every 2 s): whether the server's binlog is
    /// still the numbering being read. A dump open across `RESET MASTER` on MariaDB waits on
    /// the deleted file forever, silently; this notices it (the boundary's file is gone or
    /// shorter than the position, or the server's GTID counters went back) and drops the
    /// stream, whose reopening finds the new numbering (`locate`).
    async fn numbering_changed(&mut self) -> Result<bool, CaptureError> {
        if self.last_numbering_check.elapsed() < Duration::from_secs(2) || self.in_txn {
            return Ok(false);
        }
        self.last_numbering_check = Instant::now();
        // A check, not the stream: a failure here is logged and the stream goes on.
        let mut conn = match self.pool.get_conn().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "binlog numbering check skipped");
                return Ok(false);
            }
        };
        let logs = match binary_logs(&mut conn).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "binlog numbering check skipped");
                return Ok(false);
            }
        };
        let same = logs
            .iter()
            .any(|(n, size)| *n == self.boundary_file && *size >= self.boundary_pos);
        if !same {
            return Ok(true);
        }
        if self.flavor == Flavor::MariaDb && !self.gtids.is_empty() {
            let now: Option<String> = conn
                .query_first("SELECT @@gtid_binlog_pos")
                .await
                .unwrap_or_default();
            let Some(now) = now else {
                return Ok(false);
            };
            let m = parse_gtid_set(&now);
            if self
                .gtids
                .iter()
                .any(|(d, (_, seq))| m.get(d).map(|x| x.1 < *seq).unwrap_or(true))
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The next batch: snapshot chunk, or whole binlog transactions (at least one when any is
    /// available within the heartbeat period; an empty batch otherwise). A transaction of
    /// more than `max_events` changes is handed out in parts of `max_events`: every part
    /// but the last [`continues`](Batch::continues) and has no checkpoint, so memory is
    /// bounded by `max_events` whatever the transaction's size (the sink commits the parts
    /// together). Should the stream be lost inside such a transaction, it is read again
    /// from its start and the next batch [`restarts_txn`](Batch::restarts_txn).
    pub async fn next_batch(&mut self, max_events: usize) -> Result<Batch, CaptureError> {
        let max = max_events.max(1);
        if let Some(snap) = self.snap.as_mut() {
            let done_before = snap.state().tables_done.len();
            let (events, done) = snap.next_chunk(max, self.flavor).await?;
            let schema_changes = snap.take_history();
            // Tables this chunk completed: in a re-snapshot (epoch > 0) apply removes their
            // rows the snapshot did not read (see `BinlogCheckpoint::tables_snapshotted`).
            let completed: Vec<TableId> = if self.epoch > 0 {
                snap.state().tables_done[done_before..]
                    .iter()
                    .filter_map(|t| t.split_once('.'))
                    .map(|(d, t)| TableId::new(d, t))
                    .collect()
            } else {
                vec![]
            };
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
            let mut cp = self.checkpoint(state);
            if let Checkpoint::Binlog(b) = &mut cp {
                b.tables_snapshotted = completed;
            }
            return Ok(Batch {
                events,
                schema_changes,
                checkpoint: Some(cp),
                pipeline: self.pipeline.clone(),
                ..Default::default()
            });
        }
        let mut out = Batch {
            pipeline: self.pipeline.clone(),
            restarts_txn: std::mem::take(&mut self.restart_txn),
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
                None => {
                    if !have_txn && self.numbering_changed().await? {
                        tracing::warn!(file = %self.boundary_file, pos = self.boundary_pos,
                            "the binlog being read is gone from the server or was rewritten: reopening");
                        self.drop_stream();
                    }
                    break;
                }
                Some(None) | Some(Some(Err(_))) => {
                    if let Some(Some(Err(e))) = next {
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
                    } else if self.reopen {
                        // (see `holes_possible`) Re-read from the last boundary.
                        self.reopen = false;
                        tracing::warn!("binlog events without positions (binlog_legacy_event_pos=OFF): reopening the binlog dump");
                        self.drop_stream();
                        if have_txn {
                            break;
                        }
                    } else if self.in_txn && self.pending.len() >= max {
                        if have_txn {
                            break; // the complete transactions first
                        }
                        // A transaction larger than a batch: hand out this part now.
                        out.events.append(&mut self.pending);
                        out.dead_letters.append(&mut self.pending_dead);
                        out.continues = true;
                        self.handed_partial = true;
                        return Ok(out);
                    }
                }
            }
        }
        // A source transaction handed out in part and not finished yet: the sink keeps its
        // PostgreSQL transaction open (no checkpoint — never half a source transaction
        // committed).
        if self.in_txn && self.handed_partial {
            out.continues = true;
            return Ok(out);
        }
        // While resuming by GTID on another server nothing has been read there yet: no
        // checkpoint (the stored one stays; `--until-caught-up` cannot mistake the old
        // server's position for this one's).
        out.checkpoint = self.gtid_resume.is_none().then(|| self.checkpoint(None));
        Ok(out)
    }

    /// Forget the connection and any partially read transaction; the next read reconnects at
    /// the last transaction boundary.
    fn drop_stream(&mut self) {
        self.stream = None;
        if std::mem::take(&mut self.handed_partial) {
            self.restart_txn = true;
        }
        self.pending.clear();
        self.pending_ddl.clear();
        self.pending_dead.clear();
        self.in_txn = false;
        self.cur_gtid = None;
        self.mysql_txn_gtid = None;
        self.gtids.clone_from(&self.committed_gtids);
        self.file = self.boundary_file.clone();
        self.at = PosTracker::new(self.boundary_pos);
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

    async fn open_stream(&mut self) -> Result<Dump, CaptureError> {
        let mut conn = connect(&self.cfg.url).await?;
        let hb = self.cfg.heartbeat.as_nanos().max(1_000_000);
        // Is the boundary position this server's, and still there? (See "Binlog epochs".)
        let identity = server_identity(&mut conn, self.flavor).await?;
        let mut by_gtid = None;
        if self.server.as_deref().is_some_and(|s| s != identity) {
            let resumable = match self.flavor {
                Flavor::MariaDb => !self.gtids.is_empty(),
                Flavor::MySql => self.mysql_gtids.as_ref().is_some_and(|m| !m.is_empty()),
            };
            if !resumable {
                return Err(CaptureError::Checkpoint(format!(
                    "the stored position {}:{} belongs to server {}, but {} is server {identity}; \
                     file names and positions differ between servers and {} — fix: run \
                     `tributary resnapshot -c <config>` against this server",
                    self.boundary_file,
                    self.boundary_pos,
                    self.server.as_deref().unwrap_or("?"),
                    crate::mysqlconn::mysql_target(&self.cfg.url)
                        .map(|t| format!("{}:{}", t.opts.ip_or_hostname(), t.opts.tcp_port()))
                        .unwrap_or_default(),
                    "no GTID position was stored to resume from"
                )));
            }
            if self.gtid_resume.is_none() {
                let Checkpoint::Binlog(old) = self.checkpoint(None) else {
                    unreachable!()
                };
                if self.epoch >= tributary_model::MAX_EPOCH {
                    return Err(CaptureError::Checkpoint(format!(
                        "binlog epoch {} is the last one: re-create the warehouse tables and \
                         snapshot again",
                        self.epoch
                    )));
                }
                tracing::warn!(
                    old_server = %self.server.as_deref().unwrap_or("?"), new_server = %identity,
                    gtid = %self.gtid_state(), epoch = self.epoch + 1,
                    "the source is another server (failover): resuming from the GTID state"
                );
                self.gtid_resume = Some(old);
                self.epoch += 1;
            }
            by_gtid = Some(self.gtid_state());
        } else {
            let at = match locate(
                &mut conn,
                self.flavor,
                &self.boundary_file,
                self.boundary_pos,
                &self.committed_gtids,
            )
            .await
            {
                Ok(at) => at,
                // A server that refuses the check (a privilege): the dump itself still says
                // ERROR 1236 for a position that is not there (mapped to the same fix).
                Err(e) if !e.is_transient() => {
                    tracing::warn!(error = %e, "could not check the stored binlog position (SHOW BINARY LOGS / SHOW BINLOG EVENTS); streaming from it");
                    Located::Here
                }
                Err(e) => return Err(e),
            };
            match at {
                Located::Here => {}
                Located::Purged { oldest } => {
                    return Err(purged_error(
                        &self.boundary_file,
                        self.boundary_pos,
                        &oldest,
                    ))
                }
                Located::Restarted { first, why } => self.new_epoch(first, &why)?,
            }
            self.server = Some(identity);
        }
        let file = if by_gtid.is_some() {
            String::new()
        } else {
            self.boundary_file.clone()
        };
        let start_pos = if by_gtid.is_some() {
            4
        } else {
            self.boundary_pos
        };
        // MariaDB without legacy event positions: only a dump that includes ANNOTATE_ROWS
        // events lets positions be counted (see `dump`).
        let counted = self.flavor == Flavor::MariaDb && {
            let v: Option<(String, String)> = conn
                .query_first("SHOW GLOBAL VARIABLES LIKE 'binlog_legacy_event_pos'")
                .await?;
            matches!(v, Some((_, v)) if v.eq_ignore_ascii_case("OFF") || v == "0")
        };
        let s = if counted {
            let _ = conn.disconnect().await;
            Dump::Maria(
                dump::MariaDump::open(
                    &self.cfg.url,
                    self.cfg.server_id,
                    hb,
                    &file,
                    start_pos,
                    by_gtid.as_deref(),
                )
                .await?,
            )
        } else {
            if self.flavor == Flavor::MariaDb {
                conn.query_drop("SET @mariadb_slave_capability = 4").await?;
            }
            conn.query_drop(format!("SET @master_heartbeat_period = {hb}"))
                .await?;
            if let (Some(state), Flavor::MariaDb) = (&by_gtid, self.flavor) {
                // MariaDB starts the dump at this GTID state, whatever file/pos say.
                conn.exec_drop("SET @slave_connect_state = ?", (state.as_str(),))
                    .await?;
                conn.query_drop("SET @slave_gtid_strict_mode = 1").await?;
            }
            let mut req = BinlogStreamRequest::new(self.cfg.server_id)
                .with_filename(file.as_bytes())
                .with_pos(start_pos);
            if let (Some(state), Flavor::MySql) = (&by_gtid, self.flavor) {
                // MySQL: COM_BINLOG_DUMP_GTID, the server sends what the set does not hold.
                req = req.with_gtid().with_gtid_set(mysql_sids(state)?);
            }
            Dump::Lib(conn.get_binlog_stream(req).await?)
        };
        self.file = file.clone();
        self.at = PosTracker::new(start_pos);
        // A dump started from a GTID state skips the transactions before it: positions are
        // taken from the headers (the GTID event that starts a transaction always has one)
        // until the first transaction ends.
        self.holes_possible = self.flavor == Flavor::MariaDb && !counted;
        tracing::info!(file = %file, pos = start_pos, counted, epoch = self.epoch,
            gtid = by_gtid.as_deref().unwrap_or(""), "binlog streaming");
        Ok(s)
    }

    /// Commit the buffered transaction into `out`; the next transaction starts at `next`
    /// (the counted position after the event that ended this one).
    fn commit(&mut self, next: u64, out: &mut Batch) {
        // DDL ends its transaction (implicit commit): it comes after the rows before it.
        for _ in 0..self.pending_ddl.len() {
            out.schema_change_after
                .push(out.events.len() + self.pending.len());
        }
        out.events.append(&mut self.pending);
        out.schema_changes.append(&mut self.pending_ddl);
        out.dead_letters.append(&mut self.pending_dead);
        self.handed_partial = false;
        self.in_txn = false;
        self.cur_gtid = None;
        if let Some((uuid, tag, gno)) = self.mysql_txn_gtid.take() {
            if let Some(set) = self.mysql_gtids.as_mut() {
                set.add(&uuid, &tag, gno);
            }
        }
        self.thread = None;
        self.boundary_file = self.file.clone();
        self.boundary_pos = next;
        if self.committed_gtids != self.gtids {
            self.committed_gtids.clone_from(&self.gtids);
        }
        if self.gtid_resume.take().is_some() {
            // The first transaction on the new server ended: its positions are real now.
            tracing::info!(file = %self.boundary_file, pos = next, "resumed on the new server by GTID");
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
        let uncompressed = if ty == TRANSACTION_PAYLOAD {
            match ev.read_event::<TransactionPayloadEvent<'_>>() {
                Ok(p) => p.uncompressed_size(),
                Err(e) => {
                    return Err(CaptureError::Decode {
                        file: self.file.clone(),
                        pos: self.at.next,
                        reason: format!("transaction payload event: {e}"),
                    })
                }
            }
        } else {
            0
        };
        let placed = self
            .at
            .place(ty, h.event_size(), h.log_pos(), h.flags_raw(), uncompressed);
        if self.holes_possible && h.log_pos() == 0 && (ty == 19 || (23..=32).contains(&ty)) {
            // Legacy event positions were switched off while this dump (which leaves out
            // ANNOTATE_ROWS events) was open: reconnect at the last boundary with a dump that
            // lets positions be counted.
            self.reopen = true;
            return Ok(false);
        }
        if let Some(left) = placed.payload_unread {
            // Never go on past a transaction that was not read whole.
            return Err(CaptureError::Decode {
                file: self.file.clone(),
                pos: placed.start,
                reason: format!(
                    "a compressed transaction (binlog_transaction_compression) before this \
                     position could not be read whole ({left} uncompressed bytes missing)"
                ),
            });
        }
        if let Some(header) = placed.header_disagrees {
            if self.holes_possible || self.gtid_resume.is_some() {
                tracing::debug!(file = %self.file, counted = placed.start, header_end = header, "position from the header");
            } else {
                tracing::warn!(
                    file = %self.file, event_type = ty, counted = placed.start,
                    header_end = header, "binlog position count disagrees with the event header; taking the header's"
                );
            }
        }
        tracing::trace!(
            file = %self.file, event_type = ty, size = h.event_size(), header_end = h.log_pos(),
            flags = h.flags_raw(), start = placed.start, row0 = placed.row0, "binlog event"
        );
        // Where this event is, and where the next transaction starts if it ends one.
        let start = placed.start;
        let next = placed.after;
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
                let new_file = String::from_utf8_lossy(name).into_owned();
                // A real ROTATE (not the dump's fake one) to a lower sequence or another
                // basename: the server's numbering restarted under the open dump.
                if h.flags_raw() & ARTIFICIAL == 0
                    && !self.file.is_empty()
                    && !self.in_txn
                    && (tributary_model::binlog_basename(&new_file)
                        != tributary_model::binlog_basename(&self.file)
                        || tributary_model::binlog_file_seq(&new_file)
                            < tributary_model::binlog_file_seq(&self.file))
                {
                    let why = format!("the binlog rotated from {} to {new_file}", self.file);
                    self.new_epoch(new_file.clone(), &why)?;
                }
                self.file = new_file;
                self.at.rotate(position);
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
            // MySQL GTID (33) and tagged GTID (42, MySQL ≥ 8.3: `uuid:tag:N`, in MySQL's
            // serialization format, parsed by mysql_common ≥ 0.37). A GTID that cannot be read
            // stops capture: positions and the source block must never lose it silently.
            33 | 42 => {
                let g = match ev.read_data() {
                    Ok(Some(EventData::GtidEvent(g))) => g,
                    other => {
                        return Err(derr(
                            &self.file,
                            format!(
                                "GTID event (type {ty}) could not be read: {}",
                                match other {
                                    Err(e) => e.to_string(),
                                    Ok(_) => "not a GTID event".to_string(),
                                }
                            ),
                        ))
                    }
                };
                let sid = g.sid();
                let hex: String = sid.iter().map(|b| format!("{b:02x}")).collect();
                let tag = g.tag().map(|t| t.to_string()).unwrap_or_default();
                let uuid = format!(
                    "{}-{}-{}-{}-{}",
                    &hex[0..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..32]
                );
                self.mysql_txn_gtid = Some((uuid.clone(), tag.clone(), g.gno()));
                self.cur_gtid = Some(if tag.is_empty() {
                    format!("{uuid}:{}", g.gno())
                } else {
                    format!("{uuid}:{tag}:{}", g.gno())
                });
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
                    self.commit(next, out);
                    return Ok(true);
                }
                if upper.starts_with("ROLLBACK") && !upper.starts_with("ROLLBACK TO") {
                    self.pending.clear();
                    self.pending_ddl.clear();
                    self.pending_dead.clear();
                    self.commit(next, out);
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
                // Kept when it ran in a captured database or names a captured table from
                // another one (`USE other; ALTER TABLE captured.t …`): apply follows it.
                let touches_captured = || {
                    tributary_model::ddl::parse(&db, t).is_ok_and(|actions| {
                        actions
                            .iter()
                            .flat_map(|a| a.tables())
                            .any(|tid| self.cfg.includes_db(&tid.db))
                    })
                };
                if db.is_empty() || self.cfg.includes_db(&db) || touches_captured() {
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
                            // Debezium: the thread of the last BEGIN (none on MariaDB, whose
                            // transactions start with a GTID event), not the DDL's own.
                            thread: self.thread,
                            query: None,
                            name: self.cfg.name.clone(),
                            epoch: self.epoch,
                        },
                        tables: vec![],
                    });
                }
                if !self.in_txn {
                    self.commit(next, out);
                    return Ok(true);
                }
                Ok(false)
            }
            // XID
            16 => {
                self.commit(next, out);
                Ok(true)
            }
            // TABLE_MAP
            19 => {
                self.table_map(&ev).await?;
                Ok(false)
            }
            // rows events v1 (23-25) / v2 (30-32)
            23..=25 | 30..=32 => {
                let n = self.rows(&ev, start, placed.row0).await?;
                self.at.rows_emitted(n);
                Ok(false)
            }
            39 => Err(derr(
                &self.file,
                "PARTIAL_UPDATE_ROWS_EVENT (a partial JSON update, binlog_row_value_options=\
                 PARTIAL_JSON — also settable per session by any client) is not supported: SET \
                 GLOBAL binlog_row_value_options='' (and in my.cnf [mysqld]), make sure no \
                 client sets it for its session, then re-snapshot from a position after this \
                 event"
                    .into(),
            )),
            // XA_PREPARE: the rows before it are committed (or rolled back) by a later,
            // separate XA COMMIT / XA ROLLBACK. Applying them now could apply a rollback;
            // holding them would need the position held back until the XA ends. Not
            // supported: stop loudly rather than apply what the source may roll back.
            38 => Err(derr(
                &self.file,
                format!(
                    "XA PREPARE at position {start}: XA transactions are not supported by \
                     capture (their changes are committed or rolled back by a later XA COMMIT / \
                     XA ROLLBACK); stop using XA on captured tables, then re-snapshot from a \
                     position after it"
                ),
            )),
            165..=172 => Err(derr(
                &self.file,
                "compressed binlog event: set log_bin_compress=OFF on the server".into(),
            )),
            // binlog checkpoint / GTID list: positions between transactions.
            161 | 163 => {
                if !self.in_txn {
                    self.boundary_file = self.file.clone();
                    self.boundary_pos = next;
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
        let geometry_has_charset = self.flavor == Flavor::MariaDb;
        let mut tv = table_version(&tme, body.to_vec(), included, geometry_has_charset).map_err(
            |reason| CaptureError::Decode {
                file: self.file.clone(),
                pos: 0,
                reason: format!("{id}: {reason}"),
            },
        )?;
        if included {
            let mut conn = self.pool.get_conn().await?;
            // At the start of the transaction holding the TABLE_MAP (where a restart resumes).
            let unnamed = |reason: String| CaptureError::Decode {
                file: self.boundary_file.clone(),
                pos: self.boundary_pos,
                reason: format!("{id}: {reason}"),
            };
            match load_table(&mut conn, &id, self.flavor).await? {
                Some((cols, pk)) => {
                    let mut s = (*tv.schema).clone();
                    enrich(&mut s, tv.has_names, &cols, &pk).map_err(unnamed)?;
                    if !tv.has_names {
                        // The decoder reads signedness from its column decoders: a TABLE_MAP
                        // without metadata (MariaDB's NO_LOG) has none, information_schema does
                        // (BIGINT UNSIGNED values above 2^63 were read as negative).
                        for (d, c) in tv.cols.iter_mut().zip(&s.columns) {
                            if let tributary_model::ColumnKind::Int { unsigned, .. } = c.kind {
                                d.unsigned = unsigned;
                            }
                        }
                    }
                    if !tv.has_names && !tv.has_charsets {
                        // Nor character sets (NO_LOG): text in the column's own character set
                        // (a latin1 'é' was read as utf8mb4, U+FFFD), bytes as bytes (a BLOB
                        // was read as text).
                        for ((d, c), i) in tv.cols.iter_mut().zip(&s.columns).zip(&cols) {
                            match c.kind {
                                tributary_model::ColumnKind::Bytes { .. } => {
                                    d.cs = crate::decode::Cs::Binary
                                }
                                tributary_model::ColumnKind::String { .. } => {
                                    if let Some(cs) =
                                        i.collation_id.and_then(crate::decode::Cs::from_collation)
                                    {
                                        d.cs = cs;
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                    tv.schema = Arc::new(s);
                }
                // Without names in the TABLE_MAP the columns cannot be named: stop.
                None if !tv.has_names => {
                    return Err(unnamed(
                        "the TABLE_MAP carries no column names (binlog_row_metadata=MINIMAL/\
                         NO_LOG) and the table no longer exists in information_schema, so its \
                         columns cannot be named: SET GLOBAL binlog_row_metadata=FULL for new \
                         events; for these, exclude the table or re-snapshot from a position \
                         after its DROP"
                            .into(),
                    ))
                }
                None => {}
            }
            tracing::debug!(table = %id, "new table version");
        }
        let tv = Arc::new(tv);
        self.versions.insert(id, tv.clone());
        self.tables.insert(table_id, tv);
        Ok(())
    }

    /// Decode a rows event at `start`; its rows are numbered from `row0` (non-zero only inside a
    /// compressed transaction payload). Returns the number of rows decoded.
    async fn rows(
        &mut self,
        ev: &mysql_async::binlog::events::Event,
        start: u64,
        row0: u32,
    ) -> Result<u32, CaptureError> {
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
            return Ok(0);
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
        let mut row: u32 = row0;
        let key = &tv.schema.key;
        while p < buf.len() {
            // A row that cannot be decoded (a value its column type cannot hold, an ENUM index
            // without a label, corrupt bytes) does not stop capture for good: this row and the
            // rest of its rows event — whose boundaries are unknown after it — become one dead
            // letter with the event's bytes and the reason; the rows before it are kept.
            let decoded = (|| -> Result<_, String> {
                let before = if !is_write {
                    Some(decode_image(
                        &tv,
                        before_cols.as_deref().unwrap_or(&[]),
                        nb,
                        buf,
                        &mut p,
                    )?)
                } else {
                    None
                };
                let after = if is_write || is_update {
                    Some(decode_image(
                        &tv,
                        after_cols.as_deref().unwrap_or(&[]),
                        na,
                        buf,
                        &mut p,
                    )?)
                } else {
                    None
                };
                Ok((before, after))
            })();
            let (before, after) = match decoded {
                Ok(x) => x,
                Err(reason) => {
                    let e = derr(reason);
                    tracing::error!(error = %e, row = row - row0, "undecodable row: dead-lettered");
                    self.pending_dead.push(DeadLetter {
                        topic: format!("{}.{}", self.cfg.name, tv.schema.id),
                        partition: -1,
                        offset: capture_dead_letter_offset(&self.file, start, row),
                        key: None,
                        value: Some(data.to_vec()),
                        stage: "capture".into(),
                        reason: format!(
                            "{e} (row {} of the rows event and the rest of it; value = the \
                             rows event's bytes; re-snapshot the table to repair it)",
                            row - row0
                        ),
                    });
                    break;
                }
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
                epoch: self.epoch,
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
        Ok(row - row0)
    }

    /// How far behind the server's current binlog position the last delivered batch is.
    pub async fn lag(&mut self) -> Option<Lag> {
        let mut conn = self.pool.get_conn().await.ok()?;
        let fp = master_status(&mut conn).await.ok()?;
        let (server_file, server_pos) = (fp.file, fp.pos);
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
            s.close().await;
        }
        let _ = self.pool.disconnect().await;
    }
}

/// MySQL `TRANSACTION_PAYLOAD_EVENT`: a compressed transaction; the reader hands out the
/// events inside it right after it.
const TRANSACTION_PAYLOAD: u8 = 40;
const FORMAT_DESCRIPTION: u8 = 15;
/// `HEARTBEAT_LOG_EVENT` (MySQL and MariaDB) and MySQL's `HEARTBEAT_LOG_EVENT_V2`.
const HEARTBEATS: [u8; 2] = [27, 41];
/// `LOG_EVENT_ARTIFICIAL_F`: made up by the dump thread, not in the binlog file.
const ARTIFICIAL: u16 = 0x20;

/// The binlog position of the events of one dump connection, counted from what was read (see
/// the module docs for the rules and why the header's `log_pos` cannot be used).
#[derive(Debug, Clone, PartialEq, Default)]
struct PosTracker {
    /// Offset of the next event in the file.
    next: u64,
    /// Events still to come from a compressed transaction payload.
    payload: Option<Payload>,
}

#[derive(Debug, Clone, PartialEq)]
struct Payload {
    /// Position of the payload event (shared by every event inside it).
    pos: u64,
    /// Uncompressed bytes not yet handed out as events.
    left: u64,
    /// Rows numbered so far inside the payload.
    rows: u32,
}

/// Where one event is.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Placed {
    /// Position of the event (the payload event's for an event inside a payload).
    start: u64,
    /// Where reading resumes after this event (a transaction ending here ends there).
    after: u64,
    /// First row number for a rows event (consecutive across a payload's rows events).
    row0: u32,
    /// `Some(log_pos)` when the header carried a position the count disagreed with.
    header_disagrees: Option<u32>,
    /// A compressed payload ended with this many uncompressed bytes never handed out as events
    /// (the next event carried a header position, which no event inside a payload does).
    payload_unread: Option<u64>,
}

impl PosTracker {
    fn new(pos: u64) -> Self {
        PosTracker {
            next: pos,
            payload: None,
        }
    }

    /// A ROTATE event (the fake one at the start of a dump, or the real one at the end of a
    /// file): the next event is at `position` of the new file.
    fn rotate(&mut self, position: u64) {
        self.next = position;
        self.payload = None;
    }

    /// Place an event with header fields `ty`, `size`, `log_pos` (the header's end position,
    /// possibly 0), `flags`; `uncompressed` is a payload event's uncompressed size.
    fn place(&mut self, ty: u8, size: u32, log_pos: u32, flags: u16, uncompressed: u64) -> Placed {
        let size = size as u64;
        let mut payload_unread = None;
        if log_pos != 0 {
            if let Some(p) = self.payload.take() {
                payload_unread = Some(p.left);
            }
        }
        if let Some(p) = self.payload.as_mut() {
            // An event from inside the payload: its header's size counts uncompressed bytes.
            p.left = p.left.saturating_sub(size);
            let placed = Placed {
                start: p.pos,
                // Mid-payload, reading can only resume at the payload itself.
                after: if p.left == 0 { self.next } else { p.pos },
                row0: p.rows,
                header_disagrees: None,
                payload_unread: None,
            };
            if p.left == 0 {
                self.payload = None;
            }
            return placed;
        }
        let here = Placed {
            start: self.next,
            after: self.next,
            row0: 0,
            header_disagrees: None,
            payload_unread,
        };
        if ty == FORMAT_DESCRIPTION {
            // Always the first event of a file, at 4. A dump starting later in the file re-sends
            // it (with log_pos 0): it does not move the position then.
            if self.next > 4 {
                return here;
            }
            self.next = 4;
        } else if ty == 4 || HEARTBEATS.contains(&ty) || (flags & ARTIFICIAL != 0) {
            // ROTATE: `rotate` sets the position; the others are not in the file.
            return here;
        }
        let start = self.next;
        let mut end = start + size;
        let mut header_disagrees = None;
        if log_pos != 0 && log_pos as u64 != end & 0xFFFF_FFFF {
            // Only possible if the count missed an event: the header, where present, has
            // always been right.
            header_disagrees = Some(log_pos);
            end = (end & !0xFFFF_FFFF) | log_pos as u64;
        }
        self.next = end;
        if ty == TRANSACTION_PAYLOAD && uncompressed > 0 {
            self.payload = Some(Payload {
                pos: start,
                left: uncompressed,
                rows: 0,
            });
        }
        Placed {
            start: end.saturating_sub(size),
            after: if self.payload.is_some() { start } else { end },
            row0: 0,
            header_disagrees,
            payload_unread,
        }
    }

    /// A rows event placed inside a payload produced `n` rows.
    fn rows_emitted(&mut self, n: u32) {
        if let Some(p) = self.payload.as_mut() {
            p.rows += n;
        }
    }
}

mod dump;
mod mysql_gtid;

/// The binlog dump connection: `mysql_async`'s, or [`dump::MariaDump`] where positions must be
/// counted on MariaDB.
enum Dump {
    Lib(BinlogStream),
    Maria(dump::MariaDump),
}

impl Dump {
    /// The next event (`None`: the server ended the stream). Cancel-safe.
    async fn next(&mut self) -> Option<Result<mysql_async::binlog::events::Event, CaptureError>> {
        match self {
            Dump::Lib(s) => s.next().await.map(|r| {
                r.map_err(|e| match &e {
                    // ER_MASTER_FATAL_ERROR_READING_BINLOG: the position is not there.
                    mysql_async::Error::Server(se) if se.code == 1236 => {
                        CaptureError::Checkpoint(format!(
                            "{e} — the binlog position tributary must resume from is not on the \
                             server (purged, or the binlog was reset); run `tributary resnapshot \
                             -c <config>`"
                        ))
                    }
                    _ => CaptureError::from(e),
                })
            }),
            Dump::Maria(d) => d.next().await,
        }
    }

    async fn close(self) {
        match self {
            Dump::Lib(s) => {
                let _ = s.close().await;
            }
            Dump::Maria(d) => drop(d),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `(type, size, header log_pos, flags)` of events as a dump sends them.
    fn run(t: &mut PosTracker, evs: &[(u8, u32, u32, u16)]) -> Vec<(u64, u64)> {
        evs.iter()
            .map(|&(ty, size, log_pos, flags)| {
                let p = t.place(ty, size, log_pos, flags, 0);
                assert_eq!(p.header_disagrees, None, "event {ty} at {}", p.start);
                (p.start, p.after)
            })
            .collect()
    }

    /// The start of a real MariaDB 11.8.9 binlog (`binlog_legacy_event_pos=OFF`): events of a
    /// transaction (ANNOTATE 160, TABLE_MAP 19, WRITE_ROWS 23) carry log_pos 0.
    const MARIA118: [(u8, u32, u32, u16); 11] = [
        (15, 252, 256, 1),
        (163, 29, 285, 0),
        (161, 37, 322, 0),
        (162, 42, 364, 8),
        (2, 81, 445, 8),
        (162, 42, 652, 8),
        (160, 61, 0, 0),
        (19, 44, 0, 0),
        (23, 47, 0, 0),
        (16, 31, 835, 0),
        (162, 42, 877, 8),
    ];

    #[test]
    fn counts_positions_from_the_start_of_a_file_where_headers_say_zero() {
        let mut t = PosTracker::new(4);
        // The fake rotate carries the requested position.
        assert_eq!(t.place(4, 44, 0, ARTIFICIAL, 0).start, 4);
        t.rotate(4);
        let mut evs = MARIA118.to_vec();
        // (a DDL of 123 bytes between 487 and 610 in the real file)
        evs.insert(5, (162, 42, 487, 8));
        evs.insert(6, (2, 123, 610, 0));
        let got = run(&mut t, &evs);
        let starts: Vec<u64> = got.iter().map(|g| g.0).collect();
        assert_eq!(
            starts,
            [4, 256, 285, 322, 364, 445, 487, 610, 652, 713, 757, 804, 835]
        );
        // The XID ends the transaction at 835 (what the server reports as its position).
        assert_eq!(got[11].1, 835);
        assert_eq!(t.next, 877);
    }

    #[test]
    fn a_dump_starting_mid_file_ignores_the_resent_format_description() {
        let mut t = PosTracker::new(610);
        t.place(4, 44, 0, ARTIFICIAL, 0);
        t.rotate(610);
        // The FDE is re-sent with log_pos 0 and does not count.
        assert_eq!(t.place(15, 252, 0, 0, 0).start, 610);
        let got = run(&mut t, &MARIA118[5..10]);
        assert_eq!(
            got,
            [(610, 652), (652, 713), (713, 757), (757, 804), (804, 835)]
        );
    }

    #[test]
    fn heartbeats_and_artificial_events_are_not_in_the_file() {
        let mut t = PosTracker::new(1000);
        assert_eq!(t.place(27, 40, 1000, 0, 0).start, 1000);
        assert_eq!(t.place(41, 40, 0, 0, 0).start, 1000);
        assert_eq!(t.place(163, 60, 0, ARTIFICIAL, 0).start, 1000);
        assert_eq!(t.next, 1000);
        assert_eq!(t.place(162, 42, 0, 0, 0), place_at(1000, 1042));
    }

    fn place_at(start: u64, after: u64) -> Placed {
        Placed {
            start,
            after,
            row0: 0,
            header_disagrees: None,
            payload_unread: None,
        }
    }

    #[test]
    fn a_payload_whose_events_did_not_all_arrive_is_reported() {
        let mut t = PosTracker::new(1000);
        t.place(TRANSACTION_PAYLOAD, 200, 1200, 0, 300);
        t.place(2, 50, 0, 0, 0);
        // The next GTID carries a header position: the payload is over, 250 bytes unread.
        let g = t.place(33, 79, 1279, 0, 0);
        assert_eq!(g.payload_unread, Some(250));
        assert_eq!((g.start, g.after), (1200, 1279));
    }

    #[test]
    fn a_real_rotate_moves_to_the_next_file() {
        let mut t = PosTracker::new(800);
        t.place(4, 44, 0, 0, 0);
        t.rotate(4);
        assert_eq!(t.place(15, 252, 0, 0, 0), place_at(4, 256));
        assert_eq!(t.place(163, 29, 0, 0, 0), place_at(256, 285));
    }

    #[test]
    fn events_inside_a_compressed_transaction_share_its_position_with_ordered_rows() {
        let mut t = PosTracker::new(1000);
        // GTID, then the payload (200 bytes on the wire, 300 uncompressed).
        assert_eq!(t.place(33, 79, 1079, 0, 0).start, 1000);
        let p = t.place(TRANSACTION_PAYLOAD, 200, 1279, 0, 300);
        assert_eq!((p.start, p.after), (1079, 1079));
        // BEGIN, TABLE_MAP, two rows events (3 and 2 rows), XID: all with log_pos 0.
        let b = t.place(2, 50, 0, 0, 0);
        assert_eq!((b.start, b.after, b.row0), (1079, 1079, 0));
        t.place(19, 50, 0, 0, 0);
        let r1 = t.place(30, 100, 0, 0, 0);
        assert_eq!((r1.start, r1.row0), (1079, 0));
        t.rows_emitted(3);
        let r2 = t.place(30, 70, 0, 0, 0);
        assert_eq!((r2.start, r2.row0), (1079, 3));
        t.rows_emitted(2);
        // The XID, the payload's last event, ends the transaction after the payload.
        let x = t.place(16, 30, 0, 0, 0);
        assert_eq!((x.start, x.after), (1079, 1279));
        assert_eq!(t.payload, None);
        assert_eq!(t.place(33, 79, 1358, 0, 0), place_at(1279, 1358));
    }

    #[test]
    fn a_mysql_gtid_set_becomes_one_sid_per_uuid_and_tag() {
        let u = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let v = "0a11fa47-71ca-11e1-9e33-c80aa9429562";
        let sids = mysql_sids(&format!("{u}:1-5:7:blue:1-2,{v}:3")).unwrap();
        assert_eq!(sids.len(), 3);
        assert!(mysql_sids("").unwrap().is_empty());
        assert!(mysql_sids("not-a-uuid:1-2").is_err());
    }

    #[test]
    fn a_header_position_that_disagrees_with_the_count_wins() {
        let mut t = PosTracker::new(1000);
        let p = t.place(162, 42, 1100, 0, 0);
        assert_eq!(p.header_disagrees, Some(1100));
        assert_eq!((p.start, p.after), (1058, 1100));
        assert_eq!(t.next, 1100);
    }
}

/// Dead-letter coordinates of an undecodable binlog row: one per (file, position, row), as
/// `tributary_apply::dead_letter_for` does for direct-mode events (63-bit hash).
fn capture_dead_letter_offset(file: &str, pos: u64, row: u32) -> i64 {
    let mut b = Vec::with_capacity(file.len() + 12);
    b.extend_from_slice(file.as_bytes());
    b.extend_from_slice(&pos.to_le_bytes());
    b.extend_from_slice(&row.to_le_bytes());
    (xxhash_rust::xxh3::xxh3_64(&b) >> 1) as i64
}
