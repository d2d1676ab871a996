//! `tributary dlq list|retry`: the dead-letter table `tributary.dead_letters`.
//!
//! Retry decodes each waiting record again and applies it with the same code path as the
//! Kafka sink — but *without* a checkpoint (the pipeline moved past it long ago). Applying is
//! idempotent (history's event identity), so retrying something that meanwhile got applied is
//! harmless. A record that fails again stays in the table with the new reason and its attempt
//! count increased; one that applies is marked resolved.

use anyhow::Result;
use tributary_apply::config::ident;
use tributary_model::RawRecord;

use crate::config::Config;
use crate::sink::{apply_retrying, RecordSink};

pub async fn list(cfg: &Config, all: bool) -> Result<()> {
    let pg = tributary_apply::connect(cfg.postgres_url()?).await?;
    let cs = ident(&cfg.sink.apply.control_schema);
    let rows = pg
        .query(
            &format!(
                "SELECT id, pipeline, topic, kafka_partition, kafka_offset, stage, reason, retry_count,
                        created_at::text, resolved_at IS NOT NULL, octet_length(record_value)
                 FROM {cs}.dead_letters {} ORDER BY id",
                if all { "" } else { "WHERE resolved_at IS NULL" }
            ),
            &[],
        )
        .await?;
    if rows.is_empty() {
        println!("no dead letters{}", if all { "" } else { " waiting" });
        return Ok(());
    }
    for r in rows {
        let id: i64 = r.get(0);
        let resolved: bool = r.get(9);
        let len: Option<i32> = r.get(10);
        println!(
            "#{id} {}{} {}[{}]@{} ({} stage, {} attempt(s), {} bytes, {})\n    {}",
            if resolved { "[resolved] " } else { "" },
            r.get::<_, String>(1),
            r.get::<_, String>(2),
            r.get::<_, i32>(3),
            r.get::<_, i64>(4),
            r.get::<_, String>(5),
            r.get::<_, i32>(7),
            len.unwrap_or(0),
            r.get::<_, String>(8),
            r.get::<_, String>(6),
        );
    }
    Ok(())
}

/// Returns how many dead letters are still unresolved after the retry.
pub async fn retry(cfg: &Config, only: Option<i64>) -> Result<u64> {
    let url = cfg.postgres_url()?;
    let cs = ident(&cfg.sink.apply.control_schema);
    let admin = tributary_apply::connect(url).await?;
    let rows = admin
        .query(
            &format!(
                "SELECT id, pipeline, topic, kafka_partition, kafka_offset, record_key, record_value, stage
                 FROM {cs}.dead_letters WHERE resolved_at IS NULL AND ($1::bigint IS NULL OR id = $1) ORDER BY id"
            ),
            &[&only],
        )
        .await?;
    let mut left = 0u64;
    let mut sinks: std::collections::HashMap<String, RecordSink> = Default::default();
    for r in rows {
        let id: i64 = r.get(0);
        let pipeline: String = r.get(1);
        let stage: String = r.get(7);
        if stage == tributary_apply::SCHEMA_STAGE {
            // A source DDL statement the warehouse refused (the statement and PostgreSQL's
            // reason are kept): it is not a record to decode; apply its effect by hand.
            left += 1;
            println!("#{id}: a source schema change the warehouse refused; apply its effect by hand (see dlq list for the statement and the reason)");
            continue;
        }
        if stage == "capture" {
            // The bytes of a binlog rows event tributary could not decode: nothing to decode
            // again here; the table is repaired by a re-snapshot (its reason is kept).
            left += 1;
            println!("#{id}: a binlog rows event capture could not decode; re-snapshot its table (see dlq list)");
            continue;
        }
        let rec = RawRecord {
            topic: r.get(2),
            partition: r.get(3),
            offset: r.get(4),
            key: r.get(5),
            value: r.get(6),
        };
        if !sinks.contains_key(&pipeline) {
            let mut s = RecordSink::connect(url, cfg.sink.apply.clone(), pipeline.clone()).await?;
            s.routing = crate::sink::Routing::from_config(cfg);
            sinks.insert(pipeline.clone(), s);
        }
        let sink = sinks.get_mut(&pipeline).unwrap();
        let mut batch = sink.decode(std::slice::from_ref(&rec))?;
        batch.checkpoint = None;
        // Resolved only when the change is now in the warehouse (applied, or found applied
        // before), or the record legitimately carries none (a tombstone, a schema change).
        // A dead letter stored without its bytes cannot be applied: it stays waiting.
        let carries_nothing = rec.value.is_none() && rec.key.is_none();
        let no_change = batch.events.is_empty() && batch.dead_letters.is_empty();
        let stats = if carries_nothing {
            Default::default()
        } else {
            apply_retrying(&mut sink.pg, &batch).await?
        };
        let resolved = stats.dead_lettered == 0
            && !carries_nothing
            && (stats.applied + stats.duplicates > 0 || no_change);
        if carries_nothing {
            admin
                .execute(
                    &format!(
                        "UPDATE {cs}.dead_letters SET last_retry_at = now(), retry_count = retry_count + 1,
                         reason = 'no record bytes stored: cannot be applied again (' || reason || ')'
                         WHERE id = $1 AND reason NOT LIKE 'no record bytes stored%'"
                    ),
                    &[&id],
                )
                .await?;
        }
        if resolved {
            admin
                .execute(
                    &format!(
                        "UPDATE {cs}.dead_letters SET resolved_at = now(), last_retry_at = now(),
                         retry_count = retry_count + 1 WHERE id = $1"
                    ),
                    &[&id],
                )
                .await?;
            println!(
                "#{id} {}[{}]@{}: applied",
                rec.topic, rec.partition, rec.offset
            );
        } else {
            left += 1;
            admin
                .execute(
                    &format!("UPDATE {cs}.dead_letters SET last_retry_at = now() WHERE id = $1"),
                    &[&id],
                )
                .await?;
            println!(
                "#{id} {}[{}]@{}: still failing (see dlq list)",
                rec.topic, rec.partition, rec.offset
            );
        }
    }
    Ok(left)
}
