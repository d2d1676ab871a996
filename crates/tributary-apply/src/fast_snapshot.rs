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
//! One thing PostgreSQL cannot check for us: with SCD2 validity columns, the general path also
//! *closes* a version of the key that is still open in history. A key that is absent from
//! current but has an open history version was deleted (a delete's history row stays open
//! until the key comes back). So with SCD2 on, the fast path is only taken while the history
//! table holds no DELETE at all — checked once per table per session (a sequential scan that
//! stops at the first DELETE; during an initial snapshot history only holds snapshot rows),
//! and switched off for the session as soon as this sink applies a delete to the table.

use bytes::{BufMut, BytesMut};
use tributary_model::{ChangeEvent, Op, TableId};

use crate::config::ident;
use crate::table::{encode_image, put_i32, put_i64, put_text, TargetTable};
use crate::{copy_header, copy_in, copy_trailer, pg_err, ApplyError, PgSink};

/// Microseconds between the Unix and the PostgreSQL epoch (2000-01-01).
const PG_EPOCH_US: i64 = 946_684_800_000_000;

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
        if events.iter().any(|e| e.op == Op::Delete) {
            self.tables.get_mut(tid).expect("ensured").fast_snapshot = Some(false);
            return Ok(None);
        }
        if events.iter().any(|e| e.op != Op::Snapshot) || t.fast_snapshot == Some(false) {
            return Ok(None);
        }
        if t.fast_snapshot.is_none() {
            let ok = if t.scd2() {
                let sql = format!(
                    "SELECT NOT EXISTS (SELECT 1 FROM {} WHERE {} = 'DELETE')",
                    t.q_history(),
                    ident(&t.layout.history_meta.change_type)
                );
                self.client
                    .query_one(&sql, &[])
                    .await
                    .map_err(|e| pg_err("checking history for deletes", e))?
                    .get::<_, bool>(0)
            } else {
                true
            };
            self.tables.get_mut(tid).expect("ensured").fast_snapshot = Some(ok);
            if !ok {
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
        self.client
            .batch_execute("SAVEPOINT tributary_fast_snapshot")
            .await
            .map_err(|e| pg_err("SAVEPOINT", e))?;
        // Current first: on a re-snapshot over existing rows it fails at the first row.
        let res = match copy_in(&self.client, &cur_sql, cur_buf).await {
            Ok(_) => copy_in(&self.client, &hist_sql, hist_buf).await,
            Err(e) => Err(e),
        };
        match res {
            Ok(n) => {
                self.client
                    .batch_execute("RELEASE SAVEPOINT tributary_fast_snapshot")
                    .await
                    .map_err(|e| pg_err("RELEASE SAVEPOINT", e))?;
                Ok(Some(n))
            }
            Err(ApplyError::Definite(msg)) => {
                self.client
                    .batch_execute("ROLLBACK TO SAVEPOINT tributary_fast_snapshot")
                    .await
                    .map_err(|e| pg_err("ROLLBACK TO SAVEPOINT", e))?;
                // A duplicate (23505) is expected now and then (a resumed snapshot re-reading
                // its last chunk); anything else would fail every batch the same way.
                let duplicate = msg.contains("23505");
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

/// The two COPY statements and their binary streams; `None` if a value does not encode.
fn encode_streams(
    t: &TargetTable,
    events: &[&ChangeEvent],
    now: i64,
) -> Option<(String, BytesMut, String, BytesMut)> {
    let cm = &t.layout.current_meta;
    let hm = &t.layout.history_meta;
    let targets: Vec<String> = t.cols.iter().map(|c| ident(&c.target)).collect();

    let mut ccols = targets.clone();
    ccols.extend(
        [&cm.op, &cm.source_pos, &cm.updated_at]
            .into_iter()
            .flatten()
            .map(|c| ident(c)),
    );
    let mut hcols = targets;
    hcols.push(ident(&hm.change_type));
    hcols.push(ident(&hm.event_id));
    hcols.extend(
        [
            &hm.source_ts,
            &hm.source_file,
            &hm.source_pos,
            &hm.source_row,
            &hm.source_gtid,
            &hm.kafka_topic,
            &hm.kafka_partition,
            &hm.kafka_offset,
            &hm.valid_from,
        ]
        .into_iter()
        .flatten()
        .map(|c| ident(c)),
    );
    let width = 64 + t.cols.len() * 16;
    let mut cur = BytesMut::with_capacity(events.len() * width);
    let mut hist = BytesMut::with_capacity(events.len() * (width + 96));
    copy_header(&mut cur);
    copy_header(&mut hist);
    for ev in events {
        let (_, map) = t.mapping(ev);
        let s = &ev.source;
        let image = ev.row_image();
        // current
        cur.put_i16(ccols.len() as i16);
        encode_image(&mut cur, image, map, &t.cols, "").ok()?;
        if cm.op.is_some() {
            put_text(&mut cur, ev.op.debezium_code());
        }
        if cm.source_pos.is_some() {
            put_i64(&mut cur, s.order_key());
        }
        if cm.updated_at.is_some() {
            put_i64(&mut cur, now);
        }
        // history
        hist.put_i16(hcols.len() as i16);
        encode_image(&mut hist, image, map, &t.cols, "").ok()?;
        put_text(&mut hist, "SNAPSHOT");
        hist.put_i32(16);
        hist.put_slice(&crate::identity::event_id(ev));
        let ts_ms = if s.ts_ms > 0 { s.ts_ms } else { ev.ts_ms };
        let ts = (ts_ms > 0).then(|| ts_ms * 1000 - PG_EPOCH_US);
        let null = |b: &mut BytesMut| b.put_i32(-1);
        if hm.source_ts.is_some() {
            match ts {
                Some(v) => put_i64(&mut hist, v),
                None => null(&mut hist),
            }
        }
        if hm.source_file.is_some() {
            if s.file.is_empty() {
                null(&mut hist)
            } else {
                put_text(&mut hist, &s.file)
            }
        }
        if hm.source_pos.is_some() {
            put_i64(&mut hist, s.pos as i64);
        }
        if hm.source_row.is_some() {
            put_i32(&mut hist, s.row as i32);
        }
        if hm.source_gtid.is_some() {
            match &s.gtid {
                Some(g) => put_text(&mut hist, g),
                None => null(&mut hist),
            }
        }
        let k = ev.kafka.as_ref();
        if hm.kafka_topic.is_some() {
            match k {
                Some(k) => put_text(&mut hist, &k.topic),
                None => null(&mut hist),
            }
        }
        if hm.kafka_partition.is_some() {
            match k {
                Some(k) => put_i32(&mut hist, k.partition),
                None => null(&mut hist),
            }
        }
        if hm.kafka_offset.is_some() {
            match k {
                Some(k) => put_i64(&mut hist, k.offset),
                None => null(&mut hist),
            }
        }
        if hm.valid_from.is_some() {
            put_i64(&mut hist, ts.unwrap_or(now));
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
