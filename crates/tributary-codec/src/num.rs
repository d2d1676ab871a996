//! Exact numeric and calendar helpers shared by `decode`, `resolve` and `encode`.
//!
//! Owns: Connect `Decimal` bytes (big-endian two's-complement unscaled integer) ↔ plain
//! decimal text, `io.debezium.data.Bits` little-endian bytes ↔ `u64`, civil-date
//! arithmetic (days since 1970-01-01 ↔ y/m/d), `ZonedTimestamp` formatting/parsing, and
//! Java's `Float.toString`/`Double.toString` number spelling (what Kafka's JsonConverter writes).
//!
//! Why it is correct: decimals never go through floating point — values up to 16 bytes use
//! `u128` exactly, larger ones `num-bigint` (divide-and-conquer base conversion:
//! subquadratic, a 61 KB value converts in ~25 ms). Two's complement follows
//! `java.math.BigInteger.toByteArray` (minimal length, sign byte added only when needed; zero is
//! one `0x00` byte), which is what Debezium writes.
//!
//! ## Limits (PostgreSQL `numeric`, checked before any work proportional to them)
//! Every decimal that leaves this module fits PostgreSQL's `numeric`: at most
//! [`MAX_INT_DIGITS`] (131,072) digits before the point and [`MAX_SCALE`] (16,383) after it.
//! So an unscaled Connect value is at most [`MAX_UNSCALED_BYTES`] bytes, a `scale` parameter at
//! most 16,383, an exponent (`1e999999999`) is refused before it is expanded. A value outside
//! these limits is an error naming what was wrong, never a truncated, wrapped or rounded value.
//! Calendar parsing uses checked arithmetic: an out-of-range year, hour or offset is `None`.
//! Calendar conversion uses Howard Hinnant's proleptic-Gregorian `days_from_civil` algorithm,
//! exact for every representable year.

use num_bigint::{BigInt, BigUint, Sign};

/// Most digits before the decimal point PostgreSQL `numeric` stores (weight ≤ 32767 base-10000
/// groups).
pub const MAX_INT_DIGITS: usize = 131_072;
/// Most digits after the decimal point PostgreSQL `numeric` stores (`dscale` is 14 bits).
pub const MAX_SCALE: u32 = 16_383;
/// Largest precision a PostgreSQL `numeric(p,s)` column can declare.
pub const MAX_DECLARED_PRECISION: u32 = 1_000;
/// Most digits of an unscaled value (integer digits + scale).
pub const MAX_UNSCALED_DIGITS: usize = MAX_INT_DIGITS + MAX_SCALE as usize;
/// Most bytes of a minimal two's-complement unscaled value that can still fit
/// (`10^147455 − 1` takes 61,230 bytes). Longer values are refused before conversion.
pub const MAX_UNSCALED_BYTES: usize = 61_230;

/// `scale` as a `usize` (lossless on every supported target).
fn us(x: u32) -> usize {
    usize::try_from(x).unwrap_or(usize::MAX)
}

fn check_scale(scale: u32) -> Result<(), String> {
    if scale > MAX_SCALE {
        return Err(format!(
            "scale {scale} exceeds PostgreSQL numeric's limit of {MAX_SCALE} digits after the point"
        ));
    }
    Ok(())
}

/// Big-endian two's-complement bytes without redundant leading sign bytes (`00 00 01` → `01`,
/// `FF FF 80` → `80`).
fn strip_sign_bytes(bytes: &[u8]) -> &[u8] {
    let mut b = bytes;
    while b.len() > 1 && ((b[0] == 0 && b[1] & 0x80 == 0) || (b[0] == 0xFF && b[1] & 0x80 != 0)) {
        b = &b[1..];
    }
    b
}

/// Big-endian two's-complement integer → (negative, decimal digits without sign, `"0"` for
/// zero). The caller bounds the length.
fn twos_to_digits(bytes: &[u8]) -> (bool, String) {
    let neg = bytes.first().is_some_and(|b| b & 0x80 != 0);
    if bytes.len() <= 16 {
        let mut v: i128 = if neg { -1 } else { 0 };
        for &b in bytes {
            v = (v << 8) | i128::from(b);
        }
        return (neg, v.unsigned_abs().to_string());
    }
    let v = BigInt::from_signed_bytes_be(bytes);
    (v.sign() == Sign::Minus, v.magnitude().to_str_radix(10))
}

/// Places a decimal point `scale` digits from the right of `digits` (plain notation, as
/// `BigDecimal.toPlainString`: `1`, scale 2 → `0.01`; `0`, scale 2 → `0.00`).
fn place_point(neg: bool, digits: &str, scale: u32) -> String {
    let scale = us(scale);
    let mut out = String::with_capacity(digits.len().max(scale) + 3);
    if neg && digits.bytes().any(|b| b != b'0') {
        out.push('-');
    }
    if scale == 0 {
        out.push_str(digits);
    } else if digits.len() > scale {
        let (i, f) = digits.split_at(digits.len() - scale);
        out.push_str(i);
        out.push('.');
        out.push_str(f);
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', scale - digits.len()));
        out.push_str(digits);
    }
    out
}

/// Connect `Decimal` bytes (big-endian two's-complement unscaled value) → plain decimal text.
/// Empty input is zero. Errors (naming the limit) when the scale or the value does not fit
/// PostgreSQL `numeric` (see the module docs); time is subquadratic in the input length and
/// the input length is bounded by [`MAX_UNSCALED_BYTES`] before any conversion.
pub fn unscaled_bytes_to_decimal(bytes: &[u8], scale: u32) -> Result<String, String> {
    check_scale(scale)?;
    let bytes = strip_sign_bytes(bytes);
    if bytes.len() > MAX_UNSCALED_BYTES {
        return Err(format!(
            "unscaled value of {} bytes has more than the {MAX_UNSCALED_DIGITS} digits \
             PostgreSQL numeric holds (at most {MAX_UNSCALED_BYTES} bytes)",
            bytes.len()
        ));
    }
    let (neg, digits) = twos_to_digits(bytes);
    let int_digits = if digits == "0" {
        0
    } else {
        digits.len().saturating_sub(us(scale))
    };
    if int_digits > MAX_INT_DIGITS {
        return Err(format!(
            "{int_digits} digits before the decimal point: PostgreSQL numeric holds at most \
             {MAX_INT_DIGITS}"
        ));
    }
    Ok(place_point(neg, &digits, scale))
}

/// (negative, magnitude) → minimal big-endian two's complement (`BigInteger.toByteArray`).
pub fn magnitude_to_twos(neg: bool, mag: &[u8]) -> Vec<u8> {
    let sign = if neg { Sign::Minus } else { Sign::Plus };
    BigInt::from_bytes_be(sign, mag).to_signed_bytes_be()
}

/// A parsed plain/scientific decimal: sign, all significant digits and the power of ten of
/// the last digit (`12.34` → digits `1234`, exp −2).
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedDecimal {
    pub neg: bool,
    pub digits: String,
    pub exp: i64,
}

/// Parses `-12.340`, `+5`, `.5`, `1E+3`, `1.5e-2`. Returns `None` for anything else
/// (including an exponent outside `i64`). Linear in the input; never expands the exponent.
pub fn parse_decimal(s: &str) -> Option<ParsedDecimal> {
    let s = s.trim();
    let (neg, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (mant, exp) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (ip, fp) = match mant.find('.') {
        Some(i) => (&mant[..i], &mant[i + 1..]),
        None => (mant, ""),
    };
    if ip.is_empty() && fp.is_empty() {
        return None;
    }
    if !ip.bytes().all(|b| b.is_ascii_digit()) || !fp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits = String::with_capacity(ip.len() + fp.len());
    digits.push_str(ip);
    digits.push_str(fp);
    Some(ParsedDecimal {
        neg,
        digits,
        exp: exp.checked_sub(i64::try_from(fp.len()).ok()?)?,
    })
}

impl ParsedDecimal {
    /// The digits without leading zeros (empty for zero).
    fn significant(&self) -> &str {
        self.digits.trim_start_matches('0')
    }

    /// Unscaled digits at `scale` (pads with zeros; extra digits are rounded half-up, as
    /// MySQL does when storing into a DECIMAL of that scale). `None` when the result would
    /// have more than [`MAX_UNSCALED_DIGITS`] digits (nothing that long is allocated).
    pub fn digits_at_scale(&self, scale: u32) -> Option<String> {
        let sig = self.significant();
        if sig.is_empty() {
            return Some("0".into());
        }
        let shift = self.exp.checked_add(i64::from(scale))?;
        if shift >= 0 {
            let pad = usize::try_from(shift).ok()?;
            if sig.len().checked_add(pad)? > MAX_UNSCALED_DIGITS {
                return None;
            }
            let mut d = String::with_capacity(sig.len() + pad);
            d.push_str(sig);
            d.extend(std::iter::repeat_n('0', pad));
            return Some(d);
        }
        let drop = usize::try_from(shift.unsigned_abs()).unwrap_or(usize::MAX);
        if drop > sig.len() {
            return Some("0".into());
        }
        let (keep, dropped) = sig.split_at(sig.len() - drop);
        if keep.len() > MAX_UNSCALED_DIGITS {
            return None;
        }
        let mut keep: Vec<u8> = if keep.is_empty() {
            b"0".to_vec()
        } else {
            keep.as_bytes().to_vec()
        };
        if dropped.as_bytes()[0] >= b'5' {
            let mut i = keep.len();
            loop {
                if i == 0 {
                    keep.insert(0, b'1');
                    break;
                }
                i -= 1;
                if keep[i] == b'9' {
                    keep[i] = b'0';
                } else {
                    keep[i] += 1;
                    break;
                }
            }
        }
        String::from_utf8(keep).ok()
    }

    /// Plain notation with exactly `max(0, -exp)` fractional digits (`BigDecimal.toPlainString`),
    /// or an error when that does not fit PostgreSQL `numeric` (more than [`MAX_SCALE`]
    /// fractional or [`MAX_INT_DIGITS`] integer digits). Nothing over the limits is allocated.
    pub fn to_plain(&self) -> Result<String, String> {
        let scale = if self.exp < 0 {
            u32::try_from(self.exp.unsigned_abs())
                .ok()
                .filter(|s| *s <= MAX_SCALE)
                .ok_or_else(|| {
                    format!(
                        "{} digits after the decimal point: PostgreSQL numeric holds at most \
                         {MAX_SCALE}",
                        self.exp.unsigned_abs()
                    )
                })?
        } else {
            0
        };
        let sig_len = self.significant().len();
        // Integer digits = significant digits + exponent (when positive).
        let int_digits = i128::try_from(sig_len).unwrap_or(i128::MAX) + i128::from(self.exp);
        if sig_len > 0 && int_digits > MAX_INT_DIGITS as i128 {
            return Err(format!(
                "{int_digits} digits before the decimal point: PostgreSQL numeric holds at most \
                 {MAX_INT_DIGITS}"
            ));
        }
        let digits = self
            .digits_at_scale(scale)
            .ok_or_else(|| format!("more than {MAX_UNSCALED_DIGITS} digits"))?;
        let trimmed = digits.trim_start_matches('0');
        let digits = if trimmed.is_empty() { "0" } else { trimmed };
        Ok(place_point(self.neg, digits, scale))
    }
}

/// Plain decimal text → Connect `Decimal` bytes at `scale`. `None` when the text is not a
/// number or the value does not fit the limits of the module docs.
pub fn decimal_to_unscaled_bytes(text: &str, scale: u32) -> Option<Vec<u8>> {
    check_scale(scale).ok()?;
    let p = parse_decimal(text)?;
    let digits = p.digits_at_scale(scale)?;
    let mag = BigUint::parse_bytes(digits.as_bytes(), 10)?;
    let sign = if p.neg { Sign::Minus } else { Sign::Plus };
    Some(BigInt::from_biguint(sign, mag).to_signed_bytes_be())
}

/// Normalises decimal text to plain notation (exponents expanded, scale kept); an error says
/// why the text is not a number or does not fit PostgreSQL `numeric`.
pub fn plain_decimal_checked(text: &str) -> Result<String, String> {
    parse_decimal(text)
        .ok_or_else(|| "not a decimal number".to_string())?
        .to_plain()
}

/// [`plain_decimal_checked`] without the reason.
pub fn plain_decimal(text: &str) -> Option<String> {
    plain_decimal_checked(text).ok()
}

/// `u64` → Connect `Decimal` bytes (scale 0): what `bigint.unsigned.handling.mode=precise` writes.
pub fn u64_to_twos(v: u64) -> Vec<u8> {
    magnitude_to_twos(false, &v.to_be_bytes())
}

/// `io.debezium.data.Bits` bytes (little-endian) → value. Bytes beyond the 8th must be zero.
pub fn bits_from_le(bytes: &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if i >= 8 {
            if b != 0 {
                return None;
            }
            continue;
        }
        v |= u64::from(b) << (8 * i);
    }
    Some(v)
}

/// BIT(n) value → little-endian bytes, exactly `ceil(n/8)` long (Debezium pads to the width).
pub fn bits_to_le(v: u64, len_bits: u32) -> Vec<u8> {
    let n = (len_bits.max(1) as usize).div_ceil(8).min(8);
    v.to_le_bytes()[..n].to_vec()
}

pub use tributary_model::calendar::{civil_from_days, days_from_civil};

fn push_year(out: &mut String, y: i64) {
    use std::fmt::Write;
    if y > 9999 {
        let _ = write!(out, "+{y}");
    } else if y < 0 {
        let _ = write!(out, "-{:04}", -y);
    } else {
        let _ = write!(out, "{y:04}");
    }
}

/// Formats a UTC instant (µs since the epoch) the way Debezium's `ZonedTimestamp` does for
/// MySQL `TIMESTAMP(fsp)`: `fsp` 1..=6 → exactly that many fractional digits (Debezium passes
/// the column length as the fraction width); `None`/0 → `ISO_OFFSET_DATE_TIME`, i.e. no
/// fraction when it is zero, otherwise the fraction without trailing zeros. Zone is `Z`.
pub fn format_zoned(us: i64, fsp: Option<u8>) -> String {
    use std::fmt::Write;
    let secs = us.div_euclid(1_000_000);
    let frac = us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = String::with_capacity(32);
    push_year(&mut out, y);
    let _ = write!(
        out,
        "-{:02}-{:02}T{:02}:{:02}:{:02}",
        m,
        d,
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    );
    match fsp {
        Some(w @ 1..=6) => {
            let f = format!("{frac:06}");
            out.push('.');
            out.push_str(&f[..w as usize]);
        }
        _ => {
            if frac != 0 {
                let f = format!("{frac:06}");
                out.push('.');
                out.push_str(f.trim_end_matches('0'));
            }
        }
    }
    out.push('Z');
    out
}

fn parse_uint(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `.123456789` style fraction (without the dot) → microseconds (truncated beyond µs).
fn fraction_us(f: &str) -> Option<i64> {
    if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut us = 0i64;
    for i in 0..6 {
        us = us * 10
            + f.as_bytes()
                .get(i)
                .map(|b| i64::from(b - b'0'))
                .unwrap_or(0);
    }
    Some(us)
}

/// Largest year (either sign) the calendar parsers accept; PostgreSQL's own range is narrower
/// (dates to 5874897 AD, timestamps to 294276 AD) and is checked where values are written.
pub const MAX_YEAR: i64 = 9_999_999;

/// Longest date/time text the calendar parsers look at (`-9999999-12-31T23:59:59.999999999+18:00`
/// is 40 bytes); anything longer is not a date and is refused without scanning it.
const MAX_CALENDAR_TEXT: usize = 64;

/// `YYYY-MM-DD` → days since the epoch. `None` for a day the month does not have (no
/// `02-31` → `03-03` normalisation) or a year beyond [`MAX_YEAR`].
pub fn parse_date(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.len() > MAX_CALENDAR_TEXT {
        return None;
    }
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let mut it = body.splitn(3, '-');
    let y = parse_uint(it.next()?)?;
    let m = u32::try_from(parse_uint(it.next()?)?).ok()?;
    let d = u32::try_from(parse_uint(it.next()?)?).ok()?;
    if y > MAX_YEAR || !(1..=12).contains(&m) || d < 1 {
        return None;
    }
    let y = if neg { -y } else { y };
    let leap = y.rem_euclid(4) == 0 && (y.rem_euclid(100) != 0 || y.rem_euclid(400) == 0);
    let month_days = match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if d > month_days {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// `HH:MM[:SS[.ffffff]]` (hours may exceed 24, leading `-` allowed: MySQL TIME) → µs.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.len() > MAX_CALENDAR_TEXT {
        return None;
    }
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let (hms, frac) = match body.find('.') {
        Some(i) => (&body[..i], fraction_us(&body[i + 1..])?),
        None => (body, 0),
    };
    let mut it = hms.split(':');
    let h = parse_uint(it.next()?)?;
    let m = parse_uint(it.next()?)?;
    let sec = match it.next() {
        Some(x) => parse_uint(x)?,
        None => 0,
    };
    if it.next().is_some() || m > 59 || sec > 59 {
        return None;
    }
    let us = h
        .checked_mul(3600)?
        .checked_add(m * 60 + sec)?
        .checked_mul(1_000_000)?
        .checked_add(frac)?;
    Some(if neg { -us } else { us })
}

/// `YYYY-MM-DD[T| ]HH:MM[:SS[.f]][Z|±HH[:MM]]` → (µs since the epoch in the written wall
/// clock, offset seconds if a zone was given). A bare date is midnight.
pub fn parse_datetime(s: &str) -> Option<(i64, Option<i64>)> {
    let s = s.trim();
    if s.len() > MAX_CALENDAR_TEXT {
        return None;
    }
    let split = s.find(['T', 't', ' ']);
    let (date, rest) = match split {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    };
    let days = parse_date(date)?;
    let (time, offset) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, Some(0))
    } else if let Some(i) = rest.rfind(['+', '-']).filter(|&i| i > 0) {
        let (t, z) = rest.split_at(i);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let z = &z[1..];
        let (zh, zm) = match z.split_once(':') {
            Some((a, b)) => (parse_uint(a)?, parse_uint(b)?),
            None if z.len() == 4 => (parse_uint(z.get(..2)?)?, parse_uint(z.get(2..)?)?),
            None => (parse_uint(z)?, 0),
        };
        // java.time.ZoneOffset's range: ±18:00.
        if zh > 18 || zm > 59 {
            return None;
        }
        (t, Some(sign * (zh * 3600 + zm * 60)))
    } else {
        (rest, None)
    };
    let tod = if time.is_empty() {
        0
    } else {
        parse_time(time)?
    };
    if !(0..86_400_000_000).contains(&tod) {
        return None;
    }
    Some((days.checked_mul(86_400_000_000)?.checked_add(tod)?, offset))
}

/// ISO-8601 instant (`2038-01-19T03:14:07.999Z`, `…+09:00`) → µs since the epoch, UTC.
/// A value without a zone is read as UTC.
pub fn parse_zoned(s: &str) -> Option<i64> {
    let (local, off) = parse_datetime(s)?;
    local.checked_sub(off.unwrap_or(0) * 1_000_000)
}

/// Java's `Double.toString` / `Float.toString` spelling from Rust's shortest round-trip digits
/// (JDK ≥ 19 also prints the shortest digits): plain notation for 10⁻³ ≤ |x| < 10⁷ with at
/// least one fractional digit, otherwise `d.dddE±n`. `None` for NaN/∞ (not JSON).
fn java_spelling(sci: &str, is_zero: bool, neg_zero: bool) -> String {
    if is_zero {
        return if neg_zero {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let (neg, body) = match sci.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, sci),
    };
    let (mant, exp) = body
        .split_once('e')
        .expect("LowerExp output has an exponent");
    let exp: i32 = exp.parse().expect("exponent");
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let mut out = String::with_capacity(digits.len() + 8);
    if neg {
        out.push('-');
    }
    if (-3..7).contains(&exp) {
        if exp >= 0 {
            let ip = exp as usize + 1;
            if digits.len() <= ip {
                out.push_str(&digits);
                for _ in digits.len()..ip {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..ip]);
                out.push('.');
                out.push_str(&digits[ip..]);
            }
        } else {
            out.push_str("0.");
            for _ in 0..(-exp - 1) {
                out.push('0');
            }
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        out.push('.');
        if digits.len() > 1 {
            out.push_str(&digits[1..]);
        } else {
            out.push('0');
        }
        out.push('E');
        out.push_str(&exp.to_string());
    }
    out
}

/// `Double.toString(x)`; `None` for NaN and infinities.
pub fn java_double(x: f64) -> Option<String> {
    if !x.is_finite() {
        return None;
    }
    Some(java_spelling(
        &format!("{x:e}"),
        x == 0.0,
        x.is_sign_negative(),
    ))
}

/// `Float.toString(x)`; `None` for NaN and infinities.
pub fn java_float(x: f32) -> Option<String> {
    if !x.is_finite() {
        return None;
    }
    Some(java_spelling(
        &format!("{x:e}"),
        x == 0.0,
        x.is_sign_negative(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn b64(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    }

    #[test]
    fn decimals_from_golden_bytes() {
        assert_eq!(
            unscaled_bytes_to_decimal(&b64("SZYC0g=="), 2).unwrap(),
            "12345678.90"
        );
        assert_eq!(
            unscaled_bytes_to_decimal(&b64("AY7pD/bDc+DuDATVFQ=="), 10).unwrap(),
            "12345678901234567890.0123456789"
        );
        assert_eq!(unscaled_bytes_to_decimal(&b64("/w=="), 2).unwrap(), "-0.01");
        assert_eq!(unscaled_bytes_to_decimal(&b64("AA=="), 2).unwrap(), "0.00");
        assert_eq!(
            unscaled_bytes_to_decimal(&b64("AP//////////"), 0).unwrap(),
            "18446744073709551615"
        );
    }

    #[test]
    fn decimals_to_bytes_round_trip() {
        for (s, scale) in [
            ("12345678.90", 2),
            ("12345678901234567890.0123456789", 10),
            ("-0.01", 2),
            ("0.00", 2),
            ("-128", 0),
            ("128", 0),
            ("-99999999999999999999999999999999999999999999.123", 3),
            (
                "123456789012345678901234567890123456789012345678901234567890",
                0,
            ),
        ] {
            let b = decimal_to_unscaled_bytes(s, scale).unwrap();
            assert_eq!(unscaled_bytes_to_decimal(&b, scale).unwrap(), s, "{s}");
        }
        assert_eq!(decimal_to_unscaled_bytes("-0.01", 2).unwrap(), vec![0xFF]);
        assert_eq!(decimal_to_unscaled_bytes("0", 2).unwrap(), vec![0]);
        assert_eq!(u64_to_twos(u64::MAX), b64("AP//////////"));
        assert_eq!(u64_to_twos(1), b64("AQ=="));
        assert_eq!(decimal_to_unscaled_bytes("1.005", 2).unwrap(), vec![101]);
        assert_eq!(plain_decimal("1.5E+3").unwrap(), "1500");
        assert_eq!(plain_decimal("-1.50e-2").unwrap(), "-0.0150");
    }

    #[test]
    fn calendar_and_zoned() {
        assert_eq!(days_from_civil(2025, 9, 18), 20349);
        assert_eq!(civil_from_days(20349), (2025, 9, 18));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        let us = parse_zoned("2038-01-19T03:14:07.999Z").unwrap();
        assert_eq!(us, 2147483647999000);
        assert_eq!(format_zoned(us, Some(3)), "2038-01-19T03:14:07.999Z");
        assert_eq!(format_zoned(us, None), "2038-01-19T03:14:07.999Z");
        assert_eq!(format_zoned(1758160342000000, None), "2025-09-18T01:52:22Z");
        assert_eq!(
            format_zoned(1758160342100000, Some(3)),
            "2025-09-18T01:52:22.100Z"
        );
        assert_eq!(
            parse_zoned("2025-09-18T10:52:22+09:00").unwrap(),
            1758160342000000
        );
        assert_eq!(parse_time("-838:59:59.000").unwrap(), -3020399000000);
        assert_eq!(parse_time("12:34:56").unwrap(), 45296000000);
    }

    #[test]
    #[allow(clippy::approx_constant)]
    fn java_numbers() {
        assert_eq!(java_float(3.14).unwrap(), "3.14");
        assert_eq!(java_double(2.718281828459045).unwrap(), "2.718281828459045");
        assert_eq!(java_double(1.0).unwrap(), "1.0");
        assert_eq!(java_double(1e10).unwrap(), "1.0E10");
        assert_eq!(java_double(1.5e-5).unwrap(), "1.5E-5");
        assert_eq!(java_double(0.001).unwrap(), "0.001");
        assert_eq!(java_double(1234567.0).unwrap(), "1234567.0");
        assert_eq!(java_double(-0.0).unwrap(), "-0.0");
    }

    #[test]
    fn bits() {
        assert_eq!(bits_from_le(&b64("qgI=")).unwrap(), 682);
        assert_eq!(bits_to_le(682, 10), b64("qgI="));
        assert_eq!(bits_to_le(1, 10), vec![1, 0]);
    }
}
