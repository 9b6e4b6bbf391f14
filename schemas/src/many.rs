//! Several files that make one version (`weir upload a.csv b.csv --one-version`): each
//! is converted on its own, with its own file name in every error and bad row, then
//! their rows are written, in file order, into the one Parquet file the version
//! serves. The files must share one format and one schema (same column names and types
//! in the same order); the first one that does not fails the whole conversion with the
//! difference, so a version holds all of its files or none.
//!
//! Memory stays bounded as for one file: the files are converted one after the other,
//! and the rows are copied batch by batch. The statistics are those of the rows
//! written; the rejects file holds every file's entries, each with a `file` field.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow::datatypes::{Field as ArrowField, Schema as ArrowSchema};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use weir_events::{MAX_ROW_PROBLEMS, Schema, SchemaDiff};

use crate::sink::Sink;
use crate::{ConvertError, ConvertOptions, Converted, RowProblem, convert, guarded};

/// Scratch files of one conversion, removed however it ends.
struct Scratch(Vec<PathBuf>);

impl Drop for Scratch {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Converts `inputs` (local path, the producer's file name), in order, into one Parquet
/// file at `output`; one input is simply [`convert`]. Bad rows follow `opts` in each
/// file, and `opts.max_bad_rows` holds for them all together. `progress` gets the
/// bytes read of the file under way.
pub fn convert_many(
    inputs: &[(PathBuf, String)],
    output: &Path,
    opts: &ConvertOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<Converted, ConvertError> {
    match inputs {
        [] => Err(ConvertError::unsupported(
            &opts.filename,
            "an upload with no file",
        )),
        [(path, name)] => {
            let one = ConvertOptions {
                filename: name.clone(),
                ..opts.clone()
            };
            convert(path, output, &one, progress)
        }
        _ => {
            let first = inputs[0].1.clone();
            guarded(&first, || many(inputs, output, opts, progress))
        }
    }
}

fn many(
    inputs: &[(PathBuf, String)],
    output: &Path,
    opts: &ConvertOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<Converted, ConvertError> {
    let mut scratch = Scratch(Vec::new());
    let validation = match &opts.validator {
        Some(name) => {
            let files: Vec<(&Path, &str)> = inputs
                .iter()
                .map(|(p, n)| (p.as_path(), n.as_str()))
                .collect();
            Some(crate::validate_all(&files, name, opts)?)
        }
        None => None,
    };
    // Each file on its own: (what it was, the Parquet holding its rows, its rejects).
    let mut parts: Vec<(Converted, PathBuf, Option<PathBuf>)> = Vec::new();
    for (i, (path, name)) in inputs.iter().enumerate() {
        let out = sibling(output, &format!("file{}.parquet", i + 1));
        let rejects = opts
            .rejects
            .as_ref()
            .map(|r| sibling(r, &format!("file{}.ndjson", i + 1)));
        scratch.0.push(out.clone());
        scratch.0.extend(rejects.clone());
        let one = ConvertOptions {
            filename: name.clone(),
            rejects: rejects.clone(),
            // Validated above, over all the files with one validator.
            validator: None,
            ..opts.clone()
        };
        let converted = convert(path, &out, &one, progress)?;
        if let Some((head, _, _)) = parts.first() {
            same_shape(&inputs[0].1, head, name, &converted)?;
        }
        let rows = if converted.rewritten {
            out
        } else {
            path.clone()
        };
        parts.push((converted, rows, rejects));
    }
    let problem_count: u64 = parts.iter().map(|(c, _, _)| c.problem_count).sum();
    let rows_read: u64 = parts.iter().map(|(c, _, _)| c.rows_read).sum();
    if let Some(max) = opts.max_bad_rows
        && max.exceeded(problem_count, rows_read)
    {
        return Err(ConvertError::malformed(
            &inputs[0].1,
            None,
            None,
            format!(
                "limit: {problem_count} bad rows in {} files of {rows_read} rows is more than --max-bad-rows {max}",
                inputs.len()
            ),
        ));
    }

    // One schema: the first file's, a column nullable when it is in any file.
    let head = &parts[0].0;
    let mut schema: Schema = head.schema.clone();
    for f in &mut schema.fields {
        f.nullable = parts.iter().any(|(c, _, _)| {
            c.schema
                .fields
                .iter()
                .any(|g| g.name == f.name && g.nullable)
        });
    }
    let arrow_schema = {
        let file = File::open(&parts[0].1).map_err(|e| ConvertError::io(&inputs[0].1, e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| ConvertError::unsupported(&inputs[0].1, e.to_string()))?;
        let fields: Vec<ArrowField> = builder
            .schema()
            .fields()
            .iter()
            .zip(&schema.fields)
            .map(|(f, ours)| f.as_ref().clone().with_nullable(ours.nullable))
            .collect();
        std::sync::Arc::new(ArrowSchema::new(fields))
    };
    let total: u64 = inputs
        .iter()
        .map(|(p, _)| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    let compressed = parts
        .iter()
        .map(|(c, _, _)| c.compression)
        .find(|c| *c != weir_events::Compression::None)
        .unwrap_or(weir_events::Compression::None);
    let mut sink = Sink::create(
        output,
        arrow_schema.clone(),
        crate::encoders(total, compressed),
    )?;
    let batch_rows = crate::batch_rows(schema.fields.len(), opts.batch_rows);
    for ((_, rows, _), (_, name)) in parts.iter().zip(inputs) {
        let file = File::open(rows).map_err(|e| ConvertError::io(name, e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.with_batch_size(batch_rows).build())
            .map_err(|e| ConvertError::unsupported(name, e.to_string()))?;
        for batch in reader {
            let batch = batch.map_err(|e| ConvertError::unsupported(name, e.to_string()))?;
            let batch = RecordBatch::try_new(arrow_schema.clone(), batch.columns().to_vec())
                .map_err(|e| {
                    ConvertError::unsupported(
                        name,
                        format!(
                            "its columns do not line up with those of {}: {e}",
                            inputs[0].1
                        ),
                    )
                })?;
            sink.write(&batch)?;
        }
    }
    let (statistics, parquet) = sink.finish()?;

    let rejects_entries = merge_rejects(&parts, inputs, opts.rejects.as_deref())?;
    let mut problems: Vec<RowProblem> = Vec::new();
    for ((c, _, _), (_, name)) in parts.iter().zip(inputs) {
        for p in &c.problems {
            if problems.len() < MAX_ROW_PROBLEMS {
                problems.push(RowProblem {
                    line: p.line,
                    column: p.column.clone(),
                    message: format!("{name}: {}", p.message),
                });
            }
        }
    }
    let mut encodings: Vec<&str> = Vec::new();
    for (c, _, _) in &parts {
        if !encodings.contains(&c.encoding.as_str()) {
            encodings.push(&c.encoding);
        }
    }
    Ok(Converted {
        format: head.format,
        compression: head.compression,
        rewritten: true,
        schema,
        statistics,
        problems,
        problem_count,
        parquet_size: parquet.size,
        parquet_sha256: Some(parquet.sha256),
        encoding: encodings.join(", "),
        encoding_detected: parts.iter().all(|(c, _, _)| c.encoding_detected),
        rows_read,
        rejected: parts.iter().map(|(c, _, _)| c.rejected).sum(),
        rejects_entries,
        validation,
    })
}

/// `path` with `suffix` appended to its file name, in the same directory.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    path.with_file_name(name)
}

/// Fails unless `next` (file `name`) has the format and the schema of the first file.
fn same_shape(
    first: &str,
    head: &Converted,
    name: &str,
    next: &Converted,
) -> Result<(), ConvertError> {
    if next.format != head.format {
        return Err(ConvertError::malformed(
            name,
            None,
            None,
            format!(
                "it is {} but {first} is {}: the files of one version share one format",
                next.format.as_str(),
                head.format.as_str()
            ),
        ));
    }
    let same = next.schema.fields.len() == head.schema.fields.len()
        && next
            .schema
            .fields
            .iter()
            .zip(&head.schema.fields)
            .all(|(a, b)| a.name == b.name && a.data_type == b.data_type);
    if !same {
        let diff = SchemaDiff::between(&head.schema, &next.schema);
        let how = if diff.is_empty() {
            "the same columns in another order".to_owned()
        } else {
            diff.describe()
        };
        return Err(ConvertError::malformed(
            name,
            None,
            None,
            format!(
                "its schema differs from that of {first}: {how}; the files of one version share one schema (upload them as separate versions, or fix the file)"
            ),
        ));
    }
    Ok(())
}

/// Appends every file's rejects, in file order, to `out`, each entry with the name of
/// the file it came from; returns the entries written (`out` is created only when
/// there is one).
fn merge_rejects(
    parts: &[(Converted, PathBuf, Option<PathBuf>)],
    inputs: &[(PathBuf, String)],
    out: Option<&Path>,
) -> Result<u64, ConvertError> {
    let Some(out) = out else {
        return Ok(0);
    };
    let shown = out.display().to_string();
    let mut writer: Option<BufWriter<File>> = None;
    let mut entries = 0u64;
    for ((c, _, rejects), (_, name)) in parts.iter().zip(inputs) {
        let Some(path) = rejects.as_ref().filter(|_| c.rejects_entries > 0) else {
            continue;
        };
        let file_field = serde_json::to_string(name)
            .map_err(|e| ConvertError::unsupported(name, e.to_string()))?;
        let reader = BufReader::new(File::open(path).map_err(|e| ConvertError::io(name, e))?);
        if writer.is_none() {
            writer = Some(BufWriter::new(
                File::create(out).map_err(|e| ConvertError::io(&shown, e))?,
            ));
        }
        let w = writer.as_mut().expect("created above");
        for line in reader.lines() {
            let line = line.map_err(|e| ConvertError::io(name, e))?;
            // Each entry is one JSON object: `{"line":…}` becomes `{"file":…,"line":…}`.
            let Some(rest) = line.strip_prefix('{') else {
                continue;
            };
            writeln!(w, "{{\"file\":{file_field},{rest}")
                .map_err(|e| ConvertError::io(&shown, e))?;
            entries += 1;
        }
    }
    if let Some(mut w) = writer {
        w.flush().map_err(|e| ConvertError::io(&shown, e))?;
        w.into_inner()
            .map_err(|e| ConvertError::io(&shown, e.into_error()))?
            .sync_all()
            .map_err(|e| ConvertError::io(&shown, e))?;
    }
    Ok(entries)
}
