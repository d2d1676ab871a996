//! Source names → PostgreSQL identifiers: one deterministic rule, recorded.
//!
//! MySQL allows 64-character identifiers (up to 256 bytes in utf8mb4), empty column names in
//! Debezium records, and any byte but NUL; PostgreSQL keeps 63 bytes of an identifier
//! (silently truncating longer ones — two names equal in their first 63 bytes then collide,
//! and a value written under the long name lands nowhere) and refuses NUL. Source columns
//! may also be named like tributary's own metadata columns (`change_type`, `_op`,
//! `valid_to`, …), which would put two values in one column.
//!
//! **The rule** ([`pg_ident`]): a name is used as it is when it is 1–63 bytes, holds no NUL
//! and is not reserved (a metadata column of that table). Otherwise it becomes
//! `<prefix>_<h>` where `h` is the first 8 hex digits of XXH3-64 of the whole source name
//! and `prefix` the longest prefix of the name (NULs removed) that keeps the result within
//! 63 bytes — so it is stable across runs, processes and versions, readable, and two long
//! names with a common prefix get different identifiers. A mapped name that still collides
//! (with another column or a reserved name) is a definite error naming both columns; the
//! table's records are then dead-lettered, never written to the wrong column.
//!
//! Table and schema names follow the same rule (with nothing reserved): a 60-byte source
//! table gets `<prefix>_<h>` for `<table>_current`.
//!
//! Every source column whose warehouse name differs from its source name is recorded in
//! `<control schema>.columns` (source table, exact source name bytes, printable source
//! name, warehouse name, why), which is how a later batch, `status`, `verify` or a human
//! resolves one from the other.

use xxhash_rust::xxh3::xxh3_64;

/// PostgreSQL's identifier limit (NAMEDATALEN - 1), in bytes.
pub const MAX_IDENT_BYTES: usize = 63;
/// `_` + 8 hex digits.
const SUFFIX_BYTES: usize = 9;

/// Why a name was mapped (stored in the control table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapped {
    /// Used as it is.
    Same,
    /// Renamed by the configuration (`rename`).
    Config,
    /// Longer than 63 bytes.
    TooLong,
    /// Empty or holding a NUL byte.
    Unrepresentable,
    /// Equal to a metadata column of the table.
    Reserved,
    /// Kept after the source dropped the column (`on_drop_column = "keep"`, see `ddl.rs`).
    Dropped,
}

impl Mapped {
    pub fn as_str(self) -> &'static str {
        match self {
            Mapped::Same => "same",
            Mapped::Config => "config rename",
            Mapped::TooLong => "longer than 63 bytes",
            Mapped::Unrepresentable => "empty or holds a NUL byte",
            Mapped::Reserved => "named like a metadata column",
            Mapped::Dropped => "dropped in the source, kept",
        }
    }
}

/// The warehouse identifier for `name` (see the module docs), and why.
pub fn pg_ident(name: &str, reserved: impl Fn(&str) -> bool) -> (String, Mapped) {
    let why = if name.is_empty() || name.contains('\0') {
        Mapped::Unrepresentable
    } else if name.len() > MAX_IDENT_BYTES {
        Mapped::TooLong
    } else if reserved(name) {
        Mapped::Reserved
    } else {
        return (name.to_string(), Mapped::Same);
    };
    (hashed(name), why)
}

/// A table or schema name: the same rule, nothing reserved.
pub fn pg_relation_name(name: &str) -> String {
    pg_ident(name, |_| false).0
}

fn hashed(name: &str) -> String {
    let h = xxh3_64(name.as_bytes()) >> 32;
    let mut prefix = String::new();
    for ch in name.chars().filter(|&c| c != '\0') {
        if prefix.len() + ch.len_utf8() > MAX_IDENT_BYTES - SUFFIX_BYTES {
            break;
        }
        prefix.push(ch);
    }
    format!("{prefix}_{h:08x}")
}

/// The recorded source column → warehouse column names of source table `source`
/// (`<db>.<table>`): only columns whose names differ (see the module docs).
pub async fn load_column_names(
    client: &tokio_postgres::Client,
    control_schema: &str,
    source: &str,
) -> Result<std::collections::HashMap<String, String>, crate::ApplyError> {
    let cs = crate::config::ident(control_schema);
    let rows = client
        .query(
            &format!("SELECT source_column, target_column FROM {cs}.columns WHERE source = $1"),
            &[&source],
        )
        .await
        .map_err(|e| crate::pg_err("reading the column name mapping", e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let bytes: Vec<u8> = r.get(0);
            (String::from_utf8_lossy(&bytes).into_owned(), r.get(1))
        })
        .collect())
}

/// A source name as a human reads it in the control table (NUL shown as `\0`).
pub fn printable(name: &str) -> String {
    name.replace('\0', "\\0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_plain_names_are_kept() {
        assert_eq!(
            pg_ident("balance", |_| false),
            ("balance".into(), Mapped::Same)
        );
        let n63 = "a".repeat(63);
        assert_eq!(pg_ident(&n63, |_| false).0, n63);
    }

    #[test]
    fn long_names_fit_and_stay_distinct() {
        let a = format!("{}x", "a".repeat(63));
        let b = format!("{}y", "a".repeat(63));
        let (ma, why) = pg_ident(&a, |_| false);
        let (mb, _) = pg_ident(&b, |_| false);
        assert_eq!(why, Mapped::TooLong);
        assert!(ma.len() <= 63 && mb.len() <= 63);
        assert_ne!(ma, mb);
        assert!(ma.starts_with(&"a".repeat(54)));
        // Deterministic.
        assert_eq!(pg_ident(&a, |_| false).0, ma);
    }

    #[test]
    fn multibyte_names_are_cut_on_a_char_boundary() {
        let n = "가".repeat(30); // 90 bytes
        let (m, _) = pg_ident(&n, |_| false);
        assert!(m.len() <= 63, "{m}");
        assert!(m.starts_with("가"));
    }

    #[test]
    fn empty_nul_and_reserved_names_are_mapped() {
        let (e, why) = pg_ident("", |_| false);
        assert_eq!(why, Mapped::Unrepresentable);
        assert!(!e.is_empty() && e.len() == 9);
        let (n, _) = pg_ident("a\0b", |_| false);
        assert!(!n.contains('\0') && n.starts_with("ab_"));
        assert_ne!(n, pg_ident("ab", |_| false).0);
        let (r, why) = pg_ident("_op", |s| s == "_op");
        assert_eq!(why, Mapped::Reserved);
        assert!(r.starts_with("_op_") && r != "_op");
    }
}
