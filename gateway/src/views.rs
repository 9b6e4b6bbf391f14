//! The API's request and response bodies. They mirror the projections' query structs
//! but are the HTTP contract: what `/openapi.json` describes and clients rely on, so a
//! change in a read model does not silently change the API.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    /// The event log's last stream sequence.
    pub last_seq: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FailureView {
    pub step: String,
    pub reason: String,
    pub attempts: u32,
    pub retryable: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StepView {
    pub step: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    /// ok | failed | aborted; null while the step runs.
    pub outcome: Option<String>,
    pub duration_ms: Option<u64>,
}

/// How an upload's rows were read and where every row went:
/// `rows_read == rows_registered + rejected`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QualityView {
    /// The text encoding read (`UTF-8`, `windows-1252`, …); empty for Parquet.
    pub encoding: String,
    /// True when weir detected the encoding, false when the producer named it.
    pub encoding_detected: bool,
    /// The bad-row policy applied: fail, reject or pad.
    pub bad_rows: Option<String>,
    pub rows_read: u64,
    pub rows_registered: u64,
    pub rejected: u64,
    /// Bad rows in all: rejected, or padded/widened under `pad`.
    pub problem_count: u64,
    /// The first bad rows.
    pub problems: Vec<ProblemView>,
    /// Where the rejects file is (NDJSON: line, raw text, reason per row).
    pub rejects_location: Option<String>,
    pub rejects_entries: u64,
    /// The content validator's report: `{"validator", "records", "statistics"}`.
    #[schema(value_type = Option<Object>)]
    pub validation: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProblemView {
    pub line: u64,
    pub column: Option<String>,
    pub message: String,
}

impl QualityView {
    pub fn new(q: weir_projections::QualityView, location: impl Fn(&str) -> String) -> Self {
        Self {
            rejects_location: q.rejects.as_deref().map(&location),
            encoding: q.encoding,
            encoding_detected: q.encoding_detected,
            bad_rows: q.bad_rows,
            rows_read: q.rows_read,
            rows_registered: q.rows_registered,
            rejected: q.rejected,
            problem_count: q.problem_count,
            problems: q
                .problems
                .into_iter()
                .map(|p| ProblemView {
                    line: p.line,
                    column: p.column,
                    message: p.message,
                })
                .collect(),
            rejects_entries: q.rejects_entries,
            validation: q
                .validation
                .as_deref()
                .and_then(|v| serde_json::from_str(v).ok()),
        }
    }
}

/// An upload's status: `started` (multipart session open), then the pipeline's
/// received → combined → inferred → registered | failed | aborted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UploadView {
    pub id: String,
    pub owner: String,
    pub filename: String,
    pub label: Option<String>,
    pub requested_table: Option<String>,
    pub size_bytes: u64,
    pub part_count: u64,
    pub status: String,
    /// What is under way: combining, inferring, registering, or the status itself.
    pub phase: String,
    pub dataset_id: Option<String>,
    pub version: Option<u32>,
    pub table_name: Option<String>,
    pub failure: Option<FailureView>,
    pub abort_reason: Option<String>,
    pub received_at: Option<String>,
    pub updated_at: Option<String>,
    pub finished_at: Option<String>,
    pub steps: Vec<StepView>,
    pub last_seq: u64,
    /// Encoding, bad rows and the rejects file, once the upload was inferred.
    pub quality: Option<QualityView>,
}

impl From<weir_projections::UploadStatus> for UploadView {
    fn from(s: weir_projections::UploadStatus) -> Self {
        Self {
            quality: s.quality.map(|q| QualityView::new(q, |k| k.to_owned())),
            id: s.id,
            owner: s.owner,
            filename: s.filename,
            label: s.label,
            requested_table: s.requested_table,
            size_bytes: s.size_bytes,
            part_count: s.part_count,
            status: s.status,
            phase: s.phase,
            dataset_id: s.dataset_id,
            version: s.version,
            table_name: s.table_name,
            failure: s.failure.map(|f| FailureView {
                step: f.step,
                reason: f.reason,
                attempts: f.attempts,
                retryable: f.retryable,
            }),
            abort_reason: s.abort_reason,
            received_at: Some(s.received_at.to_string()),
            updated_at: Some(s.updated_at.to_string()),
            finished_at: s.finished_at.map(|t| t.to_string()),
            steps: s
                .steps
                .into_iter()
                .map(|st| StepView {
                    step: st.step,
                    started_at: st.started_at.to_string(),
                    ended_at: st.ended_at.map(|t| t.to_string()),
                    outcome: st.outcome,
                    duration_ms: st.duration_ms,
                })
                .collect(),
            last_seq: s.last_seq,
        }
    }
}

/// Query of the single-shot upload: the body is the file.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SingleShotQuery {
    /// The file's name (no directories); defaults to `upload`.
    pub filename: Option<String>,
    pub label: Option<String>,
    /// The table name to register.
    pub table_name: Option<String>,
    /// csv, tsv, ndjson, json or parquet; the content has the last word.
    pub format: Option<String>,
    /// The text encoding by WHATWG label (latin1, windows-1252, utf-16le, …); default:
    /// detected.
    pub encoding: Option<String>,
    /// fail, reject or pad; default: fail with a table_name, reject without.
    pub bad_rows: Option<String>,
    /// More bad rows fails the upload: a count (100) or a share (0.5%).
    pub max_bad_rows: Option<String>,
    /// Add a version to this dataset (yours) instead of creating one.
    pub dataset: Option<String>,
    /// With `dataset`: the version the new one derives from; default: the head.
    pub parent_version: Option<u32>,
    /// Column type overrides (CSV/TSV), `amount=decimal(12,2);zip=utf8`.
    pub columns: Option<String>,
    /// A content validator: `conversation-jsonl`.
    pub validator: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct InitMultipart {
    pub filename: String,
    /// Total bytes of the file.
    pub size: u64,
    /// Bytes per part (the last one may be shorter); default 8 MiB.
    pub part_size: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PartUrl {
    pub number: u32,
    /// Exactly this many bytes must be PUT to `url`.
    pub size: u64,
    /// Presigned: works without a token until `expires_at`, once.
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MultipartSession {
    pub upload_id: String,
    pub part_size: u64,
    pub part_count: u32,
    pub expires_at: String,
    pub parts: Vec<PartUrl>,
}

/// The signature that makes a part URL presigned.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PartQuery {
    pub owner: Option<String>,
    /// Unix seconds.
    pub expires: Option<i64>,
    /// Hex HMAC-SHA256 over method, upload id, part number, owner and expiry.
    pub signature: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PartStored {
    pub number: u32,
    pub size: u64,
    /// Hex sha256 of the part; also the response's ETag.
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CompletedPart {
    pub number: u32,
    /// The ETag the part's PUT returned (hex sha256, quotes allowed).
    pub etag: String,
}

/// Completes a multipart upload. Label, table name and format are given here: they
/// travel in `UploadReceived`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CompleteMultipart {
    /// Every part, in order 1..=part_count.
    pub parts: Option<Vec<CompletedPart>>,
    pub label: Option<String>,
    pub table_name: Option<String>,
    pub format: Option<String>,
    pub content_type: Option<String>,
    /// The text encoding by WHATWG label (latin1, windows-1252, utf-16le, …); default:
    /// detected.
    pub encoding: Option<String>,
    /// fail, reject or pad; default: fail with a table_name, reject without.
    pub bad_rows: Option<String>,
    /// More bad rows fails the upload: a count (100) or a share (0.5%).
    pub max_bad_rows: Option<String>,
    /// Add a version to this dataset (yours) instead of creating one.
    pub dataset: Option<String>,
    /// With `dataset`: the version the new one derives from; default: the head.
    pub parent_version: Option<u32>,
    /// Column type overrides (CSV/TSV), `amount=decimal(12,2);zip=utf8`.
    pub columns: Option<String>,
    /// A content validator: `conversation-jsonl`.
    pub validator: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DatasetListQuery {
    /// active (default), deleted or all
    pub status: Option<String>,
    /// Case-insensitive substring of the label or table name.
    pub search: Option<String>,
    /// 1..=1000, default 50.
    pub limit: Option<u32>,
    pub offset: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DatasetSummaryView {
    pub id: String,
    pub label: Option<String>,
    pub table_name: String,
    pub current_version: u32,
    pub row_count: u64,
    pub size_bytes: u64,
    pub created_at: String,
    pub updated_at: String,
    pub deleted_at: Option<String>,
    /// registered or deleted
    pub status: String,
    /// The current version's bad rows (the dashboard's warning badge).
    pub quality: Option<QualityView>,
    #[serde(default)]
    pub owner: String,
    /// Another owner's dataset shared with the caller: the level granted (`read`,
    /// `write`, `admin`); absent for the caller's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<String>,
}

impl From<weir_projections::DatasetSummary> for DatasetSummaryView {
    fn from(d: weir_projections::DatasetSummary) -> Self {
        Self {
            quality: d.quality.map(|q| QualityView::new(q, |k| k.to_owned())),
            status: if d.deleted_at.is_some() {
                "deleted"
            } else {
                "registered"
            }
            .into(),
            id: d.id,
            label: d.label,
            table_name: d.table_name,
            current_version: d.current_version,
            row_count: d.row_count,
            size_bytes: d.size_bytes,
            created_at: d.created_at.to_string(),
            updated_at: d.updated_at.to_string(),
            deleted_at: d.deleted_at.map(|t| t.to_string()),
            owner: d.owner,
            shared: d.shared,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DatasetPageView {
    pub total: u64,
    pub limit: u32,
    pub offset: u32,
    pub datasets: Vec<DatasetSummaryView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FieldSchema {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
    pub original_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionView {
    pub version: u32,
    pub parent_version: Option<u32>,
    pub upload_id: String,
    pub row_count: u64,
    pub size_bytes: u64,
    pub registered_at: String,
    pub location: String,
    pub fields: Vec<FieldSchema>,
    /// Rows, and per column nulls and min/max.
    #[schema(value_type = Object)]
    pub statistics: serde_json::Value,
    /// This version's encoding, bad rows and rejects file.
    pub quality: Option<QualityView>,
    /// How its schema differs from its parent's (added, removed, type_changes).
    #[schema(value_type = Option<Object>)]
    pub schema_diff: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DatasetView {
    pub id: String,
    pub label: Option<String>,
    pub table_name: String,
    pub status: String,
    pub current_version: u32,
    pub row_count: u64,
    pub size_bytes: u64,
    /// Where the current version's Parquet file is.
    pub location: String,
    pub fields: Vec<FieldSchema>,
    #[schema(value_type = Object)]
    pub statistics: serde_json::Value,
    pub created_at: String,
    pub updated_at: String,
    pub deleted_at: Option<String>,
    /// The current version's encoding, bad rows and rejects file.
    pub quality: Option<QualityView>,
    /// Branches other than main (`current_version` is main's head) and tags:
    /// `{"branches": {"dev": 3}, "tags": {"q3-final": 2}}`.
    #[schema(value_type = Object)]
    pub refs: serde_json::Value,
    pub versions: Vec<VersionView>,
    #[serde(default)]
    pub owner: String,
    /// The caller's access: `owner`, `admin`, `write` or `read`.
    #[serde(default)]
    pub access: String,
}

/// `PUT /v1/datasets/{id}/grants/{owner}`: the level to give.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GrantRequest {
    /// `read`, `write` or `admin`.
    pub level: String,
}

/// One owner's access to a dataset besides its owner.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GrantView {
    pub grantee: String,
    /// `read`, `write` or `admin`.
    pub level: String,
    pub granted_by: String,
    pub granted_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GrantList {
    pub dataset_id: String,
    pub owner: String,
    pub grants: Vec<GrantView>,
}

/// What a grant or revoke did: the event appended (none when nothing changed).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GrantChange {
    pub dataset_id: String,
    pub grantee: String,
    /// The level now held; absent after a revoke.
    pub level: Option<String>,
    pub appended: Vec<String>,
}

pub fn fields(schema: &weir_projections::SchemaView) -> Vec<FieldSchema> {
    schema
        .fields
        .iter()
        .map(|f| FieldSchema {
            name: f.name.clone(),
            data_type: f.data_type.clone(),
            nullable: f.nullable,
            original_name: f.original_name.clone(),
        })
        .collect()
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DatasetUpdate {
    /// A new label; an empty string clears it.
    pub label: Option<String>,
    /// A new table name: claimed for the owner, the old one released.
    pub table_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DatasetChange {
    pub id: String,
    /// The events appended, in order, by kind.
    pub appended: Vec<String>,
    pub label: Option<String>,
    pub table_name: String,
    pub deleted: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PreviewQuery {
    /// Rows to return, 1..=1000, default 20.
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Preview {
    pub columns: Vec<String>,
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationQuery {
    /// Only unread ones.
    pub unread: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NotificationView {
    pub id: String,
    /// dataset_ready | upload_failed
    pub kind: String,
    pub upload_id: String,
    pub dataset_id: Option<String>,
    pub message: String,
    pub created_at: String,
    pub read: bool,
    pub read_at: Option<String>,
    pub seq: u64,
}

impl From<weir_projections::Notification> for NotificationView {
    fn from(n: weir_projections::Notification) -> Self {
        Self {
            id: n.id,
            kind: n.kind,
            upload_id: n.upload_id,
            dataset_id: n.dataset_id,
            message: n.message,
            created_at: n.created_at.to_string(),
            read: n.read,
            read_at: n.read_at.map(|t| t.to_string()),
            seq: n.seq,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NotificationList {
    pub notifications: Vec<NotificationView>,
    pub unread: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MarkedRead {
    pub id: String,
    pub read: bool,
    /// The stream sequence of the `NotificationRead` event.
    pub seq: u64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Start after this stream sequence (the `Last-Event-ID` header wins).
    pub after: Option<u64>,
    /// The token, for clients that cannot set headers (EventSource).
    pub access_token: Option<String>,
}

/// One event as the SSE stream sends it (`data:`); the SSE `id` is `seq`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    pub seq: u64,
    pub kind: String,
    pub subject: String,
    pub event_id: String,
    pub correlation_id: String,
    pub occurred_at: String,
    pub stored_at: String,
    pub summary: String,
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
}
