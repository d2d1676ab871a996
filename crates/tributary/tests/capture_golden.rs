//! `tributary capture` on the golden scenario against a private MariaDB, compared field by
//! field with the real Debezium 3.6 output (fixtures/golden), in the three converter setups
//! the golden files were produced with. Then: capture re-publishing everything after losing
//! its position is harmless to the warehouse.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as J;
use tributary_codec::compare::diff_records_ignoring;
use tributary_codec::encode::EncodedRecord;
use tributary_testkit::{golden, MariaDb, PgDb};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tributary"));
    c.env("TRIBUTARY_LOG", "warn");
    c
}

struct Mode {
    golden: &'static str,
    args: &'static [&'static str],
}

const MODES: &[Mode] = &[
    Mode {
        golden: "envelope-schemas.jsonl",
        args: &[],
    },
    Mode {
        golden: "flattened-rewrite.jsonl",
        args: &["--unwrap", "--no-schemas"],
    },
    Mode {
        golden: "envelope-string-modes.jsonl",
        args: &[
            "--decimal-handling",
            "string",
            "--bigint-unsigned-handling",
            "precise",
            "--binary-handling",
            "hex",
            "--time-precision",
            "connect",
        ],
    },
];

fn capture(db: &MariaDb, out: &Path, args: &[&str]) {
    let o = bin()
        .args([
            "capture",
            "--mysql-url",
            &db.url(),
            "--databases",
            "typesdb",
            "--topic-prefix",
            "dbserver1",
        ])
        .args([
            "--server-id",
            &(db.server_id + 7000).to_string(),
            "--until-caught-up",
            "--output",
        ])
        .arg(out)
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "capture failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Data records (not the schema-change topic) per topic, in order.
fn data_records(path: &Path) -> BTreeMap<String, Vec<J>> {
    let mut m: BTreeMap<String, Vec<J>> = BTreeMap::new();
    for l in std::fs::read_to_string(path).unwrap().lines() {
        let j: J = serde_json::from_str(l).unwrap();
        let t = j["topic"].as_str().unwrap().to_string();
        if t != "dbserver1" {
            m.entry(t).or_default().push(j);
        }
    }
    m
}

fn to_bytes(v: &J) -> Option<Vec<u8>> {
    (!v.is_null()).then(|| serde_json::to_vec(v).unwrap())
}

#[test]
fn captured_records_match_real_debezium_field_by_field() {
    let db = MariaDb::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    db.sql_file(&golden("scenario/init.sql")).unwrap();
    let outs: Vec<PathBuf> = (0..MODES.len())
        .map(|i| dir.path().join(format!("out{i}.jsonl")))
        .collect();
    for (m, out) in MODES.iter().zip(&outs) {
        capture(&db, out, m.args); // the snapshot
    }
    db.sql_file(&golden("scenario/stream.sql")).unwrap();
    for (m, out) in MODES.iter().zip(&outs) {
        capture(&db, out, m.args); // resumes from its position file: the stream
    }
    let mut report = Vec::new();
    for (m, out) in MODES.iter().zip(&outs) {
        let ours = data_records(out);
        let gold = data_records(&golden(m.golden));
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            gold.keys().collect::<Vec<_>>(),
            "{}: topics",
            m.golden
        );
        for (topic, g) in &gold {
            let o = &ours[topic];
            assert_eq!(o.len(), g.len(), "{}: record count of {topic}", m.golden);
            for (i, (ol, gl)) in o.iter().zip(g).enumerate() {
                let enc = EncodedRecord {
                    topic: ol["topic"].as_str().unwrap().to_string(),
                    key: to_bytes(&ol["key"]),
                    value: to_bytes(&ol["value"]),
                };
                // Positions are volatile by nature (Debezium's pos is the transaction start
                // and its snapshot rows all have row 0; ours are the rows event and the row
                // ordinal); MariaDB GTIDs Debezium did not report.
                let d = diff_records_ignoring(
                    &enc,
                    gl,
                    &[
                        "value.payload.source.row",
                        "value.payload.source.gtid",
                        "value.source.row",
                        "value.source.gtid",
                    ],
                );
                for x in d {
                    report.push(format!("{} {topic}#{i}: {x}", m.golden));
                }
            }
        }
    }
    assert!(
        report.is_empty(),
        "differences from real Debezium:\n{}",
        report.join("\n")
    );

    // Re-publication after a crash: capture forgets its position and emits everything
    // again (new offsets in the same file); applying the file changes nothing.
    let pg = PgDb::new("capture_repub").unwrap();
    let replay = |f: &Path| {
        let o = bin()
            .arg("replay")
            .arg(f)
            .args(["--postgres-url", &pg.url])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(
        replay(&outs[0]),
        "applied 16 change(s), 0 already applied, 0 dead-lettered"
    );
    std::fs::remove_file(format!("{}.position.json", outs[0].display())).unwrap();
    capture(&db, &outs[0], &[]); // snapshot of the final state + nothing else
    let again = replay(&outs[0]);
    // The new snapshot reads are new observations (SNAPSHOT rows at a new position); no
    // streamed change is applied twice and the current tables stay equal to the source.
    assert!(again.contains("0 dead-lettered"), "{again}");
    tributary_testkit::assert_final(
        &pg,
        "typesdb",
        "all_types",
        "id",
        &[("c_bigint_u", "18446744073709551615", "-1")],
    );
    tributary_testkit::assert_final(&pg, "typesdb", "no_pk", "a, b", &[]);
    let non_snapshot = pg
        .query("SELECT count(*) FROM typesdb.all_types_history WHERE change_type <> 'SNAPSHOT'")
        .unwrap();
    assert_eq!(non_snapshot.trim(), "8");
}
