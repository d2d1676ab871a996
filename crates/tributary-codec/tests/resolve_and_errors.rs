//! resolve/infer on the schemaless golden form, and clear errors for bad input.

mod common;

use common::{load, raw};
use serde_json::json;
use tributary_codec::*;
use tributary_model::{ColumnKind, ErrorClass, RawRecord, Value};

/// Every flattened (schemaless) value, resolved with the column type the envelope's schema
/// declares, equals the value decoded from the envelope with schema.
#[test]
fn resolving_flattened_values_with_schema_kinds_equals_envelope_decode() {
    let mut dec = Decoder::new();
    let env: Vec<_> = load("envelope-schemas.jsonl")
        .iter()
        .filter_map(|l| match dec.decode(&raw(l)).unwrap() {
            Decoded::Change(e) => Some(e),
            _ => None,
        })
        .collect();
    let flat: Vec<_> = load("flattened-rewrite.jsonl")
        .iter()
        .filter_map(|l| match dec.decode(&raw(l)).unwrap() {
            Decoded::Change(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(env.len(), flat.len());
    let mut checked = 0;
    for (e, f) in env.iter().zip(&flat) {
        assert_eq!(e.op, f.op);
        let (ei, fi) = (e.row_image().unwrap(), f.row_image().unwrap());
        for (c, fv) in f.schema.columns.iter().zip(fi) {
            let i = e.schema.column_index(&c.name).unwrap();
            let kind = &e.schema.columns[i].kind;
            let json = match fv {
                Value::Unresolved(j) => j.clone(),
                Value::Null => serde_json::Value::Null,
                other => panic!("schemaless value should be unresolved: {other:?}"),
            };
            let got = resolve(&json, kind).unwrap_or_else(|err| panic!("{}: {err}", c.name));
            assert_eq!(got, ei[i], "column {} kind {kind:?}", c.name);
            checked += 1;
        }
    }
    // 10 all_types images × 33 columns + 1 × 34 (after the ALTER) + 5 no_pk images × 2
    assert_eq!(checked, 10 * 33 + 34 + 5 * 2);
}

#[test]
fn resolve_specific_spellings() {
    let dec = |s| ColumnKind::Decimal {
        precision: Some(10),
        scale: s,
    };
    assert_eq!(
        resolve(&json!("SZYC0g=="), &dec(Some(2))).unwrap(),
        Value::Decimal("12345678.90".into())
    );
    assert_eq!(
        resolve(&json!("-0.01"), &dec(Some(2))).unwrap(),
        Value::Decimal("-0.01".into())
    );
    // arbitrary_precision keeps a long JSON number exact
    let big: serde_json::Value = serde_json::from_str("12345678901234567890.0123456789").unwrap();
    assert_eq!(
        resolve(&big, &dec(None)).unwrap(),
        Value::Decimal("12345678901234567890.0123456789".into())
    );
    assert!(resolve(&json!("SZYC0g=="), &dec(None)).is_err());
    assert_eq!(
        resolve(&json!(1758160342000i64), &ColumnKind::DateTime { fsp: 0 }).unwrap(),
        Value::DateTime(1758160342000000)
    );
    assert_eq!(
        resolve(
            &json!(1758160342123456i64),
            &ColumnKind::DateTime { fsp: 6 }
        )
        .unwrap(),
        Value::DateTime(1758160342123456)
    );
    assert_eq!(
        resolve(
            &json!("2025-09-18 01:52:22.5"),
            &ColumnKind::DateTime { fsp: 1 }
        )
        .unwrap(),
        Value::DateTime(1758160342500000)
    );
    assert_eq!(
        resolve(&json!("qgI="), &ColumnKind::Bits { len: 10 }).unwrap(),
        Value::Bits(682)
    );
    assert_eq!(
        resolve(&json!(true), &ColumnKind::Bits { len: 1 }).unwrap(),
        Value::Bits(1)
    );
    assert_eq!(
        resolve(&json!(1), &ColumnKind::Bool).unwrap(),
        Value::Bool(true)
    );
    assert_eq!(
        resolve(
            &json!(-1),
            &ColumnKind::Int {
                bits: 64,
                unsigned: true
            }
        )
        .unwrap(),
        Value::UInt(u64::MAX)
    );
    assert_eq!(
        resolve(
            &json!("AP//////////"),
            &ColumnKind::Int {
                bits: 64,
                unsigned: true
            }
        )
        .unwrap(),
        Value::UInt(u64::MAX)
    );
    assert!(resolve(
        &json!(300),
        &ColumnKind::Int {
            bits: 8,
            unsigned: false
        }
    )
    .is_err());
    assert_eq!(
        resolve(&json!({"a": [1]}), &ColumnKind::Json).unwrap(),
        Value::Json("{\"a\":[1]}".into())
    );
    assert_eq!(
        resolve(&json!("-838:59:59"), &ColumnKind::Time { fsp: 0 }).unwrap(),
        Value::Time(-3020399000000)
    );
    assert_eq!(
        resolve(&json!(20349), &ColumnKind::Date).unwrap(),
        Value::Date(20349)
    );
    assert_eq!(
        resolve(&json!("3q2+7w=="), &ColumnKind::Bytes { max_len: None }).unwrap(),
        Value::Bytes(vec![0xde, 0xad, 0xbe, 0xef])
    );
    let e = resolve(&json!("not base64!"), &ColumnKind::Bytes { max_len: None }).unwrap_err();
    assert!(!e.is_transient());
    assert!(e.to_string().contains("not base64!"), "{e}");
}

#[test]
fn infer_without_any_type() {
    assert_eq!(infer(&json!(true)), (ColumnKind::Bool, Value::Bool(true)));
    assert_eq!(
        infer(&json!(7)),
        (
            ColumnKind::Int {
                bits: 64,
                unsigned: false
            },
            Value::Int(7)
        )
    );
    assert_eq!(infer(&json!(2.5)), (ColumnKind::Double, Value::Double(2.5)));
    assert_eq!(
        infer(&json!([1])),
        (ColumnKind::Json, Value::Json("[1]".into()))
    );
    assert_eq!(infer(&json!(null)), (ColumnKind::Unknown, Value::Null));
    // Debezium's own limit: a schemaless precise DECIMAL is just base64 text.
    assert_eq!(
        infer(&json!("SZYC0g==")),
        (
            ColumnKind::String { max_len: None },
            Value::String("SZYC0g==".into())
        )
    );
}

fn rec(topic: &str, value: &[u8]) -> RawRecord {
    RawRecord {
        topic: topic.into(),
        partition: 3,
        offset: 42,
        key: None,
        value: Some(value.to_vec()),
    }
}

fn golden_value_with(f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let line = load("envelope-schemas.jsonl")
        .into_iter()
        .find(|l| l["topic"] == "dbserver1.typesdb.all_types")
        .unwrap();
    let mut v = line["value"].clone();
    f(&mut v);
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn bad_input_is_a_clear_definite_error() {
    let t = "dbserver1.typesdb.all_types";
    let e = decode(&rec(t, b"{not json")).unwrap_err();
    assert_eq!(e.kind, DecodeErrorKind::NotJson);
    assert!(!e.is_transient());
    let msg = e.to_string();
    assert!(msg.contains("dbserver1.typesdb.all_types/3@42"), "{msg}");

    let e = decode(&rec(t, b"[1,2]")).unwrap_err();
    assert_eq!(e.kind, DecodeErrorKind::Shape);
    assert!(e.to_string().contains("array"), "{e}");

    let v = golden_value_with(|v| v["payload"]["after"]["c_int"] = json!("abc"));
    let e = decode(&rec(t, &v)).unwrap_err();
    assert_eq!(e.kind, DecodeErrorKind::Type);
    assert_eq!(e.field, "value.payload.after.c_int");
    assert!(e.to_string().contains("abc"), "{e}");

    let v = golden_value_with(|v| v["payload"]["after"]["c_dec"] = json!("***"));
    let e = decode(&rec(t, &v)).unwrap_err();
    assert_eq!(e.field, "value.payload.after.c_dec");

    let v = golden_value_with(|v| v["payload"]["op"] = json!("x"));
    let e = decode(&rec(t, &v)).unwrap_err();
    assert_eq!(e.kind, DecodeErrorKind::UnknownOp);
    assert_eq!(e.field, "value.payload.op");
    assert!(e.to_string().contains("\"x\""), "{e}");

    let v = golden_value_with(|v| v["payload"]["after"] = json!(null));
    let e = decode(&rec(t, &v)).unwrap_err();
    assert_eq!(e.field, "value.payload.after");

    let v = golden_value_with(|v| {
        v["payload"]["after"]
            .as_object_mut()
            .unwrap()
            .insert("no_such_col".into(), json!(1));
    });
    let e = decode(&rec(t, &v)).unwrap_err();
    assert_eq!(e.kind, DecodeErrorKind::Schema);

    // flattened, no table anywhere
    let e = decode(&rec("justonetopic", br#"{"a":1}"#)).unwrap_err();
    assert_eq!(e.kind, DecodeErrorKind::Table);
    let e = decode(&rec(t, br#"{"a":1,"__deleted":"maybe"}"#)).unwrap_err();
    assert_eq!(e.field, "value.__deleted");

    let mut r = rec(t, br#"{"a":1}"#);
    r.value = Some(vec![0xff, 0xfe]);
    assert_eq!(decode(&r).unwrap_err().kind, DecodeErrorKind::NotJson);
}

#[test]
fn tombstone_and_flattened_inference() {
    let t = "dbserver1.typesdb.t";
    assert_eq!(
        decode(&rec(t, br#"{"schema":{"type":"struct"},"payload":null}"#)).unwrap(),
        Decoded::Tombstone
    );
    let mut r = rec(t, b"");
    r.value = None;
    assert_eq!(decode(&r).unwrap(), Decoded::Tombstone);
    // no __op: op from __deleted
    let Decoded::Change(ev) =
        decode(&rec(t, br#"{"id":1,"__deleted":"true","__db":"x"}"#)).unwrap()
    else {
        panic!()
    };
    assert_eq!(ev.op, tributary_model::Op::Delete);
    assert_eq!(ev.schema.id.to_string(), "x.t");
    assert_eq!(ev.before.as_ref().unwrap()[0], Value::Unresolved(json!(1)));
    let Decoded::Change(ev) = decode(&rec(t, br#"{"id":1,"__deleted":"false"}"#)).unwrap() else {
        panic!()
    };
    assert_eq!(ev.op, tributary_model::Op::Insert);
    // value given as a JSON string containing the record (replay files)
    let Decoded::Change(ev) = decode(&rec(t, br#""{\"id\":2}""#)).unwrap() else {
        panic!()
    };
    assert_eq!(ev.after.as_ref().unwrap()[0], Value::Unresolved(json!(2)));
}

/// The flattened fast path (fields straight to the row, no JSON map) keeps JSON-object
/// semantics: a repeated name is one column whose last value wins, metadata may come first,
/// and columns named `schema` / `payload` (left raw by the top-level parse) are ordinary
/// columns unless they are the only two fields.
#[test]
fn flattened_fields_keep_object_semantics() {
    let t = "dbserver1.shop.t";
    let Decoded::Change(ev) = decode(&rec(
        t,
        br#"{"__op":"u","id":1,"name":"a","name":"b","__source_ts_ms":1700000000123,"__op":"c"}"#,
    ))
    .unwrap() else {
        panic!()
    };
    let names: Vec<&str> = ev.schema.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "name"]);
    assert_eq!(
        ev.after.as_ref().unwrap(),
        &vec![Value::Unresolved(json!(1)), Value::Unresolved(json!("b"))]
    );
    assert_eq!(ev.op, tributary_model::Op::Insert, "the last __op wins");
    assert_eq!(ev.source.ts_ms, 1700000000123);
    assert_eq!(ev.kafka.as_ref().unwrap().offset, 42);

    let Decoded::Change(ev) = decode(&rec(
        t,
        br#"{"id":7,"schema":"s1","payload":{"k":[1,2]},"__deleted":"false"}"#,
    ))
    .unwrap() else {
        panic!()
    };
    let names: Vec<&str> = ev.schema.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "schema", "payload"]);
    assert_eq!(
        ev.after.as_ref().unwrap()[2],
        Value::Unresolved(json!({"k": [1, 2]}))
    );

    // Only `schema` and `payload`: the Connect form (here a flattened payload).
    let Decoded::Change(ev) = decode(&rec(
        t,
        br#"{"payload":{"id":3,"__deleted":"true"},"schema":null}"#,
    ))
    .unwrap() else {
        panic!()
    };
    assert_eq!(ev.op, tributary_model::Op::Delete);
    assert_eq!(ev.before.as_ref().unwrap()[0], Value::Unresolved(json!(3)));
}
