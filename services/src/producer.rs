//! The producer side: write a file's bytes to the store in parts, append
//! `UploadReceived`, and follow an upload to its terminal event.

use std::path::Path;

use futures::StreamExt;
use sha2::{Digest, Sha256 as Hasher};
use tokio::io::AsyncReadExt;
use weir_events::{
    Aggregate, DatasetRegistered, Envelope, Event, Failed, Format, ObjectKey, Owner, PartManifest,
    Sha256, Subject, UploadId, UploadReceived,
};
use weir_journal::{AppendOutcome, Expect, Follow, Journal, Start};

use crate::store::{Store, StoreError};

/// Default part size: large enough to keep the part count (and the event) small, small
/// enough to hold one part in memory while it is hashed and written.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;

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
}

/// Writes `path` to the store in parts and appends `UploadReceived`. `progress` gets
/// the bytes written so far.
pub async fn upload_file(
    journal: &Journal,
    store: &Store,
    path: &Path,
    request: &UploadRequest,
    mut progress: impl FnMut(u64),
) -> Result<UploadId, ProduceError> {
    let shown = path.display().to_string();
    let read_err = |source| ProduceError::Read {
        path: shown.clone(),
        source,
    };
    let mut file = tokio::fs::File::open(path).await.map_err(read_err)?;
    let size = file.metadata().await.map_err(read_err)?.len();
    let part_size = request.part_size.max(1);
    if size.div_ceil(part_size as u64) > MAX_PARTS as u64 {
        return Err(ProduceError::TooManyParts {
            path: shown,
            size,
            part_size,
        });
    }
    let upload = UploadId::new();
    let mut parts = Vec::new();
    let mut written = 0u64;
    let mut buf = vec![0u8; part_size];
    loop {
        let mut filled = 0;
        while filled < part_size {
            let n = file.read(&mut buf[filled..]).await.map_err(read_err)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 && !parts.is_empty() {
            break;
        }
        let number = parts.len() as u32 + 1;
        let chunk = bytes::Bytes::copy_from_slice(&buf[..filled]);
        let sha256 = Sha256(Hasher::digest(&chunk).into());
        store
            .put_bytes(&ObjectKey::part(upload, number), chunk)
            .await?;
        parts.push(PartManifest {
            number,
            size: filled as u64,
            sha256,
        });
        written += filled as u64;
        progress(written);
        if filled < part_size {
            break;
        }
    }
    let event = Envelope::new(
        Aggregate::Upload(upload),
        request.owner.clone(),
        upload,
        None,
        Event::UploadReceived(UploadReceived {
            owner: request.owner.clone(),
            filename: request.filename.clone(),
            content_type: request.content_type.clone(),
            format: request.format,
            label: request.label.clone(),
            table_name: request.table_name.clone(),
            size: written,
            parts,
            dataset: None,
        }),
    );
    match journal.append(&event, Expect::Empty).await? {
        AppendOutcome::Appended { .. } => Ok(upload),
        AppendOutcome::WrongLastSequence => Err(ProduceError::Exists(upload)),
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
    let mut events = Box::pin(
        journal
            .follow(Follow {
                filters: vec![Subject::upload_filter(upload)],
                start: Start::All,
            })
            .await?,
    );
    while let Some(item) = events.next().await {
        match item?.envelope.event {
            Event::DatasetRegistered(r) => return Ok(Terminal::Registered(r)),
            Event::Failed(f) => return Ok(Terminal::Failed(f)),
            Event::UploadAborted(a) => return Ok(Terminal::Aborted(a.reason)),
            _ => {}
        }
    }
    Err(ProduceError::Read2(weir_journal::ReadError::Nats(
        "the event stream ended".into(),
    )))
}
