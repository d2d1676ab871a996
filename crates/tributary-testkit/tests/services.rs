//! The test services themselves start and answer (so a broken machine fails loudly here).
use tributary_testkit::*;

#[test]
fn mariadb_starts_with_binlog_and_utf8mb4() {
    let db = MariaDb::start().unwrap();
    let out = db
        .sql("SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@binlog_row_metadata, @@character_set_server")
        .unwrap();
    assert_eq!(out.trim(), "1\tROW\tFULL\tFULL\tutf8mb4");
}

#[test]
fn postgres_scratch_database_works() {
    let pg = PgDb::new("kit").unwrap();
    assert_eq!(pg.query("SELECT 1+1").unwrap().trim(), "2");
}

#[test]
fn tansu_listens() {
    let t = Tansu::start().unwrap();
    assert!(std::net::TcpStream::connect(t.brokers()).is_ok());
}

/// Oracle MySQL 9.7 starts with MySQL's defaults plus GTIDs, a fresh server uuid each time,
/// answers through its own client, and keeps its settings over a restart.
#[test]
fn mysql97_starts_with_defaults_gtids_and_a_password_user() {
    let Some(mut a) = mysql97_or_skip("mysql97_starts_with_defaults_gtids_and_a_password_user")
    else {
        return;
    };
    let v = a
        .sql("SELECT @@version, @@gtid_mode, @@binlog_row_metadata, @@binlog_format, @@log_bin")
        .unwrap();
    assert!(v.starts_with("9.7."), "{v}");
    assert!(v.contains("\tON\tMINIMAL\tROW\t1"), "{v}");
    let b = MariaDb::start_flavor_with(Flavor::Mysql97, &["--binlog-row-metadata=FULL"]).unwrap();
    let uuid = |d: &MariaDb| d.sql("SELECT @@server_uuid").unwrap();
    assert_ne!(uuid(&a), uuid(&b), "each server has its own uuid");
    assert_eq!(
        b.sql("SELECT @@binlog_row_metadata").unwrap().trim(),
        "FULL"
    );

    a.sql(&format!(
        "CREATE DATABASE s; CREATE TABLE s.t (id INT PRIMARY KEY); INSERT INTO s.t SELECT seq FROM {} q",
        a.seq(3, 1502)
    ))
    .unwrap();
    assert_eq!(
        a.sql("SELECT count(*), min(id), max(id) FROM s.t")
            .unwrap()
            .trim(),
        "1500\t3\t1502"
    );
    let (file, pos, gtids) = a.binlog_status().unwrap();
    assert!(file.starts_with("binlog.") && pos > 4, "{file} {pos}");
    assert!(gtids.contains(uuid(&a).trim()), "{gtids}");

    let url = a
        .create_user("cdc", "s3cret", "SELECT, REPLICATION CLIENT")
        .unwrap();
    assert_eq!(url, format!("mysql://cdc:s3cret@127.0.0.1:{}", a.port));
    assert_eq!(
        a.sql("SELECT plugin FROM mysql.user WHERE user = 'cdc'")
            .unwrap()
            .trim(),
        "caching_sha2_password"
    );
    a.restart().unwrap();
    assert_eq!(a.sql("SELECT count(*) FROM s.t").unwrap().trim(), "1500");
}

#[test]
fn seq_works_on_mariadb() {
    let db = MariaDb::start().unwrap();
    assert_eq!(
        db.sql(&format!(
            "SELECT count(*), sum(seq) FROM {} q",
            db.seq(1, 100)
        ))
        .unwrap()
        .trim(),
        "100\t5050"
    );
}
