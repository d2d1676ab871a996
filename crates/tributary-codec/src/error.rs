//! Error types of the codec.
//!
//! Owns: [`DecodeError`] (a Kafka record that cannot be turned into an event) and
//! [`ResolveError`] (a schemaless JSON value that does not fit the target column type).
//! Both are *definite* ([`tributary_model::ErrorClass::is_transient`] is `false`): the same
//! bytes will fail the same way on every retry, so the caller dead-letters the record instead
//! of retrying. Every [`DecodeError`] names the record (`topic/partition@offset`), the field
//! (a dotted path such as `value.payload.after.c_dec`) and what was wrong.

use tributary_model::ErrorClass;

/// What kind of problem a [`DecodeError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// The bytes are not JSON (or not UTF-8).
    NotJson,
    /// The JSON does not have any of the shapes Debezium produces.
    Shape,
    /// A field has the wrong JSON type or an unusable value for its Connect schema.
    Type,
    /// `op` is not one of `c`, `u`, `d`, `r`.
    UnknownOp,
    /// The source table cannot be determined.
    Table,
    /// The Connect schema is malformed or inconsistent with the payload.
    Schema,
}

/// A record that cannot be decoded. Definite: dead-letter it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("cannot decode {topic}/{partition}@{offset}: {field}: {problem}")]
pub struct DecodeError {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Dotted path of the offending field (`value`, `key`, `value.payload.op`, …).
    pub field: String,
    pub kind: DecodeErrorKind,
    pub problem: String,
}

impl ErrorClass for DecodeError {
    fn is_transient(&self) -> bool {
        false
    }
}

/// Internal error before the record coordinates are attached.
#[derive(Debug, Clone)]
pub(crate) struct Fail {
    pub field: String,
    pub kind: DecodeErrorKind,
    pub problem: String,
}

impl Fail {
    pub fn new(
        kind: DecodeErrorKind,
        field: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        Fail {
            field: field.into(),
            kind,
            problem: problem.into(),
        }
    }
    pub fn at(self, rec: &tributary_model::RawRecord) -> DecodeError {
        DecodeError {
            topic: rec.topic.clone(),
            partition: rec.partition,
            offset: rec.offset,
            field: self.field,
            kind: self.kind,
            problem: self.problem,
        }
    }
}

/// A schemaless JSON value that cannot be read as the requested column type. Definite.
/// The caller (apply) adds the record coordinates and the column name.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("cannot read JSON {got} as {expected}: {problem}")]
pub struct ResolveError {
    /// The target type, e.g. `Decimal { precision: Some(10), scale: Some(2) }`.
    pub expected: String,
    /// The JSON value (truncated to 120 characters).
    pub got: String,
    pub problem: String,
}

impl ErrorClass for ResolveError {
    fn is_transient(&self) -> bool {
        false
    }
}

/// At most 120 characters of `s` for an error message (a record may be 64 MiB: its text must
/// not end up whole in a dead letter's reason).
pub(crate) fn short_str(s: &str) -> String {
    if s.chars().count() > 120 {
        let t: String = s.chars().take(117).collect();
        format!("{t}...")
    } else {
        s.to_owned()
    }
}

/// Short rendering of a JSON value for error messages.
pub(crate) fn short_json(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 120 {
        let t: String = s.chars().take(117).collect();
        format!("{t}...")
    } else {
        s
    }
}
