#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use tributary_kafka::{
    ConsumerConfig, KafkaSink, KafkaSource, MemoryOffsetStore, OutRecord, ProducerConfig,
};
use tributary_model::RawRecord;

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    if std::env::var("RUST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

pub async fn sink(brokers: &str, partitions: i32) -> KafkaSink {
    let mut cfg = ProducerConfig::new(brokers);
    cfg.partitions_for_new_topics = partitions;
    KafkaSink::new(cfg).expect("producer")
}

/// Produce `n` keyed JSON records `key-{i}` / `{"i":i}` starting at `start`.
pub async fn produce(sink: &KafkaSink, topic: &str, start: usize, n: usize) {
    let recs: Vec<OutRecord> = (start..start + n)
        .map(|i| OutRecord {
            topic: topic.to_string(),
            key: Some(format!("key-{i}").into_bytes()),
            value: Some(format!("{{\"i\":{i}}}").into_bytes()),
        })
        .collect();
    sink.send_batch(recs).await.expect("send_batch");
}

pub fn source(
    brokers: &str,
    group: &str,
    topic: &str,
    store: Arc<MemoryOffsetStore>,
) -> KafkaSource {
    init_tracing();
    let mut cfg = ConsumerConfig::new(brokers, group, vec![topic.to_string()]);
    if let Ok(d) = std::env::var("TEST_KAFKA_DEBUG") {
        cfg.extra.push(("debug".into(), d));
    }
    KafkaSource::new(cfg, store).expect("consumer")
}

/// Java client's murmur2 (org.apache.kafka.common.utils.Utils.murmur2).
pub fn murmur2(data: &[u8]) -> i32 {
    let length = data.len() as i32;
    let seed: i32 = 0x9747b28cu32 as i32;
    let m: i32 = 0x5bd1e995;
    let r = 24;
    let mut h: i32 = seed ^ length;
    let length4 = length / 4;
    for i in 0..length4 as usize {
        let i4 = i * 4;
        let mut k: i32 = (data[i4] as i32 & 0xff)
            | ((data[i4 + 1] as i32 & 0xff) << 8)
            | ((data[i4 + 2] as i32 & 0xff) << 16)
            | ((data[i4 + 3] as i32 & 0xff) << 24);
        k = k.wrapping_mul(m);
        k ^= ((k as u32) >> r) as i32;
        k = k.wrapping_mul(m);
        h = h.wrapping_mul(m);
        h ^= k;
    }
    let base = (length & !3) as usize;
    let rem = length % 4;
    if rem == 3 {
        h ^= (data[base + 2] as i32 & 0xff) << 16;
    }
    if rem >= 2 {
        h ^= (data[base + 1] as i32 & 0xff) << 8;
    }
    if rem >= 1 {
        h ^= data[base] as i32 & 0xff;
        h = h.wrapping_mul(m);
    }
    h ^= ((h as u32) >> 13) as i32;
    h = h.wrapping_mul(m);
    h ^= ((h as u32) >> 15) as i32;
    h
}

pub fn java_partition(key: &[u8], n: i32) -> i32 {
    (murmur2(key) & 0x7fffffff) % n
}

/// Consume until `n` records were received or `timeout` elapsed; "applies" each batch by
/// advancing the store and the advisory commit.
pub async fn consume_n(
    src: &mut KafkaSource,
    store: &MemoryOffsetStore,
    n: usize,
    timeout: Duration,
) -> Vec<RawRecord> {
    let start = std::time::Instant::now();
    let mut all = Vec::new();
    while all.len() < n && start.elapsed() < timeout {
        let mut batch = match src.next_batch(500, Duration::from_millis(200)).await {
            Ok(b) => b,
            Err(e) => panic!("next_batch: {e}"),
        };
        let guard = src.begin_apply().await;
        guard.retain_current(&mut batch);
        let cp = checkpoint(&batch);
        for (t, p, next) in &cp {
            store.set(t, *p, *next);
        }
        drop(guard);
        src.commit_advisory(&cp);
        all.extend(batch);
    }
    all
}

/// Next offset per partition covered by a batch.
pub fn checkpoint(batch: &[RawRecord]) -> Vec<(String, i32, i64)> {
    let mut m: std::collections::BTreeMap<(String, i32), i64> = Default::default();
    for r in batch {
        let e = m.entry((r.topic.clone(), r.partition)).or_insert(0);
        *e = (*e).max(r.offset + 1);
    }
    m.into_iter().map(|((t, p), o)| (t, p, o)).collect()
}
