//! Target column types: the mapping source type → PostgreSQL type (documented in the README),
//! the reverse mapping used to resolve schemaless input against an existing table, and the
//! PostgreSQL binary COPY encoding of every [`Value`] into every type it can honestly become.
//!
//! Correctness rules:
//! * No silent narrowing: a value that does not fit its target (text into `integer`, 300 into
//!   `smallint`, a fraction into an integer column) is an [`EncodeError`], which the sink turns
//!   into a dead letter naming the column — never a truncated or NULL value.
//! * Exactness: decimals are encoded from their decimal string straight into PostgreSQL's
//!   base-10000 `numeric` wire form (no float on the way); `BIGINT UNSIGNED` becomes
//!   `numeric(20,0)`; MySQL `TIME` (±838 h) becomes `interval`, not `time`.
//! * Nothing PostgreSQL would refuse reaches a COPY (a refused COPY fails the whole batch):
//!   JSON that is not JSON, or a `jsonb` document holding U+0000, is an [`EncodeError`]
//!   ([`json_refusal`]); MySQL 9 VECTOR becomes `real[]` in the binary array format (1-D,
//!   finite floats only).

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};
use tributary_model::calendar::civil_from_days;
use tributary_model::{ColumnKind, Value};

/// A PostgreSQL column type tributary knows how to write.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PgType {
    Bool,
    Int2,
    Int4,
    Int8,
    /// `numeric(p,s)` or plain `numeric`.
    Numeric(Option<(u32, u32)>),
    Float4,
    Float8,
    Text,
    /// `character varying(n)` / `character(n)` — written like text.
    Varchar(String),
    Bytea,
    /// `bit(n)` (fixed) or `bit varying(n)`.
    Bit {
        len: u32,
        varying: bool,
    },
    Date,
    Interval,
    Time,
    Timestamp(Option<u8>),
    Timestamptz(Option<u8>),
    Jsonb,
    Json,
    Uuid,
    /// `real[]`: MySQL 9 VECTOR (one-dimensional, no NULL elements).
    Float4Array,
}

impl PgType {
    /// The type as DDL spells it.
    pub fn ddl(&self) -> String {
        match self {
            PgType::Bool => "boolean".into(),
            PgType::Int2 => "smallint".into(),
            PgType::Int4 => "integer".into(),
            PgType::Int8 => "bigint".into(),
            PgType::Numeric(Some((p, s))) => format!("numeric({p},{s})"),
            PgType::Numeric(None) => "numeric".into(),
            PgType::Float4 => "real".into(),
            PgType::Float8 => "double precision".into(),
            PgType::Text => "text".into(),
            PgType::Varchar(s) => s.clone(),
            PgType::Bytea => "bytea".into(),
            PgType::Bit { len, varying } => {
                format!("bit{}({len})", if *varying { " varying" } else { "" })
            }
            PgType::Date => "date".into(),
            PgType::Interval => "interval".into(),
            PgType::Time => "time".into(),
            PgType::Timestamp(Some(p)) => format!("timestamp({p}) without time zone"),
            PgType::Timestamp(None) => "timestamp without time zone".into(),
            PgType::Timestamptz(Some(p)) => format!("timestamp({p}) with time zone"),
            PgType::Timestamptz(None) => "timestamp with time zone".into(),
            PgType::Jsonb => "jsonb".into(),
            PgType::Json => "json".into(),
            PgType::Uuid => "uuid".into(),
            PgType::Float4Array => "real[]".into(),
        }
    }

    /// Parse `format_type()` output. Unknown types are `None` (the sink then refuses the
    /// column with a clear error instead of guessing a wire format).
    pub fn parse(s: &str) -> Option<PgType> {
        let s = s.trim();
        let args = |s: &str| -> Vec<u32> {
            s.find('(')
                .map(|i| {
                    s[i + 1..s.find(')').unwrap_or(s.len())]
                        .split(',')
                        .filter_map(|x| x.trim().parse().ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        Some(match s {
            "boolean" => PgType::Bool,
            "smallint" => PgType::Int2,
            "integer" => PgType::Int4,
            "bigint" => PgType::Int8,
            "real" => PgType::Float4,
            "double precision" => PgType::Float8,
            "text" => PgType::Text,
            "bytea" => PgType::Bytea,
            "date" => PgType::Date,
            "interval" => PgType::Interval,
            "time without time zone" => PgType::Time,
            "jsonb" => PgType::Jsonb,
            "json" => PgType::Json,
            "uuid" => PgType::Uuid,
            "real[]" => PgType::Float4Array,
            _ if s.starts_with("numeric") => {
                let a = args(s);
                PgType::Numeric(if a.len() == 2 {
                    Some((a[0], a[1]))
                } else if a.len() == 1 {
                    Some((a[0], 0))
                } else {
                    None
                })
            }
            _ if s.starts_with("character varying") || s.starts_with("character") => {
                PgType::Varchar(s.to_string())
            }
            _ if s.starts_with("bit varying") => PgType::Bit {
                len: args(s).first().copied().unwrap_or(64),
                varying: true,
            },
            _ if s.starts_with("bit") => PgType::Bit {
                len: args(s).first().copied().unwrap_or(1),
                varying: false,
            },
            _ if s.starts_with("timestamp") => {
                let p = args(s).first().map(|&p| p as u8);
                if s.ends_with("with time zone") && !s.ends_with("without time zone") {
                    PgType::Timestamptz(p)
                } else {
                    PgType::Timestamp(p)
                }
            }
            _ => return None,
        })
    }

    /// Source kind → target type (the README's mapping table).
    pub fn for_kind(kind: &ColumnKind) -> PgType {
        match kind {
            ColumnKind::Bool => PgType::Bool,
            ColumnKind::Int { bits, unsigned } => match (bits, unsigned) {
                (0..=16, false) | (0..=8, true) => PgType::Int2,
                (17..=32, false) | (9..=24, true) => PgType::Int4,
                (25..=32, true) | (33..=64, false) => PgType::Int8,
                _ => PgType::Numeric(Some((20, 0))),
            },
            ColumnKind::Float => PgType::Float4,
            ColumnKind::Double => PgType::Float8,
            ColumnKind::Decimal {
                precision: Some(p),
                scale,
            } if *p <= 1000 && *p >= 1 && scale.unwrap_or(0) <= *p => {
                PgType::Numeric(Some((*p, scale.unwrap_or(0))))
            }
            ColumnKind::Decimal { .. } => PgType::Numeric(None),
            ColumnKind::String { .. } | ColumnKind::Enum { .. } | ColumnKind::Set { .. } => {
                PgType::Text
            }
            ColumnKind::Bytes { .. } => PgType::Bytea,
            ColumnKind::Bits { len: 1 } => PgType::Bool,
            ColumnKind::Bits { len } => PgType::Bit {
                len: (*len).clamp(1, 64),
                varying: false,
            },
            ColumnKind::Date => PgType::Date,
            ColumnKind::Time { .. } => PgType::Interval,
            ColumnKind::DateTime { fsp } => PgType::Timestamp(Some((*fsp).min(6))),
            ColumnKind::Timestamp { fsp } => PgType::Timestamptz(Some((*fsp).min(6))),
            ColumnKind::Year => PgType::Int2,
            ColumnKind::Json => PgType::Jsonb,
            ColumnKind::Vector { .. } => PgType::Float4Array,
            ColumnKind::Unknown => PgType::Text,
        }
    }

    /// Target type → the source kind a schemaless JSON value should be read as
    /// (fed to `tributary_codec::resolve`).
    pub fn as_kind(&self) -> ColumnKind {
        match self {
            PgType::Bool => ColumnKind::Bool,
            PgType::Int2 => ColumnKind::Int {
                bits: 16,
                unsigned: false,
            },
            PgType::Int4 => ColumnKind::Int {
                bits: 32,
                unsigned: false,
            },
            PgType::Int8 => ColumnKind::Int {
                bits: 64,
                unsigned: false,
            },
            PgType::Numeric(ps) => ColumnKind::Decimal {
                precision: ps.map(|p| p.0),
                scale: ps.map(|p| p.1),
            },
            PgType::Float4 => ColumnKind::Float,
            PgType::Float8 => ColumnKind::Double,
            PgType::Text | PgType::Varchar(_) | PgType::Uuid => {
                ColumnKind::String { max_len: None }
            }
            PgType::Bytea => ColumnKind::Bytes { max_len: None },
            PgType::Bit { len, .. } => ColumnKind::Bits { len: *len },
            PgType::Date => ColumnKind::Date,
            PgType::Interval | PgType::Time => ColumnKind::Time { fsp: 6 },
            PgType::Timestamp(p) => ColumnKind::DateTime {
                fsp: p.unwrap_or(6),
            },
            PgType::Timestamptz(p) => ColumnKind::Timestamp {
                fsp: p.unwrap_or(6),
            },
            PgType::Jsonb | PgType::Json => ColumnKind::Json,
            PgType::Float4Array => ColumnKind::Vector { dim: None },
        }
    }
}

/// A value that cannot become its target type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("value {value} cannot be written as PostgreSQL {target}: {why}")]
pub struct EncodeError {
    pub value: String,
    pub target: String,
    pub why: String,
}

fn err(v: &Value, t: &PgType, why: impl Into<String>) -> EncodeError {
    let mut value = format!("{v:?}");
    if value.len() > 80 {
        let mut cut = 80;
        while !value.is_char_boundary(cut) {
            cut -= 1;
        }
        value.truncate(cut);
        value.push('…');
    }
    EncodeError {
        value,
        target: t.ddl(),
        why: why.into(),
    }
}

const PG_EPOCH_DAYS: i64 = 10_957; // 2000-01-01 - 1970-01-01
const PG_EPOCH_MICROS: i64 = PG_EPOCH_DAYS * 86_400_000_000;
/// PostgreSQL's `date` range in days from 2000-01-01: 4714-11-24 BC ..= 5874897-12-31 AD
/// (`i32::MIN`/`i32::MAX` are `-infinity`/`infinity`, so a value there must never be written).
const PG_DATE_DAYS: std::ops::Range<i64> = -2_451_545..2_145_031_949;
/// PostgreSQL's `timestamp` range in µs from 2000-01-01: 4714-11-24 BC .. 294277-01-01 AD.
const PG_TIMESTAMP_US: std::ops::Range<i64> = -211_813_488_000_000_000..9_223_371_331_200_000_000;

/// Append one field (length prefix + payload, or -1 for NULL) of a binary COPY row.
pub fn encode_field(buf: &mut BytesMut, v: &Value, t: &PgType) -> Result<(), EncodeError> {
    if v.is_null() {
        buf.put_i32(-1);
        return Ok(());
    }
    let len_at = buf.len();
    buf.put_i32(0);
    encode_payload(buf, v, t)?;
    let n = (buf.len() - len_at - 4) as i32;
    buf[len_at..len_at + 4].copy_from_slice(&n.to_be_bytes());
    Ok(())
}

fn int_of(v: &Value) -> Option<i128> {
    Some(match v {
        Value::Int(i) => *i as i128,
        Value::UInt(u) => *u as i128,
        Value::Bool(b) => *b as i128,
        Value::Bits(b) => *b as i128,
        Value::Year(y) => *y as i128,
        Value::Decimal(s) | Value::String(s) => {
            let s = s.trim();
            let s = s.strip_suffix(".0").unwrap_or(s);
            let (int, frac) = s.split_once('.').unwrap_or((s, ""));
            if !frac.chars().all(|c| c == '0') {
                return None;
            }
            int.parse().ok()?
        }
        Value::Double(d) if d.fract() == 0.0 && d.abs() < 9.2e18 => *d as i128,
        Value::Float(d) if d.fract() == 0.0 && d.abs() < 9.2e18 => *d as i128,
        _ => return None,
    })
}

fn encode_payload(buf: &mut BytesMut, v: &Value, t: &PgType) -> Result<(), EncodeError> {
    match t {
        PgType::Bool => {
            let b = match v {
                Value::Bool(b) => *b,
                Value::Int(0) | Value::UInt(0) | Value::Bits(0) => false,
                Value::Int(1) | Value::UInt(1) | Value::Bits(1) => true,
                Value::String(s) if s == "true" || s == "false" => s == "true",
                _ => return Err(err(v, t, "not a boolean")),
            };
            buf.put_u8(b as u8);
        }
        PgType::Int2 | PgType::Int4 | PgType::Int8 => {
            let i = int_of(v).ok_or_else(|| err(v, t, "not an integer"))?;
            match t {
                PgType::Int2 => buf
                    .put_i16(i16::try_from(i).map_err(|_| err(v, t, "out of range for smallint"))?),
                PgType::Int4 => buf
                    .put_i32(i32::try_from(i).map_err(|_| err(v, t, "out of range for integer"))?),
                _ => {
                    buf.put_i64(i64::try_from(i).map_err(|_| err(v, t, "out of range for bigint"))?)
                }
            }
        }
        PgType::Numeric(_) => {
            let text = match v {
                Value::Decimal(s) | Value::String(s) => s.clone(),
                Value::Int(i) => i.to_string(),
                Value::UInt(u) => u.to_string(),
                Value::Bits(u) => u.to_string(),
                Value::Year(y) => y.to_string(),
                Value::Double(d) if d.is_finite() => d.to_string(),
                Value::Float(d) if d.is_finite() => d.to_string(),
                _ => return Err(err(v, t, "not a number")),
            };
            let typmod = match t {
                PgType::Numeric(ps) => *ps,
                _ => None,
            };
            encode_numeric_typmod(buf, &text, typmod).map_err(|why| err(v, t, why))?;
        }
        PgType::Float4 | PgType::Float8 => {
            let d = match v {
                Value::Float(f) => *f as f64,
                Value::Double(d) => *d,
                Value::Int(i) => *i as f64,
                Value::UInt(u) => *u as f64,
                Value::Decimal(s) | Value::String(s) => {
                    s.parse().map_err(|_| err(v, t, "not a number"))?
                }
                _ => return Err(err(v, t, "not a number")),
            };
            if let PgType::Float4 = t {
                // A MySQL FLOAT arrives as f32: write it unchanged (3.14f32 stays 3.14 in real).
                let f = match v {
                    Value::Float(f) => *f,
                    _ => d as f32,
                };
                buf.put_f32(f);
            } else {
                buf.put_f64(d);
            }
        }
        PgType::Text | PgType::Varchar(_) => match v {
            Value::String(s) | Value::Json(s) | Value::Decimal(s) => buf.put_slice(s.as_bytes()),
            Value::Bytes(b) => match std::str::from_utf8(b) {
                Ok(s) => buf.put_slice(s.as_bytes()),
                Err(_) => return Err(err(v, t, "binary data is not UTF-8 text")),
            },
            Value::Unresolved(j) => match j {
                serde_json::Value::String(s) => buf.put_slice(s.as_bytes()),
                other => buf.put_slice(other.to_string().as_bytes()),
            },
            other => {
                let mut s = String::new();
                write_text(&mut s, other);
                buf.put_slice(s.as_bytes());
            }
        },
        PgType::Bytea => match v {
            Value::Bytes(b) => buf.put_slice(b),
            Value::String(s) => buf.put_slice(s.as_bytes()),
            _ => return Err(err(v, t, "not binary data")),
        },
        PgType::Bit { len, .. } => {
            let bits = match v {
                Value::Bits(b) => *b,
                Value::Bool(b) => *b as u64,
                Value::Int(i) if *i >= 0 => *i as u64,
                Value::UInt(u) => *u,
                _ => return Err(err(v, t, "not a bit string")),
            };
            let len = *len;
            if len < 64 && bits >> len != 0 {
                return Err(err(v, t, format!("does not fit in {len} bits")));
            }
            buf.put_i32(len as i32);
            let nbytes = len.div_ceil(8);
            // MSB first; bit (len-1) of the value is the first bit of the string.
            let shifted = (bits as u128) << (nbytes * 8 - len);
            for i in (0..nbytes).rev() {
                buf.put_u8((shifted >> (i * 8)) as u8);
            }
        }
        PgType::Date => {
            let days = match v {
                Value::Date(d) => i64::from(*d),
                Value::DateTime(us) | Value::Timestamp(us) => us.div_euclid(86_400_000_000),
                _ => return Err(err(v, t, "not a date")),
            };
            let pg = Some(days - PG_EPOCH_DAYS)
                .filter(|d| PG_DATE_DAYS.contains(d))
                .and_then(|d| i32::try_from(d).ok())
                .ok_or_else(|| err(v, t, "date outside PostgreSQL's range"))?;
            buf.put_i32(pg);
        }
        PgType::Interval => match v {
            Value::Time(us) => {
                buf.put_i64(*us);
                buf.put_i32(0);
                buf.put_i32(0);
            }
            _ => return Err(err(v, t, "not a time/duration")),
        },
        PgType::Time => match v {
            Value::Time(us) if (0..86_400_000_000).contains(us) => buf.put_i64(*us),
            _ => return Err(err(v, t, "not a time of day within 00:00..24:00")),
        },
        PgType::Timestamp(_) | PgType::Timestamptz(_) => {
            let pg = match v {
                Value::DateTime(us) | Value::Timestamp(us) => us.checked_sub(PG_EPOCH_MICROS),
                Value::Date(d) => i64::from(*d)
                    .checked_mul(86_400_000_000)
                    .and_then(|x| x.checked_sub(PG_EPOCH_MICROS)),
                _ => return Err(err(v, t, "not a timestamp")),
            };
            let pg = pg
                .filter(|us| PG_TIMESTAMP_US.contains(us))
                .ok_or_else(|| err(v, t, "timestamp outside PostgreSQL's range"))?;
            buf.put_i64(pg);
        }
        PgType::Jsonb | PgType::Json => {
            let text = match v {
                Value::Json(s) | Value::String(s) => std::borrow::Cow::Borrowed(s.as_str()),
                Value::Unresolved(j) => std::borrow::Cow::Owned(j.to_string()),
                _ => return Err(err(v, t, "not JSON")),
            };
            if let Some(why) = json_refusal(&text, t) {
                return Err(err(v, t, why));
            }
            if let PgType::Jsonb = t {
                buf.put_u8(1);
            }
            buf.put_slice(text.as_bytes());
        }
        PgType::Uuid => return Err(err(v, t, "uuid columns are not a source type")),
        PgType::Float4Array => {
            let Value::Vector(x) = v else {
                return Err(err(v, t, "not a VECTOR"));
            };
            if x.iter().any(|f| !f.is_finite()) {
                return Err(err(v, t, "NaN or infinity in a VECTOR"));
            }
            let n = i32::try_from(x.len()).map_err(|_| err(v, t, "too many elements"))?;
            // Binary array: ndim, has-null flag, element type (float4 = 700), then per
            // dimension (size, lower bound 1), then each element as (length, value).
            buf.put_i32(i32::from(n > 0));
            buf.put_i32(0);
            buf.put_u32(700);
            if n > 0 {
                buf.put_i32(n);
                buf.put_i32(1);
            }
            for f in x {
                buf.put_i32(4);
                buf.put_f32(*f);
            }
        }
    }
    Ok(())
}

/// Why PostgreSQL would refuse this text as a `json`/`jsonb` value — which would fail the
/// whole COPY, i.e. the batch — or `None` when it takes it. Policy (README "Known limits"):
/// such a value is an [`EncodeError`], so the change becomes a dead letter naming the column,
/// never a failed batch and never a silently changed document:
/// * text that is not JSON (a MySQL expression DEFAULT such as `json_object(...)` in an old
///   capture file, a hostile record);
/// * for `jsonb`, a string holding U+0000 (`\u0000`): jsonb cannot store it (`json` can).
pub fn json_refusal(text: &str, t: &PgType) -> Option<String> {
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        return Some(format!("not valid JSON ({e})"));
    }
    if matches!(t, PgType::Jsonb) && has_nul_escape(text) {
        return Some(
            "the document holds the character U+0000 (\\u0000), which PostgreSQL jsonb \
             cannot store"
                .into(),
        );
    }
    None
}

/// Whether valid JSON text has a `\u0000` escape (backslash pairs skipped: `\\u0000` is a
/// backslash followed by the text `u0000`).
fn has_nul_escape(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(k) = b[i..].iter().position(|&c| c == b'\\') {
        let at = i + k;
        if b.get(at + 1) == Some(&b'u') && b.get(at + 2..at + 6) == Some(&b"0000"[..]) {
            return true;
        }
        i = at + 2;
        if i >= b.len() {
            break;
        }
    }
    false
}

/// Most digits before the decimal point PostgreSQL `numeric` stores (weight ≤ 32767 groups).
pub const NUMERIC_MAX_INT_DIGITS: usize = 131_072;
/// Most digits after the decimal point (`dscale` is 14 bits on the wire).
pub const NUMERIC_MAX_SCALE: usize = 16_383;

/// Encode a plain-notation decimal string (`-123.4500`, `1e3` is refused) as PostgreSQL
/// binary `numeric`: ndigits, weight, sign, dscale, base-10000 digits.
///
/// Never wraps: a value with more than [`NUMERIC_MAX_INT_DIGITS`] digits before or
/// [`NUMERIC_MAX_SCALE`] after the point is an error (the record is dead-lettered), and every
/// header field is converted with a checked conversion.
pub fn encode_numeric(buf: &mut BytesMut, text: &str) -> Result<(), String> {
    encode_numeric_typmod(buf, text, None)
}

/// [`encode_numeric`] for a `numeric(p,s)` column (`typmod = Some((p, s))`): a value whose
/// integer part has more than `p − s` digits (after PostgreSQL rounds the fraction to `s`
/// digits, as it does on assignment) is an error naming the column type instead of a
/// `numeric field overflow` that would fail the whole COPY.
pub fn encode_numeric_typmod(
    buf: &mut BytesMut,
    text: &str,
    typmod: Option<(u32, u32)>,
) -> Result<(), String> {
    let t = text.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    if t.eq_ignore_ascii_case("nan") {
        buf.put_i16(0);
        buf.put_i16(0);
        buf.put_u16(0xC000);
        buf.put_u16(0);
        return Ok(());
    }
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!("{text:?} is not a plain decimal number"));
    }
    let int = int.trim_start_matches('0');
    if int.len() > NUMERIC_MAX_INT_DIGITS {
        return Err(format!(
            "{} digits before the decimal point: PostgreSQL numeric holds at most \
             {NUMERIC_MAX_INT_DIGITS}",
            int.len()
        ));
    }
    if frac.len() > NUMERIC_MAX_SCALE {
        return Err(format!(
            "{} digits after the decimal point: PostgreSQL numeric holds at most \
             {NUMERIC_MAX_SCALE}",
            frac.len()
        ));
    }
    if let Some((p, s)) = typmod {
        let p = usize::try_from(p).unwrap_or(usize::MAX);
        let s = usize::try_from(s).unwrap_or(usize::MAX);
        // PostgreSQL rounds the fraction to `s` digits (half away from zero); a carry out of
        // all-nines adds an integer digit.
        let carry = frac.len() > s
            && frac.as_bytes()[s] >= b'5'
            && int.bytes().chain(frac.bytes().take(s)).all(|b| b == b'9');
        let int_digits = int.len() + usize::from(carry);
        if int_digits > p.saturating_sub(s) {
            return Err(format!(
                "{int_digits} digits before the decimal point do not fit numeric({p},{s}) \
                 (at most {})",
                p.saturating_sub(s)
            ));
        }
    }
    let dscale =
        u16::try_from(frac.len()).map_err(|_| format!("scale {} out of range", frac.len()))?;
    // Left-pad the integer part and right-pad the fraction to whole base-10000 groups.
    let ipad = (4 - int.len() % 4) % 4;
    let fpad = (4 - frac.len() % 4) % 4;
    let mut digits: Vec<i16> = Vec::with_capacity((int.len() + frac.len()) / 4 + 2);
    let mut acc = 0i16;
    let mut n = 0;
    let all = std::iter::repeat_n(b'0', ipad)
        .chain(int.bytes())
        .chain(frac.bytes())
        .chain(std::iter::repeat_n(b'0', fpad));
    for b in all {
        acc = acc * 10 + i16::from(b - b'0');
        n += 1;
        if n == 4 {
            digits.push(acc);
            acc = 0;
            n = 0;
        }
    }
    let int_groups = (int.len() + ipad) / 4;
    // Strip leading zero groups (adjusting the weight) and trailing zero groups.
    let lead = digits.iter().take_while(|&&d| d == 0).count();
    digits.drain(..lead);
    while digits.last() == Some(&0) {
        digits.pop();
    }
    // weight = int_groups − 1 − lead; bounded by the digit limits above (|weight| ≤ 32768).
    let weight = if digits.is_empty() {
        0
    } else {
        let w = i64::try_from(int_groups).unwrap_or(i64::MAX)
            - 1
            - i64::try_from(lead).unwrap_or(i64::MAX);
        i16::try_from(w).map_err(|_| format!("numeric weight {w} out of range"))?
    };
    // PostgreSQL reads ndigits as uint16.
    let ndigits = u16::try_from(digits.len())
        .map_err(|_| format!("{} base-10000 digits out of range", digits.len()))?;
    buf.put_u16(ndigits);
    buf.put_i16(weight);
    buf.put_u16(if neg && !digits.is_empty() { 0x4000 } else { 0 });
    buf.put_u16(dscale);
    for d in digits {
        buf.put_i16(d);
    }
    Ok(())
}

fn write_micros_tod(s: &mut String, us: i64) {
    let secs = us / 1_000_000;
    let frac = us % 1_000_000;
    let _ = write!(
        s,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if frac != 0 {
        let f = format!("{frac:06}");
        let _ = write!(s, ".{}", f.trim_end_matches('0'));
    }
}

/// Human/SQL text of a value (used for text targets and SQL DEFAULT literals).
pub fn write_text(s: &mut String, v: &Value) {
    match v {
        Value::Null => s.push_str("NULL"),
        Value::Bool(b) => s.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(s, "{i}");
        }
        Value::UInt(u) | Value::Bits(u) => {
            let _ = write!(s, "{u}");
        }
        Value::Float(f) => {
            let _ = write!(s, "{f}");
        }
        Value::Double(d) => {
            let _ = write!(s, "{d}");
        }
        Value::Decimal(x) | Value::String(x) | Value::Json(x) => s.push_str(x),
        Value::Bytes(b) => {
            s.push_str("\\x");
            for byte in b {
                let _ = write!(s, "{byte:02x}");
            }
        }
        Value::Date(d) => {
            let (y, m, dd) = civil_from_days(*d as i64);
            let _ = write!(s, "{y:04}-{m:02}-{dd:02}");
        }
        Value::Time(us) => {
            if *us < 0 {
                s.push('-');
            }
            write_micros_tod(s, us.abs());
        }
        Value::DateTime(us) | Value::Timestamp(us) => {
            let days = us.div_euclid(86_400_000_000);
            let (y, m, d) = civil_from_days(days);
            let _ = write!(s, "{y:04}-{m:02}-{d:02} ");
            write_micros_tod(s, us.rem_euclid(86_400_000_000));
            if matches!(v, Value::Timestamp(_)) {
                s.push_str("+00");
            }
        }
        Value::Year(y) => {
            let _ = write!(s, "{y}");
        }
        Value::Vector(v) => {
            // PostgreSQL's array spelling (`{1.5,-2,3.25}`), shortest float32 digits.
            s.push('{');
            for (i, f) in v.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                let _ = write!(s, "{f}");
            }
            s.push('}');
        }
        Value::Unresolved(j) => match j {
            serde_json::Value::String(x) => s.push_str(x),
            other => {
                let _ = write!(s, "{other}");
            }
        },
    }
}

/// A SQL literal for `DEFAULT` clauses: `'text'::type`, or `NULL`.
pub fn sql_literal(v: &Value, t: &PgType) -> String {
    if v.is_null() {
        return "NULL".into();
    }
    let mut s = String::new();
    match (v, t) {
        (Value::Bits(b), PgType::Bit { len, .. }) => {
            let _ = write!(s, "{:0width$b}", b, width = *len as usize);
        }
        _ => write_text(&mut s, v),
    }
    format!("{}::{}", crate::config::lit(&s), t.ddl())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(s: &str) -> Vec<u8> {
        let mut b = BytesMut::new();
        encode_numeric(&mut b, s).unwrap();
        b.to_vec()
    }

    #[test]
    fn json_postgresql_refuses() {
        let j = |s: &str, t: &PgType| json_refusal(s, t);
        assert_eq!(j(r#"{"a": "x\u0001"}"#, &PgType::Jsonb), None);
        assert!(j(r#"{"a": "nul\u0000"}"#, &PgType::Jsonb)
            .unwrap()
            .contains("U+0000"));
        // `json` stores it as text.
        assert_eq!(j(r#""nul\u0000""#, &PgType::Json), None);
        // An escaped backslash followed by the letters u0000 is not a NUL.
        assert_eq!(j(r#""a\\u0000""#, &PgType::Jsonb), None);
        assert!(j(r#""a\\\u0000""#, &PgType::Jsonb).is_some());
        // A MySQL expression DEFAULT leaked into an old capture file.
        assert!(j("json_object(_utf8mb4'a',1)", &PgType::Jsonb)
            .unwrap()
            .contains("not valid JSON"));
        let mut b = BytesMut::new();
        let e =
            encode_field(&mut b, &Value::Json(r#"["\u0000"]"#.into()), &PgType::Jsonb).unwrap_err();
        assert!(e.why.contains("U+0000"), "{e}");
    }

    #[test]
    fn numeric_wire_form() {
        // 12345678.90 → groups 1234 5678 . 9000 ; weight 1 ; dscale 2
        assert_eq!(
            numeric("12345678.90"),
            [0, 3, 0, 1, 0, 0, 0, 2, 0x04, 0xD2, 0x16, 0x2E, 0x23, 0x28]
        );
        // -0.01 → group 0100 at weight -1, negative, dscale 2
        assert_eq!(numeric("-0.01"), [0, 1, 0xFF, 0xFF, 0x40, 0, 0, 2, 0, 100]);
        // zero keeps its scale
        assert_eq!(numeric("0.00"), [0, 0, 0, 0, 0, 0, 0, 2]);
        assert!(encode_numeric(&mut BytesMut::new(), "1e5").is_err());
        assert!(encode_numeric(&mut BytesMut::new(), "").is_err());
    }

    /// Issue #10: a 100 KB decimal was stored as `0.00` — ndigits and weight wrapped at 16 bits.
    /// Now every value within PostgreSQL's limits is encoded exactly and anything beyond them
    /// is an error.
    #[test]
    fn numeric_never_wraps() {
        // 131072 integer digits (PostgreSQL's maximum): 32768 groups, weight 32767.
        let max_int = "9".repeat(131_072);
        let b = numeric(&max_int);
        assert_eq!(u16::from_be_bytes([b[0], b[1]]), 32_768, "ndigits");
        assert_eq!(i16::from_be_bytes([b[2], b[3]]), 32_767, "weight");
        // … plus the maximum fraction: ndigits above i16::MAX, written as uint16.
        let b = numeric(&format!("{max_int}.{}", "9".repeat(16_383)));
        assert_eq!(u16::from_be_bytes([b[0], b[1]]), 32_768 + 4_096, "ndigits");
        assert_eq!(u16::from_be_bytes([b[6], b[7]]), 16_383, "dscale");
        // One digit more on either side is refused, not wrapped.
        let e = encode_numeric(&mut BytesMut::new(), &format!("1{max_int}")).unwrap_err();
        assert!(e.contains("131073 digits before"), "{e}");
        let e =
            encode_numeric(&mut BytesMut::new(), &format!("0.{}", "1".repeat(16_384))).unwrap_err();
        assert!(e.contains("16384 digits after"), "{e}");
        // The reported case: a ~100 KB / 140k-digit value.
        let e = encode_field(
            &mut BytesMut::new(),
            &Value::Decimal(format!("{}.00", "7".repeat(140_000))),
            &PgType::Numeric(None),
        )
        .unwrap_err();
        assert!(e.why.contains("140000 digits before"), "{e}");
    }

    #[test]
    fn numeric_typmod_overflow_is_refused() {
        let t = PgType::Numeric(Some((5, 2)));
        let mut b = BytesMut::new();
        assert!(encode_field(&mut b, &Value::Decimal("999.99".into()), &t).is_ok());
        // PostgreSQL rounds 999.995 to 1000.00: four integer digits, overflow.
        let e = encode_field(&mut b, &Value::Decimal("999.995".into()), &t).unwrap_err();
        assert!(e.why.contains("numeric(5,2)"), "{e}");
        assert!(encode_field(&mut b, &Value::Decimal("-1000".into()), &t).is_err());
        assert!(encode_field(&mut b, &Value::Decimal("999.994".into()), &t).is_ok());
    }

    #[test]
    fn dates_out_of_range_are_refused() {
        let mut b = BytesMut::new();
        assert!(encode_field(&mut b, &Value::Date(i32::MIN), &PgType::Date).is_err());
        // Within i32 but beyond PostgreSQL's range, or exactly its `infinity` encoding.
        let pg_infinity = i32::MAX - 10_957;
        assert!(encode_field(&mut b, &Value::Date(pg_infinity), &PgType::Date).is_err());
        assert!(encode_field(&mut b, &Value::Date(2_145_031_949 + 10_957), &PgType::Date).is_err());
        assert!(encode_field(&mut b, &Value::Date(2_145_031_948 + 10_957), &PgType::Date).is_ok());
        assert!(encode_field(&mut b, &Value::Date(-2_451_545 + 10_957), &PgType::Date).is_ok());
        assert!(encode_field(&mut b, &Value::Date(-2_451_546 + 10_957), &PgType::Date).is_err());
        let ts = PgType::Timestamp(None);
        // 4714-11-24 BC is PostgreSQL's first timestamp (a `Date` beyond it overflows µs).
        let start = -211_813_488_000_000_000 + 946_684_800_000_000;
        assert!(encode_field(&mut b, &Value::DateTime(start), &ts).is_ok());
        assert!(encode_field(&mut b, &Value::DateTime(start - 1), &ts).is_err());
        assert!(encode_field(&mut b, &Value::Date(i32::MAX), &ts).is_err());
        // (i64::MAX µs after 1970 is year 294247: within PostgreSQL's range.)
        assert!(encode_field(&mut b, &Value::DateTime(i64::MAX), &ts).is_ok());
        assert!(
            encode_field(&mut b, &Value::DateTime(i64::MIN), &PgType::Timestamp(None)).is_err()
        );
    }

    #[test]
    fn dates_and_types() {
        assert_eq!(civil_from_days(20349), (2025, 9, 18));
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        let mut s = String::new();
        write_text(&mut s, &Value::Time(-3_020_399_000_000));
        assert_eq!(s, "-838:59:59");
        for t in [
            "numeric(30,10)",
            "timestamp(6) without time zone",
            "timestamp(3) with time zone",
            "bit(10)",
            "character varying(20)",
            "interval",
        ] {
            assert_eq!(PgType::parse(t).unwrap().ddl(), t);
        }
    }

    #[test]
    fn narrowing_is_refused() {
        let mut b = BytesMut::new();
        assert!(encode_field(&mut b, &Value::Int(300000), &PgType::Int2).is_err());
        assert!(encode_field(&mut b, &Value::String("x".into()), &PgType::Int4).is_err());
        assert!(encode_field(&mut b, &Value::Decimal("1.5".into()), &PgType::Int8).is_err());
        assert!(encode_field(
            &mut b,
            &Value::Bits(1024),
            &PgType::Bit {
                len: 10,
                varying: false
            }
        )
        .is_err());
    }

    #[test]
    fn bits_msb_first() {
        let mut b = BytesMut::new();
        encode_payload(
            &mut b,
            &Value::Bits(682),
            &PgType::Bit {
                len: 10,
                varying: false,
            },
        )
        .unwrap();
        assert_eq!(b.to_vec(), [0, 0, 0, 10, 0b1010_1010, 0b1000_0000]);
    }
}
