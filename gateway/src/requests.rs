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
use weir_events::{ObjectKey, Sha256, Subject, UploadId};
use weir_journal::{Follow, Start};

use crate::AppState;
use crate::views::SingleShotQuery;

/// Where producers send upload requests.
pub const UPLOAD_SUBJECT: &str = "weir-requests.upload";
/// The queue group that shares requests between gateway instances.
const QUEUE: &str = "weir-requests";
/// Prefix of the JSON mirror's subjects.
pub const JSON_PREFIX: &str = "weir-json";
/// An inline body may be at most this large.
const MAX_INLINE: usize = 1 << 20;

#[derive(Debug, Deserialize)]
struct UploadRequest {
    /// An API token (`weir tokens create OWNER`): the upload is the token's owner's.
    token: String,
    /// A key under `incoming/` in the object store, written by the producer.
    key: Option<String>,
    /// Or the file's content itself, as text (at most 1 MiB).
    inline: Option<String>,
    content_type: Option<String>,
    /// What the single shot's query takes: filename, label, table_name, format,
    /// encoding, bad_rows, max_bad_rows, columns, validator, dataset, parent_version.
    #[serde(flatten)]
    fields: SingleShotQuery,
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
    let asked = req.fields.check().map_err(|e| e.message)?;
    crate::datasets::may_upload(state, &owner, asked.dataset)
        .await
        .map_err(|e| e.message)?;
    let upload = UploadId::new();
    let part = ObjectKey::part(upload, 1);
    let store = state.store();
    let (size, sha256, unnamed) = match (&req.key, &req.inline) {
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
            // Read once here; the combiner checks the manifest against this record.
            let d = store
                .digest_and_record(&part)
                .await
                .map_err(|e| e.to_string())?;
            let name = key.rsplit('/').next().unwrap_or("upload").to_owned();
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
            (bytes.len() as u64, sha, "inline".to_owned())
        }
        _ => return Err("give exactly one of key and inline".to_owned()),
    };
    // The name given (checked with the other fields, before anything is stored), else
    // the key's last segment or `inline`.
    let received = req
        .fields
        .one_part(asked, &owner, &unnamed, req.content_type, size, sha256);
    crate::uploads::append_received(state, upload, owner, received)
        .await
        .map_err(|e| e.message)?;
    Ok(upload)
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
