//! # tributary-codec — Debezium JSON in and out
//!
//! Data flow: Kafka record bytes ([`tributary_model::RawRecord`]) → [`decode()`] →
//! [`tributary_model::ChangeEvent`] / schema change / tombstone; and
//! [`tributary_model::ChangeEvent`] → [`encode()`] → Kafka records exactly as Debezium 3.6
//! (MySQL connector + Kafka Connect `JsonConverter`) writes them.
//!
//! Modules and what each owns:
//! * [`decode`] — recognise every form Debezium puts on Kafka (envelope with/without schema,
//!   ExtractNewRecordState output, tombstones, schema-change records) and build events; the
//!   per-table schema cache ([`Decoder`]).
//! * [`connect`] — Kafka Connect schema ↔ [`tributary_model::ColumnKind`] on the decode
//!   side; MySQL type names → kinds.
//! * [`resolve`] — type schemaless JSON values once the target column type is known
//!   ([`resolve()`]), or infer a type when nothing is known ([`infer`]).
//! * [`encode`] — Debezium's output format, handling modes and the unwrap SMT.
//! * [`compare`] — field-by-field diff of our records against recorded Debezium output.
//! * [`num`] — exact decimal/two's-complement, BIT, calendar and Java number spelling helpers.
//! * [`error`] — [`DecodeError`], [`ResolveError`] (both definite, never transient).
//!
//! The oracle is real Debezium 3.6.3 output in `fixtures/golden/`; `tests/golden.rs` decodes
//! every record and round-trips every data record back to byte-equivalent JSON.
//!
//! ## Limits (hostile input, issue #10)
//! A record (key + value) is at most [`MAX_RECORD_BYTES`] (64 MiB); every decimal fits
//! PostgreSQL `numeric` (≤ 131,072 digits before the point, ≤ 16,383 after; a declared
//! precision ≤ 1,000); Connect parameters (`scale`, precision, `length`), column lengths in
//! `tableChanges` and `ts_ms` values are range-checked, never cast; ENUM/SET values must be
//! labels of their column. Anything beyond is a [`DecodeError`] naming the field (the sink
//! dead-letters the record), never a wrapped, rounded or dropped value. Decoding is linear in
//! the record size (decimal base conversion subquadratic and bounded), and JSON nesting stops
//! at serde_json's depth limit of 128. `tests/hostile_values.rs` has a test per limit,
//! `tests/fuzz_decoder.rs` 100,000 generated records.

pub mod compare;
pub mod connect;
pub mod decode;
pub mod encode;
pub mod error;
pub mod num;
pub mod resolve;

pub use decode::{decode, Decoded, Decoder, MAX_RECORD_BYTES};
pub use encode::{
    encode, encode_schema_change, topic_for, BigintUnsignedMode, BinaryMode, DecimalMode,
    DeleteHandling, EncodeOptions, EncodedRecord, TimePrecisionMode, UnwrapOptions,
};
pub use error::{DecodeError, DecodeErrorKind, ResolveError};
pub use resolve::{infer, resolve};
