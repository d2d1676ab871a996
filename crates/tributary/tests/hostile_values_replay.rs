//! Issue #10, values, end to end: hostile decimals and coordinates through `tributary replay`
//! into PostgreSQL. Every value is stored exactly or its record is in
//! `tributary.dead_letters` with a reason naming the field — nothing is wrapped (a 100 KB
//! decimal and a 140k-digit schemaless decimal used to be stored as `0.00` with
//! `0 dead-lettered`).

use std::io::Write;
use std::process::Command;

use base64::Engine;
use serde_json::{json, Value as J};
use tributary_testkit::PgDb;

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .env("TRIBUTARY_LOG", "warn")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const TOPIC: &str = "dbserver1.shop.prices";

fn source(offset: i64) -> J {
    json!({"version": "3.6.3.Final", "connector": "mysql", "name": "dbserver1",
           "ts_ms": 1758160342000i64, "snapshot": "false", "db": "shop", "table": "prices",
           "server_id": 1, "file": "bin.000001", "pos": 100 + offset, "row": 0})
}

/// A Connect envelope (schemas.enable=true) with `id` and a DECIMAL(10,2) `amount`.
fn with_schema(offset: i64, id: i64, amount_b64: &str) -> String {
    let row = |f: &str| {
        json!({"type": "struct", "optional": true, "field": f, "fields": [
            {"type": "int64", "optional": false, "field": "id"},
            {"type": "bytes", "optional": true, "name": "org.apache.kafka.connect.data.Decimal",
             "parameters": {"scale": "2", "connect.decimal.precision": "10"}, "field": "amount"}]})
    };
    let value = json!({
        "schema": {"type": "struct", "fields": [row("before"), row("after"),
            {"type": "struct", "field": "source", "optional": false, "fields": []},
            {"type": "string", "field": "op", "optional": false},
            {"type": "int64", "field": "ts_ms", "optional": true}]},
        "payload": {"before": null, "after": {"id": id, "amount": amount_b64},
                    "source": source(offset), "op": "c", "ts_ms": 1758160342000i64}
    });
    json!({"topic": TOPIC, "partition": 0, "offset": offset, "key": {"id": id}, "value": value})
        .to_string()
}

/// The same table without a schema: `amount` is spelled as written (a JSON number).
fn schemaless(offset: i64, id: i64, amount: &str) -> String {
    format!(
        r#"{{"topic":"{TOPIC}","partition":0,"offset":{offset},"key":{{"id":{id}}},"value":{{"before":null,"after":{{"id":{id},"amount":{amount}}},"source":{},"op":"c","ts_ms":1758160342000}}}}"#,
        source(offset)
    )
}

#[test]
fn hostile_decimals_are_exact_or_dead_lettered() {
    let db = PgDb::new("hostile_values").unwrap();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut huge = vec![0x5Au8; 100_000];
    huge[0] = 0x12;
    let lines = [
        // 12345678.90 — applied.
        with_schema(0, 1, "SZYC0g=="),
        // A 100 KB unscaled value (~240k digits): beyond PostgreSQL numeric → decode stage.
        with_schema(1, 2, &b64(&huge)),
        // 140,000 digits, schemaless, into the numeric(10,2) column → apply stage.
        schemaless(2, 3, &format!("{}.25", "7".repeat(140_000))),
        // 11 integer digits do not fit numeric(10,2) (was a failing COPY) → apply stage.
        schemaless(3, 4, "12345678901.5"),
        // Fits: applied exactly.
        schemaless(4, 5, "-99999999.99"),
    ];
    let mut f = tempfile::NamedTempFile::new().unwrap();
    for l in &lines {
        writeln!(f, "{l}").unwrap();
    }
    let (ok, out, err) = run(&[
        "replay",
        f.path().to_str().unwrap(),
        "--postgres-url",
        &db.url,
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        "applied 2 change(s), 0 already applied, 3 dead-lettered",
        "{err}"
    );
    let rows = db
        .query("SELECT id, amount FROM shop.prices_current ORDER BY id")
        .unwrap();
    assert_eq!(rows.trim(), "1\t12345678.90\n5\t-99999999.99");
    let dl = db
        .query(
            "SELECT kafka_offset, stage, record_value IS NOT NULL, left(reason, 400) \
             FROM tributary.dead_letters ORDER BY kafka_offset",
        )
        .unwrap();
    let dl: Vec<&str> = dl.lines().collect();
    assert_eq!(dl.len(), 3, "{dl:?}");
    assert!(dl[0].starts_with("1\tdecode\tt\t"), "{dl:?}");
    assert!(
        dl[0].contains("value.payload.after.amount") && dl[0].contains("PostgreSQL numeric"),
        "{dl:?}"
    );
    assert!(dl[1].starts_with("2\tapply\tt\t"), "{dl:?}");
    assert!(dl[1].contains("131072"), "{dl:?}");
    assert!(dl[2].starts_with("3\tapply\tt\t"), "{dl:?}");
    assert!(dl[2].contains("numeric(10,2)"), "{dl:?}");
}

/// Coordinates are checked, not cast: partition 4294967297 (was partition 1), a negative
/// offset, and `i64::MAX` (the stored next offset wrapped negative) stop the replay with the
/// file and line, before anything is applied.
#[test]
fn bad_coordinates_are_refused_with_file_and_line() {
    let db = PgDb::new("hostile_coords").unwrap();
    for (p, o, what) in [
        ("4294967297", "0", "partition 4294967297"),
        ("0", "-5", "offset -5"),
        ("0", "9223372036854775807", "offset 9223372036854775807"),
    ] {
        let good = with_schema(0, 1, "SZYC0g==");
        let bad = good
            .replacen("\"partition\":0", &format!("\"partition\":{p}"), 1)
            .replacen("\"offset\":0", &format!("\"offset\":{o}"), 1);
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "{good}\n{bad}").unwrap();
        let path = f.path().to_str().unwrap().to_string();
        let (ok, _, err) = run(&["replay", &path, "--postgres-url", &db.url]);
        assert!(!ok, "{what}: accepted");
        assert!(
            err.contains(&format!("{path}:2")) && err.contains(what),
            "{what}: {err}"
        );
    }
}
