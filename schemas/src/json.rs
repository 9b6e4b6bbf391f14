//! NDJSON and top-level JSON arrays: record splitting with line numbers, shape
//! inference that keeps keys in order of first appearance, and the streaming write
//! through arrow-json's decoder.
//!
//! The file is never parsed whole. A small scanner cuts it into records (objects
//! separated by blanks for NDJSON, or by commas inside the outer `[`/`]`), tracking
//! the line each starts on; each record is checked against the inferred shape with
//! serde (no `Value` is built) and then handed to arrow-json's decoder.
//!
//! Types: booleans, Int64, Float64, text; objects become Struct and arrays List. Int and
//! float widen to Float64; other mixed scalars to text (numbers written as their JSON
//! text); an integer beyond Int64 is text. Strings stay strings (no date guessing). A key
//! holding an object in one record and a scalar or list in another fails the file,
//! naming the line and the key. Under the bad-row policy `pad`, as for CSV, a record
//! after the sample that does not fit (a new key, a wider type) makes the rest of the
//! file be scanned and the conversion start again with the final shape; under `fail`
//! it fails the file, and under `reject` it goes to the rejects file. A record that is
//! not valid JSON, or whose key holds an object in one record and a scalar in another,
//! is a bad row too: rejected (the rest of its line with it, in NDJSON) unless the
//! policy is `fail`. A structural fault (an array that never closes, a record over 64
//! MiB) still fails the file.

use std::fmt;
use std::io::BufRead;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};

use arrow::datatypes::{DataType, Field as ArrowField, Fields, Schema as ArrowSchema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::input::open_text;
use crate::json_fast;
use crate::names;
use crate::rejects::BadRowLog;
use crate::sink::Sink;
use crate::{ConvertError, Job, Problems, Written};
use weir_events::BadRows;

// A record larger than `Limits::max_record_bytes` is refused rather than
// buffered (it usually means a lost closing brace, which would otherwise swallow the
// rest of the file).
const MAX_PASSES: usize = 4;

pub(crate) fn convert(
    job: &Job<'_>,
    array: bool,
    progress: &mut dyn FnMut(u64),
) -> Result<Written, ConvertError> {
    convert_with(job, array, Path::Fast, progress)
}

/// Which write a pass tries first: the one-parse path (falling back to the exact one)
/// or the exact one alone, which the tests compare it with.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Path {
    Fast,
    #[cfg_attr(not(test), allow(dead_code))]
    Exact,
    /// The one-parse path, failing where it would give up (tests: it must not, on a
    /// clean file).
    #[cfg_attr(not(test), allow(dead_code))]
    FastOnly,
}

fn convert_with(
    job: &Job<'_>,
    array: bool,
    path: Path,
    progress: &mut dyn FnMut(u64),
) -> Result<Written, ConvertError> {
    let mut shape = Shape::Object(Vec::new());
    {
        let mut records = Records::open(job, array, progress)?;
        let mut seen = 0;
        // Read on past the sample while no key has been seen (`{}` records).
        while seen < job.opts.sample_rows || matches!(&shape, Shape::Object(f) if f.is_empty()) {
            let Some(line) = records.next()? else { break };
            let before = (job.opts.bad_rows != BadRows::Fail).then(|| shape.clone());
            if let Err(e) = merge_record(job.file, line, &records.buf, &mut shape) {
                // A bad record is the write pass's to report; it shapes nothing.
                match before {
                    Some(before) => {
                        shape = before;
                        records.finish_line()?;
                        continue;
                    }
                    None => return Err(e),
                }
            }
            seen += 1;
        }
    }
    for _ in 0..MAX_PASSES {
        match write_pass(job, array, &shape, path, progress)? {
            Pass::Done(written) => return Ok(written),
            Pass::Widened(wider) => shape = wider,
        }
    }
    Err(ConvertError::malformed(
        job.file,
        None,
        None,
        "the shape of the records kept changing between passes (a bug in weir's inference)",
    ))
}

enum Pass {
    Done(Written),
    Widened(Shape),
}

fn write_pass(
    job: &Job<'_>,
    array: bool,
    shape: &Shape,
    path: Path,
    progress: &mut dyn FnMut(u64),
) -> Result<Pass, ConvertError> {
    let Shape::Object(top) = shape else {
        return Err(ConvertError::malformed(
            job.file,
            None,
            None,
            "records are not objects",
        ));
    };
    if top.is_empty() {
        return Err(ConvertError::malformed(
            job.file,
            None,
            None,
            "no columns: the JSON holds no records, or only empty objects",
        ));
    }
    // The decoder matches the source keys; the written schema carries resolved names.
    job.opts.limits.check_columns(job.file, top.len())?;
    let source: Vec<String> = top.iter().map(|(k, _)| k.clone()).collect();
    let resolved = names::resolve(&source);
    let decode_schema: SchemaRef = Arc::new(ArrowSchema::new(
        top.iter()
            .map(|(k, s)| ArrowField::new(k, s.data_type(), true))
            .collect::<Vec<_>>(),
    ));
    let out_schema: SchemaRef = Arc::new(ArrowSchema::new(
        resolved
            .iter()
            .zip(top)
            .map(|((name, _), (_, s))| ArrowField::new(name, s.data_type(), true))
            .collect::<Vec<_>>(),
    ));
    let written = |sink: Sink, bad: Option<BadRowLog<'_>>| -> Result<Pass, ConvertError> {
        let (statistics, parquet) = sink.finish()?;
        let (problems, rejected, rejects_entries) = match bad {
            Some(b) => (b.problems, b.rejected, b.entries),
            None => (Problems::default(), 0, 0),
        };
        Ok(Pass::Done(Written {
            schema: crate::event_schema(&out_schema, &resolved),
            rows_read: Some(statistics.rows + rejected),
            statistics,
            problems,
            parquet_size: parquet.size,
            parquet_sha256: Some(parquet.sha256),
            rejected,
            rejects_entries,
        }))
    };
    // One parse per record when every record fits; the exact path below otherwise.
    if path != Path::Exact {
        let sink = Sink::create(job.output, out_schema.clone(), job.encoders())?;
        if let Some(sink) = json_fast::write(job, array, top, &out_schema, sink, progress)? {
            return written(sink, None);
        }
        if path == Path::FastOnly {
            return Err(ConvertError::unsupported(
                job.file,
                "the one-parse path gave up".to_owned(),
            ));
        }
    }
    let batch_rows = job.opts.batch_rows.max(1);
    let decoder = arrow::json::ReaderBuilder::new(decode_schema)
        .with_batch_size(batch_rows)
        .with_coerce_primitive(true)
        .with_strict_mode(true)
        .build_decoder()
        .map_err(|e| ConvertError::unsupported(job.file, format!("JSON decoder: {e}")))?;
    let sink = Sink::create(job.output, out_schema.clone(), job.encoders())?;
    let mut records = Records::open(job, array, progress)?;
    let mut check = shape.clone();
    // Three threads: this one cuts records and checks them against the shape, one
    // decodes them into Arrow, the sink's writes Parquet. The scoped threads re-raise a
    // panic here, where `convert`'s guard turns it into an error.
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel::<Chunk>(QUEUED_CHUNKS);
        let out = &out_schema;
        let decoding =
            scope.spawn(move || decode_chunks(job.file, decoder, rx, sink, out, batch_rows));
        let mut bad = BadRowLog::new(job);
        let mut rows_read = 0u64;
        let read = (|| -> Result<Option<Shape>, ConvertError> {
            let mut chunk = Chunk::default();
            while let Some(line) = records.next()? {
                rows_read += 1;
                let misfit = match merge_record(job.file, line, &records.buf, &mut check) {
                    Ok(false) => None,
                    Ok(true) if bad.policy == BadRows::Pad => {
                        // Does not fit: learn the final shape from the rest, then start
                        // again. A record that cannot be read shapes nothing.
                        while let Some(line) = records.next()? {
                            let before = check.clone();
                            if merge_record(job.file, line, &records.buf, &mut check).is_err() {
                                check = before;
                                records.finish_line()?;
                            }
                        }
                        return Ok(Some(check.clone()));
                    }
                    Ok(true) => Some((misfit_reason(shape, &check, job.opts.sample_rows), None)),
                    Err(ConvertError::Malformed { at, reason }) if bad.policy != BadRows::Fail => {
                        Some((reason, at.column))
                    }
                    Err(e) => return Err(e),
                };
                if let Some((reason, column)) = misfit {
                    check.clone_from(shape);
                    records.finish_line()?;
                    bad.reject(line, column.as_deref(), &reason, &records.buf)?;
                    continue;
                }
                chunk.bytes.extend_from_slice(&records.buf);
                chunk.records.push((line, chunk.bytes.len()));
                if chunk.bytes.len() >= CHUNK_BYTES && tx.send(std::mem::take(&mut chunk)).is_err()
                {
                    // The decoder stopped on an error; it is the answer.
                    return Ok(None);
                }
            }
            if !chunk.records.is_empty() {
                let _ = tx.send(chunk);
            }
            Ok(None)
        })();
        drop(tx);
        let decoded = match decoding.join() {
            Ok(result) => result,
            Err(payload) => std::panic::resume_unwind(payload),
        };
        // The decoder is behind the reader: its error is on an earlier record, and
        // the sequential order of checks would have met it first.
        let sink = decoded?;
        match read? {
            Some(wider) => Ok(Pass::Widened(wider)),
            None => {
                let bad = bad.finish(rows_read)?;
                written(sink, Some(bad))
            }
        }
    })
}

/// Why a record that parsed does not fit `shape` (now `wider` after merging it): the
/// first top-level key that is new or wider.
fn misfit_reason(shape: &Shape, wider: &Shape, sample_rows: usize) -> String {
    let (Shape::Object(had), Shape::Object(now)) = (shape, wider) else {
        return "the record is not an object".to_owned();
    };
    for (key, s) in now {
        match had.iter().find(|(k, _)| k == key) {
            None => {
                return format!(
                    "key {key:?} is not among the columns inferred from the first {sample_rows} records"
                );
            }
            Some((_, old)) if old != s => {
                return format!(
                    "key {key:?}: the value does not fit {} (inferred from the first {sample_rows} records; it would need {})",
                    old.data_type(),
                    s.data_type()
                );
            }
            _ => {}
        }
    }
    "the record does not fit the columns inferred from the sample".to_owned()
}

/// Records handed from the reader to the decoder: their bytes back to back, and each
/// one's line and end offset.
#[derive(Default)]
struct Chunk {
    bytes: Vec<u8>,
    records: Vec<(u64, usize)>,
}

/// Bytes of records per chunk: large enough that the hand-over costs nothing, small
/// enough to keep memory flat.
const CHUNK_BYTES: usize = 1 << 20;
/// Chunks waiting for the decoder.
const QUEUED_CHUNKS: usize = 2;

/// Decodes the reader's chunks into batches and hands them to the sink; returns the
/// sink (still open) when the reader is done.
fn decode_chunks(
    file: &str,
    mut decoder: arrow::json::reader::Decoder,
    rx: Receiver<Chunk>,
    mut sink: Sink,
    out_schema: &SchemaRef,
    batch_rows: usize,
) -> Result<Sink, ConvertError> {
    let flush = |decoder: &mut arrow::json::reader::Decoder,
                 sink: &mut Sink,
                 lines: (u64, u64)|
     -> Result<(), ConvertError> {
        let batch = decoder.flush().map_err(|e| {
            ConvertError::malformed(
                file,
                Some(lines.0),
                None,
                format!("records on lines {}-{}: {e}", lines.0, lines.1),
            )
        })?;
        if let Some(batch) = batch {
            let renamed = RecordBatch::try_new(out_schema.clone(), batch.columns().to_vec())
                .map_err(|e| ConvertError::unsupported(file, format!("renaming: {e}")))?;
            sink.write(&renamed)?;
        }
        Ok(())
    };
    let mut first_line = 1;
    let mut last_line = 1;
    for chunk in rx {
        let mut start = 0;
        for &(line, end) in &chunk.records {
            if decoder.is_empty() {
                first_line = line;
            }
            last_line = line;
            let mut rest: &[u8] = &chunk.bytes[start..end];
            start = end;
            while !rest.is_empty() {
                let n = decoder
                    .decode(rest)
                    .map_err(|e| ConvertError::malformed(file, Some(line), None, e.to_string()))?;
                rest = &rest[n..];
                if n == 0 || decoder.len() >= batch_rows {
                    flush(&mut decoder, &mut sink, (first_line, last_line))?;
                    first_line = line;
                }
            }
            if decoder.len() >= batch_rows {
                flush(&mut decoder, &mut sink, (first_line, last_line))?;
            }
        }
    }
    flush(&mut decoder, &mut sink, (first_line, last_line))?;
    Ok(sink)
}

/// Parses one record into `shape`; true when the shape had to change for it.
fn merge_record(
    file: &str,
    line: u64,
    buf: &[u8],
    shape: &mut Shape,
) -> Result<bool, ConvertError> {
    let mut changed = false;
    let mut path = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(buf);
    let result = Merge {
        shape,
        changed: &mut changed,
        path: &mut path,
        top: true,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    match result {
        Ok(()) => Ok(changed),
        Err(e) => {
            let at = line + (e.line() as u64).saturating_sub(1);
            let column = path.first().map(String::as_str);
            // serde's position is within the record; the line is made absolute above.
            let text = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            let what = text.strip_suffix(&suffix).unwrap_or(&text);
            let mut reason = match (e.classify(), path.len()) {
                (serde_json::error::Category::Data, 0 | 1) => what.to_owned(),
                (serde_json::error::Category::Data, _) => {
                    format!("key {:?}: {what}", path.join("."))
                }
                _ => format!("invalid JSON near character {}: {what}", e.column()),
            };
            if at > line {
                reason.push_str(&format!(" (in the record that starts on line {line})"));
            }
            Err(ConvertError::malformed(file, Some(at), column, reason))
        }
    }
}

/// The inferred type of a JSON value; objects keep keys in order of first appearance.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Shape {
    Null,
    Bool,
    Int,
    Float,
    Utf8,
    List(Box<Shape>),
    Object(Vec<(String, Shape)>),
}

impl Shape {
    pub(crate) fn data_type(&self) -> DataType {
        match self {
            Shape::Null | Shape::Utf8 => DataType::Utf8,
            Shape::Bool => DataType::Boolean,
            Shape::Int => DataType::Int64,
            Shape::Float => DataType::Float64,
            Shape::List(item) => DataType::new_list(item.data_type(), true),
            Shape::Object(fields) => DataType::Struct(Fields::from(
                fields
                    .iter()
                    .map(|(k, s)| ArrowField::new(k, s.data_type(), true))
                    .collect::<Vec<_>>(),
            )),
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Shape::Null => "null",
            Shape::Bool => "a boolean",
            Shape::Int | Shape::Float => "a number",
            Shape::Utf8 => "a string",
            Shape::List(_) => "an array",
            Shape::Object(_) => "an object",
        }
    }
}

/// Merges one value into a shape as serde parses it.
struct Merge<'a> {
    shape: &'a mut Shape,
    changed: &'a mut bool,
    /// Keys from the record down to the value; left in place on error for the message.
    path: &'a mut Vec<String>,
    top: bool,
}

impl Merge<'_> {
    fn scalar<E: serde::de::Error>(self, found: Shape) -> Result<(), E> {
        if self.top {
            return Err(E::custom(format!(
                "a record must be a JSON object, found {}",
                found.describe()
            )));
        }
        let joined = match (&*self.shape, &found) {
            (a, b) if a == b => return Ok(()),
            (_, Shape::Null) => return Ok(()),
            (Shape::Null, _) => found,
            (Shape::Int, Shape::Float) => Shape::Float,
            (Shape::Float, Shape::Int) => return Ok(()),
            (Shape::Utf8, _) => return Ok(()),
            (Shape::Bool | Shape::Int | Shape::Float, _) => Shape::Utf8,
            (had, _) => return Err(conflict(had, &found)),
        };
        *self.shape = joined;
        *self.changed = true;
        Ok(())
    }
}

fn conflict<E: serde::de::Error>(had: &Shape, found: &Shape) -> E {
    E::custom(format!(
        "{} where earlier records have {}",
        found.describe(),
        had.describe()
    ))
}

impl<'de> DeserializeSeed<'de> for Merge<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Merge<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.scalar(Shape::Null)
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.scalar(Shape::Null)
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar(Shape::Bool)
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.scalar(Shape::Int)
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        // Beyond Int64: keep the digits as text rather than round them in a float.
        self.scalar(if i64::try_from(v).is_ok() {
            Shape::Int
        } else {
            Shape::Utf8
        })
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.scalar(Shape::Float)
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.scalar(Shape::Utf8)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.top {
            return Err(serde::de::Error::custom(
                "a record must be a JSON object, found an array",
            ));
        }
        match self.shape {
            Shape::Null => {
                *self.shape = Shape::List(Box::new(Shape::Null));
                *self.changed = true;
            }
            Shape::List(_) => {}
            had => return Err(conflict(had, &Shape::List(Box::new(Shape::Null)))),
        }
        let Shape::List(item) = self.shape else {
            return Ok(());
        };
        while seq
            .next_element_seed(Merge {
                shape: item,
                changed: self.changed,
                path: self.path,
                top: false,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        match self.shape {
            Shape::Null => {
                *self.shape = Shape::Object(Vec::new());
                *self.changed = true;
            }
            Shape::Object(_) => {}
            had => return Err(conflict(had, &Shape::Object(Vec::new()))),
        }
        let Shape::Object(fields) = self.shape else {
            return Ok(());
        };
        // Records usually repeat their keys in the same order: look there first.
        let mut cursor = 0;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let idx = if fields.get(cursor).is_some_and(|(k, _)| *k == key) {
                cursor
            } else if let Some(i) = fields.iter().position(|(k, _)| *k == key) {
                i
            } else {
                fields.push((key.to_string(), Shape::Null));
                *self.changed = true;
                fields.len() - 1
            };
            cursor = idx + 1;
            self.path.push(key.into_owned());
            map.next_value_seed(Merge {
                shape: &mut fields[idx].1,
                changed: self.changed,
                path: self.path,
                top: false,
            })?;
            self.path.pop();
        }
        Ok(())
    }
}

/// Cuts the input into records; `buf` holds the current one.
struct Records<'a> {
    reader: Box<dyn BufRead + 'a>,
    file: &'a str,
    array: bool,
    /// Before the outer `[` has been read (array mode).
    started: bool,
    finished: bool,
    /// 1-based line of the next unread byte.
    line: u64,
    buf: Vec<u8>,
    /// The longest record accepted (`Limits::max_record_bytes`).
    max_record: usize,
}

impl<'a> Records<'a> {
    fn open(
        job: &Job<'a>,
        array: bool,
        progress: &'a mut dyn FnMut(u64),
    ) -> Result<Self, ConvertError> {
        Ok(Records {
            reader: open_text(
                job.input,
                job.file,
                job.compression,
                job.encoding,
                job.opts.limits.max_inflation,
                progress,
            )?,
            file: job.file,
            array,
            started: false,
            finished: false,
            line: 1,
            buf: Vec::new(),
            max_record: job.opts.limits.max_record_bytes.max(1),
        })
    }

    fn bad(&self, line: u64, reason: impl Into<String>) -> ConvertError {
        ConvertError::malformed(self.file, Some(line), None, reason)
    }

    fn read_err(&self, e: std::io::Error) -> ConvertError {
        ConvertError::from_read(self.file, Some(self.line), e)
    }

    /// The next non-blank byte, not consumed; `None` at the end.
    fn peek(&mut self) -> Result<Option<u8>, ConvertError> {
        loop {
            let chunk = match self.reader.fill_buf() {
                Ok(c) => c,
                Err(e) => return Err(self.read_err(e)),
            };
            if chunk.is_empty() {
                return Ok(None);
            }
            let blanks = chunk.iter().take_while(|c| c.is_ascii_whitespace()).count();
            let newlines = chunk[..blanks].iter().filter(|&&c| c == b'\n').count();
            let next = chunk.get(blanks).copied();
            self.reader.consume(blanks);
            self.line += newlines as u64;
            if next.is_some() {
                return Ok(next);
            }
        }
    }

    /// Reads the next record into `buf`; returns the line it starts on.
    fn next(&mut self) -> Result<Option<u64>, ConvertError> {
        if self.finished {
            return Ok(None);
        }
        let mut next = self.peek()?;
        if self.array {
            if !self.started {
                self.started = true;
                if next != Some(b'[') {
                    return Err(self.bad(self.line, "expected a JSON array starting with '['"));
                }
                self.reader.consume(1);
                next = self.peek()?;
                if next == Some(b']') {
                    return self.end_array();
                }
            } else {
                match next {
                    Some(b',') => {
                        self.reader.consume(1);
                        next = self.peek()?;
                        if next == Some(b']') {
                            return Err(self.bad(self.line, "a trailing comma before ']'"));
                        }
                    }
                    Some(b']') => return self.end_array(),
                    Some(c) => {
                        return Err(self.bad(
                            self.line,
                            format!("expected ',' or ']' between records, found {:?}", c as char),
                        ));
                    }
                    None => {
                        return Err(
                            self.bad(self.line, "the file ends inside the JSON array (no ']')")
                        );
                    }
                }
            }
            if next.is_none() {
                return Err(self.bad(self.line, "the file ends inside the JSON array (no ']')"));
            }
        }
        if next.is_none() {
            self.finished = true;
            return Ok(None);
        }
        let start = self.line;
        self.scan_value(start)?;
        Ok(Some(start))
    }

    /// NDJSON: appends the rest of the current physical line to `buf`, so a record that
    /// is rejected takes its whole line with it (`{"a":1} junk` is one bad row, not
    /// two). Does nothing in a JSON array, where records are not lines.
    fn finish_line(&mut self) -> Result<(), ConvertError> {
        if self.array || self.buf.ends_with(b"\n") {
            return Ok(());
        }
        loop {
            let chunk = match self.reader.fill_buf() {
                Ok(c) => c,
                Err(e) => return Err(self.read_err(e)),
            };
            if chunk.is_empty() {
                return Ok(());
            }
            let (used, done) = match chunk.iter().position(|&c| c == b'\n') {
                Some(p) => (p + 1, true),
                None => (chunk.len(), false),
            };
            self.buf.extend_from_slice(&chunk[..used]);
            self.reader.consume(used);
            if done {
                self.line += 1;
                return Ok(());
            }
            if self.buf.len() > self.max_record {
                return Err(self.bad(
                    self.line,
                    format!(
                        "limit: a line longer than {} bytes ({})",
                        self.max_record,
                        crate::limits::RECORD
                    ),
                ));
            }
        }
    }

    fn end_array(&mut self) -> Result<Option<u64>, ConvertError> {
        self.reader.consume(1);
        self.finished = true;
        if let Some(c) = self.peek()? {
            return Err(self.bad(
                self.line,
                format!("unexpected {:?} after the closing ']'", c as char),
            ));
        }
        Ok(None)
    }

    /// Copies one JSON value (starting at the next byte) into `buf`, by bracket depth
    /// outside strings; the parse that follows checks the rest.
    fn scan_value(&mut self, start: u64) -> Result<(), ConvertError> {
        self.buf.clear();
        let mut depth = 0usize;
        let mut in_string = false;
        let mut escape = false;
        let mut first = true;
        loop {
            let chunk = match self.reader.fill_buf() {
                Ok(c) => c,
                Err(e) => return Err(self.read_err(e)),
            };
            if chunk.is_empty() {
                if depth > 0 || in_string {
                    return Err(self.truncated(start));
                }
                return Ok(());
            }
            let mut used = 0;
            let mut done = false;
            let mut newlines = 0;
            for &c in chunk {
                if first && depth == 0 && !in_string && !matches!(c, b'{' | b'[' | b'"') {
                    // A bare scalar: up to the next separator.
                    if c.is_ascii_whitespace() || matches!(c, b',' | b']' | b'}') {
                        if used == 0 && self.buf.is_empty() {
                            used = 1; // a lone separator where a value belongs
                        }
                        done = true;
                        break;
                    }
                    used += 1;
                    continue;
                }
                first = false;
                used += 1;
                if c == b'\n' {
                    newlines += 1;
                }
                if in_string {
                    if escape {
                        escape = false;
                    } else if c == b'\\' {
                        escape = true;
                    } else if c == b'"' {
                        in_string = false;
                        if depth == 0 {
                            done = true;
                            break;
                        }
                    }
                } else {
                    match c {
                        b'"' => in_string = true,
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                done = true;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            }
            self.buf.extend_from_slice(&chunk[..used]);
            self.reader.consume(used);
            self.line += newlines;
            if done {
                return Ok(());
            }
            if self.buf.len() > self.max_record {
                return Err(self.bad(
                    start,
                    format!(
                        "limit: a JSON record longer than {} bytes ({}): a brace that never closes?",
                        self.max_record,
                        crate::limits::RECORD
                    ),
                ));
            }
        }
    }

    /// The value starting at `start` never closes: let serde say where it goes wrong.
    fn truncated(&self, start: u64) -> ConvertError {
        let mut shape = Shape::Object(Vec::new());
        match merge_record(self.file, start, &self.buf, &mut shape) {
            Err(e) => e,
            Ok(_) => self.bad(
                start,
                "a JSON record starting here never closes (cut off at the end of the file)",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The one-parse path against the exact one: on each input both must end the same
    //! way — the same rows and types, or the same error.

    use super::*;
    use crate::ConvertOptions;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use weir_events::Compression;

    fn outcome(input: &[u8], array: bool, path: Path) -> String {
        let dir = tempfile::tempdir().expect("a temp dir");
        let src = dir.path().join("in.json");
        let out = dir.path().join("out.parquet");
        std::fs::write(&src, input).expect("writes the input");
        let opts = ConvertOptions {
            filename: "in.json".into(),
            sample_rows: 3,
            batch_rows: 2,
            ..ConvertOptions::default()
        };
        let job = Job {
            input: &src,
            output: &out,
            opts: &opts,
            file: "in.json",
            compression: Compression::None,
            encoding: encoding_rs::UTF_8,
        };
        match convert_with(&job, array, path, &mut |_| {}) {
            Err(e) => format!("error: {e}"),
            Ok(w) => {
                let file = std::fs::File::open(&out).expect("the output exists");
                let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                    .and_then(|b| b.build())
                    .expect("the output reads back");
                let batches: Vec<_> = reader.map(|b| b.expect("a batch")).collect();
                let schema = batches.first().map(|b| b.schema());
                let rows = schema.map(|s| {
                    arrow::compute::concat_batches(&s, &batches)
                        .map(|b| format!("{b:?}"))
                        .unwrap_or_default()
                });
                format!(
                    "{:?}\n{:?}\n{:?}\n{rows:?}",
                    w.schema, w.statistics, w.problems.first
                )
            }
        }
    }

    fn same(input: &str) {
        for array in [false, true] {
            let text = if array {
                let records: Vec<&str> = input.lines().filter(|l| !l.trim().is_empty()).collect();
                format!("[{}]", records.join(",\n"))
            } else {
                input.to_owned()
            };
            let fast = outcome(text.as_bytes(), array, Path::Fast);
            let exact = outcome(text.as_bytes(), array, Path::Exact);
            assert_eq!(
                fast,
                exact,
                "input ({}):\n{text}",
                if array { "array" } else { "lines" }
            );
        }
    }

    const HEAD: &str = "{\"i\": 1, \"f\": 1.5, \"t\": \"a\", \"b\": true, \"n\": null, \"l\": [1], \"o\": {\"x\": 1, \"y\": [{\"z\": \"q\"}]}}\n\
        {\"i\": -2, \"f\": 2, \"t\": 3, \"b\": false, \"n\": null, \"l\": [], \"o\": {\"x\": null}}\n\
        {\"i\": null, \"f\": null, \"t\": null, \"b\": null, \"n\": null, \"l\": null, \"o\": null}\n";

    #[test]
    fn records_that_fit_come_out_the_same() {
        for tail in [
            "{\"t\": \"esc \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\ud83d\\ude00\"}",
            "{\"t\": 1E5} \r\n\r\n  {\"t\": -0.0, \"i\": 0}\n{\"t\": true}",
            "{\"o\": {\"y\": [{\"z\": null}, null, {}]}, \"l\": [null, 2]}",
            "{\"f\": -0.0}\n{\"f\": 123456789.125}\n{\"f\": 1e-5}\n{\"f\": 9007199254740993}",
            "{\"t\": 12345678901234567890}",
            "{}\n{ \"o\" : { } , \"i\" : 9223372036854775807 }",
            "{\"i\": -9223372036854775808}",
        ] {
            same(&format!("{HEAD}{tail}\n"));
        }
    }

    #[test]
    fn records_that_widen_or_fail_come_out_the_same() {
        for tail in [
            "{\"i\": 1.5}",
            "{\"i\": -0}",
            "{\"i\": \"7\"}",
            "{\"i\": 9223372036854775808}",
            "{\"f\": 18446744073709551616}",
            "{\"n\": 1}",
            "{\"n\": {\"k\": 1}}",
            "{\"b\": 1}",
            "{\"new\": 1}",
            "{\"o\": {\"x\": 1, \"w\": 2}}",
            "{\"i\": 1, \"i\": 2.5}",
            "{\"\\u0069\": 2.5}",
            "{\"l\": [1, \"x\"]}",
            "{\"o\": [1]}",
            "{\"t\": {\"k\": 1}}",
            "{\"f\": 1e400}",
            "{\"t\": 01}",
            "{\"t\": \"raw\ttab\"}",
            "{\"t\": \"\\ud800\"}",
            "{\"t\": \"\\q\"}",
            "{\"i\": 1 \"f\": 2}",
            "{\"i\": 1,}",
            "{\"i\": 1}}",
            "42",
            "null",
            "[1]",
            "{\"i\": 1",
            "{\"t\": \"x\"}\u{c}{\"i\": 2}",
            "{\"t\": tru}",
        ] {
            same(&format!("{HEAD}{tail}\n{{\"i\": 5}}\n"));
        }
    }

    /// Clean records of every kind of value take the one-parse path from start to end
    /// (the buffer ends inside every token somewhere: tests read 7 bytes at a time), and
    /// come out as the exact path writes them.
    #[test]
    fn clean_records_take_the_one_parse_path() {
        let mut records: Vec<String> = HEAD.lines().map(str::to_owned).collect();
        for i in 0..300 {
            records.push(format!(
                "{{\"i\": {}, \"f\": {}.{:03}e{}, \"t\": \"s\\u00e9\\ud83d\\ude00\\\"{i}\\n\", \"b\": {}, \"n\": null,\r\n \"l\": [{i}, null, -{}], \"o\": {{\"y\": [{{\"z\": \"{i}\"}}], \"x\": -{}}}}}",
                i * 7 - 1000,
                i,
                i % 1000,
                i % 5,
                i % 2 == 0,
                i + 1,
                i + 1,
            ));
            records.push(format!("{{\"t\": {i}.5E-2, \"f\": -{}}}\n", i + 1));
        }
        for array in [false, true] {
            let text = if array {
                format!("[{}]", records.join(",\n"))
            } else {
                records.join("\n")
            };
            let fast = outcome(text.as_bytes(), array, Path::FastOnly);
            assert!(
                !fast.starts_with("error"),
                "{}",
                &fast[..fast.len().min(300)]
            );
            assert!(
                fast == outcome(text.as_bytes(), array, Path::Exact),
                "the paths differ (array: {array})"
            );
        }
    }

    #[test]
    fn invalid_utf8_in_a_string_fails_the_same() {
        let mut input = HEAD.as_bytes().to_vec();
        input.extend_from_slice(b"{\"t\": \"bad \xff byte\"}\n");
        assert_eq!(
            outcome(&input, false, Path::Fast),
            outcome(&input, false, Path::Exact)
        );
    }
}
