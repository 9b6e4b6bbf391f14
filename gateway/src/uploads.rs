//! Uploads: single-shot (`POST /v1/uploads`, the body is the file), the presigned
//! multipart flow (init → PUT each part → complete), abort, and the status view.
//!
//! Bodies are spooled to a scratch file while their size and sha256 are counted (memory
//! holds one chunk whatever the size), then written to the store; nothing reaches the
//! store until the body is complete and within its limit.

use std::path::{Path, PathBuf};

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use sha2::{Digest, Sha256 as Hasher};
use tokio::io::AsyncWriteExt;
use weir_events::{
    Aggregate, Envelope, Event, EventId, Format, ObjectKey, Owner, PartManifest, Sha256, Timestamp,
    UploadAborted, UploadId, UploadReceived, UploadStarted,
};
use weir_journal::{AppendOutcome, Expect};
use weir_services::producer::MAX_PARTS;

use crate::auth::{Caller, bearer, resolve};
use crate::presign::Grant;
use crate::views::{
    CompleteMultipart, ErrorBody, InitMultipart, MultipartSession, PartQuery, PartStored, PartUrl,
    SingleShotQuery, UploadView,
};
use crate::{ApiError, AppState};

/// An upload as its own history tells it: what the write side decides on.
#[derive(Debug, Clone)]
pub struct Session {
    pub owner: Owner,
    pub started: Option<(EventId, UploadStarted)>,
    pub received: Option<UploadReceived>,
    /// registered | failed | aborted
    pub terminal: Option<&'static str>,
    pub last_seq: u64,
    pub first_at: Timestamp,
    pub last_at: Timestamp,
}

pub async fn session(state: &AppState, upload: UploadId) -> Result<Option<Session>, ApiError> {
    let history = state.journal().history(&Aggregate::Upload(upload)).await?;
    let Some(first) = history.first() else {
        return Ok(None);
    };
    let mut s = Session {
        owner: first.envelope.actor.clone(),
        started: None,
        received: None,
        terminal: None,
        last_seq: 0,
        first_at: first.stored_at,
        last_at: first.stored_at,
    };
    for r in &history {
        s.last_seq = r.seq;
        s.last_at = r.stored_at;
        match &r.envelope.event {
            Event::UploadStarted(e) => {
                s.owner = e.owner.clone();
                s.started = Some((r.envelope.event_id, e.clone()));
            }
            Event::UploadReceived(e) => {
                s.owner = e.owner.clone();
                s.received = Some(e.clone());
            }
            Event::DatasetRegistered(_) => s.terminal = Some("registered"),
            Event::Failed(_) => s.terminal = Some("failed"),
            Event::UploadAborted(_) => s.terminal = Some("aborted"),
            _ => {}
        }
    }
    Ok(Some(s))
}

/// The caller's session, or 404 (another owner's upload does not exist for the caller).
async fn own_session(
    state: &AppState,
    caller: &Owner,
    upload: UploadId,
) -> Result<Session, ApiError> {
    match session(state, upload).await? {
        Some(s) if &s.owner == caller => Ok(s),
        _ => Err(ApiError::not_found(format!("no upload {upload}"))),
    }
}

pub fn parse_upload(id: &str) -> Result<UploadId, ApiError> {
    id.parse()
        .map_err(|_| ApiError::not_found(format!("no upload {id:?}")))
}

/// A status from the log alone, while the projection has not caught up (or for a
/// multipart session, which the projection does not show before it completes).
fn session_view(upload: UploadId, s: &Session) -> UploadView {
    let (filename, size, parts) = match (&s.received, &s.started) {
        (Some(r), _) => (
            r.filename.clone(),
            r.total_size(),
            r.all_parts().count() as u64,
        ),
        (None, Some((_, st))) => (st.filename.clone(), st.size, u64::from(st.part_count)),
        (None, None) => (String::new(), 0, 0),
    };
    let status = match (s.terminal, &s.received) {
        (Some(t), _) => t,
        (None, Some(_)) => "received",
        (None, None) => "receiving",
    };
    let phase = if status == "received" {
        "combining"
    } else {
        status
    };
    UploadView {
        id: upload.to_string(),
        owner: s.owner.to_string(),
        filename,
        label: s.received.as_ref().and_then(|r| r.label.clone()),
        requested_table: s.received.as_ref().and_then(|r| r.table_name.clone()),
        size_bytes: size,
        part_count: parts,
        status: status.into(),
        phase: phase.into(),
        dataset_id: None,
        version: None,
        table_name: None,
        failure: None,
        abort_reason: None,
        received_at: s.received.as_ref().map(|_| s.last_at.to_string()),
        updated_at: Some(s.last_at.to_string()),
        finished_at: s.terminal.map(|_| s.last_at.to_string()),
        steps: Vec::new(),
        last_seq: s.last_seq,
        quality: None,
    }
}

/// A scratch file removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

struct Spooled {
    file: Scratch,
    size: u64,
    sha256: Sha256,
}

/// Writes `body` to a scratch file in `dir`, refusing it as soon as it passes `limit`.
async fn spool(
    body: Body,
    dir: &Path,
    limit: u64,
    too_large: impl Fn() -> ApiError,
) -> Result<Spooled, ApiError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| ApiError::internal(format!("scratch folder {}: {e}", dir.display())))?;
    let scratch = Scratch(dir.join(format!("gateway-{}.body", UploadId::new())));
    let io = |e: std::io::Error| ApiError::internal(format!("scratch file: {e}"));
    let mut file = tokio::fs::File::create(&scratch.0).await.map_err(io)?;
    let mut hasher = Hasher::new();
    let mut size = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(too_large());
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    drop(file);
    Ok(Spooled {
        file: scratch,
        size,
        sha256: Sha256(hasher.finalize().into()),
    })
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// A whole-file upload's fields, each checked once (a 400 names the field that is not
/// right): what the single shot and the NATS request both ask for.
pub(crate) struct Asked {
    format: Option<Format>,
    options: weir_events::ReadOptions,
    pub(crate) dataset: Option<weir_events::DatasetId>,
    parent_version: Option<u32>,
    /// The file name given, checked (`weir_events::upload_filename`); `None`: not given.
    filename: Option<String>,
}

impl SingleShotQuery {
    pub(crate) fn check(&self) -> Result<Asked, ApiError> {
        let (dataset, parent_version) =
            version_target(self.dataset.as_deref(), self.parent_version)?;
        Ok(Asked {
            format: parse_format(self.format.as_deref())?,
            options: read_options(
                self.encoding.clone(),
                self.bad_rows.as_deref(),
                self.max_bad_rows.as_deref(),
                self.columns.as_deref(),
                self.validator.as_deref(),
            )?,
            dataset,
            parent_version,
            filename: checked_filename(self.filename.as_deref())?,
        })
    }

    /// The `UploadReceived` of a file stored as part 1 (`size` bytes, `sha256`), named
    /// `unnamed` when no file name was given.
    pub(crate) fn one_part(
        self,
        asked: Asked,
        owner: &weir_events::Owner,
        unnamed: &str,
        content_type: Option<String>,
        size: u64,
        sha256: weir_events::Sha256,
    ) -> UploadReceived {
        UploadReceived {
            owner: owner.clone(),
            filename: asked.filename.unwrap_or_else(|| unnamed.to_owned()),
            content_type: content_type.filter(|c| !c.is_empty()),
            format: asked.format,
            label: self.label.filter(|l| !l.is_empty()),
            table_name: self.table_name.filter(|t| !t.is_empty()),
            size,
            parts: vec![PartManifest {
                number: 1,
                size,
                sha256,
            }],
            dataset: asked.dataset,
            parent_version: asked.parent_version,
            branch: None,
            options: asked.options,
            more_files: Vec::new(),
        }
    }
}

/// Appends a new upload's `UploadReceived` (nothing may be on its subjects yet); the
/// stream sequence it got.
pub(crate) async fn append_received(
    state: &AppState,
    upload: UploadId,
    owner: weir_events::Owner,
    received: UploadReceived,
) -> Result<u64, ApiError> {
    let envelope = Envelope::new(
        Aggregate::Upload(upload),
        owner,
        upload,
        None,
        Event::UploadReceived(received),
    );
    match state.journal().append(&envelope, Expect::Empty).await? {
        AppendOutcome::Appended { seq, .. } => Ok(seq),
        AppendOutcome::WrongLastSequence => Err(ApiError::conflict(format!(
            "upload {upload} already exists"
        ))),
    }
}

/// The read options of an upload request, each refused with a 400 naming it.
pub(crate) fn read_options(
    encoding: Option<String>,
    bad_rows: Option<&str>,
    max_bad_rows: Option<&str>,
    columns: Option<&str>,
    validator: Option<&str>,
) -> Result<weir_events::ReadOptions, ApiError> {
    let validator = validator.filter(|v| !v.is_empty()).map(str::to_owned);
    if let Some(name) = &validator {
        weir_schemas::validators::by_name(name)
            .map_err(|e| ApiError::bad_request(format!("validator: {e}")))?;
    }
    let columns = columns
        .unwrap_or("")
        .split(';')
        .filter(|c| !c.trim().is_empty())
        .map(|c| {
            c.parse::<weir_events::ColumnOverride>()
                .map_err(|e| ApiError::bad_request(format!("columns: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let encoding = encoding.filter(|e| !e.is_empty());
    if let Some(label) = &encoding
        && weir_schemas_label_unknown(label)
    {
        return Err(ApiError::bad_request(format!(
            "encoding: unknown encoding {label:?}: use a WHATWG label such as utf-8, latin1, windows-1252, utf-16le"
        )));
    }
    let bad_rows = bad_rows
        .filter(|b| !b.is_empty())
        .map(|b| {
            b.parse()
                .map_err(|e: String| ApiError::bad_request(format!("bad_rows: {e}")))
        })
        .transpose()?;
    let max_bad_rows = max_bad_rows
        .filter(|m| !m.is_empty())
        .map(|m| {
            m.parse()
                .map_err(|e: String| ApiError::bad_request(format!("max_bad_rows: {e}")))
        })
        .transpose()?;
    Ok(weir_events::ReadOptions {
        encoding,
        bad_rows,
        max_bad_rows,
        columns,
        validator,
    })
}

/// The dataset a new version goes to, and its parent; 400 naming the field.
pub(crate) fn version_target(
    dataset: Option<&str>,
    parent: Option<u32>,
) -> Result<(Option<weir_events::DatasetId>, Option<u32>), ApiError> {
    let dataset = dataset
        .filter(|d| !d.is_empty())
        .map(|d| {
            d.parse::<weir_events::DatasetId>()
                .map_err(|e| ApiError::bad_request(format!("dataset: {e}")))
        })
        .transpose()?;
    if parent.is_some() && dataset.is_none() {
        return Err(ApiError::bad_request(
            "parent_version: only with dataset (a new version of an existing dataset)",
        ));
    }
    Ok((dataset, parent))
}

fn weir_schemas_label_unknown(label: &str) -> bool {
    encoding_rs::Encoding::for_label(label.trim().as_bytes()).is_none()
}

pub(crate) fn parse_format(format: Option<&str>) -> Result<Option<Format>, ApiError> {
    format
        .filter(|f| !f.is_empty())
        .map(|f| f.parse::<Format>().map_err(ApiError::bad_request))
        .transpose()
}

/// A file name given to the API, `None` when none was given; a 400 naming the field
/// when it has a control character or is too long (as `weir upload` refuses it).
pub(crate) fn checked_filename(name: Option<&str>) -> Result<Option<String>, ApiError> {
    name.filter(|n| !n.is_empty())
        .map(|n| weir_events::upload_filename(Some(n)).map_err(ApiError::bad_request))
        .transpose()
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Send an upload's whole body; it is stored as one part and the pipeline takes it.
#[utoipa::path(post, path = "/v1/uploads", tag = "uploads",
    params(SingleShotQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the file"),
    responses(
        (status = 202, description = "received; the pipeline takes it from here", body = UploadView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, description = "over the upload limit", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn single_shot(
    State(state): State<AppState>,
    Caller(owner): Caller,
    query: Result<Query<SingleShotQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = state.config().max_upload_bytes;
    receive_whole(state, owner, query, headers, body, limit).await
}

/// The most an inline dataset's body may be.
pub const MAX_INLINE_BYTES: u64 = 1 << 20;

/// An inline dataset: the body (at most 1 MiB) is the data, uploaded as a single shot
/// and followed like any upload (`GET /v1/uploads/{id}`).
#[utoipa::path(post, path = "/v1/datasets", tag = "datasets",
    params(SingleShotQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the data, at most 1 MiB"),
    responses(
        (status = 202, description = "received; the pipeline takes it from here", body = UploadView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, description = "over 1 MiB: use /v1/uploads", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn inline_dataset(
    State(state): State<AppState>,
    Caller(owner): Caller,
    query: Result<Query<SingleShotQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = MAX_INLINE_BYTES.min(state.config().max_upload_bytes);
    receive_whole(state, owner, query, headers, body, limit).await
}

async fn receive_whole(
    state: AppState,
    owner: weir_events::Owner,
    query: Result<Query<SingleShotQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
    limit: u64,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    if content_length(&headers).is_some_and(|n| n > limit) {
        return Err(ApiError::too_large(limit));
    }
    let asked = q.check()?;
    crate::datasets::may_upload(&state, &owner, asked.dataset).await?;
    let spooled = spool(body, &state.config().work_dir, limit, || {
        ApiError::too_large(limit)
    })
    .await?;
    let upload = UploadId::new();
    state
        .store()
        .upload_file(&spooled.file.0, &ObjectKey::part(upload, 1))
        .await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| *v != "application/octet-stream")
        .map(str::to_owned);
    let received = q.one_part(
        asked,
        &owner,
        "upload",
        content_type,
        spooled.size,
        spooled.sha256,
    );
    let seq = append_received(&state, upload, owner, received).await?;
    let view = current_view(&state, upload, seq).await?;
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}

/// The projection's view when it includes the event at `seq`, else the log's (the
/// projector may not have applied what this request just appended).
async fn current_view(
    state: &AppState,
    upload: UploadId,
    seq: u64,
) -> Result<UploadView, ApiError> {
    if let Some(s) = weir_projections::upload_status(state.db(), upload).await?
        && s.last_seq >= seq
    {
        return Ok(s.into());
    }
    match session(state, upload).await? {
        Some(s) => Ok(session_view(upload, &s)),
        None => Err(ApiError::not_found(format!("no upload {upload}"))),
    }
}

fn part_size(started: &UploadStarted, number: u32) -> u64 {
    if number < started.part_count {
        started.part_size
    } else {
        started
            .size
            .saturating_sub(started.part_size * u64::from(started.part_count.saturating_sub(1)))
    }
}

fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.config().public_url {
        return url.trim_end_matches('/').to_owned();
    }
    match headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        Some(host) => format!("http://{host}"),
        None => String::new(),
    }
}

/// Open a multipart upload: one presigned URL per part.
#[utoipa::path(post, path = "/v1/uploads/multipart", tag = "uploads",
    request_body = InitMultipart,
    responses(
        (status = 201, description = "session open; PUT each part to its URL", body = MultipartSession),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, description = "over the upload limit", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn init_multipart(
    State(state): State<AppState>,
    Caller(owner): Caller,
    headers: HeaderMap,
    body: Result<Json<InitMultipart>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(init) = body?;
    let filename = checked_filename(Some(&init.filename))?.unwrap_or_else(|| "upload".to_owned());
    let limit = state.config().max_upload_bytes;
    if init.size > limit {
        return Err(ApiError::too_large(limit));
    }
    let part_size = init.part_size.unwrap_or(state.config().default_part_size);
    if part_size == 0 || part_size > limit {
        return Err(ApiError::bad_request(format!(
            "part_size must be between 1 and {limit} bytes"
        )));
    }
    let part_count = init.size.div_ceil(part_size).max(1);
    if part_count > MAX_PARTS as u64 {
        return Err(ApiError::bad_request(format!(
            "{} bytes in parts of {part_size} would need {part_count} parts; at most {MAX_PARTS}: use a larger part_size",
            init.size
        )));
    }
    let part_count = part_count as u32;
    let expires = now_unix() + state.config().url_ttl.as_secs() as i64;
    let upload = UploadId::new();
    let started = UploadStarted {
        owner: owner.clone(),
        filename,
        size: init.size,
        part_size,
        part_count,
        expires_at: Timestamp(expires * 1_000_000),
    };
    let envelope = Envelope::new(
        Aggregate::Upload(upload),
        owner.clone(),
        upload,
        None,
        Event::UploadStarted(started.clone()),
    );
    if state.journal().append(&envelope, Expect::Empty).await? == AppendOutcome::WrongLastSequence {
        return Err(ApiError::conflict(format!(
            "upload {upload} already exists"
        )));
    }
    let base = base_url(&state, &headers);
    let parts = (1..=part_count)
        .map(|number| {
            let signature = Grant {
                method: "PUT",
                upload,
                part: number,
                owner: &owner,
                expires,
            }
            .sign(&state.config().signing_key);
            PartUrl {
                number,
                size: part_size_of(&started, number),
                url: format!(
                    "{base}/v1/uploads/{upload}/parts/{number}?owner={owner}&expires={expires}&signature={signature}"
                ),
            }
        })
        .collect();
    let session = MultipartSession {
        upload_id: upload.to_string(),
        part_size,
        part_count,
        expires_at: started.expires_at.to_string(),
        parts,
    };
    Ok((StatusCode::CREATED, Json(session)).into_response())
}

fn part_size_of(started: &UploadStarted, number: u32) -> u64 {
    part_size(started, number)
}

/// Upload one part to its presigned URL. Works once per part, before the expiry, for
/// exactly the part's size.
#[utoipa::path(put, path = "/v1/uploads/{id}/parts/{number}", tag = "uploads",
    params(("id" = String, Path, description = "upload id"), ("number" = u32, Path, description = "part number, 1-based"), PartQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the part's bytes"),
    responses(
        (status = 200, description = "stored; the ETag is the part's sha256", body = PartStored),
        (status = 400, description = "wrong size", body = ErrorBody),
        (status = 403, description = "signature missing, wrong, expired, replayed or for another owner", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 413, description = "larger than the part", body = ErrorBody)))]
pub async fn put_part(
    State(state): State<AppState>,
    UrlPath((id, number)): UrlPath<(String, String)>,
    query: Result<Query<PartQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Ok(Query(q)) = query else {
        return Err(ApiError::forbidden(
            "not a presigned part URL: owner, expires and signature are required",
        ));
    };
    let (Some(owner), Some(expires), Some(signature)) = (q.owner, q.expires, q.signature) else {
        return Err(ApiError::forbidden(
            "not a presigned part URL: owner, expires and signature are required",
        ));
    };
    let (Ok(upload), Ok(number), Ok(owner)) = (
        id.parse::<UploadId>(),
        number.parse::<u32>(),
        owner.parse::<Owner>(),
    ) else {
        return Err(ApiError::forbidden(
            "the part URL's signature does not match",
        ));
    };
    let grant = Grant {
        method: "PUT",
        upload,
        part: number,
        owner: &owner,
        expires,
    };
    if !grant.verify(&state.config().signing_key, &signature) {
        return Err(ApiError::forbidden(
            "the part URL's signature does not match",
        ));
    }
    if now_unix() > expires {
        return Err(ApiError::forbidden("the part URL has expired"));
    }
    // A token, when one comes along, must be the URL owner's.
    if let Some(token) = bearer_of(&headers) {
        match resolve(&state, &token).await {
            Ok(caller) if caller == owner => {}
            _ => return Err(ApiError::forbidden("the part URL belongs to another owner")),
        }
    }
    let Some(s) = session(&state, upload).await? else {
        return Err(ApiError::not_found(format!("no upload {upload}")));
    };
    if s.owner != owner {
        return Err(ApiError::forbidden("the part URL belongs to another owner"));
    }
    let Some((_, started)) = &s.started else {
        return Err(ApiError::forbidden(format!(
            "upload {upload} is not a multipart upload"
        )));
    };
    if s.received.is_some() || s.terminal.is_some() {
        return Err(ApiError::forbidden(format!(
            "upload {upload} is already {}; its part URLs no longer work",
            s.terminal.unwrap_or("complete")
        )));
    }
    if number == 0 || number > started.part_count {
        return Err(ApiError::forbidden(
            "the part URL's signature does not match",
        ));
    }
    let _in_flight = InFlight::claim(&state, upload, number)
        .ok_or_else(|| ApiError::forbidden(format!("part {number} is being uploaded already")))?;
    let key = ObjectKey::part(upload, number);
    if state.store().exists(&key).await?.is_some() {
        return Err(ApiError::forbidden(format!(
            "part {number} was uploaded already; a part URL works once"
        )));
    }
    let expected = part_size(started, number);
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("part {number} must be exactly {expected} bytes; the body is larger"),
        )
    };
    if content_length(&headers).is_some_and(|n| n > expected) {
        return Err(too_large());
    }
    let spooled = spool(body, &state.config().work_dir, expected, too_large).await?;
    if spooled.size != expected {
        return Err(ApiError::bad_request(format!(
            "part {number} must be exactly {expected} bytes; got {}",
            spooled.size
        )));
    }
    state.store().upload_file(&spooled.file.0, &key).await?;
    if let Ok(mut d) = state.inner_digests().lock() {
        d.insert((upload, number), spooled.sha256);
    }
    let etag = spooled.sha256.to_string();
    let mut response = Json(PartStored {
        number,
        size: spooled.size,
        sha256: etag.clone(),
    })
    .into_response();
    if let Ok(v) = format!("\"{etag}\"").parse() {
        response.headers_mut().insert(header::ETAG, v);
    }
    Ok(response)
}

fn bearer_of(headers: &HeaderMap) -> Option<String> {
    let mut parts = axum::http::Request::new(()).into_parts().0;
    parts.headers = headers.clone();
    bearer(&parts).map(str::to_owned)
}

/// Marks a part as being written; released on drop.
struct InFlight {
    state: AppState,
    key: (UploadId, u32),
}

impl InFlight {
    fn claim(state: &AppState, upload: UploadId, number: u32) -> Option<Self> {
        let mut set = state.inner_in_flight().lock().ok()?;
        set.insert((upload, number)).then(|| Self {
            state: state.clone(),
            key: (upload, number),
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut set) = self.state.inner_in_flight().lock() {
            set.remove(&self.key);
        }
    }
}

/// Complete a multipart upload with its parts list: appends `UploadReceived`.
#[utoipa::path(post, path = "/v1/uploads/{id}/complete", tag = "uploads",
    params(("id" = String, Path, description = "upload id")),
    request_body = CompleteMultipart,
    responses(
        (status = 202, description = "received; the pipeline takes it from here", body = UploadView),
        (status = 400, description = "parts list missing, misordered, or not matching what was stored", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "already completed or aborted", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn complete(
    State(state): State<AppState>,
    Caller(owner): Caller,
    UrlPath(id): UrlPath<String>,
    body: Result<Json<CompleteMultipart>, JsonRejection>,
) -> Result<Response, ApiError> {
    let upload = parse_upload(&id)?;
    let s = own_session(&state, &owner, upload).await?;
    let Json(request) = body?;
    let Some((started_id, started)) = &s.started else {
        return Err(ApiError::conflict(format!(
            "upload {upload} is not a multipart upload"
        )));
    };
    if s.received.is_some() || s.terminal.is_some() {
        return Err(ApiError::conflict(format!(
            "upload {upload} is already {}",
            s.terminal.unwrap_or("complete")
        )));
    }
    let format = parse_format(request.format.as_deref())?;
    let options = read_options(
        request.encoding.clone(),
        request.bad_rows.as_deref(),
        request.max_bad_rows.as_deref(),
        request.columns.as_deref(),
        request.validator.as_deref(),
    )?;
    let (dataset, parent_version) =
        version_target(request.dataset.as_deref(), request.parent_version)?;
    crate::datasets::may_upload(&state, &owner, dataset).await?;
    let listed = request.parts.unwrap_or_default();
    if listed.is_empty() {
        return Err(ApiError::bad_request("the parts list is missing"));
    }
    if listed.len() != started.part_count as usize {
        return Err(ApiError::bad_request(format!(
            "the parts list has {} parts; the upload has {}",
            listed.len(),
            started.part_count
        )));
    }
    let mut manifest = Vec::with_capacity(listed.len());
    for (i, part) in listed.iter().enumerate() {
        let want = i as u32 + 1;
        if part.number != want {
            return Err(ApiError::bad_request(format!(
                "the parts list is out of order: position {want} names part {}",
                part.number
            )));
        }
        let sha256: Sha256 = part.etag.trim().trim_matches('"').parse().map_err(|_| {
            ApiError::bad_request(format!(
                "part {want}: {:?} is not an ETag this gateway issued",
                part.etag
            ))
        })?;
        let size = part_size(started, want);
        match state.store().exists(&ObjectKey::part(upload, want)).await? {
            Some(stored) if stored == size => {}
            Some(stored) => {
                return Err(ApiError::bad_request(format!(
                    "part {want} holds {stored} bytes; it must hold {size}"
                )));
            }
            None => {
                return Err(ApiError::bad_request(format!(
                    "part {want} was not uploaded"
                )));
            }
        }
        let known = state
            .inner_digests()
            .lock()
            .ok()
            .and_then(|d| d.get(&(upload, want)).copied());
        if known.is_some_and(|k| k != sha256) {
            return Err(ApiError::bad_request(format!(
                "part {want}: the ETag does not match the part that was stored"
            )));
        }
        manifest.push(PartManifest {
            number: want,
            size,
            sha256,
        });
    }
    let received = UploadReceived {
        owner: owner.clone(),
        filename: started.filename.clone(),
        content_type: request.content_type.filter(|c| !c.is_empty()),
        format,
        label: request.label.filter(|l| !l.is_empty()),
        table_name: request.table_name.filter(|t| !t.is_empty()),
        size: started.size,
        parts: manifest,
        dataset,
        parent_version,
        branch: None,
        options,
        more_files: Vec::new(),
    };
    // Caused by the session's start: a retried complete has the same message id.
    let envelope = Envelope::new(
        Aggregate::Upload(upload),
        owner,
        upload,
        Some(*started_id),
        Event::UploadReceived(received),
    );
    let seq = match state
        .journal()
        .append(&envelope, Expect::LastSequence(s.last_seq))
        .await?
    {
        AppendOutcome::Appended { seq, .. } => seq,
        AppendOutcome::WrongLastSequence => {
            return Err(ApiError::conflict(format!(
                "upload {upload} changed meanwhile; read its status"
            )));
        }
    };
    if let Ok(mut d) = state.inner_digests().lock() {
        d.retain(|(u, _), _| *u != upload);
    }
    let view = current_view(&state, upload, seq).await?;
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}

/// Abort an upload that has not finished: its parts are removed and `UploadAborted`
/// appended.
#[utoipa::path(delete, path = "/v1/uploads/{id}", tag = "uploads",
    params(("id" = String, Path, description = "upload id")),
    responses(
        (status = 200, description = "aborted", body = UploadView),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "already registered, failed or aborted", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn abort(
    State(state): State<AppState>,
    Caller(owner): Caller,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<UploadView>, ApiError> {
    let upload = parse_upload(&id)?;
    let s = own_session(&state, &owner, upload).await?;
    if let Some(t) = s.terminal {
        return Err(ApiError::conflict(format!(
            "upload {upload} is already {t}"
        )));
    }
    let parts = state.store().list_parts(upload).await?;
    let envelope = Envelope::new(
        Aggregate::Upload(upload),
        owner,
        upload,
        None,
        Event::UploadAborted(UploadAborted {
            reason: "aborted by the owner".into(),
            parts_removed: parts.len() as u32,
        }),
    );
    let seq = match state
        .journal()
        .append(&envelope, Expect::LastSequence(s.last_seq))
        .await?
    {
        AppendOutcome::Appended { seq, .. } => seq,
        AppendOutcome::WrongLastSequence => {
            return Err(ApiError::conflict(format!(
                "upload {upload} changed meanwhile; read its status and try again"
            )));
        }
    };
    for key in &parts {
        state.store().delete(key).await?;
    }
    Ok(Json(current_view(&state, upload, seq).await?))
}

/// An upload's status with its step log and failure reason.
#[utoipa::path(get, path = "/v1/uploads/{id}", tag = "uploads",
    params(("id" = String, Path, description = "upload id")),
    responses(
        (status = 200, body = UploadView),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_upload(
    State(state): State<AppState>,
    Caller(owner): Caller,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<UploadView>, ApiError> {
    let upload = parse_upload(&id)?;
    if let Some(s) = weir_projections::upload_status(state.db(), upload).await? {
        if s.owner != owner.as_str() {
            return Err(ApiError::not_found(format!("no upload {upload}")));
        }
        return Ok(Json(s.into()));
    }
    let s = own_session(&state, &owner, upload).await?;
    Ok(Json(session_view(upload, &s)))
}
