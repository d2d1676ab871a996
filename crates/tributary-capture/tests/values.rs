//! Capture-side values against a real private MariaDB (tributary-testkit), no mocks:
//! text in every character set decodes to the same Unicode from the snapshot (read over the
//! SQL protocol) and from the binlog, by the server's own tables; ENUM/SET values without a
//! known label stop capture with an error naming table, column and value instead of
//! becoming "".

use std::time::{Duration, Instant};

use tributary_capture::{CaptureConfig, MySqlSource};
use tributary_model::{ChangeEvent, Op, Value};
use tributary_testkit::MariaDb;

fn start_db(extra: &[&str]) -> MariaDb {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut last = None;
    for _ in 0..3 {
        match MariaDb::start_with(extra) {
            Ok(db) => return db,
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("MariaDB did not start: {:?}", last.unwrap());
}

fn cfg(db: &MariaDb, dbname: &str) -> CaptureConfig {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "tributary_capture=info".into()),
        )
        .with_test_writer()
        .try_init();
    CaptureConfig {
        url: db.url(),
        databases: vec![dbname.into()],
        server_id: 61000 + db.server_id,
        name: "dbserver1".into(),
        heartbeat: Duration::from_millis(200),
        ..Default::default()
    }
}

/// Events until `n` of them arrived (snapshot first, then the stream).
async fn events(src: &mut MySqlSource, n: usize) -> Vec<ChangeEvent> {
    let t0 = Instant::now();
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "timeout: {} of {n} events",
            out.len()
        );
        out.extend(src.next_batch(1000).await.unwrap().events);
    }
    out
}

fn string(e: &ChangeEvent, col: &str) -> String {
    let i = e.schema.column_index(col).unwrap();
    match &e.row_image().unwrap()[i] {
        Value::String(s) => s.clone(),
        other => panic!("{col}: not a string: {other:?}"),
    }
}

/// (column, character set, text the row holds). Every sample includes characters where the
/// server's table differs from the usual one (MySQL latin1 = windows-1252, sjis 0x8160 = U+301C
/// WAVE DASH, koi8u 0x95 = U+2022, greek 0xA1 = U+02BD, gb2312 0xA1A4 = U+30FB, …).
const SAMPLES: &[(&str, &str, &str)] = &[
    ("c_latin1", "latin1", "€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ café ÿ"),
    ("c_cp1251", "cp1251", "Привет, мир! Ёё №"),
    ("c_sjis", "sjis", "こんにちは、世界〜ｱｲｳ"),
    ("c_gbk", "gbk", "你好，世界"),
    ("c_cp932", "cp932", "こんにちは～①"),
    ("c_ujis", "ujis", "日本語〜"),
    ("c_eucjpms", "eucjpms", "日本語～①"),
    ("c_gb2312", "gb2312", "中文・―"),
    ("c_big5", "big5", "繁體中文•"),
    ("c_euckr", "euckr", "안녕하세요"),
    ("c_latin2", "latin2", "Zażółć gęślą jaźń"),
    ("c_cp1250", "cp1250", "Příliš žluťoučký kůň „“ ‰"),
    ("c_cp1256", "cp1256", "مرحبا بالعالم"),
    ("c_cp1257", "cp1257", "Labas rytas ąčęėįšųūž"),
    ("c_koi8r", "koi8r", "Съешь же ещё"),
    ("c_koi8u", "koi8u", "Ґанок її •╝"),
    ("c_greek", "greek", "Καλημέρα ʽʼ"),
    ("c_hebrew", "hebrew", "שלום ‾"),
    ("c_latin5", "latin5", "Günaydın ĞŞİ"),
    ("c_latin7", "latin7", "Tere hommikust õäöü"),
    ("c_tis620", "tis620", "สวัสดี"),
    ("c_cp866", "cp866", "Привет ⁿ²"),
    ("c_macroman", "macroman", "Café ™ ƒ"),
    ("c_cp850", "cp850", "Ñandú ½"),
    ("c_cp852", "cp852", "Dobrý den ő"),
    ("c_dec8", "dec8", "Ça va"),
    ("c_hp8", "hp8", "Ça va"),
    ("c_swe7", "swe7", "ÅÄÖ åäö"),
    ("c_armscii8", "armscii8", "Բարեւ"),
    ("c_keybcs2", "keybcs2", "Ahoj čau"),
    ("c_macce", "macce", "Dzień dobry"),
    ("c_geostd8", "geostd8", "გამარჯობა"),
    ("c_ascii", "ascii", "plain ASCII"),
    ("c_utf8mb3", "utf8mb3", "ünïcödé ☃"),
    ("c_ucs2", "ucs2", "π Ω ☃"),
    ("c_utf16", "utf16", "😀 π"),
    ("c_utf16le", "utf16le", "😀 π"),
    ("c_utf32", "utf32", "😀 π"),
];

fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_in_every_charset_is_the_same_from_snapshot_and_stream() {
    let db = start_db(&[]);
    let mut cols: Vec<String> = SAMPLES
        .iter()
        .map(|(c, cs, _)| format!("{c} VARCHAR(60) CHARACTER SET {cs}"))
        .collect();
    // The other value paths: TEXT (blob), CHAR (string), ENUM and SET labels (TableMap
    // metadata in the column's character set).
    cols.push("c_text TEXT CHARACTER SET latin1".into());
    cols.push("c_char CHAR(10) CHARACTER SET cp1251".into());
    cols.push("c_enum ENUM('café','€uro','x') CHARACTER SET latin1".into());
    cols.push("c_set SET('Řeka','Ž','—') CHARACTER SET cp1250".into());
    let values: Vec<String> = SAMPLES
        .iter()
        .map(|(_, _, t)| sql_literal(t))
        .chain([
            sql_literal("„latin1 text€“"),
            sql_literal("Ёлка"),
            sql_literal("€uro"),
            sql_literal("Řeka,—"),
        ])
        .collect();
    let insert = |id: u32| format!("INSERT INTO csdb.t VALUES ({id}, {});", values.join(", "));
    db.sql(&format!(
        "SET sql_mode = 'STRICT_ALL_TABLES'; CREATE DATABASE csdb; \
         CREATE TABLE csdb.t (id INT PRIMARY KEY, {}); {}",
        cols.join(", "),
        insert(1)
    ))
    .unwrap();
    let mut src = MySqlSource::start(cfg(&db, "csdb"), None).await.unwrap();
    let snap = events(&mut src, 1).await;
    assert_eq!(snap[0].op, Op::Snapshot);
    db.sql(&format!(
        "SET sql_mode = 'STRICT_ALL_TABLES'; {}",
        insert(2)
    ))
    .unwrap();
    let all = events(&mut src, 1).await;
    let streamed = all
        .iter()
        .find(|e| e.op == Op::Insert)
        .expect("streamed insert");
    let mut wrong = Vec::new();
    let expected = SAMPLES.iter().map(|(c, _, t)| (*c, *t)).chain([
        ("c_text", "„latin1 text€“"),
        ("c_char", "Ёлка"),
        ("c_enum", "€uro"),
        ("c_set", "Řeka,—"),
    ]);
    for (col, text) in expected {
        let (s, b) = (string(&snap[0], col), string(streamed, col));
        if s != text || b != text {
            wrong.push(format!(
                "{col}: expected {text:?}, snapshot {s:?}, stream {b:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

/// Every byte 0x20..=0xFF of every single-byte character set: the stream decodes each byte to
/// what the server converts it to (the snapshot), except bytes the server has no character for
/// (it sends '?'), which the stream captures as U+FFFD (with a warning) instead of guessing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_byte_of_every_single_byte_charset_matches_the_server() {
    const SINGLE: &[&str] = &[
        "latin1", "latin2", "latin5", "latin7", "cp1250", "cp1251", "cp1256", "cp1257", "koi8r",
        "koi8u", "greek", "hebrew", "tis620", "cp866", "macroman", "dec8", "cp850", "cp852", "hp8",
        "swe7", "armscii8", "keybcs2", "macce", "geostd8", "ascii",
    ];
    let db = start_db(&[]);
    let bytes: Vec<u8> = (0x20u8..=0xFF).collect();
    let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
    let cols: Vec<String> = SINGLE
        .iter()
        .map(|cs| format!("c_{cs} VARCHAR(255) CHARACTER SET {cs}"))
        .collect();
    let insert = |id: u32| {
        format!(
            "INSERT INTO sb.t VALUES ({id}{});",
            SINGLE
                .iter()
                .map(|cs| format!(", CONVERT(_binary X'{hex}' USING {cs})"))
                .collect::<String>()
        )
    };
    db.sql(&format!(
        "CREATE DATABASE sb; CREATE TABLE sb.t (id INT PRIMARY KEY, {}); {}",
        cols.join(", "),
        insert(1)
    ))
    .unwrap();
    let mut src = MySqlSource::start(cfg(&db, "sb"), None).await.unwrap();
    let snap = events(&mut src, 1).await;
    db.sql(&insert(2)).unwrap();
    let all = events(&mut src, 1).await;
    let streamed = all.iter().find(|e| e.op == Op::Insert).unwrap();
    let mut wrong = Vec::new();
    for cs in SINGLE {
        let col = format!("c_{cs}");
        let (s, b) = (string(&snap[0], &col), string(streamed, &col));
        let (s, b): (Vec<char>, Vec<char>) = (s.chars().collect(), b.chars().collect());
        assert_eq!(b.len(), bytes.len(), "{cs}: one character per byte");
        assert_eq!(s.len(), bytes.len(), "{cs}: one character per byte");
        for ((byte, sc), bc) in bytes.iter().zip(&s).zip(&b) {
            let undefined = *sc == '?' && *byte != b'?' || *sc == '\u{FFFD}';
            let ok = if undefined {
                *bc == '\u{FFFD}'
            } else {
                sc == bc
            };
            if !ok {
                wrong.push(format!(
                    "{cs} byte {byte:#04X}: server {:?} (U+{:04X}), stream {:?} (U+{:04X})",
                    sc, *sc as u32, bc, *bc as u32
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} bytes differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Without `binlog_row_metadata=FULL` the ENUM/SET labels come from information_schema when
/// capture first meets the table (after each DDL). When capture is behind, the labels it reads
/// are newer than the row: here a label is added, used, and removed again before capture reads
/// the row. A value whose label is unknown must not be captured as "" (it used to be): its
/// rows event is dead-lettered with a reason naming table, column and value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enum_and_set_values_without_a_known_label_are_errors_not_empty_strings() {
    for (ddl, alter, alter_back, value, needle) in [
        (
            "e ENUM('a','b')",
            "ALTER TABLE ed.t MODIFY e ENUM('a','b','c')",
            "ALTER TABLE ed.t MODIFY e ENUM('a','b')",
            "'c'",
            "ENUM index 3",
        ),
        (
            "e SET('a','b')",
            "ALTER TABLE ed.t MODIFY e SET('a','b','c')",
            "ALTER TABLE ed.t MODIFY e SET('a','b')",
            "'a,c'",
            "SET bits 0x5",
        ),
    ] {
        let db = start_db(&["--binlog-row-metadata=MINIMAL"]);
        db.sql(&format!(
            "CREATE DATABASE ed; CREATE TABLE ed.t (id INT PRIMARY KEY, {ddl})"
        ))
        .unwrap();
        let mut src = MySqlSource::start(cfg(&db, "ed"), None).await.unwrap();
        // Reach the stream (empty snapshot), then let it see the table once.
        db.sql("INSERT INTO ed.t VALUES (1, 'b')").unwrap();
        let first = events(&mut src, 1).await;
        assert_eq!(string(&first[0], "e"), "b");
        // All of it before capture reads on: the row's TableMap is met after the last ALTER.
        db.sql(&format!(
            "{alter}; INSERT INTO ed.t VALUES (2, {value}); DELETE FROM ed.t WHERE id = 2; \
             {alter_back}"
        ))
        .unwrap();
        // The row cannot be decoded: it is not captured with a wrong value, and capture does
        // not stop for good — the rows event becomes a dead letter (stage `capture`) with its
        // bytes and a reason naming table, column and value, in the batch of its transaction.
        let t0 = Instant::now();
        let mut deleted = false;
        let dead = loop {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "no dead letter for {value}"
            );
            let b = src.next_batch(1000).await.unwrap();
            for e in &b.events {
                if e.op == Op::Insert {
                    panic!("{value} captured as {:?}", e.row_image());
                }
            }
            deleted |= b.events.iter().any(|e| e.op == Op::Delete);
            if let Some(d) = b.dead_letters.first() {
                assert!(b.checkpoint.is_some());
                break d.clone();
            }
        };
        let msg = &dead.reason;
        assert_eq!(dead.stage, "capture");
        assert!(
            dead.value.as_ref().is_some_and(|v| !v.is_empty()),
            "bytes kept"
        );
        assert!(
            msg.contains("ed.t") && msg.contains("column `e`") && msg.contains(needle),
            "{ddl}: {msg}"
        );
        // Capture goes on: a later valid row arrives.
        let _ = deleted;
        db.sql("INSERT INTO ed.t VALUES (3, 'a')").unwrap();
        let t0 = Instant::now();
        loop {
            assert!(t0.elapsed() < Duration::from_secs(30), "capture stopped");
            let b = src.next_batch(1000).await.unwrap();
            if b.events
                .iter()
                .any(|e| e.op == Op::Insert && string(e, "e") == "a")
            {
                break;
            }
        }
    }
}
