//! # MySQL GTID sets in stored positions
//!
//! MySQL's executed-GTID set in its own text form — `uuid:1-5:7,uuid2:1-3:tag:1-2` (intervals per
//! source uuid, MySQL ≥ 8.3 tags as `:tag:` followed by that tag's intervals) — kept while
//! streaming so every checkpoint carries the set of transactions applied up to it
//! (`BinlogCheckpoint::gtid_set`), as MySQL's `gtid_executed` would say at that position.
//!
//! Why it is right: it starts from what the server says at the start position — the snapshot's
//! `Executed_Gtid_Set`, read under `FLUSH TABLES WITH READ LOCK` together with the file/position,
//! or the same row of `SHOW BINARY LOG STATUS` when streaming starts without a snapshot — or from
//! the stored checkpoint; then each GTID event (33, and 42 for tagged GTIDs) adds its transaction.
//! A checkpoint is only taken at a transaction boundary, after the transaction's GTID was added.
//! When the start set is unknown (a checkpoint stored before sets were kept) no set is stored:
//! a set missing earlier transactions would claim less than was applied.
//!
//! The text is canonical (uuids lower case and sorted, untagged intervals first, then tags in
//! order, adjacent intervals merged), so it compares equal to MySQL's own form after
//! `GTID_SUBSET` both ways; it is what `SET GLOBAL gtid_purged` / `START REPLICA ... GTID` accept.

use std::collections::BTreeMap;
use std::fmt;

/// `uuid → tag ("" = untagged) → sorted, merged [start, end] intervals`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GtidSet(BTreeMap<String, BTreeMap<String, Vec<(u64, u64)>>>);

impl GtidSet {
    /// Parse MySQL's text form (whitespace and newlines, as `SHOW BINARY LOG STATUS` prints
    /// them, are ignored). An empty text is the empty set.
    pub(crate) fn parse(s: &str) -> Result<GtidSet, String> {
        let mut set = GtidSet::default();
        let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        for part in clean.split(',').filter(|p| !p.is_empty()) {
            let mut it = part.split(':');
            let uuid = it.next().unwrap_or("").to_ascii_lowercase();
            if uuid.len() != 36
                || !uuid.chars().enumerate().all(|(i, c)| {
                    if [8, 13, 18, 23].contains(&i) {
                        c == '-'
                    } else {
                        c.is_ascii_hexdigit()
                    }
                })
            {
                return Err(format!("GTID set {s:?}: {uuid:?} is not a server uuid"));
            }
            let mut tag = String::new();
            let mut any = false;
            for tok in it {
                if tok.starts_with(|c: char| c.is_ascii_digit()) {
                    let (a, b) = match tok.split_once('-') {
                        Some((a, b)) => (a, b),
                        None => (tok, tok),
                    };
                    let (a, b): (u64, u64) = match (a.parse(), b.parse()) {
                        (Ok(a), Ok(b)) if a >= 1 && a <= b => (a, b),
                        _ => return Err(format!("GTID set {s:?}: bad interval {tok:?}")),
                    };
                    set.insert(&uuid, &tag, a, b);
                    any = true;
                } else if !tok.is_empty()
                    && tok.len() <= 32
                    && tok.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    tag = tok.to_ascii_lowercase();
                } else {
                    return Err(format!("GTID set {s:?}: bad tag or interval {tok:?}"));
                }
            }
            if !any {
                return Err(format!("GTID set {s:?}: {part:?} has no interval"));
            }
        }
        Ok(set)
    }

    /// Add transaction `gno` of `uuid` (with `tag`, empty for none).
    pub(crate) fn add(&mut self, uuid: &str, tag: &str, gno: u64) {
        self.insert(
            &uuid.to_ascii_lowercase(),
            &tag.to_ascii_lowercase(),
            gno,
            gno,
        );
    }

    fn insert(&mut self, uuid: &str, tag: &str, a: u64, b: u64) {
        let v = self
            .0
            .entry(uuid.to_string())
            .or_default()
            .entry(tag.to_string())
            .or_default();
        v.push((a, b));
        v.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(v.len());
        for &(a, b) in v.iter() {
            match merged.last_mut() {
                Some(l) if a <= l.1.saturating_add(1) => l.1 = l.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        *v = merged;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (uuid, tags)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(uuid)?;
            for (tag, ivs) in tags {
                if !tag.is_empty() {
                    write!(f, ":{tag}")?;
                }
                for (a, b) in ivs {
                    if a == b {
                        write!(f, ":{a}")?;
                    } else {
                        write!(f, ":{a}-{b}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::GtidSet;

    const U: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const V: &str = "0a11fa47-71ca-11e1-9e33-c80aa9429562";

    #[test]
    fn parses_and_prints_mysql_sets_with_tags() {
        let s = GtidSet::parse(&format!("{U}:1-5:7:batch:1-2,\n{V}:3")).unwrap();
        assert_eq!(s.to_string(), format!("{V}:3,{U}:1-5:7:batch:1-2"));
        assert!(GtidSet::parse("").unwrap().is_empty());
        assert_eq!(GtidSet::parse(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn adding_merges_intervals() {
        let mut s = GtidSet::parse(&format!("{U}:1-5:7")).unwrap();
        s.add(U, "", 6);
        s.add(&U.to_uppercase(), "", 8);
        s.add(U, "Batch7", 1);
        s.add(U, "batch7", 2);
        assert_eq!(s.to_string(), format!("{U}:1-8:batch7:1-2"));
    }

    #[test]
    fn refuses_what_is_not_a_gtid_set() {
        for bad in [
            "0-1-5",
            "xyz:1-2",
            &format!("{U}"),
            &format!("{U}:5-3"),
            &format!("{U}:0"),
            &format!("{U}:a-b:1"),
        ] {
            assert!(GtidSet::parse(bad).is_err(), "{bad}");
        }
    }
}
