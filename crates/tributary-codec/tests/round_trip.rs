//! decode → encode must reproduce real Debezium output field by field (volatile fields aside).

mod common;

use std::collections::{HashMap, VecDeque};

use common::{load, raw};
use serde_json::Value as J;
use tributary_codec::compare::{diff_records, diff_records_ignoring};
use tributary_codec::*;

fn opts() -> EncodeOptions {
    EncodeOptions {
        topic_prefix: "dbserver1".into(),
        ..Default::default()
    }
}

/// Walks a golden file in order: every data record is decoded and re-encoded; the records we
/// produce must equal the golden ones, including the tombstones that follow deletes.
fn round_trip_file(file: &str, o: &EncodeOptions) -> (usize, Vec<String>) {
    let mut diffs = Vec::new();
    let mut pending: HashMap<String, VecDeque<EncodedRecord>> = HashMap::new();
    let mut compared = 0;
    let mut dec = Decoder::new();
    for line in load(file) {
        let rec = raw(&line);
        let at = format!("{file} {}@{}", rec.topic, rec.offset);
        match dec.decode(&rec).unwrap() {
            Decoded::Change(ev) => {
                let mut out = encode(&ev, o).into_iter();
                let first = out.next().expect("one record");
                for d in diff_records(&first, &line) {
                    diffs.push(format!("{at}: {d}"));
                }
                pending.entry(rec.topic.clone()).or_default().extend(out);
                compared += 1;
            }
            Decoded::Tombstone => {
                let ours = pending
                    .get_mut(&rec.topic)
                    .and_then(|q| q.pop_front())
                    .unwrap_or_else(|| panic!("{at}: golden tombstone we did not produce"));
                for d in diff_records(&ours, &line) {
                    diffs.push(format!("{at}: {d}"));
                }
                compared += 1;
            }
            Decoded::SchemaChange(sc) => {
                let ours = encode_schema_change(&sc, o);
                // tableChanges is not reconstructed (documented limit); source.table likewise.
                for d in diff_records_ignoring(
                    &ours,
                    &line,
                    &[
                        "value.payload.tableChanges",
                        "value.tableChanges",
                        "value.payload.source.table",
                        "value.source.table",
                    ],
                ) {
                    diffs.push(format!("{at}: {d}"));
                }
                compared += 1;
            }
        }
    }
    for (t, q) in pending {
        assert!(
            q.is_empty(),
            "{file}: we produced tombstones golden lacks on {t}"
        );
    }
    (compared, diffs)
}

#[test]
fn envelope_with_schemas_round_trips() {
    let (n, diffs) = round_trip_file("envelope-schemas.jsonl", &opts());
    assert_eq!(n, 32);
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

#[test]
fn string_modes_round_trip() {
    let o = EncodeOptions {
        decimal_mode: DecimalMode::String,
        bigint_unsigned_mode: BigintUnsignedMode::Precise,
        binary_mode: BinaryMode::Hex,
        time_precision: TimePrecisionMode::Connect,
        ..opts()
    };
    let (n, diffs) = round_trip_file("envelope-string-modes.jsonl", &o);
    assert_eq!(n, 32);
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

/// The envelope records, encoded through the unwrap SMT, equal the flattened golden file.
#[test]
fn unwrap_rewrite_matches_flattened_golden() {
    let o = EncodeOptions {
        schemas_enable: false,
        unwrap: Some(UnwrapOptions {
            add_fields: vec!["op".into(), "table".into(), "source.ts_ms".into()],
            delete_handling: DeleteHandling::Rewrite,
            drop_tombstones: true,
        }),
        ..opts()
    };
    let mut ours: HashMap<String, VecDeque<EncodedRecord>> = HashMap::new();
    let mut dec = Decoder::new();
    for line in load("envelope-schemas.jsonl") {
        match dec.decode(&raw(&line)).unwrap() {
            Decoded::Change(ev) => {
                for r in encode(&ev, &o) {
                    ours.entry(r.topic.clone()).or_default().push_back(r);
                }
            }
            Decoded::SchemaChange(sc) => {
                let r = encode_schema_change(&sc, &o);
                ours.entry(r.topic.clone()).or_default().push_back(r);
            }
            Decoded::Tombstone => {}
        }
    }
    let mut diffs = Vec::new();
    let mut n = 0;
    for line in load("flattened-rewrite.jsonl") {
        let topic = line["topic"].as_str().unwrap();
        let r = ours
            .get_mut(topic)
            .and_then(|q| q.pop_front())
            .unwrap_or_else(|| panic!("golden {topic}@{} has no counterpart", line["offset"]));
        let ignore: &[&str] = if topic == "dbserver1" {
            &["value.tableChanges", "value.source.table"]
        } else {
            &[]
        };
        for d in diff_records_ignoring(&r, &line, ignore) {
            diffs.push(format!("{topic}@{}: {d}", line["offset"]));
        }
        n += 1;
    }
    assert_eq!(n, 29);
    assert!(
        ours.values().all(|q| q.is_empty()),
        "we produced extra records"
    );
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

/// The comparison itself must catch real differences (otherwise the tests above prove nothing).
#[test]
fn diff_detects_changes_and_ignores_only_volatile_fields() {
    let line = load("envelope-schemas.jsonl")
        .into_iter()
        .find(|l| l["topic"] == "dbserver1.typesdb.all_types")
        .unwrap();
    let mut dec = Decoder::new();
    let Decoded::Change(mut ev) = dec.decode(&raw(&line)).unwrap() else {
        panic!()
    };
    ev.source.ts_ms += 5;
    ev.source.pos += 1;
    let r = encode(&ev, &opts()).remove(0);
    assert!(diff_records(&r, &line).is_empty());
    ev.source.row += 1;
    let i = ev.schema.column_index("c_int").unwrap();
    ev.after.as_mut().unwrap()[i] = tributary_model::Value::Int(5);
    let r = encode(&ev, &opts()).remove(0);
    let d = diff_records(&r, &line);
    assert!(
        d.iter().any(|x| x.contains("value.payload.after.c_int")),
        "{d:?}"
    );
    assert!(
        d.iter().any(|x| x.contains("value.payload.source.row")),
        "{d:?}"
    );
    // field order matters
    let mut swapped: J = serde_json::from_slice(r.value.as_ref().unwrap()).unwrap();
    let p = swapped["payload"].as_object_mut().unwrap();
    let op = p.shift_remove("op").unwrap();
    p.insert("op".into(), op);
    let r2 = EncodedRecord {
        value: Some(serde_json::to_vec(&swapped).unwrap()),
        ..r
    };
    assert!(diff_records(&r2, &line).iter().any(|x| x.contains("order")));
}

/// tributary's binlog epoch (after a RESET MASTER / failover) travels in its own records as
/// `source.tributary_epoch` and comes back: a Kafka sink's stale-update guard must not compare
/// positions of two numberings. Epoch 0 records carry no such field (byte-for-byte Debezium).
#[test]
fn binlog_epoch_survives_encode_and_decode() {
    let line = load("envelope-schemas.jsonl")
        .into_iter()
        .find(|l| l.to_string().contains("\"op\":\"c\""))
        .expect("an insert in the golden file");
    let mut dec = Decoder::new();
    let Decoded::Change(mut ev) = dec.decode(&raw(&line)).unwrap() else {
        panic!("not a change")
    };
    for epoch in [0u32, 3] {
        ev.source.epoch = epoch;
        let rec = encode(&ev, &opts()).into_iter().next().unwrap();
        let text = String::from_utf8(rec.value.clone().unwrap()).unwrap();
        assert_eq!(text.contains("tributary_epoch"), epoch != 0, "{text}");
        let back = Decoder::new()
            .decode(&tributary_model::RawRecord {
                topic: rec.topic.clone(),
                partition: 0,
                offset: 0,
                key: rec.key.clone(),
                value: rec.value.clone(),
            })
            .unwrap();
        let Decoded::Change(back) = back else {
            panic!("not a change")
        };
        assert_eq!(back.source.epoch, epoch);
        assert_eq!(back.source.order_key(), ev.source.order_key());
    }
}
