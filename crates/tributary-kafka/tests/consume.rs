//! Real broker (tansu via testkit) tests of the Kafka transport.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use tributary_kafka::{ConsumerConfig, KafkaSource, MemoryOffsetStore, OffsetFallback};
use tributary_model::ErrorClass;
use tributary_testkit::Tansu;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_consume_each_exactly_once_in_partition_order() {
    let broker = Tansu::start().unwrap();
    let topic = unique("t4");
    let sink = sink(&broker.brokers(), 4).await;
    sink.ensure_topics(&[topic.clone()]).await.unwrap();
    // idempotent: a second call tolerates AlreadyExists
    sink.ensure_topics(&[topic.clone()]).await.unwrap();
    assert_eq!(sink.partition_count(&topic).unwrap(), 4);
    let n = 2000;
    let t0 = Instant::now();
    produce(&sink, &topic, 0, n).await;
    eprintln!("produced {n} in {:?}", t0.elapsed());

    let store = Arc::new(MemoryOffsetStore::new());
    let mut src = source(&broker.brokers(), &unique("g"), &topic, store.clone());
    let t0 = Instant::now();
    let got = consume_n(&mut src, &store, n, Duration::from_secs(60)).await;
    eprintln!(
        "consumed {} in {:?} (incl. group join)",
        got.len(),
        t0.elapsed()
    );
    assert_eq!(got.len(), n);

    let mut keys = HashSet::new();
    let mut per_part: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for r in &got {
        let key = r.key.clone().unwrap();
        assert!(keys.insert(key.clone()), "duplicate key {:?}", r.key);
        // Java-compatible partitioning (murmur2).
        assert_eq!(r.partition, java_partition(&key, 4), "partition of {key:?}");
        per_part.entry(r.partition).or_default().push(r.offset);
    }
    assert_eq!(per_part.len(), 4, "all partitions used");
    for (p, offs) in &per_part {
        let expect: Vec<i64> = (0..offs.len() as i64).collect();
        assert_eq!(offs, &expect, "partition {p} offsets in order, no gap");
    }
    // Status.
    let mut pos = src.positions();
    pos.sort_by_key(|p| p.partition);
    assert_eq!(pos.len(), 4);
    for p in &pos {
        assert_eq!(p.applied_next, Some(per_part[&p.partition].len() as i64));
        assert_eq!(p.delivered_next, p.applied_next);
        if let Some(l) = p.lag {
            assert_eq!(l, 0);
        }
    }
    // Nothing more arrives.
    let more = src
        .next_batch(100, Duration::from_millis(500))
        .await
        .unwrap();
    assert!(more.is_empty());
}

fn commit_to_broker(brokers: &str, group: &str, topic: &str, partition: i32, offset: i64) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
        .unwrap();
    c.commit(&tpl, CommitMode::Sync).unwrap();
    let got = c
        .committed_offsets(tpl.clone(), Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        got.find_partition(topic, partition).unwrap().offset(),
        Offset::Offset(offset)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_offsets_win_over_broker_commits() {
    let broker = Tansu::start().unwrap();
    let topic = unique("t1");
    let sink = sink(&broker.brokers(), 1).await;
    sink.ensure_topics(&[topic.clone()]).await.unwrap();
    produce(&sink, &topic, 0, 100).await;
    let group = unique("g");
    commit_to_broker(&broker.brokers(), &group, &topic, 0, 80);

    // Store says 30 (< 80 committed on the broker): consumption starts at 30.
    let store = Arc::new(MemoryOffsetStore::new());
    store.set(&topic, 0, 30);
    let mut src = source(&broker.brokers(), &group, &topic, store.clone());
    let got = consume_n(&mut src, &store, 70, Duration::from_secs(60)).await;
    assert_eq!(got.len(), 70);
    assert_eq!(got[0].offset, 30);
    assert_eq!(got.last().unwrap().offset, 99);
    drop(src);

    // Store has nothing + BrokerCommitted fallback → the broker's committed offset (80).
    let group2 = unique("g");
    commit_to_broker(&broker.brokers(), &group2, &topic, 0, 80);
    let store2 = Arc::new(MemoryOffsetStore::new());
    let mut cfg = ConsumerConfig::new(broker.brokers(), &group2, vec![topic.clone()]);
    cfg.fallback = OffsetFallback::BrokerCommitted;
    let mut src2 = KafkaSource::new(cfg, store2.clone()).unwrap();
    let got = consume_n(&mut src2, &store2, 20, Duration::from_secs(60)).await;
    assert_eq!(got.len(), 20);
    assert_eq!(got[0].offset, 80);

    // Store has nothing + default fallback → earliest, even though the broker says 80.
    // (src2 leaves first: tansu 0.6 keeps a member that leaves during a join round as the
    // group leader forever, and the remaining member then never gets an assignment.)
    drop(src2);
    let store3 = Arc::new(MemoryOffsetStore::new());
    let mut src3 = source(&broker.brokers(), &group2, &topic, store3.clone());
    let got = consume_n(&mut src3, &store3, 100, Duration::from_secs(60)).await;
    assert_eq!(got.len(), 100);
    assert_eq!(got[0].offset, 0);
}

/// Applied records shared by all members: (partition, offset) → times applied.
type Applied = Arc<Mutex<HashMap<(i32, i64), u32>>>;

async fn member(
    mut src: KafkaSource,
    store: Arc<MemoryOffsetStore>,
    applied: Applied,
    stop: Arc<AtomicBool>,
    name: &'static str,
) -> (usize, u64) {
    let mut mine = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let mut batch = match src.next_batch(50, Duration::from_millis(100)).await {
            Ok(b) => b,
            Err(e) => {
                assert!(e.is_transient(), "{name}: {e}");
                continue;
            }
        };
        if batch.is_empty() {
            continue;
        }
        // The "transaction": under the apply lock, filter, check against the store, apply,
        // advance the store.
        let guard = src.begin_apply().await;
        let dropped = guard.retain_current(&mut batch);
        if dropped > 0 {
            eprintln!("{name}: fenced {dropped} records of revoked partitions");
        }
        tokio::time::sleep(Duration::from_millis(15)).await; // a slow apply
        {
            let mut a = applied.lock().unwrap();
            for r in &batch {
                // The store must agree this record was not applied yet.
                let next = store.get(&r.topic, r.partition).unwrap_or(0);
                assert!(
                    r.offset >= next,
                    "{name}: offset {} below stored {next}",
                    r.offset
                );
                *a.entry((r.partition, r.offset)).or_insert(0) += 1;
            }
        }
        let cp = checkpoint(&batch);
        for (t, p, next) in &cp {
            store.set(t, *p, *next);
        }
        mine += batch.len();
        drop(guard);
        src.commit_advisory(&cp);
    }
    let reb = src.rebalances();
    (mine, reb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_members_rebalance_without_loss_or_duplicate() {
    let broker = Tansu::start().unwrap();
    let topic = unique("t4r");
    let sink = sink(&broker.brokers(), 4).await;
    sink.ensure_topics(&[topic.clone()]).await.unwrap();
    let group = unique("g");
    let store = Arc::new(MemoryOffsetStore::new());
    let applied: Applied = Default::default();
    let stop = Arc::new(AtomicBool::new(false));

    produce(&sink, &topic, 0, 1000).await;
    let a = source(&broker.brokers(), &group, &topic, store.clone());
    let ha = tokio::spawn(member(a, store.clone(), applied.clone(), stop.clone(), "A"));
    // Wait until A is consuming, then add B while more records arrive.
    let t0 = Instant::now();
    while applied.lock().unwrap().len() < 300 {
        assert!(t0.elapsed() < Duration::from_secs(30), "A never consumed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b = source(&broker.brokers(), &group, &topic, store.clone());
    let hb = tokio::spawn(member(b, store.clone(), applied.clone(), stop.clone(), "B"));
    let total = 5000;
    for chunk in 0..40 {
        produce(&sink, &topic, 1000 + chunk * 100, 100).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t0 = Instant::now();
    while applied.lock().unwrap().len() < total && t0.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let any straggler (a duplicate) show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let (na, ra) = ha.await.unwrap();
    let (nb, rb) = hb.await.unwrap();
    eprintln!("A applied {na} ({ra} rebalance events), B applied {nb} ({rb})");
    let a = applied.lock().unwrap();
    let dups: Vec<_> = a.iter().filter(|(_, c)| **c > 1).collect();
    assert!(dups.is_empty(), "duplicates: {dups:?}");
    assert_eq!(a.len(), total, "every produced record applied");
    assert_eq!(na + nb, total);
    assert!(nb > 0, "B got partitions after the rebalance");
    assert!(ra >= 3, "A saw a rebalance (assign, revoke, assign)");
    // The store's offsets add up to what was produced.
    let sum: i64 = (0..4).map(|p| store.get(&topic, p).unwrap_or(0)).sum();
    assert_eq!(sum, total as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caught_up_after_consuming_end_offsets() {
    let broker = Tansu::start().unwrap();
    let topic = unique("tc");
    let empty = unique("te");
    let sink = sink(&broker.brokers(), 2).await;
    sink.ensure_topics(&[topic.clone(), empty.clone()])
        .await
        .unwrap();
    let k = 300;
    produce(&sink, &topic, 0, k).await;

    let store = Arc::new(MemoryOffsetStore::new());
    let mut src = source(&broker.brokers(), &unique("g"), &topic, store.clone());
    let quiet = Duration::from_millis(300);
    assert!(
        !src.caught_up(quiet).done,
        "not done before the first assignment"
    );
    let t0 = Instant::now();
    let mut n = 0;
    loop {
        let c = src.caught_up(quiet);
        if c.done {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "never caught up: {c:?}"
        );
        n += consume_n(&mut src, &store, 1, Duration::from_millis(300))
            .await
            .len();
    }
    eprintln!("caught up after {:?}", t0.elapsed());
    assert_eq!(n, k);
    let ends = src
        .end_offsets(&[(topic.clone(), 0), (topic.clone(), 1)])
        .unwrap();
    assert_eq!(ends.iter().sum::<i64>(), k as i64);
    let targets = src.caught_up_targets();
    assert_eq!(targets.iter().map(|t| t.2).sum::<i64>(), k as i64);

    // An empty topic is caught up as soon as the group settled.
    let store = Arc::new(MemoryOffsetStore::new());
    let src = source(&broker.brokers(), &unique("g"), &empty, store.clone());
    let t0 = Instant::now();
    while !src.caught_up(quiet).done {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{:?}",
            src.caught_up(quiet)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(src.assignment().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_without_partitions_is_caught_up_once_settled() {
    let broker = Tansu::start().unwrap();
    let topic = unique("t1m");
    let sink = sink(&broker.brokers(), 1).await;
    sink.ensure_topics(&[topic.clone()]).await.unwrap();
    produce(&sink, &topic, 0, 10).await;
    let group = unique("g");
    let store = Arc::new(MemoryOffsetStore::new());
    let mut a = source(&broker.brokers(), &group, &topic, store.clone());
    let got = consume_n(&mut a, &store, 10, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 10);
    let b = source(&broker.brokers(), &group, &topic, store.clone());
    let quiet = Duration::from_millis(500);
    let t0 = Instant::now();
    loop {
        // keep A polling (its loop is on its own thread anyway)
        let _ = a.next_batch(10, Duration::from_millis(50)).await;
        let (ca, cb) = (a.caught_up(quiet), b.caught_up(quiet));
        if ca.done && cb.done {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "A {ca:?} B {cb:?}");
    }
    assert_eq!(a.assignment().len() + b.assignment().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_death_is_transient() {
    let mut broker = Tansu::start().unwrap();
    let topic = unique("tk");
    let sink = sink(&broker.brokers(), 2).await;
    sink.ensure_topics(&[topic.clone()]).await.unwrap();
    produce(&sink, &topic, 0, 50).await;
    let store = Arc::new(MemoryOffsetStore::new());
    let mut src = source(&broker.brokers(), &unique("g"), &topic, store.clone());
    let got = consume_n(&mut src, &store, 50, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 50);

    broker.kill();
    let t0 = Instant::now();
    let (mut empties, mut errors) = (0, 0);
    while t0.elapsed() < Duration::from_secs(4) {
        match src.next_batch(100, Duration::from_millis(200)).await {
            Ok(b) => {
                assert!(b.is_empty());
                empties += 1;
            }
            Err(e) => {
                assert!(e.is_transient(), "definite error for a dead broker: {e}");
                errors += 1;
            }
        }
    }
    eprintln!("broker down: {empties} empty batches, {errors} transient errors");
    // The producer side: a send to a dead broker fails transiently (short timeout here).
    let mut cfg = tributary_kafka::ProducerConfig::new(broker.brokers());
    cfg.extra.push(("message.timeout.ms".into(), "1500".into()));
    let dead = tributary_kafka::KafkaSink::new(cfg).unwrap();
    let err = dead
        .send_batch(vec![tributary_kafka::OutRecord {
            topic: topic.clone(),
            key: Some(b"k".to_vec()),
            value: None,
        }])
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
}

/// Decoding ahead (the Kafka sink applies batch N after fetching N+1): batch N must be fenced
/// by the epochs it was fetched under. A rebalance between the two fetches revokes every
/// partition (eager range assignment) and gives some back; the newer fetch carries the new
/// epochs, so fencing batch N by "the latest epochs" would keep its records of the partitions
/// that came back — records the store may meanwhile have seen applied by the other member.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_fetched_before_a_rebalance_is_fenced_by_its_own_epochs() {
    let broker = Tansu::start().unwrap();
    let topic = unique("tfe");
    let sink = sink(&broker.brokers(), 4).await;
    sink.ensure_topics(&[topic.clone()]).await.unwrap();
    produce(&sink, &topic, 0, 400).await;
    let group = unique("g");
    let store = Arc::new(MemoryOffsetStore::new());
    let mut a = source(&broker.brokers(), &group, &topic, store.clone());
    // Batch N: fetched while A owns all four partitions.
    let t0 = Instant::now();
    let mut first = Vec::new();
    while first.is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(60), "A never consumed");
        first = a.next_batch(400, Duration::from_millis(200)).await.unwrap();
    }
    let first_epochs = a.fetched_epochs();
    let parts: HashSet<i32> = first.iter().map(|r| r.partition).collect();
    // B joins: A loses every partition and gets two back, under new epochs.
    let mut b = source(&broker.brokers(), &group, &topic, store.clone());
    let t0 = Instant::now();
    loop {
        assert!(t0.elapsed() < Duration::from_secs(60), "no rebalance");
        let _ = b.next_batch(10, Duration::from_millis(100)).await;
        if a.assignment().len() == 2 && b.assignment().len() == 2 {
            break;
        }
    }
    produce(&sink, &topic, 400, 400).await;
    // Batch N+1, fetched under the new epochs (A's partitions only).
    let t0 = Instant::now();
    let mut second = Vec::new();
    while second.is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "A fetched nothing after the rebalance"
        );
        second = a.next_batch(400, Duration::from_millis(200)).await.unwrap();
    }
    let mine: HashSet<i32> = a.assignment().into_iter().map(|(_, p)| p).collect();
    assert!(second.iter().all(|r| mine.contains(&r.partition)));
    let guard = a.begin_apply().await;
    // The old rule (latest epochs) would keep batch N's records of A's current partitions…
    let mut old_rule = first.clone();
    guard.retain_current(&mut old_rule);
    assert!(
        parts.iter().any(|p| mine.contains(p)),
        "batch N holds records of a partition A got back ({parts:?} vs {mine:?})"
    );
    assert!(
        !old_rule.is_empty(),
        "latest-epoch fencing keeps stale records"
    );
    // …fencing by batch N's own epochs drops all of them: every partition was revoked since.
    let mut batch_n = first.clone();
    let dropped = guard.retain_fetched(&first_epochs, &mut batch_n);
    assert_eq!(dropped, first.len());
    assert!(batch_n.is_empty());
    // Batch N+1 is current.
    let mut batch_n1 = second.clone();
    assert_eq!(guard.retain_fetched(&a.fetched_epochs(), &mut batch_n1), 0);
    assert_eq!(batch_n1.len(), second.len());
}

/// Back-pressure without pause/resume: a consumer whose application takes nothing holds at
/// most its buffer limits (librdkafka's partition queues stop fetching behind it), and once
/// the application consumes again every record arrives exactly once, in partition order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_application_bounds_the_buffer_and_then_gets_everything_once() {
    let broker = Tansu::start().unwrap();
    let topic = unique("bp");
    let sink = sink(&broker.brokers(), 4).await;
    sink.ensure_topics(&[topic.clone()]).await.unwrap();
    let (max_records, max_bytes) = KafkaSource::buffer_limits();
    let n = max_records * 3;
    for start in (0..n).step_by(20_000) {
        produce(&sink, &topic, start, 20_000.min(n - start)).await;
    }
    let store = Arc::new(MemoryOffsetStore::new());
    let mut src = source(&broker.brokers(), &unique("g"), &topic, store.clone());
    // Nothing is taken: wait until the buffer stops growing.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = (0, 0);
    let mut stable = 0;
    while stable < 10 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = src.buffered();
        assert!(
            now.0 <= max_records && now.1 <= max_bytes + 64 * 1024,
            "buffer {now:?} over its limits ({max_records}, {max_bytes})"
        );
        stable = if now == last && now.0 > 0 {
            stable + 1
        } else {
            0
        };
        last = now;
    }
    assert!(last.0 > 0, "nothing was fetched");
    assert!(last.0 < n, "the whole topic was buffered: no back-pressure");
    let got = consume_n(&mut src, &store, n, Duration::from_secs(120)).await;
    assert_eq!(got.len(), n);
    let mut per_part: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let mut keys = HashSet::new();
    for r in &got {
        assert!(keys.insert(r.key.clone().unwrap()), "duplicate {:?}", r.key);
        per_part.entry(r.partition).or_default().push(r.offset);
    }
    for (p, offs) in &per_part {
        let expect: Vec<i64> = (0..offs.len() as i64).collect();
        assert_eq!(offs, &expect, "partition {p}: in order, no gap");
    }
}
