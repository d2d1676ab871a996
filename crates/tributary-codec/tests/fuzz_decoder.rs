//! Property/fuzz test of the Debezium decoder (issue #10): ≥ 100,000 generated records —
//! real Debezium 3.6 records from `fixtures/golden/` (and a few hand-made seeds) mutated by a
//! seeded generator: byte flips, insertions, deletions and truncations; field deletions,
//! renames and duplications; JSON type swaps; huge and malformed numbers, scales, base64
//! decimals up to 80 KB, long strings, deep nesting, random coordinates.
//!
//! Properties, for every generated record:
//! * `Decoder::decode` returns (no panic, no stack overflow), `Ok` or a `DecodeError` with a
//!   field path and a reason;
//! * within [`budget`]: 50 ms + 200 ns per input byte (linear; the slowest record is
//!   printed) and the whole run within [`TOTAL`];
//! * a decoded change has row images aligned with its schema, and every decimal in it fits
//!   PostgreSQL `numeric` (≤ 131072 digits before the point, ≤ 16383 after);
//! * every schemaless value also goes through `resolve` against a random column kind, with the
//!   same no-panic / bounded-time / bounded-decimal properties.
//!
//! Reproduce: `TRIBUTARY_FUZZ_SEED=<seed> TRIBUTARY_FUZZ_CASES=<n> cargo test -p
//! tributary-codec --test fuzz_decoder -- --nocapture`; a panicking case prints its index and
//! input (truncated).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value as J};
use tributary_codec::{resolve, Decoded, Decoder};
use tributary_model::{ColumnKind, RawRecord, Value};

mod common;

const DEFAULT_CASES: usize = 100_000;
/// Time allowed for one record: a fixed part plus a part per input byte (decoding is linear;
/// 200 ns per byte leaves room for a few passes over the input in a debug build on a loaded
/// machine, and none for anything quadratic: a 1 MB record is allowed 250 ms).
const PER_RECORD: Duration = Duration::from_millis(50);
const PER_BYTE_NS: u64 = 200;

fn budget(bytes: usize) -> Duration {
    PER_RECORD + Duration::from_nanos(PER_BYTE_NS.saturating_mul(u64::try_from(bytes).unwrap()))
}
const TOTAL: Duration = Duration::from_secs(120);

/// SplitMix64: small, seedable, good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % u64::try_from(n).unwrap()) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
    /// Random bytes, random length below `max`.
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max);
        (0..n).map(|_| self.next().to_le_bytes()[0]).collect()
    }
}

/// Seeds: every golden record plus a few hand-made shapes the golden files lack.
fn seeds() -> Vec<RawRecord> {
    let mut out = Vec::new();
    for f in [
        "envelope-schemas.jsonl",
        "envelope-string-modes.jsonl",
        "flattened-rewrite.jsonl",
    ] {
        for line in common::load(f) {
            out.push(common::raw(&line));
        }
    }
    let mk = |topic: &str, key: Option<J>, value: J| RawRecord {
        topic: topic.into(),
        partition: 0,
        offset: 1,
        key: key.map(|k| serde_json::to_vec(&k).unwrap()),
        value: Some(serde_json::to_vec(&value).unwrap()),
    };
    out.push(mk(
        "dbserver1.bankdb.bank_accounts",
        Some(json!({"account_id": 1})),
        json!({"account_id": 1, "balance": "1500.25", "status": "open",
               "__op": "u", "__deleted": "false", "__source_ts_ms": 1_700_000_000_000i64,
               "__db": "bankdb", "__table": "bank_accounts", "__source_file": "b.000001",
               "__source_pos": 1234}),
    ));
    out.push(mk(
        "dbserver1.shop.t",
        None,
        json!({"before": null, "after": {"id": 1, "d": 12.5, "v": {"scale": 2, "value": "BNI="}},
               "op": "c", "source": {"db": "shop", "table": "t", "file": "b.1", "pos": 4,
               "row": 0, "server_id": 1}, "ts_ms": 1}),
    ));
    out.push(mk(
        "dbserver1.shop.t",
        None,
        json!({"schema": {"type": "struct", "fields": [
                  {"type": "int32", "field": "id"},
                  {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal",
                   "parameters": {"scale": "2", "connect.decimal.precision": "10"},
                   "optional": true, "field": "amount"},
                  {"type": "struct", "name": "io.debezium.data.VariableScaleDecimal",
                   "optional": true, "field": "v", "fields": [
                      {"type": "int32", "field": "scale"}, {"type": "bytes", "field": "value"}]},
                  {"type": "string", "name": "io.debezium.data.Enum",
                   "parameters": {"allowed": "a,b,c"}, "optional": true, "field": "e"},
                  {"type": "string", "name": "io.debezium.data.EnumSet",
                   "parameters": {"allowed": "r,w,x"}, "optional": true, "field": "s"},
                  {"type": "int64", "name": "io.debezium.time.Timestamp", "optional": true,
                   "field": "ts"},
                  {"type": "string", "name": "io.debezium.time.ZonedTimestamp",
                   "optional": true, "field": "z"},
                  {"type": "bytes", "name": "io.debezium.data.Bits",
                   "parameters": {"length": "10"}, "optional": true, "field": "b"}]},
               "payload": {"id": 1, "amount": "SZYC0g==", "v": {"scale": 3, "value": "/w=="},
                           "e": "b", "s": "r,x", "ts": 1_700_000_000_000i64,
                           "z": "2038-01-19T03:14:07.999Z", "b": "qgI=",
                           "__db": "shop", "__table": "t"}}),
    ));
    out
}

/// Values worth planting anywhere.
fn hostile_value(rng: &mut Rng) -> J {
    let n = |t: &str| J::Number(serde_json::from_str(t).unwrap());
    // Sizes: usually small, one time in 16 up to past PostgreSQL's numeric limits (the big
    // ones dominate the run time; hostile_values.rs has a test for each limit).
    let big = rng.chance(16);
    let size = |rng: &mut Rng, large: usize| rng.below(if big { large } else { 2_000 }) + 1;
    match rng.below(26) {
        0 => J::Null,
        1 => J::Bool(rng.chance(2)),
        2 => json!(-1),
        3 => json!(i64::MAX),
        4 => json!(i64::MIN),
        5 => json!(u64::MAX),
        6 => n("4294967297"),
        7 => n("1e999999999"),
        8 => n("-1.5e-999999999"),
        9 => n("123456789012345678901234567890123456789.000001"),
        10 => n(&"9".repeat(size(rng, 200_000))),
        11 => json!("1500000000"),
        12 => json!("-2"),
        13 => J::String("x".repeat(size(rng, 300_000))),
        14 => {
            let n = size(rng, 80_000);
            J::String(base64::engine::general_purpose::STANDARD.encode(rng.bytes(n)))
        }
        15 => J::String(base64::engine::general_purpose::STANDARD.encode(rng.bytes(20))),
        16 => json!("2020-02-31T25:61:61+99:99"),
        17 => json!("é\u{0}\u{FFFF}\"\\"),
        18 => json!({"scale": 1_500_000_000u64, "value": "AQ=="}),
        19 => {
            let n = size(rng, 70_000);
            json!({"scale": rng.below(20_000), "value":
                base64::engine::general_purpose::STANDARD.encode(rng.bytes(n))})
        }
        20 => {
            let depth = rng.below(300);
            let mut v = json!(1);
            for _ in 0..depth {
                v = json!([v]);
            }
            v
        }
        21 => json!([]),
        22 => json!({}),
        23 => n("0.0"),
        24 => n("-0"),
        _ => json!(rng.next() as f64 / 3.0),
    }
}

fn is_container(v: &J) -> bool {
    matches!(v, J::Object(_) | J::Array(_))
}

/// Nodes of a JSON tree (only objects and arrays with `containers`).
fn count(v: &J, containers: bool) -> usize {
    let here = usize::from(!containers || is_container(v));
    here + match v {
        J::Object(m) => m.values().map(|x| count(x, containers)).sum(),
        J::Array(a) => a.iter().map(|x| count(x, containers)).sum(),
        _ => 0,
    }
}

/// The `k`-th node in pre-order (counting only containers with `containers`).
fn nth<'a>(v: &'a mut J, k: &mut usize, containers: bool) -> Option<&'a mut J> {
    if !containers || is_container(v) {
        if *k == 0 {
            return Some(v);
        }
        *k -= 1;
    }
    match v {
        J::Object(m) => {
            for x in m.values_mut() {
                if let Some(r) = nth(x, k, containers) {
                    return Some(r);
                }
            }
            None
        }
        J::Array(a) => {
            for x in a.iter_mut() {
                if let Some(r) = nth(x, k, containers) {
                    return Some(r);
                }
            }
            None
        }
        _ => None,
    }
}

/// A random node (a random object or array with `containers`; the root if there is none).
fn random_node<'a>(rng: &mut Rng, doc: &'a mut J, containers: bool) -> &'a mut J {
    let n = count(doc, containers);
    if n == 0 {
        return doc;
    }
    let mut k = rng.below(n);
    nth(doc, &mut k, containers).expect("k < n names a node")
}

/// One structural mutation of a JSON document.
fn mutate_json(rng: &mut Rng, doc: &mut J) {
    match rng.below(9) {
        // Delete a child of an object or array.
        0 => match random_node(rng, doc, true) {
            J::Object(m) if !m.is_empty() => {
                let i = rng.below(m.len());
                if let Some(k) = m.keys().nth(i).cloned() {
                    m.shift_remove(&k);
                }
            }
            J::Array(a) if !a.is_empty() => {
                let i = rng.below(a.len());
                a.remove(i);
            }
            _ => {}
        },
        // Rename a key (or add a metadata-looking one).
        1 => {
            if let J::Object(m) = random_node(rng, doc, true) {
                if let Some(k) = m.keys().nth(rng.below(m.len().max(1))).cloned() {
                    let v = m.shift_remove(&k).unwrap();
                    let names = [
                        "__op",
                        "__deleted",
                        "op",
                        "schema",
                        "payload",
                        "after",
                        "",
                        "__db",
                    ];
                    let name = if rng.chance(2) {
                        rng.pick(&names).to_string()
                    } else {
                        format!("{k}{}", rng.below(10))
                    };
                    m.insert(name, v);
                }
            }
        }
        // Duplicate an object's entries many times under new names (wide rows).
        2 => {
            if let J::Object(m) = random_node(rng, doc, true) {
                let first = m.iter().next().map(|(k, v)| (k.clone(), v.clone()));
                // Only scalar values are multiplied (a copied subtree would be a huge record).
                if let Some((k, v)) = first.filter(|(_, v)| !is_container(v)) {
                    let n = if rng.chance(8) { 2_000 } else { 50 };
                    for i in 0..rng.below(n) {
                        m.insert(format!("{k}_{i}"), v.clone());
                    }
                }
            }
        }
        // Numbers/strings: neighbouring or extreme values of the same type.
        3 => {
            let node = random_node(rng, doc, false);
            *node = match &*node {
                J::Number(n) => {
                    let t = n.as_str();
                    J::Number(
                        serde_json::from_str::<serde_json::Number>(
                            rng.pick(&[
                                format!("-{t}"),
                                format!("{t}0000000000000000000000"),
                                format!("{t}e308"),
                                format!("{t}.5"),
                                "0".to_string(),
                            ])
                            .as_str(),
                        )
                        .unwrap_or_else(|_| serde_json::Number::from(0)),
                    )
                }
                J::String(s) => {
                    let mut b = s.clone().into_bytes();
                    match rng.below(4) {
                        0 => b.extend_from_slice(&b.clone()),
                        1 => b.truncate(rng.below(b.len() + 1)),
                        2 => {
                            let c = *rng.pick(&["-", "=", ",", "9", "\u{0}", "é"]);
                            b.splice(0..0, c.bytes());
                        }
                        _ => b = b.repeat(rng.below(50) + 1),
                    }
                    // Long enough to matter, short enough to keep the run fast (the 64 MiB
                    // limit has its own test in hostile_values.rs).
                    b.truncate(if rng.chance(16) { 2 << 20 } else { 4_096 });
                    // Keep it a valid string (a cut may split a character).
                    J::String(String::from_utf8_lossy(&b).into_owned())
                }
                other => other.clone(),
            };
        }
        // Anything else: a hostile value (type swap).
        _ => {
            let v = hostile_value(rng);
            *random_node(rng, doc, false) = v;
        }
    }
}

/// One byte-level mutation.
fn mutate_bytes(rng: &mut Rng, b: &mut Vec<u8>) {
    if b.is_empty() {
        b.extend_from_slice(b"{}");
    }
    let i = rng.below(b.len());
    const SPECIAL: &[u8] = b"{}[]\",:\\-+.eE0123456789 \ttfn\x00\xff\xc3";
    match rng.below(6) {
        0 => b[i] ^= 1 << rng.below(8),
        1 => b[i] = *rng.pick(SPECIAL),
        2 => {
            let end = (i + 1 + rng.below(64)).min(b.len());
            b.drain(i..end);
        }
        3 => {
            let ins: Vec<u8> = (0..1 + rng.below(8)).map(|_| *rng.pick(SPECIAL)).collect();
            b.splice(i..i, ins);
        }
        4 => b.truncate(i),
        _ => {
            let end = (i + 1 + rng.below(256)).min(b.len());
            let dup = b[i..end].to_vec();
            b.splice(i..i, dup);
        }
    }
}

fn check_decimal(d: &str, what: &str) {
    let d = d.strip_prefix('-').unwrap_or(d);
    let (int, frac) = d.split_once('.').unwrap_or((d, ""));
    assert!(
        int.trim_start_matches('0').len() <= 131_072 && frac.len() <= 16_383,
        "{what}: decimal beyond PostgreSQL numeric ({} / {} digits)",
        int.len(),
        frac.len()
    );
}

fn check_value(v: &Value, what: &str) {
    if let Value::Decimal(d) = v {
        check_decimal(d, what);
    }
}

fn kinds() -> Vec<ColumnKind> {
    vec![
        ColumnKind::Bool,
        ColumnKind::Int {
            bits: 64,
            unsigned: true,
        },
        ColumnKind::Int {
            bits: 16,
            unsigned: false,
        },
        ColumnKind::Double,
        ColumnKind::Decimal {
            precision: Some(10),
            scale: Some(2),
        },
        ColumnKind::Decimal {
            precision: None,
            scale: None,
        },
        ColumnKind::String { max_len: None },
        ColumnKind::Enum {
            allowed: vec!["a".into(), "b".into()],
        },
        ColumnKind::Set {
            allowed: vec!["r".into(), "w".into()],
        },
        ColumnKind::Bytes { max_len: None },
        ColumnKind::Bits { len: 10 },
        ColumnKind::Date,
        ColumnKind::Time { fsp: 6 },
        ColumnKind::DateTime { fsp: 3 },
        ColumnKind::Timestamp { fsp: 6 },
        ColumnKind::Year,
        ColumnKind::Json,
        ColumnKind::Unknown,
    ]
}

fn short(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    s.chars().take(600).collect()
}

#[derive(Default)]
struct Stats {
    ok: usize,
    err: usize,
    resolved: usize,
    slowest: (Duration, usize),
    biggest: usize,
    in_decode: Duration,
    in_resolve: Duration,
    bytes_total: usize,
}

/// One worker's share: `cases` records from its own generator (seeded from `seed` and
/// `worker`) and its own decoder.
fn worker(
    seed: u64,
    worker: usize,
    threads: usize,
    cases: usize,
    seeds: &[RawRecord],
    parsed: &[(Option<J>, Option<J>)],
    kinds: &[ColumnKind],
) -> Stats {
    let mut rng = Rng(seed
        ^ u64::try_from(worker)
            .unwrap()
            .wrapping_mul(0xA076_1D64_78BD_642F));
    let mut decoder = Decoder::new();
    let started = Instant::now();
    let (mut ok, mut err, mut slowest) = (0usize, 0usize, (Duration::ZERO, 0usize));
    let mut biggest = 0usize;
    let mut last_structural: Option<Vec<u8>> = None;
    let (mut in_decode, mut in_resolve, mut bytes_total) = (Duration::ZERO, Duration::ZERO, 0usize);
    let mut resolved = 0usize;
    for i in 0..cases {
        // Global case number (worker w takes cases w, w + n, w + 2n, …).
        let case = i * threads + worker;
        if i % 20_000 == 0 {
            eprintln!("worker {worker}: {i} records, {:?}", started.elapsed());
        }
        let si = rng.below(seeds.len());
        let mut rec = seeds[si].clone();
        // Mostly structural mutations of the value (they reach deep into valid shapes),
        // then byte-level ones, sometimes the key or the coordinates.
        let rounds = 1 + rng.below(3);
        match rng.below(10) {
            0..=3 => {
                if let Some(mut v) = parsed[si].1.clone() {
                    for _ in 0..rounds {
                        mutate_json(&mut rng, &mut v);
                    }
                    rec.value = Some(if rng.chance(20) {
                        // JSON given as a JSON string.
                        serde_json::to_vec(&J::String(v.to_string())).unwrap()
                    } else {
                        serde_json::to_vec(&v).unwrap()
                    });
                    last_structural.clone_from(&rec.value);
                }
            }
            4..=7 => {
                // Half of the byte-level cases start from the last structurally mutated value
                // (both kinds combined, and cheaper than a fresh structural mutation).
                if rng.chance(2) && last_structural.is_some() {
                    rec.value.clone_from(&last_structural);
                }
                let v = rec.value.get_or_insert_with(Vec::new);
                for _ in 0..rounds {
                    mutate_bytes(&mut rng, v);
                }
            }
            8 => {
                if let Some(mut k) = parsed[si].0.clone() {
                    mutate_json(&mut rng, &mut k);
                    rec.key = Some(serde_json::to_vec(&k).unwrap());
                } else {
                    rec.key = Some(rng.bytes(40));
                }
            }
            _ => {
                rec.partition = *rng.pick(&[0, -1, i32::MAX, i32::MIN]);
                rec.offset = *rng.pick(&[0, -5, i64::MAX, i64::MIN]);
                rec.topic = rng
                    .pick(&["", ".", "a.b", "x.y.z.w", "dbserver1.é.t"])
                    .to_string();
                if rng.chance(3) {
                    rec.value = None;
                }
            }
        }
        let t = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| decoder.decode(&rec)));
        let mut took = t.elapsed();
        let out = match outcome {
            Ok(o) => o,
            Err(p) => {
                eprintln!(
                    "PANIC at case {case} (seed {seed}, from seed record {si}):\n key: {}\n value: {}",
                    short(rec.key.as_deref().unwrap_or(b"null")),
                    short(rec.value.as_deref().unwrap_or(b"null")),
                );
                std::panic::resume_unwind(p);
            }
        };
        let size = rec.value.as_ref().map_or(0, Vec::len) + rec.key.as_ref().map_or(0, Vec::len);
        let allowed = budget(size);
        // Wall-clock time on a shared 2-core machine has hiccups: an over-budget record is
        // timed again (fresh decoder, so a schema cache miss is included) and the best of three
        // counts. An algorithmic blow-up is slow every time.
        for _ in 0..2 {
            if took < allowed {
                break;
            }
            let t = Instant::now();
            let _ = Decoder::new().decode(&rec);
            took = took.min(t.elapsed());
        }
        if took >= allowed {
            let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("fuzz-case-{case}.json"));
            let _ = std::fs::write(&path, rec.value.as_deref().unwrap_or(b"null"));
            eprintln!("case {case}: value written to {}", path.display());
        }
        biggest = biggest.max(size);
        bytes_total += size;
        in_decode += took;
        if took > slowest.0 {
            slowest = (took, case);
        }
        assert!(
            took < allowed,
            "case {case} (seed {seed}, {threads} threads) took {took:?} for {size} bytes (allowed {allowed:?}): {}",
            short(rec.value.as_deref().unwrap_or(b"null"))
        );
        match out {
            Ok(Decoded::Change(ev)) => {
                ok += 1;
                let n = ev.schema.columns.len();
                for img in [&ev.before, &ev.after].into_iter().flatten() {
                    assert_eq!(img.len(), n, "case {case}: row not aligned with its schema");
                    for v in img {
                        check_value(v, &format!("case {case}"));
                        if let Value::Unresolved(j) = v {
                            let kind = rng.pick(&kinds);
                            let t = Instant::now();
                            let r = resolve(j, kind);
                            let mut took = t.elapsed();
                            in_resolve += took;
                            for _ in 0..2 {
                                if took < allowed {
                                    break;
                                }
                                let t = Instant::now();
                                let _ = resolve(j, kind);
                                took = took.min(t.elapsed());
                            }
                            assert!(
                                took < allowed,
                                "case {case}: resolve as {kind:?} took {took:?}: {}",
                                short(j.to_string().as_bytes())
                            );
                            if let Ok(v) = r {
                                check_value(&v, &format!("case {case} resolved"));
                            }
                            resolved += 1;
                        }
                    }
                }
                for k in &ev.schema.key {
                    assert!(*k < n, "case {case}: key index outside the columns");
                }
            }
            Ok(_) => ok += 1,
            Err(e) => {
                err += 1;
                assert!(
                    !e.field.is_empty() && !e.problem.is_empty(),
                    "case {case}: {e}"
                );
            }
        }
    }
    Stats {
        ok,
        err,
        resolved,
        slowest,
        biggest,
        in_decode,
        in_resolve,
        bytes_total,
    }
}

#[test]
fn decoder_survives_generated_records() {
    let seed: u64 = std::env::var("TRIBUTARY_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7A1B_u64);
    let cases: usize = std::env::var("TRIBUTARY_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    // One worker per core (CI has 2): the run stays well under a minute in a debug build.
    let threads: usize = std::env::var("TRIBUTARY_FUZZ_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(4)))
        .max(1);
    let seeds = seeds();
    let parsed: Vec<(Option<J>, Option<J>)> = seeds
        .iter()
        .map(|r| {
            let p = |b: &Option<Vec<u8>>| b.as_ref().and_then(|b| serde_json::from_slice(b).ok());
            (p(&r.key), p(&r.value))
        })
        .collect();
    let kinds = kinds();
    let started = Instant::now();
    let per = cases.div_ceil(threads);
    let stats: Vec<Stats> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..threads)
            .map(|w| {
                let (seeds, parsed, kinds) = (&seeds, &parsed, &kinds);
                let n = per.min(cases.saturating_sub(w * per));
                sc.spawn(move || worker(seed, w, threads, n, seeds, parsed, kinds))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let total = started.elapsed();
    let sum = |f: fn(&Stats) -> usize| stats.iter().map(f).sum::<usize>();
    let (ok, err, resolved) = (sum(|s| s.ok), sum(|s| s.err), sum(|s| s.resolved));
    let slowest = stats.iter().map(|s| s.slowest).max().unwrap_or_default();
    let biggest = stats.iter().map(|s| s.biggest).max().unwrap_or(0);
    let in_decode: Duration = stats.iter().map(|s| s.in_decode).sum();
    let in_resolve: Duration = stats.iter().map(|s| s.in_resolve).sum();
    let bytes_total = sum(|s| s.bytes_total);
    eprintln!(
        "{cases} generated records (seed {seed}, {threads} threads): {ok} decoded, {err} \
         refused, {resolved} schemaless values resolved; {total:?} total, slowest {:?} (case \
         {}), largest {biggest} bytes",
        slowest.0, slowest.1
    );
    eprintln!(
        "decoding {in_decode:?}, resolving {in_resolve:?}, {} MB generated",
        bytes_total >> 20
    );
    assert_eq!(ok + err, cases);
    assert!(
        ok > cases / 20,
        "mutations too destructive: only {ok} decoded"
    );
    assert!(err > cases / 20, "mutations too gentle: only {err} refused");
    assert!(total < TOTAL, "{cases} records took {total:?}");
}

/// `TRIBUTARY_FUZZ_REPLAY=<file written by a failing case>`: decode that value again, timed.
#[test]
fn replay_one_case() {
    let Ok(path) = std::env::var("TRIBUTARY_FUZZ_REPLAY") else {
        return;
    };
    let value = std::fs::read(&path).unwrap();
    let rec = RawRecord {
        topic: "dbserver1.db.t".into(),
        partition: 0,
        offset: 0,
        key: None,
        value: Some(value),
    };
    for _ in 0..5 {
        let t = Instant::now();
        let r = Decoder::new().decode(&rec);
        eprintln!("{:?}: {:?}", t.elapsed(), r.map(|_| ()));
    }
}
