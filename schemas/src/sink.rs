//! The Parquet output: zstd, bounded row groups, statistics on the way through.
//!
//! Encoding and compressing Parquet costs about as much as parsing the text, so the
//! writer runs on a thread of its own: the reader builds a batch while the writer
//! encodes the one before. The channel between them holds at most `QUEUED` batches,
//! which (with the writer's open row group) bounds memory.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{
    DataType, Float64Type, Int64Type, SchemaRef, TimeUnit, TimestampMicrosecondType,
};
use arrow::record_batch::RecordBatch;
use std::time::{Duration, Instant};

use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowColumnWriter, ArrowLeafColumn, compute_leaves,
};
use parquet::basic::{Compression as PqCompression, Encoding, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
use sha2::Digest as _;
use weir_events::{Sha256, Statistics};

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

type Finished = Result<(Statistics, Output), ConvertError>;

/// A closed Parquet file: its size, and the sha256 of its bytes taken as they were
/// written, so the file is stored by its digest without being read again (a 1 GB
/// CSV's Parquet is a third of a gigabyte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    pub size: u64,
    pub sha256: Sha256,
}

/// The Parquet file, hashed as it is written. The Parquet writer writes its file once,
/// front to back, and never seeks, so the digest is the file's.
pub(crate) struct Hashed {
    file: File,
    hash: sha2::Sha256,
}

impl Hashed {
    fn new(file: File) -> Self {
        Self {
            file,
            hash: sha2::Sha256::new(),
        }
    }
}

impl Write for Hashed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

pub struct Sink {
    tx: Option<SyncSender<RecordBatch>>,
    writer: Option<JoinHandle<Finished>>,
    /// `encoders == 0`: no thread; the caller's thread encodes each batch as it comes.
    inline: Option<Inline>,
    output: String,
}

/// The writer of a sink without a thread of its own. The Parquet writer is opened on
/// the first batch, whose values some of its settings depend on.
struct Inline {
    file: Option<Hashed>,
    schema: SchemaRef,
    dictionary: Dictionary,
    open: Option<(ArrowWriter<Hashed>, StatsBuilder)>,
}

impl Inline {
    fn writer(
        &mut self,
        first: Option<&RecordBatch>,
        output: &str,
    ) -> Result<&mut (ArrowWriter<Hashed>, StatsBuilder), ConvertError> {
        if self.open.is_none() {
            let file = self.file.take().ok_or_else(|| {
                ConvertError::unsupported(output, "the Parquet writer was already closed")
            })?;
            self.open = Some(open_writer(
                file,
                &self.schema,
                &self.dictionary,
                first,
                true,
                output,
            )?);
        }
        Ok(self.open.as_mut().expect("opened above"))
    }
}

/// Which columns Parquet writes without a dictionary. For a column of mostly distinct
/// values the writer would hash every value into a dictionary only to give up on it at
/// the size limit (or keep a dictionary as large as the data), for nothing.
#[derive(Debug, Clone)]
pub enum Dictionary {
    /// These top-level columns, decided from the input's sample (CSV, TSV).
    PlainFor(Vec<String>),
    /// The leaves, top-level or inside structs, whose values in the first batch are
    /// mostly distinct (JSON, Parquet rewrites).
    FromFirstBatch,
}

impl Sink {
    pub fn create(path: &Path, schema: SchemaRef, encoders: usize) -> Result<Self, ConvertError> {
        Self::create_with(path, schema, Dictionary::FromFirstBatch, encoders)
    }

    /// As [`Sink::create`], with the dictionary choice made by the caller.
    ///
    /// `encoders` threads encode the columns of a row group side by side; with one, the
    /// sink's own thread encodes them (files of a few MB, where more threads cost more
    /// than they save); with none, [`Sink::write`] encodes on the caller's thread (small
    /// files: no thread is started at all).
    pub fn create_with(
        path: &Path,
        schema: SchemaRef,
        dictionary: Dictionary,
        encoders: usize,
    ) -> Result<Self, ConvertError> {
        let output = path.display().to_string();
        let file = Hashed::new(File::create(path).map_err(|e| ConvertError::io(&output, e))?);
        if encoders == 0 {
            return Ok(Sink {
                tx: None,
                writer: None,
                inline: Some(Inline {
                    file: Some(file),
                    schema,
                    dictionary,
                    open: None,
                }),
                output,
            });
        }
        let (tx, rx) = sync_channel(QUEUED);
        let name = output.clone();
        let writer = std::thread::Builder::new()
            .name("weir-parquet".into())
            .spawn(move || write_all(file, schema, dictionary, name, rx, encoders))
            .map_err(|e| ConvertError::io(&output, e))?;
        Ok(Sink {
            tx: Some(tx),
            writer: Some(writer),
            inline: None,
            output,
        })
    }

    /// Hands `batch` to the writer thread; waits while `QUEUED` batches are pending.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ConvertError> {
        if let Some(inline) = &mut self.inline {
            let output = &self.output;
            let (writer, stats) = inline.writer(Some(batch), output)?;
            stats.add(batch);
            return writer
                .write(batch)
                .map_err(|e| ConvertError::from_write(output, e));
        }
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

    /// Closes the file; returns the statistics, the Parquet's size and its digest.
    pub fn finish(mut self) -> Result<(Statistics, Output), ConvertError> {
        self.join()
    }

    fn join(&mut self) -> Finished {
        if let Some(mut inline) = self.inline.take() {
            let output = &self.output;
            inline.writer(None, output)?;
            let (writer, stats) = inline.open.take().expect("opened above");
            let file = writer
                .into_inner()
                .map_err(|e| ConvertError::from_write(output, e))?;
            return close(file, stats, output);
        }
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
    file: Hashed,
    schema: SchemaRef,
    dictionary: Dictionary,
    output: String,
    rx: Receiver<RecordBatch>,
    encoders: usize,
) -> Finished {
    let pq = |e: ParquetError| ConvertError::from_write(&output, e);
    // The writer's settings can wait for the first batch, which some of them depend on.
    let first = rx.recv().ok();
    let (writer, stats) = open_writer(file, &schema, &dictionary, first.as_ref(), false, &output)?;
    let batches = first.into_iter().chain(rx);
    if encoders > 1 {
        return write_parallel(writer, &schema, stats, &output, batches, encoders);
    }
    let (mut writer, mut stats) = (writer, stats);
    for batch in batches {
        stats.add(&batch);
        writer.write(&batch).map_err(pq)?;
    }
    let file = writer.into_inner().map_err(pq)?;
    close(file, stats, &output)
}

/// The Parquet writer with weir's settings for `schema`: zstd, bounded row groups, and
/// no dictionary (with a delta encoding) for the columns `dictionary` names, some of
/// which are told by the `first` batch's values. For a `small` file (one encoded on
/// the reading thread, see [`crate::encoders`]), the top-level columns whose values in
/// the first batch take under [`TINY_COLUMN_BYTES`] are stored uncompressed.
fn open_writer(
    file: Hashed,
    schema: &SchemaRef,
    dictionary: &Dictionary,
    first: Option<&RecordBatch>,
    small: bool,
    output: &str,
) -> Result<(ArrowWriter<Hashed>, StatsBuilder), ConvertError> {
    let pq = |e: ParquetError| ConvertError::from_write(output, e);
    let plain: Vec<(ColumnPath, DataType)> = match dictionary {
        Dictionary::PlainFor(names) => names
            .iter()
            .filter_map(|n| {
                let f = schema.field_with_name(n).ok()?;
                Some((ColumnPath::from(n.as_str()), f.data_type().clone()))
            })
            .collect(),
        Dictionary::FromFirstBatch => first
            .map(|b| distinct_leaves(schema, b))
            .unwrap_or_default(),
    };
    let level = ZstdLevel::try_new(3).map_err(pq)?;
    let mut props = WriterProperties::builder()
        .set_compression(PqCompression::ZSTD(level))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_max_row_group_bytes(Some(ROW_GROUP_BYTES));
    if let (true, Some(batch)) = (small, first) {
        for path in tiny_columns(batch) {
            props = props.set_column_compression(path, PqCompression::UNCOMPRESSED);
        }
    }
    for (path, data_type) in plain {
        props = props.set_column_dictionary_enabled(path.clone(), false);
        // Without a dictionary, the delta encodings hand zstd far fewer bytes than plain
        // (a sequential id packs to almost nothing, a string's length to a few bits):
        // a fifth less CPU on the benchmark CSV, and a smaller file. DuckDB, pyarrow and
        // polars read both.
        match data_type {
            DataType::Int64 | DataType::Timestamp(..) | DataType::Date32 => {
                props = props.set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
            }
            DataType::Utf8 => {
                props = props.set_column_encoding(path, Encoding::DELTA_LENGTH_BYTE_ARRAY);
            }
            _ => {}
        }
    }
    let stats = StatsBuilder::new(schema);
    let writer = ArrowWriter::try_new(file, schema.clone(), Some(props.build())).map_err(pq)?;
    Ok((writer, stats))
}

/// A top-level column of a small file whose values take fewer bytes than this in
/// memory is written without compression. zstd saves at most a few hundred bytes on
/// it, and each compressed column chunk costs a zstd compression context and an
/// (unused, on writes) decompression context, made anew by the Parquet writer for
/// every chunk: four `cpuid` instructions, each a trap to the hypervisor on a virtual
/// machine (6.7 µs apiece on the benchmark's VM: more than encoding the column).
const TINY_COLUMN_BYTES: usize = 4096;

/// The top-level, non-nested columns of `batch` whose values take under
/// [`TINY_COLUMN_BYTES`].
fn tiny_columns(batch: &RecordBatch) -> Vec<ColumnPath> {
    batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(f, _)| !f.data_type().is_nested())
        .filter(|(_, c)| {
            c.to_data()
                .get_slice_memory_size()
                .is_ok_and(|n| n < TINY_COLUMN_BYTES)
        })
        .map(|(f, _)| ColumnPath::from(f.name().as_str()))
        .collect()
}

/// Values looked at per column to tell whether a dictionary pays.
const DISTINCT_SAMPLE: usize = 10_000;

/// The leaves (top-level columns and struct fields; not list items) whose first
/// `DISTINCT_SAMPLE` values in `batch` are at least 100 and more than half distinct.
fn distinct_leaves(schema: &SchemaRef, batch: &RecordBatch) -> Vec<(ColumnPath, DataType)> {
    fn visit(path: &mut Vec<String>, array: &dyn Array, out: &mut Vec<(ColumnPath, DataType)>) {
        if let DataType::Struct(fields) = array.data_type() {
            let s = array.as_struct();
            for (f, child) in fields.iter().zip(s.columns()) {
                path.push(f.name().clone());
                visit(path, child.as_ref(), out);
                path.pop();
            }
        } else if mostly_distinct(array) {
            out.push((ColumnPath::new(path.clone()), array.data_type().clone()));
        }
    }
    let mut out = Vec::new();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        visit(&mut vec![field.name().clone()], column.as_ref(), &mut out);
    }
    out
}

fn mostly_distinct(array: &dyn Array) -> bool {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    // A fixed hasher: the choice must not change from run to run.
    let hasher = BuildHasherDefault::<DefaultHasher>::default();
    let mut seen = std::collections::HashSet::new();
    let mut count = 0;
    let mut add = |h: u64| {
        count += 1;
        seen.insert(h);
    };
    match array.data_type() {
        DataType::Int64 => array
            .as_primitive::<Int64Type>()
            .iter()
            .flatten()
            .take(DISTINCT_SAMPLE)
            .for_each(|v| add(hasher.hash_one(v))),
        DataType::Float64 => array
            .as_primitive::<Float64Type>()
            .iter()
            .flatten()
            .take(DISTINCT_SAMPLE)
            .for_each(|v| add(hasher.hash_one(v.to_bits()))),
        DataType::Utf8 => array
            .as_string::<i32>()
            .iter()
            .flatten()
            .take(DISTINCT_SAMPLE)
            .for_each(|v| add(hasher.hash_one(v))),
        DataType::Timestamp(TimeUnit::Microsecond, _) => array
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .flatten()
            .take(DISTINCT_SAMPLE)
            .for_each(|v| add(hasher.hash_one(v))),
        _ => return false,
    }
    count >= 100 && seen.len() * 2 > count
}

fn close(out: Hashed, stats: StatsBuilder, output: &str) -> Finished {
    let Hashed { file, hash } = out;
    file.sync_all().map_err(|e| ConvertError::io(output, e))?;
    let size = file
        .metadata()
        .map_err(|e| ConvertError::io(output, e))?
        .len();
    let sha256 = Sha256(hash.finalize().into());
    Ok((stats.finish(), Output { size, sha256 }))
}

/// Work for one encoder thread.
enum Work {
    /// A new row group: this encoder's column writers, with their leaf numbers.
    Start(Vec<(usize, ArrowColumnWriter)>),
    /// One batch's leaves for those writers, in the same order.
    Write(Vec<ArrowLeafColumn>),
    /// The row group is complete: close the writers and send back their chunks.
    Close,
}

/// An encoder's closed column chunks, each with its leaf number and the time it took
/// to encode (to share the next row group's leaves out evenly).
type Closed = Result<Vec<(usize, ArrowColumnChunk, Duration)>, ParquetError>;

struct Lane {
    work: SyncSender<Work>,
    closed: Receiver<Closed>,
}

/// Encodes the columns of each row group on `encoders` threads at once (zstd and
/// Parquet's encoders cost about as much as reading the text, and one thread for all
/// columns held the conversion back). Each column chunk comes out exactly as
/// `ArrowWriter` makes it: the writers are the ones it would use, with the same
/// properties, appended in column order.
fn write_parallel(
    writer: ArrowWriter<Hashed>,
    schema: &SchemaRef,
    mut stats: StatsBuilder,
    output: &str,
    batches: impl Iterator<Item = RecordBatch>,
    encoders: usize,
) -> Finished {
    let pq = |e: ParquetError| ConvertError::from_write(output, e);
    let (mut file_writer, factory) = writer.into_serialized_writer().map_err(pq)?;
    let leaves = factory.create_column_writers(0).map_err(pq)?.len();
    let encoders = encoders.min(leaves).max(1);
    std::thread::scope(|scope| {
        let mut lanes = Vec::with_capacity(encoders);
        let mut handles = Vec::with_capacity(encoders);
        for n in 0..encoders {
            let (work, work_rx) = sync_channel::<Work>(QUEUED);
            let (closed_tx, closed) = sync_channel::<Closed>(1);
            let handle = std::thread::Builder::new()
                .name(format!("weir-encode-{n}"))
                .spawn_scoped(scope, move || encode(work_rx, closed_tx))
                .map_err(|e| ConvertError::io(output, e))?;
            lanes.push(Lane { work, closed });
            handles.push(handle);
        }
        let stopped =
            || ConvertError::unsupported(output, "a Parquet encoder thread stopped".to_owned());
        let result = (|| -> Result<(), ConvertError> {
            // Leaf → encoder; by position at first, then by measured cost.
            let mut lane_of: Vec<usize> = (0..leaves).map(|l| l % encoders).collect();
            let mut row_group = 0;
            let mut open = false;
            let mut rows = 0;
            let mut bytes = 0;
            let close_group = |lane_of: &mut Vec<usize>,
                               file_writer: &mut SerializedFileWriter<Hashed>|
             -> Result<(), ConvertError> {
                for lane in &lanes {
                    lane.work.send(Work::Close).map_err(|_| stopped())?;
                }
                let mut chunks: Vec<Option<ArrowColumnChunk>> = (0..leaves).map(|_| None).collect();
                let mut cost = vec![Duration::ZERO; leaves];
                for lane in &lanes {
                    for (leaf, chunk, took) in
                        lane.closed.recv().map_err(|_| stopped())?.map_err(pq)?
                    {
                        chunks[leaf] = Some(chunk);
                        cost[leaf] = took;
                    }
                }
                let mut group = file_writer.next_row_group().map_err(pq)?;
                for chunk in chunks {
                    chunk
                        .ok_or_else(stopped)?
                        .append_to_row_group(&mut group)
                        .map_err(pq)?;
                }
                group.close().map_err(pq)?;
                *lane_of = share(&cost, encoders);
                Ok(())
            };
            for batch in batches {
                stats.add(&batch);
                let mut rest = batch;
                while rest.num_rows() > 0 {
                    if !open {
                        let writers = factory.create_column_writers(row_group).map_err(pq)?;
                        let mut per_lane: Vec<Vec<(usize, ArrowColumnWriter)>> =
                            (0..encoders).map(|_| Vec::new()).collect();
                        for (leaf, w) in writers.into_iter().enumerate() {
                            per_lane[lane_of[leaf]].push((leaf, w));
                        }
                        for (lane, writers) in lanes.iter().zip(per_lane) {
                            lane.work
                                .send(Work::Start(writers))
                                .map_err(|_| stopped())?;
                        }
                        open = true;
                    }
                    let take = rest.num_rows().min(ROW_GROUP_ROWS - rows);
                    let part = rest.slice(0, take);
                    rest = rest.slice(take, rest.num_rows() - take);
                    let mut per_lane: Vec<Vec<ArrowLeafColumn>> =
                        (0..encoders).map(|_| Vec::new()).collect();
                    let mut leaf = 0;
                    for (field, column) in schema.fields().iter().zip(part.columns()) {
                        bytes += column.to_data().get_slice_memory_size().unwrap_or(0);
                        for l in compute_leaves(field, column).map_err(pq)? {
                            per_lane[lane_of[leaf]].push(l);
                            leaf += 1;
                        }
                    }
                    for (lane, leaves) in lanes.iter().zip(per_lane) {
                        if !leaves.is_empty() {
                            lane.work.send(Work::Write(leaves)).map_err(|_| stopped())?;
                        }
                    }
                    rows += take;
                    if rows >= ROW_GROUP_ROWS || bytes >= ROW_GROUP_BYTES {
                        close_group(&mut lane_of, &mut file_writer)?;
                        row_group += 1;
                        open = false;
                        rows = 0;
                        bytes = 0;
                    }
                }
            }
            if open {
                close_group(&mut lane_of, &mut file_writer)?;
            }
            Ok(())
        })();
        drop(lanes);
        for handle in handles {
            if let Err(payload) = handle.join() {
                std::panic::resume_unwind(payload);
            }
        }
        result
    })?;
    let file = file_writer.into_inner().map_err(pq)?;
    close(file, stats, output)
}

/// Leaves to encoders, the costliest first to the least loaded (longest processing
/// time first).
fn share(cost: &[Duration], encoders: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..cost.len()).collect();
    order.sort_by(|a, b| cost[*b].cmp(&cost[*a]).then(a.cmp(b)));
    let mut load = vec![Duration::ZERO; encoders];
    let mut lane_of = vec![0; cost.len()];
    for leaf in order {
        let (lane, _) = load
            .iter()
            .enumerate()
            .min_by_key(|(i, l)| (**l, *i))
            .unwrap_or((0, &Duration::ZERO));
        lane_of[leaf] = lane;
        load[lane] += cost[leaf];
    }
    lane_of
}

/// One encoder thread: writes its leaves into its column writers, closes them at the
/// end of each row group. Stops when the sink hangs up.
fn encode(work: Receiver<Work>, closed: SyncSender<Closed>) {
    let mut writers: Vec<(usize, ArrowColumnWriter, Duration)> = Vec::new();
    let mut failed: Option<ParquetError> = None;
    for w in work {
        match w {
            Work::Start(ws) => {
                writers = ws
                    .into_iter()
                    .map(|(leaf, w)| (leaf, w, Duration::ZERO))
                    .collect();
            }
            Work::Write(leaves) => {
                if failed.is_some() {
                    continue;
                }
                for ((_, writer, took), leaf) in writers.iter_mut().zip(&leaves) {
                    let t = Instant::now();
                    if let Err(e) = writer.write(leaf) {
                        failed = Some(e);
                        break;
                    }
                    *took += t.elapsed();
                }
            }
            Work::Close => {
                let result = match failed.take() {
                    Some(e) => Err(e),
                    None => writers
                        .drain(..)
                        .map(|(leaf, writer, took)| {
                            let t = Instant::now();
                            let chunk = writer.close()?;
                            Ok((leaf, chunk, took + t.elapsed()))
                        })
                        .collect(),
                };
                if closed.send(result).is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int64Array, ListArray, StringArray, StructArray};
    use arrow::datatypes::{DataType, Field, Fields, Int64Type, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use std::sync::Arc;

    /// Batches with flat, nested and dictionary-friendly columns, over several row
    /// groups and with batches that straddle them.
    fn batches() -> (SchemaRef, Vec<RecordBatch>) {
        let inner = Fields::from(vec![Field::new("k", DataType::Int64, true)]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("s", DataType::Struct(inner.clone()), true),
            Field::new("l", DataType::new_list(DataType::Int64, true), true),
        ]));
        let mut out = Vec::new();
        let mut start = 0i64;
        for size in [70_000, 100_000, 1, 130_000] {
            let ids: Vec<i64> = (start..start + size).collect();
            let id: ArrayRef = Arc::new(Int64Array::from_iter(
                ids.iter().map(|i| (i % 7 != 0).then_some(*i)),
            ));
            let name: ArrayRef = Arc::new(StringArray::from_iter(
                ids.iter()
                    .map(|i| (i % 5 != 0).then(|| format!("n{}", i % 100))),
            ));
            let k: ArrayRef = Arc::new(Int64Array::from_iter_values(ids.iter().map(|i| i * 3)));
            let s: ArrayRef = Arc::new(StructArray::new(inner.clone(), vec![k], None));
            let l: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(
                ids.iter()
                    .map(|i| (i % 3 != 0).then(|| vec![Some(*i), None])),
            ));
            out.push(RecordBatch::try_new(schema.clone(), vec![id, name, s, l]).expect("a batch"));
            start += size;
        }
        (schema, out)
    }

    fn write(encoders: usize) -> (Vec<RecordBatch>, Statistics, usize) {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("out.parquet");
        let (schema, input) = batches();
        let mut sink = Sink::create_with(&path, schema, Dictionary::FromFirstBatch, encoders)
            .expect("creates");
        for b in &input {
            sink.write(b).expect("writes");
        }
        let (stats, out) = sink.finish().expect("finishes");
        // The digest taken while writing is the file's.
        let bytes = std::fs::read(&path).expect("reads back");
        assert_eq!(
            out.size,
            bytes.len() as u64,
            "size with {encoders} encoders"
        );
        assert_eq!(
            out.sha256,
            Sha256(sha2::Sha256::digest(&bytes).into()),
            "digest with {encoders} encoders"
        );
        let file = File::open(&path).expect("opens");
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).expect("reads");
        let groups = builder.metadata().num_row_groups();
        let back = builder
            .build()
            .expect("reader")
            .map(|b| b.expect("batch"))
            .collect();
        (back, stats, groups)
    }

    #[test]
    fn parallel_encoders_write_what_one_writes() {
        let (one, one_stats, one_groups) = write(1);
        let (two, two_stats, two_groups) = write(2);
        let (three, _, _) = write(3);
        // No thread: the caller's own encodes (a small file's path).
        let (inline, _, _) = write(0);
        assert_eq!(one, inline);
        assert_eq!(one_groups, 3, "128Ki-row groups over 300,001 rows");
        assert_eq!(two_groups, one_groups);
        assert_eq!(one_stats, two_stats);
        assert_eq!(one, two);
        assert_eq!(one, three);
        let rows: usize = two.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 300_001);
    }
}
