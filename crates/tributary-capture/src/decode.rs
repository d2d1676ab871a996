//! Binlog row-image decoding and TableMap → [`TableSchema`] translation.
//!
//! Rows events are decoded here directly from `rows_data` (not through mysql_common's
//! `BinlogRow`, which rebuilds column metadata for every row): one [`TableVersion`] per table
//! shape holds the per-column decoders and the shared `Arc<TableSchema>`, so the hot path
//! allocates only the values themselves.

use std::sync::Arc;

use mysql_async::binlog::events::{OptionalMetadataField, TableMapEvent};

use tributary_model::{Column, ColumnKind, TableId, TableSchema, Value};

/// Text handling of a character column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cs {
    Binary,
    Latin1,
    Utf8,
}

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

/// Bytes per character for a collation id (enough for max-length arithmetic).
pub(crate) fn mbmaxlen(cs: u16) -> u32 {
    match cs {
        63 => 1,
        5 | 8 | 15 | 31 | 47 | 48 | 49 | 94 | 11 | 65 => 1,
        33 | 83 | 192..=215 | 223 | 76 => 3,
        35 | 90 | 128..=151 | 159 => 2,
        _ => 4,
    }
}

pub(crate) fn charset_kind(cs: u16) -> Cs {
    match cs {
        63 => Cs::Binary,
        5 | 8 | 15 | 31 | 47 | 48 | 49 | 94 => Cs::Latin1,
        _ => Cs::Utf8,
    }
}

/// Resolve the real type and length of a `MYSQL_TYPE_STRING` column from its metadata.
fn string_real_type(meta: &[u8]) -> (u8, u32) {
    if meta.len() < 2 {
        return (T_STRING, 0);
    }
    let b0 = meta[0] as u32;
    let b1 = meta[1] as u32;
    if b0 == 0 {
        return (T_STRING, 0);
    }
    if (b0 & 0x30) != 0x30 {
        ((b0 | 0x30) as u8, b1 | (((b0 & 0x30) ^ 0x30) << 4))
    } else {
        (b0 as u8, b1)
    }
}

/// Build the table version described by a TableMap event.
pub(crate) fn table_version(
    tme: &TableMapEvent<'_>,
    raw: Vec<u8>,
    included: bool,
) -> Result<TableVersion, String> {
    let n = tme.columns_count() as usize;
    let mut types = Vec::with_capacity(n);
    let mut cols = Vec::with_capacity(n);
    // Pass 1: types and metadata.
    for i in 0..n {
        let raw_ty = tme
            .get_raw_column_type(i)
            .map_err(|e| format!("column {i}: {e}"))?
            .map(|t| t as u8)
            .ok_or_else(|| format!("column {i}: no type"))?;
        let meta = tme.get_column_metadata(i).unwrap_or(&[]);
        let m0 = meta.first().copied().unwrap_or(0) as u32;
        let m1 = meta.get(1).copied().unwrap_or(0) as u32;
        let (ty, len, aux) = match raw_ty {
            T_STRING => {
                let (rt, l) = string_real_type(meta);
                (rt, l, 0)
            }
            T_VARCHAR | T_VAR_STRING => (raw_ty, m0 | (m1 << 8), 0),
            T_NEWDECIMAL => (raw_ty, m0, m1),
            T_BIT => (raw_ty, m1, m0),
            T_BLOB | T_TINY_BLOB | T_MEDIUM_BLOB | T_LONG_BLOB | T_JSON | T_GEOMETRY => (
                if raw_ty == T_JSON || raw_ty == T_GEOMETRY {
                    raw_ty
                } else {
                    T_BLOB
                },
                m0,
                0,
            ),
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
    let mut default_cs: Option<u16> = None;
    let mut non_default: Vec<(u64, u16)> = Vec::new();
    let mut col_cs: Vec<u16> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut enums: Vec<Vec<String>> = Vec::new();
    let mut sets: Vec<Vec<String>> = Vec::new();
    let mut pk: Vec<usize> = Vec::new();
    for f in tme.iter_optional_meta() {
        let f = f.map_err(|e| format!("optional metadata: {e}"))?;
        match f {
            OptionalMetadataField::Signedness(bits) => {
                signed = bits.iter().by_vals().collect();
            }
            OptionalMetadataField::DefaultCharset(dc) => {
                default_cs = Some(dc.default_charset());
                for x in dc.iter_non_default() {
                    let x = x.map_err(|e| e.to_string())?;
                    non_default.push((x.column_index(), x.charset()));
                }
            }
            OptionalMetadataField::ColumnCharset(cc) => {
                for x in cc.iter_charsets() {
                    col_cs.push(x.map_err(|e| e.to_string())?);
                }
            }
            OptionalMetadataField::ColumnName(cn) => {
                for x in cn.iter_names() {
                    names.push(x.map_err(|e| e.to_string())?.name().into_owned());
                }
            }
            OptionalMetadataField::EnumStrValue(ev) => {
                for x in ev.iter_values() {
                    let x = x.map_err(|e| e.to_string())?;
                    enums.push(x.values().iter().map(|v| v.value().into_owned()).collect());
                }
            }
            OptionalMetadataField::SetStrValue(sv) => {
                for x in sv.iter_values() {
                    let x = x.map_err(|e| e.to_string())?;
                    sets.push(x.values().iter().map(|v| v.value().into_owned()).collect());
                }
            }
            OptionalMetadataField::SimplePrimaryKey(k) => {
                for x in k.iter_indexes() {
                    pk.push(x.map_err(|e| e.to_string())? as usize);
                }
            }
            OptionalMetadataField::PrimaryKeyWithPrefix(k) => {
                for x in k.iter_keys() {
                    pk.push(x.map_err(|e| e.to_string())?.column_index() as usize);
                }
            }
            _ => {}
        }
    }
    let has_names = names.len() == n;
    let nulls = tme.null_bitmask();
    let mut num_i = 0usize;
    let mut char_i = 0usize;
    let mut nd = non_default.iter().peekable();
    let mut enum_i = 0usize;
    let mut set_i = 0usize;
    let mut columns = Vec::with_capacity(n);
    for (i, c) in cols.iter_mut().enumerate() {
        if is_numeric(c.ty) {
            c.unsigned = signed.get(num_i).copied().unwrap_or(false);
            num_i += 1;
        }
        let mut charset: u16 = 0;
        if is_character(c.ty) {
            charset = if !col_cs.is_empty() {
                col_cs.get(char_i).copied().unwrap_or(45)
            } else if let Some(d) = default_cs {
                match nd.peek() {
                    Some((idx, cs)) if *idx as usize == char_i => {
                        let cs = *cs;
                        nd.next();
                        cs
                    }
                    _ => d,
                }
            } else {
                // No charset metadata: assume text (documented limit without metadata FULL).
                45
            };
            c.cs = charset_kind(charset);
            char_i += 1;
        }
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
                        max_len: Some(c.len / mbmaxlen(charset)),
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
            T_ENUM => {
                let allowed = enums.get(enum_i).cloned().unwrap_or_default();
                enum_i += 1;
                ColumnKind::Enum { allowed }
            }
            T_SET => {
                let allowed = sets.get(set_i).cloned().unwrap_or_default();
                set_i += 1;
                ColumnKind::Set { allowed }
            }
            T_DATE | T_NEWDATE => ColumnKind::Date,
            T_TIME => ColumnKind::Time { fsp: 0 },
            T_TIME2 => ColumnKind::Time { fsp: c.len as u8 },
            T_DATETIME => ColumnKind::DateTime { fsp: 0 },
            T_DATETIME2 => ColumnKind::DateTime { fsp: c.len as u8 },
            T_TIMESTAMP => ColumnKind::Timestamp { fsp: 0 },
            T_TIMESTAMP2 => ColumnKind::Timestamp { fsp: c.len as u8 },
            T_YEAR => ColumnKind::Year,
            other => return Err(format!("unsupported column type {other} in column {i}")),
        };
        let name = names
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("@{}", i + 1));
        let mut col = Column::new(name, kind);
        col.nullable = nulls.get(i).map(|b| *b).unwrap_or(true);
        columns.push(col);
    }
    let _ = types;
    let schema = TableSchema {
        id: TableId::new(tme.database_name(), tme.table_name()),
        columns,
        key: pk,
    };
    Ok(TableVersion {
        raw,
        schema: Arc::new(schema),
        cols,
        included,
        has_names,
    })
}

#[inline]
fn take<'a>(buf: &'a [u8], p: &mut usize, n: usize) -> Result<&'a [u8], String> {
    let s = buf
        .get(*p..*p + n)
        .ok_or_else(|| format!("row image truncated at {} (+{n})", *p))?;
    *p += n;
    Ok(s)
}

#[inline]
fn le(b: &[u8]) -> u64 {
    let mut v = 0u64;
    for (i, x) in b.iter().enumerate() {
        v |= (*x as u64) << (8 * i);
    }
    v
}

#[inline]
fn be(b: &[u8]) -> u64 {
    let mut v = 0u64;
    for x in b {
        v = (v << 8) | *x as u64;
    }
    v
}

pub(crate) use tributary_model::calendar::days_from_civil;

pub(crate) fn datetime_us(y: u32, mo: u32, d: u32, h: u32, mi: u32, s: u32, us: u32) -> i64 {
    let days = days_from_civil(y as i64, mo, d);
    ((days * 86400) + h as i64 * 3600 + mi as i64 * 60 + s as i64) * 1_000_000 + us as i64
}

fn read_frac(buf: &[u8], p: &mut usize, fsp: u32) -> Result<i64, String> {
    Ok(match fsp {
        1 | 2 => be(take(buf, p, 1)?) as i64 * 10_000,
        3 | 4 => be(take(buf, p, 2)?) as i64 * 100,
        5 | 6 => be(take(buf, p, 3)?) as i64,
        _ => 0,
    })
}

fn text(cs: Cs, b: &[u8]) -> String {
    match cs {
        Cs::Latin1 => b.iter().map(|&c| c as char).collect(),
        _ => match std::str::from_utf8(b) {
            Ok(s) => s.to_owned(),
            Err(_) => String::from_utf8_lossy(b).into_owned(),
        },
    }
}

/// Labels of a SET bitmap, comma-joined.
pub(crate) fn set_labels(allowed: &[String], bits: u64) -> String {
    let mut s = String::new();
    for (i, a) in allowed.iter().enumerate() {
        if i < 64 && bits & (1u64 << i) != 0 {
            if !s.is_empty() {
                s.push(',');
            }
            s.push_str(a);
        }
    }
    s
}

/// MySQL binary DECIMAL → exact plain-notation string (`-0.01`, `12345678.90`).
pub(crate) fn decode_decimal(
    buf: &[u8],
    p: &mut usize,
    precision: u32,
    scale: u32,
) -> Result<String, String> {
    const DIG2BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];
    let intg = precision.saturating_sub(scale) as usize;
    let (intg0, intg0x) = (intg / 9, intg % 9);
    let (frac0, frac0x) = (scale as usize / 9, scale as usize % 9);
    let size = intg0 * 4 + DIG2BYTES[intg0x] + frac0 * 4 + DIG2BYTES[frac0x];
    let src = take(buf, p, size)?;
    let mut b: [u8; 40] = [0; 40];
    if size > b.len() {
        return Err("decimal too large".into());
    }
    b[..size].copy_from_slice(src);
    let negative = b[0] & 0x80 == 0;
    b[0] ^= 0x80;
    if negative {
        for x in &mut b[..size] {
            *x = !*x;
        }
    }
    let mut q = 0usize;
    let mut int_part = String::new();
    if intg0x > 0 {
        let n = DIG2BYTES[intg0x];
        let v = be(&b[q..q + n]);
        q += n;
        if v != 0 {
            int_part.push_str(&v.to_string());
        }
    }
    for _ in 0..intg0 {
        let v = be(&b[q..q + 4]);
        q += 4;
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
    let mut out = String::with_capacity(int_part.len() + scale as usize + 2);
    if negative {
        out.push('-');
    }
    out.push_str(&int_part);
    if scale > 0 {
        out.push('.');
        for _ in 0..frac0 {
            let v = be(&b[q..q + 4]);
            q += 4;
            out.push_str(&format!("{v:09}"));
        }
        if frac0x > 0 {
            let n = DIG2BYTES[frac0x];
            let v = be(&b[q..q + n]);
            out.push_str(&format!("{v:0width$}", width = frac0x));
        }
    }
    Ok(out)
}

/// Signed microseconds of a packed TIME2 value.
fn time2_us(buf: &[u8], p: &mut usize, fsp: u32) -> Result<i64, String> {
    const OFS: i64 = 0x800000;
    let packed: i64 = match fsp {
        1 | 2 => {
            let mut int = be(take(buf, p, 3)?) as i64 - OFS;
            let mut frac = be(take(buf, p, 1)?) as i64;
            if int < 0 && frac != 0 {
                int += 1;
                frac -= 0x100;
            }
            (int << 24) + frac * 10_000
        }
        3 | 4 => {
            let mut int = be(take(buf, p, 3)?) as i64 - OFS;
            let mut frac = be(take(buf, p, 2)?) as i64;
            if int < 0 && frac != 0 {
                int += 1;
                frac -= 0x10000;
            }
            (int << 24) + frac * 100
        }
        5 | 6 => be(take(buf, p, 6)?) as i64 - 0x8000_0000_0000,
        _ => (be(take(buf, p, 3)?) as i64 - OFS) << 24,
    };
    let neg = packed < 0;
    let a = packed.unsigned_abs() as i64;
    let hms = a >> 24;
    let us = a & 0xFF_FFFF;
    let h = (hms >> 12) & 0x3FF;
    let m = (hms >> 6) & 0x3F;
    let s = hms & 0x3F;
    let v = (h * 3600 + m * 60 + s) * 1_000_000 + us;
    Ok(if neg { -v } else { v })
}

/// Context for warnings (zero dates).
pub(crate) struct WarnCtx<'a> {
    pub table: &'a TableId,
}

fn zero_date(w: &WarnCtx<'_>, col: &str) -> Value {
    tracing::warn!(table = %w.table, column = col, "zero date/time value captured as NULL");
    Value::Null
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
            Value::Int(if c.unsigned { b as i64 } else { b as i8 as i64 })
        }
        T_SHORT => {
            let v = le(take(buf, p, 2)?) as u16;
            Value::Int(if c.unsigned {
                v as i64
            } else {
                v as i16 as i64
            })
        }
        T_INT24 => {
            let v = le(take(buf, p, 3)?) as u32;
            Value::Int(if c.unsigned {
                v as i64
            } else {
                ((v << 8) as i32 >> 8) as i64
            })
        }
        T_LONG => {
            let v = le(take(buf, p, 4)?) as u32;
            Value::Int(if c.unsigned {
                v as i64
            } else {
                v as i32 as i64
            })
        }
        T_LONGLONG => {
            let v = le(take(buf, p, 8)?);
            if c.unsigned {
                Value::UInt(v)
            } else {
                Value::Int(v as i64)
            }
        }
        T_FLOAT => Value::Float(f32::from_bits(le(take(buf, p, 4)?) as u32)),
        T_DOUBLE => Value::Double(f64::from_bits(le(take(buf, p, 8)?))),
        T_NEWDECIMAL => Value::Decimal(decode_decimal(buf, p, c.len, c.aux)?),
        T_BIT => {
            let n = c.len as usize + usize::from(c.aux > 0);
            Value::Bits(be(take(buf, p, n)?))
        }
        T_VARCHAR | T_VAR_STRING | T_STRING => {
            let lb = if c.len < 256 { 1 } else { 2 };
            let n = le(take(buf, p, lb)?) as usize;
            let s = take(buf, p, n)?;
            if c.cs == Cs::Binary {
                let mut v = s.to_vec();
                if c.ty == T_STRING && v.len() < c.len as usize {
                    // BINARY(n) is zero-padded on read; the binlog strips the padding.
                    v.resize(c.len as usize, 0);
                }
                Value::Bytes(v)
            } else {
                Value::String(text(c.cs, s))
            }
        }
        T_BLOB | T_GEOMETRY => {
            let n = le(take(buf, p, c.len as usize)?) as usize;
            let s = take(buf, p, n)?;
            if c.cs == Cs::Binary || c.ty == T_GEOMETRY {
                Value::Bytes(s.to_vec())
            } else {
                Value::String(text(c.cs, s))
            }
        }
        T_JSON => {
            let n = le(take(buf, p, c.len as usize)?) as usize;
            let s = take(buf, p, n)?;
            Value::Json(jsonb_to_text(s)?)
        }
        T_ENUM => {
            let idx = le(take(buf, p, c.len as usize)?) as usize;
            let label = match &col.kind {
                ColumnKind::Enum { allowed } if idx > 0 => {
                    allowed.get(idx - 1).cloned().unwrap_or_default()
                }
                _ => String::new(),
            };
            Value::String(label)
        }
        T_SET => {
            let bits = le(take(buf, p, c.len as usize)?);
            match &col.kind {
                ColumnKind::Set { allowed } => Value::String(set_labels(allowed, bits)),
                _ => Value::String(String::new()),
            }
        }
        T_DATE | T_NEWDATE => {
            let v = le(take(buf, p, 3)?) as u32;
            let (d, m, y) = (v & 31, (v >> 5) & 15, v >> 9);
            if m == 0 || d == 0 {
                zero_date(w, &col.name)
            } else {
                Value::Date(days_from_civil(y as i64, m, d) as i32)
            }
        }
        T_TIME => {
            let v = le(take(buf, p, 3)?) as u32;
            let v = ((v << 8) as i32 >> 8) as i64;
            let a = v.abs();
            let us = ((a / 10000) * 3600 + (a / 100 % 100) * 60 + a % 100) * 1_000_000;
            Value::Time(if v < 0 { -us } else { us })
        }
        T_TIME2 => Value::Time(time2_us(buf, p, c.len)?),
        T_DATETIME => {
            let v = le(take(buf, p, 8)?);
            let (dp, tp) = (v / 1_000_000, v % 1_000_000);
            let (y, mo, d) = (
                (dp / 10000) as u32,
                (dp / 100 % 100) as u32,
                (dp % 100) as u32,
            );
            if mo == 0 || d == 0 {
                zero_date(w, &col.name)
            } else {
                Value::DateTime(datetime_us(
                    y,
                    mo,
                    d,
                    (tp / 10000) as u32,
                    (tp / 100 % 100) as u32,
                    (tp % 100) as u32,
                    0,
                ))
            }
        }
        T_DATETIME2 => {
            let int = be(take(buf, p, 5)?) as i64 - 0x80_0000_0000;
            let frac = read_frac(buf, p, c.len)?;
            let ymd = int >> 17;
            let ym = ymd >> 5;
            let hms = int % (1 << 17);
            let (d, mo, y) = ((ymd % 32) as u32, (ym % 13) as u32, (ym / 13) as u32);
            if mo == 0 || d == 0 {
                zero_date(w, &col.name)
            } else {
                Value::DateTime(datetime_us(
                    y,
                    mo,
                    d,
                    (hms >> 12) as u32,
                    ((hms >> 6) % 64) as u32,
                    (hms % 64) as u32,
                    frac as u32,
                ))
            }
        }
        T_TIMESTAMP => {
            let s = le(take(buf, p, 4)?) as i64;
            if s == 0 {
                zero_date(w, &col.name)
            } else {
                Value::Timestamp(s * 1_000_000)
            }
        }
        T_TIMESTAMP2 => {
            let s = be(take(buf, p, 4)?) as i64;
            let frac = read_frac(buf, p, c.len)?;
            if s == 0 && frac == 0 {
                zero_date(w, &col.name)
            } else {
                Value::Timestamp(s * 1_000_000 + frac)
            }
        }
        T_YEAR => {
            let y = take(buf, p, 1)?[0] as i32;
            Value::Year(if y == 0 { 0 } else { 1900 + y })
        }
        other => return Err(format!("cannot decode column type {other}")),
    })
}

/// Decode one row image (null bitmap + values of the present columns) into `out`.
pub(crate) fn decode_image(
    tv: &TableVersion,
    present: &[bool],
    n_present: usize,
    buf: &[u8],
    p: &mut usize,
) -> Result<Vec<Value>, String> {
    let nb = n_present.div_ceil(8);
    let nulls = take(buf, p, nb)?;
    let w = WarnCtx {
        table: &tv.schema.id,
    };
    let mut out = Vec::with_capacity(tv.cols.len());
    let mut k = 0usize;
    for (i, c) in tv.cols.iter().enumerate() {
        if !present.get(i).copied().unwrap_or(false) {
            out.push(Value::Null);
            continue;
        }
        let is_null = nulls[k / 8] >> (k % 8) & 1 == 1;
        k += 1;
        if is_null {
            out.push(Value::Null);
        } else {
            out.push(decode_value(c, &tv.schema.columns[i], buf, p, &w)?);
        }
    }
    Ok(out)
}

/// MySQL 8 binary JSON → text in MySQL's own spelling (`{"k": [1, 2]}`), so that streamed
/// values equal what a `SELECT` returns.
pub(crate) fn jsonb_to_text(bytes: &[u8]) -> Result<String, String> {
    use mysql_common::binlog::jsonb;
    use mysql_common::io::ParseBuf;
    if bytes.is_empty() {
        return Ok("null".into());
    }
    let v: jsonb::Value<'_> = ParseBuf(bytes)
        .parse(())
        .map_err(|e| format!("binary JSON: {e}"))?;
    let j: serde_json::Value =
        serde_json::Value::try_from(v).map_err(|e| format!("binary JSON: {e}"))?;
    let mut s = String::new();
    mysql_json_text(&j, &mut s);
    Ok(s)
}

fn mysql_json_text(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                mysql_json_text(x, out);
            }
            out.push(']');
        }
        serde_json::Value::Object(o) => {
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push_str(": ");
                mysql_json_text(x, out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
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
