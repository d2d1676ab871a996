//! Binlog row-image decoding and TableMap → [`TableSchema`] translation.
//!
//! Rows events are decoded here directly from `rows_data` (not through mysql_common's
//! `BinlogRow`, which rebuilds column metadata for every row): one [`TableVersion`] per table
//! shape holds the per-column decoders and the shared `Arc<TableSchema>`, so the hot path
//! allocates only the values themselves.

use std::sync::Arc;

use mysql_async::binlog::events::{OptionalMetadataField, TableMapEvent};

use tributary_model::{Column, ColumnKind, TableId, TableSchema, Value};

mod charset;
pub(crate) use charset::Cs;
mod json;

#[cfg(test)]
mod fuzz;

/// How to read one column of a row image.
#[derive(Debug, Clone)]
pub(crate) struct ColDec {
    /// Real MySQL type byte (ENUM/SET/STRING resolved from the metadata).
    pub ty: u8,
    /// Type-dependent: max byte length (strings), pack length (blob/json/geometry), byte size
    /// (enum/set/bit), fsp (temporal), precision (decimal).
    pub len: u32,
    /// Decimal scale / bit remainder.
    pub aux: u32,
    pub unsigned: bool,
    pub cs: Cs,
}

/// One shape of a table as the binlog describes it.
#[derive(Debug)]
pub(crate) struct TableVersion {
    /// TableMap event body without the table id (identity of the shape).
    pub raw: Vec<u8>,
    pub schema: Arc<TableSchema>,
    pub cols: Vec<ColDec>,
    pub included: bool,
    /// Whether the TableMap carried column names (binlog_row_metadata=FULL).
    pub has_names: bool,
    /// Whether it carried the text columns' character sets (MINIMAL and FULL do; MariaDB's
    /// NO_LOG does not: then they come from information_schema, see `stream`).
    pub has_charsets: bool,
}

pub(crate) const T_DECIMAL: u8 = 0;
pub(crate) const T_TINY: u8 = 1;
pub(crate) const T_SHORT: u8 = 2;
pub(crate) const T_LONG: u8 = 3;
pub(crate) const T_FLOAT: u8 = 4;
pub(crate) const T_DOUBLE: u8 = 5;
pub(crate) const T_TIMESTAMP: u8 = 7;
pub(crate) const T_LONGLONG: u8 = 8;
pub(crate) const T_INT24: u8 = 9;
pub(crate) const T_DATE: u8 = 10;
pub(crate) const T_TIME: u8 = 11;
pub(crate) const T_DATETIME: u8 = 12;
pub(crate) const T_YEAR: u8 = 13;
pub(crate) const T_NEWDATE: u8 = 14;
pub(crate) const T_VARCHAR: u8 = 15;
pub(crate) const T_BIT: u8 = 16;
pub(crate) const T_TIMESTAMP2: u8 = 17;
pub(crate) const T_DATETIME2: u8 = 18;
pub(crate) const T_TIME2: u8 = 19;
/// MySQL 9 VECTOR: a length-prefixed (metadata: prefix bytes) run of little-endian float32.
pub(crate) const T_VECTOR: u8 = 242;
pub(crate) const T_JSON: u8 = 245;
pub(crate) const T_NEWDECIMAL: u8 = 246;
pub(crate) const T_ENUM: u8 = 247;
pub(crate) const T_SET: u8 = 248;
pub(crate) const T_TINY_BLOB: u8 = 249;
pub(crate) const T_MEDIUM_BLOB: u8 = 250;
pub(crate) const T_LONG_BLOB: u8 = 251;
pub(crate) const T_BLOB: u8 = 252;
pub(crate) const T_VAR_STRING: u8 = 253;
pub(crate) const T_STRING: u8 = 254;
pub(crate) const T_GEOMETRY: u8 = 255;

fn is_numeric(ty: u8) -> bool {
    // Same definition as mysql_common's `ColumnType::is_numeric_type` (YEAR included): the
    // server emits one signedness bit per such column.
    matches!(
        ty,
        T_TINY
            | T_SHORT
            | T_INT24
            | T_LONG
            | T_LONGLONG
            | T_DECIMAL
            | T_NEWDECIMAL
            | T_FLOAT
            | T_DOUBLE
            | T_YEAR
    )
}

fn is_character(ty: u8) -> bool {
    matches!(
        ty,
        T_STRING | T_VAR_STRING | T_VARCHAR | T_BLOB | T_TINY_BLOB | T_MEDIUM_BLOB | T_LONG_BLOB
    )
}

/// Resolve the real type and length of a `MYSQL_TYPE_STRING` column from its metadata.
fn string_real_type(meta: &[u8]) -> (u8, u32) {
    if meta.len() < 2 {
        return (T_STRING, 0);
    }
    let (t, b1) = (meta[0], u32::from(meta[1]));
    if t == 0 {
        return (T_STRING, 0);
    }
    if (t & 0x30) != 0x30 {
        (t | 0x30, b1 | ((u32::from(t & 0x30) ^ 0x30) << 4))
    } else {
        (t, b1)
    }
}

/// Most columns a table can have (MySQL and MariaDB: 4096); only bounds pre-allocation.
const MAX_COLUMNS: usize = 4096;

/// Build the table version described by a TableMap event. `geometry_has_charset`: MariaDB
/// lists GEOMETRY columns (a BLOB underneath) among the character columns of the charset
/// metadata, MySQL does not — counted wrongly, every text column after a GEOMETRY one took its
/// neighbour's character set (a latin1 VARCHAR after a POINT became bytes on MariaDB).
pub(crate) fn table_version(
    tme: &TableMapEvent<'_>,
    raw: Vec<u8>,
    included: bool,
    geometry_has_charset: bool,
) -> Result<TableVersion, String> {
    let n = usize::try_from(tme.columns_count()).map_err(|_| "column count".to_string())?;
    let mut types = Vec::with_capacity(n.min(MAX_COLUMNS));
    let mut cols = Vec::with_capacity(n.min(MAX_COLUMNS));
    // Pass 1: types and metadata.
    for i in 0..n {
        let raw_ty = tme
            .get_raw_column_type(i)
            .map_err(|e| format!("column {i}: {e}"))?
            .map(|t| t as u8)
            .ok_or_else(|| format!("column {i}: no type"))?;
        let meta = tme.get_column_metadata(i).unwrap_or(&[]);
        let m0 = u32::from(meta.first().copied().unwrap_or(0));
        let m1 = u32::from(meta.get(1).copied().unwrap_or(0));
        let (ty, len, aux) = match raw_ty {
            T_STRING => {
                let (rt, l) = string_real_type(meta);
                (rt, l, 0)
            }
            T_VARCHAR | T_VAR_STRING => (raw_ty, m0 | (m1 << 8), 0),
            T_NEWDECIMAL => (raw_ty, m0, m1),
            T_BIT => (raw_ty, m1, m0),
            T_BLOB | T_TINY_BLOB | T_MEDIUM_BLOB | T_LONG_BLOB | T_JSON | T_GEOMETRY | T_VECTOR => {
                (
                    if raw_ty == T_JSON || raw_ty == T_GEOMETRY || raw_ty == T_VECTOR {
                        raw_ty
                    } else {
                        T_BLOB
                    },
                    m0,
                    0,
                )
            }
            T_TIME2 | T_DATETIME2 | T_TIMESTAMP2 => (raw_ty, m0, 0),
            _ => (raw_ty, m0, m1),
        };
        types.push(ty);
        cols.push(ColDec {
            ty,
            len,
            aux,
            unsigned: false,
            cs: Cs::Utf8,
        });
    }
    // Pass 2: optional metadata.
    let mut signed: Vec<bool> = Vec::new();
    let mut text_cs = CharsetMeta::default();
    let mut enum_set_cs = CharsetMeta::default();
    let mut names: Vec<String> = Vec::new();
    // ENUM/SET labels as raw bytes: they are in the column's character set, decoded below.
    let mut enums: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut sets: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut pk: Vec<usize> = Vec::new();
    let index = |x: u64| usize::try_from(x).map_err(|_| format!("column index {x}"));
    for f in tme.iter_optional_meta() {
        let f = f.map_err(|e| format!("optional metadata: {e}"))?;
        match f {
            OptionalMetadataField::Signedness(bits) => {
                signed = bits.iter().by_vals().collect();
            }
            OptionalMetadataField::DefaultCharset(dc) => text_cs.read_default(&dc)?,
            OptionalMetadataField::ColumnCharset(cc) => text_cs.read_columns(&cc)?,
            OptionalMetadataField::EnumAndSetDefaultCharset(dc) => enum_set_cs.read_default(&dc)?,
            OptionalMetadataField::EnumAndSetColumnCharset(cc) => enum_set_cs.read_columns(&cc)?,
            OptionalMetadataField::ColumnName(cn) => {
                for x in cn.iter_names() {
                    names.push(x.map_err(|e| e.to_string())?.name().into_owned());
                }
            }
            OptionalMetadataField::EnumStrValue(ev) => {
                for x in ev.iter_values() {
                    let x = x.map_err(|e| e.to_string())?;
                    enums.push(x.values().iter().map(|v| v.value_raw().to_vec()).collect());
                }
            }
            OptionalMetadataField::SetStrValue(sv) => {
                for x in sv.iter_values() {
                    let x = x.map_err(|e| e.to_string())?;
                    sets.push(x.values().iter().map(|v| v.value_raw().to_vec()).collect());
                }
            }
            OptionalMetadataField::SimplePrimaryKey(k) => {
                for x in k.iter_indexes() {
                    pk.push(index(x.map_err(|e| e.to_string())?)?);
                }
            }
            OptionalMetadataField::PrimaryKeyWithPrefix(k) => {
                for x in k.iter_keys() {
                    pk.push(index(x.map_err(|e| e.to_string())?.column_index())?);
                }
            }
            _ => {}
        }
    }
    if let Some(&k) = pk.iter().find(|&&k| k >= n) {
        return Err(format!("primary key column {k} of {n} columns"));
    }
    let id = TableId::new(tme.database_name(), tme.table_name());
    let has_names = names.len() == n;
    let nulls = tme.null_bitmask();
    let mut num_i = 0usize;
    let mut char_i = 0usize;
    let mut enum_set_i = 0usize;
    let mut enum_i = 0usize;
    let mut set_i = 0usize;
    let mut columns = Vec::with_capacity(n.min(MAX_COLUMNS));
    for (i, c) in cols.iter_mut().enumerate() {
        let name = names
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("@{}", i + 1));
        if is_numeric(c.ty) {
            c.unsigned = signed.get(num_i).copied().unwrap_or(false);
            num_i += 1;
        }
        if is_character(c.ty) {
            c.cs = text_cs.charset(char_i, &id, &name);
            char_i += 1;
        } else if geometry_has_charset && c.ty == T_GEOMETRY {
            char_i += 1;
        }
        let mut labels = |all: &[Vec<Vec<u8>>], k: usize| -> Vec<String> {
            let cs = enum_set_cs.charset(enum_set_i, &id, &name);
            enum_set_i += 1;
            all.get(k)
                .map(|l| l.iter().map(|b| text(cs, b, &id, &name)).collect())
                .unwrap_or_default()
        };
        let kind = match c.ty {
            T_TINY => ColumnKind::Int {
                bits: 8,
                unsigned: c.unsigned,
            },
            T_SHORT => ColumnKind::Int {
                bits: 16,
                unsigned: c.unsigned,
            },
            T_INT24 => ColumnKind::Int {
                bits: 24,
                unsigned: c.unsigned,
            },
            T_LONG => ColumnKind::Int {
                bits: 32,
                unsigned: c.unsigned,
            },
            T_LONGLONG => ColumnKind::Int {
                bits: 64,
                unsigned: c.unsigned,
            },
            T_FLOAT => ColumnKind::Float,
            T_DOUBLE => ColumnKind::Double,
            T_NEWDECIMAL => ColumnKind::Decimal {
                precision: Some(c.len),
                scale: Some(c.aux),
            },
            T_BIT => ColumnKind::Bits {
                len: c.len * 8 + c.aux,
            },
            T_VARCHAR | T_VAR_STRING | T_STRING => {
                if c.cs == Cs::Binary {
                    ColumnKind::Bytes {
                        max_len: Some(c.len),
                    }
                } else {
                    ColumnKind::String {
                        max_len: Some(c.len / c.cs.mbmaxlen()),
                    }
                }
            }
            T_BLOB => {
                if c.cs == Cs::Binary {
                    ColumnKind::Bytes { max_len: None }
                } else {
                    ColumnKind::String { max_len: None }
                }
            }
            T_GEOMETRY => ColumnKind::Bytes { max_len: None },
            T_JSON => ColumnKind::Json,
            // The dimension is not in the TableMap; information_schema adds it (enrich).
            T_VECTOR => ColumnKind::Vector { dim: None },
            T_ENUM => {
                let allowed = labels(&enums, enum_i);
                enum_i += 1;
                ColumnKind::Enum { allowed }
            }
            T_SET => {
                let allowed = labels(&sets, set_i);
                set_i += 1;
                ColumnKind::Set { allowed }
            }
            T_DATE | T_NEWDATE => ColumnKind::Date,
            T_TIME => ColumnKind::Time { fsp: 0 },
            T_TIME2 => ColumnKind::Time { fsp: fsp(c.len)? },
            T_DATETIME => ColumnKind::DateTime { fsp: 0 },
            T_DATETIME2 => ColumnKind::DateTime { fsp: fsp(c.len)? },
            T_TIMESTAMP => ColumnKind::Timestamp { fsp: 0 },
            T_TIMESTAMP2 => ColumnKind::Timestamp { fsp: fsp(c.len)? },
            T_YEAR => ColumnKind::Year,
            other => return Err(format!("unsupported column type {other} in column {i}")),
        };
        let mut col = Column::new(name, kind);
        col.nullable = nulls.get(i).map(|b| *b).unwrap_or(true);
        columns.push(col);
    }
    let _ = types;
    let schema = TableSchema {
        id,
        columns,
        key: pk,
    };
    Ok(TableVersion {
        raw,
        schema: Arc::new(schema),
        cols,
        included,
        has_names,
        has_charsets: text_cs.default.is_some() || !text_cs.per_column.is_empty(),
    })
}

/// Fractional-second precision from column metadata (0..=6).
fn fsp(len: u32) -> Result<u8, String> {
    u8::try_from(len)
        .ok()
        .filter(|f| *f <= 6)
        .ok_or_else(|| format!("fractional-second precision {len} (at most 6)"))
}

/// Character set metadata of one class of columns (text columns, or ENUM/SET columns): a
/// default with exceptions, or one collation per column. Indexes count only that class.
#[derive(Default)]
struct CharsetMeta {
    default: Option<u16>,
    non_default: Vec<(u64, u16)>,
    per_column: Vec<u16>,
}

impl CharsetMeta {
    fn read_default(
        &mut self,
        dc: &mysql_async::binlog::events::DefaultCharset<'_>,
    ) -> Result<(), String> {
        self.default = Some(dc.default_charset());
        for x in dc.iter_non_default() {
            let x = x.map_err(|e| e.to_string())?;
            self.non_default.push((x.column_index(), x.charset()));
        }
        Ok(())
    }

    fn read_columns(
        &mut self,
        cc: &mysql_async::binlog::events::ColumnCharsets<'_>,
    ) -> Result<(), String> {
        for x in cc.iter_charsets() {
            self.per_column.push(x.map_err(|e| e.to_string())?);
        }
        Ok(())
    }

    /// Character set of the `k`-th column of this class. Without metadata (no
    /// binlog_row_metadata=FULL) text is assumed to be utf8mb4 (documented limit); a collation
    /// id neither server defines is read as utf8mb4 with a warning.
    fn charset(&self, k: usize, table: &TableId, column: &str) -> Cs {
        let id = if !self.per_column.is_empty() {
            self.per_column.get(k).copied()
        } else {
            self.non_default
                .iter()
                .find(|(i, _)| usize::try_from(*i).ok() == Some(k))
                .map(|(_, c)| *c)
                .or(self.default)
        };
        let Some(id) = id else { return Cs::Utf8 };
        Cs::from_collation(id).unwrap_or_else(|| {
            tracing::warn!(
                table = %table, column, collation = id,
                "unknown collation id: text of this column is read as utf8mb4"
            );
            Cs::Utf8
        })
    }
}

/// Bounds-checked slice of `n` bytes at `*p`: never allocates, whatever `n` a length prefix
/// claims (a 4 GB prefix in a short event is an error, not a 4 GB allocation).
#[inline]
fn take<'a>(buf: &'a [u8], p: &mut usize, n: usize) -> Result<&'a [u8], String> {
    let s = p
        .checked_add(n)
        .and_then(|end| buf.get(*p..end))
        .ok_or_else(|| format!("row image truncated at {} (+{n})", *p))?;
    *p += n;
    Ok(s)
}

/// Little-endian unsigned of at most 8 bytes (callers take ≤ 8).
#[inline]
fn le(b: &[u8]) -> u64 {
    b.iter()
        .take(8)
        .enumerate()
        .fold(0u64, |v, (i, x)| v | (u64::from(*x) << (8 * i)))
}

/// Big-endian unsigned of at most 8 bytes (callers take ≤ 8).
#[inline]
fn be(b: &[u8]) -> u64 {
    b.iter().take(8).fold(0u64, |v, x| (v << 8) | u64::from(*x))
}

/// A little-endian length prefix of `n` (1..=4) bytes as a `usize`.
#[inline]
fn len_prefix(buf: &[u8], p: &mut usize, n: usize) -> Result<usize, String> {
    if !(1..=4).contains(&n) {
        return Err(format!("length prefix of {n} bytes (1..=4)"));
    }
    let v = le(take(buf, p, n)?);
    usize::try_from(v).map_err(|_| format!("length {v}"))
}

pub(crate) use tributary_model::calendar::days_from_civil;

/// Microseconds since 1970 of a civil date and time; `None` when a field is out of range
/// (year > 9999, month 0 or > 12, day 0 or > 31, hour > 23 (838 for TIME is not a datetime),
/// minute/second > 59, micros ≥ 1e6).
pub(crate) fn datetime_us(
    y: u32,
    mo: u32,
    d: u32,
    h: u32,
    mi: u32,
    s: u32,
    us: u32,
) -> Option<i64> {
    if y > 9999 || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    if h > 23 || mi > 59 || s > 59 || us >= 1_000_000 {
        return None;
    }
    let days = days_from_civil(i64::from(y), mo, d);
    let secs = days * 86400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s);
    secs.checked_mul(1_000_000)?.checked_add(i64::from(us))
}

/// Days since 1970 of a civil date (same range checks as [`datetime_us`]).
pub(crate) fn date_days(y: u32, mo: u32, d: u32) -> Option<i32> {
    if y > 9999 || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    i32::try_from(days_from_civil(i64::from(y), mo, d)).ok()
}

fn read_frac(buf: &[u8], p: &mut usize, fsp: u32) -> Result<i64, String> {
    let (v, scale, max) = match fsp {
        1 | 2 => (be(take(buf, p, 1)?), 10_000, 100),
        3 | 4 => (be(take(buf, p, 2)?), 100, 10_000),
        5 | 6 => (be(take(buf, p, 3)?), 1, 1_000_000),
        _ => return Ok(0),
    };
    if v >= max {
        return Err(format!("fractional seconds {v} with precision {fsp}"));
    }
    i64::try_from(v * scale).map_err(|_| "fractional seconds".to_string())
}

static INVALID_TEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Text of a character column in its character set (see [`charset`] for the tables). Bytes
/// invalid in the character set become U+FFFD and a warning names table, column and charset
/// (the first 20 such values, then every power of two, with the running count).
pub(crate) fn text(cs: Cs, b: &[u8], table: &TableId, column: &str) -> String {
    let (s, bad) = charset::decode(cs, b);
    if bad {
        let n = INVALID_TEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if n <= 20 || n.is_power_of_two() {
            let hex: String = b.iter().take(32).map(|x| format!("{x:02x}")).collect();
            tracing::warn!(
                table = %table, column, charset = ?cs, bytes = %hex, invalid_values_so_far = n,
                "bytes invalid in the column's character set captured as U+FFFD"
            );
        }
    }
    s
}

/// Labels of a SET bitmap, comma-joined; `None` when a bit has no label (a member the table
/// version does not know: never dropped silently).
pub(crate) fn set_labels(allowed: &[String], bits: u64) -> Option<String> {
    if allowed.len() < 64 && bits >> allowed.len() != 0 {
        return None;
    }
    let mut s = String::new();
    for (i, a) in allowed.iter().enumerate().take(64) {
        if bits & (1u64 << i) != 0 {
            if !s.is_empty() {
                s.push(',');
            }
            s.push_str(a);
        }
    }
    Some(s)
}

/// Big-endian unsigned of at most 7 bytes as i64 (cannot overflow).
#[inline]
fn be_i64(b: &[u8]) -> Result<i64, String> {
    i64::try_from(be(b)).map_err(|_| "integer out of range".to_string())
}

/// MySQL binary DECIMAL → exact plain-notation string (`-0.01`, `12345678.90`). Precision
/// at most 65 and scale at most 38 and ≤ precision (the servers' limits); every 9-digit group
/// must be < 10^9: anything else is an error, never a wrong number.
pub(crate) fn decode_decimal(
    buf: &[u8],
    p: &mut usize,
    precision: u32,
    scale: u32,
) -> Result<String, String> {
    const DIG2BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];
    const POW10: [u64; 10] = [
        1,
        10,
        100,
        1_000,
        10_000,
        100_000,
        1_000_000,
        10_000_000,
        100_000_000,
        1_000_000_000,
    ];
    if precision == 0 || precision > 65 || scale > 38 || scale > precision {
        return Err(format!("DECIMAL({precision},{scale}) metadata"));
    }
    let conv = |x: u32| usize::try_from(x).map_err(|_| "decimal metadata".to_string());
    let (precision, scale) = (conv(precision)?, conv(scale)?);
    let intg = precision - scale;
    let (intg0, intg0x) = (intg / 9, intg % 9);
    let (frac0, frac0x) = (scale / 9, scale % 9);
    let size = intg0 * 4 + DIG2BYTES[intg0x] + frac0 * 4 + DIG2BYTES[frac0x];
    let src = take(buf, p, size)?;
    let mut b: [u8; 40] = [0; 40];
    b.get_mut(..size)
        .ok_or_else(|| "decimal too large".to_string())?
        .copy_from_slice(src);
    let negative = b[0] & 0x80 == 0;
    b[0] ^= 0x80;
    if negative {
        for x in &mut b[..size] {
            *x = !*x;
        }
    }
    let mut q = 0usize;
    let mut group = |digits: usize| -> Result<u64, String> {
        let n = if digits == 9 { 4 } else { DIG2BYTES[digits] };
        let v = be(&b[q..q + n]);
        q += n;
        if v >= POW10[digits] {
            return Err(format!(
                "decimal digit group {v} has more than {digits} digits"
            ));
        }
        Ok(v)
    };
    let mut int_part = String::new();
    if intg0x > 0 {
        let v = group(intg0x)?;
        if v != 0 {
            int_part.push_str(&v.to_string());
        }
    }
    for _ in 0..intg0 {
        let v = group(9)?;
        if int_part.is_empty() {
            if v != 0 {
                int_part.push_str(&v.to_string());
            }
        } else {
            int_part.push_str(&format!("{v:09}"));
        }
    }
    if int_part.is_empty() {
        int_part.push('0');
    }
    let mut out = String::with_capacity(int_part.len() + scale + 2);
    if negative {
        out.push('-');
    }
    out.push_str(&int_part);
    if scale > 0 {
        out.push('.');
        for _ in 0..frac0 {
            let v = group(9)?;
            out.push_str(&format!("{v:09}"));
        }
        if frac0x > 0 {
            let v = group(frac0x)?;
            out.push_str(&format!("{v:0width$}", width = frac0x));
        }
    }
    Ok(out)
}

/// Signed microseconds of a packed TIME2 value (|value| ≤ 838:59:59.999999 on the server;
/// fields out of their ranges are an error).
fn time2_us(buf: &[u8], p: &mut usize, fsp: u32) -> Result<i64, String> {
    const OFS: i64 = 0x800000;
    let packed: i64 = match fsp {
        1 | 2 => {
            let mut int = be_i64(take(buf, p, 3)?)? - OFS;
            let mut frac = be_i64(take(buf, p, 1)?)?;
            if int < 0 && frac != 0 {
                int += 1;
                frac -= 0x100;
            }
            (int << 24) + frac * 10_000
        }
        3 | 4 => {
            let mut int = be_i64(take(buf, p, 3)?)? - OFS;
            let mut frac = be_i64(take(buf, p, 2)?)?;
            if int < 0 && frac != 0 {
                int += 1;
                frac -= 0x10000;
            }
            (int << 24) + frac * 100
        }
        5 | 6 => be_i64(take(buf, p, 6)?)? - 0x8000_0000_0000,
        _ => (be_i64(take(buf, p, 3)?)? - OFS) << 24,
    };
    let neg = packed < 0;
    // |packed| < 2^48: fits.
    let a = i64::try_from(packed.unsigned_abs()).map_err(|_| "TIME out of range")?;
    let hms = a >> 24;
    let us = a & 0xFF_FFFF;
    let h = (hms >> 12) & 0x3FF;
    let m = (hms >> 6) & 0x3F;
    let s = hms & 0x3F;
    if m > 59 || s > 59 || us >= 1_000_000 {
        return Err(format!("TIME {h}:{m}:{s}.{us} out of range"));
    }
    let v = (h * 3600 + m * 60 + s) * 1_000_000 + us;
    Ok(if neg { -v } else { v })
}

/// Context for warnings (zero dates, invalid text).
pub(crate) struct WarnCtx<'a> {
    pub table: &'a TableId,
}

fn zero_date(w: &WarnCtx<'_>, col: &str) -> Value {
    tracing::warn!(table = %w.table, column = col, "zero date/time value captured as NULL");
    Value::Null
}

/// A value the column cannot hold exactly: an error naming the column and the raw value
/// (the caller adds table, binlog file and position).
fn bad_value(col: &Column, what: impl std::fmt::Display) -> String {
    format!("column `{}`: {what}", col.name)
}

fn dt(col: &Column, v: Option<i64>, raw: impl std::fmt::Display) -> Result<i64, String> {
    v.ok_or_else(|| bad_value(col, format_args!("date/time {raw} out of range")))
}

/// Decode one non-NULL value.
pub(crate) fn decode_value(
    c: &ColDec,
    col: &Column,
    buf: &[u8],
    p: &mut usize,
    w: &WarnCtx<'_>,
) -> Result<Value, String> {
    Ok(match c.ty {
        T_TINY => {
            let b = take(buf, p, 1)?[0];
            Value::Int(if c.unsigned {
                i64::from(b)
            } else {
                i64::from(i8::from_le_bytes([b]))
            })
        }
        T_SHORT => {
            let b = take(buf, p, 2)?;
            let b = [b[0], b[1]];
            Value::Int(if c.unsigned {
                i64::from(u16::from_le_bytes(b))
            } else {
                i64::from(i16::from_le_bytes(b))
            })
        }
        T_INT24 => {
            let b = take(buf, p, 3)?;
            Value::Int(if c.unsigned {
                i64::from(u32::from_le_bytes([b[0], b[1], b[2], 0]))
            } else {
                // Sign-extend: the 3 bytes in the top of an i32, arithmetic shift back.
                i64::from(i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8)
            })
        }
        T_LONG => {
            let b = take(buf, p, 4)?;
            let b = [b[0], b[1], b[2], b[3]];
            Value::Int(if c.unsigned {
                i64::from(u32::from_le_bytes(b))
            } else {
                i64::from(i32::from_le_bytes(b))
            })
        }
        T_LONGLONG => {
            let b = take(buf, p, 8)?;
            let b = [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
            if c.unsigned {
                Value::UInt(u64::from_le_bytes(b))
            } else {
                Value::Int(i64::from_le_bytes(b))
            }
        }
        T_FLOAT => {
            let b = take(buf, p, 4)?;
            Value::Float(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        }
        T_DOUBLE => Value::Double(f64::from_bits(le(take(buf, p, 8)?))),
        T_NEWDECIMAL => {
            Value::Decimal(decode_decimal(buf, p, c.len, c.aux).map_err(|e| bad_value(col, e))?)
        }
        T_BIT => {
            // BIT(M): M/8 full bytes + 1 for the M%8 remainder; M ≤ 64.
            let bits = u64::from(c.len) * 8 + u64::from(c.aux);
            if c.len > 8 || c.aux > 7 || bits > 64 {
                return Err(bad_value(col, format_args!("BIT({bits}) metadata")));
            }
            let n = usize::try_from(c.len).map_err(|_| "BIT length")? + usize::from(c.aux > 0);
            Value::Bits(be(take(buf, p, n)?))
        }
        T_VARCHAR | T_VAR_STRING | T_STRING => {
            let lb = if c.len < 256 { 1 } else { 2 };
            let n = len_prefix(buf, p, lb)?;
            let s = take(buf, p, n)?;
            if let ColumnKind::Vector { .. } = col.kind {
                // MariaDB's VECTOR (a binary VARCHAR in the binlog; see schema::enrich).
                Value::Vector(vector_floats(s).map_err(|e| bad_value(col, e))?)
            } else if c.cs == Cs::Binary {
                let mut v = s.to_vec();
                // BINARY(n) is zero-padded on read; the binlog strips the padding. `c.len` comes
                // from 2 metadata bytes (≤ 65535): bounded.
                let full = usize::try_from(c.len).map_err(|_| "BINARY length")?;
                if c.ty == T_STRING && v.len() < full && full <= 0xFFFF {
                    v.resize(full, 0);
                }
                Value::Bytes(v)
            } else {
                Value::String(text(c.cs, s, w.table, &col.name))
            }
        }
        T_BLOB | T_GEOMETRY => {
            let lb = usize::try_from(c.len).map_err(|_| "BLOB pack length")?;
            let n = len_prefix(buf, p, lb).map_err(|e| bad_value(col, e))?;
            let s = take(buf, p, n)?;
            if c.cs == Cs::Binary || c.ty == T_GEOMETRY {
                Value::Bytes(s.to_vec())
            } else {
                Value::String(text(c.cs, s, w.table, &col.name))
            }
        }
        T_JSON => {
            let lb = usize::try_from(c.len).map_err(|_| "JSON pack length")?;
            let n = len_prefix(buf, p, lb).map_err(|e| bad_value(col, e))?;
            let s = take(buf, p, n)?;
            Value::Json(jsonb_to_text(s).map_err(|e| bad_value(col, e))?)
        }
        T_VECTOR => {
            let lb = usize::try_from(c.len).map_err(|_| "VECTOR pack length")?;
            let n = len_prefix(buf, p, lb).map_err(|e| bad_value(col, e))?;
            let s = take(buf, p, n)?;
            Value::Vector(vector_floats(s).map_err(|e| bad_value(col, e))?)
        }
        T_ENUM => {
            if !(1..=2).contains(&c.len) {
                return Err(bad_value(col, format_args!("ENUM pack length {}", c.len)));
            }
            let idx = le(take(buf, p, if c.len == 1 { 1 } else { 2 })?);
            let ColumnKind::Enum { allowed } = &col.kind else {
                return Err(bad_value(
                    col,
                    "ENUM value for a column that is not an ENUM",
                ));
            };
            // Index 0 is MySQL's own "invalid value" entry, read back as '' by the server.
            let label = match usize::try_from(idx).ok().and_then(|i| i.checked_sub(1)) {
                None => Some(String::new()),
                Some(i) => allowed.get(i).cloned(),
            };
            Value::String(label.ok_or_else(|| {
                bad_value(
                    col,
                    format_args!(
                        "ENUM index {idx} has no label (this table version knows {}: {:?}); \
                         the row was written with a definition tributary has not seen",
                        allowed.len(),
                        allowed
                    ),
                )
            })?)
        }
        T_SET => {
            if !(1..=8).contains(&c.len) {
                return Err(bad_value(col, format_args!("SET pack length {}", c.len)));
            }
            let n = usize::try_from(c.len).map_err(|_| "SET pack length")?;
            let bits = le(take(buf, p, n)?);
            let ColumnKind::Set { allowed } = &col.kind else {
                return Err(bad_value(col, "SET value for a column that is not a SET"));
            };
            Value::String(set_labels(allowed, bits).ok_or_else(|| {
                bad_value(
                    col,
                    format_args!(
                        "SET bits {bits:#x} name members without a label (this table version \
                         knows {}: {:?}); the row was written with a definition tributary has \
                         not seen",
                        allowed.len(),
                        allowed
                    ),
                )
            })?)
        }
        T_DATE | T_NEWDATE => {
            let v = le(take(buf, p, 3)?);
            // 3 bytes: every field below fits in u32.
            let f = |x: u64| u32::try_from(x).unwrap_or(u32::MAX);
            let (d, m, y) = (f(v & 31), f((v >> 5) & 15), f(v >> 9));
            if m == 0 || d == 0 {
                zero_date(w, &col.name)
            } else {
                let days = date_days(y, m, d);
                Value::Date(days.ok_or_else(|| bad_value(col, format_args!("DATE {y}-{m}-{d}")))?)
            }
        }
        T_TIME => {
            let b = take(buf, p, 3)?;
            let v = i64::from(i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8);
            let a = v.abs();
            let (h, m, s) = (a / 10000, a / 100 % 100, a % 100);
            if m > 59 || s > 59 {
                return Err(bad_value(col, format_args!("TIME {v}")));
            }
            let us = (h * 3600 + m * 60 + s) * 1_000_000;
            Value::Time(if v < 0 { -us } else { us })
        }
        T_TIME2 => Value::Time(time2_us(buf, p, c.len).map_err(|e| bad_value(col, e))?),
        T_DATETIME => {
            let v = le(take(buf, p, 8)?);
            let (dp, tp) = (v / 1_000_000, v % 1_000_000);
            let f = |x: u64| u32::try_from(x).unwrap_or(u32::MAX);
            let (y, mo, d) = (f(dp / 10000), f(dp / 100 % 100), f(dp % 100));
            if mo == 0 || d == 0 {
                zero_date(w, &col.name)
            } else {
                let (h, mi, s) = (f(tp / 10000), f(tp / 100 % 100), f(tp % 100));
                Value::DateTime(dt(col, datetime_us(y, mo, d, h, mi, s, 0), v)?)
            }
        }
        T_DATETIME2 => {
            let int = be_i64(take(buf, p, 5)?)? - 0x80_0000_0000;
            let frac = read_frac(buf, p, c.len).map_err(|e| bad_value(col, e))?;
            if int < 0 {
                return Err(bad_value(col, format_args!("negative DATETIME {int}")));
            }
            let ymd = int >> 17;
            let ym = ymd >> 5;
            let hms = int % (1 << 17);
            // All fields are non-negative and below 2^23: exact.
            let f = |x: i64| u32::try_from(x).unwrap_or(u32::MAX);
            let (d, mo, y) = (f(ymd % 32), f(ym % 13), f(ym / 13));
            if mo == 0 || d == 0 {
                zero_date(w, &col.name)
            } else {
                let (h, mi, s) = (f(hms >> 12), f((hms >> 6) % 64), f(hms % 64));
                let us = datetime_us(y, mo, d, h, mi, s, f(frac));
                Value::DateTime(dt(
                    col,
                    us,
                    format_args!("{y}-{mo}-{d} {h}:{mi}:{s}.{frac}"),
                )?)
            }
        }
        T_TIMESTAMP => {
            // 4 bytes: seconds < 2^32, times 10^6 < 2^63.
            let b = take(buf, p, 4)?;
            let s = i64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            if s == 0 {
                zero_date(w, &col.name)
            } else {
                Value::Timestamp(s * 1_000_000)
            }
        }
        T_TIMESTAMP2 => {
            let s = be_i64(take(buf, p, 4)?)?;
            let frac = read_frac(buf, p, c.len).map_err(|e| bad_value(col, e))?;
            if s == 0 && frac == 0 {
                zero_date(w, &col.name)
            } else {
                Value::Timestamp(s * 1_000_000 + frac)
            }
        }
        T_YEAR => {
            let y = i32::from(take(buf, p, 1)?[0]);
            Value::Year(if y == 0 { 0 } else { 1900 + y })
        }
        other => {
            return Err(bad_value(
                col,
                format_args!("cannot decode column type {other}"),
            ))
        }
    })
}

static MISSING_COLUMNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A row image without some of the table's columns: they are captured as NULL, which is not
/// their value. MariaDB writes UPDATE images without generated (VIRTUAL/PERSISTENT) columns
/// even with `binlog_row_image=FULL` (README, Known limits); `binlog_row_image=MINIMAL/NOBLOB`
/// leaves out more. Never silent: a warning names table and columns (the first 20 such images,
/// then every power of two, with the running count).
fn warn_missing_columns(tv: &TableVersion, present: &[bool]) {
    let n = MISSING_COLUMNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    if n <= 20 || n.is_power_of_two() {
        let missing: Vec<&str> = tv
            .schema
            .columns
            .iter()
            .zip(present)
            .filter(|(_, p)| !**p)
            .map(|(c, _)| c.name.as_str())
            .collect();
        tracing::warn!(
            table = %tv.schema.id, columns = ?missing, images_so_far = n,
            "row image without these columns (MariaDB leaves generated columns out of UPDATE \
             images; binlog_row_image must be FULL): captured as NULL, not their value"
        );
    }
}

/// Decode one row image (null bitmap + values of the present columns) into `out`.
pub(crate) fn decode_image(
    tv: &TableVersion,
    present: &[bool],
    n_present: usize,
    buf: &[u8],
    p: &mut usize,
) -> Result<Vec<Value>, String> {
    if tv.schema.columns.len() != tv.cols.len() {
        return Err("table version: decoders and columns disagree".into());
    }
    if present.len() != tv.cols.len() {
        return Err(format!(
            "rows event has {} columns, its table map {}",
            present.len(),
            tv.cols.len()
        ));
    }
    if n_present == 0 {
        // Would decode nothing and consume nothing: the caller's loop would never end.
        return Err("row image without columns".into());
    }
    if n_present != present.len() {
        warn_missing_columns(tv, present);
    }
    let nb = n_present.div_ceil(8);
    let nulls = take(buf, p, nb)?;
    let w = WarnCtx {
        table: &tv.schema.id,
    };
    let mut out = Vec::with_capacity(tv.cols.len());
    let mut k = 0usize;
    for ((c, col), present) in tv
        .cols
        .iter()
        .zip(&tv.schema.columns)
        .zip(present.iter().copied())
    {
        if !present {
            out.push(Value::Null);
            continue;
        }
        let byte = nulls
            .get(k / 8)
            .ok_or_else(|| format!("null bitmap of {n_present} columns, column {k} present"))?;
        let is_null = byte >> (k % 8) & 1 == 1;
        k += 1;
        if is_null {
            out.push(Value::Null);
        } else {
            out.push(decode_value(c, col, buf, p, &w)?);
        }
    }
    Ok(out)
}

/// The floats of a MySQL VECTOR value (little-endian float32, as the binlog and the client
/// protocol both carry it). A length that is not a multiple of 4, or a NaN/infinity (which
/// MySQL refuses to store), is an error.
pub(crate) fn vector_floats(b: &[u8]) -> Result<Vec<f32>, String> {
    if !b.len().is_multiple_of(4) {
        return Err(format!("VECTOR of {} bytes (not a multiple of 4)", b.len()));
    }
    b.chunks_exact(4)
        .map(|c| {
            let f = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            if f.is_finite() {
                Ok(f)
            } else {
                Err(format!("VECTOR element {f}"))
            }
        })
        .collect()
}

/// MySQL binary JSON → text in MySQL's own spelling (`{"k": [1, 2]}`), so that streamed
/// values equal what a `SELECT` returns (see [`json`]).
pub(crate) fn jsonb_to_text(bytes: &[u8]) -> Result<String, String> {
    json::to_text(bytes).map_err(|e| format!("binary JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(bytes: &[u8], p: u32, s: u32) -> String {
        let mut q = 0;
        decode_decimal(bytes, &mut q, p, s).unwrap()
    }

    #[test]
    fn decimals() {
        // 1234567890.1234 as DECIMAL(14,4): example from the MySQL docs.
        assert_eq!(
            dec(&[0x81, 0x0D, 0xFB, 0x38, 0xD2, 0x04, 0xD2], 14, 4),
            "1234567890.1234"
        );
        // -1234567890.1234
        assert_eq!(
            dec(&[0x7E, 0xF2, 0x04, 0xC7, 0x2D, 0xFB, 0x2D], 14, 4),
            "-1234567890.1234"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2025, 9, 18), 20349);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }

    #[test]
    fn time2_negative() {
        // '-838:59:59.000' as TIME(3): packed hms for 838:59:59.
        let hms: i64 = (838 << 12) | (59 << 6) | 59;
        let int = -hms + 0x800000;
        let b = [(int >> 16) as u8, (int >> 8) as u8, int as u8, 0, 0];
        let mut p = 0;
        assert_eq!(time2_us(&b, &mut p, 3).unwrap(), -3_020_399_000_000);
    }

    #[test]
    fn mysql8_binary_json() {
        // {"a": [1, true]} in MySQL binary JSON.
        // small object, 1 element, size, key entry, value entry, key "a", array.
        let arr: Vec<u8> = vec![
            0x02, 0x00, // count 2
            0x0A, 0x00, // size 10
            0x05, 0x01, 0x00, // int16 1 inline
            0x04, 0x01, 0x00, // literal true
        ];
        let mut obj: Vec<u8> = vec![0x01, 0x00]; // count
        let size = 4 + 4 + 3 + 1 + arr.len();
        obj.extend_from_slice(&(size as u16).to_le_bytes());
        obj.extend_from_slice(&(11u16).to_le_bytes()); // key offset
        obj.extend_from_slice(&(1u16).to_le_bytes()); // key len
        obj.push(0x02); // small array
        obj.extend_from_slice(&(12u16).to_le_bytes()); // value offset
        obj.push(b'a');
        obj.extend_from_slice(&arr);
        let mut doc = vec![0x00u8]; // small object
        doc.extend_from_slice(&obj);
        assert_eq!(jsonb_to_text(&doc).unwrap(), r#"{"a": [1, true]}"#);
    }
}
