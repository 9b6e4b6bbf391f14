//! Format sniffing, schema inference, statistics and streaming conversion to Parquet:
//! everything the inferrer does to a file, without the network. One entry point,
//! [`convert`], reads a local file and writes a local Parquet file (zstd) with bounded
//! memory; [`sniff`] is the format detection on its own.
//!
//! Where the rules live: `sniff` (format, compression, delimiter), `encoding` (which
//! text encoding; `input` transcodes it to UTF-8 while reading), `values` (what a
//! text value is and how column types widen), `delimited` (CSV/TSV, ragged rows),
//! `json` (NDJSON and JSON arrays), `parquet_in` (when a Parquet input is rewritten),
//! `names` (column naming), `stats` (statistics), `sink` (the Parquet writer).

mod delimited;
mod encoding;
mod error;
mod input;
mod json;
mod json_fast;
mod limits;
mod many;
mod names;
mod parquet_in;
mod parquet_pages;
mod records;
mod rejects;
mod sink;
mod sniff;
mod stats;
pub mod validators;
mod values;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use weir_events::{
    BadRows, Compression, Format, MAX_ROW_PROBLEMS, MaxBadRows, RowProblem, Schema, Statistics,
};

pub use error::{ConvertError, Location};
pub use limits::Limits;
pub use many::convert_many;
pub use sniff::sniff;

/// Bytes read from the start of the file to sniff its format.
pub(crate) const HEAD_BYTES: usize = 64 << 10;

/// How to read one upload.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// The producer's file name: named in errors and used to break format ties.
    pub filename: String,
    /// Declared by the producer; the content has the last word.
    pub declared: Option<Format>,
    pub content_type: Option<String>,
    /// Records read to infer column types before writing (CSV, TSV, JSON).
    pub sample_rows: usize,
    /// Rows per Arrow batch while converting; bounds memory together with row groups.
    pub batch_rows: usize,
    /// The text encoding by WHATWG label (`latin1`, `windows-1252`, `utf-16le`, …);
    /// `None` detects it from the content.
    pub encoding: Option<String>,
    /// What happens to a row that does not fit (see [`BadRows`]).
    pub bad_rows: BadRows,
    /// More bad rows than this fails the conversion, whatever the policy.
    pub max_bad_rows: Option<MaxBadRows>,
    /// Where the rejects file (NDJSON, one object per rejected row or padded row's
    /// extra fields) is written; it is created only when there is an entry. Without a
    /// path, a row that would go there fails the conversion instead.
    pub rejects: Option<PathBuf>,
    /// A content validator by name (`conversation-jsonl`): every record is checked
    /// first, and the conversion fails with the first errors when one is invalid.
    pub validator: Option<String>,
    /// Column type overrides, (column, type): `("amount", "decimal(12,2)")`, `("zip",
    /// "utf8")`; CSV and TSV only. A value that does not fit is a bad row.
    pub columns: Vec<(String, String)>,
    /// What one file may cost: record size, decompression ratio, columns.
    pub limits: Limits,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            filename: String::new(),
            declared: None,
            content_type: None,
            sample_rows: 10_000,
            batch_rows: 64 * 1024,
            encoding: None,
            bad_rows: BadRows::Reject,
            max_bad_rows: None,
            rejects: None,
            columns: Vec::new(),
            validator: None,
            limits: Limits::default(),
        }
    }
}

/// What [`convert`] found and wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    pub format: Format,
    pub compression: Compression,
    /// False when a Parquet input is kept as it is (`output` was not written).
    pub rewritten: bool,
    pub schema: Schema,
    pub statistics: Statistics,
    /// The first [`MAX_ROW_PROBLEMS`] bad rows.
    pub problems: Vec<RowProblem>,
    /// Bad rows in all, whatever the policy did with them.
    pub problem_count: u64,
    /// Size of the Parquet that is served: `output`, or the input when kept.
    pub parquet_size: u64,
    /// The sha256 of `output` as it was written; `None` when it was not written (a
    /// Parquet input kept as it is).
    pub parquet_sha256: Option<weir_events::Sha256>,
    /// The encoding read (encoding_rs's name, `UTF-8`, `windows-1252`, …); empty for
    /// Parquet.
    pub encoding: String,
    /// True when the content decided the encoding, false when the caller named it.
    pub encoding_detected: bool,
    /// Data rows in the input: `rows_read == statistics.rows + rejected`.
    pub rows_read: u64,
    /// Rows not written to the Parquet; each is an entry of the rejects file.
    pub rejected: u64,
    /// Entries written to `ConvertOptions::rejects` (0: the file was not created).
    pub rejects_entries: u64,
    /// The validator's report when one was asked for (JSON: validator, records,
    /// statistics).
    pub validation: Option<String>,
}

/// Reads `input` (a local file), writes Parquet (zstd) to `output` unless the input is
/// Parquet that needs no rewrite (then `output` is not written and `rewritten` is
/// false). Synchronous; run it on a blocking thread. `progress` is called now and then
/// with the bytes of the input read so far in the current pass (a file whose types
/// widen late is read again from the start, so the count can go back).
///
/// A panic inside Arrow or Parquet on a hostile file is caught and returned as
/// [`ConvertError::Panic`]; the default panic hook still prints it to stderr.
pub fn convert(
    input: &Path,
    output: &Path,
    opts: &ConvertOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<Converted, ConvertError> {
    let file = if opts.filename.is_empty() {
        input.display().to_string()
    } else {
        opts.filename.clone()
    };
    guarded(&file, || {
        convert_inner(input, output, opts, &file, progress)
    })
}

/// Runs `f`, turning a panic (from Arrow or Parquet on a hostile file) into an error.
/// Nothing `f` touches outlives a panic but the output file, which the caller discards
/// on error, so asserting unwind safety is sound.
fn guarded<T>(file: &str, f: impl FnOnce() -> Result<T, ConvertError>) -> Result<T, ConvertError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        Err(ConvertError::Panic {
            file: file.to_owned(),
            message,
        })
    })
}

fn convert_inner(
    input: &Path,
    output: &Path,
    opts: &ConvertOptions,
    file: &str,
    progress: &mut dyn FnMut(u64),
) -> Result<Converted, ConvertError> {
    let forced = match &opts.encoding {
        Some(label) => Some(encoding::for_label(label, file)?),
        None => None,
    };
    let validation = match &opts.validator {
        Some(name) => Some(validate_all(&[(input, file)], name, opts)?),
        None => None,
    };
    let head = input::read_head(input, file, HEAD_BYTES)?;
    let mut sniffed = sniff::sniff_full(
        &head,
        file,
        opts.declared,
        opts.content_type.as_deref(),
        forced,
    )?;
    if sniffed.encoding_open {
        sniffed.encoding = encoding::look_further(input, file, sniffed.compression)?;
    }
    let job = Job {
        input,
        output,
        opts,
        file,
        compression: sniffed.compression,
        encoding: sniffed.encoding,
    };
    if !opts.columns.is_empty() && !matches!(sniffed.format, Format::Csv | Format::Tsv) {
        return Err(ConvertError::unsupported(
            file,
            format!(
                "column type overrides apply to CSV and TSV files, and this is {}",
                sniffed.format.as_str()
            ),
        ));
    }
    let (written, rewritten) = match (sniffed.format, sniffed.delimiter) {
        (Format::Parquet, _) => parquet_in::convert(&job, progress)?,
        (Format::Json, _) => (json::convert(&job, true, progress)?, true),
        (Format::Ndjson, _) => (json::convert(&job, false, progress)?, true),
        (Format::Csv | Format::Tsv, delimiter) => (
            delimited::convert(&job, delimiter.unwrap_or(b','), progress)?,
            true,
        ),
    };
    let parquet = sniffed.format == Format::Parquet;
    Ok(Converted {
        format: sniffed.format,
        compression: sniffed.compression,
        rewritten,
        rows_read: written.rows_read.unwrap_or(written.statistics.rows),
        rejected: written.rejected,
        rejects_entries: written.rejects_entries,
        schema: written.schema,
        statistics: written.statistics,
        problem_count: written.problems.count,
        problems: written.problems.first,
        parquet_size: written.parquet_size,
        parquet_sha256: written.parquet_sha256,
        encoding: if parquet {
            String::new()
        } else {
            sniffed.encoding.name().to_owned()
        },
        encoding_detected: !parquet && forced.is_none(),
        validation,
    })
}

/// Runs validator `name` over the files with one validator; the report as JSON
/// (statistics over all of them), or an error listing the first invalid records, each
/// naming its file (when there is more than one) and line.
pub(crate) fn validate_all(
    files: &[(&Path, &str)],
    name: &str,
    opts: &ConvertOptions,
) -> Result<String, ConvertError> {
    let report = validators::validate_files(files, name, opts.encoding.as_deref(), &opts.limits)?;
    if report.invalid > 0 {
        // The error is located at the first file with an invalid record.
        let file = report.first.first().map_or("", |(f, _, _)| f.as_str());
        let first: Vec<String> = report
            .first
            .iter()
            .map(|(in_file, line, i)| {
                format!(
                    "{}line {line}{}: {} (hint: {})",
                    if files.len() > 1 {
                        format!("{in_file}: ")
                    } else {
                        String::new()
                    },
                    if i.field.is_empty() {
                        String::new()
                    } else {
                        format!(", field {:?}", i.field)
                    },
                    i.message,
                    i.hint
                )
            })
            .collect();
        return Err(ConvertError::malformed(
            file,
            None,
            None,
            format!(
                "validator {name}: {} of {} records are invalid; {}",
                report.invalid,
                report.records,
                first.join("; ")
            ),
        ));
    }
    Ok(serde_json::json!({
        "validator": report.validator,
        "records": report.records,
        "statistics": report.statistics,
    })
    .to_string())
}

/// One conversion's inputs, passed to the format readers.
pub(crate) struct Job<'a> {
    pub input: &'a Path,
    pub output: &'a Path,
    pub opts: &'a ConvertOptions,
    /// The name used in messages.
    pub file: &'a str,
    pub compression: Compression,
    /// The text encoding the readers transcode from (UTF-8: read as it is).
    pub encoding: &'static encoding_rs::Encoding,
}

impl Job<'_> {
    /// Rows per Arrow batch for a file of `columns` columns: `batch_rows`, fewer when
    /// the file is wide, so one batch holds at most [`BATCH_CELLS`] values (10,000
    /// columns: 100 rows a batch, not 65,536).
    pub fn batch_rows(&self, columns: usize) -> usize {
        batch_rows(columns, self.opts.batch_rows)
    }

    /// Threads that encode the Parquet columns side by side; see [`encoders`].
    pub fn encoders(&self) -> usize {
        let size = std::fs::metadata(self.input).map_or(0, |m| m.len());
        encoders(size, self.compression)
    }
}

/// Rows per Arrow batch for `columns` columns: at most `max`, fewer when the rows are
/// wide, so one batch holds at most [`BATCH_CELLS`] values.
pub(crate) fn batch_rows(columns: usize, max: usize) -> usize {
    (BATCH_CELLS / columns.max(1)).clamp(1, max.max(1))
}

/// Threads that encode the Parquet columns of `size` bytes of input side by side: none
/// under `OWN_THREAD_FROM_BYTES` (the reading thread encodes each batch itself: a small
/// file is one batch, so a writer thread would only wait, and starting it costs more
/// than encoding a few KB); one (the sink's own, beside the reader) under
/// `PARALLEL_FROM_BYTES`, where more threads cost more than they save; else one per
/// core up to four.
pub(crate) fn encoders(size: u64, compression: Compression) -> usize {
    const OWN_THREAD_FROM_BYTES: u64 = 1 << 20;
    const PARALLEL_FROM_BYTES: u64 = 8 << 20;
    // A compressed file's size says little about what it holds.
    if size < OWN_THREAD_FROM_BYTES && compression == Compression::None {
        return 0;
    }
    if size < PARALLEL_FROM_BYTES {
        return 1;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// Values (rows x columns) one Arrow batch holds at most; see [`Job::batch_rows`].
pub(crate) const BATCH_CELLS: usize = 1 << 20;

/// What a format reader hands back.
pub(crate) struct Written {
    pub schema: Schema,
    pub statistics: Statistics,
    pub problems: Problems,
    pub parquet_size: u64,
    /// The digest of the Parquet written (`None`: none was).
    pub parquet_sha256: Option<weir_events::Sha256>,
    /// Data rows read, when it differs from the rows written (`None`: the same).
    pub rows_read: Option<u64>,
    pub rejected: u64,
    pub rejects_entries: u64,
}

/// Row problems: the first few kept, all counted.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    pub first: Vec<RowProblem>,
    pub count: u64,
}

impl Problems {
    pub fn push(&mut self, line: u64, column: Option<String>, message: String) {
        self.count += 1;
        if self.first.len() < MAX_ROW_PROBLEMS {
            self.first.push(RowProblem {
                line,
                column,
                message,
            });
        }
    }
}

/// The event's schema for an Arrow schema whose names came from `names::resolve`.
pub(crate) fn event_schema(
    schema: &arrow::datatypes::Schema,
    resolved: &[(String, Option<String>)],
) -> Schema {
    Schema {
        fields: schema
            .fields()
            .iter()
            .zip(resolved)
            .map(|(f, (_, original))| weir_events::Field {
                name: f.name().clone(),
                original_name: original.clone(),
                data_type: f.data_type().to_string(),
                nullable: f.is_nullable(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_permanent_error() {
        let got: Result<u8, _> = guarded("x.parquet", || {
            let v: Vec<u8> = Vec::new();
            let i = v.len() + 3;
            // An out-of-bounds index, as a reader bug on a hostile file would do.
            Ok(v[i])
        });
        let err = got.err();
        assert!(
            matches!(&err, Some(ConvertError::Panic { file, message })
                if file == "x.parquet" && message.contains("index out of bounds")),
            "{err:?}"
        );
        assert!(err.is_some_and(|e| e.is_permanent()));
    }
}
