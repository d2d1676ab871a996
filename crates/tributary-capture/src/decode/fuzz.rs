//! Property test of the binlog row decoder (`decode_image` / `decode_value`): generated column
//! types, metadata, character sets, ENUM/SET label lists, column bitmaps, null bitmaps and row
//! bytes — half of them well-formed values with one corruption, half random bytes, some with
//! huge length prefixes. Asserted for every case: no panic, the position never moves past the
//! buffer, no single allocation larger than [`MAX_ALLOC`] (a length prefix of 4 GB must not
//! allocate 4 GB), and bounded time.
//!
//! `TRIBUTARY_FUZZ_CASES` (default 150,000) and `TRIBUTARY_FUZZ_SEED` (default fixed) change
//! the run; a failure prints the seed and case number to replay it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tributary_model::{Column, ColumnKind, TableId, TableSchema};

use super::*;

/// Largest single allocation the decoder may make for the inputs below (≤ 1 KiB of row bytes;
/// BINARY(n) padding is bounded by 2 metadata bytes: 64 KiB).
const MAX_ALLOC: usize = 256 * 1024;

/// Counts, per thread and only while armed, the largest allocation request.
struct Watch;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: the thread-locals may be gone while a thread shuts down.
    let _ = ARMED.try_with(|a| {
        if a.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

unsafe impl GlobalAlloc for Watch {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static WATCH: Watch = Watch;

/// SplitMix64: small, seedable, good enough to spread cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[usize::try_from(self.below(xs.len() as u64)).unwrap()]
    }
}

const TYPES: &[u8] = &[
    T_TINY,
    T_SHORT,
    T_INT24,
    T_LONG,
    T_LONGLONG,
    T_FLOAT,
    T_DOUBLE,
    T_NEWDECIMAL,
    T_BIT,
    T_VARCHAR,
    T_VAR_STRING,
    T_STRING,
    T_BLOB,
    T_GEOMETRY,
    T_JSON,
    T_ENUM,
    T_SET,
    T_DATE,
    T_NEWDATE,
    T_TIME,
    T_TIME2,
    T_DATETIME,
    T_DATETIME2,
    T_TIMESTAMP,
    T_TIMESTAMP2,
    T_YEAR,
];

/// Collation ids: every character set family, binary, and ids no server defines.
const COLLATIONS: &[u16] = &[
    63, 45, 33, 8, 9, 30, 14, 57, 59, 7, 22, 25, 16, 18, 36, 39, 3, 4, 40, 6, 10, 32, 37, 38, 92,
    11, 13, 95, 12, 97, 28, 24, 248, 1, 19, 35, 54, 56, 60, 1032, 2304, 3072, 4000, 65535,
];

fn labels(r: &mut Rng, n: u64) -> Vec<String> {
    (0..r.below(n)).map(|i| format!("l{i}")).collect()
}

/// Metadata that is usually what a server writes for the type, sometimes anything.
fn column(r: &mut Rng) -> (ColDec, ColumnKind) {
    let ty = if r.chance(3) { r.byte() } else { r.pick(TYPES) };
    let wild = r.chance(10);
    let (mut len, mut aux) = match ty {
        T_NEWDECIMAL => (1 + r.below(65) as u32, r.below(31) as u32),
        T_BIT => (r.below(8) as u32, r.below(8) as u32),
        T_VARCHAR | T_VAR_STRING | T_STRING => (r.pick(&[1, 10, 255, 256, 1000, 65535]), 0),
        T_BLOB | T_GEOMETRY | T_JSON => (1 + r.below(4) as u32, 0),
        T_ENUM => (1 + r.below(2) as u32, 0),
        T_SET => (1 + r.below(8) as u32, 0),
        T_TIME2 | T_DATETIME2 | T_TIMESTAMP2 => (r.below(7) as u32, 0),
        _ => (0, 0),
    };
    if wild {
        len = r.pick(&[0, 7, 9, 64, 255, 256, 70_000, u32::MAX]);
        aux = r.pick(&[0, 8, 39, 66, 255, u32::MAX]);
    }
    let cs = Cs::from_collation(r.pick(COLLATIONS)).unwrap_or(Cs::Utf8);
    let kind = match ty {
        T_ENUM if !r.chance(5) => ColumnKind::Enum {
            allowed: labels(r, 6),
        },
        T_SET if !r.chance(5) => ColumnKind::Set {
            allowed: labels(r, 70),
        },
        _ => ColumnKind::String { max_len: None },
    };
    (
        ColDec {
            ty,
            len,
            aux,
            unsigned: r.chance(50),
            cs,
        },
        kind,
    )
}

/// A plausible encoding of one value of `c` (then maybe corrupted by the caller).
fn value_bytes(r: &mut Rng, c: &ColDec, out: &mut Vec<u8>) {
    let random = |r: &mut Rng, out: &mut Vec<u8>, n: u64| {
        for _ in 0..n {
            out.push(r.byte());
        }
    };
    match c.ty {
        T_TINY | T_YEAR => random(r, out, 1),
        T_SHORT => random(r, out, 2),
        T_INT24 | T_DATE | T_NEWDATE | T_TIME => random(r, out, 3),
        T_LONG | T_FLOAT | T_TIMESTAMP => random(r, out, 4),
        T_LONGLONG | T_DOUBLE | T_DATETIME => random(r, out, 8),
        T_NEWDECIMAL => {
            let n = 1 + r.below(30);
            random(r, out, n)
        }
        T_BIT => random(r, out, u64::from(c.len.min(9)) + 1),
        T_VARCHAR | T_VAR_STRING | T_STRING => {
            let n = r.below(40);
            if c.len < 256 {
                out.push(n as u8);
            } else {
                out.extend_from_slice(&(n as u16).to_le_bytes());
            }
            random(r, out, n);
        }
        T_BLOB | T_GEOMETRY | T_JSON => {
            let huge = r.chance(10);
            let n = if huge {
                u64::from(u32::MAX)
            } else {
                r.below(60)
            };
            let pack = usize::try_from(c.len.clamp(1, 4)).unwrap();
            out.extend_from_slice(&n.to_le_bytes()[..pack]);
            if c.ty == T_JSON && r.chance(50) {
                // A JSON document header: type byte, then element count / size words.
                out.push(r.below(16) as u8);
            }
            random(r, out, n.min(60));
        }
        T_ENUM => random(r, out, u64::from(c.len.min(2))),
        T_SET => random(r, out, u64::from(c.len.min(8))),
        T_TIME2 => random(r, out, 3 + u64::from(c.len.min(8).div_ceil(2))),
        T_DATETIME2 => random(r, out, 5 + u64::from(c.len.min(8).div_ceil(2))),
        T_TIMESTAMP2 => random(r, out, 4 + u64::from(c.len.min(8).div_ceil(2))),
        _ => {
            let n = r.below(8);
            random(r, out, n)
        }
    }
}

fn case(r: &mut Rng) {
    let n = r.below(9) as usize;
    let (cols, kinds): (Vec<ColDec>, Vec<ColumnKind>) = (0..n).map(|_| column(r)).unzip();
    let schema = TableSchema {
        id: TableId::new("fuzz", "t"),
        columns: kinds
            .into_iter()
            .enumerate()
            .map(|(i, k)| Column::new(format!("c{i}"), k))
            .collect(),
        key: vec![],
    };
    let tv = TableVersion {
        raw: vec![],
        schema: Arc::new(schema),
        cols,
        included: true,
        has_names: true,
        has_charsets: true,
    };
    let mut present: Vec<bool> = (0..n).map(|_| !r.chance(15)).collect();
    if r.chance(3) {
        present.push(true); // a column count that disagrees with the table map
    }
    let mut n_present = present.iter().filter(|x| **x).count();
    if r.chance(3) {
        n_present = r.below(20) as usize;
    }
    let mut buf = Vec::new();
    if r.chance(50) {
        // Well-formed rows (null bitmap + values), then one corruption.
        for _ in 0..1 + r.below(3) {
            let nulls: Vec<bool> = (0..n_present).map(|_| r.chance(20)).collect();
            for chunk in nulls.chunks(8) {
                buf.push(
                    chunk
                        .iter()
                        .enumerate()
                        .fold(0u8, |b, (i, x)| b | (u8::from(*x) << i)),
                );
            }
            let mut k = 0;
            for (c, p) in tv.cols.iter().zip(&present) {
                if *p {
                    if !nulls.get(k).copied().unwrap_or(false) {
                        value_bytes(r, c, &mut buf);
                    }
                    k += 1;
                }
            }
        }
        if !buf.is_empty() && r.chance(70) {
            let i = r.below(buf.len() as u64) as usize;
            buf[i] = r.byte();
        }
        if r.chance(20) {
            buf.truncate(r.below(buf.len() as u64 + 1) as usize);
        }
    } else {
        for _ in 0..r.below(200) {
            buf.push(r.byte());
        }
    }
    assert!(buf.len() < 4096, "generator bug: {} bytes", buf.len());
    if std::env::var_os("TRIBUTARY_FUZZ_SHOW").is_some() {
        eprintln!(
            "cols {:?}\nkinds {:?}\npresent {present:?} n_present {n_present}\nbuf {buf:02x?}",
            tv.cols,
            tv.schema
                .columns
                .iter()
                .map(|c| &c.kind)
                .collect::<Vec<_>>()
        );
    }
    // Decode rows as `stream::rows` does: until the buffer is consumed or an error.
    let mut p = 0usize;
    let mut rounds = 0;
    while p < buf.len() {
        let before = p;
        match decode_image(&tv, &present, n_present, &buf, &mut p) {
            Ok(vals) => {
                assert_eq!(vals.len(), tv.cols.len());
                assert!(p <= buf.len(), "position {p} past the buffer {}", buf.len());
                assert!(p > before, "a decoded row consumed no bytes: endless loop");
            }
            Err(e) => {
                assert!(!e.is_empty());
                break;
            }
        }
        rounds += 1;
        assert!(rounds <= buf.len(), "more rows than bytes");
    }
}

#[test]
fn row_decoder_never_panics_allocates_or_spins() {
    let cases: u64 = std::env::var("TRIBUTARY_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150_000);
    let seed: u64 = std::env::var("TRIBUTARY_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7121_b07a_2026);
    let t0 = Instant::now();
    let mut slowest = Duration::ZERO;
    let only: Option<u64> = std::env::var("TRIBUTARY_FUZZ_CASE")
        .ok()
        .and_then(|s| s.parse().ok());
    for i in 0..cases {
        if only.is_some_and(|o| o != i) {
            continue;
        }
        // One generator per case, derived from the seed: any case replays alone.
        let mut r = Rng(seed ^ i.wrapping_mul(0x2545_F491_4F6C_DD1D));
        LARGEST.with(|l| l.set(0));
        ARMED.with(|a| a.set(true));
        let t = Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(&mut r)));
        let took = t.elapsed();
        ARMED.with(|a| a.set(false));
        if let Err(e) = outcome {
            std::panic::resume_unwind(Box::new(format!(
                "case {i} (TRIBUTARY_FUZZ_SEED={seed}) panicked: {:?}",
                e.downcast_ref::<String>()
                    .map(String::as_str)
                    .or(e.downcast_ref::<&str>().copied())
            )));
        }
        let largest = LARGEST.with(|l| l.get());
        assert!(
            largest <= MAX_ALLOC,
            "case {i} (TRIBUTARY_FUZZ_SEED={seed}) allocated {largest} bytes at once"
        );
        slowest = slowest.max(took);
        assert!(
            took < Duration::from_secs(2),
            "case {i} (TRIBUTARY_FUZZ_SEED={seed}) took {took:?}"
        );
    }
    let total = t0.elapsed();
    eprintln!("{cases} cases in {total:?}, slowest {slowest:?}");
    assert!(
        total < Duration::from_secs(60),
        "{cases} cases took {total:?}"
    );
}

/// The concrete hostile inputs of the issue, one by one.
#[test]
fn hostile_length_prefixes_and_labels() {
    let table = TableId::new("fuzz", "t");
    let w = WarnCtx { table: &table };
    let col = |kind| Column::new("c", kind);
    let dec = |ty, len, aux, cs| ColDec {
        ty,
        len,
        aux,
        unsigned: false,
        cs,
    };
    let run = |c: &ColDec, kind: ColumnKind, buf: &[u8]| {
        LARGEST.with(|l| l.set(0));
        ARMED.with(|a| a.set(true));
        let mut p = 0;
        let r = decode_value(c, &col(kind), buf, &mut p, &w);
        ARMED.with(|a| a.set(false));
        assert!(LARGEST.with(|l| l.get()) <= MAX_ALLOC);
        r
    };
    let text = ColumnKind::String { max_len: None };
    // A LONGBLOB whose length prefix says 4 GB, in a 10-byte event.
    let e = run(
        &dec(T_BLOB, 4, 0, Cs::Binary),
        text.clone(),
        &[0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4, 5, 6],
    )
    .unwrap_err();
    assert!(e.contains("truncated"), "{e}");
    // A pack length of 255 (metadata) is refused, not read as a 255-byte integer.
    assert!(run(&dec(T_BLOB, 255, 0, Cs::Utf8), text.clone(), &[1; 300]).is_err());
    // ENUM index beyond the labels; index 0 is the server's own '' value.
    let e3 = ColumnKind::Enum {
        allowed: vec!["a".into(), "b".into(), "c".into()],
    };
    let e = run(&dec(T_ENUM, 1, 0, Cs::Utf8), e3.clone(), &[4]).unwrap_err();
    assert!(
        e.contains("column `c`") && e.contains("ENUM index 4"),
        "{e}"
    );
    assert_eq!(
        run(&dec(T_ENUM, 1, 0, Cs::Utf8), e3.clone(), &[0]).unwrap(),
        Value::String(String::new())
    );
    assert_eq!(
        run(&dec(T_ENUM, 1, 0, Cs::Utf8), e3, &[3]).unwrap(),
        Value::String("c".into())
    );
    // SET bit beyond the labels.
    let s2 = ColumnKind::Set {
        allowed: vec!["x".into(), "y".into()],
    };
    let e = run(&dec(T_SET, 1, 0, Cs::Utf8), s2.clone(), &[0b101]).unwrap_err();
    assert!(e.contains("SET bits 0x5"), "{e}");
    assert_eq!(
        run(&dec(T_SET, 1, 0, Cs::Utf8), s2, &[0b11]).unwrap(),
        Value::String("x,y".into())
    );
    // DATETIME (old format) with year 1.8e9 would overflow microseconds.
    assert!(run(
        &dec(T_DATETIME, 0, 0, Cs::Utf8),
        text.clone(),
        &u64::MAX.to_le_bytes()
    )
    .is_err());
    // DECIMAL digit group > 999,999,999.
    assert!(run(
        &dec(T_NEWDECIMAL, 9, 0, Cs::Utf8),
        text.clone(),
        &[0xFF, 0xFF, 0xFF, 0xFF]
    )
    .is_err());
    // BIT(80) metadata.
    assert!(run(&dec(T_BIT, 10, 0, Cs::Utf8), text, &[0; 10]).is_err());
}

/// Binary JSON nested far deeper than MySQL allows (100 levels) must not overflow the stack.
#[test]
fn deeply_nested_binary_json_does_not_overflow_the_stack() {
    // Large arrays (type 3): count u32, size u32, one value entry (type u8, offset u32) pointing
    // at the next array right after the header (offset 13); the innermost array is empty.
    let nested = |depth: usize| {
        let mut doc = vec![0x03u8];
        for level in 0..depth {
            let size = u32::try_from((depth - level) * 13 + 8).unwrap();
            doc.extend_from_slice(&1u32.to_le_bytes());
            doc.extend_from_slice(&size.to_le_bytes());
            doc.push(0x03);
            doc.extend_from_slice(&13u32.to_le_bytes());
        }
        doc.extend_from_slice(&0u32.to_le_bytes());
        doc.extend_from_slice(&8u32.to_le_bytes());
        doc
    };
    assert_eq!(jsonb_to_text(&nested(2)).unwrap(), "[[[]]]");
    assert_eq!(
        jsonb_to_text(&nested(99)).unwrap().len(),
        200,
        "MySQL's deepest"
    );
    assert!(jsonb_to_text(&nested(100)).is_err());
    // 60 levels of an array whose two entries share one sub-array: 2^60 values if expanded.
    let mut doc = vec![0x03u8];
    for level in 0..60usize {
        let size = u32::try_from((60 - level) * 18 + 8).unwrap();
        doc.extend_from_slice(&2u32.to_le_bytes());
        doc.extend_from_slice(&size.to_le_bytes());
        for _ in 0..2 {
            doc.push(0x03);
            doc.extend_from_slice(&18u32.to_le_bytes());
        }
    }
    doc.extend_from_slice(&0u32.to_le_bytes());
    doc.extend_from_slice(&8u32.to_le_bytes());
    let t = Instant::now();
    assert!(jsonb_to_text(&doc).is_err());
    assert!(t.elapsed() < Duration::from_secs(1));
    let doc = nested(200_000);
    let r = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || jsonb_to_text(&doc).map(|s| s.len()))
        .unwrap()
        .join()
        .unwrap();
    assert!(r.is_err(), "{r:?}");
}
