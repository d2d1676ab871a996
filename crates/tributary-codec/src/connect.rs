//! Kafka Connect schema ↔ [`ColumnKind`] mapping on the *decode* side, and MySQL type names
//! (Debezium `tableChanges`) → [`ColumnKind`].
//!
//! Owns: turning one Connect field schema (`{"type","optional","name","parameters","default",
//! "field"}`) into a [`Column`] plus a [`FieldCodec`] — the physical/logical encoding needed to
//! read that field's JSON values exactly (e.g. `io.debezium.time.Timestamp` is milliseconds,
//! `MicroTimestamp` microseconds: both become `ColumnKind::DateTime` but decode differently).
//!
//! Mapping (Debezium 3.x, MySQL connector):
//! * `int8/int16/int32/int64` → `Int { bits: 8/16/32/64, unsigned: false }` (Connect has no
//!   unsignedness; the encoder maps these back to the same Connect type).
//! * `float`/`float32` → Float, `double`/`float64` → Double, `boolean` → Bool
//!   (`BIT(1)` arrives as boolean), `string` → String, `bytes` → Bytes (base64 in JSON).
//! * `org.apache.kafka.connect.data.Decimal` → `Decimal{precision, scale}` (base64 unscaled);
//!   `io.debezium.data.VariableScaleDecimal` → `Decimal{None, None}`.
//! * `io.debezium.data.Bits` → `Bits{len}`; `Enum`/`EnumSet` → Enum/Set with `allowed`.
//! * Dates/times: `Date` (both names) → Date; `Time`/`MicroTime`/`NanoTime`/Connect `Time`
//!   → `Time` (fsp 3/6/6/3); `Timestamp`/`MicroTimestamp`/`NanoTimestamp`/Connect
//!   `Timestamp` → `DateTime` (fsp 3/6/6/3); `ZonedTimestamp` → `Timestamp{fsp: 6}` (width
//!   unknown, see [`CONNECT_SOURCE_TYPE_PREFIX`]); `Year` → Year; `io.debezium.data.Json` →
//!   Json.
//! * Unknown logical names fall back to the physical type (a `string` named
//!   `io.debezium.data.Uuid` is a String); `struct`/`array`/`map` become `Unknown` with the
//!   JSON kept as [`Value::Unresolved`].
//!
//! Every column built here gets `source_type = "connect:<type>[:<name>]"` so later stages
//! (and the encoder) can tell a column whose exact source width is unknown.

use crate::error::{DecodeErrorKind, Fail};
use crate::num;
use base64::Engine;
use serde_json::Value as J;
use tributary_model::{Column, ColumnKind, Value};

/// Prefix of [`Column::source_type`] for columns built from a Kafka Connect schema.
pub const CONNECT_SOURCE_TYPE_PREFIX: &str = "connect:";

/// How the JSON values of one Connect field are spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldCodec {
    Bool,
    Int,
    Float,
    Double,
    Str,
    Bytes,
    Decimal {
        scale: u32,
    },
    VarDecimal,
    Bits,
    Date,
    TimeMs,
    TimeUs,
    TimeNs,
    TsMs,
    TsUs,
    TsNs,
    Zoned,
    Year,
    Json,
    /// `io.debezium.data.FloatVector`: an array of float32 (MySQL 9 VECTOR).
    FloatVector,
    /// struct/array/map or anything unknown: kept as [`Value::Unresolved`].
    Raw,
}

pub(crate) fn b64() -> &'static base64::engine::GeneralPurpose {
    &base64::engine::general_purpose::STANDARD
}

fn param<'a>(f: &'a J, key: &str) -> Option<&'a str> {
    f.get("parameters")?.get(key)?.as_str()
}

/// One Connect field schema → (column, codec).
pub(crate) fn connect_field(f: &J, path: &str) -> Result<(Column, FieldCodec), Fail> {
    let name = f.get("field").and_then(J::as_str).ok_or_else(|| {
        Fail::new(
            DecodeErrorKind::Schema,
            path,
            "field schema without \"field\" name",
        )
    })?;
    let ty = f.get("type").and_then(J::as_str).ok_or_else(|| {
        Fail::new(
            DecodeErrorKind::Schema,
            format!("{path}.{name}"),
            "field schema without \"type\"",
        )
    })?;
    let logical = f.get("name").and_then(J::as_str);
    let optional = f.get("optional").and_then(J::as_bool).unwrap_or(false);
    let (kind, codec) = connect_kind(ty, logical, f).map_err(|p| {
        Fail::new(
            DecodeErrorKind::Schema,
            format!("{path}.{name}.parameters"),
            p,
        )
    })?;
    let mut col = Column::new(name, kind);
    col.nullable = optional;
    col.source_type = Some(match logical {
        Some(l) => format!("{CONNECT_SOURCE_TYPE_PREFIX}{ty}:{l}"),
        None => format!("{CONNECT_SOURCE_TYPE_PREFIX}{ty}"),
    });
    if let Some(d) = f.get("default") {
        if !d.is_null() {
            let v = decode_value(codec, &col.kind, d.clone()).map_err(|p| {
                Fail::new(DecodeErrorKind::Schema, format!("{path}.{name}.default"), p)
            })?;
            col.default = Some(v);
        }
    }
    Ok((col, codec))
}

/// A numeric schema parameter: absent → `None`; present but not a `u32` → an error (never a
/// silent default: a mangled `scale` would move every decimal point).
fn u32_param(f: &J, k: &str) -> Result<Option<u32>, String> {
    match f.get("parameters").and_then(|p| p.get(k)) {
        None | Some(J::Null) => Ok(None),
        Some(J::String(s)) => s.parse::<u32>().map(Some).map_err(|_| {
            format!(
                "parameter {k:?} = {:?} is not a non-negative integer",
                short(s)
            )
        }),
        Some(other) => Err(format!(
            "parameter {k:?} must be a string, got {}",
            crate::error::short_json(other)
        )),
    }
}

fn connect_kind(
    ty: &str,
    logical: Option<&str>,
    f: &J,
) -> Result<(ColumnKind, FieldCodec), String> {
    use ColumnKind as K;
    use FieldCodec as C;
    let u32p = |k: &str| u32_param(f, k);
    let allowed = || -> Vec<String> {
        param(f, "allowed")
            .map(|s| {
                if s.is_empty() {
                    Vec::new()
                } else {
                    s.split(',').map(str::to_owned).collect()
                }
            })
            .unwrap_or_default()
    };
    Ok(match logical {
        Some("org.apache.kafka.connect.data.Decimal") if ty == "bytes" => {
            let scale = u32p("scale")?.ok_or("Connect Decimal without a \"scale\" parameter")?;
            if scale > num::MAX_SCALE {
                return Err(format!(
                    "Decimal scale {scale} exceeds PostgreSQL numeric's limit of {} digits \
                     after the point",
                    num::MAX_SCALE
                ));
            }
            let precision = u32p("connect.decimal.precision")?;
            if let Some(p) = precision {
                if p == 0 || p > num::MAX_DECLARED_PRECISION || p < scale {
                    return Err(format!(
                        "Decimal precision {p} (scale {scale}) is not a valid PostgreSQL \
                         numeric(p,s): 1 ≤ p ≤ {} and p ≥ s",
                        num::MAX_DECLARED_PRECISION
                    ));
                }
            }
            (
                K::Decimal {
                    precision,
                    scale: Some(scale),
                },
                C::Decimal { scale },
            )
        }
        Some("io.debezium.data.VariableScaleDecimal") if ty == "struct" => (
            K::Decimal {
                precision: None,
                scale: None,
            },
            C::VarDecimal,
        ),
        Some("io.debezium.data.Bits") if ty == "bytes" => {
            let len = u32p("length")?.unwrap_or(64);
            if !(1..=64).contains(&len) {
                return Err(format!("Bits length {len} is outside 1..=64"));
            }
            (K::Bits { len }, C::Bits)
        }
        Some("io.debezium.data.Enum") if ty == "string" => (K::Enum { allowed: allowed() }, C::Str),
        Some("io.debezium.data.EnumSet") if ty == "string" => {
            (K::Set { allowed: allowed() }, C::Str)
        }
        Some("io.debezium.data.Json") if ty == "string" => (K::Json, C::Json),
        Some("io.debezium.data.FloatVector") if ty == "array" => {
            (K::Vector { dim: None }, C::FloatVector)
        }
        Some("io.debezium.time.Date") | Some("org.apache.kafka.connect.data.Date")
            if ty == "int32" =>
        {
            (K::Date, C::Date)
        }
        Some("io.debezium.time.Time") | Some("org.apache.kafka.connect.data.Time") => {
            (K::Time { fsp: 3 }, C::TimeMs)
        }
        Some("io.debezium.time.MicroTime") => (K::Time { fsp: 6 }, C::TimeUs),
        Some("io.debezium.time.NanoTime") => (K::Time { fsp: 6 }, C::TimeNs),
        Some("io.debezium.time.Timestamp") | Some("org.apache.kafka.connect.data.Timestamp") => {
            (K::DateTime { fsp: 3 }, C::TsMs)
        }
        Some("io.debezium.time.MicroTimestamp") => (K::DateTime { fsp: 6 }, C::TsUs),
        Some("io.debezium.time.NanoTimestamp") => (K::DateTime { fsp: 6 }, C::TsNs),
        Some("io.debezium.time.ZonedTimestamp") if ty == "string" => {
            (K::Timestamp { fsp: 6 }, C::Zoned)
        }
        Some("io.debezium.time.Year") => (K::Year, C::Year),
        _ => match ty {
            "int8" => (
                K::Int {
                    bits: 8,
                    unsigned: false,
                },
                C::Int,
            ),
            "int16" => (
                K::Int {
                    bits: 16,
                    unsigned: false,
                },
                C::Int,
            ),
            "int32" => (
                K::Int {
                    bits: 32,
                    unsigned: false,
                },
                C::Int,
            ),
            "int64" => (
                K::Int {
                    bits: 64,
                    unsigned: false,
                },
                C::Int,
            ),
            "float" | "float32" => (K::Float, C::Float),
            "double" | "float64" => (K::Double, C::Double),
            "boolean" => (K::Bool, C::Bool),
            "string" => (K::String { max_len: None }, C::Str),
            "bytes" => (K::Bytes { max_len: None }, C::Bytes),
            _ => (K::Unknown, C::Raw),
        },
    })
}

/// An ENUM value must be one of its labels (or `""`, MySQL's value for an invalid ENUM), a SET
/// value a comma-separated list of its labels. Without a label list (no `allowed` parameter)
/// anything goes. ENUM labels may themselves contain commas (the `allowed` parameter is
/// `String.join(",")` of them), so a value missing from the split list is looked up in the
/// joined text at label boundaries before it is refused.
pub(crate) fn check_labels(kind: &ColumnKind, s: &str) -> Result<(), String> {
    match kind {
        ColumnKind::Enum { allowed } if !allowed.is_empty() => {
            if s.is_empty() || allowed.iter().any(|a| a == s) {
                return Ok(());
            }
            let joined = allowed.join(",");
            let at_boundary = joined == s
                || joined.starts_with(&format!("{s},"))
                || joined.ends_with(&format!(",{s}"))
                || joined.contains(&format!(",{s},"));
            if at_boundary {
                Ok(())
            } else {
                Err(format!(
                    "{:?} is not one of the ENUM labels [{}]",
                    short(s),
                    short(&joined)
                ))
            }
        }
        ColumnKind::Set { allowed } if !allowed.is_empty() => {
            if s.is_empty() {
                return Ok(());
            }
            match s.split(',').find(|l| !allowed.iter().any(|a| a == l)) {
                None => Ok(()),
                Some(l) => Err(format!(
                    "{:?} is not one of the SET labels [{}]",
                    short(l),
                    short(&allowed.join(","))
                )),
            }
        }
        _ => Ok(()),
    }
}

use crate::error::short_str as short;

fn want_i64(v: &J) -> Result<i64, String> {
    match v {
        J::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("expected an integer, got {n}")),
        other => Err(format!(
            "expected an integer, got {}",
            crate::error::short_json(other)
        )),
    }
}

fn want_str(v: J) -> Result<String, String> {
    match v {
        J::String(s) => Ok(s),
        other => Err(format!(
            "expected a string, got {}",
            crate::error::short_json(&other)
        )),
    }
}

fn want_b64(v: J) -> Result<Vec<u8>, String> {
    let s = want_str(v)?;
    b64()
        .decode(s.as_bytes())
        .map_err(|e| format!("invalid base64 {:?}: {e}", short(&s)))
}

fn num_text(v: &J) -> Result<&str, String> {
    match v {
        J::Number(n) => Ok(n.as_str()),
        other => Err(format!(
            "expected a number, got {}",
            crate::error::short_json(other)
        )),
    }
}

/// Decodes one JSON value spelled per `codec` (the JSON is consumed to avoid string copies).
pub(crate) fn decode_value(codec: FieldCodec, kind: &ColumnKind, v: J) -> Result<Value, String> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    Ok(match codec {
        FieldCodec::Bool => match v {
            J::Bool(b) => Value::Bool(b),
            other => {
                return Err(format!(
                    "expected a boolean, got {}",
                    crate::error::short_json(&other)
                ))
            }
        },
        FieldCodec::Int => Value::Int(want_i64(&v)?),
        FieldCodec::Float => Value::Float(
            num_text(&v)?
                .parse::<f32>()
                .map_err(|e| format!("bad float: {e}"))?,
        ),
        FieldCodec::Double => Value::Double(
            num_text(&v)?
                .parse::<f64>()
                .map_err(|e| format!("bad double: {e}"))?,
        ),
        FieldCodec::Str => {
            let s = want_str(v)?;
            check_labels(kind, &s)?;
            Value::String(s)
        }
        FieldCodec::Json => Value::Json(want_str(v)?),
        FieldCodec::FloatVector => match v {
            J::Array(a) => Value::Vector(
                a.iter()
                    .map(|x| {
                        num_text(x)?
                            .parse::<f32>()
                            .ok()
                            .filter(|f| f.is_finite())
                            .ok_or_else(|| format!("bad FloatVector element {x}"))
                    })
                    .collect::<Result<_, String>>()?,
            ),
            other => {
                return Err(format!(
                    "expected a FloatVector array, got {}",
                    crate::error::short_json(&other)
                ))
            }
        },
        FieldCodec::Bytes => Value::Bytes(want_b64(v)?),
        FieldCodec::Decimal { scale } => {
            Value::Decimal(num::unscaled_bytes_to_decimal(&want_b64(v)?, scale)?)
        }
        FieldCodec::VarDecimal => {
            let scale = v
                .get("scale")
                .map(want_i64)
                .transpose()?
                .ok_or("VariableScaleDecimal without scale")?;
            let scale = u32::try_from(scale)
                .ok()
                .filter(|s| *s <= num::MAX_SCALE)
                .ok_or_else(|| {
                    format!(
                        "VariableScaleDecimal scale {scale} is outside 0..={} (PostgreSQL numeric)",
                        num::MAX_SCALE
                    )
                })?;
            let bytes = want_b64(v.get("value").cloned().unwrap_or(J::Null))?;
            Value::Decimal(num::unscaled_bytes_to_decimal(&bytes, scale)?)
        }
        FieldCodec::Bits => match v {
            J::Bool(b) => Value::Bits(u64::from(b)),
            other => {
                let bytes = want_b64(other)?;
                Value::Bits(num::bits_from_le(&bytes).ok_or("BIT value wider than 64 bits")?)
            }
        },
        FieldCodec::Date => {
            Value::Date(i32::try_from(want_i64(&v)?).map_err(|_| "date out of range".to_string())?)
        }
        FieldCodec::TimeMs => Value::Time(mul(want_i64(&v)?, 1000)?),
        FieldCodec::TimeUs => Value::Time(want_i64(&v)?),
        FieldCodec::TimeNs => Value::Time(want_i64(&v)?.div_euclid(1000)),
        FieldCodec::TsMs => Value::DateTime(mul(want_i64(&v)?, 1000)?),
        FieldCodec::TsUs => Value::DateTime(want_i64(&v)?),
        FieldCodec::TsNs => Value::DateTime(want_i64(&v)?.div_euclid(1000)),
        FieldCodec::Zoned => {
            let s = want_str(v)?;
            Value::Timestamp(
                num::parse_zoned(&s)
                    .ok_or_else(|| format!("invalid ZonedTimestamp {:?}", short(&s)))?,
            )
        }
        FieldCodec::Year => {
            Value::Year(i32::try_from(want_i64(&v)?).map_err(|_| "year out of range".to_string())?)
        }
        FieldCodec::Raw => {
            let _ = kind;
            Value::Unresolved(v)
        }
    })
}

fn mul(a: i64, b: i64) -> Result<i64, String> {
    a.checked_mul(b).ok_or_else(|| format!("{a} overflows"))
}

/// MySQL type as Debezium's `tableChanges` spells it (`typeName`, `length`, `scale`,
/// `enumValues` with quotes) → [`ColumnKind`]. Also usable by capture for
/// `information_schema` types. `BOOLEAN` is `TINYINT(1)` in MySQL → `Int{8}`.
pub fn mysql_type_kind(
    type_name: &str,
    length: Option<u32>,
    scale: Option<u32>,
    enum_values: &[String],
) -> ColumnKind {
    use ColumnKind as K;
    let upper = type_name.trim().to_ascii_uppercase();
    let unsigned = upper.contains("UNSIGNED");
    let base = upper.split_whitespace().next().unwrap_or("");
    let base = base.split('(').next().unwrap_or(base);
    let fsp = |l: Option<u32>| u8::try_from(l.unwrap_or(0).min(6)).unwrap_or(6);
    let allowed = || {
        enum_values
            .iter()
            .map(|v| {
                let t = v.trim();
                t.strip_prefix('\'')
                    .and_then(|x| x.strip_suffix('\''))
                    .unwrap_or(t)
                    .replace("''", "'")
            })
            .collect::<Vec<_>>()
    };
    match base {
        "TINYINT" | "BOOL" | "BOOLEAN" => K::Int { bits: 8, unsigned },
        "SMALLINT" => K::Int { bits: 16, unsigned },
        "MEDIUMINT" => K::Int { bits: 24, unsigned },
        "INT" | "INTEGER" => K::Int { bits: 32, unsigned },
        "BIGINT" | "SERIAL" => K::Int { bits: 64, unsigned },
        "DECIMAL" | "NUMERIC" | "DEC" | "FIXED" => K::Decimal {
            precision: length.or(Some(10)),
            scale: scale.or(Some(0)),
        },
        "FLOAT" => K::Float,
        "DOUBLE" | "REAL" => K::Double,
        "BIT" => K::Bits {
            len: length.unwrap_or(1),
        },
        "CHAR" | "VARCHAR" | "NCHAR" | "NVARCHAR" => K::String { max_len: length },
        "TINYTEXT" | "TEXT" | "MEDIUMTEXT" | "LONGTEXT" => K::String { max_len: None },
        "BINARY" | "VARBINARY" => K::Bytes { max_len: length },
        "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" => K::Bytes { max_len: None },
        "ENUM" => K::Enum { allowed: allowed() },
        "SET" => K::Set { allowed: allowed() },
        "DATE" => K::Date,
        "TIME" => K::Time { fsp: fsp(length) },
        "DATETIME" => K::DateTime { fsp: fsp(length) },
        "TIMESTAMP" => K::Timestamp { fsp: fsp(length) },
        "YEAR" => K::Year,
        "JSON" => K::Json,
        _ => K::Unknown,
    }
}
