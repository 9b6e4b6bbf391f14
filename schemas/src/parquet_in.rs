//! Parquet input: the schema from the footer, one read pass that proves every page
//! decodes and gathers the statistics, and a rewrite only when the file as it is would
//! not read back the same everywhere.
//!
//! A file is rewritten (zstd, like every other output) when:
//! - a top-level column name changes under weir's naming rules (the registered schema
//!   names columns as they are in the Parquet file);
//! - a column is INT96 (deprecated; readers disagree on its time zone handling; written
//!   back as Timestamp(ns), which is what arrow-rs reads it as);
//! - a column chunk uses the deprecated `LZ4` codec (its framing is ambiguous and not
//!   every reader takes it; `LZ4_RAW` is fine);
//! - a column is Float16 (not every reader has it): written as Float32, exactly.
//!
//! Everything else (other codecs, nested types, decimals, dictionaries) is kept.

use std::fs::File;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, Field as ArrowField, FieldRef, Fields, Schema as ArrowSchema, SchemaRef,
};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression as PqCompression, Type as PhysicalType};
use parquet::errors::ParquetError;

use crate::names;
use crate::sink::Sink;
use crate::stats::StatsBuilder;
use crate::{ConvertError, Job, Problems, Written};

pub(crate) fn convert(
    job: &Job<'_>,
    progress: &mut dyn FnMut(u64),
) -> Result<(Written, bool), ConvertError> {
    let file = File::open(job.input).map_err(|e| ConvertError::io(job.file, e))?;
    let file_size = file
        .metadata()
        .map_err(|e| ConvertError::io(job.file, e))?
        .len();
    let mut pages = file
        .try_clone()
        .map_err(|e| ConvertError::io(job.file, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| read_error(job, e))?;
    crate::parquet_pages::check(
        &mut pages,
        job.file,
        builder.metadata(),
        job.opts.limits.max_record_bytes,
    )?;
    let metadata = builder.metadata().clone();
    let total_rows = metadata.file_metadata().num_rows().max(0) as u64;
    let in_schema = builder.schema().clone();
    if in_schema.fields().is_empty() {
        return Err(ConvertError::unsupported(
            job.file,
            "the Parquet file has no columns",
        ));
    }

    let leaves = metadata.file_metadata().schema_descr().num_columns();
    job.opts
        .limits
        .check_columns(job.file, in_schema.fields().len().max(leaves))?;
    let source: Vec<String> = in_schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let resolved = names::resolve(&source);
    let mut reasons = Vec::new();
    if resolved.iter().any(|(_, original)| original.is_some()) {
        reasons.push("column names need sanitising");
    }
    let leaves = metadata.file_metadata().schema_descr();
    if leaves
        .columns()
        .iter()
        .any(|c| c.physical_type() == PhysicalType::INT96)
    {
        reasons.push("INT96 timestamps");
    }
    let lz4 = metadata
        .row_groups()
        .iter()
        .flat_map(|rg| rg.columns())
        .any(|c| c.compression() == PqCompression::LZ4);
    if lz4 {
        reasons.push("the deprecated LZ4 codec");
    }
    let out_fields: Vec<FieldRef> = in_schema
        .fields()
        .iter()
        .zip(&resolved)
        .map(|(f, (name, _))| Arc::new(normalise_field(f).with_name(name)))
        .collect();
    let out_schema: SchemaRef = Arc::new(ArrowSchema::new(out_fields));
    if out_schema
        .fields()
        .iter()
        .zip(in_schema.fields())
        .any(|(o, i)| o.data_type() != i.data_type())
    {
        reasons.push("Float16 columns");
    }
    let rewrite = !reasons.is_empty();

    let reader = builder
        .with_batch_size(job.opts.batch_rows.max(1))
        .build()
        .map_err(|e| read_error(job, e))?;
    let mut sink = if rewrite {
        Some(Sink::create(
            job.output,
            out_schema.clone(),
            job.encoders(),
        )?)
    } else {
        None
    };
    let mut stats = StatsBuilder::new(&in_schema);
    let mut rows = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| {
            ConvertError::malformed(
                job.file,
                None,
                None,
                format!("cannot decode the rows after row {rows}: {e}"),
            )
        })?;
        rows += batch.num_rows() as u64;
        match &mut sink {
            Some(sink) => sink.write(&reshape(job, &out_schema, &batch)?)?,
            None => stats.add(&batch),
        }
        if let Some(read) = file_size
            .saturating_mul(rows.min(total_rows))
            .checked_div(total_rows)
        {
            progress(read);
        }
    }
    progress(file_size);
    // The footer's count is what readers of the file as it is will believe (a kept
    // file is served as it is); a footer that claims rows the pages do not hold is
    // refused. The claim only ever scaled the progress, never an allocation. (Row
    // groups are not compared: files in the wild, e.g. a repeated column without a
    // LIST annotation, count their rows differently from what Arrow reads.)
    let claimed = metadata.file_metadata().num_rows();
    let in_groups: i64 = metadata.row_groups().iter().map(|g| g.num_rows()).sum();
    if let Some((i, g)) = metadata
        .row_groups()
        .iter()
        .enumerate()
        .find(|(_, g)| g.num_rows() < 0)
    {
        return Err(ConvertError::malformed(
            job.file,
            None,
            None,
            format!(
                "row group {i} claims {} rows: a corrupt or forged footer",
                g.num_rows()
            ),
        ));
    }
    if u64::try_from(claimed) != Ok(rows) {
        return Err(ConvertError::malformed(
            job.file,
            None,
            None,
            format!(
                "the footer claims {claimed} rows (row groups: {in_groups}) but the pages hold {rows}: a corrupt or forged footer"
            ),
        ));
    }
    let (statistics, parquet_size, parquet_sha256) = match sink {
        Some(sink) => {
            let (statistics, parquet) = sink.finish()?;
            (statistics, parquet.size, Some(parquet.sha256))
        }
        None => (stats.finish(), file_size, None),
    };
    Ok((
        Written {
            schema: crate::event_schema(&out_schema, &resolved),
            statistics,
            problems: Problems::default(),
            parquet_size,
            parquet_sha256,
            rows_read: None,
            rejected: 0,
            rejects_entries: 0,
        },
        rewrite,
    ))
}

fn read_error(job: &Job<'_>, e: ParquetError) -> ConvertError {
    match e {
        ParquetError::External(inner) => match inner.downcast::<std::io::Error>() {
            Ok(io) => ConvertError::from_read(job.file, None, *io),
            Err(other) => ConvertError::malformed(job.file, None, None, other.to_string()),
        },
        ParquetError::NYI(what) => ConvertError::unsupported(
            job.file,
            format!("not supported by the Parquet reader: {what}"),
        ),
        other => ConvertError::malformed(
            job.file,
            None,
            None,
            format!("not a readable Parquet file: {other}"),
        ),
    }
}

fn normalise_field(f: &ArrowField) -> ArrowField {
    f.clone().with_data_type(normalise(f.data_type()))
}

/// The type written for a type read: Float16 becomes Float32, recursively.
fn normalise(dt: &DataType) -> DataType {
    let field = |f: &FieldRef| Arc::new(normalise_field(f));
    match dt {
        DataType::Float16 => DataType::Float32,
        DataType::List(f) => DataType::List(field(f)),
        DataType::LargeList(f) => DataType::LargeList(field(f)),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(field(f), *n),
        DataType::Map(f, sorted) => DataType::Map(field(f), *sorted),
        DataType::Struct(fs) => {
            DataType::Struct(Fields::from(fs.iter().map(field).collect::<Vec<_>>()))
        }
        other => other.clone(),
    }
}

fn reshape(
    job: &Job<'_>,
    schema: &SchemaRef,
    batch: &RecordBatch,
) -> Result<RecordBatch, ConvertError> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(col, f)| {
            if col.data_type() == f.data_type() {
                Ok(col.clone())
            } else {
                cast(col, f.data_type()).map_err(|e| {
                    ConvertError::unsupported(job.file, format!("column {:?}: {e}", f.name()))
                })
            }
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| ConvertError::unsupported(job.file, format!("rewriting: {e}")))
}
