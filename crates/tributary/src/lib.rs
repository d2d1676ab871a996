//! # tributary — pipeline and command line
//!
//! The tree reads as the data flow:
//! `tributary-capture` (binlog → [`tributary_model::ChangeEvent`]) →
//! `tributary-codec` (Debezium JSON ⇄ events) → `tributary-kafka` (topics, consumer groups) →
//! `tributary-apply` (PostgreSQL current + history, exactly once) → this crate, which wires
//! them into pipelines:
//! * [`direct`] — MySQL → PostgreSQL in one process (the default, no Kafka);
//! * [`kafka_run`] — Kafka topics (Debezium format, ours or real Debezium's) → PostgreSQL;
//! * [`capture_cmd`] — MySQL → Debezium records in a JSONL file or Kafka;
//! * [`sink`] — records → batches → apply, shared by replay, the Kafka sink and `dlq retry`;
//! * [`status`], [`dlq`], [`demo`], [`metrics`], [`config`], [`records`].

pub mod capture_cmd;
pub mod config;
pub mod demo;
pub mod direct;
pub mod dlq;
pub mod kafka_run;
pub mod metrics;
pub mod records;
pub mod sink;
pub mod status;

/// Dead letters for events that fail in apply carry the event re-encoded as a Debezium
/// envelope (with schema), so `dlq retry` can decode and apply it again.
pub fn dead_letter_encoder(topic_prefix: &str) -> tributary_apply::DeadLetterEncoder {
    let opts = tributary_codec::encode::EncodeOptions {
        topic_prefix: topic_prefix.to_string(),
        ..Default::default()
    };
    std::sync::Arc::new(move |ev| {
        let recs = tributary_codec::encode::encode(ev, &opts);
        match recs.into_iter().next() {
            Some(r) => (r.key, r.value),
            None => (None, None),
        }
    })
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    let term = async {
        #[cfg(unix)]
        {
            if let Ok(mut s) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                s.recv().await;
            } else {
                std::future::pending::<()>().await;
            }
        }
        #[cfg(not(unix))]
        std::future::pending::<()>().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}
