//! Fidelity of `tributary capture` against real Debezium 3.6.3, record for record (issue 13).
//!
//! The DDL scenario (`fixtures/ddl/`: init.sql, stream.sql) runs on a private MariaDB 11.8 with
//! `--binlog-row-metadata=FULL` (as the fixture's server had); `tributary capture` takes the
//! snapshot after init.sql and streams stream.sql. Every record is compared with
//! `fixtures/ddl/debezium-default.jsonl` (Debezium with its defaults, see the fixture README),
//! field by field — keys, values, Connect field schemas with their defaults, the source block —
//! and every difference is printed, grouped into classes.
//!
//! What is normalised, and why (nothing else is):
//! * envelope `ts_ms`/`ts_us`/`ts_ns` and schema-change `ts_ms`: the connector's processing
//!   time (wall clock);
//! * `source.ts_ms`/`ts_us`/`ts_ns` of snapshot records (`source.snapshot` not `"false"`): the
//!   time the snapshot read the row (wall clock); streamed `source.ts_ms` follows the
//!   scenario's `SET TIMESTAMP` and is compared;
//! * `source.version`: Debezium writes `3.6.3.Final`, tributary its own version;
//! * `source.pos`: compared as the distance from the snapshot's binlog position (each file's
//!   first record). The fixture's server and this test's are different servers whose binlogs
//!   start with different setup statements, so absolute offsets differ by a constant, while
//!   the distance is the scenario's own events (same server version and binlog format);
//! * `source.server_id` of streamed records: the fixture's server had id 1, ours has the
//!   testkit's id — compared as "the source server's id" (snapshot records must say 0);
//! * `source.thread`: the session id of the connection that ran stream.sql (Debezium fills it
//!   only on MySQL; `null` in the fixture) — compared as is.
//!
//! Records are aligned per topic in order (data topics), schema-change records by their `ddl`
//! text in order, and the interleaving of schema-change and data records is compared as a
//! sequence of (topic, op, ddl) — Debezium writes them in binlog order.
//!
//! [`KNOWN_DDL`] / [`KNOWN_EDGES`] list the difference classes that remain, each with the reason; the test fails on
//! any class not listed *and* on a listed class that no longer occurs (remove it from the list
//! and from README's fidelity table when you fix it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as J;
use tributary_codec::compare::diff_json;
use tributary_testkit::{maria118_or_skip_with, repo_root, MariaDb};

/// Type-edge scenario: difference classes still present, with why.
const KNOWN_EDGES: &[(&str, &str)] = &[
    (
        "data value.payload.source.gtid",
        "Debezium's MySQL connector reports no MariaDB GTID; tributary does",
    ),
    (
        "data value.payload.source.pos",
        "Debezium: the transaction's start; tributary: the rows event (unique per-row \
         coordinates for the sink's dedupe identity)",
    ),
    (
        "data value.payload.source.row",
        "snapshot records: Debezium 0, tributary the ordinal (re-published keyless snapshots)",
    ),
    (
        "schema-change value.payload.tableChanges",
        "CREATE TABLE tableChanges not reconstructed ([]); DROP entries are",
    ),
    (
        "data value.payload.after.f",
        "streamed FLOAT -1.17549435E-38 (the smallest normal float): the fixture's Java 17 \
         Float.toString prints more digits than needed (JDK-4511638, fixed in Java 19), \
         tributary the shortest text, -1.1754944E-38 — the same float",
    ),
];

/// DDL scenario: difference classes still present, with why. A class is the JSON path of the difference with
/// record/array indices removed, prefixed by `data` or `schema-change` (see [`class_of`]).
const KNOWN_DDL: &[(&str, &str)] = &[
    (
        "data value.payload.source.gtid",
        "Debezium's MySQL connector reports no MariaDB GTID (null); tributary gives the \
         transaction's MariaDB GTID (domain-server-seq), which failover resumption relies on",
    ),
    (
        "schema-change value.payload.source.gtid",
        "as for data records: tributary reports the MariaDB GTID of the DDL",
    ),
    (
        "data value.payload.source.pos",
        "Debezium's pos is the transaction's start (its GTID event) for every row of the \
         transaction; tributary's is the rows event's own position, which makes (file, pos, \
         row) unique per row change — the sink's dedupe identity and stale-update guard use it",
    ),
    (
        "data value.payload.source.row",
        "snapshot records: Debezium writes row 0, tributary the row's ordinal in its table \
         (≥ 1), which lets the sink recognise a re-published snapshot of a keyless table",
    ),
    (
        "schema-change extra",
        "TRUNCATE TABLE: Debezium's default (skipped.operations=t) writes nothing, so a \
         Debezium-fed warehouse keeps truncated rows; tributary writes the statement on the \
         schema-change topic and apply empties the table",
    ),
    (
        "schema-change value.payload.tableChanges",
        "tableChanges is [] (the table after the change, column by column with JDBC types, is \
         not reconstructed yet); sinks read renames/drops from the ddl text",
    ),
];

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tributary"));
    c.env("TRIBUTARY_LOG", "warn");
    c
}

fn fixture(name: &str) -> PathBuf {
    repo_root().join("fixtures").join(name)
}

fn capture(db: &MariaDb, out: &Path, database: &str) {
    let o = bin()
        .args([
            "capture",
            "--mysql-url",
            &db.url(),
            "--databases",
            database,
            "--topic-prefix",
            "dbserver1",
            "--server-id",
            &(db.server_id + 7100).to_string(),
            "--until-caught-up",
            // Debezium's JsonConverter default (lossy; tributary's default writes the NULL).
            "--replace-null-with-default",
            "--output",
        ])
        .arg(out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "capture failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn read_jsonl(p: &Path) -> Vec<J> {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{} line {}: not JSON: {e}", p.display(), i + 1))
        })
        .collect()
}

fn payload(r: &J) -> Option<&J> {
    let v = r.get("value")?;
    if v.is_null() {
        return None;
    }
    Some(v.get("payload").unwrap_or(v))
}

fn is_schema_change(r: &J) -> bool {
    r["topic"].as_str() == Some("dbserver1")
}

/// The snapshot's binlog position: the first record's `source.pos`.
fn snapshot_pos(recs: &[J]) -> i64 {
    recs.iter()
        .find_map(|r| payload(r)?.get("source")?.get("pos")?.as_i64())
        .expect("a record with source.pos")
}

/// Applies the normalisations of the module comment to one record (both sides alike).
fn normalise(r: &J, snap_pos: i64, server_id: i64) -> J {
    let mut r = r.clone();
    for k in ["partition", "offset"] {
        if let Some(m) = r.as_object_mut() {
            m.remove(k);
        }
    }
    let Some(v) = r.get_mut("value") else {
        return r;
    };
    if v.is_null() {
        return r;
    }
    let p = if v.get("payload").is_some() {
        v.get_mut("payload").unwrap()
    } else {
        v
    };
    let Some(pm) = p.as_object_mut() else {
        return r;
    };
    for k in ["ts_ms", "ts_us", "ts_ns"] {
        if pm.contains_key(k) {
            pm.insert(k.into(), J::String("<wall clock>".into()));
        }
    }
    if let Some(J::Object(src)) = pm.get_mut("source") {
        let snapshot = src.get("snapshot").and_then(J::as_str) != Some("false");
        if snapshot {
            for k in ["ts_ms", "ts_us", "ts_ns"] {
                src.insert(k.into(), J::String("<wall clock>".into()));
            }
        } else if src.get("server_id").and_then(J::as_i64) == Some(server_id) {
            src.insert("server_id".into(), J::String("<source server>".into()));
        }
        src.insert("version".into(), J::String("<version>".into()));
        if let Some(pos) = src.get("pos").and_then(J::as_i64) {
            src.insert(
                "pos".into(),
                J::String(format!("snapshot{:+}", pos - snap_pos)),
            );
        }
    }
    r
}

/// `value.payload.after.code` → class `data value.payload.after.code`; indices dropped.
fn class_of(kind: &str, diff: &str) -> String {
    let path = diff.split(": ").next().unwrap_or(diff);
    let mut out = String::with_capacity(path.len());
    let mut skip = false;
    for c in path.chars() {
        match c {
            '[' => skip = true,
            ']' => {
                skip = false;
                out.push_str("[]");
            }
            _ if !skip => out.push(c),
            _ => {}
        }
    }
    format!("{kind} {out}")
}

/// A record's identity for the order comparison.
fn order_item(r: &J) -> String {
    match payload(r) {
        None => format!("{} tombstone", r["topic"].as_str().unwrap_or("?")),
        Some(p) if is_schema_change(r) => format!(
            "schema-change {:?}",
            p.get("ddl").and_then(J::as_str).unwrap_or("")
        ),
        Some(p) => format!(
            "{} {}",
            r["topic"].as_str().unwrap_or("?"),
            p.get("op").and_then(J::as_str).unwrap_or("?")
        ),
    }
}

#[derive(Default)]
struct Report {
    /// class → examples (record description + difference)
    classes: BTreeMap<String, Vec<String>>,
}

impl Report {
    fn add(&mut self, class: String, example: String) {
        self.classes.entry(class).or_default().push(example);
    }
}

fn compare(ours: &[J], gold: &[J], our_server: i64, report: &mut Report) {
    let (osnap, gsnap) = (snapshot_pos(ours), snapshot_pos(gold));
    let on: Vec<J> = ours
        .iter()
        .map(|r| normalise(r, osnap, our_server))
        .collect();
    let gn: Vec<J> = gold.iter().map(|r| normalise(r, gsnap, 1)).collect();

    // Data topics: per topic, in order.
    let mut by_topic: BTreeMap<String, (Vec<&J>, Vec<&J>)> = BTreeMap::new();
    for r in on.iter().filter(|r| !is_schema_change(r)) {
        by_topic
            .entry(r["topic"].as_str().unwrap_or("?").into())
            .or_default()
            .0
            .push(r);
    }
    for r in gn.iter().filter(|r| !is_schema_change(r)) {
        by_topic
            .entry(r["topic"].as_str().unwrap_or("?").into())
            .or_default()
            .1
            .push(r);
    }
    for (topic, (o, g)) in &by_topic {
        if o.len() != g.len() {
            report.add(
                "data record count".into(),
                format!("{topic}: ours {} golden {}", o.len(), g.len()),
            );
        }
        for (i, (a, b)) in o.iter().zip(g).enumerate() {
            let mut d = Vec::new();
            diff_json("", a, b, &|_| false, &mut d);
            for x in d {
                report.add(class_of("data", &x), format!("{topic}#{i}: {x}"));
            }
        }
    }

    // Schema-change topic: aligned by ddl text, in order.
    let ddl = |r: &J| {
        payload(r)
            .and_then(|p| p.get("ddl"))
            .and_then(J::as_str)
            .unwrap_or("")
            .to_string()
    };
    let osc: Vec<&J> = on.iter().filter(|r| is_schema_change(r)).collect();
    let mut used = vec![false; osc.len()];
    // Golden schema-change records without a counterpart (by ddl text), for the order check.
    let mut unmatched_gold: Vec<String> = Vec::new();
    for g in gn.iter().filter(|r| is_schema_change(r)) {
        let gd = ddl(g);
        let found = (0..osc.len()).find(|&i| !used[i] && ddl(osc[i]) == gd);
        match found {
            None => {
                unmatched_gold.push(order_item(g));
                let snap = payload(g)
                    .and_then(|p| p["source"]["snapshot"].as_str())
                    .unwrap_or("?")
                    != "false";
                report.add(
                    format!(
                        "schema-change missing ({})",
                        if snap { "snapshot" } else { "streamed" }
                    ),
                    gd.chars().take(100).collect(),
                );
            }
            Some(i) => {
                used[i] = true;
                let mut d = Vec::new();
                diff_json("", osc[i], g, &|_| false, &mut d);
                for x in d {
                    report.add(
                        class_of("schema-change", &x),
                        format!("{:?}: {x}", gd.chars().take(60).collect::<String>()),
                    );
                }
            }
        }
    }
    let mut unmatched_ours: Vec<String> = Vec::new();
    for (i, r) in osc.iter().enumerate() {
        if !used[i] {
            report.add("schema-change extra".into(), ddl(r));
            unmatched_ours.push(order_item(r));
        }
    }

    // Interleaving: the sequence of records, schema changes and data together (records
    // reported missing/extra above left out, once each).
    let without = |recs: &[J], mut drop: Vec<String>| -> Vec<String> {
        recs.iter()
            .map(order_item)
            .filter(|it| match drop.iter().position(|d| d == it) {
                Some(k) => {
                    drop.remove(k);
                    false
                }
                None => true,
            })
            .collect()
    };
    let os = without(ours, unmatched_ours);
    let gs = without(gold, unmatched_gold);
    if os != gs {
        let first = os
            .iter()
            .zip(&gs)
            .position(|(a, b)| a != b)
            .unwrap_or(os.len().min(gs.len()));
        report.add(
            "record order".into(),
            format!(
                "first difference at record {first}: ours {:?} golden {:?}",
                os.get(first),
                gs.get(first)
            ),
        );
    }
}

/// Runs `setup` SQL files, `tributary capture` (snapshot), the `stream` file, capture again,
/// and compares everything with the `golden` fixture; `known` is that scenario's allow-list.
fn scenario(
    test: &str,
    setup: &[&str],
    stream: &str,
    database: &str,
    golden: &str,
    known: &[(&str, &str)],
) {
    let Some(db) = maria118_or_skip_with(test, &["--binlog-row-metadata=FULL"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("capture.jsonl");
    for f in setup {
        db.sql_file(&fixture(f)).unwrap();
    }
    capture(&db, &out, database); // the snapshot
    db.sql_file(&fixture(stream)).unwrap();
    capture(&db, &out, database); // resumes from its position file: the stream

    let ours = read_jsonl(&out);
    let gold = read_jsonl(&fixture(golden));
    let mut report = Report::default();
    compare(&ours, &gold, db.server_id as i64, &mut report);

    let mut text = String::new();
    for (class, ex) in &report.classes {
        let k = known.iter().find(|(c, _)| c == class);
        text.push_str(&format!(
            "\n== {class} ({} occurrence(s)){}\n",
            ex.len(),
            match k {
                Some((_, why)) => format!(" — known: {why}"),
                None => " — NOT KNOWN".into(),
            }
        ));
        for e in ex.iter().take(4) {
            text.push_str(&format!("   {e}\n"));
        }
    }
    eprintln!(
        "{golden}: capture vs real Debezium: {} record(s) ours, {} golden; {} difference \
         class(es){text}",
        ours.len(),
        gold.len(),
        report.classes.len()
    );
    let unknown: Vec<&String> = report
        .classes
        .keys()
        .filter(|c| !known.iter().any(|(k, _)| k == c))
        .collect();
    let stale: Vec<&str> = known
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| !report.classes.contains_key(*k))
        .collect();
    assert!(
        unknown.is_empty() && stale.is_empty(),
        "difference classes not in the allow-list: {unknown:#?}\nallow-listed classes that no \
         longer occur (remove them here and in README's fidelity table): {stale:#?}"
    );
}

/// The DDL scenario (every DDL kind mid-stream, keyless table, primary-key changes).
#[test]
fn capture_matches_real_debezium_ddl_scenario() {
    scenario(
        "capture_matches_real_debezium_ddl_scenario",
        &["ddl/init.sql"],
        "ddl/stream.sql",
        "ddldb",
        "ddl/debezium-default.jsonl",
        KNOWN_DDL,
    );
}

/// The type-edge scenario (`fixtures/fidelity`): YEAR 0000, FLOAT extremes, TIMESTAMP(6) zero
/// fractions, CURRENT_TIMESTAMP defaults, NULLs in columns with a DEFAULT, a zero date in a NOT
/// NULL DATE, keyless deletes, a primary-key change. The fixture's server held the DDL
/// scenario's final state too (its snapshot records every table of the server), so it runs
/// first here.
#[test]
fn capture_matches_real_debezium_type_edges() {
    scenario(
        "capture_matches_real_debezium_type_edges",
        &["ddl/init.sql", "ddl/stream.sql", "fidelity/init.sql"],
        "fidelity/stream.sql",
        "fidb",
        "fidelity/debezium-default.jsonl",
        KNOWN_EDGES,
    );
}
