//! Produce and consume throughput of the Kafka transport.
//!
//! `cargo run --release -p tributary-kafka --example kafka_bench [N]`
//! Uses `KAFKA_BROKERS` if set, otherwise starts a private tansu broker. Records are ~200-byte
//! Debezium-like JSON values with 16-byte keys over a 4-partition topic (`BENCH_PARTITIONS`).
//! Extra producer properties via `BENCH_PRODUCER_EXTRA="k=v,k=v"` (e.g.
//! `compression.type=lz4`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tributary_kafka::{
    ConsumerConfig, KafkaSink, KafkaSource, MemoryOffsetStore, OutRecord, ProducerConfig,
};

fn vm_hwm() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l["VmHWM:".len()..].trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let partitions: i32 = std::env::var("BENCH_PARTITIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let _broker;
    let brokers = match std::env::var("KAFKA_BROKERS") {
        Ok(b) => b,
        Err(_) => {
            let t = tributary_testkit::Tansu::start().expect("start tansu");
            let b = t.brokers();
            _broker = t;
            b
        }
    };
    let topic = format!("bench-{}", std::process::id());
    let mut pcfg = ProducerConfig::new(&brokers);
    pcfg.partitions_for_new_topics = partitions;
    if let Ok(extra) = std::env::var("BENCH_PRODUCER_EXTRA") {
        for kv in extra.split(',').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').expect("k=v");
            pcfg.extra.push((k.into(), v.into()));
        }
    }
    let sink = KafkaSink::new(pcfg).expect("producer");
    sink.ensure_topics(&[topic.clone()]).await.expect("topic");

    let make = |i: usize| {
        OutRecord {
        topic: topic.clone(),
        key: Some(format!("{{\"id\":{i:08}}}").into_bytes()),
        value: Some(
            format!(
                "{{\"before\":null,\"after\":{{\"id\":{i},\"user_id\":\"user{:06}\",\"account\":\"{:012}\",\"balance\":\"{}.{:02}\"}},\"source\":{{\"file\":\"bin.000001\",\"pos\":{},\"row\":0}},\"op\":\"c\",\"ts_ms\":1700000000000}}",
                i % 100_000,
                i * 7919 % 1_000_000_000_000,
                i % 100_000,
                i % 100,
                4 + i * 200
            )
            .into_bytes(),
        ),
    }
    };
    let sample = make(1);
    let bytes = sample.value.as_ref().unwrap().len() + sample.key.as_ref().unwrap().len();
    println!("records: {n}, ~{bytes} bytes each, {partitions} partitions, broker {brokers}");

    let chunk = 50_000;
    let t0 = Instant::now();
    let mut i = 0;
    while i < n {
        let m = chunk.min(n - i);
        let recs: Vec<OutRecord> = (i..i + m).map(make).collect();
        sink.send_batch(recs).await.expect("send_batch");
        i += m;
    }
    let dt = t0.elapsed();
    println!(
        "produce: {n} in {:.2} s = {:.0} events/s (all acknowledged, acks=all, idempotent)",
        dt.as_secs_f64(),
        n as f64 / dt.as_secs_f64()
    );
    println!("VmHWM after produce: {}", vm_hwm());

    let store = Arc::new(MemoryOffsetStore::new());
    let cfg = ConsumerConfig::new(
        &brokers,
        format!("bench-{}", std::process::id()),
        vec![topic],
    );
    let t0 = Instant::now();
    let mut src = KafkaSource::new(cfg, store.clone()).expect("consumer");
    let mut got = 0usize;
    let mut first: Option<Instant> = None;
    while got < n {
        let batch = src
            .next_batch(10_000, Duration::from_millis(100))
            .await
            .expect("next_batch");
        if batch.is_empty() {
            if t0.elapsed() > Duration::from_secs(600) {
                panic!("stalled at {got}");
            }
            continue;
        }
        first.get_or_insert_with(Instant::now);
        let guard = src.begin_apply().await;
        let mut cp: std::collections::BTreeMap<(String, i32), i64> = Default::default();
        for r in &batch {
            cp.insert((r.topic.clone(), r.partition), r.offset + 1);
        }
        let cp: Vec<(String, i32, i64)> = cp.into_iter().map(|((t, p), o)| (t, p, o)).collect();
        for (t, p, o) in &cp {
            store.set(t, *p, *o);
        }
        drop(guard);
        src.commit_advisory(&cp);
        got += batch.len();
    }
    let total = t0.elapsed();
    let steady = first.unwrap().elapsed();
    println!(
        "consume: {n} in {:.2} s incl. group join ({:.0} events/s), {:.2} s after the first record ({:.0} events/s)",
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64(),
        steady.as_secs_f64(),
        n as f64 / steady.as_secs_f64()
    );
    println!("peak RSS (VmHWM): {}", vm_hwm());
}
