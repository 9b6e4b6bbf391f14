//! The projector: follows the stream in order from the checkpoint and applies each batch
//! of events together with the new checkpoint in one transaction.
//!
//! Exactly-once application rests on one statement: every batch transaction first moves
//! the checkpoint with `UPDATE … SET seq = <last of batch> WHERE seq = <expected>`. If
//! another writer (a second projector, a replay's swap) moved it meanwhile, no row
//! matches, the batch is rolled back, and the projector re-reads the checkpoint and
//! follows again from there. A crash or a dropped future before commit leaves neither
//! the rows nor the checkpoint; after commit, both.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use sqlx::Row;
use tokio::sync::watch;
use tracing::Instrument;
use weir_events::Timestamp;
use weir_journal::{Follow, Journal, ReadError, Recorded, Start};

use crate::Error;
use crate::apply::{Batch as Rows, Needs, int, needs};
use crate::db::{Conn, Db};
use crate::fresh::Written;
use crate::rows::Sql;
use crate::schema::Tables;

/// Where a projector is, for metrics and for tests that stop it at a chosen point.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// The last sequence committed.
    pub checkpoint: u64,
    /// The sequence just applied inside the open, uncommitted batch transaction.
    pub applying: Option<u64>,
}

/// When a bounded build stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// The stream's last sequence when the build started.
    Caught,
    /// Apply events up to and including this sequence.
    Sequence(u64),
    /// Apply events stored at or before this time.
    Time(Timestamp),
}

/// Follows the log into one set of tables.
#[derive(Debug, Clone)]
pub struct Projector {
    db: Db,
    tables: Tables,
    batch_size: usize,
    progress: watch::Sender<Progress>,
}

/// Most events per transaction. A catch-up or replay fills every batch; a live
/// projector takes what has arrived, up to this, so its batches stay small while it
/// keeps up. Large batches are what make a rebuild fast: an upload's lifecycle events
/// fold into one row write, and each table gets one statement per batch. An upload's
/// events are spread over the log by the uploads running beside it (about 2,000 events
/// in the benchmark); every batch boundary inside that spread writes its row and step
/// rows twice, so a rebuild's batch is several spreads long.
const DEFAULT_BATCH: usize = 16_384;

/// The checkpoint row's name: one projector pipeline per table set.
const CHECKPOINT: &str = "main";

/// Pause before following again after NATS went away.
const RETRY_DELAY: Duration = Duration::from_millis(500);

enum Stopped {
    Shutdown,
    /// Another writer (a replay's swap) moved the checkpoint.
    Moved,
    /// The event stream ended or broke.
    Interrupted,
}

enum Batch {
    /// Committed; the checkpoint is now this sequence.
    Committed(u64),
    /// The checkpoint was not where this projector thought: follow again from it.
    Moved,
}

impl Projector {
    /// A projector for the live tables.
    pub fn new(db: Db) -> Self {
        Self::for_tables(db, Tables::Live)
    }

    pub fn for_tables(db: Db, tables: Tables) -> Self {
        Self {
            db,
            tables,
            batch_size: DEFAULT_BATCH,
            progress: watch::Sender::new(Progress::default()),
        }
    }

    /// Most events per transaction (default 16,384).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn tables(&self) -> Tables {
        self.tables
    }

    /// Watches the projector's progress.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// The last sequence applied to this projector's tables.
    pub async fn checkpoint(&self) -> Result<u64, Error> {
        let seq: i64 = sqlx::query(
            self.tables
                .sql("SELECT seq FROM projection_checkpoint{s} WHERE name = $1"),
        )
        .bind(CHECKPOINT)
        .fetch_one(self.db.pool())
        .await?
        .try_get("seq")?;
        Ok(u64::try_from(seq).unwrap_or(0))
    }

    /// How many events the stream holds that these tables do not show yet.
    pub async fn lag(&self, journal: &Journal) -> Result<u64, Error> {
        let last = journal.last_sequence().await?;
        Ok(last.saturating_sub(self.checkpoint().await?))
    }

    /// Applies every event up to the stream's last sequence as of this call, and
    /// returns the checkpoint reached.
    pub async fn catch_up(&self, journal: &Journal) -> Result<u64, Error> {
        self.build(journal, Until::Caught).await
    }

    /// Applies events until `until` and returns the checkpoint reached.
    pub async fn build(&self, journal: &Journal, until: Until) -> Result<u64, Error> {
        let last = journal.last_sequence().await?;
        let target = match until {
            Until::Caught | Until::Time(_) => last,
            Until::Sequence(n) => n.min(last),
        };
        let cutoff = match until {
            Until::Time(t) => Some(t),
            _ => None,
        };
        let mut checkpoint = self.checkpoint().await?;
        self.progress.send_replace(Progress {
            checkpoint,
            applying: None,
        });
        // Batch N+1 is read and folded while batch N is written: its rows come from
        // N's images where N touched them, so it never waits for N's commit. A
        // database that allows one connection (`:memory:`) is built one batch at a
        // time.
        let pipelined = self.db.pool().options().get_max_connections() > 1;
        // Started on empty tables: what this build writes is all the database holds,
        // so a batch reads only rows an earlier batch wrote (`fresh.rs`). Another
        // writer moving the checkpoint ends that.
        let mut fresh = (checkpoint == 0).then(Written::new);
        'follow: while checkpoint < target {
            let mut events = Prefetched::start(
                journal
                    .follow_chunks(Self::from_after(checkpoint), CHUNK)
                    .await?,
            );
            let mut inflight: Option<Inflight> = None;
            let mut read_to = checkpoint;
            loop {
                let mut batch = Vec::with_capacity(self.batch_size.min(8192));
                let mut done = false;
                let mut failed = None;
                let mut ended = false;
                // A full batch, not just what happens to be buffered: every event up
                // to `target` is in the stream, so waiting for the next one is bounded.
                while read_to < target && batch.len() < self.batch_size {
                    let rec = match events.next().await {
                        Some(Ok(rec)) => rec,
                        Some(Err(e)) => {
                            // Keep what came before it, then report.
                            failed = Some(e);
                            break;
                        }
                        None => {
                            ended = true;
                            break;
                        }
                    };
                    if rec.seq <= read_to {
                        continue;
                    }
                    if rec.seq > target || cutoff.is_some_and(|t| rec.stored_at > t) {
                        done = true;
                        break;
                    }
                    read_to = rec.seq;
                    batch.push(rec);
                }
                let prepared = match batch.last() {
                    Some(_) if pipelined => {
                        let rows = self
                            .prepare(&batch, inflight.as_ref().map(|i| &*i.rows), fresh.as_ref())
                            .await?;
                        if let Some(fresh) = &mut fresh {
                            rows.record(fresh);
                        }
                        Some(rows)
                    }
                    _ => None,
                };
                if let Some(previous) = inflight.take() {
                    match self.settle(previous).await? {
                        Batch::Committed(seq) => checkpoint = seq,
                        Batch::Moved => {
                            fresh = None;
                            checkpoint = self.reload().await?;
                            continue 'follow;
                        }
                    }
                }
                if let Some(last) = batch.last() {
                    match prepared {
                        Some(rows) => {
                            self.progress.send_modify(|p| p.applying = Some(last.seq));
                            let rows = Arc::new(rows);
                            inflight = Some(Inflight {
                                write: tokio::spawn(write_prepared(
                                    self.db.clone(),
                                    self.sql(),
                                    checkpoint,
                                    last.clone(),
                                    rows.clone(),
                                )),
                                rows,
                            });
                        }
                        None => match self.commit(checkpoint, &batch).await? {
                            Batch::Committed(seq) => checkpoint = seq,
                            Batch::Moved => {
                                fresh = None;
                                checkpoint = self.reload().await?;
                                continue 'follow;
                            }
                        },
                    }
                }
                if failed.is_some() || done || ended || read_to >= target {
                    if let Some(last) = inflight.take() {
                        match self.settle(last).await? {
                            Batch::Committed(seq) => checkpoint = seq,
                            Batch::Moved => {
                                fresh = None;
                                checkpoint = self.reload().await?;
                                continue 'follow;
                            }
                        }
                    }
                    if let Some(e) = failed {
                        return Err(e.into());
                    }
                    if done {
                        break 'follow;
                    }
                    // Caught up, or the stream ended: follow again while short.
                    continue 'follow;
                }
            }
        }
        Ok(checkpoint)
    }

    /// Follows the log until `shutdown` completes. Transient faults (NATS or the
    /// database unreachable) are waited out, following again from the committed
    /// checkpoint; returns an error only for what waiting cannot fix (an event this
    /// build cannot decode, a statement the database rejects).
    pub async fn run(
        &self,
        journal: &Journal,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            match self.follow_until_interrupted(journal, &mut shutdown).await {
                Ok(Stopped::Shutdown) => return Ok(()),
                // Nothing is wrong: follow again from the new checkpoint at once.
                Ok(Stopped::Moved) => continue,
                Ok(Stopped::Interrupted) => {}
                Err(e) if e.is_transient() => {
                    tracing::warn!(error = %e, "projector interrupted; following again shortly");
                }
                Err(e) => return Err(e),
            }
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep(RETRY_DELAY) => {}
            }
        }
    }

    /// One follow from the committed checkpoint, until shutdown, a broken stream or
    /// another writer moving the checkpoint.
    async fn follow_until_interrupted(
        &self,
        journal: &Journal,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<Stopped, Error> {
        let mut checkpoint = self.reload().await?;
        let chunks = tokio::select! {
            () = shutdown.as_mut() => return Ok(Stopped::Shutdown),
            chunks = journal.follow_chunks(Self::from_after(checkpoint), self.batch_size) => chunks?,
        };
        let mut chunks = std::pin::pin!(chunks);
        loop {
            let items = tokio::select! {
                () = shutdown.as_mut() => return Ok(Stopped::Shutdown),
                items = chunks.next() => items,
            };
            let Some(items) = items else {
                return Ok(Stopped::Interrupted);
            };
            let mut batch = Vec::with_capacity(items.len());
            let mut failed = None;
            for item in items {
                match item {
                    Ok(rec) => batch.push(rec),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if !batch.is_empty() {
                // A batch runs to its end: shutdown waits for at most one commit.
                match self.commit(checkpoint, &batch).await? {
                    Batch::Committed(seq) => checkpoint = seq,
                    Batch::Moved => return Ok(Stopped::Moved),
                }
            }
            if let Some(e) = failed {
                // NATS errors are transient; a decode error is not.
                return Err(e.into());
            }
        }
    }

    /// Re-reads the checkpoint after another writer moved it, and reports it.
    async fn reload(&self) -> Result<u64, Error> {
        let checkpoint = self.checkpoint().await?;
        self.progress.send_replace(Progress {
            checkpoint,
            applying: None,
        });
        Ok(checkpoint)
    }

    /// Every event after `checkpoint`.
    fn from_after(checkpoint: u64) -> Follow {
        Follow {
            filters: Vec::new(),
            start: Start::Sequence(checkpoint + 1),
        }
    }

    /// Waits for a prepared batch's write and reports the new checkpoint.
    async fn settle(&self, inflight: Inflight) -> Result<Batch, Error> {
        let outcome = inflight.finish().await?;
        if let Batch::Committed(checkpoint) = outcome {
            self.progress.send_replace(Progress {
                checkpoint,
                applying: None,
            });
        }
        Ok(outcome)
    }

    fn sql(&self) -> Sql {
        Sql {
            backend: self.db.backend(),
            tables: self.tables,
        }
    }

    /// Folds `batch` over the rows it starts from, outside any transaction: `after`
    /// (the images the batch before it leaves, while that one is still being written)
    /// for the rows it touched, the database for the rest.
    async fn prepare(
        &self,
        batch: &[Recorded],
        after: Option<&Rows>,
        fresh: Option<&Written>,
    ) -> Result<Rows, Error> {
        let started = std::time::Instant::now();
        let mut wanted = Needs::default();
        for rec in batch {
            needs(&mut wanted, rec);
        }
        let mut conn = self.db.acquire_batch().await?;
        let mut rows = Rows::load(&self.sql(), &mut conn.conn(), wanted, after, fresh).await?;
        drop(conn);
        let loaded = started.elapsed();
        for rec in batch {
            rows.apply(rec)?;
        }
        tracing::debug!(
            events = batch.len(),
            load_ms = loaded.as_secs_f64() * 1e3,
            fold_ms = (started.elapsed() - loaded).as_secs_f64() * 1e3,
            "batch prepared"
        );
        Ok(rows)
    }

    /// Applies `batch` and moves the checkpoint from `expected` in one transaction:
    /// the checkpoint first (conditionally), then the rows the events start from are
    /// read, the events folded over them in memory, and every changed row written once.
    async fn commit(&self, expected: u64, batch: &[Recorded]) -> Result<Batch, Error> {
        let batch: Vec<&Recorded> = batch.iter().filter(|r| r.seq > expected).collect();
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return Ok(Batch::Committed(expected));
        };
        if first.seq != expected + 1 {
            tracing::warn!(
                expected = expected + 1,
                got = first.seq,
                "gap in the stream"
            );
        }
        let span = tracing::debug_span!(
            "batch",
            first = first.seq,
            last = last.seq,
            events = batch.len()
        );
        async {
            let mut tx = self.db.begin_batch().await?;
            if !move_checkpoint(&mut tx.conn(), self.tables, expected, last).await? {
                tx.rollback().await?;
                return Ok(Batch::Moved);
            }
            let sql = self.sql();
            let mut wanted = Needs::default();
            for rec in &batch {
                needs(&mut wanted, rec);
            }
            let started = std::time::Instant::now();
            let mut rows = Rows::load(&sql, &mut tx.conn(), wanted, None, None).await?;
            let loaded = started.elapsed();
            for rec in &batch {
                rows.apply(rec)?;
            }
            let folded = started.elapsed();
            self.progress.send_modify(|p| p.applying = Some(last.seq));
            rows.write(&sql, &mut tx.conn()).await?;
            let written = started.elapsed();
            tx.commit().await?;
            tracing::debug!(
                load_ms = loaded.as_secs_f64() * 1e3,
                fold_ms = (folded - loaded).as_secs_f64() * 1e3,
                write_ms = (written - folded).as_secs_f64() * 1e3,
                commit_ms = (started.elapsed() - written).as_secs_f64() * 1e3,
                "batch applied"
            );
            self.progress.send_replace(Progress {
                checkpoint: last.seq,
                applying: None,
            });
            Ok(Batch::Committed(last.seq))
        }
        .instrument(span)
        .await
    }
}

/// Moves the checkpoint from `expected` to `last` inside `tx`; false when another
/// writer moved it first (the caller rolls back and follows again).
async fn move_checkpoint(
    tx: &mut Conn<'_>,
    tables: Tables,
    expected: u64,
    last: &Recorded,
) -> Result<bool, Error> {
    let sql = tables.sql(
        "UPDATE projection_checkpoint{s} SET seq = $1, stored_at = $2 \
         WHERE name = $3 AND seq = $4",
    );
    let (seq, stored_at, expected_seq) = (int(last.seq), last.stored_at.0, int(expected));
    let moved = match tx {
        Conn::Sqlite(c) => sqlx::query(sql)
            .bind(seq)
            .bind(stored_at)
            .bind(CHECKPOINT)
            .bind(expected_seq)
            .execute(&mut **c)
            .await?
            .rows_affected(),
        Conn::Postgres(c) => sqlx::query(sql)
            .bind(seq)
            .bind(stored_at)
            .bind(CHECKPOINT)
            .bind(expected_seq)
            .execute(&mut **c)
            .await?
            .rows_affected(),
    };
    if moved != 1 {
        tracing::info!(
            expected,
            "checkpoint moved by another writer; following again"
        );
    }
    Ok(moved == 1)
}

/// A prepared batch being written on a task of its own, and the images it leaves,
/// which the next batch starts from. Dropping it aborts the write (its transaction
/// rolls back), as dropping the projector's future aborts everything else.
struct Inflight {
    write: tokio::task::JoinHandle<Result<Batch, Error>>,
    rows: Arc<Rows>,
}

impl Drop for Inflight {
    fn drop(&mut self) {
        self.write.abort();
    }
}

impl Inflight {
    /// Waits for the write; a panic in it is re-raised here. The batch's images are
    /// freed on a blocking thread: hundreds of thousands of small allocations, which
    /// would otherwise hold up the next batch's write.
    async fn finish(mut self) -> Result<Batch, Error> {
        let written = (&mut self.write).await;
        // The write task's own reference went with its future: this is the last one.
        let rows = std::mem::take(&mut self.rows);
        tokio::task::spawn_blocking(move || drop(rows));
        match written {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Only `Drop` aborts it, and then nobody waits: follow again to be safe.
            Err(_) => Ok(Batch::Moved),
        }
    }
}

/// Writes a prepared batch and moves the checkpoint from `expected` to `last`, in one
/// transaction.
async fn write_prepared(
    db: Db,
    sql: Sql,
    expected: u64,
    last: Recorded,
    rows: Arc<Rows>,
) -> Result<Batch, Error> {
    let started = std::time::Instant::now();
    let mut tx = db.begin_batch().await?;
    if !move_checkpoint(&mut tx.conn(), sql.tables, expected, &last).await? {
        tx.rollback().await?;
        return Ok(Batch::Moved);
    }
    rows.write(&sql, &mut tx.conn()).await?;
    let written = started.elapsed();
    tx.commit().await?;
    tracing::debug!(
        last = last.seq,
        write_ms = written.as_secs_f64() * 1e3,
        commit_ms = (started.elapsed() - written).as_secs_f64() * 1e3,
        "prepared batch written"
    );
    Ok(Batch::Committed(last.seq))
}

/// Events read from the log ahead of the batch being folded.
const CHUNK: usize = 512;

/// Reads and decodes the log on a task of its own, up to about two batches ahead, so
/// that it is read while the previous batch is written; the events come over in
/// chunks (what had arrived, up to [`CHUNK`]), so the two tasks meet once per chunk,
/// not once per event. The task ends when this is dropped.
struct Prefetched {
    chunks: tokio::sync::mpsc::Receiver<Vec<Result<Recorded, ReadError>>>,
    current: std::vec::IntoIter<Result<Recorded, ReadError>>,
}

impl Prefetched {
    fn start(
        chunks: impl futures::Stream<Item = Vec<Result<Recorded, ReadError>>> + Send + 'static,
    ) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel((2 * DEFAULT_BATCH).div_ceil(CHUNK));
        tokio::spawn(async move {
            let mut chunks = std::pin::pin!(chunks);
            while let Some(chunk) = chunks.next().await {
                if tx.send(chunk).await.is_err() {
                    return;
                }
            }
        });
        Self {
            chunks: rx,
            current: Vec::new().into_iter(),
        }
    }

    /// The next event in order; `None` when the follow ended.
    async fn next(&mut self) -> Option<Result<Recorded, ReadError>> {
        loop {
            if let Some(item) = self.current.next() {
                return Some(item);
            }
            self.current = self.chunks.recv().await?.into_iter();
        }
    }
}

/// Runs a live projector on `db` until `shutdown` completes: what services start
/// in-process.
pub async fn run(
    journal: &Journal,
    db: &Db,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    Projector::new(db.clone()).run(journal, shutdown).await
}

/// Brings the live tables up to the stream's current last sequence and returns it.
pub async fn catch_up(journal: &Journal, db: &Db) -> Result<u64, Error> {
    Projector::new(db.clone()).catch_up(journal).await
}

/// How far the live tables are behind the stream.
pub async fn lag(journal: &Journal, db: &Db) -> Result<u64, Error> {
    Projector::new(db.clone()).lag(journal).await
}
