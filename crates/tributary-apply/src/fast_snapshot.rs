//! The snapshot fast path: a batch whose events for a keyed table are all snapshot reads
//! (`op = r`) is written with two binary `COPY`s straight into the current and the history
//! table — no staging table, no `ANALYZE`, no set-based merge. This is what an initial
//! snapshot of a large table spends its time on, and it is what makes it fast.
//!
//! ## Why it writes exactly what the general path would
//! For snapshot reads with distinct event ids and distinct keys, none of which the target
//! tables hold yet, the general path (see `table.rs`) reduces to: every event goes into
//! history (`change_type = SNAPSHOT`, `valid_to` NULL because no later change of the key is in
//! the batch), and every row is inserted into current. The fast path writes exactly those
//! rows. Its preconditions are *checked by PostgreSQL*, not assumed:
//! * an event id already in history, or twice in the batch → the history table's unique
//!   `_event_id` index fails the COPY;
//! * a key already in current, or twice in the batch → the current table's primary key
//!   fails the COPY.
//!
//! Both COPYs run under a savepoint; on any such failure (or any other definite error, such
//! as a pre-existing table whose column types differ) the savepoint is rolled back and the
//! batch goes through the general path, which handles duplicates, guards and dead letters.
//!
//! One thing the unique indexes cannot check: with SCD2 validity columns, the general path also
//! *closes* a version of the key that is still open in history (a deleted key's DELETE row
//! stays open until the key comes back). So with SCD2 on, the path is only taken when history
//! has no open version of the batch's keys: for a single integer key — snapshot batches are
//! key-ordered chunks — one range probe of the partial index on open versions before anything
//! is written; for other keys one query after the COPYs that looks for an open version other
//! than the rows just written (rolling the savepoint back if there is one).
//!
//! Binary COPY does not cast, so the path is only used for tables whose columns have exactly
//! the types it writes ([`types_match`], checked when the table is loaded); tables created by
//! tributary always do.

use bytes::{BufMut, BytesMut};
use tributary_model::{ChangeEvent, Op, TableId, Value};

use crate::config::{ident, CurrentCol, HistoryCol};
use crate::table::{
    encode_image, put_i32, put_i64, put_text, SourceMeta, TargetTable, PG_EPOCH_US,
};
use crate::{copy_header, copy_in, copy_trailer, pg_err, ApplyError, PgSink};

impl TargetTable {
    fn scd2(&self) -> bool {
        let hm = &self.layout.history_meta;
        hm.valid_to.is_some() && hm.valid_from.is_some()
    }
}

impl PgSink {
    /// Try the fast path for `events` (all of one keyed table). `Ok(Some(n))`: done, `n` rows
    /// written; `Ok(None)`: not applicable, nothing written — use the general path.
    pub(crate) async fn apply_snapshot_fast(
        &mut self,
        tid: &TableId,
        events: &[&ChangeEvent],
    ) -> Result<Option<u64>, ApplyError> {
        let t = self.tables.get(tid).expect("ensured");
        if !self.cfg.snapshot_fast_path || t.key.is_empty() || events.is_empty() {
            return Ok(None);
        }
        if events.iter().any(|e| e.op != Op::Snapshot) || t.fast_snapshot == Some(false) {
            return Ok(None);
        }
        // SCD2: with a single integer key (the common case; snapshot batches are key-ordered
        // chunks), one index range probe before writing anything rules out open versions.
        let range = if t.scd2() {
            int_key_range(t, events)
        } else {
            None
        };
        if let Some((lo, hi)) = range {
            if self.open_versions_in_range(t, lo, hi).await? {
                return Ok(None);
            }
        }
        let now_us: i64 = self
            .client
            .query_one("SELECT (extract(epoch FROM now()) * 1000000)::int8", &[])
            .await
            .map_err(|e| pg_err("reading transaction time", e))?
            .get(0);
        let now = now_us - PG_EPOCH_US;
        let t = self.tables.get(tid).expect("ensured");
        let Some((cur_sql, cur_buf, hist_sql, hist_buf)) = encode_streams(t, events, now) else {
            return Ok(None); // a value the general path must dead-letter
        };
        self.savepoint("tributary_fast_snapshot").await?;
        // Current first: on a re-snapshot over existing rows it fails at the first row.
        let res = match copy_in(&self.client, &cur_sql, cur_buf).await {
            Ok(_) => copy_in(&self.client, &hist_sql, hist_buf).await,
            Err(e) => Err(e),
        };
        let t = self.tables.get(tid).expect("ensured");
        let res = match res {
            Ok(n) if t.scd2() && range.is_none() => {
                match self.open_versions_elsewhere(t, events).await {
                    Ok(false) => Ok(n),
                    Ok(true) => Err(ApplyError::Definite(
                        "a key of the batch has an open history version (a deleted key came back)"
                            .into(),
                    )),
                    Err(e) => Err(e),
                }
            }
            other => other,
        };
        match res {
            Ok(n) => {
                self.end_savepoint("tributary_fast_snapshot", true).await?;
                Ok(Some(n))
            }
            Err(ApplyError::Definite(msg)) => {
                self.end_savepoint("tributary_fast_snapshot", false).await?;
                // A duplicate (unique violation) or a re-inserted key is expected now and then
                // (a resumed snapshot re-reading its last chunk, a re-snapshot); anything else
                // would fail every batch the same way.
                let duplicate = msg.sqlstate.as_deref()
                    == Some(tokio_postgres::error::SqlState::UNIQUE_VIOLATION.code())
                    // no SQLSTATE: our own open-version check above
                    || msg.sqlstate.is_none();
                tracing::debug!(table = %tid, "snapshot fast path not taken: {msg}");
                if !duplicate {
                    self.tables.get_mut(tid).expect("ensured").fast_snapshot = Some(false);
                }
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// `(min, max)` of a single integer key over `events`; `None` for other keys.
fn int_key_range(t: &TargetTable, events: &[&ChangeEvent]) -> Option<(i128, i128)> {
    let [k] = t.key[..] else { return None };
    let mut range: Option<(i128, i128)> = None;
    for ev in events {
        let (_, map) = t.mapping(ev).ok()?;
        let v = ev.row_image()?.get(map[k]?)?;
        let x = match v {
            Value::Int(i) => *i as i128,
            Value::UInt(u) => *u as i128,
            Value::Unresolved(serde_json::Value::Number(n)) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => i as i128,
                (None, Some(u)) => u as i128,
                _ => return None,
            },
            _ => return None,
        };
        range = Some(match range {
            None => (x, x),
            Some((lo, hi)) => (lo.min(x), hi.max(x)),
        });
    }
    range
}

impl PgSink {
    /// Whether history has an open version of a key in `lo..=hi` (partial index range probe).
    async fn open_versions_in_range(
        &self,
        t: &TargetTable,
        lo: i128,
        hi: i128,
    ) -> Result<bool, ApplyError> {
        let hm = &t.layout.history_meta;
        let vt = ident(hm.valid_to.as_deref().expect("scd2"));
        let kc = &t.cols[t.key[0]];
        let ty = kc.ty.ddl();
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM {} WHERE {vt} IS NULL AND {k} BETWEEN $1::text::{ty} AND $2::text::{ty})",
            t.q_history(),
            k = ident(&kc.target),
        );
        Ok(self
            .client
            .query_one(&sql, &[&lo.to_string(), &hi.to_string()])
            .await
            .map_err(|e| pg_err("checking open history versions", e))?
            .get(0))
    }

    /// Whether a key of `events` (just written) has an open history version other than the
    /// rows just written — one the staged path would have closed.
    async fn open_versions_elsewhere(
        &self,
        t: &TargetTable,
        events: &[&ChangeEvent],
    ) -> Result<bool, ApplyError> {
        let hm = &t.layout.history_meta;
        let vt = ident(hm.valid_to.as_deref().expect("scd2"));
        let eid = ident(&hm.event_id);
        let join: Vec<String> = t
            .key
            .iter()
            .map(|&k| {
                let c = ident(&t.cols[k].target);
                format!("h.{c} = n.{c}")
            })
            .collect();
        let ids: Vec<String> = events
            .iter()
            .map(|e| {
                crate::identity::event_id(e)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            })
            .collect();
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM {q} n JOIN {q} h ON {join} AND h.{vt} IS NULL AND h.{eid} <> n.{eid}
                            WHERE n.{eid} = ANY($1::text[]::uuid[]))",
            q = t.q_history(),
            join = join.join(" AND "),
        );
        Ok(self
            .client
            .query_one(&sql, &[&ids])
            .await
            .map_err(|e| pg_err("checking open history versions", e))?
            .get(0))
    }
}

/// Whether the existing tables have exactly the column types the fast path writes in binary:
/// each source column the same type in history as in current (the type tributary encodes),
/// and the metadata columns their standard types.
pub(crate) fn types_match(
    layout: &crate::config::Layout,
    cur: &[(String, String, Option<String>)],
    hist: &[(String, String, Option<String>)],
    cols: &[crate::table::TCol],
) -> bool {
    let ty = |table: &[(String, String, Option<String>)], name: &str| {
        table
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, t, _)| t.clone())
    };
    let source_ok = cols
        .iter()
        .all(|c| ty(cur, &c.target).is_some() && ty(cur, &c.target) == ty(hist, &c.target));
    let hm = &layout.history_meta;
    let cur_meta_ok = layout
        .current_meta
        .written()
        .all(|(c, which)| ty(cur, c).as_deref() == Some(which.ty().formatted));
    let hist_meta_ok = ty(hist, &hm.change_type).as_deref() == Some("text")
        && ty(hist, &hm.event_id).as_deref() == Some("uuid")
        && hm
            .written()
            .all(|(c, which)| ty(hist, c).as_deref() == Some(which.ty().formatted));
    source_ok && cur_meta_ok && hist_meta_ok
}

/// The two COPY statements and their binary streams; `None` if a value does not encode.
fn encode_streams(
    t: &TargetTable,
    events: &[&ChangeEvent],
    now: i64,
) -> Option<(String, BytesMut, String, BytesMut)> {
    let cm: Vec<(&str, CurrentCol)> = t.layout.current_meta.written().collect();
    let hm = &t.layout.history_meta;
    let hmeta: Vec<(&str, HistoryCol)> = hm.written().collect();
    let targets = t.cols.iter().map(|c| ident(&c.target));
    let ccols: Vec<String> = targets
        .clone()
        .chain(cm.iter().map(|(c, _)| ident(c)))
        .collect();
    let hcols: Vec<String> = targets
        .chain([ident(&hm.change_type), ident(&hm.event_id)])
        .chain(hmeta.iter().map(|(c, _)| ident(c)))
        .collect();
    let width = 64 + t.cols.len() * 16;
    let mut cur = BytesMut::with_capacity(events.len() * width);
    let mut hist = BytesMut::with_capacity(events.len() * (width + 96));
    copy_header(&mut cur);
    copy_header(&mut hist);
    let null = |b: &mut BytesMut| b.put_i32(-1);
    for ev in events {
        let (_, map) = t.mapping(ev).ok()?;
        let s = &ev.source;
        let image = ev.row_image();
        // current: the row, then what the staged path's upsert writes
        cur.put_i16(ccols.len() as i16);
        encode_image(&mut cur, image, map, &t.cols, "").ok()?;
        for (_, which) in &cm {
            match which {
                CurrentCol::Op => put_text(&mut cur, ev.op.debezium_code()),
                CurrentCol::SourcePos => put_i64(&mut cur, s.order_key()),
                CurrentCol::UpdatedAt => put_i64(&mut cur, now),
            }
        }
        // history: the row, SNAPSHOT, the event id, then what the staged path's insert writes
        hist.put_i16(hcols.len() as i16);
        encode_image(&mut hist, image, map, &t.cols, "").ok()?;
        put_text(&mut hist, "SNAPSHOT");
        hist.put_i32(16);
        hist.put_slice(&crate::identity::event_id(ev));
        let meta = SourceMeta::of(ev).ok()?;
        let ts = meta.ts_pg_us;
        let k = ev.kafka.as_ref();
        for (_, which) in &hmeta {
            let b = &mut hist;
            match which {
                HistoryCol::SourceTs => match ts {
                    Some(v) => put_i64(b, v),
                    None => null(b),
                },
                HistoryCol::SourceFile if s.file.is_empty() => null(b),
                HistoryCol::SourceFile => put_text(b, &s.file),
                HistoryCol::SourcePos => put_i64(b, meta.pos),
                HistoryCol::SourceRow => put_i32(b, meta.row),
                HistoryCol::SourceGtid => match &s.gtid {
                    Some(g) => put_text(b, g),
                    None => null(b),
                },
                HistoryCol::KafkaTopic => match k {
                    Some(k) => put_text(b, &k.topic),
                    None => null(b),
                },
                HistoryCol::KafkaPartition => match k {
                    Some(k) => put_i32(b, k.partition),
                    None => null(b),
                },
                HistoryCol::KafkaOffset => match k {
                    Some(k) => put_i64(b, k.offset),
                    None => null(b),
                },
                HistoryCol::ValidFrom => put_i64(b, ts.unwrap_or(now)),
            }
        }
    }
    copy_trailer(&mut cur);
    copy_trailer(&mut hist);
    let cur_sql = format!(
        "COPY {} ({}) FROM STDIN (FORMAT binary)",
        t.q_current(),
        ccols.join(", ")
    );
    let hist_sql = format!(
        "COPY {} ({}) FROM STDIN (FORMAT binary)",
        t.q_history(),
        hcols.join(", ")
    );
    Some((cur_sql, cur, hist_sql, hist))
}
