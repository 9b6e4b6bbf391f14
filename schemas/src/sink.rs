//! The Parquet output: zstd, bounded row groups, statistics on the way through.

use std::fs::File;
use std::path::Path;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as PqCompression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use weir_events::Statistics;

use crate::ConvertError;
use crate::stats::StatsBuilder;

/// Rows per row group: big enough for good compression and scans, small enough that
/// the writer's buffered row group stays modest.
const ROW_GROUP_ROWS: usize = 128 * 1024;
/// A row group is also closed once its estimated encoded size passes this (wide rows).
const ROW_GROUP_BYTES: usize = 128 << 20;

pub struct Sink {
    writer: ArrowWriter<File>,
    stats: StatsBuilder,
    output: String,
}

impl Sink {
    pub fn create(path: &Path, schema: SchemaRef) -> Result<Self, ConvertError> {
        let output = path.display().to_string();
        let file = File::create(path).map_err(|e| ConvertError::io(&output, e))?;
        let level = ZstdLevel::try_new(3).map_err(|e| ConvertError::from_write(&output, e))?;
        let props = WriterProperties::builder()
            .set_compression(PqCompression::ZSTD(level))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
            .build();
        let stats = StatsBuilder::new(&schema);
        let writer = ArrowWriter::try_new(file, schema, Some(props))
            .map_err(|e| ConvertError::from_write(&output, e))?;
        Ok(Sink {
            writer,
            stats,
            output,
        })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ConvertError> {
        self.stats.add(batch);
        self.writer
            .write(batch)
            .map_err(|e| ConvertError::from_write(&self.output, e))
    }

    /// Closes the file; returns the statistics and the Parquet size in bytes.
    pub fn finish(self) -> Result<(Statistics, u64), ConvertError> {
        let file = self
            .writer
            .into_inner()
            .map_err(|e| ConvertError::from_write(&self.output, e))?;
        file.sync_all()
            .map_err(|e| ConvertError::io(&self.output, e))?;
        let size = file
            .metadata()
            .map_err(|e| ConvertError::io(&self.output, e))?
            .len();
        Ok((self.stats.finish(), size))
    }
}
