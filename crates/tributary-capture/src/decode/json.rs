//! MySQL binary JSON (the server's `json_binary` storage format, MySQL 5.7 … 9.x; MariaDB
//! stores JSON as text and never reaches this) → JSON text, spelled exactly as MySQL's own
//! `SELECT` prints the document.
//!
//! Why MySQL's spelling: the snapshot reads JSON columns with `SELECT`, the stream decodes
//! them here; both must give the same text for the same document, or a row would change
//! merely by being streamed (and `verify` would report a difference). The test
//! `server_fixtures` checks the decoder against documents and `SELECT` texts captured from a
//! MySQL 9.7 server (`json_fixtures.tsv`: the binlog bytes of each document and the server's
//! text of it), including every scalar and opaque type, a 90 KiB document in the large format,
//! MySQL's deepest nesting and 448 doubles printed by the server.
//!
//! What it owns:
//! * every value type of the format: objects and arrays (small: 16-bit offsets; large:
//!   32-bit), literals, int16/uint16/int32/uint32/int64/uint64 (all of `u64`, never rounded
//!   through a double), doubles (shortest round-trip digits, MySQL's choice between `1e15`
//!   and `100.0`), utf8mb4 strings, and *opaque* values: DECIMAL (`12.50`, scale kept),
//!   DATE (`"2024-02-29"`), DATETIME and TIMESTAMP (`"2024-02-29 13:14:15.000000"`), TIME
//!   (`"-838:59:59.000000"`), and any other type as MySQL prints it:
//!   `"base64:type<N>:<base64>"` (BINARY/BLOB/BIT values cast to JSON).
//! * keys in storage order (the server's order: by length, then bytes), which is the order
//!   `SELECT` prints.
//! * bounds: at most [`MAX_DEPTH`] nested containers (the server's own limit; recursion is
//!   bounded by it, never by the input), at most as many values as the document has bytes
//!   (entries of a hostile document may all point at one sub-document), and an output of at
//!   most [`MAX_EXPANSION`] × the input plus a constant (one string referenced by every entry).
//!   Offsets, sizes and lengths are checked against the enclosing container before use;
//!   strings and keys must be UTF-8. Anything else is an error naming what was wrong — never a
//!   panic and never a guessed value.
//!
//! Where Debezium differs (mysql-binlog-connector-java's `JsonStringFormatter`, used by
//! Debezium's binlog reader only — its snapshot reads MySQL's text like tributary): compact
//! separators (`{"a":1}`), opaque binary values as bare base64 without the `base64:typeN:`
//! prefix, DATETIME/TIME without a zero fraction. The README's type notes list these.

/// Deepest nesting of containers (MySQL's `JSON_DOCUMENT_MAX_DEPTH`).
pub(crate) const MAX_DEPTH: usize = 100;

/// The text of a document is at most this many times its binary size (plus a constant): a
/// real document expands at most 6× (a control character in a string becomes `\u001f`).
pub(crate) const MAX_EXPANSION: usize = 8;

const T_SMALL_OBJECT: u8 = 0x00;
const T_LARGE_OBJECT: u8 = 0x01;
const T_SMALL_ARRAY: u8 = 0x02;
const T_LARGE_ARRAY: u8 = 0x03;
const T_LITERAL: u8 = 0x04;
const T_INT16: u8 = 0x05;
const T_UINT16: u8 = 0x06;
const T_INT32: u8 = 0x07;
const T_UINT32: u8 = 0x08;
const T_INT64: u8 = 0x09;
const T_UINT64: u8 = 0x0a;
const T_DOUBLE: u8 = 0x0b;
const T_STRING: u8 = 0x0c;
const T_OPAQUE: u8 = 0x0f;

// Field types of opaque values that MySQL prints as values, not as base64.
const F_TIMESTAMP: u8 = 7;
const F_DATE: u8 = 10;
const F_TIME: u8 = 11;
const F_DATETIME: u8 = 12;
const F_NEWDECIMAL: u8 = 246;

/// A binary JSON document → MySQL's text of it. An empty value is JSON `null` (what the
/// server writes for a NULL-equivalent empty JSON value).
pub(crate) fn to_text(bytes: &[u8]) -> Result<String, String> {
    let Some((&t, body)) = bytes.split_first() else {
        return Ok("null".into());
    };
    let mut d = Decoder {
        out: String::with_capacity(bytes.len().saturating_mul(2).min(1 << 20)),
        values: bytes.len(),
        max_out: bytes
            .len()
            .saturating_mul(MAX_EXPANSION)
            .saturating_add(1024),
    };
    d.value(t, body, 0)?;
    Ok(d.out)
}

struct Decoder {
    out: String,
    /// Values still allowed (starts at the document's byte length).
    values: usize,
    max_out: usize,
}

fn slice(b: &[u8], at: usize, n: usize) -> Result<&[u8], String> {
    at.checked_add(n)
        .and_then(|end| b.get(at..end))
        .ok_or_else(|| {
            format!(
                "truncated: {n} bytes at offset {at} of a {}-byte value",
                b.len()
            )
        })
}

fn uint_le(b: &[u8], at: usize, n: usize) -> Result<u64, String> {
    Ok(slice(b, at, n)?
        .iter()
        .rev()
        .fold(0u64, |v, x| (v << 8) | u64::from(*x)))
}

fn usize_le(b: &[u8], at: usize, n: usize) -> Result<usize, String> {
    let v = uint_le(b, at, n)?;
    usize::try_from(v).map_err(|_| format!("offset {v} out of range"))
}

/// The format's variable-length integer: 7 bits a byte, low first, at most 5 bytes (< 2^32).
/// Returns (value, bytes used).
fn var_len(b: &[u8]) -> Result<(usize, usize), String> {
    let mut v: u64 = 0;
    for i in 0..5 {
        let x = *b.get(i).ok_or("truncated length")?;
        v |= u64::from(x & 0x7f) << (7 * i);
        if x & 0x80 == 0 {
            if v > u64::from(u32::MAX) {
                return Err(format!("length {v} larger than 4 GiB"));
            }
            let v = usize::try_from(v).map_err(|_| format!("length {v} out of range"))?;
            return Ok((v, i + 1));
        }
    }
    Err("length longer than 5 bytes".into())
}

impl Decoder {
    fn push(&mut self, s: &str) -> Result<(), String> {
        if self.out.len().saturating_add(s.len()) > self.max_out {
            return Err(format!(
                "expands to more than {} bytes of text ({MAX_EXPANSION}× the document)",
                self.max_out
            ));
        }
        self.out.push_str(s);
        Ok(())
    }

    /// One value of type `t` whose data starts at `v[0]` (containers: offsets relative to it).
    fn value(&mut self, t: u8, v: &[u8], depth: usize) -> Result<(), String> {
        self.values = self
            .values
            .checked_sub(1)
            .ok_or("more values than the document has bytes")?;
        match t {
            T_SMALL_OBJECT | T_LARGE_OBJECT | T_SMALL_ARRAY | T_LARGE_ARRAY => {
                if depth >= MAX_DEPTH {
                    return Err(format!("nested deeper than {MAX_DEPTH} levels"));
                }
                self.container(t, v, depth)
            }
            T_LITERAL => self.literal(*v.first().ok_or("truncated literal")?),
            T_INT16 => self.int(i64::from(i16::from_le_bytes(two(v)?))),
            T_UINT16 => self.int(i64::from(u16::from_le_bytes(two(v)?))),
            T_INT32 => self.int(i64::from(i32::from_le_bytes(four(v)?))),
            T_UINT32 => self.int(i64::from(u32::from_le_bytes(four(v)?))),
            T_INT64 => self.int(i64::from_le_bytes(eight(v)?)),
            T_UINT64 => {
                let x = u64::from_le_bytes(eight(v)?);
                self.push(&x.to_string())
            }
            T_DOUBLE => {
                let x = f64::from_le_bytes(eight(v)?);
                let s = mysql_double(x)?;
                self.push(&s)
            }
            T_STRING => {
                let (n, used) = var_len(v)?;
                let s = std::str::from_utf8(slice(v, used, n)?)
                    .map_err(|e| format!("string is not UTF-8: {e}"))?;
                self.string(s)
            }
            T_OPAQUE => {
                let (&ft, rest) = v.split_first().ok_or("truncated opaque value")?;
                let (n, used) = var_len(rest)?;
                let data = slice(rest, used, n)?;
                self.opaque(ft, data)
            }
            other => Err(format!("unknown value type {other:#04x}")),
        }
    }

    fn literal(&mut self, b: u8) -> Result<(), String> {
        self.push(match b {
            0 => "null",
            1 => "true",
            2 => "false",
            other => return Err(format!("unknown literal {other}")),
        })
    }

    fn int(&mut self, i: i64) -> Result<(), String> {
        self.push(&i.to_string())
    }

    fn string(&mut self, s: &str) -> Result<(), String> {
        let mut q = String::with_capacity(s.len() + 2);
        quote(s, &mut q);
        self.push(&q)
    }

    fn container(&mut self, t: u8, v: &[u8], depth: usize) -> Result<(), String> {
        let object = t == T_SMALL_OBJECT || t == T_LARGE_OBJECT;
        let large = t == T_LARGE_OBJECT || t == T_LARGE_ARRAY;
        let w = if large { 4 } else { 2 };
        let count = usize_le(v, 0, w)?;
        let size = usize_le(v, w, w)?;
        let v = v
            .get(..size)
            .ok_or_else(|| format!("container of {size} bytes in {} bytes", v.len()))?;
        let key_entry = w + 2;
        let value_entry = 1 + w;
        let keys_at = 2 * w;
        let values_at = count
            .checked_mul(if object { key_entry } else { 0 })
            .and_then(|k| k.checked_add(keys_at))
            .ok_or("element count out of range")?;
        let header_end = count
            .checked_mul(value_entry)
            .and_then(|x| x.checked_add(values_at))
            .filter(|&e| e <= size)
            .ok_or_else(|| format!("{count} elements do not fit in {size} bytes"))?;
        let _ = header_end;
        self.push(if object { "{" } else { "[" })?;
        for i in 0..count {
            if i > 0 {
                self.push(", ")?;
            }
            if object {
                let e = keys_at + i * key_entry;
                let off = usize_le(v, e, w)?;
                let len = usize_le(v, e + w, 2)?;
                let key = std::str::from_utf8(slice(v, off, len)?)
                    .map_err(|e| format!("key is not UTF-8: {e}"))?;
                self.string(key)?;
                self.push(": ")?;
            }
            let e = values_at + i * value_entry;
            let et = *v.get(e).ok_or("truncated value entry")?;
            let inlined = matches!(et, T_LITERAL | T_INT16 | T_UINT16)
                || (large && matches!(et, T_INT32 | T_UINT32));
            if inlined {
                let data = slice(v, e + 1, w)?;
                // Inlined values are charged like the others (the budget bounds the work).
                self.value(et, data, depth + 1)?;
            } else {
                let off = usize_le(v, e + 1, w)?;
                let data = v.get(off..).filter(|d| !d.is_empty()).ok_or_else(|| {
                    format!("value offset {off} outside its {size}-byte container")
                })?;
                self.value(et, data, depth + 1)?;
            }
        }
        self.push(if object { "}" } else { "]" })
    }

    fn opaque(&mut self, ft: u8, data: &[u8]) -> Result<(), String> {
        let s = match ft {
            F_NEWDECIMAL => {
                let (&precision, rest) = data.split_first().ok_or("truncated DECIMAL")?;
                let scale = *rest.first().ok_or("truncated DECIMAL")?;
                let mut p = 2;
                super::decode_decimal(data, &mut p, u32::from(precision), u32::from(scale))
                    .map_err(|e| format!("DECIMAL in JSON: {e}"))?
            }
            F_DATE => {
                let (y, mo, d, ..) = datetime_fields(packed(data)?)?;
                format!("\"{y:04}-{mo:02}-{d:02}\"")
            }
            F_DATETIME | F_TIMESTAMP => {
                let (y, mo, d, h, mi, s, us) = datetime_fields(packed(data)?)?;
                format!("\"{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}\"")
            }
            F_TIME => {
                let p = packed(data)?;
                let a = p.unsigned_abs();
                let us = a & 0xFF_FFFF;
                let hms = a >> 24;
                let (h, mi, s) = ((hms >> 12) & 0x3FF, (hms >> 6) & 0x3F, hms & 0x3F);
                if us >= 1_000_000 {
                    return Err(format!("TIME in JSON: fraction {us} out of range"));
                }
                let sign = if p < 0 { "-" } else { "" };
                format!("\"{sign}{h:02}:{mi:02}:{s:02}.{us:06}\"")
            }
            other => {
                let mut s = format!("\"base64:type{other}:");
                base64(data, &mut s);
                s.push('"');
                s
            }
        };
        self.push(&s)
    }
}

fn two(v: &[u8]) -> Result<[u8; 2], String> {
    let b = slice(v, 0, 2)?;
    Ok([b[0], b[1]])
}

fn four(v: &[u8]) -> Result<[u8; 4], String> {
    let b = slice(v, 0, 4)?;
    Ok([b[0], b[1], b[2], b[3]])
}

fn eight(v: &[u8]) -> Result<[u8; 8], String> {
    let b = slice(v, 0, 8)?;
    Ok([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// A temporal opaque value: MySQL's packed 64-bit form (little-endian).
fn packed(data: &[u8]) -> Result<i64, String> {
    if data.len() != 8 {
        return Err(format!(
            "temporal value of {} bytes in JSON (8 expected)",
            data.len()
        ));
    }
    Ok(i64::from_le_bytes(eight(data)?))
}

/// Year, month, day, hour, minute, second, microsecond.
type DateTimeFields = (u64, u64, u64, u64, u64, u64, u64);

/// Fields of a packed DATETIME: ((((year·13 + month) << 5 | day) << 17 | hms) << 24) + µs.
fn datetime_fields(p: i64) -> Result<DateTimeFields, String> {
    if p < 0 {
        return Err(format!("negative date/time {p} in JSON"));
    }
    let p = p.unsigned_abs();
    let us = p & 0xFF_FFFF;
    let ymdhms = p >> 24;
    let ymd = ymdhms >> 17;
    let hms = ymdhms & 0x1_FFFF;
    let ym = ymd >> 5;
    let (y, mo, d) = (ym / 13, ym % 13, ymd & 31);
    let (h, mi, s) = (hms >> 12, (hms >> 6) & 63, hms & 63);
    if y > 9999 || us >= 1_000_000 {
        return Err(format!(
            "date/time {y}-{mo}-{d} {h}:{mi}:{s}.{us} out of range in JSON"
        ));
    }
    Ok((y, mo, d, h, mi, s, us))
}

/// A JSON string in MySQL's escaping: `"` `\` and control characters (`\n`, `\u001f`);
/// everything else, U+007F and non-ASCII included, as is.
pub(crate) fn quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                use std::fmt::Write as _;
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A double as MySQL prints it in JSON: the shortest digits that read back as the same
/// double, in fixed notation when the decimal exponent is between -14 and 15 (or the number
/// has a fraction), else `1e15` / `1.2345678901234568e17`; a number without `.` or `e` gets
/// `.0` (`100.0`, `-0.0`). NaN and infinities do not exist in MySQL JSON: an error.
pub(crate) fn mysql_double(x: f64) -> Result<String, String> {
    if !x.is_finite() {
        return Err(format!("double {x} in JSON"));
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "d.ddde-N".
    let e = format!("{:e}", x.abs());
    let (mant, exp) = e.split_once('e').ok_or("double formatting")?;
    let exp: i32 = exp.parse().map_err(|_| "double formatting")?;
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let digits = if x == 0.0 {
        "0".to_string()
    } else {
        tie_to_even(x, digits)
    };
    let len = i32::try_from(digits.len()).map_err(|_| "double formatting")?;
    // dtoa's decimal point position: value = 0.DIGITS × 10^decpt.
    let decpt = if x == 0.0 { 1 } else { exp + 1 };
    let mut s = String::new();
    if x.is_sign_negative() {
        s.push('-');
    }
    if decpt >= -14 && (decpt <= 15 || len > decpt) {
        if decpt <= 0 {
            s.push_str("0.");
            for _ in decpt..0 {
                s.push('0');
            }
            s.push_str(&digits);
        } else {
            let dp = usize::try_from(decpt).map_err(|_| "double formatting")?;
            if digits.len() > dp {
                s.push_str(&digits[..dp]);
                s.push('.');
                s.push_str(&digits[dp..]);
            } else {
                s.push_str(&digits);
                for _ in digits.len()..dp {
                    s.push('0');
                }
            }
        }
    } else {
        s.push_str(&digits[..1]);
        if digits.len() > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        s.push('e');
        s.push_str(&(decpt - 1).to_string());
    }
    if !s.contains(['.', 'e']) {
        s.push_str(".0");
    }
    Ok(s)
}

/// The server's dtoa breaks an exact tie between two shortest 17-digit strings toward the even
/// last digit (`1712313969785907.25` → `…907.2`); Rust's formatter rounds it up. Both read
/// back as the same double; this keeps the server's spelling.
fn tie_to_even(x: f64, digits: String) -> String {
    if digits.len() != 17 {
        return digits;
    }
    // A double's exact decimal expansion has fewer than 800 significant digits.
    let exact = format!("{:.800e}", x.abs());
    let exact: String = exact
        .split('e')
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_digit())
        .collect();
    let (head, tail) = exact.split_at(17.min(exact.len()));
    let is_tie = tail.starts_with('5') && tail[1..].bytes().all(|b| b == b'0');
    let even = head
        .bytes()
        .last()
        .is_some_and(|b| (b - b'0').is_multiple_of(2));
    if is_tie && even {
        head.to_string()
    } else {
        digits
    }
}

/// Standard base64 with padding (what MySQL prints for opaque values).
fn base64(data: &[u8], out: &mut String) {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for c in data.chunks(3) {
        let b = [
            c[0],
            c.get(1).copied().unwrap_or(0),
            c.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                out.push(char::from(A[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Documents captured from MySQL 9.7.4's binlog, each with the server's own
    /// `SELECT CAST(doc AS CHAR)` text (hex): the expected output is the server's, not ours.
    #[test]
    fn server_fixtures() {
        let fixtures = include_str!("json_fixtures.tsv");
        let (mut n, mut bad) = (0, Vec::new());
        for line in fixtures.lines().filter(|l| !l.is_empty()) {
            let mut f = line.split('\t');
            let (name, doc, text) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
            let want = String::from_utf8(hex(text)).unwrap();
            match to_text(&hex(doc)) {
                Ok(got) if got == want => {}
                got => bad.push(format!("{name}: got {got:?}, server {want:?}")),
            }
            n += 1;
        }
        assert!(bad.is_empty(), "{} of {n}:\n{}", bad.len(), bad.join("\n"));
        assert!(n > 400, "{n} fixtures");
    }

    #[test]
    fn doubles_like_mysql() {
        for (x, want) in [
            (1e15, "1e15"),
            (100.0, "100.0"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
            (1.5e-5, "0.000015"),
            (123456789012345678.0, "1.2345678901234568e17"),
        ] {
            assert_eq!(mysql_double(x).unwrap(), want);
        }
        assert!(mysql_double(f64::NAN).is_err());
    }

    #[test]
    fn base64_padding() {
        for (d, want) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
        ] {
            let mut s = String::new();
            base64(d, &mut s);
            assert_eq!(s, want);
        }
    }

    /// Hostile documents: every error is an `Err` naming the problem, never a panic.
    #[test]
    fn hostile_documents() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![0x0c, 0x85], "truncated"),
            (vec![0x0c, 0xff, 0xff, 0xff, 0xff, 0x7f], "4 GiB"),
            (vec![0x0c, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01], "5 bytes"),
            (vec![0x0c, 0x02, 0xff, 0xfe], "UTF-8"),
            (vec![0x04, 0x07], "literal"),
            (vec![0x0e, 0x00], "unknown value type"),
            // Small array claiming 1000 elements in 4 bytes.
            (vec![0x02, 0xe8, 0x03, 0x04, 0x00], "do not fit"),
            // Small array of size 100 in a 4-byte body.
            (vec![0x02, 0x01, 0x00, 0x64, 0x00], "container of 100 bytes"),
            // One element pointing outside the container.
            (
                vec![0x02, 0x01, 0x00, 0x07, 0x00, 0x0c, 0x50, 0x00],
                "outside",
            ),
            // Opaque DATETIME of 3 bytes.
            (vec![0x0f, 0x0c, 0x03, 1, 2, 3], "8 expected"),
            // Opaque DECIMAL(70,0): beyond the server's limit.
            (vec![0x0f, 0xf6, 0x03, 70, 0, 0], "DECIMAL"),
            (vec![0x0b, 0, 0, 0, 0, 0, 0, 0xf0, 0x7f], "double inf"),
        ];
        for (doc, why) in cases {
            let e = to_text(&doc).expect_err(why);
            assert!(e.contains(why), "{doc:02x?}: {e} (expected {why})");
        }
    }

    /// Every entry of each level points at one shared string: the text would be quadratic.
    #[test]
    fn shared_string_is_bounded() {
        let n: usize = 20_000;
        let s_len = 30_000usize;
        let entries = 4 + n * 3;
        let mut doc = vec![0x03u8];
        let body_len = 8 + n * 5 + 3 + s_len;
        doc.extend_from_slice(&u32::try_from(n).unwrap().to_le_bytes());
        doc.extend_from_slice(&u32::try_from(body_len).unwrap().to_le_bytes());
        let str_at = u32::try_from(8 + n * 5).unwrap();
        for _ in 0..n {
            doc.push(0x0c);
            doc.extend_from_slice(&str_at.to_le_bytes());
        }
        doc.extend_from_slice(&[
            0x80 | (s_len & 0x7f) as u8,
            (s_len >> 7) as u8 & 0x7f,
            (s_len >> 14) as u8,
        ]);
        doc.extend(std::iter::repeat_n(b'x', s_len));
        let _ = entries;
        let e = to_text(&doc).unwrap_err();
        assert!(e.contains("expands to more than"), "{e}");
    }

    /// Random mutations of the server's documents: never a panic, output bounded.
    #[test]
    fn mutated_fixtures_never_panic() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let docs: Vec<Vec<u8>> = include_str!("json_fixtures.tsv")
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| hex(l.split('\t').nth(1).unwrap()))
            .filter(|d| d.len() < 4096)
            .collect();
        for i in 0..50_000usize {
            let mut d = docs[i % docs.len()].clone();
            if d.is_empty() {
                continue;
            }
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % d.len();
                match next() % 3 {
                    0 => d[at] = next() as u8,
                    1 => d.truncate(at.max(1)),
                    _ => d[at] ^= 1 << (next() % 8),
                }
            }
            if let Ok(s) = to_text(&d) {
                assert!(s.len() <= d.len() * MAX_EXPANSION + 1024);
            }
        }
    }
}
