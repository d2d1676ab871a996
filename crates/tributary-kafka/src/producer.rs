//! The producer: idempotent, keyed, batch-acknowledged.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::{apply_extra, KafkaError};

/// Producer settings. Build with [`ProducerConfig::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub brokers: String,
    pub client_id: String,
    /// Partition count of topics created by [`KafkaSink::ensure_topics`] (default 1).
    pub partitions_for_new_topics: i32,
    /// Replication factor of created topics (default 1).
    pub replication_factor: i16,
    /// Extra librdkafka properties, applied last (e.g. `compression.type=lz4`).
    pub extra: Vec<(String, String)>,
}

impl ProducerConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        ProducerConfig {
            brokers: brokers.into(),
            client_id: "tributary".into(),
            partitions_for_new_topics: 1,
            replication_factor: 1,
            extra: Vec::new(),
        }
    }
}

/// One record to publish. `value == None` is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// Idempotent producer (`enable.idempotence=true`, `acks=all`), records partitioned by key
/// with murmur2 like the Java client (so Debezium/Java consumers and we agree on the
/// partition of a key), per-key order preserved across retries.
pub struct KafkaSink {
    producer: FutureProducer<crate::security::SecurityContext>,
    admin: AdminClient<crate::security::SecurityContext>,
    /// TLS/SASL failures reported by either client (see [`crate::security::SecurityContext`]).
    security: crate::security::SecurityContext,
    cfg: ProducerConfig,
}

impl KafkaSink {
    pub fn new(cfg: ProducerConfig) -> Result<Self, KafkaError> {
        if cfg.brokers.trim().is_empty() {
            return Err(KafkaError::Config("no Kafka brokers configured".into()));
        }
        if cfg.partitions_for_new_topics < 1 || cfg.replication_factor < 1 {
            return Err(KafkaError::Config(
                "partitions_for_new_topics and replication_factor must be >= 1".into(),
            ));
        }
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &cfg.brokers)
            .set("client.id", &cfg.client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("batch.size", "1000000")
            .set("queue.buffering.max.messages", "500000")
            .set("queue.buffering.max.kbytes", "262144")
            .set("compression.type", "none")
            .set("message.timeout.ms", "60000");
        apply_extra(&mut c, &cfg.extra)?;
        let security = crate::security::SecurityContext::default();
        let producer: FutureProducer<crate::security::SecurityContext> =
            crate::security::create_with(&c, security.clone())?;
        // The admin client (topic creation) connects like the producer: same properties
        // (TLS, SASL), only its client id differs.
        let mut ac = ClientConfig::new();
        ac.set("bootstrap.servers", &cfg.brokers);
        apply_extra(&mut ac, &cfg.extra)?;
        ac.set("client.id", format!("{}-admin", cfg.client_id));
        let admin: AdminClient<crate::security::SecurityContext> =
            crate::security::create_with(&ac, security.clone())?;
        Ok(KafkaSink {
            producer,
            admin,
            security,
            cfg,
        })
    }

    /// Create the topics that do not exist yet (configured partition count and replication
    /// factor; "already exists" is fine) and wait until their metadata is visible.
    pub async fn ensure_topics(&self, topics: &[String]) -> Result<(), KafkaError> {
        self.ensure_topics_inner(topics)
            .await
            .map_err(|e| self.security.explain(e))
    }

    async fn ensure_topics_inner(&self, topics: &[String]) -> Result<(), KafkaError> {
        if topics.is_empty() {
            return Ok(());
        }
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|t| {
                NewTopic::new(
                    t,
                    self.cfg.partitions_for_new_topics,
                    TopicReplication::Fixed(self.cfg.replication_factor as i32),
                )
            })
            .collect();
        let opts = AdminOptions::new()
            .operation_timeout(Some(Duration::from_secs(10)))
            .request_timeout(Some(Duration::from_secs(15)));
        let results = self.admin.create_topics(&new, &opts).await?;
        for r in results {
            match r {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(KafkaError::CreateTopic { topic, code }),
            }
        }
        // Wait for the metadata to show every topic with partitions.
        let deadline = Instant::now() + Duration::from_secs(15);
        for t in topics {
            loop {
                let ok = self
                    .producer
                    .client()
                    .fetch_metadata(Some(t), Duration::from_secs(5))
                    .map(|md| {
                        md.topics().iter().any(|mt| {
                            mt.name() == t && mt.error().is_none() && !mt.partitions().is_empty()
                        })
                    })
                    .unwrap_or(false);
                if ok {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(KafkaError::Timeout(format!(
                        "topic {t} not visible in metadata after creation"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Number of partitions of a topic (metadata request).
    pub fn partition_count(&self, topic: &str) -> Result<usize, KafkaError> {
        let md = self
            .producer
            .client()
            .fetch_metadata(Some(topic), Duration::from_secs(10))?;
        Ok(md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map_or(0, |t| t.partitions().len()))
    }

    /// Send every record (keyed; one key always lands in one partition) and return only
    /// after all of them are acknowledged by the broker (`acks=all`). On error some records
    /// may have been written: the caller retries the batch, and the consumer side dedupes.
    pub async fn send_batch(&self, records: Vec<OutRecord>) -> Result<(), KafkaError> {
        self.send_batch_inner(records)
            .await
            .map_err(|e| self.security.explain(e))
    }

    async fn send_batch_inner(&self, records: Vec<OutRecord>) -> Result<(), KafkaError> {
        let mut futures = Vec::with_capacity(records.len());
        let mut first_err: Option<KafkaError> = None;
        for r in &records {
            let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&r.topic);
            if let Some(k) = &r.key {
                rec = rec.key(k.as_slice());
            }
            if let Some(v) = &r.value {
                rec = rec.payload(v.as_slice());
            }
            loop {
                match self.producer.send_result(rec) {
                    Ok(f) => {
                        futures.push(f);
                        break;
                    }
                    Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        rec = back;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    Err((e, _)) => {
                        first_err = Some(e.into());
                        break;
                    }
                }
            }
            if first_err.is_some() {
                break;
            }
        }
        for f in futures {
            match f.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    if first_err.is_none() {
                        first_err = Some(e.into());
                    }
                }
                Err(_) => {
                    if first_err.is_none() {
                        first_err = Some(KafkaError::Closed("producer dropped".into()));
                    }
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Wait until everything queued is delivered (at shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)?;
        Ok(())
    }
}
