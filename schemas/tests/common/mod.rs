//! The test harness: write input bytes to a temp file, convert, read the Parquet back
//! with the parquet crate, and render everything as text for `check` to compare.

#![allow(dead_code)] // each test binary uses a different part

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use weir_events::StatValue;
use weir_schemas::{ConvertError, ConvertOptions, Converted, convert};

pub struct Run {
    pub converted: Converted,
    /// The Parquet read back (the output, or the input when it was kept).
    pub batches: Vec<RecordBatch>,
    pub progress_calls: usize,
    _dir: tempfile::TempDir,
}

pub fn options(filename: &str) -> ConvertOptions {
    ConvertOptions {
        filename: filename.to_owned(),
        ..ConvertOptions::default()
    }
}

/// Converts `bytes` stored under `filename`.
pub fn run(filename: &str, bytes: &[u8], opts: &ConvertOptions) -> Result<Run, ConvertError> {
    let dir = tempfile::tempdir().map_err(|e| ConvertError::Io {
        file: "tempdir".into(),
        source: e,
    })?;
    let input = dir.path().join(filename);
    std::fs::write(&input, bytes).map_err(|e| ConvertError::Io {
        file: filename.into(),
        source: e,
    })?;
    run_path(&input, opts, dir)
}

/// Converts a file in place (e.g. from the corpus).
pub fn run_file(input: &Path, opts: &ConvertOptions) -> Result<Run, ConvertError> {
    let dir = tempfile::tempdir().map_err(|e| ConvertError::Io {
        file: "tempdir".into(),
        source: e,
    })?;
    run_path(input, opts, dir)
}

fn run_path(
    input: &Path,
    opts: &ConvertOptions,
    dir: tempfile::TempDir,
) -> Result<Run, ConvertError> {
    let output: PathBuf = dir.path().join("out.parquet");
    let mut calls = 0;
    let converted = convert(input, &output, opts, &mut |_| calls += 1)?;
    let served = if converted.rewritten {
        output.as_path()
    } else {
        input
    };
    if !converted.rewritten {
        assert!(
            !output.exists(),
            "a kept Parquet input must not write the output"
        );
    }
    let batches = read_back(served);
    assert_eq!(
        std::fs::metadata(served).map(|m| m.len()).unwrap_or(0),
        converted.parquet_size,
        "parquet_size is the size of the served file"
    );
    Ok(Run {
        converted,
        batches,
        progress_calls: calls,
        _dir: dir,
    })
}

pub fn read_back(path: &Path) -> Vec<RecordBatch> {
    let file = File::open(path).expect("the written Parquet opens");
    ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("the written Parquet has a footer")
        .build()
        .expect("the written Parquet has readable row groups")
        .collect::<Result<Vec<_>, _>>()
        .expect("the written Parquet decodes")
}

/// Every row of the batches as `v | v | v`, strings quoted, nulls as `null`.
pub fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let options = FormatOptions::default()
        .with_null("null")
        .with_quoted_strings(true);
    let mut out = Vec::new();
    for batch in batches {
        // arrow-rs formats named zones only with chrono-tz; the stored values are UTC
        // instants, so print them with the equivalent offset.
        let columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| match c.data_type() {
                DataType::Timestamp(unit, Some(tz)) if tz.as_ref() == "UTC" => {
                    cast(c, &DataType::Timestamp(*unit, Some("+00:00".into())))
                        .expect("a zone-only cast")
                }
                _ => c.clone(),
            })
            .collect();
        let formatters: Vec<_> = columns
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formattable"))
            .collect();
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            out.push(cells.join(" | "));
        }
    }
    out
}

fn stat(v: &Option<StatValue>) -> String {
    match v {
        None => "-".into(),
        Some(StatValue::Int(i)) => i.to_string(),
        Some(StatValue::Float(f)) => format!("{f:?}"),
        Some(StatValue::Text(t)) => t.clone(),
    }
}

/// The whole outcome as text: format, columns, statistics, problems and the data read
/// back from Parquet (at most `max_rows` rows).
pub fn render(run: &Run, max_rows: usize) -> String {
    let c = &run.converted;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} {:?} rewritten={}",
        c.format.as_str(),
        c.compression,
        c.rewritten
    );
    for f in &c.schema.fields {
        let _ = write!(s, "column {}: {}", f.name, f.data_type);
        if !f.nullable {
            s.push_str(" not null");
        }
        if let Some(o) = &f.original_name {
            let _ = write!(s, " (from {o:?})");
        }
        s.push('\n');
    }
    let _ = writeln!(s, "rows: {}", c.statistics.rows);
    for col in &c.statistics.columns {
        if col.null_count > 0 || col.min.is_some() {
            let _ = writeln!(
                s,
                "stats {}: nulls={} min={} max={}",
                col.name,
                col.null_count,
                stat(&col.min),
                stat(&col.max)
            );
        }
    }
    if c.problem_count > 0 {
        let _ = writeln!(s, "problems: {}", c.problem_count);
        for p in &c.problems {
            let _ = writeln!(s, "  line {} {:?}: {}", p.line, p.column, p.message);
        }
    }
    for r in rows(&run.batches).iter().take(max_rows) {
        let _ = writeln!(s, "| {r}");
    }
    s
}

/// Converts `bytes` as `filename` and compares the rendered outcome with `expect`
/// (leading and trailing blank lines and each line's indentation ignored).
pub fn check(filename: &str, bytes: &[u8], expect: &str) {
    check_with(filename, bytes, &options(filename), expect);
}

pub fn check_with(filename: &str, bytes: &[u8], opts: &ConvertOptions, expect: &str) {
    let actual = match run(filename, bytes, opts) {
        Ok(run) => render(&run, 50),
        Err(e) => format!("error (permanent={}): {e}\n", e.is_permanent()),
    };
    let norm = |s: &str| {
        s.trim()
            .lines()
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("\n")
    };
    if norm(&actual) != norm(expect) {
        panic!(
            "{filename}: outcome differs\n--- expected\n{}\n--- actual\n{}\n",
            norm(expect),
            norm(&actual)
        );
    }
}

/// Compresses with gzip or zstd for the compressed-input tests.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).expect("in-memory write");
    e.finish().expect("in-memory gzip")
}

pub fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).expect("in-memory zstd")
}
