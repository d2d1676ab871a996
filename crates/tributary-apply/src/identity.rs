//! The dedupe identity of a change: the value stored in the history table's unique
//! `_event_id` column. Applying an event whose identity is already in history is a no-op for
//! history *and* for the current table (current only applies events that history accepted),
//! which is what makes replays, re-consumption and re-publication harmless.
//!
//! What the identity is made of, and why:
//! * Always the source table.
//! * With a source position (`source.file` non-empty — Debezium envelopes, tributary's own
//!   capture): `(file, pos, row, op)` plus a hash of the before/after images. tributary's capture
//!   makes `(file, pos, row)` unique per row change on its own. Real Debezium sets `pos` to the
//!   *transaction* start, so two changes of one transaction can share `(file, pos, row)`; the op
//!   and the row content tell them apart. Known limit (README): two changes of one transaction
//!   with identical op, before and after image at the same row index (e.g. A→B, B→A, A→B of one
//!   row in one transaction) collapse into one history row under Debezium's convention.
//! * A Debezium snapshot read (`op r`, `row` 0 — Debezium gives every snapshot row the same
//!   position) additionally includes the Kafka coordinates when present, so identical rows of a
//!   keyless table's snapshot stay distinct. tributary's own snapshot numbers rows (`row` ≥ 1).
//! * Without a source position (the ExtractNewRecordState "flattened" form carries none): the
//!   Kafka coordinates `(topic, partition, offset)` — exact for re-consumption and replay; a
//!   re-publication at new offsets cannot be recognised from such records (README).

use tributary_model::{ChangeEvent, Op, Value};
use xxhash_rust::xxh3::Xxh3;

fn feed_value(h: &mut Xxh3, v: &Value) {
    // A tag byte per variant keeps e.g. Int(1) and String("1") apart.
    match v {
        Value::Null => h.update(&[0]),
        Value::Bool(b) => h.update(&[1, *b as u8]),
        Value::Int(i) => {
            h.update(&[2]);
            h.update(&i.to_le_bytes())
        }
        Value::UInt(u) => {
            h.update(&[3]);
            h.update(&u.to_le_bytes())
        }
        Value::Float(f) => {
            h.update(&[4]);
            h.update(&f.to_le_bytes())
        }
        Value::Double(d) => {
            h.update(&[5]);
            h.update(&d.to_le_bytes())
        }
        Value::Decimal(s) => {
            h.update(&[6]);
            h.update(s.as_bytes())
        }
        Value::String(s) => {
            h.update(&[7]);
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s.as_bytes())
        }
        Value::Bytes(b) => {
            h.update(&[8]);
            h.update(&(b.len() as u64).to_le_bytes());
            h.update(b)
        }
        Value::Bits(b) => {
            h.update(&[9]);
            h.update(&b.to_le_bytes())
        }
        Value::Date(d) => {
            h.update(&[10]);
            h.update(&d.to_le_bytes())
        }
        Value::Time(t) => {
            h.update(&[11]);
            h.update(&t.to_le_bytes())
        }
        Value::DateTime(t) => {
            h.update(&[12]);
            h.update(&t.to_le_bytes())
        }
        Value::Timestamp(t) => {
            h.update(&[13]);
            h.update(&t.to_le_bytes())
        }
        Value::Year(y) => {
            h.update(&[14]);
            h.update(&y.to_le_bytes())
        }
        Value::Json(s) => {
            h.update(&[15]);
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s.as_bytes())
        }
        Value::Vector(v) => {
            h.update(&[17]);
            h.update(&(v.len() as u64).to_le_bytes());
            for f in v {
                h.update(&f.to_le_bytes());
            }
        }
        Value::Unresolved(j) => {
            h.update(&[16]);
            let s = j.to_string();
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s.as_bytes())
        }
    }
}

fn feed_row(h: &mut Xxh3, row: Option<&Vec<Value>>) {
    match row {
        None => h.update(&[0xFF]),
        Some(r) => {
            h.update(&(r.len() as u32).to_le_bytes());
            for v in r {
                feed_value(h, v);
            }
        }
    }
}

/// 128-bit identity of an event (stored as a `uuid`): 64 bits of stream order (the source
/// position's order key, or the Kafka offset for records without one) followed by 64 bits of
/// hash over everything listed in the module docs (for tributary's own snapshot rows: 32 bits
/// folded from the position, the 32-bit row number, then the 64-bit hash). The order prefix keeps history's unique
/// index appending at its right edge instead of scattering random keys over it; it is itself
/// a function of the identity, so equal changes still get equal ids.
pub fn event_id(ev: &ChangeEvent) -> [u8; 16] {
    let mut h = Xxh3::new();
    let t = &ev.schema.id;
    h.update(t.db.as_bytes());
    h.update(&[0]);
    h.update(t.table.as_bytes());
    h.update(&[0]);
    let s = &ev.source;
    if !s.file.is_empty() {
        h.update(b"S");
        h.update(s.file.as_bytes());
        h.update(&[0]);
        h.update(&s.pos.to_le_bytes());
        h.update(&s.row.to_le_bytes());
        h.update(ev.op.debezium_code().as_bytes());
        feed_row(&mut h, ev.before.as_ref());
        feed_row(&mut h, ev.after.as_ref());
        if ev.op == Op::Snapshot && s.row == 0 {
            if let Some(k) = &ev.kafka {
                h.update(b"K");
                h.update(k.topic.as_bytes());
                h.update(&k.partition.to_le_bytes());
                h.update(&k.offset.to_le_bytes());
            }
        }
    } else if let Some(k) = &ev.kafka {
        h.update(b"K");
        h.update(k.topic.as_bytes());
        h.update(&[0]);
        h.update(&k.partition.to_le_bytes());
        h.update(&k.offset.to_le_bytes());
    } else {
        // Neither a source position nor Kafka coordinates: content and time are all we have.
        h.update(b"C");
        h.update(ev.op.debezium_code().as_bytes());
        h.update(&s.ts_ms.to_le_bytes());
        h.update(&ev.ts_ms.to_le_bytes());
        feed_row(&mut h, ev.before.as_ref());
        feed_row(&mut h, ev.after.as_ref());
    }
    let prefix: i64 = if !s.file.is_empty() {
        s.order_key()
    } else if let Some(k) = &ev.kafka {
        k.offset
    } else {
        s.ts_ms
    };
    let mut id = [0u8; 16];
    let digest = h.digest().to_be_bytes();
    if ev.op == Op::Snapshot && s.row >= 1 && !s.file.is_empty() {
        // tributary's own snapshot: every row of a table shares the snapshot position and is
        // numbered by `row`, so the row number follows a 32-bit fold of the position and the
        // index grows in one place (with the hash first, a large snapshot inserted its ids at
        // random places: ~35% slower COPY). The full 64-bit hash follows: rows of different
        // source tables sharing one history table, or a row number past 2^32, still differ.
        let ok = prefix as u64;
        id[..4].copy_from_slice(&(((ok >> 32) ^ ok) as u32).to_be_bytes());
        id[4..8].copy_from_slice(&s.row.to_be_bytes());
        id[8..].copy_from_slice(&digest);
    } else {
        id[..8].copy_from_slice(&((prefix as u64) ^ (1 << 63)).to_be_bytes());
        id[8..].copy_from_slice(&digest);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tributary_model::*;

    fn ev(op: Op, pos: u64, row: u32, after: i64) -> ChangeEvent {
        ChangeEvent {
            schema: Arc::new(TableSchema {
                id: TableId::new("d", "t"),
                columns: vec![Column::new(
                    "a",
                    ColumnKind::Int {
                        bits: 32,
                        unsigned: false,
                    },
                )],
                key: vec![0],
            }),
            op,
            before: None,
            after: Some(vec![Value::Int(after)]),
            source: SourcePosition {
                file: "bin.000001".into(),
                pos,
                row,
                ..Default::default()
            },
            ts_ms: 0,
            transaction: None,
            kafka: None,
        }
    }

    #[test]
    fn same_change_same_id_different_changes_differ() {
        assert_eq!(
            event_id(&ev(Op::Insert, 10, 0, 1)),
            event_id(&ev(Op::Insert, 10, 0, 1))
        );
        assert_ne!(
            event_id(&ev(Op::Insert, 10, 0, 1)),
            event_id(&ev(Op::Insert, 10, 1, 1))
        );
        assert_ne!(
            event_id(&ev(Op::Insert, 10, 0, 1)),
            event_id(&ev(Op::Update, 10, 0, 1))
        );
        assert_ne!(
            event_id(&ev(Op::Insert, 10, 0, 1)),
            event_id(&ev(Op::Insert, 10, 0, 2))
        );
        // Kafka coordinates do not matter when a source position exists (re-publication).
        let mut a = ev(Op::Insert, 10, 0, 1);
        a.kafka = Some(KafkaCoord {
            topic: "t".into(),
            partition: 0,
            offset: 5,
        });
        let mut b = ev(Op::Insert, 10, 0, 1);
        b.kafka = Some(KafkaCoord {
            topic: "t".into(),
            partition: 1,
            offset: 9,
        });
        assert_eq!(event_id(&a), event_id(&b));
    }

    #[test]
    fn snapshot_rows_get_ids_in_row_order() {
        // Same position, rows 1..: ids must grow with the row (right-edge index inserts),
        // and stay a function of the change.
        let ids: Vec<[u8; 16]> = (1..=1000)
            .map(|r| event_id(&ev(Op::Snapshot, 4096, r, 7 * r as i64)))
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "not in row order");
        assert_eq!(ids[5], event_id(&ev(Op::Snapshot, 4096, 6, 42)));
        assert_ne!(ids[5], event_id(&ev(Op::Snapshot, 4096, 6, 43)));
        // The same row number with other content (another source table sharing the history
        // table, a wrapped row number) differs in the full 64-bit hash.
        let a = event_id(&ev(Op::Snapshot, 4096, 6, 42));
        let b = event_id(&ev(Op::Snapshot, 4096, 6, 43));
        assert_eq!(a[..8], b[..8]);
        assert_ne!(a[8..], b[8..]);
    }
}
