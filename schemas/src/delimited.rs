//! CSV and TSV: header, type inference over a sample, and the streaming write with
//! widening.
//!
//! The first record is the header. Types come from the first `sample_rows` records;
//! the write pass then checks every value against its column's type. When a later
//! value does not fit, the pass stops writing, scans the rest of the file to learn
//! every column's final type, and the file is converted again from the start, so no
//! value is lost or nulled. A column with no value in the sample is text.
//!
//! Ragged rows are kept and reported as a `RowProblem` with their line: missing
//! values are null, extra values are dropped (the problem says how many). Invalid
//! UTF-8 fails the file, naming line and column.

use std::io::BufRead;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{Field as ArrowField, Schema as ArrowSchema, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::input::open_text;
use crate::names;
use crate::records::Records;
use crate::sink::{Dictionary, Sink};
use crate::values::{self, Kind};
use crate::{ConvertError, Job, Problems, Written};

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
        let mut kinds = vec![Kind::Null; header.len()];
        let mut distinct = vec![Distinct::default(); header.len()];
        let mut seen = 0;
        while seen < job.opts.sample_rows && rows.next()? {
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
    let plain: Vec<String> = resolved
        .iter()
        .zip(&distinct)
        .filter(|(_, d)| d.mostly_distinct())
        .map(|((name, _), _)| name.clone())
        .collect();
    for _ in 0..MAX_PASSES {
        match write_pass(job, delimiter, &header, &resolved, &kinds, &plain, progress)? {
            Pass::Done(written) => return Ok(written),
            Pass::Widened(wider) => kinds = wider,
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
    Widened(Vec<Kind>),
}

fn write_pass(
    job: &Job<'_>,
    delimiter: u8,
    header: &[String],
    resolved: &[(String, Option<String>)],
    kinds: &[Kind],
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
    let mut problems = Problems::default();
    let mut in_batch = 0;
    while rows.next()? {
        let found = rows.records.len();
        if found != header.len() {
            let message = if found < header.len() {
                format!(
                    "expected {} fields, found {found}: the missing values are null",
                    header.len()
                )
            } else {
                format!(
                    "expected {} fields, found {found}: the extra values are dropped",
                    header.len()
                )
            };
            problems.push(rows.line, None, message);
        }
        for (i, b) in builders.iter_mut().enumerate() {
            let value = rows.field(i, header)?;
            if !b.append(value) {
                return widen(rows, header, kinds, i).map(Pass::Widened);
            }
        }
        in_batch += 1;
        if in_batch == job.opts.batch_rows.max(1) {
            sink.write(&finish_batch(job, &schema, &mut builders)?)?;
            in_batch = 0;
        }
    }
    if in_batch > 0 {
        sink.write(&finish_batch(job, &schema, &mut builders)?)?;
    }
    let (statistics, parquet_size) = sink.finish()?;
    Ok(Pass::Done(Written {
        schema: crate::event_schema(&schema, resolved),
        statistics,
        problems,
        parquet_size,
            rows_read: None,
            rejected: 0,
            rejects_entries: 0,
    }))
}

/// Distinct values of one column in the sample, to tell whether a dictionary pays.
#[derive(Debug, Clone, Default)]
struct Distinct {
    values: std::collections::HashSet<u64>,
    non_null: usize,
}

impl Distinct {
    fn add(&mut self, value: &str) {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        if value.is_empty() {
            return;
        }
        self.non_null += 1;
        // A fixed hasher: the decision must not change from run to run.
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(value);
        self.values.insert(hash);
    }

    /// At least 100 values in the sample and more than half of them distinct: Parquet's
    /// dictionary would only cost time (it gives up once the dictionary passes its
    /// size limit, after hashing every value up to there).
    fn mostly_distinct(&self) -> bool {
        self.non_null >= 100 && self.values.len() * 2 > self.non_null
    }
}

/// The current record has a value column `misfit` cannot hold: join every value from
/// here to the end into the column types.
fn widen(
    mut rows: Rows<'_>,
    header: &[String],
    kinds: &[Kind],
    misfit: usize,
) -> Result<Vec<Kind>, ConvertError> {
    let mut wider = kinds.to_vec();
    let before = wider[misfit];
    loop {
        for (i, kind) in wider.iter_mut().enumerate() {
            *kind = kind.join(values::classify(rows.field(i, header)?));
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
) -> Result<RecordBatch, ConvertError> {
    let columns: Vec<ArrayRef> = builders.iter_mut().map(Builder::finish).collect();
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| ConvertError::unsupported(job.file, format!("building a batch: {e}")))
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
        let input = open_text(job.input, job.file, job.compression, job.encoding, progress)?;
        Ok(Rows {
            records: Records::new(input, delimiter),
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

/// One column's Arrow builder; `append` refuses a value the column's type cannot hold.
enum Builder {
    Bool(BooleanBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder, bool),
    Utf8(StringBuilder),
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
            match self {
                Builder::Bool(b) => b.append_null(),
                Builder::Int(b) => b.append_null(),
                Builder::Float(b) => b.append_null(),
                Builder::Date(b) => b.append_null(),
                Builder::Timestamp(b, _) => b.append_null(),
                Builder::Utf8(b) => b.append_null(),
            }
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
        }
    }
}
