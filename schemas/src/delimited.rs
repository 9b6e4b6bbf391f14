//! CSV and TSV: header, type inference over a sample, and the streaming write with
//! widening.
//!
//! The first record is the header. Types come from the first `sample_rows` records;
//! the write pass then checks every value against its column's type. When a later
//! value does not fit, the pass stops writing, scans the rest of the file to learn
//! every column's final type, and the file is converted again from the start, so no
//! value is lost or nulled. A column with no value in the sample is text.
//!
//! Bad rows follow the upload's policy (`rejects`): a ragged row, a field that is not
//! valid text, or (under `fail` and `reject`) a value after the sample that its column's
//! type cannot hold fails the file (`fail`) or goes to the rejects file (`reject`).
//! Under `pad` the table widens instead, as described above, short rows are padded
//! with nulls and a long row's extra fields go to the rejects file; only a row that is
//! not valid text is rejected. The sample skips rows with the wrong number of fields
//! or invalid text, so they never shape the column types.

use std::io::BufRead;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder,
    Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{Field as ArrowField, Schema as ArrowSchema, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::input::open_text;
use crate::names;
use weir_events::{BadRows, RowProblem};

use crate::records::Records;
use crate::rejects::BadRowLog;
use crate::sink::{Dictionary, Sink};
use crate::values::{self, Kind};
use crate::{ConvertError, Job, Written};

/// Passes over the file at most: one with the sampled types, one after widening. More
/// would mean the widening scan missed a value, which is a bug worth an error.
const MAX_PASSES: usize = 4;

pub(crate) fn convert(
    job: &Job<'_>,
    delimiter: u8,
    progress: &mut dyn FnMut(u64),
) -> Result<Written, ConvertError> {
    let (header, mut kinds, distinct) = {
        let mut rows = Rows::open(job, delimiter, progress)?;
        let header = rows.header()?;
        job.opts.limits.check_columns(job.file, header.len())?;
        let mut kinds = vec![Kind::Null; header.len()];
        let mut distinct = vec![Distinct::for_columns(header.len()); header.len()];
        let mut seen = 0;
        while seen < job.opts.sample_rows && rows.next()? {
            // A bad row is the write pass's to report; it does not shape the types.
            let fits = rows.records.len() == header.len()
                && (0..header.len()).all(|i| rows.records.get_str(i).is_ok());
            if !fits {
                continue;
            }
            for (i, (kind, d)) in kinds.iter_mut().zip(&mut distinct).enumerate() {
                let value = rows.field(i, &header)?;
                *kind = kind.join(values::classify(value));
                d.add(value);
            }
            seen += 1;
        }
        (header, kinds, distinct)
    };
    for k in &mut kinds {
        if *k == Kind::Null {
            *k = Kind::Utf8;
        }
    }
    let resolved = names::resolve(&header);
    // Column overrides: the producer's types win over the sample's, and a value that
    // does not fit one is a bad row under every policy (an override is not widened).
    let mut overridden = vec![false; header.len()];
    for (name, type_name) in &job.opts.columns {
        let kind = Kind::from_override(type_name).map_err(|e| {
            ConvertError::unsupported(job.file, format!("column override {name}={type_name}: {e}"))
        })?;
        let i = header
            .iter()
            .position(|h| h == name)
            .or_else(|| resolved.iter().position(|(r, _)| r == name))
            .ok_or_else(|| {
                let known: Vec<&str> = resolved.iter().map(|(r, _)| r.as_str()).collect();
                ConvertError::unsupported(
                    job.file,
                    format!(
                        "column override {name}={type_name}: no column {name:?} (columns: {})",
                        known.join(", ")
                    ),
                )
            })?;
        kinds[i] = kind;
        overridden[i] = true;
    }
    let plain: Vec<String> = resolved
        .iter()
        .zip(&distinct)
        .filter(|(_, d)| d.mostly_distinct())
        .map(|((name, _), _)| name.clone())
        .collect();
    // What widening did in earlier passes (policy `pad`), reported with the final one.
    let mut widened: Vec<RowProblem> = Vec::new();
    for _ in 0..MAX_PASSES {
        match write_pass(
            job,
            delimiter,
            &header,
            &resolved,
            &kinds,
            &overridden,
            &plain,
            progress,
        )? {
            Pass::Done(mut written) => {
                written.problems.count += widened.len() as u64;
                widened.append(&mut written.problems.first);
                widened.truncate(weir_events::MAX_ROW_PROBLEMS);
                written.problems.first = widened;
                return Ok(written);
            }
            Pass::Widened(wider, note) => {
                kinds = wider;
                widened.push(note);
            }
        }
    }
    Err(ConvertError::malformed(
        job.file,
        None,
        None,
        "column types kept changing between passes (a bug in weir's inference)",
    ))
}

enum Pass {
    Done(Written),
    /// The wider types, and the value that made them wider.
    Widened(Vec<Kind>, RowProblem),
}

fn write_pass(
    job: &Job<'_>,
    delimiter: u8,
    header: &[String],
    resolved: &[(String, Option<String>)],
    kinds: &[Kind],
    overridden: &[bool],
    plain: &[String],
    progress: &mut dyn FnMut(u64),
) -> Result<Pass, ConvertError> {
    let schema: SchemaRef = Arc::new(ArrowSchema::new(
        resolved
            .iter()
            .zip(kinds)
            .map(|((name, _), k)| ArrowField::new(name, k.data_type(), true))
            .collect::<Vec<_>>(),
    ));
    let mut rows = Rows::open(job, delimiter, progress)?;
    rows.header()?;
    let mut sink = Sink::create_with(
        job.output,
        schema.clone(),
        Dictionary::PlainFor(plain.to_vec()),
        job.encoders(),
    )?;
    let mut builders: Vec<Builder> = kinds.iter().map(|k| Builder::new(*k)).collect();
    let mut bad = BadRowLog::new(job);
    // Rows of the batch being built that were rejected after some of their values had
    // been appended: they are filtered out when the batch is finished.
    let mut dropped: Vec<usize> = Vec::new();
    let mut rows_read = 0u64;
    let mut in_batch = 0;
    let batch_rows = job.batch_rows(kinds.len());
    let n = header.len();
    'rows: while rows.next()? {
        rows_read += 1;
        let found = rows.records.len();
        if found != n {
            let reason = format!("expected {n} fields, found {found}");
            if bad.policy != BadRows::Pad {
                bad.reject(rows.line, None, &reason, rows.records.raw())?;
                continue;
            }
            if found < n {
                let reason = format!("{reason}: the missing values are null");
                bad.padded(rows.line, None, &reason, rows.records.raw(), &[])?;
            } else {
                let extra: Vec<String> = (n..found)
                    .map(|i| {
                        String::from_utf8_lossy(rows.records.get(i).unwrap_or_default())
                            .into_owned()
                    })
                    .collect();
                let reason = format!("{reason}: the extra values are kept in the rejects file");
                bad.padded(rows.line, None, &reason, rows.records.raw(), &extra)?;
            }
        }
        for (i, b) in builders.iter_mut().enumerate() {
            let value = match rows.records.get_str(i) {
                Ok(v) => v,
                Err(e) => {
                    let reason = format!(
                        "not valid {} text at byte offset {}",
                        job.encoding.name(),
                        rows.records.offset_in_field(i, e.valid_up_to())
                    );
                    bad.reject(rows.line, Some(&header[i]), &reason, rows.records.raw())?;
                    drop_row(&mut builders, i, &mut dropped, in_batch);
                    in_batch += 1;
                    continue 'rows;
                }
            };
            if !b.append(value) {
                if overridden[i] {
                    let reason = format!(
                        "{value:?} does not fit the column's override {}",
                        kinds[i].data_type()
                    );
                    bad.reject(rows.line, Some(&resolved[i].0), &reason, rows.records.raw())?;
                    drop_row(&mut builders, i, &mut dropped, in_batch);
                    in_batch += 1;
                    continue 'rows;
                }
                if bad.policy == BadRows::Pad {
                    let note = RowProblem {
                        line: rows.line,
                        column: Some(resolved[i].0.clone()),
                        message: format!(
                            "{value:?} does not fit {} (inferred from the first {} rows): the column was widened",
                            kinds[i].data_type(),
                            job.opts.sample_rows
                        ),
                    };
                    return widen(rows, header, kinds, overridden, i)
                        .map(|k| Pass::Widened(k, note));
                }
                let reason = format!(
                    "{value:?} is not a valid {} (the type inferred from the first {} rows)",
                    kinds[i].data_type(),
                    job.opts.sample_rows
                );
                bad.reject(rows.line, Some(&resolved[i].0), &reason, rows.records.raw())?;
                drop_row(&mut builders, i, &mut dropped, in_batch);
                in_batch += 1;
                continue 'rows;
            }
        }
        in_batch += 1;
        if in_batch >= batch_rows {
            sink.write(&finish_batch(job, &schema, &mut builders, &mut dropped)?)?;
            in_batch = 0;
        }
    }
    if in_batch > 0 {
        sink.write(&finish_batch(job, &schema, &mut builders, &mut dropped)?)?;
    }
    let bad = bad.finish(rows_read)?;
    let (statistics, parquet) = sink.finish()?;
    Ok(Pass::Done(Written {
        schema: crate::event_schema(&schema, resolved),
        statistics,
        problems: bad.problems,
        parquet_size: parquet.size,
        parquet_sha256: Some(parquet.sha256),
        rows_read: Some(rows_read),
        rejected: bad.rejected,
        rejects_entries: bad.entries,
    }))
}

/// The row being built is rejected at column `at`: the columns from `at` on get a null
/// so every column has the row, and the row is marked to be filtered out.
fn drop_row(builders: &mut [Builder], at: usize, dropped: &mut Vec<usize>, row: usize) {
    for b in &mut builders[at..] {
        b.append_null();
    }
    dropped.push(row);
}

/// Distinct values of one column in the sample, to tell whether a dictionary pays.
#[derive(Debug, Clone, Default)]
struct Distinct {
    /// Each value's 64-bit hash, kept as its own hash by the set (no second hashing).
    values: std::collections::HashSet<u64, std::hash::BuildHasherDefault<Prehashed>>,
    non_null: usize,
    /// Values looked at, at most: the sets of all columns together stay within
    /// [`DISTINCT_BUDGET`] hashes, so 10,000 columns do not hold 10,000 samples' worth.
    cap: usize,
}

/// Hashes the distinct counts of one file may hold in all (~16 MB).
const DISTINCT_BUDGET: usize = 1 << 20;

impl Distinct {
    /// The counter of one of `columns` columns: a file of up to 100 columns looks at
    /// its whole sample, a wider one at fewer values per column (at least 200).
    fn for_columns(columns: usize) -> Self {
        Distinct {
            values: Default::default(),
            non_null: 0,
            cap: (DISTINCT_BUDGET / columns.max(1)).max(200),
        }
    }

    fn add(&mut self, value: &str) {
        if value.is_empty() || self.non_null >= self.cap {
            return;
        }
        self.non_null += 1;
        self.values.insert(hash_text(value.as_bytes()));
    }

    /// At least 100 values in the sample and more than half of them distinct: Parquet's
    /// dictionary would only cost time (it gives up once the dictionary passes its
    /// size limit, after hashing every value up to there).
    fn mostly_distinct(&self) -> bool {
        self.non_null >= 100 && self.values.len() * 2 > self.non_null
    }
}

/// A fixed, fast hash of a value (eight bytes per multiply): the decision must not
/// change from run to run, and it is made for every value of the sample, so SipHash's
/// cost showed (a tenth of a small file's conversion). Collisions only make a column
/// look a little less distinct than it is.
fn hash_text(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let w = u64::from_le_bytes(w.try_into().expect("eight bytes"));
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    let mut tail = [0u8; 8];
    let rest = words.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    h = (h.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    // Mix the high bits down: the set uses the low bits to pick a bucket.
    h ^ (h >> 32)
}

/// The hasher of a set of hashes: the key is its own hash.
#[derive(Debug, Default)]
struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here; anything else is folded in plainly.
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The current record has a value column `misfit` cannot hold: join every value from
/// here to the end into the column types.
fn widen(
    mut rows: Rows<'_>,
    header: &[String],
    kinds: &[Kind],
    overridden: &[bool],
    misfit: usize,
) -> Result<Vec<Kind>, ConvertError> {
    let mut wider = kinds.to_vec();
    let before = wider[misfit];
    let _ = header;
    loop {
        // A row that is not valid text is rejected, and shapes nothing.
        let text = (0..wider.len()).all(|i| rows.records.get_str(i).is_ok());
        for (i, kind) in wider.iter_mut().enumerate() {
            if !text {
                break;
            }
            if overridden[i] {
                continue;
            }
            *kind = kind.join(values::classify(
                rows.records.get_str(i).unwrap_or_default(),
            ));
        }
        if !rows.next()? {
            break;
        }
    }
    debug_assert_ne!(before, wider[misfit]);
    Ok(wider)
}

fn finish_batch(
    job: &Job<'_>,
    schema: &SchemaRef,
    builders: &mut [Builder],
    dropped: &mut Vec<usize>,
) -> Result<RecordBatch, ConvertError> {
    let columns: Vec<ArrayRef> = builders.iter_mut().map(Builder::finish).collect();
    let batch = RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| ConvertError::unsupported(job.file, format!("building a batch: {e}")))?;
    if dropped.is_empty() {
        return Ok(batch);
    }
    let mut keep = vec![true; batch.num_rows()];
    for &row in dropped.iter() {
        keep[row] = false;
    }
    dropped.clear();
    arrow::compute::filter_record_batch(&batch, &keep.into())
        .map_err(|e| ConvertError::unsupported(job.file, format!("dropping rejected rows: {e}")))
}

/// The record reader with the current record and its line.
struct Rows<'a> {
    records: Records<Box<dyn BufRead + 'a>>,
    line: u64,
    file: &'a str,
}

impl<'a> Rows<'a> {
    fn open(
        job: &Job<'a>,
        delimiter: u8,
        progress: &'a mut dyn FnMut(u64),
    ) -> Result<Self, ConvertError> {
        let input = open_text(
            job.input,
            job.file,
            job.compression,
            job.encoding,
            job.opts.limits.max_inflation,
            progress,
        )?;
        Ok(Rows {
            records: Records::new(input, delimiter)
                .with_max_record(job.opts.limits.max_record_bytes),
            line: 0,
            file: job.file,
        })
    }

    /// Reads the next record; false at the end.
    fn next(&mut self) -> Result<bool, ConvertError> {
        match self.records.read() {
            Ok(more) => {
                self.line = self.records.line();
                Ok(more)
            }
            Err(e) => Err(ConvertError::from_read(
                self.file,
                Some(self.records.next_line()),
                e,
            )),
        }
    }

    fn header(&mut self) -> Result<Vec<String>, ConvertError> {
        if !self.next()? {
            return Err(ConvertError::malformed(
                self.file,
                None,
                None,
                "no header row: the file is empty",
            ));
        }
        (0..self.records.len())
            .map(|i| {
                let raw = self.records.get(i).unwrap_or_default();
                std::str::from_utf8(raw).map(str::to_owned).map_err(|e| {
                    ConvertError::malformed(
                        self.file,
                        Some(self.line),
                        Some(&format!("#{}", i + 1)),
                        format!("invalid UTF-8 in the header (weir reads UTF-8 text): {e}"),
                    )
                })
            })
            .collect()
    }

    /// Field `i` of the current record as text; a missing field is empty (null).
    fn field(&self, i: usize, header: &[String]) -> Result<&str, ConvertError> {
        self.records.get_str(i).map_err(|e| {
            ConvertError::malformed(
                self.file,
                Some(self.line),
                header.get(i).map(String::as_str),
                format!("invalid UTF-8 (weir reads UTF-8 text): {e}"),
            )
        })
    }
}

fn decimal_builder(capacity: usize, precision: u8, scale: i8) -> Decimal128Builder {
    Decimal128Builder::with_capacity(capacity)
        .with_precision_and_scale(precision, scale)
        .expect("precision and scale were checked when the override was read")
}

/// One column's Arrow builder; `append` refuses a value the column's type cannot hold.
enum Builder {
    Bool(BooleanBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder, bool),
    Utf8(StringBuilder),
    Decimal(Decimal128Builder, u8, i8),
}

impl Builder {
    fn new(kind: Kind) -> Self {
        match kind {
            Kind::Bool => Builder::Bool(BooleanBuilder::new()),
            Kind::Int => Builder::Int(Int64Builder::new()),
            Kind::Float => Builder::Float(Float64Builder::new()),
            Kind::Date => Builder::Date(Date32Builder::new()),
            Kind::Timestamp => Builder::Timestamp(TimestampMicrosecondBuilder::new(), false),
            Kind::TimestampTz => Builder::Timestamp(
                TimestampMicrosecondBuilder::new().with_timezone("UTC"),
                true,
            ),
            Kind::Null | Kind::Utf8 => Builder::Utf8(StringBuilder::new()),
            Kind::Decimal(p, s) => Builder::Decimal(decimal_builder(0, p, s), p, s),
        }
    }

    fn append_null(&mut self) {
        match self {
            Builder::Bool(b) => b.append_null(),
            Builder::Int(b) => b.append_null(),
            Builder::Float(b) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Timestamp(b, _) => b.append_null(),
            Builder::Utf8(b) => b.append_null(),
            Builder::Decimal(b, _, _) => b.append_null(),
        }
    }

    fn append(&mut self, value: &str) -> bool {
        if let Builder::Utf8(b) = self {
            // Text keeps blanks as they are; only the empty value is null.
            if value.is_empty() {
                b.append_null();
            } else {
                b.append_value(value);
            }
            return true;
        }
        // Most values start and end with a printable ASCII byte: not blank, no trim.
        let printable = |c: Option<&u8>| c.is_some_and(|&c| c > b' ' && c < 0x80);
        let bytes = value.as_bytes();
        if !(printable(bytes.first()) && printable(bytes.last())) && value.trim().is_empty() {
            self.append_null();
            return true;
        }
        match self {
            Builder::Bool(b) => values::parse_bool(value).map(|v| b.append_value(v)),
            Builder::Int(b) => values::parse_int(value).map(|v| b.append_value(v)),
            Builder::Float(b) => values::parse_float(value).map(|v| b.append_value(v)),
            Builder::Date(b) => values::parse_date(value).map(|v| b.append_value(v)),
            Builder::Timestamp(b, zoned) => {
                let micros = match values::parse_timestamp(value) {
                    Some((t, z)) if z == *zoned => Some(t),
                    Some(_) => None,
                    // A date in a naive timestamp column is its midnight.
                    None if !*zoned => {
                        values::parse_date(value).map(|d| i64::from(d) * 86_400_000_000)
                    }
                    None => None,
                };
                micros.map(|t| b.append_value(t))
            }
            Builder::Decimal(b, p, s) => {
                values::parse_decimal(value, *p, *s).map(|v| b.append_value(v))
            }
            Builder::Utf8(_) => Some(()),
        }
        .is_some()
    }

    /// The column's array; the builder starts over with room for as much again, so the
    /// next batch does not grow its buffers step by step.
    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Bool(b) => {
                let a = b.finish();
                *b = BooleanBuilder::with_capacity(a.len());
                Arc::new(a)
            }
            Builder::Int(b) => {
                let a = b.finish();
                *b = Int64Builder::with_capacity(a.len());
                Arc::new(a)
            }
            Builder::Float(b) => {
                let a = b.finish();
                *b = Float64Builder::with_capacity(a.len());
                Arc::new(a)
            }
            Builder::Date(b) => {
                let a = b.finish();
                *b = Date32Builder::with_capacity(a.len());
                Arc::new(a)
            }
            Builder::Timestamp(b, zoned) => {
                let a = b.finish();
                let fresh = TimestampMicrosecondBuilder::with_capacity(a.len());
                *b = if *zoned {
                    fresh.with_timezone("UTC")
                } else {
                    fresh
                };
                Arc::new(a)
            }
            Builder::Utf8(b) => {
                let a = b.finish();
                *b = StringBuilder::with_capacity(a.len(), a.value_data().len());
                Arc::new(a)
            }
            Builder::Decimal(b, p, s) => {
                let a = b.finish();
                *b = decimal_builder(a.len(), *p, *s);
                Arc::new(a)
            }
        }
    }
}
