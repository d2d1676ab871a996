//! `tributary status`, `check` and `verify`: what an operator asks before and while running.
//!
//! * status — per pipeline and partition: stored position, broker end offset and lag (Kafka,
//!   when brokers are configured) or binlog bytes behind (MySQL, when the source URL is
//!   configured; the server's position by `SHOW BINARY LOG STATUS` on MySQL ≥ 8.2, `SHOW
//!   MASTER STATUS` elsewhere — `tributary_capture::binlog_position`); per table:
//!   current/history row counts; dead letters waiting.
//! * check — the source's binlog settings and privileges (each problem with its fix) and
//!   that PostgreSQL is reachable. Exit code 2 when something is wrong.
//! * verify — source tables vs current tables: row counts, and for keyed tables the full
//!   primary-key sets. Exit code 3 on a difference.

use std::time::Duration;

use anyhow::{Context, Result};
use mysql_async::prelude::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tributary_apply::config::ident;

use crate::config::{redact, Config};

pub async fn status(cfg: &Config, json: bool) -> Result<()> {
    let url = cfg.postgres_url()?;
    let pg = tributary_apply::connect(url).await?;
    let cs = ident(&cfg.sink.apply.control_schema);
    let cps = pg
        .query(
            &format!(
                "SELECT pipeline, topic, kafka_partition, next_offset, position::text, updated_at::text
                 FROM {cs}.checkpoints ORDER BY 1, 2, 3"
            ),
            &[],
        )
        .await
        .context("reading tributary.checkpoints (has a pipeline run against this database?)")?;
    // Kafka end offsets, when brokers are configured.
    let consumer: Option<BaseConsumer> = cfg.source.brokers.as_ref().and_then(|b| {
        // The same properties (TLS, SASL) as every other Kafka client of this config.
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", b)
            .set("group.id", "tributary-status");
        match tributary_kafka::security::apply_properties(&mut c, &cfg.kafka_properties())
            .and_then(|_| tributary_kafka::security::create(&c))
        {
            Ok(consumer) => Some(consumer),
            Err(e) => {
                tracing::warn!(error = %e, "Kafka end offsets unavailable");
                None
            }
        }
    });
    let mut binlog_end: Option<(String, u64)> = None;
    if let Some(u) = &cfg.source.url {
        // SHOW BINARY LOG STATUS / SHOW MASTER STATUS, whichever the server has; an error is
        // shown (lag unknown), never taken for "no lag".
        match tributary_capture::binlog_position(u.as_str()).await {
            Ok(fp) => binlog_end = Some(fp),
            Err(e) => {
                tracing::warn!(error = %e, "reading the source's binlog position for the lag")
            }
        }
    }
    let mut positions = Vec::new();
    for r in &cps {
        let pipeline: String = r.get(0);
        let topic: String = r.get(1);
        let part: i32 = r.get(2);
        let next: Option<i64> = r.get(3);
        let pos: Option<String> = r.get(4);
        let updated: String = r.get(5);
        let mut lag = serde_json::Value::Null;
        if part >= 0 {
            if let (Some(c), Some(n)) = (&consumer, next) {
                if let Ok((_, hi)) = c.fetch_watermarks(&topic, part, Duration::from_secs(5)) {
                    lag = serde_json::json!(hi - n);
                }
            }
        } else if let (Some((f, p)), Some(pos)) = (&binlog_end, &pos) {
            if let Ok(j) = serde_json::from_str::<serde_json::Value>(pos) {
                if j["file"].as_str() == Some(f.as_str()) {
                    lag = serde_json::json!(format!(
                        "{} bytes",
                        p.saturating_sub(j["pos"].as_u64().unwrap_or(0))
                    ));
                } else {
                    lag = serde_json::json!(format!("behind: at {} of {f}", j["file"]));
                }
            }
        }
        positions.push(serde_json::json!({
            "pipeline": pipeline, "topic": topic, "partition": part, "next_offset": next,
            "position": pos.and_then(|p| serde_json::from_str::<serde_json::Value>(&p).ok()),
            "lag": lag, "updated_at": updated,
        }));
    }
    let tables = pg
        .query(
            &format!("SELECT source, target_schema, current_table, history_table FROM {cs}.tables ORDER BY 1"),
            &[],
        )
        .await?;
    let mut tjs = Vec::new();
    for t in &tables {
        let (src, schema, cur, hist): (String, String, String, String) =
            (t.get(0), t.get(1), t.get(2), t.get(3));
        let count = |tbl: &str| format!("SELECT count(*) FROM {}.{}", ident(&schema), ident(tbl));
        let c: i64 = pg
            .query_one(&count(&cur), &[])
            .await
            .map(|r| r.get(0))
            .unwrap_or(-1);
        let h: i64 = pg
            .query_one(&count(&hist), &[])
            .await
            .map(|r| r.get(0))
            .unwrap_or(-1);
        tjs.push(serde_json::json!({"source": src, "current": format!("{schema}.{cur}"), "current_rows": c,
                                    "history": format!("{schema}.{hist}"), "history_rows": h}));
    }
    let dlq: i64 = pg
        .query_one(
            &format!("SELECT count(*) FROM {cs}.dead_letters WHERE resolved_at IS NULL"),
            &[],
        )
        .await?
        .get(0);
    if json {
        println!(
            "{}",
            serde_json::json!({"positions": positions, "tables": tjs, "dead_letters": dlq})
        );
        return Ok(());
    }
    println!("warehouse {}", redact(url));
    println!("\nPOSITIONS");
    println!(
        "{:<28} {:<40} {:>4} {:>12} {:>14}  updated",
        "pipeline", "topic / binlog", "part", "next/pos", "lag"
    );
    for p in &positions {
        let where_ = if p["partition"].as_i64() == Some(-1) {
            format!(
                "{}:{}",
                p["position"]["file"].as_str().unwrap_or("?"),
                p["position"]["pos"]
            )
        } else {
            p["topic"].as_str().unwrap_or("").to_string()
        };
        let snap = if p["position"]["snapshot"].is_string() {
            " (snapshot running)"
        } else {
            ""
        };
        println!(
            "{:<28} {:<40} {:>4} {:>12} {:>14}  {}{snap}",
            p["pipeline"].as_str().unwrap_or(""),
            where_,
            p["partition"],
            p["next_offset"]
                .as_i64()
                .map(|n| n.to_string())
                .unwrap_or("-".into()),
            match &p["lag"] {
                serde_json::Value::Null => "?".to_string(),
                v => v.to_string().trim_matches('"').to_string(),
            },
            p["updated_at"].as_str().unwrap_or("")
        );
        // A Kafka offset that did not fit its log (see kafka_run / on_offset_out_of_range).
        if let Some(problem) = p["position"]["offset_problem"].as_str() {
            println!(
                "  ! {} at {}: {problem}",
                p["position"]["offset_problem_action"]
                    .as_str()
                    .unwrap_or(""),
                p["position"]["offset_problem_at"].as_str().unwrap_or("?")
            );
        }
    }
    println!("\nTABLES");
    println!(
        "{:<32} {:<44} {:>10} {:>10}",
        "source", "current", "rows", "history"
    );
    for t in &tjs {
        println!(
            "{:<32} {:<44} {:>10} {:>10}",
            t["source"].as_str().unwrap_or(""),
            t["current"].as_str().unwrap_or(""),
            t["current_rows"],
            t["history_rows"]
        );
    }
    println!(
        "\nDEAD LETTERS waiting: {dlq}{}",
        if dlq > 0 {
            "  (tributary dlq list / dlq retry)"
        } else {
            ""
        }
    );
    Ok(())
}

/// Returns whether everything is fine.
pub async fn check(cfg: &Config) -> Result<bool> {
    let mut ok = true;
    if let Some(u) = &cfg.source.url {
        match tributary_capture::check(u, cfg.source.server_id).await {
            Ok(rep) => {
                println!("source {}: {rep}", redact(u));
                ok &= rep.is_ok();
            }
            Err(e) => {
                println!("source {}: {e}", redact(u));
                ok = false;
            }
        }
    }
    if let Some(u) = &cfg.sink.url {
        match tributary_apply::connect(u).await {
            Ok(c) => {
                let v: String = c.query_one("SHOW server_version", &[]).await?.get(0);
                println!("sink {}: PostgreSQL {v} reachable", redact(u));
            }
            Err(e) => {
                println!("sink {}: {e}", redact(u));
                ok = false;
            }
        }
    }
    if cfg.source.url.is_none() && cfg.sink.url.is_none() {
        anyhow::bail!("nothing to check: give --mysql-url and/or --postgres-url (or -c FILE)");
    }
    // The stored position must still be on the source (purged, reset, another server).
    if ok && cfg.source.kind == crate::config::SourceKind::Mysql {
        match crate::direct::check_stored_position(cfg).await {
            Ok(None) => {}
            Ok(Some((fatal, text))) => {
                println!(
                    "{} stored position: {text}",
                    if fatal { "FAIL" } else { "WARN" }
                );
                ok &= !fatal;
            }
            Err(e) => println!("WARN  stored position not checked: {e:#}"),
        }
    }
    Ok(ok)
}

/// Returns whether source and warehouse agree.
pub async fn verify(cfg: &Config) -> Result<bool> {
    let url = cfg.postgres_url()?;
    let src = cfg
        .source
        .url
        .as_ref()
        .context("verify needs the source: --mysql-url or [source] url")?;
    let pg = tributary_apply::connect(url).await?;
    let mut my = mysql_async::Conn::from_url(src.as_str())
        .await
        .context("connecting to the source")?;
    let cs = ident(&cfg.sink.apply.control_schema);
    let tables = pg
        .query(
            &format!(
                "SELECT source, keyless, target_schema, current_table FROM {cs}.tables ORDER BY 1"
            ),
            &[],
        )
        .await?;
    let mut all_ok = true;
    for t in &tables {
        let source: String = t.get(0);
        let keyless: bool = t.get(1);
        let Some((db, table)) = source.split_once('.') else {
            continue;
        };
        let tid = tributary_model::TableId::new(db, table);
        let layout = cfg.sink.apply.layout(&tid);
        // Where tributary wrote the table, and what it called its columns, as recorded.
        let (schema, current): (String, String) = (t.get(2), t.get(3));
        let q_cur = format!("{}.{}", ident(&schema), ident(&current));
        let mapped =
            tributary_apply::names::load_column_names(&pg, &cfg.sink.apply.control_schema, &source)
                .await?;
        let mq = format!("{}.{}", mysql_ident(db), mysql_ident(table));
        let src_count: Option<u64> =
            match my.query_first(format!("SELECT COUNT(*) FROM {mq}")).await {
                Ok(c) => c,
                Err(e) => {
                    println!("{source}: cannot read the source table: {e}");
                    all_ok = false;
                    continue;
                }
            };
        let dst_count: i64 = pg
            .query_one(&format!("SELECT count(*) FROM {q_cur}"), &[])
            .await?
            .get(0);
        let counts_ok = src_count == Some(dst_count as u64);
        let mut keys_ok = true;
        if !keyless && counts_ok {
            // Compare the primary-key sets (as text, sorted the same way on both sides).
            let pk: Vec<String> = my
                .exec(
                    "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE
                     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
                    (db, table),
                )
                .await?;
            if !pk.is_empty() {
                let mcols: Vec<String> = pk
                    .iter()
                    .map(|c| format!("CAST({} AS CHAR)", mysql_ident(c)))
                    .collect();
                let pcols: Vec<String> = pk
                    .iter()
                    .map(|c| {
                        let target = mapped.get(c).or(layout.rename.get(c)).unwrap_or(c);
                        format!("{}::text", ident(target))
                    })
                    .collect();
                let mut a: Vec<String> = my
                    .query_map(
                        format!("SELECT CONCAT_WS('|', {}) FROM {mq}", mcols.join(", ")),
                        |s: String| s,
                    )
                    .await?;
                let mut b: Vec<String> = pg
                    .query(
                        &format!("SELECT concat_ws('|', {}) FROM {q_cur}", pcols.join(", ")),
                        &[],
                    )
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                a.sort();
                b.sort();
                keys_ok = a == b;
                if !keys_ok {
                    let only_src: Vec<_> = a
                        .iter()
                        .filter(|k| b.binary_search(k).is_err())
                        .take(5)
                        .collect();
                    let only_dst: Vec<_> = b
                        .iter()
                        .filter(|k| a.binary_search(k).is_err())
                        .take(5)
                        .collect();
                    println!("{source}: keys only in source {only_src:?}, only in warehouse {only_dst:?}");
                }
            }
        }
        let ok = counts_ok && keys_ok;
        all_ok &= ok;
        println!(
            "{source}: source rows {} / warehouse rows {dst_count}{} — {}",
            src_count.map(|c| c.to_string()).unwrap_or("?".into()),
            if keyless {
                " (keyless: counts only)"
            } else {
                ""
            },
            if ok { "OK" } else { "DIFFERENT" }
        );
    }
    let _ = my.disconnect().await;
    Ok(all_ok)
}

/// A MySQL identifier in back-ticks (back-ticks in it doubled).
fn mysql_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}
