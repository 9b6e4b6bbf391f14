//! The producer side: write a file's bytes to the store (one part unless asked for
//! smaller ones), hashing them while they are written, append
//! `UploadReceived`, and follow an upload to its terminal event.

use std::path::Path;

use futures::StreamExt;
use weir_events::{
    Aggregate, DatasetRegistered, Envelope, Event, Failed, Format, ObjectKey, Owner, PartManifest,
    Subject, UploadFile, UploadId, UploadReceived,
};
use weir_journal::{AppendOutcome, Expect, Follow, Journal, Start};

use crate::store::{Store, StoreError};

/// Default part size: 64 GiB, so a file goes as one part, which the combiner turns into
/// the content-addressed blob without copying it. Parts stream through in bounded
/// chunks: the part size does not bound memory.
pub const DEFAULT_PART_SIZE: usize = 64 << 30;

/// Parts an upload may have; keeps `UploadReceived` far below the max payload.
pub const MAX_PARTS: usize = 10_000;

#[derive(Debug, Clone)]
pub struct UploadRequest {
    pub owner: Owner,
    pub filename: String,
    pub label: Option<String>,
    pub table_name: Option<String>,
    pub format: Option<Format>,
    pub content_type: Option<String>,
    pub part_size: usize,
    /// Encoding and bad-row policy, as the producer chose them.
    pub options: weir_events::ReadOptions,
    /// Add a version to this dataset instead of creating one.
    pub dataset: Option<weir_events::DatasetId>,
    /// The version the new one derives from (with `dataset`); `None`: the head.
    pub parent_version: Option<u32>,
    /// The branch the new version goes on (with `dataset`); `None`: `main`.
    pub branch: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: {size} bytes would need more than {MAX_PARTS} parts of {part_size} bytes; use a larger --part-size"
    )]
    TooManyParts {
        path: String,
        size: u64,
        part_size: usize,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Append(#[from] weir_journal::AppendError),
    #[error(transparent)]
    Read2(#[from] weir_journal::ReadError),
    #[error("upload {0} already exists in the log")]
    Exists(UploadId),
    /// The file name has a control character or is too long (the gateway's 400 for
    /// the same name says the same).
    #[error("{0}")]
    Filename(String),
}

/// Writes `path` to the store in parts and appends `UploadReceived`. `progress` gets
/// the bytes written so far.
pub async fn upload_file(
    journal: &Journal,
    store: &Store,
    path: &Path,
    request: &UploadRequest,
    progress: impl FnMut(u64),
) -> Result<UploadId, ProduceError> {
    upload_files(
        journal,
        store,
        &[(path, &request.filename)],
        request,
        progress,
    )
    .await
}

/// Writes each (path, file name) to the store in parts and appends one
/// `UploadReceived` naming them all: the files of one version
/// (`weir upload a.csv b.csv --one-version`), registered together or not at all.
/// `request.filename` is not used; `progress` gets the bytes written so far over all
/// the files.
pub async fn upload_files(
    journal: &Journal,
    store: &Store,
    files: &[(&Path, &str)],
    request: &UploadRequest,
    mut progress: impl FnMut(u64),
) -> Result<UploadId, ProduceError> {
    let part_size = request.part_size.max(1) as u64;
    let mut checked = Vec::with_capacity(files.len());
    let mut needed = 0u64;
    for (path, name) in files {
        let shown = path.display().to_string();
        let filename = weir_events::upload_filename(Some(name)).map_err(ProduceError::Filename)?;
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|source| ProduceError::Read {
                path: shown.clone(),
                source,
            })?
            .len();
        needed += size.div_ceil(part_size).max(1);
        if needed > MAX_PARTS as u64 {
            return Err(ProduceError::TooManyParts {
                path: shown,
                size,
                part_size: request.part_size,
            });
        }
        checked.push((*path, filename, size));
    }
    let upload = UploadId::new();
    let mut manifests = Vec::with_capacity(files.len());
    let mut next = 1u32;
    let mut done = 0u64;
    for (path, filename, size) in checked {
        let parts = write_parts(store, upload, path, size, part_size, next, &mut |n| {
            progress(done + n)
        })
        .await?;
        next += parts.len() as u32;
        done += size;
        manifests.push(UploadFile {
            filename,
            size,
            parts,
        });
    }
    let mut manifests = manifests.into_iter();
    let first = manifests
        .next()
        .ok_or_else(|| ProduceError::Filename("an upload needs at least one file".to_owned()))?;
    let event = Envelope::new(
        Aggregate::Upload(upload),
        request.owner.clone(),
        upload,
        None,
        Event::UploadReceived(UploadReceived {
            owner: request.owner.clone(),
            filename: first.filename,
            content_type: request.content_type.clone(),
            format: request.format,
            label: request.label.clone(),
            table_name: request.table_name.clone(),
            size: first.size,
            parts: first.parts,
            dataset: request.dataset,
            parent_version: request.parent_version,
            branch: request.branch.clone(),
            options: request.options.clone(),
            more_files: manifests.collect(),
        }),
    );
    match journal.append(&event, Expect::Empty).await? {
        AppendOutcome::Appended { .. } => Ok(upload),
        AppendOutcome::WrongLastSequence => Err(ProduceError::Exists(upload)),
    }
}

/// Writes `path` (`size` bytes) to the store as parts of `part_size` bytes numbered
/// from `first`, each read once and hashed while it is written (an empty file is one
/// empty part); `progress` gets the bytes of this file written so far.
async fn write_parts(
    store: &Store,
    upload: UploadId,
    path: &Path,
    size: u64,
    part_size: u64,
    first: u32,
    progress: &mut impl FnMut(u64),
) -> Result<Vec<PartManifest>, ProduceError> {
    let mut parts = Vec::new();
    let mut written = 0u64;
    loop {
        let end = written.saturating_add(part_size).min(size);
        let number = first + parts.len() as u32;
        // The part is written on a blocking thread; its byte count drives `progress`.
        let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let key = ObjectKey::part(upload, number);
        let put = store.put_file_counted(path, written..end, &key, &counter);
        tokio::pin!(put);
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
        let got = loop {
            tokio::select! {
                got = &mut put => break got?,
                _ = tick.tick() => {
                    progress(written + counter.load(std::sync::atomic::Ordering::Relaxed));
                }
            }
        };
        if got.size != end - written {
            return Err(ProduceError::Read {
                path: path.display().to_string(),
                source: std::io::Error::other(format!(
                    "the file changed while it was uploaded (part {number}: {} bytes instead of {})",
                    got.size,
                    end - written
                )),
            });
        }
        parts.push(PartManifest {
            number,
            size: got.size,
            sha256: got.sha256,
        });
        written = end;
        progress(written);
        if written >= size {
            return Ok(parts);
        }
    }
}

/// How an upload ended.
#[derive(Debug, Clone)]
pub enum Terminal {
    Registered(DatasetRegistered),
    Failed(Failed),
    Aborted(String),
}

/// Follows `upload` from its first event until it is registered, failed or aborted.
pub async fn wait(journal: &Journal, upload: UploadId) -> Result<Terminal, ProduceError> {
    wait_detailed(journal, upload).await.map(|(t, _)| t)
}

/// As [`wait`], with the upload's `SchemaInferred` when there was one: encoding, bad
/// rows and the rejects file.
pub async fn wait_detailed(
    journal: &Journal,
    upload: UploadId,
) -> Result<(Terminal, Option<weir_events::SchemaInferred>), ProduceError> {
    wait_watching(journal, upload, |_| {}).await
}

/// As [`wait_detailed`], telling `seen` the kind of every event of the upload as it
/// arrives (progress: combined, inferred, …).
pub async fn wait_watching(
    journal: &Journal,
    upload: UploadId,
    mut seen: impl FnMut(weir_events::EventKind),
) -> Result<(Terminal, Option<weir_events::SchemaInferred>), ProduceError> {
    let mut inferred = None;
    let mut events = Box::pin(
        journal
            .follow(Follow {
                filters: vec![Subject::upload_filter(upload)],
                start: Start::All,
            })
            .await?,
    );
    while let Some(item) = events.next().await {
        let item = item?;
        seen(item.envelope.kind());
        match item.envelope.event {
            Event::SchemaInferred(s) => inferred = Some(s),
            Event::DatasetRegistered(r) => return Ok((Terminal::Registered(r), inferred)),
            Event::Failed(f) => return Ok((Terminal::Failed(f), inferred)),
            Event::UploadAborted(a) => return Ok((Terminal::Aborted(a.reason), inferred)),
            _ => {}
        }
    }
    Err(ProduceError::Read2(weir_journal::ReadError::Nats(
        "the event stream ended".into(),
    )))
}
