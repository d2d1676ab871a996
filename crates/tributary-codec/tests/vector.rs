//! MySQL 9 VECTOR in Debezium's form (`io.debezium.data.FloatVector`: a Connect array of
//! float32, as Debezium's `BinlogVectorIT` expects for MySQL): a real golden record with such a
//! field added decodes to `Value::Vector` and re-encodes to the same record, field by field;
//! a malformed vector is a decode error, not a guess.

mod common;

use common::{load, raw};
use serde_json::{json, Value as J};
use tributary_codec::compare::diff_records;
use tributary_codec::*;
use tributary_model::{ColumnKind, Value};

fn with_vector(line: &J, value: J) -> J {
    let mut l = line.clone();
    let field = json!({"type": "array", "items": {"type": "float", "optional": false},
        "optional": true, "name": "io.debezium.data.FloatVector", "version": 1, "field": "emb"});
    for f in l
        .pointer_mut("/value/schema/fields")
        .and_then(J::as_array_mut)
        .unwrap()
        .iter_mut()
        .filter(|f| f["field"] == "before" || f["field"] == "after")
    {
        f["fields"].as_array_mut().unwrap().push(field.clone());
    }
    for side in ["before", "after"] {
        if let Some(p) = l.pointer_mut(&format!("/value/payload/{side}")) {
            if p.is_object() {
                p["emb"] = value.clone();
            }
        }
    }
    l
}

fn first_insert() -> J {
    load("envelope-schemas.jsonl")
        .into_iter()
        .find(|l| {
            l.pointer("/value/payload/op")
                .is_some_and(|o| o == "c" || o == "r")
        })
        .expect("a data record in the golden file")
}

#[test]
fn float_vector_round_trips_in_debeziums_form() {
    let line = with_vector(
        &first_insert(),
        json!([1.1, -2.0, 0.001, 123456.78, 3.4028235e38]),
    );
    let mut dec = Decoder::new();
    let Decoded::Change(ev) = dec.decode(&raw(&line)).unwrap() else {
        panic!("not a change")
    };
    let i = ev.schema.column_index("emb").expect("emb column");
    assert_eq!(ev.schema.columns[i].kind, ColumnKind::Vector { dim: None });
    let after = ev.after.as_ref().unwrap();
    assert_eq!(
        after[i],
        Value::Vector(vec![1.1, -2.0, 0.001, 123456.78, f32::MAX])
    );
    let o = EncodeOptions {
        topic_prefix: "dbserver1".into(),
        ..Default::default()
    };
    let ours = encode(&ev, &o).into_iter().next().unwrap();
    let diffs = diff_records(&ours, &line);
    assert!(diffs.is_empty(), "{diffs:#?}");
    // A NULL vector stays NULL.
    let line = with_vector(&first_insert(), J::Null);
    let Decoded::Change(ev) = Decoder::new().decode(&raw(&line)).unwrap() else {
        panic!("not a change")
    };
    assert_eq!(ev.after.as_ref().unwrap()[i], Value::Null);
}

#[test]
fn malformed_float_vectors_are_errors() {
    for bad in [
        json!("1,2"),
        json!([1, "x"]),
        json!([1e300]),
        json!({"a": 1}),
    ] {
        let line = with_vector(&first_insert(), bad.clone());
        assert!(
            Decoder::new().decode(&raw(&line)).is_err(),
            "{bad} decoded as a vector"
        );
    }
}
