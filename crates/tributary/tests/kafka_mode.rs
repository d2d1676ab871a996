//! Kafka mode against a real Kafka-protocol broker (tansu): Debezium records on topics →
//! `tributary run --source kafka`, alone, as two group members sharing partitions, and
//! killed with `kill -9` in the middle.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tributary_testkit::{
    assert_final, golden, write_bank_workload, KillOnDrop, PgDb, RecordForm, Tansu,
};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tributary"));
    c.env("TRIBUTARY_LOG", "warn");
    c
}

fn publish(t: &Tansu, file: &std::path::Path, partitions: i32) {
    let out = bin()
        .arg("publish")
        .arg(file)
        .args([
            "--kafka-brokers",
            &t.brokers(),
            "--partitions",
            &partitions.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "publish: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sink_cmd(t: &Tansu, pg: &PgDb, topics: &str, group: &str) -> Command {
    let mut c = bin();
    c.args([
        "run",
        "--source",
        "kafka",
        "--kafka-brokers",
        &t.brokers(),
        "--topics",
        topics,
        "--group",
        group,
        "--postgres-url",
        &pg.url,
        "--batch-size",
        "4000",
    ]);
    c
}

fn count(pg: &PgDb, sql: &str) -> i64 {
    pg.query(sql)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(-1)
}

#[test]
fn golden_topics_until_caught_up_then_again_is_a_no_op() {
    let t = Tansu::start().unwrap();
    let pg = PgDb::new("kafka_golden").unwrap();
    publish(&t, &golden("envelope-schemas.jsonl"), 1);
    for round in 0..2 {
        let out = sink_cmd(&t, &pg, "^dbserver1.*", "warehouse")
            .arg("--until-caught-up")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_final(
            &pg,
            "typesdb",
            "all_types",
            "id",
            &[("c_bigint_u", "18446744073709551615", "-1")],
        );
        assert_final(&pg, "typesdb", "no_pk", "a, b", &[]);
        assert_eq!(
            count(&pg, "SELECT count(*) FROM typesdb.all_types_history"),
            11
        );
        assert_eq!(count(&pg, "SELECT count(*) FROM typesdb.no_pk_history"), 5);
    }
    let cp = pg.query("SELECT topic, next_offset FROM tributary.checkpoints WHERE pipeline = 'kafka:warehouse' ORDER BY topic").unwrap();
    assert_eq!(
        cp.trim(),
        "dbserver1\t13\ndbserver1.typesdb.all_types\t13\ndbserver1.typesdb.no_pk\t6"
    );
    // The history rows carry their Kafka coordinates.
    assert_eq!(
        pg.query("SELECT min(_kafka_offset), max(_kafka_offset), count(DISTINCT _kafka_topic) FROM typesdb.all_types_history").unwrap().trim(),
        "0\t12\t1"
    );
}

fn assert_bank_exact(pg: &PgDb, events: u64, final_rows: u64) {
    let gaps = pg
        .query(
            "SELECT _kafka_partition, o FROM (SELECT _kafka_partition, generate_series(0, max(_kafka_offset)) o
               FROM bankdb.bank_accounts_history GROUP BY 1) s
             WHERE NOT EXISTS (SELECT 1 FROM bankdb.bank_accounts_history h
                               WHERE h._kafka_partition = s._kafka_partition AND h._kafka_offset = s.o)
             ORDER BY 1, 2 LIMIT 5",
        )
        .unwrap();
    let cps = pg
        .query("SELECT pipeline, topic, kafka_partition, next_offset FROM tributary.checkpoints")
        .unwrap();
    assert!(
        gaps.trim().is_empty(),
        "offsets never applied (partition, offset): {gaps}\ncheckpoints: {cps}"
    );
    assert_eq!(
        pg.query("SELECT count(*), count(DISTINCT (_kafka_partition, _kafka_offset)) FROM bankdb.bank_accounts_history").unwrap().trim(),
        format!("{events}\t{events}"),
        "every event exactly once in history; checkpoints {cps}; per partition {}",
        pg.query("SELECT _kafka_partition, count(*), max(_kafka_offset) FROM bankdb.bank_accounts_history GROUP BY 1").unwrap()
    );
    assert_eq!(
        count(pg, "SELECT count(*) FROM bankdb.bank_accounts_current"),
        final_rows as i64
    );
    assert_eq!(
        count(pg, "SELECT count(*) FROM bankdb.bank_accounts_current WHERE account <> 'Bank ' || id || ' v2' OR id % 4 = 1"),
        0
    );
}

#[test]
fn two_sinks_in_one_group_share_four_partitions_exactly_once() {
    let t = Tansu::start().unwrap();
    let pg = PgDb::new("kafka_group").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bank.jsonl");
    let w = write_bank_workload(&f, 8_000, RecordForm::Flattened).unwrap();
    publish(&t, &f, 4);
    let spawn = || -> Child {
        sink_cmd(&t, &pg, "dbserver1.bankdb.bank_accounts", "pair")
            .arg("--until-caught-up")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn();
    // The second member joins while the first is consuming: a rebalance mid-stream.
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&pg, "SELECT count(*) FROM bankdb.bank_accounts_history") < 1
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let b = spawn();
    for (name, c) in [("a", a), ("b", b)] {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "sink {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_bank_exact(&pg, w.events, w.final_rows);
    let parts = pg
        .query("SELECT count(*) FROM tributary.checkpoints WHERE pipeline = 'kafka:pair'")
        .unwrap();
    assert_eq!(parts.trim(), "4");
}

#[test]
fn kill_9_of_a_kafka_sink_then_restart_is_exact() {
    let t = Tansu::start().unwrap();
    let pg = PgDb::new("kafka_kill").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bank.jsonl");
    let w = write_bank_workload(&f, 10_000, RecordForm::Envelope).unwrap();
    publish(&t, &f, 2);
    let mut kills = 0;
    for target in [2_000i64, 12_000] {
        let mut c = KillOnDrop(
            sink_cmd(&t, &pg, "dbserver1.bankdb.bank_accounts", "killed")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(90);
        while count(&pg, "SELECT count(*) FROM bankdb.bank_accounts_history") < target
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        if c.try_wait().unwrap().is_none() {
            c.kill().unwrap();
            kills += 1;
        }
        c.wait().unwrap();
    }
    assert_eq!(kills, 2);
    let n = count(&pg, "SELECT count(*) FROM bankdb.bank_accounts_history");
    assert!(n < w.events as i64, "killed before the end ({n})");
    let out = sink_cmd(&t, &pg, "dbserver1.bankdb.bank_accounts", "killed")
        .arg("--until-caught-up")
        .env("TRIBUTARY_LOG", "info,tributary_kafka=debug")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("final run log:\n{}", String::from_utf8_lossy(&out.stderr));
    assert_bank_exact(&pg, w.events, w.final_rows);
}
