//! Recorded Kafka records (the replay / capture `--output` format): one JSON object per line
//! with `topic`, `partition`, `offset`, `key`, `value`, where key and value are JSON (object,
//! array, …), a JSON *string* holding the serialized JSON, or `null` (a tombstone value).
//! kcat `-J` lines (`payload` instead of `value`, key/payload as strings) are accepted too.
//!
//! Bad lines are errors naming the file and line; nothing is skipped silently. Coordinates are
//! checked, never cast: `partition` must be in `0..=i32::MAX` and `offset` in
//! `0..i64::MAX` (the checkpoint stores `offset + 1`). One line is at most
//! [`MAX_LINE_BYTES`] (64 MiB, the decoder's record limit
//! [`tributary_codec::MAX_RECORD_BYTES`] too); [`Lines`] stops reading a longer line at the
//! limit instead of buffering it whole.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use tributary_model::RawRecord;

/// Longest input line accepted (bytes, without the newline).
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// The non-empty-or-empty lines of a JSONL input with their 1-based numbers, each at most
/// [`MAX_LINE_BYTES`]: a longer line is an error naming `file:line` (read no further than
/// the limit), as is a line that is not UTF-8. Iteration ends after the first error.
pub struct Lines<R> {
    r: R,
    name: String,
    n: usize,
    done: bool,
}

impl<R: BufRead> Lines<R> {
    /// `name` is the file name used in errors.
    pub fn new(r: R, name: impl std::fmt::Display) -> Self {
        Lines {
            r,
            name: name.to_string(),
            n: 0,
            done: false,
        }
    }
}

impl<R: BufRead> Iterator for Lines<R> {
    /// (line number, line without its `\n` / `\r\n`).
    type Item = Result<(usize, String)>;

    fn next(&mut self) -> Option<Self::Item> {
        use std::io::Read;
        if self.done {
            return None;
        }
        self.n += 1;
        let mut buf = Vec::new();
        let limit = u64::try_from(MAX_LINE_BYTES)
            .unwrap_or(u64::MAX)
            .saturating_add(2);
        let read = (&mut self.r).take(limit).read_until(b'\n', &mut buf);
        let fail = |this: &mut Self, e: anyhow::Error| {
            this.done = true;
            Some(Err(e))
        };
        match read {
            Err(e) => {
                let e = anyhow::Error::new(e).context(format!("{}:{}: reading", self.name, self.n));
                return fail(self, e);
            }
            Ok(0) => {
                self.done = true;
                return None;
            }
            Ok(_) => {}
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        if buf.len() > MAX_LINE_BYTES {
            let e = anyhow::anyhow!(
                "{}:{}: line longer than {MAX_LINE_BYTES} bytes (the limit of one record)",
                self.name,
                self.n
            );
            return fail(self, e);
        }
        match String::from_utf8(buf) {
            Ok(s) => Some(Ok((self.n, s))),
            Err(e) => {
                let e = anyhow::anyhow!("{}:{}: not UTF-8: {e}", self.name, self.n);
                fail(self, e)
            }
        }
    }
}

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
        .with_context(|| format!("{where_}: missing integer field \"partition\""))?;
    let partition = i32::try_from(partition)
        .ok()
        .filter(|p| *p >= 0)
        .with_context(|| {
            format!(
                "{where_}: partition {partition} is outside 0..={}",
                i32::MAX
            )
        })?;
    let offset = l
        .offset
        .with_context(|| format!("{where_}: missing integer field \"offset\""))?;
    // The checkpoint stores `offset + 1`: i64::MAX itself would wrap it.
    if !(0..i64::MAX).contains(&offset) {
        bail!("{where_}: offset {offset} is outside 0..{}", i64::MAX);
    }
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
    let r = std::io::BufReader::with_capacity(1 << 20, f);
    for item in Lines::new(r, path.display()) {
        let (n, line) = item?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(parse_line(&line, format_args!("{}:{n}", path.display()))?);
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
        // Coordinates are checked, not cast (issue #10: 4294967297 became partition 1).
        for (p, o, what) in [
            ("4294967297", "0", "partition 4294967297"),
            ("-1", "0", "partition -1"),
            ("0", "-5", "offset -5"),
            ("0", "9223372036854775807", "offset 9223372036854775807"),
        ] {
            let l =
                format!(r#"{{"topic":"t","partition":{p},"offset":{o},"key":null,"value":null}}"#);
            let e = format!("{:#}", parse_line(&l, "f.jsonl:3").unwrap_err());
            assert!(e.contains("f.jsonl:3") && e.contains(what), "{e}");
        }
        let l = r#"{"topic":"t","partition":2147483647,"offset":9223372036854775806,"value":null}"#;
        let r = parse_line(l, "x").unwrap();
        assert_eq!((r.partition, r.offset), (i32::MAX, i64::MAX - 1));
        let mut out = Vec::new();
        write_line(&mut out, "t", 0, 1, Some(br#"{"id":1}"#), None).unwrap();
        let back = parse_line(std::str::from_utf8(&out).unwrap().trim(), "w").unwrap();
        assert_eq!(back.key.as_deref(), Some(&br#"{"id":1}"#[..]));
        assert_eq!(back.value, None);
    }

    /// A line over [`MAX_LINE_BYTES`] is an error naming file:line, read no further than the
    /// limit (an endless line cannot exhaust memory).
    #[test]
    fn long_lines_are_refused() {
        struct Endless(usize);
        impl std::io::Read for Endless {
            fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
                b.fill(b'x');
                self.0 += b.len();
                assert!(self.0 < 2 * MAX_LINE_BYTES, "read past the limit");
                Ok(b.len())
            }
        }
        let first = b"{\"a\":1}\r\n".to_vec();
        let r = std::io::BufReader::new(std::io::Read::chain(&first[..], Endless(0)));
        let mut lines = Lines::new(r, "big.jsonl");
        assert_eq!(lines.next().unwrap().unwrap(), (1, "{\"a\":1}".to_string()));
        let e = lines.next().unwrap().unwrap_err().to_string();
        assert!(
            e.contains("big.jsonl:2") && e.contains("longer than"),
            "{e}"
        );
        assert!(lines.next().is_none());
        // Exactly at the limit is fine; non-UTF-8 is an error with its line.
        let mut ok = vec![b'y'; MAX_LINE_BYTES];
        ok.push(b'\n');
        ok.extend_from_slice(b"\xff\n");
        let mut lines = Lines::new(&ok[..], "f");
        assert_eq!(lines.next().unwrap().unwrap().1.len(), MAX_LINE_BYTES);
        let e = lines.next().unwrap().unwrap_err().to_string();
        assert!(e.contains("f:2") && e.contains("UTF-8"), "{e}");
    }
}
