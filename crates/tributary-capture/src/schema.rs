//! Table shapes from `information_schema`: the snapshot's schema, column DEFAULTs and the
//! fallback names/keys when the binlog TableMap carries no optional metadata.

use mysql_async::prelude::*;
use mysql_async::Value as MyValue;
use tributary_model::{Column, ColumnKind, TableId, TableSchema, Value};

use crate::decode::{datetime_us, days_from_civil};
use crate::{CaptureError, Flavor};
use tributary_model::calendar::civil_from_days;

/// One row of information_schema.COLUMNS, the bits we use.
#[derive(Debug, Clone)]
pub(crate) struct InfoColumn {
    pub name: String,
    pub data_type: String,
    pub column_type: String,
    pub nullable: bool,
    pub default: Option<String>,
    pub char_max: Option<u64>,
    pub num_precision: Option<u64>,
    pub num_scale: Option<u64>,
    pub dt_precision: Option<u64>,
}

pub(crate) fn vstr(v: &MyValue) -> Option<String> {
    match v {
        MyValue::NULL => None,
        MyValue::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        MyValue::Int(i) => Some(i.to_string()),
        MyValue::UInt(u) => Some(u.to_string()),
        MyValue::Float(f) => Some(f.to_string()),
        MyValue::Double(f) => Some(f.to_string()),
        other => Some(format!("{other:?}")),
    }
}

pub(crate) fn vu64(v: &MyValue) -> Option<u64> {
    vstr(v).and_then(|s| s.parse().ok())
}

/// Columns and primary key of a table, or `None` when the table does not exist (now).
pub(crate) async fn load_table<Q: Queryable>(
    conn: &mut Q,
    id: &TableId,
    flavor: Flavor,
) -> Result<Option<(Vec<InfoColumn>, Vec<String>)>, CaptureError> {
    let rows: Vec<mysql_async::Row> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, \
             CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
             ORDER BY ORDINAL_POSITION",
            (id.db.as_str(), id.table.as_str()),
        )
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut cols = Vec::with_capacity(rows.len());
    for r in rows {
        let v: Vec<MyValue> = r.unwrap();
        let default = vstr(&v[4]);
        cols.push(InfoColumn {
            name: vstr(&v[0]).unwrap_or_default(),
            data_type: vstr(&v[1]).unwrap_or_default().to_ascii_lowercase(),
            column_type: vstr(&v[2]).unwrap_or_default(),
            nullable: vstr(&v[3]).as_deref() == Some("YES"),
            default: normalize_default(default, flavor),
            char_max: vu64(&v[5]),
            num_precision: vu64(&v[6]),
            num_scale: vu64(&v[7]),
            dt_precision: vu64(&v[8]),
        });
    }
    let pk_rows: Vec<mysql_async::Row> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' \
             ORDER BY ORDINAL_POSITION",
            (id.db.as_str(), id.table.as_str()),
        )
        .await?;
    let pk = pk_rows
        .into_iter()
        .filter_map(|r| vstr(&r.unwrap()[0]))
        .collect();
    Ok(Some((cols, pk)))
}

/// MariaDB spells COLUMN_DEFAULT as an SQL expression (`'dflt'`, `NULL`, `current_timestamp()`),
/// MySQL as the raw value. Returns the literal text, `Some("\0NULL")` for an explicit NULL
/// default, `None` for no default / an expression.
fn normalize_default(d: Option<String>, flavor: Flavor) -> Option<String> {
    let d = d?;
    match flavor {
        Flavor::MySql => Some(d),
        Flavor::MariaDb => {
            if d == "NULL" {
                return Some("\0NULL".into());
            }
            if d.len() >= 2 && d.starts_with('\'') && d.ends_with('\'') {
                let inner = &d[1..d.len() - 1];
                let mut s = String::with_capacity(inner.len());
                let mut it = inner.chars().peekable();
                while let Some(c) = it.next() {
                    match c {
                        '\'' if it.peek() == Some(&'\'') => {
                            it.next();
                            s.push('\'');
                        }
                        '\\' => match it.next() {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some('0') => s.push('\0'),
                            Some(o) => s.push(o),
                            None => {}
                        },
                        o => s.push(o),
                    }
                }
                return Some(s);
            }
            if d.starts_with("b'") && d.ends_with('\'') {
                return Some(d);
            }
            if d.chars()
                .all(|c| c.is_ascii_digit() || c == '-' || c == '.' || c == 'e' || c == '+')
            {
                return Some(d);
            }
            None // an expression such as current_timestamp()
        }
    }
}

/// Parse the quoted list of `enum('a','b')` / `set('a','b')`.
pub(crate) fn parse_enum_list(column_type: &str) -> Vec<String> {
    let Some(start) = column_type.find('(') else {
        return vec![];
    };
    let body = &column_type[start + 1..column_type.rfind(')').unwrap_or(column_type.len())];
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_q = false;
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if in_q {
            if c == '\'' {
                if chars.peek() == Some(&'\'') {
                    chars.next();
                    cur.push('\'');
                } else {
                    in_q = false;
                    out.push(std::mem::take(&mut cur));
                }
            } else if c == '\\' {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            } else {
                cur.push(c);
            }
        } else if c == '\'' {
            in_q = true;
        }
    }
    out
}

/// ColumnKind of an information_schema column; must agree with the TableMap translation in
/// `decode::table_version` so snapshot and streamed events share one schema.
pub(crate) fn kind_of(c: &InfoColumn) -> ColumnKind {
    let unsigned = c.column_type.to_ascii_lowercase().contains("unsigned");
    let fsp = c.dt_precision.unwrap_or(0) as u8;
    match c.data_type.as_str() {
        "tinyint" => ColumnKind::Int { bits: 8, unsigned },
        "smallint" => ColumnKind::Int { bits: 16, unsigned },
        "mediumint" => ColumnKind::Int { bits: 24, unsigned },
        "int" | "integer" => ColumnKind::Int { bits: 32, unsigned },
        "bigint" => ColumnKind::Int { bits: 64, unsigned },
        "decimal" | "numeric" => ColumnKind::Decimal {
            precision: c.num_precision.map(|x| x as u32),
            scale: c.num_scale.map(|x| x as u32),
        },
        "float" => ColumnKind::Float,
        "double" | "real" | "double precision" => ColumnKind::Double,
        "bit" => ColumnKind::Bits {
            len: c.num_precision.unwrap_or(1) as u32,
        },
        "char" | "varchar" => ColumnKind::String {
            max_len: c.char_max.map(|x| x as u32),
        },
        "tinytext" | "text" | "mediumtext" | "longtext" => ColumnKind::String { max_len: None },
        "binary" | "varbinary" => ColumnKind::Bytes {
            max_len: c.char_max.map(|x| x as u32),
        },
        "enum" => ColumnKind::Enum {
            allowed: parse_enum_list(&c.column_type),
        },
        "set" => ColumnKind::Set {
            allowed: parse_enum_list(&c.column_type),
        },
        "date" => ColumnKind::Date,
        "time" => ColumnKind::Time { fsp },
        "datetime" => ColumnKind::DateTime { fsp },
        "timestamp" => ColumnKind::Timestamp { fsp },
        "year" => ColumnKind::Year,
        "json" => ColumnKind::Json,
        _ => ColumnKind::Bytes { max_len: None },
    }
}

/// Parse a DEFAULT literal for a column kind.
pub(crate) fn default_value(kind: &ColumnKind, d: &Option<String>) -> Option<Value> {
    let d = d.as_ref()?;
    if d == "\0NULL" {
        return Some(Value::Null);
    }
    Some(match kind {
        ColumnKind::Int {
            bits: 64,
            unsigned: true,
        } => Value::UInt(d.parse().ok()?),
        ColumnKind::Int { .. } | ColumnKind::Bool => Value::Int(d.parse().ok()?),
        ColumnKind::Decimal { .. } => Value::Decimal(d.clone()),
        ColumnKind::Float => Value::Float(d.parse().ok()?),
        ColumnKind::Double => Value::Double(d.parse().ok()?),
        ColumnKind::String { .. } | ColumnKind::Enum { .. } | ColumnKind::Set { .. } => {
            Value::String(d.clone())
        }
        ColumnKind::Json => Value::Json(d.clone()),
        ColumnKind::Bytes { .. } => Value::Bytes(d.as_bytes().to_vec()),
        ColumnKind::Bits { .. } => {
            let s = d.trim_start_matches("b'").trim_end_matches('\'');
            Value::Bits(u64::from_str_radix(s, 2).or_else(|_| d.parse()).ok()?)
        }
        ColumnKind::Year => Value::Year(d.parse().ok()?),
        ColumnKind::Date => {
            let (y, m, dd) = parse_ymd(d)?;
            if m == 0 || dd == 0 {
                return None;
            }
            Value::Date(days_from_civil(y as i64, m, dd) as i32)
        }
        ColumnKind::DateTime { .. } | ColumnKind::Timestamp { .. } => {
            let (date, time) = d.split_once(' ').unwrap_or((d.as_str(), "00:00:00"));
            let (y, m, dd) = parse_ymd(date)?;
            if m == 0 || dd == 0 {
                return None;
            }
            let us = parse_hms_us(time)?;
            let v = datetime_us(y, m, dd, 0, 0, 0, 0) + us;
            if matches!(kind, ColumnKind::Timestamp { .. }) {
                // information_schema shows TIMESTAMP defaults in the session zone, which
                // capture sets to UTC.
                Value::Timestamp(v)
            } else {
                Value::DateTime(v)
            }
        }
        ColumnKind::Time { .. } => {
            let neg = d.starts_with('-');
            let us = parse_hms_us(d.trim_start_matches('-'))?;
            Value::Time(if neg { -us } else { us })
        }
        ColumnKind::Unknown => return None,
    })
}

fn parse_ymd(s: &str) -> Option<(u32, u32, u32)> {
    let mut it = s.split('-');
    Some((
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
    ))
}

fn parse_hms_us(s: &str) -> Option<i64> {
    let (hms, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut it = hms.split(':');
    let h: i64 = it.next()?.parse().ok()?;
    let m: i64 = it.next()?.parse().ok()?;
    let sec: i64 = it.next()?.parse().ok()?;
    let mut us: i64 = 0;
    if !frac.is_empty() {
        let f = format!("{frac:0<6}");
        us = f[..6].parse().ok()?;
    }
    Some((h * 3600 + m * 60 + sec) * 1_000_000 + us)
}

/// A full schema from information_schema (used by the snapshot).
pub(crate) fn schema_from_info(id: &TableId, cols: &[InfoColumn], pk: &[String]) -> TableSchema {
    let columns: Vec<Column> = cols
        .iter()
        .map(|c| {
            let kind = kind_of(c);
            let mut col = Column::new(c.name.clone(), kind);
            col.nullable = c.nullable;
            col.default = default_value(&col.kind, &c.default);
            col.source_type = Some(c.column_type.clone());
            col
        })
        .collect();
    let key = pk
        .iter()
        .filter_map(|k| columns.iter().position(|c| &c.name == k))
        .collect();
    TableSchema {
        id: id.clone(),
        columns,
        key,
    }
}

/// Complete a TableMap-derived schema with DEFAULTs / source types (and, without
/// binlog_row_metadata=FULL, names, keys, signedness and ENUM/SET labels) from
/// information_schema.
pub(crate) fn enrich(
    schema: &mut TableSchema,
    has_names: bool,
    cols: &[InfoColumn],
    pk: &[String],
) {
    if !has_names && cols.len() == schema.columns.len() {
        // Fallback: match by position. Documented limit: wrong if DDL ran between the
        // event and this lookup.
        for (c, i) in schema.columns.iter_mut().zip(cols) {
            c.name = i.name.clone();
            let ik = kind_of(i);
            match (&mut c.kind, ik) {
                (ColumnKind::Int { unsigned, .. }, ColumnKind::Int { unsigned: u, .. }) => {
                    *unsigned = u
                }
                (ColumnKind::Enum { allowed }, ColumnKind::Enum { allowed: a }) => *allowed = a,
                (ColumnKind::Set { allowed }, ColumnKind::Set { allowed: a }) => *allowed = a,
                _ => {}
            }
        }
        schema.key = pk
            .iter()
            .filter_map(|k| schema.columns.iter().position(|c| &c.name == k))
            .collect();
    }
    for c in schema.columns.iter_mut() {
        if let Some(i) = cols.iter().find(|i| i.name == c.name) {
            c.default = default_value(&c.kind, &i.default);
            c.source_type = Some(i.column_type.clone());
            // Character lengths: information_schema knows characters exactly.
            match (&mut c.kind, kind_of(i)) {
                (ColumnKind::String { max_len }, ColumnKind::String { max_len: m }) => *max_len = m,
                (ColumnKind::Bytes { max_len }, ColumnKind::Bytes { max_len: m }) => *max_len = m,
                _ => {}
            }
        }
    }
}

/// Convert a binary-protocol value read by the snapshot into the model value, exactly as the
/// binlog decoder would produce it for the same data.
pub(crate) fn from_mysql(v: MyValue, col: &Column, table: &TableId) -> Value {
    use ColumnKind as K;
    let bytes_str = |b: Vec<u8>| match String::from_utf8(b) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    match (v, &col.kind) {
        (MyValue::NULL, _) => Value::Null,
        (
            MyValue::Int(i),
            K::Int {
                bits: 64,
                unsigned: true,
            },
        ) => Value::UInt(i as u64),
        (
            MyValue::UInt(u),
            K::Int {
                bits: 64,
                unsigned: true,
            },
        ) => Value::UInt(u),
        (MyValue::Int(i), K::Int { .. } | K::Bool) => Value::Int(i),
        (MyValue::UInt(u), K::Int { .. } | K::Bool) => Value::Int(u as i64),
        (
            MyValue::Bytes(b),
            K::Int {
                bits: 64,
                unsigned: true,
            },
        ) => Value::UInt(bytes_str(b).parse().unwrap_or(0)),
        (MyValue::Bytes(b), K::Int { .. }) => Value::Int(bytes_str(b).parse().unwrap_or(0)),
        (MyValue::Bytes(b), K::Decimal { .. }) => Value::Decimal(bytes_str(b)),
        (MyValue::Float(f), K::Float) => Value::Float(f),
        (MyValue::Double(d), K::Float) => Value::Float(d as f32),
        (MyValue::Double(d), K::Double) => Value::Double(d),
        (MyValue::Float(f), K::Double) => Value::Double(f as f64),
        (MyValue::Bytes(b), K::Float) => Value::Float(bytes_str(b).parse().unwrap_or(0.0)),
        (MyValue::Bytes(b), K::Double) => Value::Double(bytes_str(b).parse().unwrap_or(0.0)),
        (MyValue::Bytes(b), K::Bits { .. }) => {
            Value::Bits(b.iter().fold(0u64, |a, x| (a << 8) | *x as u64))
        }
        (MyValue::Int(i), K::Bits { .. }) => Value::Bits(i as u64),
        (MyValue::UInt(i), K::Bits { .. }) => Value::Bits(i),
        (MyValue::Bytes(b), K::String { .. } | K::Enum { .. } | K::Set { .. }) => {
            Value::String(bytes_str(b))
        }
        (MyValue::Bytes(b), K::Json) => Value::Json(bytes_str(b)),
        (MyValue::Bytes(b), K::Bytes { .. }) => Value::Bytes(b),
        (MyValue::Int(y), K::Year) => Value::Year(y as i32),
        (MyValue::UInt(y), K::Year) => Value::Year(y as i32),
        (MyValue::Bytes(b), K::Year) => Value::Year(bytes_str(b).parse().unwrap_or(0)),
        (MyValue::Date(y, m, d, ..), K::Date) => {
            if m == 0 || d == 0 {
                zero(table, col)
            } else {
                Value::Date(days_from_civil(y as i64, m as u32, d as u32) as i32)
            }
        }
        (MyValue::Date(y, m, d, h, mi, s, us), K::DateTime { .. } | K::Timestamp { .. }) => {
            if m == 0 || d == 0 {
                zero(table, col)
            } else {
                let v = datetime_us(
                    y as u32, m as u32, d as u32, h as u32, mi as u32, s as u32, us,
                );
                if matches!(col.kind, K::Timestamp { .. }) {
                    Value::Timestamp(v)
                } else {
                    Value::DateTime(v)
                }
            }
        }
        (MyValue::Time(neg, days, h, m, s, us), K::Time { .. }) => {
            let v = ((days as i64 * 24 + h as i64) * 3600 + m as i64 * 60 + s as i64) * 1_000_000
                + us as i64;
            Value::Time(if neg { -v } else { v })
        }
        (other, _) => {
            tracing::warn!(table = %table, column = %col.name, value = ?other, "unexpected snapshot value type");
            match other {
                MyValue::Bytes(b) => Value::String(bytes_str(b)),
                MyValue::Int(i) => Value::Int(i),
                MyValue::UInt(u) => Value::UInt(u),
                MyValue::Double(d) => Value::Double(d),
                MyValue::Float(f) => Value::Float(f),
                _ => Value::Null,
            }
        }
    }
}

fn zero(table: &TableId, col: &Column) -> Value {
    tracing::warn!(table = %table, column = %col.name, "zero date/time value captured as NULL");
    Value::Null
}

/// Model value → parameter for a `WHERE (pk) > (?)` chunk query.
pub(crate) fn to_param(v: &Value) -> MyValue {
    match v {
        Value::Null => MyValue::NULL,
        Value::Bool(b) => MyValue::Int(*b as i64),
        Value::Int(i) => MyValue::Int(*i),
        Value::UInt(u) => MyValue::UInt(*u),
        Value::Float(f) => MyValue::Float(*f),
        Value::Double(d) => MyValue::Double(*d),
        Value::Decimal(s) | Value::String(s) | Value::Json(s) => {
            MyValue::Bytes(s.as_bytes().to_vec())
        }
        Value::Bytes(b) => MyValue::Bytes(b.clone()),
        Value::Bits(b) => MyValue::UInt(*b),
        Value::Year(y) => MyValue::Int(*y as i64),
        Value::Date(d) => {
            let (y, m, dd) = civil_from_days(*d as i64);
            MyValue::Date(y as u16, m as u8, dd as u8, 0, 0, 0, 0)
        }
        Value::DateTime(us) | Value::Timestamp(us) => {
            let days = us.div_euclid(86_400_000_000);
            let rem = us.rem_euclid(86_400_000_000);
            let (y, m, d) = civil_from_days(days);
            let secs = rem / 1_000_000;
            MyValue::Date(
                y as u16,
                m as u8,
                d as u8,
                (secs / 3600) as u8,
                (secs / 60 % 60) as u8,
                (secs % 60) as u8,
                (rem % 1_000_000) as u32,
            )
        }
        Value::Time(us) => {
            let neg = *us < 0;
            let a = us.unsigned_abs();
            let secs = a / 1_000_000;
            let h = secs / 3600;
            MyValue::Time(
                neg,
                (h / 24) as u32,
                (h % 24) as u8,
                (secs / 60 % 60) as u8,
                (secs % 60) as u8,
                (a % 1_000_000) as u32,
            )
        }
        Value::Unresolved(j) => MyValue::Bytes(j.to_string().into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_lists() {
        assert_eq!(
            parse_enum_list("enum('small','medium','it''s')"),
            vec!["small", "medium", "it's"]
        );
    }

    #[test]
    fn civil_round_trip() {
        for d in [-1000, -1, 0, 1, 20349, 50000] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }

    #[test]
    fn mariadb_defaults() {
        assert_eq!(
            normalize_default(Some("'dflt'".into()), Flavor::MariaDb).as_deref(),
            Some("dflt")
        );
        assert_eq!(
            normalize_default(Some("current_timestamp()".into()), Flavor::MariaDb),
            None
        );
        assert_eq!(
            default_value(
                &ColumnKind::String { max_len: None },
                &Some("dflt".to_string())
            ),
            Some(Value::String("dflt".into()))
        );
    }
}
