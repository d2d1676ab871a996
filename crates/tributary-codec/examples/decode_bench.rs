//! Decode throughput over the golden records.
//!
//! `cargo run --release -p tributary-codec --example decode_bench [N]` decodes the data records
//! of each golden file cycled N times in total (default 200 000) and prints events/s.

use std::time::Instant;

use tributary_codec::{Decoded, Decoder};
use tributary_model::RawRecord;

fn load(name: &str) -> Vec<RawRecord> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/golden")
        .join(name);
    let text = std::fs::read_to_string(path).expect("golden file");
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let b = |x: &serde_json::Value| (!x.is_null()).then(|| serde_json::to_vec(x).unwrap());
            RawRecord {
                topic: v["topic"].as_str().unwrap().into(),
                partition: 0,
                offset: v["offset"].as_i64().unwrap(),
                key: b(&v["key"]),
                value: b(&v["value"]),
            }
        })
        .filter(|r| r.value.is_some() && r.topic.contains('.'))
        .collect()
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    for file in [
        "envelope-schemas.jsonl",
        "envelope-string-modes.jsonl",
        "flattened-rewrite.jsonl",
    ] {
        let recs = load(file);
        let bytes: usize = recs.iter().map(|r| r.value.as_ref().unwrap().len()).sum();
        let mut d = Decoder::new();
        let start = Instant::now();
        let mut changes = 0usize;
        for i in 0..n {
            if let Decoded::Change(ev) = d.decode(&recs[i % recs.len()]).unwrap() {
                changes += ev.after.as_ref().map_or(0, |r| r.len()) & 1;
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{file:32} {n} records in {secs:.2}s = {:>9.0} events/s ({:.0} MB/s, avg {} B/record) [{changes}]",
            n as f64 / secs,
            (bytes as f64 / recs.len() as f64) * n as f64 / secs / 1e6,
            bytes / recs.len()
        );
    }
}
