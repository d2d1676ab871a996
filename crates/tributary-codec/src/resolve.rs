//! Schemaless JSON → typed [`Value`], once the target type is known.
//!
//! Owns: [`resolve`] (JSON value + [`ColumnKind`] → [`Value`]) and [`infer`] (no type known
//! at all). Apply calls `resolve` for [`Value::Unresolved`] values with the kind of the
//! existing PostgreSQL column mapped back to a [`ColumnKind`].
//!
//! Accepted spellings are exactly those Debezium's modes produce, plus plain text:
//! * `Decimal{scale: Some(s)}`: base64 unscaled bytes (precise mode) read at scale `s`; a JSON
//!   number or numeric string (string/double modes) kept exact (`arbitrary_precision`);
//!   a `{"scale","value"}` VariableScaleDecimal object. A string that is a valid plain
//!   number is read as a number even if it also happens to be valid base64.
//! * `DateTime{fsp}`: a number is ms when `fsp ≤ 3`, µs otherwise — Debezium's
//!   `adaptive_time_microseconds` mode uses `Timestamp` (ms) for DATETIME(0..3) and
//!   `MicroTimestamp` (µs) for DATETIME(4..6). ISO text is accepted too.
//! * `Time`: a number is µs (`MicroTime`; adaptive mode always uses it for TIME); `HH:MM:SS[.f]`.
//! * `Timestamp`: ISO-8601 text (`ZonedTimestamp`), or a number of ms.
//! * `Date`: integer days, or `YYYY-MM-DD`. `Year`: integer.
//! * `Bytes`: base64. `Bits`: base64 little-endian bytes, a boolean (`BIT(1)`), or a number.
//! * `Bool`: boolean, 0/1, "true"/"false". `Int`: number or numeric string; a negative value
//!   for `Int{64, unsigned}` is Debezium's long-mode wrap (`18446744073709551615` → `-1`) and
//!   is unwrapped back to `UInt`; base64 (precise mode) is accepted for BIGINT UNSIGNED.
//! * `String`/`Enum`/`Set`: strings; numbers/booleans as their text; objects as JSON text.
//! * `Json`: a string is the document text; an object/array is serialised.
//!
//! **Limit (Debezium's own):** a precise-mode DECIMAL that arrives without a schema (the
//! ExtractNewRecordState form with `schemas.enable=false`) is only base64 bytes — the scale is
//! in the schema that was dropped. With no target column either, [`infer`] keeps it as text
//! (`String`); it can only be read correctly once a column with a known scale exists.

use base64::Engine;
use serde_json::Value as J;
use tributary_model::{ColumnKind, Value};

use crate::connect::b64;
use crate::error::{short_json, ResolveError};
use crate::num;

fn err(kind: &ColumnKind, v: &J, problem: impl Into<String>) -> ResolveError {
    ResolveError {
        expected: format!("{kind:?}"),
        got: short_json(v),
        problem: problem.into(),
    }
}

/// Exact text of a JSON number or numeric string.
fn numeric_text(v: &J) -> Option<&str> {
    match v {
        J::Number(n) => Some(n.as_str()),
        J::String(s) if num::parse_decimal(s).is_some() => Some(s.as_str()),
        _ => None,
    }
}

fn as_i128(v: &J) -> Option<i128> {
    let t = numeric_text(v)?.trim();
    if let Ok(i) = t.parse::<i128>() {
        return Some(i);
    }
    // 1.0 / 1e3 spelled as a float but integral.
    let p = num::parse_decimal(t)?;
    let plain = p.to_plain().ok()?;
    let (ip, fp) = plain.split_once('.').unwrap_or((&plain, ""));
    if fp.bytes().all(|b| b == b'0') {
        ip.parse().ok()
    } else {
        None
    }
}

/// Reads a schemaless JSON value as `kind`. JSON `null` is always [`Value::Null`].
pub fn resolve(v: &J, kind: &ColumnKind) -> Result<Value, ResolveError> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    use ColumnKind as K;
    Ok(match kind {
        K::Unknown => infer(v).1,
        K::Bool => match v {
            J::Bool(b) => Value::Bool(*b),
            J::String(s) if s.eq_ignore_ascii_case("true") => Value::Bool(true),
            J::String(s) if s.eq_ignore_ascii_case("false") => Value::Bool(false),
            _ => match as_i128(v) {
                Some(0) => Value::Bool(false),
                Some(1) => Value::Bool(true),
                _ => return Err(err(kind, v, "expected a boolean or 0/1")),
            },
        },
        K::Int { bits, unsigned } => {
            let i = match (v, as_i128(v)) {
                (_, Some(i)) => i,
                (J::Bool(b), _) => i128::from(*b),
                (J::String(s), None) if *unsigned && *bits == 64 => {
                    // precise mode: base64 Decimal(20,0) — at most 9 bytes.
                    let bytes = b64()
                        .decode(s.as_bytes())
                        .ok()
                        .filter(|b| b.len() <= 16)
                        .ok_or_else(|| err(kind, v, "expected an integer"))?;
                    num::unscaled_bytes_to_decimal(&bytes, 0)
                        .ok()
                        .and_then(|d| d.parse::<i128>().ok())
                        .ok_or_else(|| err(kind, v, "expected an integer"))?
                }
                _ => return Err(err(kind, v, "expected an integer")),
            };
            let bits = (*bits).clamp(8, 64);
            if *unsigned {
                let max: i128 = (1i128 << bits) - 1;
                let i = match i64::try_from(i) {
                    // Debezium long mode wraps BIGINT UNSIGNED: -1 is 18446744073709551615.
                    Ok(neg) if bits == 64 && neg < 0 => {
                        i128::from(neg.unsigned_abs().wrapping_neg())
                    }
                    _ => i,
                };
                if !(0..=max).contains(&i) {
                    return Err(err(
                        kind,
                        v,
                        format!("out of range for {bits}-bit unsigned"),
                    ));
                }
                let u = u64::try_from(i)
                    .map_err(|_| err(kind, v, format!("out of range for {bits}-bit unsigned")))?;
                if bits == 64 {
                    Value::UInt(u)
                } else {
                    Value::Int(i64::try_from(u).map_err(|_| err(kind, v, "out of range"))?)
                }
            } else {
                let lo = -(1i128 << (bits - 1));
                let hi = (1i128 << (bits - 1)) - 1;
                if !(lo..=hi).contains(&i) {
                    return Err(err(kind, v, format!("out of range for {bits}-bit signed")));
                }
                Value::Int(i64::try_from(i).map_err(|_| err(kind, v, "out of range"))?)
            }
        }
        K::Float => Value::Float(
            numeric_text(v)
                .and_then(|t| t.trim().parse::<f32>().ok())
                .ok_or_else(|| err(kind, v, "expected a number"))?,
        ),
        K::Double => Value::Double(
            numeric_text(v)
                .and_then(|t| t.trim().parse::<f64>().ok())
                .ok_or_else(|| err(kind, v, "expected a number"))?,
        ),
        K::Decimal { scale, .. } => {
            if let Some(t) = numeric_text(v) {
                let plain = num::plain_decimal_checked(t).map_err(|p| err(kind, v, p))?;
                return Ok(Value::Decimal(plain));
            }
            match v {
                J::String(s) => {
                    let bytes = b64()
                        .decode(s.as_bytes())
                        .map_err(|_| err(kind, v, "neither a number nor base64 decimal bytes"))?;
                    let scale = scale.ok_or_else(|| {
                        err(
                            kind,
                            v,
                            "base64 decimal bytes but the column's scale is unknown",
                        )
                    })?;
                    Value::Decimal(
                        num::unscaled_bytes_to_decimal(&bytes, scale)
                            .map_err(|p| err(kind, v, p))?,
                    )
                }
                J::Object(m) if m.contains_key("scale") && m.contains_key("value") => {
                    let sc = m["scale"]
                        .as_u64()
                        .and_then(|s| u32::try_from(s).ok())
                        .filter(|s| *s <= num::MAX_SCALE)
                        .ok_or_else(|| {
                            err(
                                kind,
                                v,
                                format!(
                                    "VariableScaleDecimal scale must be in 0..={} (PostgreSQL numeric)",
                                    num::MAX_SCALE
                                ),
                            )
                        })?;
                    let bytes = m["value"]
                        .as_str()
                        .and_then(|s| b64().decode(s.as_bytes()).ok())
                        .ok_or_else(|| err(kind, v, "bad VariableScaleDecimal value"))?;
                    Value::Decimal(
                        num::unscaled_bytes_to_decimal(&bytes, sc).map_err(|p| err(kind, v, p))?,
                    )
                }
                _ => return Err(err(kind, v, "expected a decimal")),
            }
        }
        K::String { .. } | K::Enum { .. } | K::Set { .. } => {
            let s = match v {
                J::String(s) => s.clone(),
                J::Number(n) => n.as_str().to_owned(),
                other => other.to_string(),
            };
            crate::connect::check_labels(kind, &s).map_err(|p| err(kind, v, p))?;
            Value::String(s)
        }
        K::Bytes { .. } => match v {
            J::String(s) => Value::Bytes(
                b64()
                    .decode(s.as_bytes())
                    .map_err(|e| err(kind, v, format!("invalid base64: {e}")))?,
            ),
            _ => return Err(err(kind, v, "expected base64 text")),
        },
        K::Bits { .. } => match v {
            J::Bool(b) => Value::Bits(u64::from(*b)),
            J::Number(_) => Value::Bits(
                as_i128(v)
                    .and_then(|i| u64::try_from(i).ok())
                    .ok_or_else(|| err(kind, v, "expected a non-negative integer"))?,
            ),
            J::String(s) => {
                let bytes = b64()
                    .decode(s.as_bytes())
                    .map_err(|e| err(kind, v, format!("invalid base64: {e}")))?;
                Value::Bits(
                    num::bits_from_le(&bytes).ok_or_else(|| err(kind, v, "wider than 64 bits"))?,
                )
            }
            _ => return Err(err(kind, v, "expected base64 bytes or a boolean")),
        },
        K::Date => match v {
            J::String(s) if num::parse_decimal(s).is_none() => Value::Date(
                num::parse_date(s)
                    .and_then(|d| i32::try_from(d).ok())
                    .ok_or_else(|| err(kind, v, "expected YYYY-MM-DD"))?,
            ),
            _ => Value::Date(
                as_i128(v)
                    .and_then(|d| i32::try_from(d).ok())
                    .ok_or_else(|| err(kind, v, "expected days since 1970-01-01"))?,
            ),
        },
        K::Time { .. } => match v {
            J::String(s) if s.contains(':') => {
                Value::Time(num::parse_time(s).ok_or_else(|| err(kind, v, "expected HH:MM:SS"))?)
            }
            _ => Value::Time(
                as_i128(v)
                    .and_then(|d| i64::try_from(d).ok())
                    .ok_or_else(|| err(kind, v, "expected microseconds"))?,
            ),
        },
        K::DateTime { fsp } => match v {
            J::String(s) if s.contains('-') && num::parse_decimal(s).is_none() => Value::DateTime(
                num::parse_datetime(s)
                    .and_then(|(us, off)| us.checked_sub(off.unwrap_or(0) * 1_000_000))
                    .ok_or_else(|| err(kind, v, "expected YYYY-MM-DD HH:MM:SS"))?,
            ),
            _ => {
                let n = as_i128(v)
                    .and_then(|d| i64::try_from(d).ok())
                    .ok_or_else(|| err(kind, v, "expected an epoch number"))?;
                Value::DateTime(if *fsp <= 3 {
                    n.checked_mul(1000)
                        .ok_or_else(|| err(kind, v, "out of range"))?
                } else {
                    n
                })
            }
        },
        K::Timestamp { .. } => match v {
            J::String(s) if num::parse_decimal(s).is_none() => Value::Timestamp(
                num::parse_zoned(s)
                    .ok_or_else(|| err(kind, v, "expected an ISO-8601 timestamp"))?,
            ),
            _ => Value::Timestamp(
                as_i128(v)
                    .and_then(|d| i64::try_from(d).ok())
                    .and_then(|ms| ms.checked_mul(1000))
                    .ok_or_else(|| err(kind, v, "expected epoch milliseconds"))?,
            ),
        },
        K::Year => Value::Year(
            as_i128(v)
                .and_then(|d| i32::try_from(d).ok())
                .ok_or_else(|| err(kind, v, "expected a year"))?,
        ),
        K::Json => Value::Json(match v {
            J::String(s) => s.clone(),
            other => other.to_string(),
        }),
        // MySQL 9 VECTOR (Debezium FloatVector): an array of numbers, each a float32.
        K::Vector { .. } => match v {
            J::Array(a) => Value::Vector(
                a.iter()
                    .map(|x| {
                        x.as_f64()
                            .map(|f| f as f32)
                            .filter(|f| f.is_finite())
                            .ok_or_else(|| err(kind, v, "expected an array of float32 numbers"))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            _ => return Err(err(kind, v, "expected an array of float32 numbers")),
        },
    })
}

/// Type and value for a JSON value when no type is known at all:
/// bool → Bool, integer → `Int{64}` (or `Int{64, unsigned}` above `i64::MAX`, unconstrained
/// `Decimal` above `u64::MAX`), other number → Double (unconstrained `Decimal` when it is
/// beyond `f64`, text when it is beyond PostgreSQL `numeric` too), string → String,
/// object/array → Json (its text), null → (Unknown, Null).
/// A base64 DECIMAL without schema stays a String here (see the module docs).
pub fn infer(v: &J) -> (ColumnKind, Value) {
    match v {
        J::Null => (ColumnKind::Unknown, Value::Null),
        J::Bool(b) => (ColumnKind::Bool, Value::Bool(*b)),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                (
                    ColumnKind::Int {
                        bits: 64,
                        unsigned: false,
                    },
                    Value::Int(i),
                )
            } else if let Some(u) = n.as_u64() {
                (
                    ColumnKind::Int {
                        bits: 64,
                        unsigned: true,
                    },
                    Value::UInt(u),
                )
            } else {
                let t = n.as_str();
                let integral = t.bytes().all(|b| b.is_ascii_digit() || b == b'-');
                match t.parse::<f64>() {
                    Ok(d) if d.is_finite() && !integral => (ColumnKind::Double, Value::Double(d)),
                    // An integer beyond 64 bits or a number beyond f64 (1e999): kept exact as
                    // numeric, or as text when even numeric cannot hold it — never rounded,
                    // never infinite.
                    _ => match num::plain_decimal(t) {
                        Some(plain) => (
                            ColumnKind::Decimal {
                                precision: None,
                                scale: None,
                            },
                            Value::Decimal(plain),
                        ),
                        None => (
                            ColumnKind::String { max_len: None },
                            Value::String(t.to_owned()),
                        ),
                    },
                }
            }
        }
        J::String(s) => (
            ColumnKind::String { max_len: None },
            Value::String(s.clone()),
        ),
        J::Array(_) | J::Object(_) => (ColumnKind::Json, Value::Json(v.to_string())),
    }
}
