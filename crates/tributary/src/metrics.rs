//! Prometheus metrics and the health endpoint (`/metrics`, `/health` on `metrics_addr`).
//!
//! Metric names (all prefixed `tributary_`): `records_total`, `events_applied_total`,
//! `events_duplicate_total`, `dead_letters_total`, `batches_total`, `batch_seconds`
//! (histogram), `retries_total`, `records_skipped_total{kind}`, `lag_records{topic,partition}`,
//! `last_batch_timestamp_seconds`. Health is `ok` while batches keep committing (or the source
//! is idle) and `error` with the last error while retries are failing — and also while a read
//! from the source has been waiting for longer than [`SOURCE_STALL`]: an idle source still
//! answers every heartbeat (0.5 s in direct mode), so a read that long is a source outage the
//! capture is riding out by reconnecting (which logs, but returns nothing to report until it
//! gives up). The reason never contains a URL or credentials.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use tributary_apply::ApplyStats;

static LAST_OK: AtomicI64 = AtomicI64::new(0);
/// Unix milliseconds when the pending source read started (0: none pending).
static SOURCE_READ_SINCE: AtomicI64 = AtomicI64::new(0);

/// A source read pending longer than this turns `/health` to "error" (heartbeats come every
/// 0.5 s; a snapshot chunk or a batch of a large transaction takes far less).
pub const SOURCE_STALL: Duration = Duration::from_secs(10);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

/// A read from the source (binlog) starts.
pub fn source_read_started() {
    SOURCE_READ_SINCE.store(now_ms(), Ordering::Relaxed);
}

/// The pending source read returned (`ok`: with a batch or a heartbeat; progress itself is
/// marked by the pipeline once the batch is applied).
pub fn source_read_done(ok: bool) {
    let _ = ok;
    SOURCE_READ_SINCE.store(0, Ordering::Relaxed);
}
static LAST_ERROR: OnceLock<Mutex<Option<(i64, String)>>> = OnceLock::new();

fn now() -> i64 {
    now_ms() / 1000
}

pub fn record_batch(records: usize, s: &ApplyStats, took: Duration) {
    counter!("tributary_records_total").increment(records as u64);
    counter!("tributary_events_applied_total").increment(s.applied);
    counter!("tributary_events_duplicate_total").increment(s.duplicates);
    counter!("tributary_dead_letters_total").increment(s.dead_lettered);
    counter!("tributary_batches_total").increment(1);
    histogram!("tributary_batch_seconds").record(took.as_secs_f64());
    gauge!("tributary_last_batch_timestamp_seconds").set(now() as f64);
    LAST_OK.store(now(), Ordering::Relaxed);
}

pub fn counter_retries() {
    counter!("tributary_retries_total").increment(1);
}

pub fn counter_skipped(kind: &'static str) {
    counter!("tributary_records_skipped_total", "kind" => kind).increment(1);
}

pub fn set_lag(topic: &str, partition: i32, lag: i64) {
    gauge!("tributary_lag_records", "topic" => topic.to_string(), "partition" => partition.to_string())
        .set(lag as f64);
}

pub fn set_error(msg: &str) {
    // Served to anyone who can reach /health: never a credential, whatever the error quoted.
    let msg = tributary_apply::pgconn::redact_text(msg);
    *LAST_ERROR.get_or_init(Default::default).lock().unwrap() = Some((now(), msg));
}

pub fn mark_ok() {
    LAST_OK.store(now(), Ordering::Relaxed);
}

fn health() -> (bool, String) {
    let ok = LAST_OK.load(Ordering::Relaxed);
    let since = SOURCE_READ_SINCE.load(Ordering::Relaxed);
    if since > 0 && now_ms() - since > SOURCE_STALL.as_millis() as i64 {
        let secs = (now_ms() - since) / 1000;
        return (
            false,
            serde_json::json!({
                "status": "error",
                "error": format!("source: no batch and no heartbeat for {secs} s (unreachable or stalled; capture keeps reconnecting, see the log)"),
                "since": since / 1000,
                "last_progress": ok,
            })
            .to_string(),
        );
    }
    let err = LAST_ERROR
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .clone();
    match err {
        Some((t, msg)) if t >= ok => (
            false,
            serde_json::json!({"status": "error", "error": msg, "since": t}).to_string(),
        ),
        _ => (
            true,
            serde_json::json!({"status": "ok", "last_progress": ok}).to_string(),
        ),
    }
}

/// Install the recorder and serve `/metrics` and `/health` on `addr`.
pub async fn serve(addr: &str) -> anyhow::Result<()> {
    use axum::{routing::get, Router};
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| anyhow::anyhow!("installing metrics recorder: {e}"))?;
    let app = Router::new()
        .route("/metrics", get(move || std::future::ready(handle.render())))
        .route(
            "/health",
            get(|| async {
                let (ok, body) = health();
                let code = if ok {
                    axum::http::StatusCode::OK
                } else {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                };
                (code, body)
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("metrics_addr {addr}: {e}"))?;
    tracing::info!("metrics on http://{addr}/metrics, health on http://{addr}/health");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(())
}
