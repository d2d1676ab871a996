#![allow(dead_code)]
//! Shared helpers for the golden-file tests.

use std::path::PathBuf;

use serde_json::Value as J;
use tributary_model::RawRecord;

pub fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/golden")
}

/// The golden lines of one file, parsed.
pub fn load(name: &str) -> Vec<J> {
    let text = std::fs::read_to_string(golden_dir().join(name)).expect("golden file");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("golden line is JSON"))
        .collect()
}

/// A golden line as the Kafka consumer would hand it to the codec.
pub fn raw(line: &J) -> RawRecord {
    let bytes = |v: &J| {
        if v.is_null() {
            None
        } else {
            Some(serde_json::to_vec(v).unwrap())
        }
    };
    RawRecord {
        topic: line["topic"].as_str().unwrap().to_owned(),
        partition: line["partition"].as_i64().unwrap() as i32,
        offset: line["offset"].as_i64().unwrap(),
        key: bytes(&line["key"]),
        value: bytes(&line["value"]),
    }
}

/// `final-*.tsv` as (header, rows); `mariadb -B` escapes (`\\`, `\t`, `\n`, `\0`) undone.
pub fn load_tsv(name: &str) -> (Vec<String>, Vec<Vec<Option<String>>>) {
    let text = std::fs::read_to_string(golden_dir().join(name)).expect("tsv");
    let mut lines = text.lines();
    let header = lines
        .next()
        .unwrap()
        .split('\t')
        .map(str::to_owned)
        .collect();
    let rows = lines
        .map(|l| {
            l.split('\t')
                .map(|c| {
                    if c == "NULL" {
                        None
                    } else {
                        Some(tributary_testkit::unescape(c))
                    }
                })
                .collect()
        })
        .collect();
    (header, rows)
}
