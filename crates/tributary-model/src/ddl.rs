//! What a DDL statement does to the rows tributary keeps — the part of MySQL's DDL that the
//! warehouse must follow, read from the statement text (direct mode: the binlog's QUERY event;
//! Kafka: the `ddl` of a schema-change record).
//!
//! ## What is extracted, and why only that
//! Column *types and new columns* reach the warehouse with the rows: every change event carries
//! the table definition in force at its position (direct mode: the TABLE_MAP and the schema
//! capture tracks; Debezium: the record's schema), and apply widens/adds columns from it. What
//! rows cannot show is *identity*: a renamed column looks like a dropped one plus a new one, a
//! renamed table like a new table, and TRUNCATE / DROP TABLE write no rows at all. Those are the
//! [`DdlAction`]s:
//! `RENAME COLUMN`, `CHANGE [COLUMN] old new …` (a rename when the names differ), `DROP
//! [COLUMN]`, `RENAME [TO|AS]` and `RENAME TABLE a TO b, …`, `TRUNCATE [TABLE]`, `DROP TABLE`,
//! `CREATE [OR REPLACE] TABLE`. Every other clause (ADD COLUMN/INDEX/KEY/CONSTRAINT, MODIFY,
//! ALTER COLUMN … DEFAULT, ENGINE=, ALGORITHM=, CONVERT TO CHARACTER SET, partitions, …) has no
//! effect here — by construction, not by omission: none of them changes which value belongs to
//! which column or row.
//!
//! ## Why a tokenizer and a small grammar, not a full SQL parser
//! `sqlparser`'s MySQL dialect refuses valid statements that must be no-ops here (`ENGINE=…`,
//! `CONVERT TO CHARACTER SET`, `RENAME INDEX`, `ADD (a INT, b INT)`, MariaDB's `ADD COLUMN IF NOT
//! EXISTS`, `ALTER ONLINE TABLE`), and a refused no-op would stop a pipeline for nothing. Its
//! *tokenizer* is used (quoting with backticks and doubled backticks, strings, comments), then
//! each `ALTER TABLE` specification is split at top-level commas and only the clause forms
//! above are recognised; their grammar is unambiguous (a `DROP` followed by `INDEX`, `KEY`,
//! `PRIMARY`, `FOREIGN`, `CONSTRAINT`, `CHECK`, `PARTITION`, … is not a column drop).
//! A statement whose names cannot be read is an error naming the statement, never a guess.
//!
//! Names: MySQL table names are case-sensitive (Linux, `lower_case_table_names=0`), column names
//! are not — actions keep the names as written; apply matches columns case-insensitively.

use sqlparser::dialect::MySqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::TableId;

/// One effect of a DDL statement on the warehouse (see the module docs for what is left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DdlAction {
    /// `ALTER TABLE t RENAME COLUMN from TO to`, or `CHANGE from to <definition>`.
    RenameColumn {
        table: TableId,
        from: String,
        to: String,
    },
    /// `ALTER TABLE t DROP [COLUMN] [IF EXISTS] column`.
    DropColumn { table: TableId, column: String },
    /// `RENAME TABLE from TO to` or `ALTER TABLE from RENAME [TO|AS] to`.
    RenameTable { from: TableId, to: TableId },
    /// `TRUNCATE [TABLE] t`.
    Truncate { table: TableId },
    /// `DROP TABLE [IF EXISTS] t, …` (not `DROP TEMPORARY TABLE`).
    DropTable { table: TableId },
    /// `CREATE TABLE t …` (a table of that name may have existed and been dropped).
    CreateTable { table: TableId },
}

impl DdlAction {
    /// The tables the action touches (for table selection).
    pub fn tables(&self) -> Vec<&TableId> {
        match self {
            DdlAction::RenameColumn { table, .. }
            | DdlAction::DropColumn { table, .. }
            | DdlAction::Truncate { table }
            | DdlAction::DropTable { table }
            | DdlAction::CreateTable { table } => vec![table],
            DdlAction::RenameTable { from, to } => vec![from, to],
        }
    }
}

/// The names of a statement could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read DDL statement {statement:?}: {reason}")]
pub struct DdlError {
    pub statement: String,
    pub reason: String,
}

/// Longest statement text kept in an error.
const ERROR_TEXT_MAX: usize = 200;

/// The actions of one statement; `default_db` is the session database it ran in (the QUERY
/// event's schema / the record's `databaseName`). Statements that are not DDL of tables give
/// no actions.
pub fn parse(default_db: &str, sql: &str) -> Result<Vec<DdlAction>, DdlError> {
    let fail = |reason: String| DdlError {
        statement: sql.chars().take(ERROR_TEXT_MAX).collect(),
        reason,
    };
    let dialect = MySqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize()
        .map_err(|e| fail(e.to_string()))?;
    let toks: Vec<Tok> = tokens
        .into_iter()
        .filter_map(|t| match t {
            Token::Whitespace(_) => None,
            Token::Word(w) => Some(Tok::Word {
                upper: w.value.to_ascii_uppercase(),
                value: w.value,
                quoted: w.quote_style.is_some(),
            }),
            Token::Comma => Some(Tok::Comma),
            Token::Period => Some(Tok::Period),
            Token::LParen => Some(Tok::Open),
            Token::RParen => Some(Tok::Close),
            Token::SemiColon => Some(Tok::Semi),
            Token::EOF => None,
            _ => Some(Tok::Other),
        })
        .collect();
    let mut p = Cursor {
        toks: &toks,
        at: 0,
        db: default_db,
    };
    let r = statement(&mut p);
    r.map_err(fail)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word {
        value: String,
        upper: String,
        quoted: bool,
    },
    Comma,
    Period,
    Open,
    Close,
    Semi,
    Other,
}

struct Cursor<'a> {
    toks: &'a [Tok],
    at: usize,
    db: &'a str,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }
    /// The next token is the unquoted keyword `kw` (consumed when it is).
    fn eat(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word { upper, quoted: false, .. }) if upper == kw)
    }
    fn eat_all(&mut self, kws: &[&str]) -> bool {
        let save = self.at;
        for k in kws {
            if !self.eat(k) {
                self.at = save;
                return false;
            }
        }
        true
    }
    fn ident(&mut self) -> Result<String, String> {
        match self.toks.get(self.at) {
            Some(Tok::Word { value, .. }) => {
                self.at += 1;
                Ok(value.clone())
            }
            other => Err(format!("expected a name, found {}", describe(other))),
        }
    }
    /// `name` or `db.name`.
    fn table(&mut self) -> Result<TableId, String> {
        let first = self.ident()?;
        if self.peek() == Some(&Tok::Period) {
            self.at += 1;
            let second = self.ident()?;
            return Ok(TableId::new(first, second));
        }
        if self.db.is_empty() {
            return Err(format!(
                "table {first:?} has no database and the statement ran without a default database"
            ));
        }
        Ok(TableId::new(self.db, first))
    }
    fn at_end(&self) -> bool {
        matches!(self.peek(), None | Some(Tok::Semi))
    }
    /// Skip to the next top-level comma (consumed) or the end; false at the end.
    fn next_spec(&mut self) -> bool {
        let mut depth = 0usize;
        while let Some(t) = self.peek() {
            match t {
                Tok::Open => depth += 1,
                Tok::Close => depth = depth.saturating_sub(1),
                Tok::Comma if depth == 0 => {
                    self.at += 1;
                    return true;
                }
                Tok::Semi if depth == 0 => return false,
                _ => {}
            }
            self.at += 1;
        }
        false
    }
}

fn describe(t: Option<&Tok>) -> String {
    match t {
        None | Some(Tok::Semi) => "the end of the statement".into(),
        Some(Tok::Word { value, .. }) => format!("{value:?}"),
        Some(other) => format!("{other:?}"),
    }
}

fn statement(p: &mut Cursor<'_>) -> Result<Vec<DdlAction>, String> {
    if p.eat("ALTER") {
        // ALTER [ONLINE] [IGNORE] TABLE [IF EXISTS] t spec, spec …
        while p.eat("ONLINE") || p.eat("IGNORE") {}
        if !p.eat("TABLE") {
            return Ok(vec![]);
        }
        p.eat_all(&["IF", "EXISTS"]);
        let table = p.table()?;
        let mut out = Vec::new();
        if p.at_end() {
            return Ok(out);
        }
        loop {
            alter_spec(p, &table, &mut out)?;
            if !p.next_spec() {
                break;
            }
        }
        return Ok(out);
    }
    if p.eat("RENAME") {
        if !(p.eat("TABLE") || p.eat("TABLES")) {
            return Ok(vec![]);
        }
        let mut out = Vec::new();
        loop {
            let from = p.table()?;
            if !p.eat("TO") {
                return Err(format!(
                    "expected TO after {from}, found {}",
                    describe(p.peek())
                ));
            }
            let to = p.table()?;
            out.push(DdlAction::RenameTable { from, to });
            if p.peek() == Some(&Tok::Comma) {
                p.at += 1;
                continue;
            }
            break;
        }
        return Ok(out);
    }
    if p.eat("TRUNCATE") {
        p.eat("TABLE");
        return Ok(vec![DdlAction::Truncate { table: p.table()? }]);
    }
    if p.eat("DROP") {
        if p.eat("TEMPORARY") {
            return Ok(vec![]);
        }
        if !(p.eat("TABLE") || p.eat("TABLES")) {
            return Ok(vec![]);
        }
        p.eat_all(&["IF", "EXISTS"]);
        let mut out = vec![DdlAction::DropTable { table: p.table()? }];
        while p.peek() == Some(&Tok::Comma) {
            p.at += 1;
            out.push(DdlAction::DropTable { table: p.table()? });
        }
        return Ok(out);
    }
    if p.eat("CREATE") {
        let replace = p.eat_all(&["OR", "REPLACE"]);
        if p.eat("TEMPORARY") || !p.eat("TABLE") {
            return Ok(vec![]);
        }
        p.eat_all(&["IF", "NOT", "EXISTS"]);
        let table = p.table()?;
        let mut out = Vec::new();
        if replace {
            out.push(DdlAction::DropTable {
                table: table.clone(),
            });
        }
        out.push(DdlAction::CreateTable { table });
        return Ok(out);
    }
    Ok(vec![])
}

/// Words after `DROP` that start something other than a column.
const DROP_NOT_COLUMN: &[&str] = &[
    "INDEX",
    "KEY",
    "PRIMARY",
    "FOREIGN",
    "CONSTRAINT",
    "CHECK",
    "PARTITION",
    "SYSTEM",
    "PERIOD",
    "UNIQUE",
    "FULLTEXT",
    "SPATIAL",
];

fn alter_spec(p: &mut Cursor<'_>, table: &TableId, out: &mut Vec<DdlAction>) -> Result<(), String> {
    if p.eat("RENAME") {
        if p.eat("COLUMN") {
            let from = p.ident()?;
            if !p.eat("TO") {
                return Err(format!("expected TO after RENAME COLUMN {from}"));
            }
            let to = p.ident()?;
            out.push(DdlAction::RenameColumn {
                table: table.clone(),
                from,
                to,
            });
        } else if p.is_kw("INDEX") || p.is_kw("KEY") {
            // RENAME INDEX/KEY a TO b: no data effect.
        } else {
            if !p.eat("TO") {
                p.eat("AS");
            }
            let to = p.table()?;
            out.push(DdlAction::RenameTable {
                from: table.clone(),
                to,
            });
        }
        return Ok(());
    }
    if p.eat("CHANGE") {
        p.eat("COLUMN");
        p.eat_all(&["IF", "EXISTS"]);
        let from = p.ident()?;
        let to = p.ident()?;
        if from != to {
            out.push(DdlAction::RenameColumn {
                table: table.clone(),
                from,
                to,
            });
        }
        return Ok(());
    }
    if p.eat("DROP") {
        if DROP_NOT_COLUMN.iter().any(|k| p.is_kw(k)) {
            return Ok(());
        }
        p.eat("COLUMN");
        p.eat_all(&["IF", "EXISTS"]);
        let column = p.ident()?;
        out.push(DdlAction::DropColumn {
            table: table.clone(),
            column,
        });
        return Ok(());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(db: &str, n: &str) -> TableId {
        TableId::new(db, n)
    }

    #[test]
    fn column_renames_drops_and_no_ops() {
        let a = parse(
            "d",
            "ALTER TABLE `x` RENAME COLUMN a TO `b c`, DROP COLUMN IF EXISTS z, DROP INDEX i, \
             ADD COLUMN n ENUM('p,q','r') DEFAULT 'p,q' AFTER b, CHANGE COLUMN o n2 BIGINT UNSIGNED, \
             CHANGE k k INT, MODIFY m DECIMAL(20,4), DROP PRIMARY KEY, ALGORITHM=INSTANT, DROP w",
        )
        .unwrap();
        assert_eq!(
            a,
            vec![
                DdlAction::RenameColumn {
                    table: t("d", "x"),
                    from: "a".into(),
                    to: "b c".into()
                },
                DdlAction::DropColumn {
                    table: t("d", "x"),
                    column: "z".into()
                },
                DdlAction::RenameColumn {
                    table: t("d", "x"),
                    from: "o".into(),
                    to: "n2".into()
                },
                DdlAction::DropColumn {
                    table: t("d", "x"),
                    column: "w".into()
                },
            ]
        );
        for noop in [
            "ALTER TABLE x ENGINE=InnoDB",
            "ALTER TABLE x CONVERT TO CHARACTER SET utf8mb4",
            "ALTER TABLE x RENAME INDEX a TO b",
            "ALTER TABLE x ADD (c INT, d INT)",
            "ALTER TABLE x ADD COLUMN IF NOT EXISTS c INT",
            "ALTER ONLINE TABLE x ADD COLUMN z INT",
            "CREATE INDEX i ON x (a)",
            "DROP TEMPORARY TABLE IF EXISTS x",
            "ALTER TABLE x",
            "GRANT SELECT ON *.* TO u",
            "BEGIN",
            "/* comment */ SET @a = 1",
        ] {
            assert_eq!(parse("d", noop).unwrap(), vec![], "{noop}");
        }
    }

    #[test]
    fn tables_renamed_truncated_dropped_created() {
        assert_eq!(
            parse("d", "RENAME TABLE a TO b, e.f TO `g`.`h``i`").unwrap(),
            vec![
                DdlAction::RenameTable {
                    from: t("d", "a"),
                    to: t("d", "b")
                },
                DdlAction::RenameTable {
                    from: t("e", "f"),
                    to: t("g", "h`i")
                },
            ]
        );
        assert_eq!(
            parse("d", "alter table a rename to e.b").unwrap(),
            vec![DdlAction::RenameTable {
                from: t("d", "a"),
                to: t("e", "b")
            }]
        );
        assert_eq!(
            parse("d", "ALTER TABLE a RENAME AS b").unwrap(),
            vec![DdlAction::RenameTable {
                from: t("d", "a"),
                to: t("d", "b")
            }]
        );
        assert_eq!(
            parse("d", "TRUNCATE t").unwrap(),
            vec![DdlAction::Truncate { table: t("d", "t") }]
        );
        assert_eq!(
            parse("", "TRUNCATE TABLE `o`.`t`").unwrap(),
            vec![DdlAction::Truncate { table: t("o", "t") }]
        );
        assert_eq!(
            parse(
                "d",
                "DROP TABLE IF EXISTS `a`,`b` /* generated by server */"
            )
            .unwrap(),
            vec![
                DdlAction::DropTable { table: t("d", "a") },
                DdlAction::DropTable { table: t("d", "b") },
            ]
        );
        assert_eq!(
            parse("d", "CREATE OR REPLACE TABLE n (id INT PRIMARY KEY)").unwrap(),
            vec![
                DdlAction::DropTable { table: t("d", "n") },
                DdlAction::CreateTable { table: t("d", "n") },
            ]
        );
    }

    #[test]
    fn unreadable_names_are_errors_naming_the_statement() {
        let e = parse("", "TRUNCATE t").unwrap_err();
        assert!(e.reason.contains("no database"), "{e}");
        let e = parse("d", "RENAME TABLE a b").unwrap_err();
        assert!(e.to_string().contains("RENAME TABLE a b"), "{e}");
        let e = parse("d", "ALTER TABLE a RENAME COLUMN x").unwrap_err();
        assert!(e.reason.contains("TO"), "{e}");
        // Unterminated quoting.
        assert!(parse("d", "ALTER TABLE `a RENAME COLUMN x TO y").is_err());
    }
}
