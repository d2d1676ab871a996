//! Recorded Kafka records (the replay / capture `--output` format): one JSON object per line
//! with `topic`, `partition`, `offset`, `key`, `value`, where key and value are JSON (object,
//! array, …), a JSON *string* holding the serialized JSON, or `null` (a tombstone value).
//! kcat `-J` lines (`payload` instead of `value`, key/payload as strings) are accepted too.
//!
//! Bad lines are errors naming the file and line; nothing is skipped silently.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use tributary_model::RawRecord;

/// One line, borrowed: key and value stay raw JSON text (no parse → re-serialize round trip).
#[derive(serde::Deserialize)]
struct Line<'a> {
    topic: Option<std::borrow::Cow<'a, str>>,
    partition: Option<i64>,
    offset: Option<i64>,
    #[serde(borrow, default)]
    key: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow, default)]
    value: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow, default)]
    payload: Option<&'a serde_json::value::RawValue>,
}

/// Raw JSON → the record bytes: `null` → None, a JSON string → its contents (JSON given as
/// a string), anything else → the JSON text as written.
fn bytes_of(v: Option<&serde_json::value::RawValue>) -> Result<Option<Vec<u8>>> {
    let Some(v) = v else { return Ok(None) };
    let t = v.get();
    Ok(match t.as_bytes().first() {
        Some(b'n') if t == "null" => None,
        Some(b'"') => Some(serde_json::from_str::<String>(t)?.into_bytes()),
        _ => Some(t.as_bytes().to_vec()),
    })
}

/// Parse one line. `where_` names the input for errors (`file:line`).
/// `where_` names the line in errors (`file:line`); it is only formatted when there is one.
pub fn parse_line(line: &str, where_: impl std::fmt::Display) -> Result<RawRecord> {
    let l: Line = serde_json::from_str(line).with_context(|| {
        format!("{where_}: not a JSON object with topic/partition/offset/key/value")
    })?;
    let topic = l
        .topic
        .with_context(|| format!("{where_}: missing string field \"topic\""))?
        .into_owned();
    let partition = l
        .partition
        .with_context(|| format!("{where_}: missing integer field \"partition\""))?
        as i32;
    let offset = l
        .offset
        .with_context(|| format!("{where_}: missing integer field \"offset\""))?;
    // `value` (ours) or kcat -J's `payload`; a present `"value": null` is a tombstone.
    let value = match (l.value, l.payload) {
        (Some(v), _) => Some(v),
        (None, Some(p)) => Some(p),
        (None, None) if line.contains("\"value\"") || line.contains("\"payload\"") => None,
        (None, None) => bail!("{where_}: missing field \"value\" (or kcat's \"payload\")"),
    };
    Ok(RawRecord {
        topic,
        partition,
        offset,
        key: bytes_of(l.key).with_context(|| format!("{where_}: key"))?,
        value: bytes_of(value).with_context(|| format!("{where_}: value"))?,
    })
}

/// Read a whole JSONL file.
pub fn read_file(path: &Path) -> Result<Vec<RawRecord>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::with_capacity(1 << 20, f)
        .lines()
        .enumerate()
    {
        let line = line.with_context(|| format!("{}:{}: reading", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(parse_line(
            &line,
            format_args!("{}:{}", path.display(), i + 1),
        )?);
    }
    Ok(out)
}

/// Write one record as a JSONL line (key/value embedded as JSON when they are JSON).
pub fn write_line(
    w: &mut impl Write,
    topic: &str,
    partition: i32,
    offset: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> std::io::Result<()> {
    fn raw(b: Option<&[u8]>) -> String {
        match b {
            None => "null".into(),
            Some(b) => match std::str::from_utf8(b) {
                Ok(s) if serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok() => s.to_string(),
                Ok(s) => serde_json::to_string(s).unwrap(),
                Err(_) => serde_json::to_string(&String::from_utf8_lossy(b)).unwrap(),
            },
        }
    }
    writeln!(
        w,
        "{{\"topic\":{},\"partition\":{},\"offset\":{},\"key\":{},\"value\":{}}}",
        serde_json::to_string(topic).unwrap(),
        partition,
        offset,
        raw(key),
        raw(value)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_errors() {
        let r = parse_line(
            r#"{"topic":"t","partition":0,"offset":5,"key":{"id":1},"value":null}"#,
            "x:1",
        )
        .unwrap();
        assert_eq!(r.key.as_deref(), Some(&br#"{"id":1}"#[..]));
        assert_eq!(r.value, None);
        let r = parse_line(
            r#"{"topic":"t","partition":1,"offset":7,"key":"{\"id\":1}","value":"{\"a\":2}"}"#,
            "x:2",
        )
        .unwrap();
        assert_eq!(r.value.as_deref(), Some(&br#"{"a":2}"#[..]));
        let kcat = r#"{"topic":"t","partition":0,"offset":3,"tstype":"create","ts":1,"broker":1,"headers":[],"key":null,"payload":"{\"a\":1}"}"#;
        assert_eq!(
            parse_line(kcat, "x:3").unwrap().value.as_deref(),
            Some(&br#"{"a":1}"#[..])
        );
        let e = parse_line(r#"{"partition":0}"#, "f.jsonl:9")
            .unwrap_err()
            .to_string();
        assert!(e.contains("f.jsonl:9") && e.contains("topic"), "{e}");
        assert!(parse_line("nope", "f:1").is_err());
        let mut out = Vec::new();
        write_line(&mut out, "t", 0, 1, Some(br#"{"id":1}"#), None).unwrap();
        let back = parse_line(std::str::from_utf8(&out).unwrap().trim(), "w").unwrap();
        assert_eq!(back.key.as_deref(), Some(&br#"{"id":1}"#[..]));
        assert_eq!(back.value, None);
    }
}
