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
