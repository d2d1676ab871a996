//! Debezium JSON (Kafka record) → [`Decoded`] event.
//!
//! Owns: recognising every form Debezium 3.x puts on Kafka and turning it into the shared
//! event model, plus the per-table schema cache.
//!
//! Forms recognised (by shape, not by configuration — a topic may mix them across restarts):
//! * **tombstone**: null value, empty value, JSON `null`, or `{"schema":…,"payload":null}`;
//! * **envelope with schema** (`schemas.enable=true`): `{"schema":{…},"payload":{before,
//!   after, source, transaction?, op, ts_ms}}` — column types come from the Connect schema;
//! * **envelope without schema**: the payload object directly;
//! * **ExtractNewRecordState ("flattened")**, with or without schema: row fields at top level;
//!   every field starting with `__` is metadata, never a column (`__deleted` "true"/"false",
//!   `__op`, `__table`, `__db`, `__source_ts_ms`, `__ts_ms`, `__source_file`, `__lsn`, …).
//!   `__deleted == "true"` is a delete whose row image becomes `before`; without `__op` the op
//!   is inferred from `__deleted` (delete or insert);
//! * **schema-change** records (payload with `ddl` and `databaseName`, the `<prefix>` topic)
//!   → [`Decoded::SchemaChange`] with the table shapes from `tableChanges`;
//! * a value that is a JSON *string* containing one of the above is unwrapped once.
//!
//! The table is `source.db`/`source.table`, else `__db`/`__table` (`__source_db`/
//! `__source_table`), else the topic `<prefix>.<db>.<table>`. Keyless tables have a null key
//! and an empty [`TableSchema::key`].
//!
//! ## Schemas and the cache ([`Decoder`])
//! With a Connect schema the columns are the fields of the `after` (else `before`) struct in
//! schema order, key columns are the key schema's fields, `optional` → nullable, `default` →
//! [`Column::default`]; see [`crate::connect`] for the type mapping. Without one, columns are
//! the row's field names in order, [`ColumnKind::Unknown`], values [`Value::Unresolved`]
//! (typed later by [`crate::resolve`]), key columns = the key object's field names.
//! Identical schemas share one `Arc<TableSchema>`: the cache key is a 128-bit xxh3 of the
//! *raw bytes* of the value schema and key schema (or the column/key names when schemaless)
//! plus the table id, so a hit costs one hash over bytes and no schema parsing. The cache is
//! per [`Decoder`]; the free [`decode`] uses one `Decoder` per thread (thread-local).
//!
//! ## Performance
//! The record is parsed once: the top level is split into borrowed raw fields
//! (`serde_json::value::RawValue`), the schema is only hashed, the payload is parsed into
//! `serde_json::Value` and its strings are *moved* into [`Value`]s, never cloned. Numbers stay
//! exact (`arbitrary_precision`): integers via `Number::as_i64`, floats parsed from the
//! number's own text.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value as J};
use tributary_model::{
    ChangeEvent, Column, ColumnKind, KafkaCoord, Op, RawRecord, Row, SchemaChange, SnapshotMarker,
    SourcePosition, TableId, TableSchema, TxInfo, Value,
};
use xxhash_rust::xxh3::Xxh3;

use crate::connect::{connect_field, decode_value, mysql_type_kind, FieldCodec};
use crate::error::{short_str, DecodeError, DecodeErrorKind as K, Fail};

/// What one Kafka record decodes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Change(ChangeEvent),
    /// Null value (Kafka compaction marker after a delete). Carries nothing to apply.
    Tombstone,
    SchemaChange(SchemaChange),
}

/// Decodes one record with this thread's [`Decoder`] (schema cache kept per thread).
pub fn decode(rec: &RawRecord) -> Result<Decoded, DecodeError> {
    thread_local! {
        static DECODER: RefCell<Decoder> = RefCell::new(Decoder::new());
    }
    DECODER.with(|d| d.borrow_mut().decode(rec))
}

/// A schema as cached: the shared table shape and how to read each column's JSON.
#[derive(Debug)]
struct CachedSchema {
    table: Arc<TableSchema>,
    /// `None` for schemaless input (all values stay [`Value::Unresolved`]).
    codecs: Option<Vec<FieldCodec>>,
    /// Column name → index, for wide tables only (a field out of schema order is then found
    /// in O(1) instead of a scan: a 100k-field record stays linear).
    index: Option<HashMap<String, usize>>,
}

/// Tables with more columns than this get a name → index map in the cache.
const INDEXED_COLUMNS: usize = 32;

impl CachedSchema {
    fn new(table: TableSchema, codecs: Option<Vec<FieldCodec>>) -> Self {
        let index = (table.columns.len() > INDEXED_COLUMNS).then(|| {
            let mut m = HashMap::with_capacity(table.columns.len());
            for (i, c) in table.columns.iter().enumerate() {
                m.entry(c.name.clone()).or_insert(i);
            }
            m
        });
        CachedSchema {
            table: Arc::new(table),
            codecs,
            index,
        }
    }

    fn column_index(&self, name: &str) -> Option<usize> {
        match &self.index {
            Some(m) => m.get(name).copied(),
            None => self.table.column_index(name),
        }
    }
}

/// Decoder with a schema cache. Cheap to create; keep one per consumer thread.
#[derive(Debug, Default)]
pub struct Decoder {
    cache: HashMap<u128, Arc<CachedSchema>>,
    /// Columns held by the cached schemas (see [`MAX_CACHED_COLUMNS`]).
    cached_columns: usize,
}

/// Entries beyond this many distinct schemas clear the cache (protects against unbounded
/// growth with pathological input; real streams have a handful of schema versions).
const MAX_CACHED_SCHEMAS: usize = 4096;
/// The cache is also cleared when its schemas hold more columns than this in total (a stream of
/// distinct 100k-field schemas cannot grow it without bound either).
const MAX_CACHED_COLUMNS: usize = 1 << 20;

/// Largest record (key + value bytes) the decoder accepts; a larger one is a
/// [`DecodeErrorKind::Shape`](crate::DecodeErrorKind) error (dead-lettered), never parsed.
/// Kafka's default `message.max.bytes` is 1 MB; `tributary replay` caps a line at the same
/// 64 MiB. Decoding is linear in the record size (decimals: subquadratic, and bounded by
/// PostgreSQL's `numeric` limits), JSON nesting is bounded by serde_json's depth limit (128).
pub const MAX_RECORD_BYTES: usize = 64 << 20;

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of distinct table schemas currently cached.
    pub fn cached_schemas(&self) -> usize {
        self.cache.len()
    }

    pub fn decode(&mut self, rec: &RawRecord) -> Result<Decoded, DecodeError> {
        self.decode_inner(rec).map_err(|f| f.at(rec))
    }

    fn decode_inner(&mut self, rec: &RawRecord) -> Result<Decoded, Fail> {
        let size = rec.value.as_ref().map_or(0, Vec::len) + rec.key.as_ref().map_or(0, Vec::len);
        if size > MAX_RECORD_BYTES {
            return Err(Fail::new(
                K::Shape,
                "value",
                format!("record of {size} bytes (key + value) is over the {MAX_RECORD_BYTES}-byte limit"),
            ));
        }
        let Some(bytes) = rec.value.as_deref() else {
            return Ok(Decoded::Tombstone);
        };
        let text = std::str::from_utf8(bytes)
            .map_err(|e| Fail::new(K::NotJson, "value", format!("not UTF-8: {e}")))?;
        self.decode_text(rec, text, true)
    }

    fn decode_text(
        &mut self,
        rec: &RawRecord,
        text: &str,
        allow_string: bool,
    ) -> Result<Decoded, Fail> {
        let t = text.trim();
        if t.is_empty() || t == "null" {
            return Ok(Decoded::Tombstone);
        }
        // Fast path for what Kafka Connect's JsonConverter writes: `{"schema":…,"payload":…}`.
        // The schema is located by a brace scanner (not validated: it is hashed, and parsed
        // with full validation on a cache miss only), saving a full JSON scan of ~6 KB per record.
        if let Some((schema, payload)) = split_schema_payload(t) {
            if payload == "null" {
                return Ok(Decoded::Tombstone);
            }
            let payload: J = serde_json::from_str(payload)
                .map_err(|e| Fail::new(K::NotJson, "value.payload", e.to_string()))?;
            let J::Object(map) = payload else {
                return Err(Fail::new(
                    K::Shape,
                    "value.payload",
                    format!("expected an object, got {}", json_type(&payload)),
                ));
            };
            let schema = (schema != "null").then_some(schema);
            return self.decode_payload(rec, schema, map, "value.payload");
        }
        let fields = match serde_json::from_str::<Fields>(t) {
            Ok(f) => f.0,
            Err(e) => {
                return match serde_json::from_str::<J>(t) {
                    Ok(J::String(inner)) if allow_string => self.decode_text(rec, &inner, false),
                    Ok(other) => Err(Fail::new(
                        K::Shape,
                        "value",
                        format!("expected a JSON object, got {}", json_type(&other)),
                    )),
                    Err(_) => Err(Fail::new(K::NotJson, "value", format!("invalid JSON: {e}"))),
                };
            }
        };
        let has = |k: &str| fields.iter().any(|(n, _)| n == k);
        if fields.len() == 2 && has("schema") && has("payload") {
            let raw = |k: &str| {
                fields.iter().find_map(|(n, v)| match v {
                    Field::Raw(r) if n == k => Some(*r),
                    _ => None,
                })
            };
            let payload = raw("payload").expect("read raw");
            if payload.get() == "null" {
                return Ok(Decoded::Tombstone);
            }
            let schema = raw("schema").map(RawValue::get).filter(|s| *s != "null");
            let payload: J = serde_json::from_str(payload.get())
                .map_err(|e| Fail::new(K::NotJson, "value.payload", e.to_string()))?;
            let J::Object(map) = payload else {
                return Err(Fail::new(
                    K::Shape,
                    "value.payload",
                    format!("expected an object, got {}", json_type(&payload)),
                ));
            };
            return self.decode_payload(rec, schema, map, "value.payload");
        }
        // The common schemaless case: a flattened record goes straight to its row, without
        // building a `serde_json::Map` (whose SipHash inserts and lookups were ~20 % of the
        // decode time of a seed-format record).
        let flat = !(has("op") && has("source") && (has("after") || has("before")))
            && !(has("ddl") && has("databaseName"));
        let mut values = Vec::with_capacity(fields.len());
        for (k, v) in fields {
            let v = v
                .into_json()
                .map_err(|e| Fail::new(K::NotJson, format!("value.{k}"), e.to_string()))?;
            values.push((k, v));
        }
        if flat {
            return self.decode_flat(rec, None, values, "value");
        }
        let mut map = Map::with_capacity(values.len());
        for (k, v) in values {
            map.insert(k.into_owned(), v);
        }
        self.decode_payload(rec, None, map, "value")
    }

    fn decode_payload(
        &mut self,
        rec: &RawRecord,
        schema: Option<&str>,
        map: Map<String, J>,
        path: &str,
    ) -> Result<Decoded, Fail> {
        let has = |k: &str| map.contains_key(k);
        if has("ddl") && has("databaseName") && !has("op") {
            return decode_schema_change(rec, &map, path).map(Decoded::SchemaChange);
        }
        if map.get("op").and_then(J::as_str) == Some("t") && has("source") {
            return decode_truncate(rec, &map, path).map(Decoded::SchemaChange);
        }
        if has("op") && has("source") && (has("after") || has("before")) {
            return self.decode_envelope(rec, schema, map, path);
        }
        let fields = map.into_iter().map(|(k, v)| (Cow::Owned(k), v)).collect();
        self.decode_flat(rec, schema, fields, path)
    }

    fn decode_envelope(
        &mut self,
        rec: &RawRecord,
        schema: Option<&str>,
        mut map: Map<String, J>,
        path: &str,
    ) -> Result<Decoded, Fail> {
        let op = parse_op(map.get("op"), At(&path, "op"))?;
        let prefix = topic_prefix(&rec.topic);
        let source_path = At(&path, "source");
        let src = map.get("source").unwrap_or(&J::Null);
        let source = parse_source(src, &source_path, prefix)?;
        let src_db = src.get("db").and_then(J::as_str).filter(|s| !s.is_empty());
        let src_table = src
            .get("table")
            .and_then(J::as_str)
            .filter(|s| !s.is_empty());
        let tid = table_id(rec, src_db, src_table)?;
        let ts_ms = opt_ts_ms(map.get("ts_ms"), At(&path, "ts_ms"))?.unwrap_or(0);
        let transaction = parse_tx(map.get("transaction"), At(&path, "transaction"))?;
        let before = map.get_mut("before").map(J::take).unwrap_or(J::Null);
        let after = map.get_mut("after").map(J::take).unwrap_or(J::Null);
        let key = key_info(rec)?;
        let cached = match schema {
            Some(raw) => self.connect_schema(raw, &key, &tid, Shape::Envelope)?,
            None => {
                let mut names: Vec<&str> = Vec::new();
                // A scan for the usual few columns, a set once there are many (stays linear).
                let mut seen: Option<std::collections::HashSet<&str>> = None;
                for img in [&after, &before] {
                    if let J::Object(m) = img {
                        for k in m.keys().filter(|k| !k.starts_with("__")) {
                            if seen.is_none() && names.len() >= INDEXED_COLUMNS {
                                seen = Some(names.iter().copied().collect());
                            }
                            let new = match seen.as_mut() {
                                Some(set) => set.insert(k.as_str()),
                                None => !names.contains(&k.as_str()),
                            };
                            if new {
                                names.push(k);
                            }
                        }
                    }
                }
                self.schemaless_schema(&names, &key, &tid)?
            }
        };
        let before = row(&cached, before, At(&path, "before"))?;
        let after = row(&cached, after, At(&path, "after"))?;
        check_images(op, &before, &after, path)?;
        Ok(Decoded::Change(ChangeEvent {
            schema: cached.table.clone(),
            op,
            before,
            after,
            source,
            ts_ms,
            transaction,
            kafka: Some(kafka(rec)),
        }))
    }

    /// A flattened record: `fields` in record order; `__…` fields are metadata (the last
    /// occurrence of a name wins, as in a JSON object), the others the row.
    fn decode_flat(
        &mut self,
        rec: &RawRecord,
        schema: Option<&str>,
        fields: Vec<(Cow<'_, str>, J)>,
        path: &str,
    ) -> Result<Decoded, Fail> {
        let (meta_fields, data): (Vec<_>, Vec<_>) =
            fields.into_iter().partition(|(k, _)| k.starts_with("__"));
        let get = |k: &str| {
            meta_fields
                .iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v)
        };
        let meta = |k: &str| get(k).filter(|v| !v.is_null());
        let deleted = match meta("__deleted") {
            None => false,
            Some(J::String(s)) if s == "true" => true,
            Some(J::String(s)) if s == "false" => false,
            Some(J::Bool(b)) => *b,
            Some(other) => {
                return Err(Fail::new(
                    K::Type,
                    format!("{path}.__deleted"),
                    format!(
                        "expected \"true\" or \"false\", got {}",
                        crate::error::short_json(other)
                    ),
                ))
            }
        };
        let op = match meta("__op") {
            Some(v) => parse_op(Some(v), At(&path, "__op"))?,
            None if deleted => Op::Delete,
            None => Op::Insert,
        };
        let op = if deleted { Op::Delete } else { op };
        let prefix = topic_prefix(&rec.topic);
        let s = |k: &str| meta(k).and_then(J::as_str).filter(|s| !s.is_empty());
        let db = s("__db").or_else(|| s("__source_db"));
        let table = s("__table").or_else(|| s("__source_table"));
        let tid = table_id(rec, db, table)?;
        let source = flat_source(&get, &path, prefix)?;
        let ts_ms = opt_ts_ms(meta("__ts_ms"), At(&path, "__ts_ms"))?.unwrap_or(0);
        let key = key_info(rec)?;
        let cached = match schema {
            Some(raw) => self.connect_schema(raw, &key, &tid, Shape::Flat)?,
            None => {
                let names: Vec<&str> = data.iter().map(|(k, _)| k.as_ref()).collect();
                self.schemaless_schema(&names, &key, &tid)?
            }
        };
        let image = Some(row_from(&cached, data, At(&path, ""))?);
        let (before, after) = if op == Op::Delete {
            (image, None)
        } else {
            (None, image)
        };
        check_images(op, &before, &after, path)?;
        Ok(Decoded::Change(ChangeEvent {
            schema: cached.table.clone(),
            op,
            before,
            after,
            source,
            ts_ms,
            transaction: None,
            kafka: Some(kafka(rec)),
        }))
    }

    fn insert(&mut self, h: u128, c: CachedSchema) -> Arc<CachedSchema> {
        if self.cache.len() >= MAX_CACHED_SCHEMAS
            || self.cached_columns + c.table.columns.len() > MAX_CACHED_COLUMNS
        {
            self.cache.clear();
            self.cached_columns = 0;
        }
        self.cached_columns += c.table.columns.len();
        let c = Arc::new(c);
        self.cache.insert(h, c.clone());
        c
    }

    fn connect_schema(
        &mut self,
        raw: &str,
        key: &KeyInfo<'_>,
        tid: &TableId,
        shape: Shape,
    ) -> Result<Arc<CachedSchema>, Fail> {
        let mut h = Xxh3::new();
        h.update(&[shape as u8, 0xC0]);
        h.update(raw.as_bytes());
        key.hash(&mut h);
        hash_tid(&mut h, tid);
        let hv = h.digest128();
        if let Some(c) = self.cache.get(&hv) {
            return Ok(c.clone());
        }
        let schema: J = serde_json::from_str(raw)
            .map_err(|e| Fail::new(K::NotJson, "value.schema", e.to_string()))?;
        let fields = struct_fields(&schema, "value.schema")?;
        let (row_fields, row_path) = match shape {
            Shape::Envelope => {
                let f = fields
                    .iter()
                    .find(|f| f.get("field").and_then(J::as_str) == Some("after"))
                    .or_else(|| {
                        fields
                            .iter()
                            .find(|f| f.get("field").and_then(J::as_str) == Some("before"))
                    })
                    .ok_or_else(|| {
                        Fail::new(
                            K::Schema,
                            "value.schema",
                            "envelope schema has no before/after struct",
                        )
                    })?;
                (
                    struct_fields(f, "value.schema.after")?,
                    "value.schema.after",
                )
            }
            Shape::Flat => (fields, "value.schema"),
        };
        let mut columns = Vec::with_capacity(row_fields.len());
        let mut codecs = Vec::with_capacity(row_fields.len());
        for f in row_fields {
            if f.get("field")
                .and_then(J::as_str)
                .is_some_and(|n| n.starts_with("__"))
            {
                continue;
            }
            let (c, codec) = connect_field(f, row_path)?;
            columns.push(c);
            codecs.push(codec);
        }
        let key_names: Vec<String> = match key {
            KeyInfo::None => Vec::new(),
            KeyInfo::Names(n) => n.iter().map(|s| s.to_string()).collect(),
            KeyInfo::Schema(raw) => {
                let ks: J = serde_json::from_str(raw.get())
                    .map_err(|e| Fail::new(K::NotJson, "key.schema", e.to_string()))?;
                struct_fields(&ks, "key.schema")?
                    .iter()
                    .map(|f| {
                        f.get("field")
                            .and_then(J::as_str)
                            .map(str::to_owned)
                            .ok_or_else(|| {
                                Fail::new(K::Schema, "key.schema", "key field without name")
                            })
                    })
                    .collect::<Result<_, _>>()?
            }
        };
        let table = build_table(tid, columns, &key_names)?;
        Ok(self.insert(hv, CachedSchema::new(table, Some(codecs))))
    }

    fn schemaless_schema(
        &mut self,
        names: &[&str],
        key: &KeyInfo<'_>,
        tid: &TableId,
    ) -> Result<Arc<CachedSchema>, Fail> {
        let mut h = Xxh3::new();
        h.update(&[0x5C]);
        for n in names {
            h.update(n.as_bytes());
            h.update(&[0]);
        }
        key.hash(&mut h);
        hash_tid(&mut h, tid);
        let hv = h.digest128();
        if let Some(c) = self.cache.get(&hv) {
            return Ok(c.clone());
        }
        // A repeated field name is one column (JSON object semantics); only on a cache miss.
        let mut seen = std::collections::HashSet::with_capacity(names.len());
        let columns = names
            .iter()
            .filter(|n| seen.insert(**n))
            .map(|n| Column::new(*n, ColumnKind::Unknown))
            .collect();
        let key_names: Vec<String> = match key {
            KeyInfo::None => Vec::new(),
            KeyInfo::Names(n) => n.iter().map(|s| s.to_string()).collect(),
            KeyInfo::Schema(raw) => {
                let ks: J = serde_json::from_str(raw.get())
                    .map_err(|e| Fail::new(K::NotJson, "key.schema", e.to_string()))?;
                struct_fields(&ks, "key.schema")?
                    .iter()
                    .filter_map(|f| f.get("field").and_then(J::as_str).map(str::to_owned))
                    .collect()
            }
        };
        let table = build_table(tid, columns, &key_names)?;
        Ok(self.insert(hv, CachedSchema::new(table, None)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Envelope = 1,
    Flat = 2,
}

fn hash_tid(h: &mut Xxh3, tid: &TableId) {
    h.update(&[0xFE]);
    h.update(tid.db.as_bytes());
    h.update(&[0]);
    h.update(tid.table.as_bytes());
}

fn build_table(
    tid: &TableId,
    columns: Vec<Column>,
    key_names: &[String],
) -> Result<TableSchema, Fail> {
    let mut t = TableSchema {
        id: tid.clone(),
        columns,
        key: Vec::with_capacity(key_names.len()),
    };
    // Wide tables / many key fields: look names up in a map, not by a scan per key field.
    let index: Option<HashMap<&str, usize>> =
        (key_names.len() > 4 && t.columns.len() > INDEXED_COLUMNS).then(|| {
            let mut m = HashMap::with_capacity(t.columns.len());
            for (i, c) in t.columns.iter().enumerate() {
                m.entry(c.name.as_str()).or_insert(i);
            }
            m
        });
    let mut key = Vec::with_capacity(key_names.len());
    for k in key_names {
        let found = match &index {
            Some(m) => m.get(k.as_str()).copied(),
            None => t.column_index(k),
        };
        let i = found.ok_or_else(|| {
            Fail::new(
                K::Schema,
                format!("key.{}", short_str(k)),
                format!("key field {:?} is not a column of {tid}", short_str(k)),
            )
        })?;
        key.push(i);
    }
    drop(index);
    t.key = key;
    Ok(t)
}

fn struct_fields<'a>(s: &'a J, path: &str) -> Result<&'a Vec<J>, Fail> {
    s.get("fields").and_then(J::as_array).ok_or_else(|| {
        Fail::new(
            K::Schema,
            path,
            "expected a Connect struct schema with \"fields\"",
        )
    })
}

/// An error path built only when an error is reported: `base.field` (or `base` alone).
#[derive(Clone, Copy)]
pub(crate) struct At<'a>(pub &'a dyn fmt::Display, pub &'a str);

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.1.is_empty() {
            self.0.fmt(f)
        } else {
            write!(f, "{}.{}", self.0, self.1)
        }
    }
}

/// Converts one row image (JSON object or null) to a [`Row`] aligned with the cached schema.
fn row(cs: &CachedSchema, img: J, path: At<'_>) -> Result<Option<Row>, Fail> {
    match img {
        J::Null => Ok(None),
        J::Object(m) => row_from(cs, m, path).map(Some),
        other => Err(Fail::new(
            K::Type,
            path.to_string(),
            format!("expected a row object, got {}", json_type(&other)),
        )),
    }
}

/// A row image from its fields in record order (`__…` fields skipped; a repeated name: the
/// last value wins).
fn row_from<S: AsRef<str>>(
    cs: &CachedSchema,
    fields: impl IntoIterator<Item = (S, J)>,
    path: At<'_>,
) -> Result<Row, Fail> {
    let t = &cs.table;
    let mut out: Row = vec![Value::Null; t.columns.len()];
    for (i, (k, v)) in fields.into_iter().enumerate() {
        let k = k.as_ref();
        if k.starts_with("__") {
            continue;
        }
        let ci = if t.columns.get(i).is_some_and(|c| c.name == k) {
            i
        } else {
            cs.column_index(k).ok_or_else(|| {
                Fail::new(
                    K::Schema,
                    format!("{path}.{}", short_str(k)),
                    format!("field {:?} is not in the schema of {}", short_str(k), t.id),
                )
            })?
        };
        out[ci] = match &cs.codecs {
            Some(codecs) => decode_value(codecs[ci], &t.columns[ci].kind, v)
                .map_err(|p| Fail::new(K::Type, format!("{path}.{}", short_str(k)), p))?,
            None if v.is_null() => Value::Null,
            None => Value::Unresolved(v),
        };
    }
    Ok(out)
}

fn check_images(op: Op, before: &Option<Row>, after: &Option<Row>, path: &str) -> Result<(), Fail> {
    match op {
        Op::Delete if before.is_none() => Err(Fail::new(
            K::Shape,
            format!("{path}.before"),
            "op \"d\" without a before image",
        )),
        Op::Insert | Op::Update | Op::Snapshot if after.is_none() => Err(Fail::new(
            K::Shape,
            format!("{path}.after"),
            format!("op {:?} without an after image", op.debezium_code()),
        )),
        _ => Ok(()),
    }
}

fn kafka(rec: &RawRecord) -> KafkaCoord {
    KafkaCoord {
        topic: rec.topic.clone(),
        partition: rec.partition,
        offset: rec.offset,
    }
}

fn parse_op(v: Option<&J>, path: impl fmt::Display) -> Result<Op, Fail> {
    match v {
        Some(J::String(s)) => Op::from_debezium(s).ok_or_else(|| {
            Fail::new(
                K::UnknownOp,
                path.to_string(),
                format!("unknown op {:?} (expected c, u, d or r)", short_str(s)),
            )
        }),
        Some(other) => Err(Fail::new(
            K::UnknownOp,
            path.to_string(),
            format!(
                "op must be a string, got {}",
                crate::error::short_json(other)
            ),
        )),
        None => Err(Fail::new(K::UnknownOp, path.to_string(), "missing op")),
    }
}

/// `dbserver1.typesdb.all_types` → `dbserver1`; `""` when the topic has fewer than 3 parts.
fn topic_prefix(topic: &str) -> &str {
    let mut it = topic.rsplitn(3, '.');
    let _table = it.next();
    let _db = it.next();
    it.next().unwrap_or("")
}

fn table_id(rec: &RawRecord, db: Option<&str>, table: Option<&str>) -> Result<TableId, Fail> {
    let mut parts = rec.topic.rsplitn(3, '.');
    let t_table = parts.next();
    let t_db = parts.next();
    let has_prefix = parts.next().is_some();
    let (t_db, t_table) = if has_prefix {
        (t_db, t_table)
    } else {
        (None, None)
    };
    match (db.or(t_db), table.or(t_table)) {
        (Some(d), Some(t)) => Ok(TableId::new(d, t)),
        _ => Err(Fail::new(
            K::Table,
            "value.source",
            format!(
                "cannot tell the table: no source.db/source.table, no __db/__table, and topic {:?} is not <prefix>.<db>.<table>",
                rec.topic
            ),
        )),
    }
}

fn json_type(v: &J) -> &'static str {
    match v {
        J::Null => "null",
        J::Bool(_) => "a boolean",
        J::Number(_) => "a number",
        J::String(_) => "a string",
        J::Array(_) => "an array",
        J::Object(_) => "an object",
    }
}

fn type_err(path: impl fmt::Display, want: &str, got: &J) -> Fail {
    Fail::new(
        K::Type,
        path.to_string(),
        format!("expected {want}, got {}", crate::error::short_json(got)),
    )
}

fn opt_i64(v: Option<&J>, path: impl fmt::Display) -> Result<Option<i64>, Fail> {
    match v {
        None | Some(J::Null) => Ok(None),
        Some(J::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| type_err(&path, "an integer", &J::Number(n.clone()))),
        Some(other) => Err(type_err(&path, "an integer", other)),
    }
}

/// A millisecond timestamp: an integer whose microseconds (`× 1000`, what the warehouse
/// stores) still fit `i64` — checked here so no later stage multiplies an unchecked value.
fn opt_ts_ms(v: Option<&J>, path: impl fmt::Display) -> Result<Option<i64>, Fail> {
    let ms = opt_i64(v, &path)?;
    if let Some(x) = ms {
        if x.checked_mul(1000).is_none() {
            return Err(Fail::new(
                K::Type,
                path.to_string(),
                format!("{x} ms is out of range (its microseconds overflow 64 bits)"),
            ));
        }
    }
    Ok(ms)
}

fn opt_string(v: Option<&J>, path: impl fmt::Display) -> Result<Option<String>, Fail> {
    match v {
        None | Some(J::Null) => Ok(None),
        Some(J::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(type_err(&path, "a string", other)),
    }
}

fn snapshot_marker(v: Option<&J>, path: impl fmt::Display) -> Result<SnapshotMarker, Fail> {
    match v {
        None | Some(J::Null) => Ok(SnapshotMarker::False),
        Some(J::Bool(b)) => Ok(if *b {
            SnapshotMarker::True
        } else {
            SnapshotMarker::False
        }),
        Some(J::String(s)) => SnapshotMarker::parse(s).ok_or_else(|| {
            Fail::new(
                K::Type,
                path.to_string(),
                format!("unknown snapshot marker {:?}", short_str(s)),
            )
        }),
        Some(other) => Err(type_err(&path, "a snapshot marker string", other)),
    }
}

fn to_u32(v: Option<i64>, path: impl fmt::Display) -> Result<u32, Fail> {
    match v {
        None => Ok(0),
        Some(x) => u32::try_from(x).map_err(|_| {
            Fail::new(
                K::Type,
                path.to_string(),
                format!("{x} is out of range for u32"),
            )
        }),
    }
}

fn to_u64(v: Option<i64>, path: impl fmt::Display) -> Result<Option<u64>, Fail> {
    v.map(|x| {
        u64::try_from(x)
            .map_err(|_| Fail::new(K::Type, path.to_string(), format!("{x} is negative")))
    })
    .transpose()
}

/// Debezium's `source` block → [`SourcePosition`]. Missing fields take defaults.
pub(crate) fn parse_source(
    src: &J,
    path: &dyn fmt::Display,
    prefix: &str,
) -> Result<SourcePosition, Fail> {
    let m = match src {
        J::Null => {
            return Ok(SourcePosition {
                name: prefix.to_owned(),
                ..Default::default()
            })
        }
        J::Object(m) => m,
        other => return Err(type_err(path, "an object", other)),
    };
    let p = |k: &'static str| At(path, k);
    Ok(SourcePosition {
        file: opt_string(m.get("file"), p("file"))?.unwrap_or_default(),
        pos: to_u64(opt_i64(m.get("pos"), p("pos"))?, p("pos"))?.unwrap_or(0),
        row: to_u32(opt_i64(m.get("row"), p("row"))?, p("row"))?,
        gtid: opt_string(m.get("gtid"), p("gtid"))?,
        server_id: to_u32(opt_i64(m.get("server_id"), p("server_id"))?, p("server_id"))?,
        ts_ms: opt_ts_ms(m.get("ts_ms"), p("ts_ms"))?.unwrap_or(0),
        snapshot: snapshot_marker(m.get("snapshot"), p("snapshot"))?,
        thread: to_u64(opt_i64(m.get("thread"), p("thread"))?, p("thread"))?,
        query: opt_string(m.get("query"), p("query"))?,
        name: opt_string(m.get("name"), p("name"))?.unwrap_or_else(|| prefix.to_owned()),
        // tributary's own records after a binlog numbering restart (see the encoder).
        epoch: to_u32(
            opt_i64(m.get("tributary_epoch"), p("tributary_epoch"))?,
            p("tributary_epoch"),
        )?,
    })
}

/// `__source_*` metadata of a flattened record → [`SourcePosition`].
fn flat_source<'a>(
    g: &dyn Fn(&str) -> Option<&'a J>,
    path: &dyn fmt::Display,
    prefix: &str,
) -> Result<SourcePosition, Fail> {
    let p = |k: &'static str| At(path, k);
    Ok(SourcePosition {
        file: opt_string(g("__source_file"), p("__source_file"))?.unwrap_or_default(),
        pos: to_u64(
            opt_i64(g("__source_pos"), p("__source_pos"))?,
            p("__source_pos"),
        )?
        .unwrap_or(0),
        row: to_u32(
            opt_i64(g("__source_row"), p("__source_row"))?,
            p("__source_row"),
        )?,
        gtid: opt_string(g("__source_gtid"), p("__source_gtid"))?,
        server_id: to_u32(
            opt_i64(g("__source_server_id"), p("__source_server_id"))?,
            p("__source_server_id"),
        )?,
        ts_ms: opt_ts_ms(g("__source_ts_ms"), p("__source_ts_ms"))?.unwrap_or(0),
        snapshot: snapshot_marker(g("__source_snapshot"), p("__source_snapshot"))?,
        thread: to_u64(
            opt_i64(g("__source_thread"), p("__source_thread"))?,
            p("__source_thread"),
        )?,
        query: opt_string(g("__source_query"), p("__source_query"))?,
        name: opt_string(g("__source_name"), p("__source_name"))?
            .or(opt_string(g("__name"), p("__name"))?)
            .unwrap_or_else(|| prefix.to_owned()),
        epoch: 0,
    })
}

fn parse_tx(v: Option<&J>, path: At<'_>) -> Result<Option<TxInfo>, Fail> {
    let m = match v {
        None | Some(J::Null) => return Ok(None),
        Some(J::Object(m)) => m,
        Some(other) => return Err(type_err(path, "an object", other)),
    };
    let p = |k: &'static str| At(&path, k);
    Ok(Some(TxInfo {
        id: opt_string(m.get("id"), p("id"))?.unwrap_or_default(),
        total_order: opt_i64(m.get("total_order"), p("total_order"))?.unwrap_or(0),
        data_collection_order: opt_i64(m.get("data_collection_order"), p("data_collection_order"))?
            .unwrap_or(0),
    }))
}

fn decode_schema_change(
    rec: &RawRecord,
    m: &Map<String, J>,
    path: &str,
) -> Result<SchemaChange, Fail> {
    let p = |k: &'static str| At(&path, k);
    let db = opt_string(m.get("databaseName"), p("databaseName"))?.unwrap_or_default();
    let ddl = opt_string(m.get("ddl"), p("ddl"))?
        .ok_or_else(|| Fail::new(K::Shape, p("ddl").to_string(), "schema change without ddl"))?;
    let prefix = if rec.topic.contains('.') {
        topic_prefix(&rec.topic)
    } else {
        rec.topic.as_str()
    };
    let source = parse_source(m.get("source").unwrap_or(&J::Null), &p("source"), prefix)?;
    let mut tables = Vec::new();
    if let Some(J::Array(changes)) = m.get("tableChanges") {
        for (i, ch) in changes.iter().enumerate() {
            if let Some(t) = table_change(ch, &db, &format!("{path}.tableChanges[{i}]"))? {
                tables.push(Arc::new(t));
            }
        }
    }
    Ok(SchemaChange {
        db,
        ddl,
        source,
        tables,
    })
}

/// Debezium's `op: "t"` (TRUNCATE, emitted with `skipped.operations` not holding `t`): no
/// row, the table in `source` — a schema change (`TRUNCATE TABLE` at that position) for
/// apply, which empties current and writes one history record.
fn decode_truncate(rec: &RawRecord, m: &Map<String, J>, path: &str) -> Result<SchemaChange, Fail> {
    let src = m.get("source").unwrap_or(&J::Null);
    let source = parse_source(src, &At(&path, "source"), topic_prefix(&rec.topic))?;
    let src_db = src.get("db").and_then(J::as_str).filter(|s| !s.is_empty());
    let src_table = src
        .get("table")
        .and_then(J::as_str)
        .filter(|s| !s.is_empty());
    let tid = table_id(rec, src_db, src_table)?;
    let q = |s: &str| format!("`{}`", s.replace('`', "``"));
    Ok(SchemaChange {
        ddl: format!("TRUNCATE TABLE {}.{}", q(&tid.db), q(&tid.table)),
        db: tid.db,
        source,
        tables: vec![],
    })
}

/// `"typesdb"."all_types"` → (typesdb, all_types).
fn parse_table_ref(id: &str, default_db: &str) -> (String, String) {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = id.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    parts.push(cur);
    match parts.len() {
        1 => (default_db.to_owned(), parts.pop().unwrap_or_default()),
        _ => {
            let t = parts.pop().unwrap_or_default();
            let d = parts.pop().unwrap_or_default();
            (d, t)
        }
    }
}

/// One `tableChanges` entry (`CREATE`/`ALTER` with a table) → [`TableSchema`].
fn table_change(ch: &J, db: &str, path: &str) -> Result<Option<TableSchema>, Fail> {
    let Some(t) = ch.get("table").filter(|t| t.is_object()) else {
        return Ok(None);
    };
    let id = ch.get("id").and_then(J::as_str).unwrap_or("");
    let (tdb, tname) = parse_table_ref(id, db);
    let mut columns = Vec::new();
    for (i, c) in t
        .get("columns")
        .and_then(J::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        let cp = format!("{path}.table.columns[{i}]");
        let name = c
            .get("name")
            .and_then(J::as_str)
            .ok_or_else(|| Fail::new(K::Shape, &cp, "column without name"))?;
        let type_name = c.get("typeName").and_then(J::as_str).unwrap_or("");
        let u = |k: &str| -> Result<Option<u32>, Fail> {
            match c.get(k) {
                None | Some(J::Null) => Ok(None),
                Some(v) => v
                    .as_u64()
                    .and_then(|x| u32::try_from(x).ok())
                    .map(Some)
                    .ok_or_else(|| {
                        type_err(format!("{cp}.{k}"), "an integer in 0..=4294967295", v)
                    }),
            }
        };
        let enums = string_list(c.get("enumValues"));
        let kind = mysql_type_kind(type_name, u("length")?, u("scale")?, &enums);
        let mut col = Column::new(name, kind);
        col.nullable = c.get("optional").and_then(J::as_bool).unwrap_or(true);
        col.source_type = c
            .get("typeExpression")
            .and_then(J::as_str)
            .or(Some(type_name))
            .map(str::to_owned);
        if let Some(expr) = c.get("defaultValueExpression").and_then(J::as_str) {
            col.default = crate::resolve::resolve(&J::String(expr.to_owned()), &col.kind).ok();
        }
        columns.push(col);
    }
    let pk = string_list(t.get("primaryKeyColumnNames"));
    let tid = TableId::new(tdb, tname);
    build_table(&tid, columns, &pk).map(Some)
}

/// What the key tells about key columns.
enum KeyInfo<'a> {
    None,
    /// Raw bytes of the key's Connect schema.
    Schema(&'a RawValue),
    /// Field names of a schemaless key object.
    Names(Vec<Cow<'a, str>>),
}

impl KeyInfo<'_> {
    fn hash(&self, h: &mut Xxh3) {
        match self {
            KeyInfo::None => h.update(&[0xA0]),
            KeyInfo::Schema(r) => {
                h.update(&[0xA1]);
                h.update(r.get().as_bytes());
            }
            KeyInfo::Names(n) => {
                h.update(&[0xA2]);
                for s in n {
                    h.update(s.as_bytes());
                    h.update(&[0]);
                }
            }
        }
    }
}

fn key_info(rec: &RawRecord) -> Result<KeyInfo<'_>, Fail> {
    let Some(bytes) = rec.key.as_deref() else {
        return Ok(KeyInfo::None);
    };
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Fail::new(K::NotJson, "key", format!("not UTF-8: {e}")))?
        .trim();
    if text.is_empty() || text == "null" {
        return Ok(KeyInfo::None);
    }
    let entries = match serde_json::from_str::<Entries>(text) {
        Ok(e) => e.0,
        Err(e) => {
            return match serde_json::from_str::<J>(text) {
                // A primitive key (custom SMTs): no key columns can be named.
                Ok(_) => Ok(KeyInfo::None),
                Err(_) => Err(Fail::new(K::NotJson, "key", format!("invalid JSON: {e}"))),
            };
        }
    };
    let schema_form = entries.len() == 2
        && entries.iter().any(|(k, _)| k == "schema")
        && entries.iter().any(|(k, _)| k == "payload");
    if schema_form {
        let schema = entries.iter().find(|(k, _)| k == "schema").map(|(_, v)| *v);
        let payload = entries
            .iter()
            .find(|(k, _)| k == "payload")
            .map(|(_, v)| *v);
        if let Some(s) = schema.filter(|s| s.get() != "null") {
            return Ok(KeyInfo::Schema(s));
        }
        return match payload.filter(|p| p.get() != "null") {
            Some(p) => {
                let e: Entries = serde_json::from_str(p.get()).map_err(|e| {
                    Fail::new(K::Shape, "key.payload", format!("expected an object: {e}"))
                })?;
                Ok(KeyInfo::Names(e.0.into_iter().map(|(k, _)| k).collect()))
            }
            None => Ok(KeyInfo::None),
        };
    }
    Ok(KeyInfo::Names(
        entries.into_iter().map(|(k, _)| k).collect(),
    ))
}

/// A JSON object key, borrowed from the input when it has no escapes.
struct BorrowedKey<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for BorrowedKey<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BorrowedKey<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(BorrowedKey(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BorrowedKey(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(BorrowedKey(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The top-level fields of a JSON object, values left raw (validated, not parsed).
struct Entries<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::with_capacity(m.size_hint().unwrap_or(8));
                while let Some((k, val)) = m.next_entry::<BorrowedKey<'de>, &'de RawValue>()? {
                    v.push((k.0, val));
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// The top-level fields of a JSON object, parsed in one pass: `schema` and `payload` are left
/// raw (a Connect schema is only hashed; a payload may be `null`), everything else becomes a
/// `serde_json::Value`.
struct Fields<'a>(Vec<(Cow<'a, str>, Field<'a>)>);

enum Field<'a> {
    Raw(&'a RawValue),
    Json(J),
}

impl Field<'_> {
    fn into_json(self) -> Result<J, serde_json::Error> {
        match self {
            Field::Raw(r) => serde_json::from_str(r.get()),
            Field::Json(j) => Ok(j),
        }
    }
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::with_capacity(m.size_hint().unwrap_or(12));
                while let Some(k) = m.next_key::<BorrowedKey<'de>>()? {
                    let val = if k.0 == "schema" || k.0 == "payload" {
                        Field::Raw(m.next_value::<&'de RawValue>()?)
                    } else {
                        Field::Json(m.next_value::<J>()?)
                    };
                    v.push((k.0, val));
                }
                Ok(Fields(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// Index just past the JSON value (object, array, string or scalar) starting at `i`,
/// tracking only nesting and strings (no validation).
fn skip_value(b: &[u8], mut i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'{' | b'[' => {
            let mut depth = 0usize;
            while i < b.len() {
                match b[i] {
                    b'"' => i = skip_string(b, i)? - 1,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        b'"' => skip_string(b, i),
        _ => {
            while i < b.len() && !matches!(b[i], b',' | b'}' | b']') && !b[i].is_ascii_whitespace()
            {
                i += 1;
            }
            Some(i)
        }
    }
}

/// `b[i] == '"'` → index just past the closing quote.
fn skip_string(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// `{"schema":S,"payload":P}` exactly as the JsonConverter spells it (no whitespace) → (S, P).
/// Anything else → `None` (the general path handles it).
fn split_schema_payload(t: &str) -> Option<(&str, &str)> {
    let b = t.as_bytes();
    const HEAD: &[u8] = b"{\"schema\":";
    const MID: &[u8] = b",\"payload\":";
    if !b.starts_with(HEAD) || !b.ends_with(b"}") {
        return None;
    }
    let s_end = skip_value(b, HEAD.len())?;
    if !b[s_end..].starts_with(MID) {
        return None;
    }
    let p_start = s_end + MID.len();
    let p_end = skip_value(b, p_start)?;
    if p_end != b.len() - 1 {
        return None;
    }
    Some((&t[HEAD.len()..s_end], &t[p_start..p_end]))
}

/// The strings of a JSON array (other elements skipped); empty when absent.
fn string_list(v: Option<&J>) -> Vec<String> {
    v.and_then(J::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
