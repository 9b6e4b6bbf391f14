//! The Parquet output: zstd, bounded row groups, statistics on the way through.
//!
//! Encoding and compressing Parquet costs about as much as parsing the text, so the
//! writer runs on a thread of its own: the reader builds a batch while the writer
//! encodes the one before. The channel between them holds at most `QUEUED` batches,
//! which (with the writer's open row group) bounds memory.

use std::fs::File;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as PqCompression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use weir_events::Statistics;

use crate::ConvertError;
use crate::stats::StatsBuilder;

/// Rows per row group: big enough for good compression and scans, small enough that
/// the writer's buffered row group stays modest.
const ROW_GROUP_ROWS: usize = 128 * 1024;
/// A row group is also closed once its estimated encoded size passes this (wide rows).
const ROW_GROUP_BYTES: usize = 128 << 20;
/// Batches waiting for the writer thread: one keeps both threads busy; a second
/// absorbs jitter.
const QUEUED: usize = 2;

type Finished = Result<(Statistics, u64), ConvertError>;

pub struct Sink {
    tx: Option<SyncSender<RecordBatch>>,
    writer: Option<JoinHandle<Finished>>,
    output: String,
}

impl Sink {
    pub fn create(path: &Path, schema: SchemaRef) -> Result<Self, ConvertError> {
        Self::create_with(path, schema, &[])
    }

    /// As [`Sink::create`], with dictionary encoding off for the top-level columns in
    /// `plain`: for a column of mostly distinct values the writer would hash every value
    /// into a dictionary only to give up on it at the size limit, for nothing.
    pub fn create_with(
        path: &Path,
        schema: SchemaRef,
        plain: &[String],
    ) -> Result<Self, ConvertError> {
        let output = path.display().to_string();
        let file = File::create(path).map_err(|e| ConvertError::io(&output, e))?;
        let level = ZstdLevel::try_new(3).map_err(|e| ConvertError::from_write(&output, e))?;
        let mut props = WriterProperties::builder()
            .set_compression(PqCompression::ZSTD(level))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_max_row_group_bytes(Some(ROW_GROUP_BYTES));
        for name in plain {
            props = props.set_column_dictionary_enabled(ColumnPath::from(name.as_str()), false);
        }
        let props = props.build();
        let stats = StatsBuilder::new(&schema);
        let writer = ArrowWriter::try_new(file, schema, Some(props))
            .map_err(|e| ConvertError::from_write(&output, e))?;
        let (tx, rx) = sync_channel(QUEUED);
        let name = output.clone();
        let writer = std::thread::Builder::new()
            .name("weir-parquet".into())
            .spawn(move || write_all(writer, stats, name, rx))
            .map_err(|e| ConvertError::io(&output, e))?;
        Ok(Sink {
            tx: Some(tx),
            writer: Some(writer),
            output,
        })
    }

    /// Hands `batch` to the writer thread; waits while `QUEUED` batches are pending.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ConvertError> {
        let sent = match &self.tx {
            Some(tx) => tx.send(batch.clone()).is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The writer stopped on an error: that error is the answer.
        let output = self.output.clone();
        self.join().and_then(|_| {
            Err(ConvertError::unsupported(
                &output,
                "the Parquet writer stopped early".to_owned(),
            ))
        })
    }

    /// Closes the file; returns the statistics and the Parquet size in bytes.
    pub fn finish(mut self) -> Result<(Statistics, u64), ConvertError> {
        self.join()
    }

    fn join(&mut self) -> Finished {
        self.tx = None;
        match self.writer.take() {
            Some(handle) => match handle.join() {
                Ok(result) => result,
                // A panic in Arrow or Parquet: re-raise it here, where `convert`'s guard
                // turns it into an error.
                Err(payload) => std::panic::resume_unwind(payload),
            },
            None => Err(ConvertError::unsupported(
                &self.output,
                "the Parquet writer was already closed".to_owned(),
            )),
        }
    }
}

impl Drop for Sink {
    /// A pass that stops early (to widen) drops its sink: wait for the writer to let go
    /// of the file before the next pass creates it again.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(handle) = self.writer.take() {
            let _ = handle.join();
        }
    }
}

fn write_all(
    mut writer: ArrowWriter<File>,
    mut stats: StatsBuilder,
    output: String,
    rx: Receiver<RecordBatch>,
) -> Finished {
    for batch in rx {
        stats.add(&batch);
        writer
            .write(&batch)
            .map_err(|e| ConvertError::from_write(&output, e))?;
    }
    let file = writer
        .into_inner()
        .map_err(|e| ConvertError::from_write(&output, e))?;
    file.sync_all().map_err(|e| ConvertError::io(&output, e))?;
    let size = file
        .metadata()
        .map_err(|e| ConvertError::io(&output, e))?
        .len();
    Ok((stats.finish(), size))
}
