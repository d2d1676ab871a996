//! Source DDL applied to the warehouse at its place in the change order.
//!
//! A batch's schema changes ([`SchemaChange`], read into [`DdlAction`]s by
//! `tributary_model::ddl`) are applied between the events before and after them (see
//! `PgSink::apply_once`): events positioned before the statement are applied first, then the
//! statement, then the rest — all in the batch's one transaction, with the checkpoint. So the
//! warehouse DDL, the data after it and the position commit or roll back together.
//!
//! ## The policy, per kind (README "Schema changes")
//! * **ADD COLUMN, MODIFY/CHANGE type** — not here: rows carry their table definition and
//!   `ensure_table` adds columns and widens types from it (`pgtype::widen`).
//! * **RENAME COLUMN / CHANGE old new** — the warehouse column is renamed in current and
//!   history (history rows written before read under the new name; the source column names
//!   in `tributary.schema_changes` say since when). No value moves, none is lost.
//! * **DROP COLUMN** — `on_drop_column = "keep"` (default): the column stays in current with no
//!   DEFAULT and NULLs for changes after the drop (keyless tables: set NULL at the drop, since
//!   their rows are matched by every column); `"drop"`: dropped from current. History keeps it.
//! * **TRUNCATE** — current emptied at that position; history gets one `TRUNCATE` record, and
//!   SCD2 versions open at that moment end there.
//! * **RENAME TABLE** — the warehouse tables (and their indexes, the control rows) follow, to
//!   the names the configuration gives the new source name; refused (dead letter) if the new
//!   names are taken, never a second, stale copy.
//! * **DROP TABLE** — `on_drop_table = "keep"` (default): tables kept, marked in
//!   `tributary.tables.dropped_at` and with a table COMMENT, history gets a `DROP TABLE` record;
//!   `"drop"`: both dropped. A later `CREATE TABLE` of that name empties the kept current table
//!   (the new source table starts empty) and clears the mark.
//! * everything else — no effect.
//!
//! Schema changes recorded during a snapshot (Debezium's snapshot emits `DROP TABLE IF
//! EXISTS` + `CREATE TABLE` for every captured table to rebuild its schema) are skipped.
//!
//! ## Exactly once
//! Every applied action is logged in `tributary.schema_changes`, unique by (table, action,
//! position): a schema change delivered again (a re-published Kafka record, a replay file
//! applied twice) finds its row and does nothing — a TRUNCATE re-applied after newer inserts
//! would otherwise delete them. A DDL on a table the warehouse does not have is ignored (not
//! captured, or no rows yet: the table is created with the definition in force when its
//! first row arrives).
//!
//! ## Failures
//! An action PostgreSQL refuses (a rename onto an existing column, …) is rolled back alone
//! (savepoint) and dead-lettered (stage `schema`, the statement as the record value, the
//! SQLSTATE in the reason); with `on_error = "stop"` it stops the pipeline.

use tracing::{info, warn};
use tributary_model::ddl::{self, DdlAction};
use tributary_model::{DeadLetter, SchemaChange, SnapshotMarker, TableId};

use crate::config::{ident, lit, DropPolicy, HistoryCol};
use crate::names;
use crate::table::TargetTable;
use crate::{pg_err, ApplyError, Failure, OnError, PgSink};

/// The dead-letter stage of schema changes the warehouse refused.
pub const STAGE: &str = "schema";

impl PgSink {
    /// Apply `sc` (inside the open transaction). Definite failures become dead letters in
    /// `dead` (or an error with `on_error = "stop"`).
    pub(crate) async fn apply_schema_change(
        &mut self,
        pipeline: &str,
        sc: &SchemaChange,
        dead: &mut Vec<DeadLetter>,
    ) -> Result<(), ApplyError> {
        for t in &sc.tables {
            self.declared.insert(t.id.clone(), t.clone());
        }
        if sc.source.snapshot == SnapshotMarker::False {
            for t in &sc.tables {
                self.savepoint("tributary_schema").await?;
                match self.widen_to_declared(&t.id).await {
                    Ok(()) => self.end_savepoint("tributary_schema", true).await?,
                    Err(ApplyError::Definite(f)) => {
                        // e.g. a view depends on the column (0A000): this statement's type
                        // change is refused alone, the pipeline goes on.
                        self.end_savepoint("tributary_schema", false).await?;
                        self.forget_tables();
                        self.refuse(
                            sc,
                            dead,
                            Failure {
                                message: format!("{}: type change: {}", t.id, f.message),
                                sqlstate: f.sqlstate,
                            },
                        )?;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        // Debezium's snapshot writes the statements it rebuilds its schema from (`DROP TABLE
        // IF EXISTS` for every captured table, `CREATE TABLE`, …) to the schema-change topic:
        // a description of the tables, not something that happened to them.
        if sc.source.snapshot != SnapshotMarker::False {
            return Ok(());
        }
        let actions = match ddl::parse(&sc.db, &sc.ddl) {
            Ok(a) => a,
            Err(e) => {
                return self.refuse(
                    sc,
                    dead,
                    Failure {
                        message: e.to_string(),
                        sqlstate: None,
                    },
                );
            }
        };
        let actions = in_statement_order(actions);
        for action in &actions {
            self.savepoint("tributary_schema").await?;
            match self.apply_action(pipeline, sc, action).await {
                Ok(()) => self.end_savepoint("tributary_schema", true).await?,
                Err(ApplyError::Definite(f)) => {
                    self.end_savepoint("tributary_schema", false).await?;
                    // Whatever the rolled-back statement did is gone; forget cached shapes.
                    self.forget_tables();
                    self.refuse(
                        sc,
                        dead,
                        Failure {
                            message: format!("{}: {}", describe(action), f.message),
                            sqlstate: f.sqlstate,
                        },
                    )?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn refuse(
        &self,
        sc: &SchemaChange,
        dead: &mut Vec<DeadLetter>,
        f: Failure,
    ) -> Result<(), ApplyError> {
        let reason = format!(
            "schema change at {}:{} not applied: {}{}",
            sc.source.file,
            sc.source.pos,
            f.message,
            f.sqlstate
                .as_deref()
                .map(|s| format!(" (SQLSTATE {s})"))
                .unwrap_or_default()
        );
        if self.cfg.on_error == OnError::Stop {
            return Err(ApplyError::Definite(Failure {
                message: format!("{reason} — on_error = \"stop\""),
                sqlstate: f.sqlstate,
            }));
        }
        warn!("{reason}; dead-lettered");
        dead.push(DeadLetter {
            topic: sc.source.name.clone(),
            partition: -1,
            // One per refusal: two actions of one statement refused are two dead letters.
            offset: (xxhash_rust::xxh3::xxh3_64(
                format!("{}\0{}", position_text(sc), f.message).as_bytes(),
            ) >> 1) as i64,
            key: None,
            value: Some(sc.ddl.as_bytes().to_vec()),
            stage: STAGE.into(),
            reason,
        });
        Ok(())
    }

    async fn apply_action(
        &mut self,
        pipeline: &str,
        sc: &SchemaChange,
        action: &DdlAction,
    ) -> Result<(), ApplyError> {
        let table = match action {
            DdlAction::RenameTable { from, .. } => from,
            DdlAction::RenameColumn { table, .. }
            | DdlAction::DropColumn { table, .. }
            | DdlAction::Truncate { table }
            | DdlAction::DropTable { table }
            | DdlAction::CreateTable { table } => table,
        };
        let layout = self.cfg.layout(table);
        // Serialise with other sinks' DDL on these tables (as `create_or_evolve` does).
        self.client
            .execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))",
                &[&format!(
                    "tributary:ddl:{}.{}",
                    layout.schema, layout.current
                )],
            )
            .await
            .map_err(|e| pg_err("taking DDL lock", e))?;
        let Some(t) = self.load_target(table, layout).await? else {
            return Ok(()); // not in the warehouse (yet): nothing to follow
        };
        if !self.log_action(pipeline, sc, table, action).await? {
            info!("{}: already applied at this position", describe(action));
            return Ok(());
        }
        self.tables.remove(table);
        let (q_cur, q_hist) = (t.q_current(), t.q_history());
        match action {
            DdlAction::RenameColumn { from, to, .. } => {
                let Some(c) = find_col(&t, from) else {
                    return Ok(()); // the column never reached the warehouse
                };
                let (target, why) = TargetTable::target_name(&t.layout, to);
                if target != c.target {
                    let (old, new) = (ident(&c.target), ident(&target));
                    if let Some(o) = t.cols.iter().find(|o| o.target == target) {
                        // Rows with the new name were applied before this statement (Kafka: a
                        // data topic read ahead of the schema-change topic): the column exists.
                        // Merge: current rows last changed before the rename take the old
                        // column's value (by the stale-update guard's position), history rows
                        // written under the old name move to the new one; the old column goes.
                        let Some(pos_col) = t.layout.current_meta.source_pos.as_ref() else {
                            return Err(ApplyError::definite(format!(
                                "the warehouse column {target:?} (source column {:?}) already                                  exists, and without the current table's source-position column                                  the rows written before the rename cannot be told apart",
                                names::printable(&o.source)
                            )));
                        };
                        let p = ident(pos_col);
                        self.exec(&format!(
                            "UPDATE {q_cur} SET {new} = {old} WHERE {p} < {key};
                             ALTER TABLE {q_cur} DROP COLUMN {old};
                             UPDATE {q_hist} SET {new} = {old} WHERE {new} IS NULL AND {old} IS NOT NULL;
                             ALTER TABLE {q_hist} DROP COLUMN {old};",
                            key = sc.source.order_key()
                        ))
                        .await?;
                        warn!(
                            "{table}: column {:?} renamed to {:?} after rows with the new name                              were applied: merged by position",
                            c.source, to
                        );
                    } else {
                        self.exec(&format!(
                            "ALTER TABLE {q_cur} RENAME COLUMN {old} TO {new};
                             ALTER TABLE {q_hist} RENAME COLUMN {old} TO {new};"
                        ))
                        .await?;
                    }
                }
                let cs = ident(&self.cfg.control_schema);
                self.client
                    .execute(
                        &format!(
                            "DELETE FROM {cs}.columns WHERE source = $1 AND source_column = $2"
                        ),
                        &[&table.to_string(), &c.source.as_bytes()],
                    )
                    .await
                    .map_err(|e| pg_err("updating the column name mapping", e))?;
                self.record_names(
                    table,
                    &t.layout,
                    false,
                    t.key.is_empty(),
                    &[(to.clone(), target.clone(), why)],
                )
                .await?;
                info!(
                    "{table}: column {:?} renamed to {:?} ({q_cur}, {q_hist})",
                    c.source, to
                );
            }
            DdlAction::DropColumn { column, .. } => {
                let Some(c) = find_col(&t, column) else {
                    return Ok(());
                };
                let is_key = t.key.iter().any(|&k| t.cols[k].target == c.target);
                if is_key {
                    return Err(ApplyError::definite(format!(
                        "the dropped column {:?} is part of the warehouse primary key; change the \
                         key of {q_cur} to the source's new key, then apply the statement's effect by hand (dlq retry does not re-run schema changes)",
                        names::printable(column)
                    )));
                }
                let col = ident(&c.target);
                match self.cfg.on_drop_column {
                    DropPolicy::Drop => {
                        // History keeps the values, under the kept name (a column of the
                        // same name added later is a new column there too).
                        let kept_source = dropped_name(&c.source, sc);
                        let k = ident(&TargetTable::target_name(&t.layout, &kept_source).0);
                        self.exec(&format!(
                            "ALTER TABLE {q_cur} DROP COLUMN {col};
                             ALTER TABLE {q_hist} RENAME COLUMN {col} TO {k};
                             ALTER TABLE {q_hist} ALTER COLUMN {k} DROP NOT NULL;"
                        ))
                        .await?;
                    }
                    DropPolicy::Keep => {
                        // Kept under `<name>_dropped_<tag>` (logged as a rename: rows of
                        // before the drop delivered late still land there), so a column of
                        // the same name added later starts fresh with its own DEFAULT.
                        let kept_source = dropped_name(&c.source, sc);
                        let (kept, why) = TargetTable::target_name(&t.layout, &kept_source);
                        let k = ident(&kept);
                        let null_keyless = if t.key.is_empty() {
                            format!("UPDATE {q_cur} SET {k} = NULL;")
                        } else {
                            String::new()
                        };
                        self.exec(&format!(
                            "ALTER TABLE {q_cur} RENAME COLUMN {col} TO {k};
                             ALTER TABLE {q_hist} RENAME COLUMN {col} TO {k};
                             ALTER TABLE {q_cur} ALTER COLUMN {k} DROP DEFAULT, ALTER COLUMN {k} DROP NOT NULL;
                             ALTER TABLE {q_hist} ALTER COLUMN {k} DROP NOT NULL;
                             {null_keyless}
                             COMMENT ON COLUMN {q_cur}.{k} IS {n};
                             COMMENT ON COLUMN {q_hist}.{k} IS {n};",
                            n = lit(&format!(
                                "source column {:?} dropped at {} (on_drop_column = keep)",
                                c.source,
                                position_text(sc)
                            ))
                        ))
                        .await?;
                        let cs = ident(&self.cfg.control_schema);
                        self.client
                            .execute(
                                &format!(
                                    "DELETE FROM {cs}.columns WHERE source = $1 AND source_column = $2"
                                ),
                                &[&table.to_string(), &c.source.as_bytes()],
                            )
                            .await
                            .map_err(|e| pg_err("updating the column name mapping", e))?;
                        // Recorded even when the name is used as it is: it is no source name.
                        self.record_names(
                            table,
                            &t.layout,
                            false,
                            t.key.is_empty(),
                            &[(
                                kept_source,
                                kept.clone(),
                                if why == names::Mapped::Same {
                                    names::Mapped::Dropped
                                } else {
                                    why
                                },
                            )],
                        )
                        .await?;
                    }
                }
                info!(
                    "{table}: column {:?} dropped in the source ({q_cur})",
                    c.source
                );
            }
            DdlAction::Truncate { .. } => {
                self.end_rows(&t, sc, "TRUNCATE").await?;
                info!("{table}: truncated ({q_cur} emptied)");
            }
            DdlAction::RenameTable { to, .. } => {
                self.rename_table(table, to, &t).await?;
            }
            DdlAction::DropTable { .. } => {
                let cs = ident(&self.cfg.control_schema);
                match self.cfg.on_drop_table {
                    DropPolicy::Drop => {
                        self.exec(&format!("DROP TABLE {q_cur}; DROP TABLE {q_hist};"))
                            .await?;
                        self.client
                            .execute(
                                &format!("DELETE FROM {cs}.tables WHERE source = $1"),
                                &[&table.to_string()],
                            )
                            .await
                            .map_err(|e| pg_err("updating the control tables", e))?;
                        info!("{table}: dropped in the source; {q_cur} and {q_hist} dropped");
                    }
                    DropPolicy::Keep => {
                        self.end_history(&t, sc, "DROP TABLE").await?;
                        let note = format!(
                            "source table {table} dropped at {}; kept by tributary (on_drop_table = keep)",
                            position_text(sc)
                        );
                        self.exec(&format!(
                            "COMMENT ON TABLE {q_cur} IS {n}; COMMENT ON TABLE {q_hist} IS {n};",
                            n = lit(&note)
                        ))
                        .await?;
                        self.client
                            .execute(
                                &format!(
                                    "UPDATE {cs}.tables SET dropped_at = to_timestamp($2::float8 / 1000), dropped_by = $3
                                     WHERE source = $1"
                                ),
                                &[&table.to_string(), &(sc.source.ts_ms as f64), &sc.ddl],
                            )
                            .await
                            .map_err(|e| pg_err("marking the table dropped", e))?;
                        info!("{table}: dropped in the source; {q_cur} kept, marked dropped");
                    }
                }
            }
            DdlAction::CreateTable { .. } => {
                // A table of this name was dropped and kept: the new source table starts empty.
                let cs = ident(&self.cfg.control_schema);
                let dropped: bool = self
                    .client
                    .query_opt(
                        &format!(
                            "SELECT 1 FROM {cs}.tables WHERE source = $1 AND dropped_at IS NOT NULL"
                        ),
                        &[&table.to_string()],
                    )
                    .await
                    .map_err(|e| pg_err("reading the control tables", e))?
                    .is_some();
                if dropped {
                    self.exec(&format!(
                        "DELETE FROM {q_cur}{}; COMMENT ON TABLE {q_cur} IS NULL; COMMENT ON TABLE {q_hist} IS NULL;",
                        before_statement(&t, sc)
                    ))
                    .await?;
                    self.client
                        .execute(
                            &format!(
                                "UPDATE {cs}.tables SET dropped_at = NULL, dropped_by = NULL WHERE source = $1"
                            ),
                            &[&table.to_string()],
                        )
                        .await
                        .map_err(|e| pg_err("updating the control tables", e))?;
                    info!("{table}: created again in the source; the kept {q_cur} emptied");
                }
            }
        }
        Ok(())
    }

    async fn exec(&self, sql: &str) -> Result<(), ApplyError> {
        self.client
            .batch_execute(sql)
            .await
            .map_err(|e| pg_err("applying a source schema change", e))
            .map_err(|e| match e {
                ApplyError::Definite(f) => ApplyError::Definite(Failure {
                    message: format!("{} [statement: {}]", f.message, sql.trim()),
                    sqlstate: f.sqlstate,
                }),
                other => other,
            })
    }

    /// Record `action` at `sc`'s position; false when it was recorded (applied) before.
    async fn log_action(
        &self,
        pipeline: &str,
        sc: &SchemaChange,
        table: &TableId,
        action: &DdlAction,
    ) -> Result<bool, ApplyError> {
        let cs = ident(&self.cfg.control_schema);
        let s = &sc.source;
        let (kind, old, new): (&str, Option<String>, Option<String>) = match action {
            DdlAction::RenameColumn { from, to, .. } => {
                ("rename_column", Some(from.clone()), Some(to.clone()))
            }
            // Kept under another name: logged as the rename it is in the warehouse.
            DdlAction::DropColumn { column, .. } if self.cfg.on_drop_column == DropPolicy::Keep => {
                (
                    "rename_column",
                    Some(column.clone()),
                    Some(dropped_name(column, sc)),
                )
            }
            DdlAction::DropColumn { column, .. } => ("drop_column", Some(column.clone()), None),
            DdlAction::RenameTable { from, to } => {
                ("rename_table", Some(from.to_string()), Some(to.to_string()))
            }
            DdlAction::Truncate { .. } => ("truncate", None, None),
            DdlAction::DropTable { .. } => ("drop_table", None, None),
            DdlAction::CreateTable { .. } => ("create_table", None, None),
        };
        let row = self
            .client
            .query_opt(
                &format!(
                    "INSERT INTO {cs}.schema_changes
                       (pipeline, source_table, action, position, ddl, src_file, src_pos, src_gtid, src_ts,
                        kind, old_name, new_name, order_key)
                     VALUES ($1, $2, $3, $4, $5, NULLIF($6, ''), $7, $8, to_timestamp($9::float8 / 1000),
                        $10, $11, $12, $13)
                     ON CONFLICT (source_table, action, position) DO NOTHING RETURNING 1"
                ),
                &[
                    &pipeline,
                    &table.to_string(),
                    &describe(action),
                    &position_text(sc),
                    &sc.ddl,
                    &s.file,
                    &(s.pos.min(i64::MAX as u64) as i64),
                    &s.gtid,
                    &(s.ts_ms as f64),
                    &kind,
                    &old,
                    &new,
                    &s.order_key(),
                ],
            )
            .await
            .map_err(|e| pg_err("logging the schema change", e))?;
        Ok(row.is_some())
    }

    /// Empty current at `sc` and record it in history (`change_type` = `label`).
    async fn end_rows(
        &self,
        t: &TargetTable,
        sc: &SchemaChange,
        label: &str,
    ) -> Result<(), ApplyError> {
        self.exec(&format!(
            "DELETE FROM {}{};",
            t.q_current(),
            before_statement(t, sc)
        ))
        .await?;
        self.end_history(t, sc, label).await
    }

    /// One history record for a statement that ended every row (TRUNCATE, DROP TABLE), and
    /// the SCD2 versions open at that moment closed there.
    async fn end_history(
        &self,
        t: &TargetTable,
        sc: &SchemaChange,
        label: &str,
    ) -> Result<(), ApplyError> {
        let hm = &t.layout.history_meta;
        let s = &sc.source;
        let ts = format!("to_timestamp({}::float8 / 1000)", s.ts_ms);
        let mut cols = vec![ident(&hm.change_type), ident(&hm.event_id)];
        let mut vals = vec![lit(label), lit(&uuid_text(&statement_id(sc, label)))];
        for (c, which) in hm.written() {
            let v = match which {
                HistoryCol::SourceTs | HistoryCol::ValidFrom => ts.clone(),
                HistoryCol::SourceFile if !s.file.is_empty() => lit(&s.file),
                HistoryCol::SourcePos => (s.pos.min(i64::MAX as u64)).to_string(),
                HistoryCol::SourceRow => "0".into(),
                HistoryCol::SourceGtid => s.gtid.as_deref().map(lit).unwrap_or("NULL".into()),
                _ => continue,
            };
            cols.push(ident(c));
            vals.push(v);
        }
        let mut close = String::new();
        if let Some(vt) = &hm.valid_to {
            // The record itself is not a version: closed at once (the SCD2 index covers
            // open versions only).
            cols.push(ident(vt));
            vals.push(ts.clone());
            if !t.key.is_empty() {
                close = format!(
                    "UPDATE {} SET {vt} = {ts} WHERE {vt} IS NULL;",
                    t.q_history(),
                    vt = ident(vt)
                );
            }
        }
        self.exec(&format!(
            "{close}
             INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO NOTHING;",
            t.q_history(),
            cols.join(", "),
            vals.join(", "),
            ident(&hm.event_id)
        ))
        .await
    }

    async fn rename_table(
        &mut self,
        from: &TableId,
        to: &TableId,
        t: &TargetTable,
    ) -> Result<(), ApplyError> {
        let new = self.cfg.layout(to);
        let cs = ident(&self.cfg.control_schema);
        // A table of the new name that the source dropped and the warehouse kept
        // (`on_drop_table = keep`; online schema change tools rename over dropped names all
        // the time): moved aside under `<name>_dropped_<tag>`, still marked dropped.
        let kept_dropped = self
            .client
            .query_opt(
                &format!("SELECT dropped_by FROM {cs}.tables WHERE source = $1 AND dropped_at IS NOT NULL"),
                &[&to.to_string()],
            )
            .await
            .map_err(|e| pg_err("reading the control tables", e))?
            .is_some();
        if kept_dropped && self.load_target(to, new.clone()).await?.is_some() {
            let tag = format!(
                "{:08x}",
                xxhash_rust::xxh3::xxh3_64(format!("{to}\0{}", t.layout.current).as_bytes()) as u32
            );
            let (cur, hist) = (
                names::pg_relation_name(&format!("{}_dropped_{tag}", new.current)),
                names::pg_relation_name(&format!("{}_dropped_{tag}", new.history)),
            );
            let mut sql = self
                .move_table_sql(&new.schema, &new.current, &new.schema, &cur)
                .await?;
            sql.push_str(
                &self
                    .move_table_sql(&new.schema, &new.history, &new.schema, &hist)
                    .await?,
            );
            self.exec(&sql).await?;
            self.client
                .execute(
                    &format!(
                        "UPDATE {cs}.tables SET source = $2, current_table = $3, history_table = $4 WHERE source = $1"
                    ),
                    &[&to.to_string(), &format!("{to} (dropped, {tag})"), &cur, &hist],
                )
                .await
                .map_err(|e| pg_err("updating the control tables", e))?;
            self.tables.remove(to);
            info!("{to}: kept tables of the dropped source table moved aside to {cur}, {hist}");
        }
        if self.load_target(to, new.clone()).await?.is_some() {
            return Err(ApplyError::definite(format!(
                "the warehouse tables for {to} ({}.{}) already exist; rename or drop them, then apply the rename by hand (dlq retry does not re-run schema changes)",
                new.schema, new.current
            )));
        }
        let old = &t.layout;
        let mut sql = String::new();
        if new.schema != old.schema {
            sql.push_str(&format!(
                "CREATE SCHEMA IF NOT EXISTS {};\n",
                ident(&new.schema)
            ));
        }
        for (old_name, new_name) in [(&old.current, &new.current), (&old.history, &new.history)] {
            sql.push_str(
                &self
                    .move_table_sql(&old.schema, old_name, &new.schema, new_name)
                    .await?,
            );
        }
        self.exec(&sql).await?;
        let cs = ident(&self.cfg.control_schema);
        let (f, tt) = (from.to_string(), to.to_string());
        self.client
            .execute(
                &format!(
                    "UPDATE {cs}.tables SET source = $2, target_schema = $3, current_table = $4, history_table = $5
                     WHERE source = $1"
                ),
                &[&f, &tt, &new.schema, &new.current, &new.history],
            )
            .await
            .map_err(|e| pg_err("updating the control tables", e))?;
        self.client
            .execute(
                &format!("UPDATE {cs}.columns SET source = $2 WHERE source = $1"),
                &[&f, &tt],
            )
            .await
            .map_err(|e| pg_err("updating the control tables", e))?;
        self.tables.remove(to);
        self.table_renames.remove(from);
        info!(
            "{from} renamed to {to}: warehouse tables now {}.{} and {}.{}",
            new.schema, new.current, new.schema, new.history
        );
        Ok(())
    }
}

impl PgSink {
    /// The table an event's rows belong to now: a table renamed after the event's position
    /// (a late or repeated delivery) is followed to its new name, so the event meets its
    /// history there (and is refused as a duplicate, or applied behind the stale-update
    /// guard) instead of re-creating the old name's tables beside the renamed ones. Events
    /// without a source position are left where they say.
    pub(crate) async fn route(
        &mut self,
        tid: &TableId,
        ev: &tributary_model::ChangeEvent,
    ) -> Result<TableId, ApplyError> {
        let mut cur = tid.clone();
        if ev.source.file.is_empty() {
            return Ok(cur);
        }
        let key = ev.source.order_key();
        for _ in 0..MAX_RENAME_CHAIN {
            self.renamed_since(&cur).await?;
            match self.table_renames[&cur].iter().find(|(k, _)| *k > key) {
                Some((_, to)) => cur = to.clone(),
                None => break,
            }
        }
        Ok(cur)
    }

    /// Whether `tid` was ever renamed (its renames loaded into the cache).
    pub(crate) async fn renamed_since(&mut self, tid: &TableId) -> Result<bool, ApplyError> {
        let cur = tid;
        {
            if !self.table_renames.contains_key(cur) {
                let cs = ident(&self.cfg.control_schema);
                let rows = self
                    .client
                    .query(
                        &format!(
                            "SELECT order_key, new_name FROM {cs}.schema_changes
                             WHERE source_table = $1 AND kind = 'rename_table' ORDER BY order_key"
                        ),
                        &[&cur.to_string()],
                    )
                    .await
                    .map_err(|e| pg_err("reading the schema-change log", e))?;
                let list = rows
                    .iter()
                    .filter_map(|r| {
                        let to: String = r.get(1);
                        let (db, t) = to.split_once('.')?;
                        Some((r.get::<_, i64>(0), TableId::new(db, t)))
                    })
                    .collect();
                self.table_renames.insert(cur.clone(), list);
            }
        }
        Ok(!self.table_renames[cur].is_empty())
    }
}

impl PgSink {
    /// SQL moving table `schema.name` (and the indexes named after it) to `new_schema.new_name`.
    async fn move_table_sql(
        &self,
        schema: &str,
        name: &str,
        new_schema: &str,
        new_name: &str,
    ) -> Result<String, ApplyError> {
        let mut sql = String::new();
        // Indexes named after the table follow it (a table created later under the old
        // name would collide with them).
        let idx = self
            .client
            .query(
                "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = $2",
                &[&schema, &name],
            )
            .await
            .map_err(|e| pg_err("reading the table's indexes", e))?;
        for r in idx {
            let i: String = r.get(0);
            if let Some(rest) = i.strip_prefix(name) {
                let renamed = names::pg_relation_name(&format!("{new_name}{rest}"));
                sql.push_str(&format!(
                    "ALTER INDEX {}.{} RENAME TO {};\n",
                    ident(schema),
                    ident(&i),
                    ident(&renamed)
                ));
            }
        }
        sql.push_str(&format!(
            "ALTER TABLE {}.{} RENAME TO {};\n",
            ident(schema),
            ident(name),
            ident(new_name)
        ));
        if new_schema != schema {
            sql.push_str(&format!(
                "ALTER TABLE {}.{} SET SCHEMA {};\n",
                ident(schema),
                ident(new_name),
                ident(new_schema)
            ));
        }
        Ok(sql)
    }
}

/// Renames of one table followed at most (a loop of renames ends here).
const MAX_RENAME_CHAIN: usize = 64;

/// One statement's actions in an order that applies them one by one with the statement's
/// meaning: MySQL resolves every clause of an `ALTER TABLE` against the table *before* it, so
/// drops go first (a `CHANGE b a` may reuse a dropped name), then renames — through temporary
/// names when one rename's new name is another's old one (`CHANGE a b, CHANGE b a` swaps, it
/// must not merge `a` into the live `b`), then the rest.
fn in_statement_order(actions: Vec<DdlAction>) -> Vec<DdlAction> {
    let (mut drops, mut renames, mut rest) = (Vec::new(), Vec::new(), Vec::new());
    for a in actions {
        match a {
            DdlAction::DropColumn { .. } => drops.push(a),
            DdlAction::RenameColumn { .. } => renames.push(a),
            _ => rest.push(a),
        }
    }
    let overlap = renames.iter().any(|a| {
        let DdlAction::RenameColumn { table, to, .. } = a else {
            return false;
        };
        renames.iter().any(|b| {
            matches!(b, DdlAction::RenameColumn { table: t2, from, .. }
                if t2 == table && from.eq_ignore_ascii_case(to))
        })
    });
    if overlap {
        let mut second = Vec::new();
        for (i, a) in std::mem::take(&mut renames).into_iter().enumerate() {
            if let DdlAction::RenameColumn { table, from, to } = a {
                let tmp = format!("tributary_swap_{i}");
                renames.push(DdlAction::RenameColumn {
                    table: table.clone(),
                    from,
                    to: tmp.clone(),
                });
                second.push(DdlAction::RenameColumn {
                    table,
                    from: tmp,
                    to,
                });
            }
        }
        renames.extend(second);
    }
    drops.into_iter().chain(renames).chain(rest).collect()
}

/// The name a column dropped in the source keeps in the warehouse (`on_drop_column = keep`):
/// out of the way of a column of the same name added later.
pub(crate) fn dropped_name(column: &str, sc: &SchemaChange) -> String {
    let tag = xxhash_rust::xxh3::xxh3_64(position_text(sc).as_bytes()) as u32;
    // Lower case: MySQL's column names are case-insensitive, the statement's spelling may
    // differ from the table's.
    format!("{}_dropped_{tag:08x}", column.to_lowercase())
}

fn find_col<'a>(t: &'a TargetTable, source: &str) -> Option<&'a crate::table::TCol> {
    t.cols.iter().find(|c| c.source == source).or_else(|| {
        t.cols
            .iter()
            .find(|c| c.source.eq_ignore_ascii_case(source))
    })
}

/// The action as it is logged and named in errors.
pub(crate) fn describe(a: &DdlAction) -> String {
    match a {
        DdlAction::RenameColumn { table, from, to } => {
            format!("{table}: RENAME COLUMN {from:?} TO {to:?}")
        }
        DdlAction::DropColumn { table, column } => format!("{table}: DROP COLUMN {column:?}"),
        DdlAction::RenameTable { from, to } => format!("RENAME TABLE {from} TO {to}"),
        DdlAction::Truncate { table } => format!("TRUNCATE {table}"),
        DdlAction::DropTable { table } => format!("DROP TABLE {table}"),
        DdlAction::CreateTable { table } => format!("CREATE TABLE {table}"),
    }
}

/// ` WHERE …` limiting a statement that ends rows (TRUNCATE, a dropped table created again)
/// to the rows written before it: a data topic read ahead of the schema-change topic may
/// have applied rows positioned after it (by the stale-update guard's `_source_pos`; no
/// limit when the statement has no position or the column is switched off).
fn before_statement(t: &TargetTable, sc: &SchemaChange) -> String {
    match &t.layout.current_meta.source_pos {
        Some(p) if !sc.source.file.is_empty() => format!(
            " WHERE {p} IS NULL OR {p} < {}",
            sc.source.order_key(),
            p = ident(p)
        ),
        _ => String::new(),
    }
}

/// Where the statement was in the source (the log's uniqueness and the messages).
fn position_text(sc: &SchemaChange) -> String {
    let s = &sc.source;
    format!(
        "{}:{}{}@{}",
        s.file,
        s.pos,
        s.gtid
            .as_deref()
            .map(|g| format!(" gtid {g}"))
            .unwrap_or_default(),
        s.ts_ms
    )
}

/// History identity of a statement's record: the position's order key, then a hash of the
/// statement and its position (stable: the same record when delivered again).
fn statement_id(sc: &SchemaChange, label: &str) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&sc.source.order_key().to_be_bytes());
    let h = xxhash_rust::xxh3::xxh3_64(
        format!("{label}\0{}\0{}\0{}", sc.db, sc.ddl, position_text(sc)).as_bytes(),
    );
    id[8..].copy_from_slice(&h.to_be_bytes());
    id
}

fn uuid_text(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
