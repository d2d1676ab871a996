//! What the sink requires of tables it did not create, checked against a real PostgreSQL.

use tributary_apply::{ApplyConfig, ApplyError, PgSink};
use tributary_codec::decode::Decoder;
use tributary_model::{Batch, RawRecord};
use tributary_testkit::PgDb;

mod common;

fn batch(offset: i64, id: i64) -> Batch {
    let rec = RawRecord {
        topic: "srv.shop.items".into(),
        partition: 0,
        offset,
        key: Some(format!(r#"{{"id":{id}}}"#).into_bytes()),
        value: Some(
            format!(
                r#"{{"before":null,"after":{{"id":{id},"name":"n{id}"}},"source":{{"version":"3.6.3.Final","connector":"mysql","name":"srv","ts_ms":1758160342000,"snapshot":"false","db":"shop","table":"items","server_id":1,"gtid":null,"file":"bin.000001","pos":{},"row":0}},"op":"c","ts_ms":1758160342000}}"#,
                100 + offset
            )
            .into_bytes(),
        ),
    };
    common::kafka_batch(&mut Decoder::new(), "t", &[rec])
}

/// A history table whose `_event_id` is not unique cannot refuse a change applied before:
/// the sink refuses the table instead of applying into it — with `on_error = "stop"` as an
/// error, by default by dead-lettering that table's records (with the fix in the reason) —
/// and with the index, it applies.
#[tokio::test]
async fn a_history_table_without_a_unique_event_id_is_refused() {
    let db = PgDb::new("precond_a").unwrap();
    let mut sink = PgSink::connect(&db.url, ApplyConfig::default())
        .await
        .unwrap();
    sink.apply(&batch(0, 1)).await.unwrap();
    // The user recreates history without the unique constraint.
    db.query(
        "CREATE TABLE shop.h2 (LIKE shop.items_history INCLUDING DEFAULTS);
         DROP TABLE shop.items_history; ALTER TABLE shop.h2 RENAME TO items_history;",
    )
    .unwrap();
    let stop = ApplyConfig {
        on_error: tributary_apply::OnError::Stop,
        ..Default::default()
    };
    let mut sink = PgSink::connect(&db.url, stop).await.unwrap();
    let err = sink.apply(&batch(1, 2)).await.unwrap_err();
    assert!(
        matches!(&err, ApplyError::Definite(m) if m.contains("no unique index on _event_id")),
        "{err}"
    );
    let mut sink = PgSink::connect(&db.url, ApplyConfig::default())
        .await
        .unwrap();
    let s = sink.apply(&batch(1, 2)).await.unwrap();
    assert_eq!((s.applied, s.dead_lettered), (0, 1));
    let n = db.query("SELECT count(*) FROM shop.items_history").unwrap();
    assert_eq!(n.trim(), "0", "nothing applied into the unprotected table");
    let reason = db
        .query("SELECT stage, reason FROM tributary.dead_letters")
        .unwrap();
    assert!(
        reason.starts_with("ddl\t") && reason.contains("CREATE UNIQUE INDEX"),
        "{reason}"
    );

    db.query("CREATE UNIQUE INDEX ON shop.items_history (_event_id)")
        .unwrap();
    let s = sink.apply(&batch(1, 2)).await.unwrap();
    assert_eq!(s.applied, 1);
    let s = sink.apply(&batch(1, 2)).await.unwrap();
    assert_eq!((s.applied, s.duplicates), (0, 1));
}
