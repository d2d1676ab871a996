//! `tributary demo`, as the README tells users to run it (direct and `--via-kafka`): the
//! printed and queried warehouse equals the seed's final state, and running it twice works.

use std::process::Command;

fn demo(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .arg("demo")
        .args(args)
        .env("TRIBUTARY_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "demo {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn demo_db(sql: &str) -> String {
    let url = format!(
        "{}/tributary_demo",
        tributary_testkit::pg_base_url().rsplit_once('/').unwrap().0
    );
    tributary_testkit::psql(&url, sql).unwrap()
}

fn assert_seed_final_state(printed: &str, via_kafka: bool) {
    // The seed's last table: three accounts.
    for row in [
        "1 |    1001 | KB Bank 999-888-777666",
        "2 |    1002 | Shinhan Bank 987-654-321098",
        "4 |    1004 | Hana Bank 111-222-333444",
    ] {
        assert!(printed.contains(row), "missing {row:?} in:\n{printed}");
    }
    assert_eq!(
        demo_db("SELECT original_id, user_id, account FROM public.bank_accounts_current ORDER BY 1").trim(),
        "1\t1001\tKB Bank 999-888-777666\n2\t1002\tShinhan Bank 987-654-321098\n4\t1004\tHana Bank 111-222-333444"
    );
    // One history row per change: 3 snapshot reads, the update, the delete, the insert.
    assert_eq!(
        demo_db("SELECT change_type, original_id, account FROM public.bank_accounts_history ORDER BY change_type, original_id").trim(),
        "DELETE\t3\tWoori Bank 555-666-777888\nINSERT\t4\tHana Bank 111-222-333444\n\
         SNAPSHOT\t1\tKB Bank 123-456-789012\nSNAPSHOT\t2\tShinhan Bank 987-654-321098\n\
         SNAPSHOT\t3\tWoori Bank 555-666-777888\nUPDATE\t1\tKB Bank 999-888-777666"
    );
    // The seed's exact column layout.
    assert_eq!(
        demo_db("SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = 'bank_accounts_current'").trim(),
        "original_id,user_id,account,original_registered_at,last_updated_at"
    );
    assert_eq!(
        demo_db("SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = 'bank_accounts_history'").trim(),
        "original_id,user_id,account,change_type,change_timestamp,original_registered_at,kafka_offset,kafka_partition,kafka_topic,_event_id"
    );
    let kafka_rows = demo_db("SELECT count(*) FROM public.bank_accounts_history WHERE kafka_topic = 'dbserver1.bankdb.bank_accounts'");
    assert_eq!(kafka_rows.trim(), if via_kafka { "6" } else { "0" });
}

#[test]
fn demo_direct_and_via_kafka_reproduce_the_seed_twice() {
    let first = demo(&[]);
    assert_seed_final_state(&first, false);
    let second = demo(&[]);
    assert_seed_final_state(&second, false);
    let kafka = demo(&["--via-kafka"]);
    assert_seed_final_state(&kafka, true);
    assert!(kafka.contains("capture → Kafka (tansu) → sink"), "{kafka}");
}
