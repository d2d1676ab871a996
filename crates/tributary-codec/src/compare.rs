//! Field-by-field comparison of our Kafka records with recorded Debezium records.
//!
//! Owns: [`diff_records`] / [`diff_records_ignoring`] (used by this crate's golden tests and
//! by capture's tests to compare live-captured events with `fixtures/golden`) and the list of
//! *volatile* fields that legitimately differ between two runs of the same scenario.
//!
//! Rules: object key **order** is compared (Debezium's field order is part of the contract);
//! numbers are equal when their text is equal or they are the same `f64` (`1.0E10` vs
//! `10000000000.0`); everything else must be identical. Volatile fields
//! ([`is_volatile`]): `source.ts_ms/ts_us/ts_ns/file/pos/server_id/thread/version`, the
//! top-level `ts_ms/ts_us/ts_ns`, and their flattened forms `__source_ts_ms`, `__ts_ms`,
//! `__source_file`, … — in the envelope (`value.payload.…` or `value.…`) only.

use serde_json::Value as J;

use crate::encode::EncodedRecord;

const VOLATILE_SOURCE: &[&str] = &[
    "ts_ms",
    "ts_us",
    "ts_ns",
    "file",
    "pos",
    "server_id",
    "thread",
    "version",
];

/// Whether a path such as `value.payload.source.ts_ms` or `value.__source_ts_ms` names a
/// field that differs between runs.
pub fn is_volatile(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("value.") else {
        return false;
    };
    let rest = rest.strip_prefix("payload.").unwrap_or(rest);
    if let Some(f) = rest.strip_prefix("source.") {
        return VOLATILE_SOURCE.contains(&f);
    }
    if matches!(rest, "ts_ms" | "ts_us" | "ts_ns") {
        return true;
    }
    if let Some(f) = rest.strip_prefix("__source_") {
        return VOLATILE_SOURCE.contains(&f);
    }
    matches!(rest, "__ts_ms" | "__ts_us" | "__ts_ns")
}

fn numbers_equal(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    if a.as_str() == b.as_str() {
        return true;
    }
    match (a.as_str().parse::<f64>(), b.as_str().parse::<f64>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Appends every difference between `ours` and `golden` under `path` to `out`, skipping paths
/// for which `skip` returns true.
pub fn diff_json(
    path: &str,
    ours: &J,
    golden: &J,
    skip: &dyn Fn(&str) -> bool,
    out: &mut Vec<String>,
) {
    if skip(path) {
        return;
    }
    match (ours, golden) {
        (J::Object(a), J::Object(b)) => {
            let ka: Vec<&String> = a.keys().collect();
            let kb: Vec<&String> = b.keys().collect();
            if ka != kb {
                let missing: Vec<_> = kb.iter().filter(|k| !a.contains_key(k.as_str())).collect();
                let extra: Vec<_> = ka.iter().filter(|k| !b.contains_key(k.as_str())).collect();
                if missing.is_empty() && extra.is_empty() {
                    out.push(format!(
                        "{path}: field order differs: ours {ka:?}, golden {kb:?}"
                    ));
                } else {
                    if !missing.is_empty() {
                        out.push(format!("{path}: missing fields {missing:?}"));
                    }
                    if !extra.is_empty() {
                        out.push(format!("{path}: extra fields {extra:?}"));
                    }
                }
            }
            for (k, gv) in b {
                if let Some(ov) = a.get(k) {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    diff_json(&p, ov, gv, skip, out);
                }
            }
        }
        (J::Array(a), J::Array(b)) => {
            if a.len() != b.len() {
                out.push(format!(
                    "{path}: array length ours {} golden {}",
                    a.len(),
                    b.len()
                ));
            }
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff_json(&format!("{path}[{i}]"), x, y, skip, out);
            }
        }
        (J::Number(a), J::Number(b)) if numbers_equal(a, b) => {}
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{path}: ours {a} golden {b}")),
    }
}

fn parse_side(bytes: &Option<Vec<u8>>, what: &str, out: &mut Vec<String>) -> J {
    match bytes {
        None => J::Null,
        Some(b) => serde_json::from_slice(b).unwrap_or_else(|e| {
            out.push(format!("{what}: our bytes are not JSON: {e}"));
            J::Null
        }),
    }
}

/// Differences between our record and a golden line `{"topic","partition","offset","key",
/// "value"}` (key/value as JSON, null for none), ignoring [`is_volatile`] fields.
/// Empty = equal.
pub fn diff_records(ours: &EncodedRecord, golden: &J) -> Vec<String> {
    diff_records_ignoring(ours, golden, &[])
}

/// Like [`diff_records`], also ignoring the given exact paths (e.g. `value.payload.source.row`,
/// `value.payload.source.gtid` when comparing a live capture).
pub fn diff_records_ignoring(ours: &EncodedRecord, golden: &J, extra: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let gt = golden.get("topic").and_then(J::as_str).unwrap_or("");
    if ours.topic != gt {
        out.push(format!("topic: ours {:?} golden {:?}", ours.topic, gt));
    }
    let key = parse_side(&ours.key, "key", &mut out);
    let value = parse_side(&ours.value, "value", &mut out);
    let skip = |p: &str| is_volatile(p) || extra.contains(&p);
    diff_json(
        "key",
        &key,
        golden.get("key").unwrap_or(&J::Null),
        &skip,
        &mut out,
    );
    diff_json(
        "value",
        &value,
        golden.get("value").unwrap_or(&J::Null),
        &skip,
        &mut out,
    );
    out
}
