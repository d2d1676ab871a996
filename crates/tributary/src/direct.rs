//! Direct mode: MySQL/MariaDB → PostgreSQL in one process, no Kafka.
//!
//! Exactly-once argument: the capture hands out batches that end on source-transaction
//! boundaries together with the binlog position after them (and the snapshot progress while a
//! snapshot runs); [`tributary_apply::PgSink::apply`] commits the batch's rows and that
//! position in one PostgreSQL transaction. On start the position is read back and capture
//! resumes from it. So a crash at any instant leaves PostgreSQL either before or after a whole
//! source transaction, never in between, and resuming neither skips nor repeats one. Should an
//! event come twice anyway (a snapshot resumed at a new consistent point re-reads rows), the
//! history table's unique event identity and the current table's position guard absorb it.
//!
//! SIGTERM/SIGINT: the batch being applied is finished and committed, then the process exits 0.
//!
//! `tributary resnapshot` ([`resnapshot`]) stores a starting point in a new binlog epoch and
//! runs this same loop: a purged or untrusted position is left by reading the tables again, and
//! the current rows the new snapshot did not read are deleted (with a DELETE in history) as each
//! table completes (see the capture's stream docs, "Binlog epochs").

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tracing::{info, warn};
use tributary_capture::{CaptureConfig, MySqlSource, SnapshotMode};
use tributary_model::{Checkpoint, ErrorClass};

use crate::config::{redact, Config};
use crate::metrics as m;

/// Capture settings from the pipeline config.
pub fn capture_config(cfg: &Config) -> Result<CaptureConfig> {
    let s = &cfg.source;
    Ok(CaptureConfig {
        url: s
            .url
            .clone()
            .context("no MySQL URL: set [source] url, --mysql-url or TRIBUTARY_MYSQL_URL")?,
        databases: s.databases.clone(),
        include_tables: s.include_tables.clone(),
        exclude_tables: s.exclude_tables.clone(),
        server_id: s.server_id,
        name: s.name.clone(),
        snapshot: match s.snapshot.as_str() {
            "initial" | "" => SnapshotMode::Initial,
            "never" => SnapshotMode::Never,
            "only" => SnapshotMode::Only,
            other => {
                anyhow::bail!("[source] snapshot = {other:?}: expected initial, never or only")
            }
        },
        chunk_size: s.snapshot_chunk_size.max(1),
        heartbeat: Duration::from_millis(500),
    })
}

/// Every database and table the configuration names must exist on the source: a typo would
/// otherwise capture nothing, silently.
async fn check_configured_tables_exist(cc: &CaptureConfig) -> Result<()> {
    use mysql_async::prelude::*;
    if cc.databases.is_empty() && cc.include_tables.is_empty() {
        return Ok(());
    }
    let target = tributary_capture::mysql_target(&cc.url)?;
    let mut conn = tributary_capture::mysqlconn::connect_target(&target)
        .await
        .with_context(|| format!("connecting to {}", redact(&cc.url)))?;
    let dbs: Vec<String> = conn
        .query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
        .await
        .context("listing the source's databases")?;
    let tables: Vec<(String, String)> = conn
        .query("SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE'")
        .await
        .context("listing the source's tables")?;
    let _ = conn.disconnect().await;
    for d in &cc.databases {
        if !dbs.contains(d) {
            anyhow::bail!(
                "[source] databases names {d:?}, which does not exist on {} (databases there: {})",
                redact(&cc.url),
                dbs.join(", ")
            );
        }
    }
    for t in &cc.include_tables {
        if !tables.iter().any(|(d, n)| format!("{d}.{n}") == *t) {
            anyhow::bail!(
                "[source] include_tables names {t:?}, which is not a table on {} (write it as db.table)",
                redact(&cc.url)
            );
        }
    }
    Ok(())
}

/// Start the source, retrying while the server is unreachable for at most
/// `[pipeline] max_outage_secs`.
pub async fn start_source(
    cc: &CaptureConfig,
    resume: Option<tributary_model::BinlogCheckpoint>,
) -> Result<MySqlSource> {
    let mut delay = Duration::from_millis(200);
    let started = std::time::Instant::now();
    let mut checked = false;
    loop {
        if !checked {
            match check_configured_tables_exist(cc).await {
                Ok(()) => checked = true,
                Err(e) if e.chain().any(|c| c.is::<mysql_async::Error>()) => {
                    // Unreachable: the start below reports and retries it.
                }
                Err(e) => return Err(e),
            }
        }
        match MySqlSource::start(cc.clone(), resume.clone()).await {
            Ok(s) => {
                if !checked {
                    check_configured_tables_exist(cc).await?;
                }
                return Ok(s);
            }
            Err(e) if e.is_transient() && started.elapsed() >= crate::sink::max_outage() => {
                return Err(e).context(format!(
                    "source {} unreachable for {:?} ([pipeline] max_outage_secs)",
                    redact(&cc.url),
                    started.elapsed()
                ));
            }
            Err(e) if e.is_transient() => {
                warn!(
                    "source {} unavailable: {e}; retrying in {delay:?}",
                    redact(&cc.url)
                );
                m::set_error(&e.to_string());
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e).context("starting capture"),
        }
    }
}

/// `tributary check`: what the source says about the stored position of the direct-mode
/// pipeline (`None`: fine, or nothing stored). `Some((fatal, text))` otherwise.
pub async fn check_stored_position(cfg: &Config) -> Result<Option<(bool, String)>> {
    let (Some(url), Some(pg_url)) = (&cfg.source.url, &cfg.sink.url) else {
        return Ok(None);
    };
    let pipeline = format!("mysql:{}", cfg.source.name);
    let pg = tributary_apply::PgSink::connect(pg_url, cfg.sink.apply.clone()).await?;
    let Some(cp) = pg.load_binlog_checkpoint(&pipeline).await? else {
        return Ok(None);
    };
    Ok(MySqlSource::stored_position_problem(url, &cp).await?)
}

/// The tables of the source the configuration captures, as `db.table`.
async fn captured_tables(cc: &CaptureConfig) -> Result<Vec<String>> {
    use mysql_async::prelude::*;
    let opts = mysql_async::Opts::from_url(&cc.url)
        .map_err(|e| anyhow::anyhow!("invalid MySQL URL {}: {e}", redact(&cc.url)))?;
    let mut conn = mysql_async::Conn::new(opts)
        .await
        .with_context(|| format!("connecting to {}", redact(&cc.url)))?;
    let tables: Vec<(String, String)> = conn
        .query("SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' ORDER BY 1, 2")
        .await
        .context("listing the source's tables")?;
    let _ = conn.disconnect().await;
    Ok(tables
        .into_iter()
        .filter(|(d, t)| cc.includes(d, t))
        .map(|(d, t)| format!("{d}.{t}"))
        .collect())
}

/// `tributary resnapshot [TABLE…]`: read the tables again and stream on (see `run`).
///
/// A re-snapshot is a new binlog epoch (the model's docs): its rows' stale-update keys are
/// above every stored row's, so they replace them, and when a table's snapshot completes apply
/// deletes the current rows the snapshot did not read (gone from the source) with a DELETE in
/// history — no ghost rows. Without tables: everything, and streaming starts at the new
/// snapshot's position (the way out of a purged position). With tables: those tables are read
/// at a new consistent point while streaming goes on from the stored position (the snapshot
/// resume path with every other table marked done); their stream events before the new point
/// are older than the snapshot rows and leave them alone.
pub async fn resnapshot(cfg: &Config, tables: &[String], until_caught_up: bool) -> Result<()> {
    let mut cfg = cfg.clone();
    cfg.source.snapshot = "initial".into();
    let cc = capture_config(&cfg)?;
    let pipeline = format!("mysql:{}", cc.name);
    let pg = crate::sink::connect_sink(cfg.postgres_url()?, cfg.sink.apply.clone()).await?;
    let prev = pg.load_binlog_checkpoint(&pipeline).await?;
    let epoch = prev.as_ref().map(|p| p.epoch).unwrap_or(0) + 1;
    if epoch > tributary_model::MAX_EPOCH {
        anyhow::bail!(
            "binlog epoch {epoch} is beyond the last one ({}): re-create the warehouse tables              and snapshot again",
            tributary_model::MAX_EPOCH
        );
    }
    let cp = if tables.is_empty() {
        // No position: a new start in the new epoch (`MySqlSource::start`).
        tributary_model::BinlogCheckpoint {
            epoch,
            ..Default::default()
        }
    } else {
        let prev = prev.context(
            "re-snapshotting single tables streams on from the stored position, and there is              none: run `tributary resnapshot` without table names",
        )?;
        if prev.snapshot.is_some() {
            anyhow::bail!(
                "a snapshot is in progress: let it finish (tributary run), or re-snapshot every                  table (tributary resnapshot without table names)"
            );
        }
        let all = captured_tables(&cc).await?;
        for t in tables {
            if !all.contains(t) {
                anyhow::bail!(
                    "resnapshot {t:?}: not a table this configuration captures (write db.table;                      captured: {})",
                    all.join(", ")
                );
            }
        }
        let done: Vec<&String> = all.iter().filter(|t| !tables.contains(t)).collect();
        let state = serde_json::json!({
            "position": {"file": prev.file, "pos": prev.pos},
            "tables_done": done, "current_table": null, "last_pk": null, "rows_done": 0,
            "total_done": 0,
        });
        tributary_model::BinlogCheckpoint {
            epoch,
            snapshot: Some(state.to_string()),
            ..prev
        }
    };
    info!(
        "resnapshot of {} in binlog epoch {epoch}{}",
        if tables.is_empty() {
            "every captured table".to_string()
        } else {
            tables.join(", ")
        },
        match &cp.file {
            f if f.is_empty() => ", then streaming from the new snapshot's position".to_string(),
            f => format!(", streaming on from {f}:{}", cp.pos),
        }
    );
    let mut pg = pg;
    pg.apply(&tributary_model::Batch {
        checkpoint: Some(Checkpoint::Binlog(cp)),
        pipeline: pipeline.clone(),
        ..Default::default()
    })
    .await
    .context("storing the re-snapshot's starting point")?;
    drop(pg);
    run(&cfg, until_caught_up).await
}

/// The `--until-caught-up` target: the server's binlog end when the run started.
pub async fn catch_up_target(src: &mut MySqlSource) -> Result<(String, u64)> {
    let l = src
        .lag()
        .await
        .context("reading the server's binlog position (SHOW BINARY LOG STATUS / SHOW MASTER STATUS; the capture user needs REPLICATION CLIENT)")?;
    Ok((l.server_file, l.server_pos))
}

/// Whether everything up to `target` is applied: the snapshot is finished and the last
/// committed checkpoint is at or past the target position.
pub fn reached(target: &(String, u64), batch: &tributary_model::Batch) -> bool {
    match &batch.checkpoint {
        Some(Checkpoint::Binlog(b)) => {
            b.snapshot.is_none()
                && (tributary_model::binlog_file_seq(&b.file), b.pos)
                    >= (tributary_model::binlog_file_seq(&target.0), target.1)
        }
        _ => false,
    }
}

pub async fn run(cfg: &Config, until_caught_up: bool) -> Result<()> {
    let cc = capture_config(cfg)?;
    let pg_url = cfg.postgres_url()?;
    let pipeline = format!("mysql:{}", cc.name);
    info!(
        "direct mode: {} → {} (pipeline {pipeline})",
        redact(&cc.url),
        redact(pg_url)
    );
    let mut pg = crate::sink::connect_sink(pg_url, cfg.sink.apply.clone()).await?;
    pg.dead_letter_encoder = Some(crate::dead_letter_encoder(&cc.name));
    let resume = pg.load_binlog_checkpoint(&pipeline).await?;
    match &resume {
        Some(r) => info!(
            "resuming from {}:{}{}",
            r.file,
            r.pos,
            if r.snapshot.is_some() {
                " (snapshot in progress)"
            } else {
                ""
            }
        ),
        None => info!(
            "no stored position: starting with a snapshot ({:?})",
            cc.snapshot
        ),
    }
    let mut src = start_source(&cc, resume).await?;
    let target = if until_caught_up {
        let t = catch_up_target(&mut src).await?;
        info!(
            "--until-caught-up: running until {}:{} is applied",
            t.0, t.1
        );
        Some(t)
    } else {
        None
    };

    // Capture runs one batch ahead of the apply: while PostgreSQL commits batch N, the
    // source reads and decodes batch N+1 (at most three batches in memory: the one being
    // applied, one queued, one being read). The position in PostgreSQL stays the only
    // resume point, so reading ahead changes nothing about exactly-once: what was read but
    // not committed is read again after a restart.
    let batch_size = cfg.pipeline.batch_size;
    let mut fetcher = Fetcher::spawn(src, batch_size);

    let shutdown = crate::shutdown_signal();
    tokio::pin!(shutdown);
    let started = Instant::now();
    let mut events = 0u64;
    let mut last_log = Instant::now();
    loop {
        let (batch, progress) = tokio::select! {
            b = fetcher.rx.recv() => match b {
                Some(b) => b,
                // The fetcher ended: it failed.
                None => return Err(fetcher.failure().await),
            },
            _ = &mut shutdown => {
                info!("signal received: stopping after the last committed batch");
                break;
            }
        };
        let t0 = Instant::now();
        let n = batch.events.len();
        if n > 0 || batch.checkpoint.is_some() || batch.restarts_txn {
            match pg.apply(&batch).await {
                Ok(stats) => {
                    events += n as u64;
                    m::record_batch(n, &stats, t0.elapsed());
                }
                Err(e) if e.is_transient() => {
                    // PostgreSQL went away: what it had not committed is gone — and with
                    // `synchronous_commit = off` a crash also loses commits it had
                    // acknowledged, so the position in memory may be ahead of the
                    // warehouse. The stored position is the truth: reconnect, read it, and
                    // restart the source there (never go on from memory: that leaves a gap).
                    crate::sink::note_lost_batch(&e, "resuming from the stored position");
                    fetcher.stop().await;
                    let resume = reload_position(&mut pg, &pipeline).await?;
                    info!("resuming from the stored position {}", describe(&resume));
                    let src = start_source(&cc, resume).await?;
                    fetcher = Fetcher::spawn(src, batch_size);
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            m::mark_ok();
        }
        if last_log.elapsed() > Duration::from_secs(5) {
            last_log = Instant::now();
            let rate = events as f64 / started.elapsed().as_secs_f64().max(1e-9);
            match progress {
                Some(p) => info!("snapshot: {p:?}; {events} events applied ({rate:.0}/s)"),
                None => info!("{events} events applied ({rate:.0}/s)"),
            }
        }
        if target.as_ref().is_some_and(|t| reached(t, &batch)) {
            let pos = match &batch.checkpoint {
                Some(Checkpoint::Binlog(b)) => format!("{}:{}", b.file, b.pos),
                _ => "-".into(),
            };
            info!(
                "caught up at {pos}: {events} events applied in {:.1}s",
                started.elapsed().as_secs_f64()
            );
            break;
        }
    }
    fetcher.stop().await;
    Ok(())
}

fn describe(p: &Option<tributary_model::BinlogCheckpoint>) -> String {
    match p {
        Some(r) => format!(
            "{}:{}{}",
            r.file,
            r.pos,
            if r.snapshot.is_some() {
                " (snapshot in progress)"
            } else {
                ""
            }
        ),
        None => "(none: a new snapshot)".into(),
    }
}

/// Reconnect to PostgreSQL (for at most `[pipeline] max_outage_secs`) and read the stored
/// position of `pipeline`.
async fn reload_position(
    pg: &mut tributary_apply::PgSink,
    pipeline: &str,
) -> Result<Option<tributary_model::BinlogCheckpoint>> {
    let mut clock = crate::sink::OutageClock::default();
    loop {
        let res = match pg.reconnect().await {
            Ok(()) => pg.load_binlog_checkpoint(pipeline).await,
            Err(e) => Err(e),
        };
        match res {
            Ok(p) => return Ok(p),
            Err(e) => clock
                .wait_or_give_up("PostgreSQL", e)
                .await
                .context("reading the stored position after an outage")?,
        }
    }
}

/// The capture task: reads batches one ahead of the apply.
struct Fetcher {
    rx: tokio::sync::mpsc::Receiver<(
        tributary_model::Batch,
        Option<tributary_capture::SnapshotProgress>,
    )>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Fetcher {
    fn spawn(mut src: MySqlSource, batch_size: usize) -> Fetcher {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let task = tokio::spawn(async move {
            let mut failing: Option<std::time::Instant> = None;
            loop {
                // `/health` turns "error" while a read waits far longer than a heartbeat.
                m::source_read_started();
                let r = src.next_batch(batch_size).await;
                m::source_read_done(r.is_ok());
                match r {
                    Ok(b) => {
                        failing = None;
                        let p = src.snapshot_progress();
                        if tx.send((b, p)).await.is_err() {
                            src.close().await;
                            return Ok(()); // the applier stopped
                        }
                    }
                    Err(e) if e.is_transient() => {
                        // The source reconnects by itself; this is only reached if it gave
                        // up a round.
                        let since = *failing.get_or_insert_with(std::time::Instant::now);
                        if since.elapsed() >= crate::sink::max_outage() {
                            return Err(anyhow::Error::new(e).context(format!(
                                "source unreachable for {:?} ([pipeline] max_outage_secs)",
                                since.elapsed()
                            )));
                        }
                        warn!("source: {e}; retrying");
                        m::set_error(&e.to_string());
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(e) => return Err(anyhow::Error::new(e).context("capture failed")),
                }
            }
        });
        Fetcher { rx, task }
    }

    /// Why the task ended (it only ends on its own by failing).
    async fn failure(&mut self) -> anyhow::Error {
        match (&mut self.task).await {
            Ok(Err(e)) => e,
            Ok(Ok(())) => anyhow::anyhow!("capture stopped unexpectedly"),
            Err(e) => anyhow::anyhow!("capture task failed: {e}"),
        }
    }

    /// Stop the task (its source connection is dropped with it).
    async fn stop(&mut self) {
        self.rx.close();
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}
