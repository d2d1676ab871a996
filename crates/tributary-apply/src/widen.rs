//! Source column type changes (`MODIFY`/`CHANGE … <type>`) followed by the warehouse: the
//! PostgreSQL type that holds every value of the column's old *and* new source type.
//!
//! A change event carries the definition of its table at its position, so a batch after an
//! `ALTER TABLE … MODIFY n BIGINT` shows `n` as a 64-bit integer while the warehouse column is
//! still `integer`. [`widen`] answers with the smallest type (of the ones tributary writes) that
//! holds both, or `None` when the warehouse type already holds the new one — so a *narrowing*
//! in the source never narrows the warehouse (values written before stay as they were, no
//! value is lost) and a widening is applied before the first wider value is written:
//! * integers: `smallint` → `integer` → `bigint` → `numeric(20,0)` (BIGINT UNSIGNED), and into
//!   `numeric(p,s)` with enough integer digits;
//! * `numeric(p,s)` → the precision and scale that hold both (over 1000 digits: `numeric`);
//! * `real` → `double precision` (or `numeric` with a 64-bit integer);
//! * `timestamp(p)` / `timestamptz(p)` → the larger fractional precision; `date` →
//!   `timestamp`; `bit(n)` → the longer one;
//! * any other change of family (INT → VARCHAR, JSON → TEXT, …) → `text`, which holds the text
//!   form of every value; text ↔ binary → `bytea`.
//!
//! `USING` casts for each are lossless ([`using`]); PostgreSQL rewrites the table (this is the
//! cost a type change has in every warehouse).

use crate::pgtype::PgType;

/// Decimal digits left of the point an integer type needs.
fn int_digits(t: &PgType) -> Option<u32> {
    match t {
        PgType::Int2 => Some(5),
        PgType::Int4 => Some(10),
        PgType::Int8 => Some(19),
        _ => None,
    }
}

fn rank(t: &PgType) -> Option<u8> {
    match t {
        PgType::Int2 => Some(1),
        PgType::Int4 => Some(2),
        PgType::Int8 => Some(3),
        _ => None,
    }
}

/// Maximum `numeric` precision PostgreSQL accepts in a typmod.
const NUMERIC_MAX_PRECISION: u32 = 1000;

fn numeric(int: u32, scale: u32) -> PgType {
    if int + scale > NUMERIC_MAX_PRECISION {
        PgType::Numeric(None)
    } else {
        PgType::Numeric(Some((int + scale, scale)))
    }
}

/// The type holding `old`'s and `new`'s values, when `old` does not already hold `new`'s.
pub(crate) fn widen(old: &PgType, new: &PgType) -> Option<PgType> {
    use PgType::*;
    if old == new {
        return None;
    }
    let w = match (old, new) {
        // Text already holds everything tributary writes as text.
        (Text | Varchar(_), Text | Varchar(_)) => return None,
        (Text | Varchar(_), Bytea) => Bytea,
        (Text | Varchar(_), _) => return None,
        (a, b) if rank(a).is_some() && rank(b).is_some() => {
            if rank(a) >= rank(b) {
                return None;
            }
            b.clone()
        }
        (Numeric(None), b) if int_digits(b).is_some() || matches!(b, Numeric(_)) => return None,
        (Numeric(Some((p, s))), b) if int_digits(b).is_some() => {
            let need = int_digits(b).unwrap();
            if p.saturating_sub(*s) >= need {
                return None;
            }
            numeric(need, *s)
        }
        (a, Numeric(Some((p, s)))) if int_digits(a).is_some() => {
            numeric(int_digits(a).unwrap().max(p.saturating_sub(*s)), *s)
        }
        (a, Numeric(None)) if int_digits(a).is_some() => Numeric(None),
        (Numeric(Some((p1, s1))), Numeric(Some((p2, s2)))) => {
            let (int, scale) = (
                p1.saturating_sub(*s1).max(p2.saturating_sub(*s2)),
                *s1.max(s2),
            );
            if int == p1.saturating_sub(*s1) && scale == *s1 {
                return None;
            }
            numeric(int, scale)
        }
        (Numeric(Some(_)), Numeric(None)) => Numeric(None),
        (Float4, Float8) => Float8,
        (Float8, Float4) => return None,
        (Float4 | Float8, Int2 | Int4) => return Some(Float8).filter(|_| *old == Float4),
        (Int2 | Int4, Float4 | Float8) => Float8,
        (Float4 | Float8, Int8 | Numeric(_)) | (Int8 | Numeric(_), Float4 | Float8) => {
            Numeric(None)
        }
        (Timestamp(a), Timestamp(b)) => {
            if a >= b {
                return None;
            }
            Timestamp(*b)
        }
        (Timestamptz(a), Timestamptz(b)) => {
            if a >= b {
                return None;
            }
            Timestamptz(*b)
        }
        (Date, Timestamp(p)) => Timestamp(*p),
        (Timestamp(_), Date) | (Timestamptz(_), Date) => return None,
        (Bit { len: a, .. }, Bit { len: b, varying }) => {
            if a >= b {
                return None;
            }
            Bit {
                len: *b,
                varying: *varying,
            }
        }
        (Jsonb, Json) | (Json, Jsonb) => return None,
        (Bytea, Text | Varchar(_)) => return None,
        _ => Text,
    };
    Some(w)
}

/// The `USING` expression converting column `col` (an identifier) from `old` to `new`.
pub(crate) fn using(col: &str, old: &PgType, new: &PgType) -> String {
    match (old, new) {
        (PgType::Text | PgType::Varchar(_), PgType::Bytea) => format!("convert_to({col}, 'UTF8')"),
        (PgType::Bit { .. }, PgType::Text) => format!("{col}::text"),
        (PgType::Bool, PgType::Text) => format!("CASE WHEN {col} THEN '1' ELSE '0' END"),
        _ => format!("{col}::{}", new.ddl()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PgType::*;

    #[test]
    fn widenings() {
        assert_eq!(widen(&Int4, &Int8), Some(Int8));
        assert_eq!(
            widen(&Int8, &Int4),
            None,
            "a narrowing keeps the wider type"
        );
        assert_eq!(
            widen(&Int8, &Numeric(Some((20, 0)))),
            Some(Numeric(Some((20, 0))))
        );
        assert_eq!(
            widen(&Numeric(Some((10, 2))), &Numeric(Some((20, 4)))),
            Some(Numeric(Some((20, 4))))
        );
        assert_eq!(
            widen(&Numeric(Some((10, 2))), &Numeric(Some((8, 4)))),
            Some(Numeric(Some((12, 4))))
        );
        assert_eq!(
            widen(&Numeric(Some((20, 4))), &Numeric(Some((10, 2)))),
            None
        );
        assert_eq!(
            widen(&Numeric(Some((5, 2))), &Int4),
            Some(Numeric(Some((12, 2))))
        );
        assert_eq!(
            widen(&Int4, &Numeric(Some((5, 2)))),
            Some(Numeric(Some((12, 2))))
        );
        assert_eq!(widen(&Float4, &Float8), Some(Float8));
        assert_eq!(
            widen(&Timestamp(Some(0)), &Timestamp(Some(6))),
            Some(Timestamp(Some(6)))
        );
        assert_eq!(widen(&Date, &Timestamp(Some(0))), Some(Timestamp(Some(0))));
        assert_eq!(widen(&Int4, &Text), Some(Text));
        assert_eq!(widen(&Text, &Int4), None);
        assert_eq!(widen(&Jsonb, &Text), Some(Text));
        assert_eq!(widen(&Text, &Bytea), Some(Bytea));
        assert_eq!(
            widen(&Numeric(Some((999, 0))), &Numeric(Some((10, 5)))),
            Some(Numeric(None))
        );
    }

    #[test]
    fn using_casts() {
        assert_eq!(using("\"a\"", &Int4, &Int8), "\"a\"::bigint");
        assert_eq!(using("a", &Text, &Bytea), "convert_to(a, 'UTF8')");
    }
}
