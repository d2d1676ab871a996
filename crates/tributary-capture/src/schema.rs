//! Table shapes from `information_schema`: the snapshot's schema, column DEFAULTs and the
//! fallback names/keys when the binlog TableMap carries no optional metadata.
//!
//! DEFAULTs: only a constant is a default value; an expression DEFAULT (MySQL's
//! `DEFAULT_GENERATED`, MariaDB's unquoted SQL) is never turned into a value, so MySQL SQL never
//! reaches PostgreSQL DDL. INVISIBLE and generated columns are ordinary columns here (listed by
//! information_schema, carried by the binlog). VECTOR's dimension comes from here (the TableMap
//! has none), and MariaDB's VECTOR, a binary VARCHAR in the binlog, is recognised here.

use mysql_async::prelude::*;
use mysql_async::Value as MyValue;
use tributary_model::{Column, ColumnKind, TableId, TableSchema, Value};

use crate::decode::{date_days, datetime_us};
use crate::{CaptureError, Flavor};
use tributary_model::calendar::civil_from_days;

/// One row of information_schema.COLUMNS, the bits we use.
#[derive(Debug, Clone)]
pub(crate) struct InfoColumn {
    pub name: String,
    pub data_type: String,
    pub column_type: String,
    pub nullable: bool,
    /// The constant DEFAULT (see [`normalize_default`]); `None` for none or an expression.
    pub default: Option<String>,
    /// COLUMN_DEFAULT when it is an expression (`current_timestamp()`, MySQL's
    /// `DEFAULT_GENERATED` text): [`Column::default_expr`].
    pub default_expr: Option<String>,
    pub char_max: Option<u64>,
    pub num_precision: Option<u64>,
    pub num_scale: Option<u64>,
    pub dt_precision: Option<u64>,
    /// The collation's id (information_schema.COLLATIONS), for text columns: their character
    /// set when the TABLE_MAP has none (MariaDB's `binlog_row_metadata=NO_LOG`).
    pub collation_id: Option<u16>,
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
    if flavor == Flavor::MySql {
        // A generated invisible primary key (`my_row_id`, MySQL ≥ 8.0.30) is hidden from
        // information_schema when a DBA set show_gipk_in_create_table_and_information_schema=OFF,
        // yet the binlog carries it as the key: this session must see it, or the snapshot would
        // read the table as keyless (and without the column) while the stream has both. Servers
        // without GIPKs have no such variable (error 1193): nothing is hidden there.
        match conn
            .query_drop("SET SESSION show_gipk_in_create_table_and_information_schema = ON")
            .await
        {
            Err(mysql_async::Error::Server(e)) if e.code == 1193 => {}
            r => r?,
        }
    }
    let rows: Vec<mysql_async::Row> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, \
             CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION, EXTRA, \
             (SELECT co.ID FROM information_schema.COLLATIONS co \
              WHERE co.COLLATION_NAME = c.COLLATION_NAME LIMIT 1) \
             FROM information_schema.COLUMNS c WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
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
        let extra = v.get(9).and_then(vstr).unwrap_or_default();
        let normalized = normalize_default(default.clone(), &extra, flavor);
        let generated = extra.to_ascii_uppercase().contains("GENERATED")
            && !extra.to_ascii_uppercase().contains("DEFAULT_GENERATED");
        let default_expr = match (&normalized, default) {
            (None, Some(d)) if !generated && d != "NULL" => Some(d),
            _ => None,
        };
        cols.push(InfoColumn {
            default_expr,
            name: vstr(&v[0]).unwrap_or_default(),
            data_type: vstr(&v[1]).unwrap_or_default().to_ascii_lowercase(),
            column_type: vstr(&v[2]).unwrap_or_default(),
            nullable: vstr(&v[3]).as_deref() == Some("YES"),
            default: normalized,
            char_max: vu64(&v[5]),
            num_precision: vu64(&v[6]),
            num_scale: vu64(&v[7]),
            dt_precision: vu64(&v[8]),
            collation_id: v.get(10).and_then(vu64).and_then(|x| u16::try_from(x).ok()),
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
///
/// MySQL 8.0.13+ expression defaults (`DEFAULT (JSON_OBJECT('a', 1))`, `DEFAULT (UUID())`,
/// `DEFAULT CURRENT_TIMESTAMP`) show their SQL text in COLUMN_DEFAULT, marked
/// `DEFAULT_GENERATED` in EXTRA: that text is MySQL SQL, not a value, so it is no default here
/// (it must never reach PostgreSQL DDL, where `json_object(_utf8mb4'a',1)` cannot run).
/// Generated columns (`VIRTUAL GENERATED` / `STORED GENERATED`) have no default at all.
fn normalize_default(d: Option<String>, extra: &str, flavor: Flavor) -> Option<String> {
    let d = d?;
    if extra.to_ascii_uppercase().contains("DEFAULT_GENERATED") {
        return None;
    }
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
    // The servers allow at most 6 fractional digits; a larger number cannot come from them and
    // reads as 6 (every digit kept).
    let fsp = u8::try_from(c.dt_precision.unwrap_or(0)).map_or(6, |f| f.min(6));
    // A length or precision that does not fit u32 is unknown (None = unbounded), never wrapped.
    let u32_of = |x: Option<u64>| x.and_then(|x| u32::try_from(x).ok());
    match c.data_type.as_str() {
        "tinyint" => ColumnKind::Int { bits: 8, unsigned },
        "smallint" => ColumnKind::Int { bits: 16, unsigned },
        "mediumint" => ColumnKind::Int { bits: 24, unsigned },
        "int" | "integer" => ColumnKind::Int { bits: 32, unsigned },
        "bigint" => ColumnKind::Int { bits: 64, unsigned },
        "decimal" | "numeric" => ColumnKind::Decimal {
            precision: u32_of(c.num_precision),
            scale: u32_of(c.num_scale),
        },
        "float" => ColumnKind::Float,
        "double" | "real" | "double precision" => ColumnKind::Double,
        "bit" => ColumnKind::Bits {
            len: u32_of(c.num_precision).unwrap_or(64).min(64),
        },
        "char" | "varchar" => ColumnKind::String {
            max_len: u32_of(c.char_max),
        },
        "tinytext" | "text" | "mediumtext" | "longtext" => ColumnKind::String { max_len: None },
        "binary" | "varbinary" => ColumnKind::Bytes {
            max_len: u32_of(c.char_max),
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
        // MySQL 9: CHARACTER_MAXIMUM_LENGTH is the byte size, 4 per dimension.
        "vector" => ColumnKind::Vector {
            dim: u32_of(c.char_max).map(|b| b / 4),
        },
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
            Value::Date(date_days(y, m, dd)?)
        }
        ColumnKind::DateTime { .. } | ColumnKind::Timestamp { .. } => {
            let (date, time) = d.split_once(' ').unwrap_or((d.as_str(), "00:00:00"));
            let (y, m, dd) = parse_ymd(date)?;
            if m == 0 || dd == 0 {
                return None;
            }
            let us = parse_hms_us(time)?;
            let v = datetime_us(y, m, dd, 0, 0, 0, 0)?.checked_add(us)?;
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
        // VECTOR has no literal DEFAULT (only an expression one).
        ColumnKind::Vector { .. } | ColumnKind::Unknown => return None,
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
        us = f.get(..6)?.parse().ok()?;
    }
    if !(0..=838).contains(&h) || !(0..60).contains(&m) || !(0..60).contains(&sec) || us < 0 {
        return None;
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
            col.default_expr = c.default_expr.clone();
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

/// Whether a column the TABLE_MAP describes (`binlog`) can be the column information_schema
/// describes (`info`) — the check that names taken by position (binlog_row_metadata
/// MINIMAL/NO_LOG) belong to these values. Same kind, and where the TABLE_MAP carries them, the
/// same integer width, DECIMAL precision/scale, BIT length and fractional seconds. Text and
/// bytes are one family: without charset metadata (MariaDB's NO_LOG) the TABLE_MAP cannot tell
/// them apart.
fn binlog_kind_agrees(binlog: &ColumnKind, info: &ColumnKind) -> bool {
    use ColumnKind as K;
    match (binlog, info) {
        (K::Int { bits: a, .. }, K::Int { bits: b, .. }) => a == b,
        (
            K::Decimal {
                precision: p1,
                scale: s1,
            },
            K::Decimal {
                precision: p2,
                scale: s2,
            },
        ) => p1 == p2 && s1 == s2,
        (K::Bits { len: a }, K::Bits { len: b }) => a == b,
        (K::Time { fsp: a }, K::Time { fsp: b })
        | (K::DateTime { fsp: a }, K::DateTime { fsp: b })
        | (K::Timestamp { fsp: a }, K::Timestamp { fsp: b }) => a == b,
        (K::String { .. } | K::Bytes { .. }, K::String { .. } | K::Bytes { .. }) => true,
        // MariaDB's VECTOR travels as a binary VARCHAR.
        (K::String { .. } | K::Bytes { .. }, K::Vector { .. }) => true,
        (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
    }
}

/// Complete a TableMap-derived schema with DEFAULTs / source types (and, without
/// binlog_row_metadata=FULL, names, keys, signedness and ENUM/SET labels) from
/// information_schema.
///
/// Without names in the TABLE_MAP (MySQL's default `binlog_row_metadata=MINIMAL`, MariaDB's
/// `NO_LOG`) the columns are named by position from information_schema as it is *now*. That is
/// only right if the table has not changed since the event was written, so the column count and
/// every column's type must agree with the TABLE_MAP; a disagreement (capture reading behind a
/// DDL) is an error naming table, column and both types with the fix, never values mapped under
/// the wrong columns and never `@N` names. A DDL that keeps count and types (a rename, swapped
/// columns of one type) cannot be seen this way: only `binlog_row_metadata=FULL` is exact there
/// (README, Known limits).
pub(crate) fn enrich(
    schema: &mut TableSchema,
    has_names: bool,
    cols: &[InfoColumn],
    pk: &[String],
) -> Result<(), String> {
    const FIX: &str = "the binlog was written with binlog_row_metadata=MINIMAL/NO_LOG (no column \
        names) and the table has changed since (DDL after this event): SET GLOBAL \
        binlog_row_metadata=FULL (and `binlog_row_metadata=FULL` in my.cnf [mysqld]) so new \
        events carry their names, and re-snapshot the table from a position after the DDL";
    if !has_names && cols.len() != schema.columns.len() {
        return Err(format!(
            "the TABLE_MAP has {} columns, information_schema now has {}: {FIX}",
            schema.columns.len(),
            cols.len()
        ));
    }
    if !has_names {
        for (n, (c, i)) in schema.columns.iter().zip(cols).enumerate() {
            let ik = kind_of(i);
            if !binlog_kind_agrees(&c.kind, &ik) {
                return Err(format!(
                    "column {} is {:?} in the TABLE_MAP but `{}` is {} ({ik:?}) in \
                     information_schema now: {FIX}",
                    n + 1,
                    c.kind,
                    i.name,
                    i.column_type
                ));
            }
        }
    }
    if !has_names {
        // Match by position (checked above).
        for (c, i) in schema.columns.iter_mut().zip(cols) {
            c.name = i.name.clone();
            let ik = kind_of(i);
            match (&mut c.kind, ik) {
                (ColumnKind::Int { unsigned, .. }, ColumnKind::Int { unsigned: u, .. }) => {
                    *unsigned = u
                }
                (ColumnKind::Enum { allowed }, ColumnKind::Enum { allowed: a }) => *allowed = a,
                (ColumnKind::Set { allowed }, ColumnKind::Set { allowed: a }) => *allowed = a,
                // Text or bytes: a TABLE_MAP without charsets (NO_LOG) cannot tell them apart.
                (k @ ColumnKind::String { .. }, b @ ColumnKind::Bytes { .. })
                | (k @ ColumnKind::Bytes { .. }, b @ ColumnKind::String { .. }) => *k = b,
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
            c.default_expr = i.default_expr.clone();
            c.source_type = Some(i.column_type.clone());
            // MariaDB 11.7+ VECTOR travels as a binary VARCHAR: information_schema says what it
            // is, and the decoder reads those bytes as floats for a Vector column.
            if matches!(c.kind, ColumnKind::Bytes { .. }) {
                if let ColumnKind::Vector { dim } = kind_of(i) {
                    c.kind = ColumnKind::Vector { dim };
                }
            }
            // Character lengths: information_schema knows characters exactly.
            match (&mut c.kind, kind_of(i)) {
                (ColumnKind::String { max_len }, ColumnKind::String { max_len: m }) => *max_len = m,
                (ColumnKind::Bytes { max_len }, ColumnKind::Bytes { max_len: m }) => *max_len = m,
                (ColumnKind::Vector { dim }, ColumnKind::Vector { dim: d }) => *dim = d,
                _ => {}
            }
        }
    }
    Ok(())
}

/// Convert a binary-protocol value read by the snapshot into the model value, exactly as the
/// binlog decoder would produce it for the same data.
///
/// Text arrives already converted to utf8mb4 by the server (the session character set of
/// mysql_async), i.e. by the server's own table of the column's character set, which is the
/// table `decode::charset` reproduces for the binlog. A value that cannot be represented
/// exactly (a number that does not parse or does not fit, an out-of-range date, a value of an
/// unexpected protocol type) is a [`CaptureError::Value`] naming table, column and value —
/// never a 0, an empty string or a NULL in its place.
pub(crate) fn from_mysql(v: MyValue, col: &Column, table: &TableId) -> Result<Value, CaptureError> {
    use ColumnKind as K;
    let err = |value: &dyn std::fmt::Debug, reason: &str| CaptureError::Value {
        table: table.to_string(),
        column: col.name.clone(),
        value: {
            let mut s = format!("{value:?}");
            if s.len() > 200 {
                let mut cut = 200;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.truncate(cut);
                s.push('…');
            }
            s
        },
        reason: reason.to_string(),
    };
    let text = |b: Vec<u8>| match String::from_utf8(b) {
        Ok(s) => Ok(s),
        Err(e) => {
            // The server sends utf8mb4: invalid UTF-8 here means it sent the column's bytes
            // unconverted. Same policy as the binlog decoder: U+FFFD and a warning.
            let b = e.into_bytes();
            Ok::<String, CaptureError>(crate::decode::text(
                crate::decode::Cs::Utf8,
                &b,
                table,
                &col.name,
            ))
        }
    };
    // Parse a number sent as text; the whole text must parse.
    fn num<T: std::str::FromStr>(b: &[u8]) -> Option<T> {
        std::str::from_utf8(b).ok()?.trim().parse().ok()
    }
    let int_range = |i: i64| match col.kind {
        K::Int {
            bits: b @ 8..=32,
            unsigned: u,
        } => {
            let (lo, hi) = if u {
                (0, (1i64 << b) - 1)
            } else {
                (-(1i64 << (b - 1)), (1i64 << (b - 1)) - 1)
            };
            (lo..=hi).contains(&i)
        }
        _ => true,
    };
    Ok(match (v, &col.kind) {
        (MyValue::NULL, _) => Value::Null,
        (
            MyValue::Int(i),
            K::Int {
                bits: 64,
                unsigned: true,
            },
        ) => Value::UInt(
            u64::try_from(i).map_err(|_| err(&i, "negative value for BIGINT UNSIGNED"))?,
        ),
        (
            MyValue::UInt(u),
            K::Int {
                bits: 64,
                unsigned: true,
            },
        ) => Value::UInt(u),
        (MyValue::Int(i), K::Int { .. } | K::Bool) if int_range(i) => Value::Int(i),
        (MyValue::UInt(u), K::Int { .. } | K::Bool) if i64::try_from(u).is_ok_and(int_range) => {
            Value::Int(i64::try_from(u).map_err(|_| err(&u, "integer out of range"))?)
        }
        (
            MyValue::Bytes(b),
            K::Int {
                bits: 64,
                unsigned: true,
            },
        ) => Value::UInt(
            num(&b).ok_or_else(|| err(&String::from_utf8_lossy(&b), "not a BIGINT UNSIGNED"))?,
        ),
        (MyValue::Bytes(b), K::Int { .. }) => {
            let i: i64 = num(&b).filter(|i| int_range(*i)).ok_or_else(|| {
                err(
                    &String::from_utf8_lossy(&b),
                    "not an integer of the column's range",
                )
            })?;
            Value::Int(i)
        }
        (MyValue::Bytes(b), K::Decimal { .. }) => {
            let s = String::from_utf8(b).map_err(|e| err(&e.as_bytes(), "DECIMAL is not text"))?;
            if !is_decimal(&s) {
                return Err(err(&s, "not a DECIMAL"));
            }
            Value::Decimal(s)
        }
        (MyValue::Float(f), K::Float) => Value::Float(f),
        (MyValue::Double(d), K::Float) => {
            // f32 → f64 → f32 is exact; a double outside f32 cannot come from a FLOAT column.
            let f = d as f32;
            if f64::from(f) != d && !d.is_nan() {
                return Err(err(&d, "DOUBLE value for a FLOAT column is not a float"));
            }
            Value::Float(f)
        }
        (MyValue::Double(d), K::Double) => Value::Double(d),
        (MyValue::Float(f), K::Double) => Value::Double(f64::from(f)),
        (MyValue::Bytes(b), K::Float) => {
            Value::Float(num(&b).ok_or_else(|| err(&String::from_utf8_lossy(&b), "not a FLOAT"))?)
        }
        (MyValue::Bytes(b), K::Double) => {
            Value::Double(num(&b).ok_or_else(|| err(&String::from_utf8_lossy(&b), "not a DOUBLE"))?)
        }
        (MyValue::Bytes(b), K::Bits { .. }) => {
            if b.len() > 8 {
                return Err(err(&b, "BIT value longer than 64 bits"));
            }
            Value::Bits(b.iter().fold(0u64, |a, x| (a << 8) | u64::from(*x)))
        }
        (MyValue::Int(i), K::Bits { .. }) => {
            Value::Bits(u64::try_from(i).map_err(|_| err(&i, "negative BIT value"))?)
        }
        (MyValue::UInt(i), K::Bits { .. }) => Value::Bits(i),
        (MyValue::Bytes(b), K::String { .. } | K::Enum { .. } | K::Set { .. }) => {
            Value::String(text(b)?)
        }
        (MyValue::Bytes(b), K::Json) => Value::Json(text(b)?),
        (MyValue::Bytes(b), K::Vector { .. }) => {
            Value::Vector(crate::decode::vector_floats(&b).map_err(|e| err(&b.len(), &e))?)
        }
        (MyValue::Bytes(b), K::Bytes { .. }) => Value::Bytes(b),
        (MyValue::Int(y), K::Year) => {
            Value::Year(i32::try_from(y).map_err(|_| err(&y, "YEAR out of range"))?)
        }
        (MyValue::UInt(y), K::Year) => {
            Value::Year(i32::try_from(y).map_err(|_| err(&y, "YEAR out of range"))?)
        }
        (MyValue::Bytes(b), K::Year) => {
            Value::Year(num(&b).ok_or_else(|| err(&String::from_utf8_lossy(&b), "not a YEAR"))?)
        }
        (MyValue::Date(y, m, d, ..), K::Date) => {
            if m == 0 || d == 0 {
                zero(table, col)
            } else {
                let days = date_days(u32::from(y), u32::from(m), u32::from(d));
                Value::Date(days.ok_or_else(|| err(&(y, m, d), "DATE out of range"))?)
            }
        }
        (MyValue::Date(y, m, d, h, mi, s, us), K::DateTime { .. } | K::Timestamp { .. }) => {
            if m == 0 || d == 0 {
                zero(table, col)
            } else {
                let v = datetime_us(
                    u32::from(y),
                    u32::from(m),
                    u32::from(d),
                    u32::from(h),
                    u32::from(mi),
                    u32::from(s),
                    us,
                )
                .ok_or_else(|| err(&(y, m, d, h, mi, s, us), "DATETIME out of range"))?;
                if matches!(col.kind, K::Timestamp { .. }) {
                    Value::Timestamp(v)
                } else {
                    Value::DateTime(v)
                }
            }
        }
        (MyValue::Time(neg, days, h, m, s, us), K::Time { .. }) => {
            if m > 59 || s > 59 || us >= 1_000_000 {
                return Err(err(&(neg, days, h, m, s, us), "TIME out of range"));
            }
            // days < 2^32, so the product stays far below 2^63.
            let v =
                ((i64::from(days) * 24 + i64::from(h)) * 3600 + i64::from(m) * 60 + i64::from(s))
                    * 1_000_000
                    + i64::from(us);
            Value::Time(if neg { -v } else { v })
        }
        (other, _) => {
            return Err(err(
                &other,
                "value of an unexpected type or range for the column's type",
            ))
        }
    })
}

/// `-?digits(.digits)?` — the plain notation the server sends for DECIMAL.
fn is_decimal(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let (i, f) = s.split_once('.').unwrap_or((s, ""));
    !i.is_empty()
        && i.bytes().all(|b| b.is_ascii_digit())
        && (!f.is_empty() || !s.contains('.'))
        && f.bytes().all(|b| b.is_ascii_digit())
}

fn zero(table: &TableId, col: &Column) -> Value {
    tracing::warn!(table = %table, column = %col.name, "zero date/time value captured as NULL");
    Value::Null
}

/// Model value → parameter for a `WHERE (pk) > (?)` chunk query. The value may come from a
/// stored checkpoint (`last_pk`): one that no MySQL parameter can carry (a date outside
/// 0..=9999, a TIME beyond u32 days) is a checkpoint error, never a wrapped parameter that
/// would silently skip or repeat rows.
pub(crate) fn to_param(v: &Value) -> Result<MyValue, CaptureError> {
    let bad = || CaptureError::Checkpoint(format!("snapshot key value {v:?} out of range"));
    let u8_of = |x: i64| u8::try_from(x).map_err(|_| bad());
    let date = |days: i64| -> Result<(u16, u8, u8), CaptureError> {
        let (y, m, d) = civil_from_days(days);
        Ok((
            u16::try_from(y)
                .ok()
                .filter(|y| *y <= 9999)
                .ok_or_else(bad)?,
            u8::try_from(m).map_err(|_| bad())?,
            u8::try_from(d).map_err(|_| bad())?,
        ))
    };
    Ok(match v {
        Value::Null => MyValue::NULL,
        Value::Bool(b) => MyValue::Int(i64::from(*b)),
        Value::Int(i) => MyValue::Int(*i),
        Value::UInt(u) => MyValue::UInt(*u),
        Value::Float(f) => MyValue::Float(*f),
        Value::Double(d) => MyValue::Double(*d),
        Value::Decimal(s) | Value::String(s) | Value::Json(s) => {
            MyValue::Bytes(s.as_bytes().to_vec())
        }
        Value::Bytes(b) => MyValue::Bytes(b.clone()),
        Value::Vector(v) => MyValue::Bytes(v.iter().flat_map(|f| f.to_le_bytes()).collect()),
        Value::Bits(b) => MyValue::UInt(*b),
        Value::Year(y) => MyValue::Int(i64::from(*y)),
        Value::Date(d) => {
            let (y, m, dd) = date(i64::from(*d))?;
            MyValue::Date(y, m, dd, 0, 0, 0, 0)
        }
        Value::DateTime(us) | Value::Timestamp(us) => {
            let days = us.div_euclid(86_400_000_000);
            let rem = us.rem_euclid(86_400_000_000);
            let (y, m, d) = date(days)?;
            let secs = rem / 1_000_000;
            MyValue::Date(
                y,
                m,
                d,
                u8_of(secs / 3600)?,
                u8_of(secs / 60 % 60)?,
                u8_of(secs % 60)?,
                u32::try_from(rem % 1_000_000).map_err(|_| bad())?,
            )
        }
        Value::Time(us) => {
            let neg = *us < 0;
            let a = us.unsigned_abs();
            let secs = a / 1_000_000;
            let h = secs / 3600;
            let small = |x: u64| u8::try_from(x).map_err(|_| bad());
            MyValue::Time(
                neg,
                u32::try_from(h / 24).map_err(|_| bad())?,
                small(h % 24)?,
                small(secs / 60 % 60)?,
                small(secs % 60)?,
                u32::try_from(a % 1_000_000).map_err(|_| bad())?,
            )
        }
        Value::Unresolved(j) => MyValue::Bytes(j.to_string().into_bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Snapshot values that cannot be represented exactly are errors naming table, column and
    /// value: they used to become 0 (`parse().unwrap_or(0)`) or wrap (`as`).
    #[test]
    fn snapshot_numbers_never_become_zero_or_wrap() {
        let t = TableId::new("db", "t");
        let col = |kind| Column::new("n", kind);
        let int = |bits, unsigned| ColumnKind::Int { bits, unsigned };
        let bad: Vec<(MyValue, ColumnKind)> = vec![
            (MyValue::Bytes(b"12abc".to_vec()), int(32, false)),
            (MyValue::Bytes(b"".to_vec()), int(64, false)),
            (MyValue::Bytes(b"-1".to_vec()), int(64, true)),
            (
                MyValue::Bytes(b"99999999999999999999".to_vec()),
                int(64, true),
            ),
            (MyValue::Bytes(b"300".to_vec()), int(8, false)),
            (MyValue::Bytes(b"1.5e".to_vec()), ColumnKind::Double),
            (MyValue::Bytes(b"x".to_vec()), ColumnKind::Float),
            (
                MyValue::Bytes(b"12.3.4".to_vec()),
                ColumnKind::Decimal {
                    precision: None,
                    scale: None,
                },
            ),
            (
                MyValue::Bytes(b"1e5".to_vec()),
                ColumnKind::Decimal {
                    precision: None,
                    scale: None,
                },
            ),
            (
                MyValue::Bytes(b"5.".to_vec()),
                ColumnKind::Decimal {
                    precision: None,
                    scale: None,
                },
            ),
            (MyValue::Bytes(b"20x5".to_vec()), ColumnKind::Year),
            (MyValue::Int(-1), int(64, true)),
            (MyValue::UInt(u64::MAX), int(64, false)),
            (MyValue::UInt(1 << 40), int(32, false)),
            (MyValue::Int(i64::from(i32::MAX) + 1), int(32, false)),
            (MyValue::UInt(u64::MAX), ColumnKind::Year),
            (MyValue::Bytes(vec![1; 9]), ColumnKind::Bits { len: 64 }),
            (MyValue::Date(10000, 1, 1, 0, 0, 0, 0), ColumnKind::Date),
            (
                MyValue::Date(2024, 13, 1, 0, 0, 0, 0),
                ColumnKind::DateTime { fsp: 0 },
            ),
            (
                MyValue::Date(2024, 1, 1, 0, 0, 0, 0),
                ColumnKind::Time { fsp: 0 },
            ),
        ];
        for (v, kind) in bad {
            let shown = format!("{v:?}");
            match from_mysql(v, &col(kind.clone()), &t) {
                Err(e @ CaptureError::Value { .. }) => {
                    let msg = e.to_string();
                    assert!(
                        msg.starts_with("value of db.t.n cannot be captured"),
                        "{msg}"
                    );
                    assert!(!tributary_model::ErrorClass::is_transient(&e));
                    let CaptureError::Value { value, .. } = e else {
                        unreachable!()
                    };
                    assert!(!value.is_empty());
                }
                other => panic!("{shown} as {kind:?}: {other:?}"),
            }
        }
        // What is exact stays exact.
        let ok = |v, kind| from_mysql(v, &col(kind), &t).unwrap();
        assert_eq!(
            ok(MyValue::Bytes(b"-42".to_vec()), int(32, false)),
            Value::Int(-42)
        );
        assert_eq!(
            ok(
                MyValue::Bytes(b"18446744073709551615".to_vec()),
                int(64, true)
            ),
            Value::UInt(u64::MAX)
        );
        assert_eq!(ok(MyValue::UInt(255), int(8, true)), Value::Int(255));
        assert_eq!(
            ok(
                MyValue::Bytes(b"-0.50".to_vec()),
                ColumnKind::Decimal {
                    precision: None,
                    scale: None
                }
            ),
            Value::Decimal("-0.50".into())
        );
        assert_eq!(
            ok(MyValue::Bytes(b"2.5".to_vec()), ColumnKind::Double),
            Value::Double(2.5)
        );
        assert_eq!(
            ok(MyValue::Date(2024, 2, 29, 0, 0, 0, 0), ColumnKind::Date),
            Value::Date(19782)
        );
    }

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
            assert_eq!(crate::decode::days_from_civil(y, m, dd), d);
        }
    }

    #[test]
    fn mariadb_defaults() {
        assert_eq!(
            normalize_default(Some("'dflt'".into()), "", Flavor::MariaDb).as_deref(),
            Some("dflt")
        );
        assert_eq!(
            normalize_default(Some("current_timestamp()".into()), "", Flavor::MariaDb),
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
