//! Producers and consumers in any language, over plain NATS (`docs/events.md`).
//!
//! - **Request/reply on [`UPLOAD_SUBJECT`]**: a JSON request names a file the producer
//!   already put in the object store under `incoming/` (or carries a small body inline)
//!   with its token, label, table, format and read options; weir validates it, moves
//!   the object to the upload's part, appends `UploadReceived` and replies
//!   `{"upload_id": …}`, or `{"error": …}` naming the field.
//! - **A JSON mirror of the log on `weir-json.<aggregate>.<id>.<kind>`**: every event
//!   appended while weir runs, as `{"seq", "subject", "kind", "stored_at", "envelope"}`
//!   with the envelope in its JSON form, so a client can follow an upload without
//!   decoding postcard.
//!
//! Neither lives under `weir.>`: that is the stream's subject space, and anything
//! published there would be stored as an event.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use sha2::Digest as _;
use weir_events::{
    Aggregate, Envelope, Event, ObjectKey, PartManifest, Sha256, Subject, UploadId, UploadReceived,
};
use weir_journal::{AppendOutcome, Expect, Follow, Start};

use crate::AppState;

/// Where producers send upload requests.
pub const UPLOAD_SUBJECT: &str = "weir-requests.upload";
/// The queue group that shares requests between gateway instances.
const QUEUE: &str = "weir-requests";
/// Prefix of the JSON mirror's subjects.
pub const JSON_PREFIX: &str = "weir-json";
/// An inline body may be at most this large.
const MAX_INLINE: usize = 1 << 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadRequest {
    /// An API token (`weir tokens create OWNER`): the upload is the token's owner's.
    token: String,
    /// A key under `incoming/` in the object store, written by the producer.
    key: Option<String>,
    /// Or the file's content itself, as text (at most 1 MiB).
    inline: Option<String>,
    filename: Option<String>,
    label: Option<String>,
    table_name: Option<String>,
    format: Option<String>,
    content_type: Option<String>,
    encoding: Option<String>,
    bad_rows: Option<String>,
    max_bad_rows: Option<String>,
    dataset: Option<String>,
    parent_version: Option<u32>,
    /// Column type overrides, `amount=decimal(12,2);zip=utf8`.
    columns: Option<String>,
    /// A content validator: `conversation-jsonl`.
    validator: Option<String>,
}

/// Answers upload requests until the connection closes.
pub async fn serve_requests(state: AppState) {
    loop {
        let subscribed = state
            .journal()
            .client()
            .queue_subscribe(UPLOAD_SUBJECT, QUEUE.to_owned())
            .await;
        let mut requests = match subscribed {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe to {UPLOAD_SUBJECT}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(msg) = requests.next().await {
            let Some(reply) = msg.reply.clone() else {
                continue;
            };
            let answer = match handle(&state, &msg.payload).await {
                Ok(upload) => serde_json::json!({ "upload_id": upload.to_string() }),
                Err(error) => serde_json::json!({ "error": error }),
            };
            let _ = state
                .journal()
                .client()
                .publish(reply, Bytes::from(answer.to_string()))
                .await;
        }
    }
}

async fn handle(state: &AppState, payload: &[u8]) -> Result<UploadId, String> {
    let req: UploadRequest =
        serde_json::from_slice(payload).map_err(|e| format!("invalid request: {e}"))?;
    let owner = state
        .tokens()
        .owner_of(&req.token)
        .await
        .map_err(|e| format!("token: {e}"))?
        .ok_or("token: unknown or revoked")?;
    let format = crate::uploads::parse_format(req.format.as_deref()).map_err(|e| e.message)?;
    let options = crate::uploads::read_options(
        req.encoding.clone(),
        req.bad_rows.as_deref(),
        req.max_bad_rows.as_deref(),
        req.columns.as_deref(),
        req.validator.as_deref(),
    )
    .map_err(|e| e.message)?;
    let (dataset, parent_version) =
        crate::uploads::version_target(req.dataset.as_deref(), req.parent_version)
            .map_err(|e| e.message)?;
    let upload = UploadId::new();
    let part = ObjectKey::part(upload, 1);
    let store = state.store();
    let (size, sha256, filename) = match (&req.key, &req.inline) {
        (Some(key), None) => {
            let incoming = ObjectKey::incoming(key).map_err(|e| format!("key: {e}"))?;
            if store
                .exists(&incoming)
                .await
                .map_err(|e| e.to_string())?
                .is_none()
            {
                return Err(format!("key: no object {key:?} in the store"));
            }
            store
                .rename(&incoming, &part)
                .await
                .map_err(|e| format!("key: {e}"))?;
            let d = store.digest(&part).await.map_err(|e| e.to_string())?;
            let name = req
                .filename
                .clone()
                .unwrap_or_else(|| key.rsplit('/').next().unwrap_or("upload").to_owned());
            (d.size, d.sha256, name)
        }
        (None, Some(text)) => {
            if text.len() > MAX_INLINE {
                return Err(format!(
                    "inline: {} bytes, over the {MAX_INLINE}-byte limit; put the file in the store and send its key",
                    text.len()
                ));
            }
            let bytes = Bytes::from(text.clone().into_bytes());
            let sha = Sha256(sha2::Sha256::digest(&bytes).into());
            store
                .put_bytes(&part, bytes.clone())
                .await
                .map_err(|e| e.to_string())?;
            (
                bytes.len() as u64,
                sha,
                req.filename.clone().unwrap_or_else(|| "inline".to_owned()),
            )
        }
        _ => return Err("give exactly one of key and inline".to_owned()),
    };
    let received = UploadReceived {
        owner: owner.clone(),
        filename: crate::uploads::clean_filename(Some(&filename)),
        content_type: req.content_type.filter(|c| !c.is_empty()),
        format,
        label: req.label.filter(|l| !l.is_empty()),
        table_name: req.table_name.filter(|t| !t.is_empty()),
        size,
        parts: vec![PartManifest {
            number: 1,
            size,
            sha256,
        }],
        dataset,
        parent_version,
        branch: None,
        options,
    };
    let envelope = Envelope::new(
        Aggregate::Upload(upload),
        owner,
        upload,
        None,
        Event::UploadReceived(received),
    );
    match state
        .journal()
        .append(&envelope, Expect::Empty)
        .await
        .map_err(|e| e.to_string())?
    {
        AppendOutcome::Appended { .. } => Ok(upload),
        AppendOutcome::WrongLastSequence => Err(format!("upload {upload} already exists")),
    }
}

/// Republishes every event appended from now on as JSON under [`JSON_PREFIX`].
pub async fn mirror_json(state: AppState) {
    loop {
        let follow = state
            .journal()
            .follow(Follow {
                filters: vec![Subject::all()],
                start: Start::New,
            })
            .await;
        match follow {
            Ok(events) => {
                let mut events = Box::pin(events);
                while let Some(item) = events.next().await {
                    let Ok(r) = item else { break };
                    let subject = r.subject.clone();
                    let tail = subject.split_once('.').map_or(subject.as_str(), |(_, t)| t);
                    let body = serde_json::json!({
                        "seq": r.seq,
                        "subject": subject,
                        "kind": r.envelope.kind().as_str(),
                        "stored_at": r.stored_at.to_string(),
                        "envelope": r.envelope,
                    });
                    let _ = state
                        .journal()
                        .client()
                        .publish(
                            format!("{JSON_PREFIX}.{tail}"),
                            Bytes::from(body.to_string()),
                        )
                        .await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "the JSON mirror cannot follow the log"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
