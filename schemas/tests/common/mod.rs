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
    /// The rejects file's entries, in order (empty when it was not written).
    pub rejects: Vec<serde_json::Value>,
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

/// `options` with a bad-row policy.
pub fn with_policy(filename: &str, policy: weir_events::BadRows) -> ConvertOptions {
    ConvertOptions {
        bad_rows: policy,
        ..options(filename)
    }
}

/// `options` with the policy `pad` (widen, pad, keep extras in the rejects file).
pub fn pad(filename: &str) -> ConvertOptions {
    with_policy(filename, weir_events::BadRows::Pad)
}

/// `options` with the policy `fail`, read as UTF-8 whatever the content looks like.
pub fn strict_utf8(filename: &str) -> ConvertOptions {
    ConvertOptions {
        encoding: Some("utf-8".into()),
        ..with_policy(filename, weir_events::BadRows::Fail)
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
    let mut opts = opts.clone();
    let rejects_path = opts
        .rejects
        .get_or_insert_with(|| dir.path().join("rejects.ndjson"))
        .clone();
    let mut calls = 0;
    let converted = convert(input, &output, &opts, &mut |_| calls += 1)?;
    let rejects: Vec<serde_json::Value> = match std::fs::read_to_string(&rejects_path) {
        Ok(text) => text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each rejects line is JSON"))
            .collect(),
        Err(_) => Vec::new(),
    };
    account(input, &converted, &rejects);
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
        rejects,
        batches,
        progress_calls: calls,
        _dir: dir,
    })
}

/// Every row of the input is accounted for: registered + rejected == read, each
/// rejected row is in the rejects file, and (for plain CSV/TSV) "read" is the number of
/// data records a reference reader (csv-core) finds.
fn account(input: &Path, c: &Converted, rejects: &[serde_json::Value]) {
    assert_eq!(
        c.rows_read,
        c.statistics.rows + c.rejected,
        "rows read = rows registered + rows rejected"
    );
    assert_eq!(
        rejects.len() as u64,
        c.rejects_entries,
        "entries in the rejects file"
    );
    let rejected = rejects.iter().filter(|e| e["action"] == "rejected").count() as u64;
    assert_eq!(
        rejected, c.rejected,
        "each rejected row is in the rejects file"
    );
    for e in rejects {
        assert!(
            e["line"].as_u64().is_some_and(|l| l > 0),
            "an entry names its line: {e}"
        );
        assert!(
            e["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "and why: {e}"
        );
        assert!(e["raw"].is_string(), "and the raw text: {e}");
    }
    let plain = c.compression == weir_events::Compression::None && c.encoding == "UTF-8";
    if let (true, Some(delimiter)) = (
        plain,
        match c.format {
            weir_events::Format::Csv => Some(b','),
            weir_events::Format::Tsv => Some(b'\t'),
            _ => None,
        },
    ) {
        let bytes = std::fs::read(input).expect("the input reads");
        // The delimiter weir found may differ from the extension's; count with both and
        // accept weir's count only if one reference agrees.
        let counts: Vec<u64> = [delimiter, b';', b'|', b',', b'\t']
            .iter()
            .map(|&d| reference_records(&bytes, d).saturating_sub(1))
            .collect();
        assert!(
            counts.contains(&c.rows_read),
            "csv-core finds {counts:?} data records, weir read {}",
            c.rows_read
        );
    }
}

/// Non-blank records as csv-core reads them (header included).
fn reference_records(bytes: &[u8], delimiter: u8) -> u64 {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv_core::ReaderBuilder::new().delimiter(delimiter).build();
    let mut out = [0u8; 1 << 16];
    let mut ends = [0usize; 1024];
    let (mut input, mut records, mut fields_in_record, mut bytes_in_record) =
        (bytes, 0u64, 0usize, 0usize);
    loop {
        let (result, nin, nout, nend) = reader.read_record(input, &mut out, &mut ends);
        input = &input[nin..];
        fields_in_record += nend;
        bytes_in_record += nout;
        match result {
            csv_core::ReadRecordResult::Record => {
                if !(fields_in_record == 1 && bytes_in_record == 0) {
                    records += 1;
                }
                fields_in_record = 0;
                bytes_in_record = 0;
            }
            csv_core::ReadRecordResult::End => return records,
            _ => {}
        }
    }
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
    if c.rejected > 0 {
        let _ = writeln!(s, "rejected: {} of {}", c.rejected, c.rows_read);
    }
    for e in &run.rejects {
        let _ = writeln!(
            s,
            "  {} line {}: {}{}",
            e["action"].as_str().unwrap_or("?"),
            e["line"],
            e["raw"],
            e.get("extra")
                .map(|x| format!(" extra={x}"))
                .unwrap_or_default()
        );
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
