//! Shared by the apply tests: raw records → one batch, the way the Kafka sink makes one.

use std::collections::BTreeMap;

use tributary_codec::decode::{Decoded, Decoder};
use tributary_model::{Batch, Checkpoint, KafkaCoord, RawRecord};

/// Decode `records` into one batch of pipeline `pipeline`: every change carries its Kafka
/// coordinates, tombstones and schema changes are consumed, and the checkpoint is the next
/// offset of every partition seen.
pub fn kafka_batch(dec: &mut Decoder, pipeline: &str, records: &[RawRecord]) -> Batch {
    let mut b = Batch {
        pipeline: pipeline.into(),
        ..Default::default()
    };
    let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for r in records {
        next.insert((r.topic.clone(), r.partition), r.offset + 1);
        match dec.decode(r).unwrap() {
            Decoded::Change(mut ev) => {
                ev.kafka = Some(KafkaCoord {
                    topic: r.topic.clone(),
                    partition: r.partition,
                    offset: r.offset,
                });
                b.events.push(ev)
            }
            Decoded::Tombstone | Decoded::SchemaChange(_) => {}
        }
    }
    b.checkpoint = Some(Checkpoint::Kafka(
        next.into_iter().map(|((t, p), o)| (t, p, o)).collect(),
    ));
    b
}
