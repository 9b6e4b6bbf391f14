//! Applying one recorded event to the projection tables: the whole meaning of every
//! event for the catalog, upload status, notifications, audit and table names.
//!
//! [`apply`] is deterministic: everything it writes comes from the recorded event (its
//! stream sequence, the server's `stored_at`, the envelope) and from rows earlier
//! events wrote. No clock, no network, no randomness, so a replay writes the same rows.
//! It does not commit: the projector runs it inside the transaction that also moves
//! the checkpoint.

use serde::Serialize;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Row};
use weir_events::{Aggregate, DatasetId, Envelope, Event, EventId, Owner, Schema, Step, UploadId};
use weir_journal::Recorded;

use crate::Error;
use crate::schema::Tables;

/// A statement for `tables`.
fn q(tables: Tables, template: &'static str) -> Query<'static, Any, AnyArguments> {
    sqlx::query(tables.sql(template))
}

/// Counts and sizes are `u64` in events and BIGINT in SQL; nothing real comes near
/// the limit, so saturate rather than fail.
pub(crate) fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn flag(b: bool) -> i64 {
    i64::from(b)
}

/// The upload an event belongs to: its aggregate when that is an upload, otherwise the
/// upload the chain started from.
fn upload_of(env: &Envelope) -> UploadId {
    match &env.aggregate {
        Aggregate::Upload(id) => *id,
        _ => env.correlation_id,
    }
}

/// The dataset an event touches, if any.
fn dataset_of(env: &Envelope) -> Option<DatasetId> {
    match &env.event {
        Event::UploadReceived(e) => e.dataset,
        Event::SchemaInferred(e) => Some(e.dataset),
        Event::DatasetRegistered(e) => Some(e.dataset),
        Event::TableNameClaimed(e) => Some(e.dataset),
        Event::TableNameReleased(e) => Some(e.dataset),
        Event::PartsCombined(_)
        | Event::Failed(_)
        | Event::UploadAborted(_)
        | Event::Compensated(_)
        | Event::UploadStarted(_)
        | Event::NotificationRead(_)
        | Event::DatasetLabelChanged(_)
        | Event::DatasetRenamed(_)
        | Event::DatasetDeleted(_)
        | Event::DatasetRestored(_)
        | Event::TokenCreated(_)
        | Event::TokenRevoked(_) => match &env.aggregate {
            Aggregate::Dataset(id) => Some(*id),
            _ => None,
        },
    }
}

/// `upload:upld_…`, `dataset:data_…` or `name:orders@acme`.
pub(crate) fn aggregate_text(aggregate: &Aggregate) -> String {
    match aggregate {
        Aggregate::Upload(id) => format!("upload:{id}"),
        Aggregate::Dataset(id) => format!("dataset:{id}"),
        Aggregate::Name { owner, table } => format!("name:{table}@{owner}"),
        Aggregate::Owner(owner) => format!("owner:{owner}"),
    }
}

/// Free text from an event made fit for a one-line summary.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A schema as stored in `schema_json`: `{"fields": [{"name", "type", …}]}`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SchemaView {
    pub fields: Vec<FieldView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct FieldView {
    pub name: String,
    /// The Arrow type name, e.g. `Int64` or `Timestamp(µs, "UTC")`.
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
    /// The column's name in the source file when it was sanitised or de-duplicated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_name: Option<String>,
}

impl From<&Schema> for SchemaView {
    fn from(schema: &Schema) -> Self {
        Self {
            fields: schema
                .fields
                .iter()
                .map(|f| FieldView {
                    name: f.name.clone(),
                    data_type: f.data_type.clone(),
                    nullable: f.nullable,
                    original_name: f.original_name.clone(),
                })
                .collect(),
        }
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<String, Error> {
    serde_json::to_string(value).map_err(Error::Json)
}

/// Applies `rec` to the tables of `tables` through `conn` (an open transaction).
pub async fn apply(conn: &mut AnyConnection, tables: Tables, rec: &Recorded) -> Result<(), Error> {
    let env = &rec.envelope;
    let seq = int(rec.seq);
    let at = rec.stored_at.0;
    let upload = upload_of(env).to_string();

    q(
        tables,
        "INSERT INTO audit{s} (seq, event_id, stored_at, occurred_at, kind, actor, \
         causation_id, correlation_id, aggregate, dataset_id, summary) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(seq)
    .bind(env.event_id.to_string())
    .bind(at)
    .bind(env.occurred_at.0)
    .bind(env.kind().as_str())
    .bind(env.actor.to_string())
    .bind(env.causation_id.map(|c| c.to_string()))
    .bind(env.correlation_id.to_string())
    .bind(aggregate_text(&env.aggregate))
    .bind(dataset_of(env).map(|d| d.to_string()))
    .bind(env.event.summary())
    .execute(&mut *conn)
    .await?;

    match &env.event {
        Event::UploadStarted(e) => {
            q(
                tables,
                "INSERT INTO uploads{s} (id, owner, filename, size_bytes, part_count, status, \
                 received_at, updated_at, last_seq) \
                 VALUES ($1, $2, $3, $4, $5, 'receiving', $6, $6, $7) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(&upload)
            .bind(e.owner.to_string())
            .bind(&e.filename)
            .bind(int(e.size))
            .bind(i64::from(e.part_count))
            .bind(at)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
            start_step(conn, tables, &upload, Step::Upload, at, seq).await?;
        }
        Event::UploadReceived(e) => {
            // A multipart upload already has its row from UploadStarted; the received
            // manifest is the truth about its parts and size.
            q(
                tables,
                "INSERT INTO uploads{s} (id, owner, filename, label, requested_table, \
                 content_type, declared_format, size_bytes, part_count, target_dataset, \
                 status, dataset_id, received_at, updated_at, last_seq) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'received', $10, $11, $11, $12) \
                 ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, \
                 filename = excluded.filename, label = excluded.label, \
                 requested_table = excluded.requested_table, \
                 content_type = excluded.content_type, \
                 declared_format = excluded.declared_format, size_bytes = excluded.size_bytes, \
                 part_count = excluded.part_count, target_dataset = excluded.target_dataset, \
                 status = excluded.status, dataset_id = excluded.dataset_id, \
                 updated_at = excluded.updated_at, last_seq = excluded.last_seq",
            )
            .bind(&upload)
            .bind(e.owner.to_string())
            .bind(&e.filename)
            .bind(e.label.clone())
            .bind(e.table_name.clone())
            .bind(e.content_type.clone())
            .bind(e.format.map(|f| f.as_str().to_owned()))
            .bind(int(e.size))
            .bind(int(e.parts.len() as u64))
            .bind(e.dataset.map(|d| d.to_string()))
            .bind(at)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
            end_step(conn, tables, &upload, Step::Upload, "ok", at, seq).await?;
            start_step(conn, tables, &upload, Step::Combine, at, seq).await?;
        }
        Event::PartsCombined(e) => {
            q(
                tables,
                "UPDATE uploads{s} SET status = 'combined', blob_key = $2, deduplicated = $3, \
                 updated_at = $4, last_seq = $5 WHERE id = $1",
            )
            .bind(&upload)
            .bind(e.blob.to_string())
            .bind(flag(e.deduplicated))
            .bind(at)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
            end_step(conn, tables, &upload, Step::Combine, "ok", at, seq).await?;
            start_step(conn, tables, &upload, Step::Infer, at, seq).await?;
        }
        Event::SchemaInferred(e) => {
            q(
                tables,
                "UPDATE uploads{s} SET status = 'inferred', dataset_id = $2, version = $3, \
                 format = $4, compression = $5, problem_count = $6, updated_at = $7, \
                 last_seq = $8 WHERE id = $1",
            )
            .bind(&upload)
            .bind(e.dataset.to_string())
            .bind(i64::from(e.version))
            .bind(e.format.as_str())
            .bind(compression_text(e.compression))
            .bind(int(e.problem_count))
            .bind(at)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
            end_step(conn, tables, &upload, Step::Infer, "ok", at, seq).await?;
            start_step(conn, tables, &upload, Step::Register, at, seq).await?;
        }
        Event::DatasetRegistered(e) => {
            let dataset = e.dataset.to_string();
            let schema = to_json(&SchemaView::from(&e.schema))?;
            let statistics = to_json(&e.statistics)?;
            q(
                tables,
                "UPDATE uploads{s} SET status = 'registered', dataset_id = $2, version = $3, \
                 table_name = $4, updated_at = $5, finished_at = $5, last_seq = $6 WHERE id = $1",
            )
            .bind(&upload)
            .bind(&dataset)
            .bind(i64::from(e.version))
            .bind(e.table_name.to_string())
            .bind(at)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
            end_step(conn, tables, &upload, Step::Register, "ok", at, seq).await?;
            q(
                tables,
                "INSERT INTO datasets{s} (id, owner, label, table_name, current_version, \
                 schema_json, row_count, size_bytes, parquet_key, created_at, updated_at, \
                 deleted_at, last_seq) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, NULL, $11) \
                 ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, \
                 label = excluded.label, table_name = excluded.table_name, \
                 current_version = excluded.current_version, \
                 schema_json = excluded.schema_json, row_count = excluded.row_count, \
                 size_bytes = excluded.size_bytes, parquet_key = excluded.parquet_key, \
                 updated_at = excluded.updated_at, last_seq = excluded.last_seq",
            )
            .bind(&dataset)
            .bind(e.owner.to_string())
            .bind(e.label.clone())
            .bind(e.table_name.to_string())
            .bind(i64::from(e.version))
            .bind(&schema)
            .bind(int(e.statistics.rows))
            .bind(int(e.parquet_size))
            .bind(e.parquet.to_string())
            .bind(at)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
            q(
                tables,
                "INSERT INTO dataset_versions{s} (dataset_id, version, parent_version, \
                 schema_json, statistics_json, upload_id, parquet_key, size_bytes, row_count, \
                 registered_at, seq) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (dataset_id, version) DO UPDATE SET \
                 parent_version = excluded.parent_version, schema_json = excluded.schema_json, \
                 statistics_json = excluded.statistics_json, upload_id = excluded.upload_id, \
                 parquet_key = excluded.parquet_key, size_bytes = excluded.size_bytes, \
                 row_count = excluded.row_count, registered_at = excluded.registered_at, \
                 seq = excluded.seq",
            )
            .bind(&dataset)
            .bind(i64::from(e.version))
            .bind(e.parent_version.map(i64::from))
            .bind(&schema)
            .bind(&statistics)
            .bind(&upload)
            .bind(e.parquet.to_string())
            .bind(int(e.parquet_size))
            .bind(int(e.statistics.rows))
            .bind(at)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
            let message = format!(
                "dataset {} v{} is ready: {} rows, {} columns",
                e.table_name,
                e.version,
                e.statistics.rows,
                e.schema.fields.len()
            );
            notify(
                conn,
                tables,
                Notice {
                    id: env.event_id,
                    owner: e.owner.to_string(),
                    kind: "dataset_ready",
                    upload: &upload,
                    dataset: Some(&dataset),
                    message,
                    at,
                    seq,
                },
            )
            .await?;
        }
        Event::Failed(e) => {
            q(
                tables,
                "UPDATE uploads{s} SET status = 'failed', failed_step = $2, failure_reason = $3, \
                 failure_attempts = $4, failure_retryable = $5, updated_at = $6, \
                 finished_at = $6, last_seq = $7 WHERE id = $1",
            )
            .bind(&upload)
            .bind(e.step.as_str())
            .bind(&e.reason)
            .bind(i64::from(e.attempts))
            .bind(flag(e.retryable))
            .bind(at)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
            close_open_steps(conn, tables, &upload, "failed", at, seq).await?;
            // A step that had no start (the upload step itself) still gets its row.
            q(
                tables,
                "INSERT INTO upload_steps{s} (upload_id, step, started_at, ended_at, outcome, \
                 start_seq, end_seq) VALUES ($1, $2, $3, $3, 'failed', $4, $4) \
                 ON CONFLICT (upload_id, step) DO NOTHING",
            )
            .bind(&upload)
            .bind(e.step.as_str())
            .bind(at)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
            let row = q(
                tables,
                "SELECT owner, filename, dataset_id FROM uploads{s} WHERE id = $1",
            )
            .bind(&upload)
            .fetch_optional(&mut *conn)
            .await?;
            let (owner, filename, dataset) = match row {
                Some(row) => (
                    row.try_get::<String, _>("owner")?,
                    row.try_get::<String, _>("filename")?,
                    row.try_get::<Option<String>, _>("dataset_id")?,
                ),
                None => (env.actor.to_string(), upload.clone(), None),
            };
            let message = format!(
                "upload {filename:?} failed at {}: {}",
                e.step.as_str(),
                one_line(&e.reason)
            );
            notify(
                conn,
                tables,
                Notice {
                    id: env.event_id,
                    owner,
                    kind: "upload_failed",
                    upload: &upload,
                    dataset: dataset.as_deref(),
                    message,
                    at,
                    seq,
                },
            )
            .await?;
        }
        Event::UploadAborted(e) => {
            q(
                tables,
                "UPDATE uploads{s} SET status = 'aborted', failure_reason = $2, \
                 updated_at = $3, finished_at = $3, last_seq = $4 WHERE id = $1",
            )
            .bind(&upload)
            .bind(&e.reason)
            .bind(at)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
            close_open_steps(conn, tables, &upload, "aborted", at, seq).await?;
        }
        // Compensations are facts about cleanup: the audit row is their whole view.
        Event::Compensated(_) => {}
        Event::TableNameClaimed(e) => {
            q(
                tables,
                "INSERT INTO table_names{s} (owner, table_name, dataset_id, upload_id, \
                 claimed_at, claim_seq) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (owner, table_name) DO UPDATE SET dataset_id = excluded.dataset_id, \
                 upload_id = excluded.upload_id, claimed_at = excluded.claimed_at, \
                 claim_seq = excluded.claim_seq",
            )
            .bind(e.owner.to_string())
            .bind(e.table_name.to_string())
            .bind(e.dataset.to_string())
            .bind(e.upload.to_string())
            .bind(at)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
        }
        Event::TableNameReleased(e) => {
            q(
                tables,
                "DELETE FROM table_names{s} WHERE owner = $1 AND table_name = $2 \
                 AND dataset_id = $3",
            )
            .bind(e.owner.to_string())
            .bind(e.table_name.to_string())
            .bind(e.dataset.to_string())
            .execute(&mut *conn)
            .await?;
        }
        Event::NotificationRead(e) => {
            notification_read(conn, tables, &e.owner, e.notification, at, seq).await?;
        }
        Event::DatasetLabelChanged(e) => {
            if let Aggregate::Dataset(id) = &env.aggregate {
                q(
                    tables,
                    "UPDATE datasets{s} SET label = $2, updated_at = $3, last_seq = $4 \
                     WHERE id = $1",
                )
                .bind(id.to_string())
                .bind(e.label.clone())
                .bind(at)
                .bind(seq)
                .execute(&mut *conn)
                .await?;
            }
        }
        Event::DatasetRenamed(e) => {
            if let Aggregate::Dataset(id) = &env.aggregate {
                q(
                    tables,
                    "UPDATE datasets{s} SET table_name = $2, updated_at = $3, last_seq = $4 \
                     WHERE id = $1",
                )
                .bind(id.to_string())
                .bind(e.to.to_string())
                .bind(at)
                .bind(seq)
                .execute(&mut *conn)
                .await?;
            }
        }
        Event::DatasetDeleted(_) => {
            if let Aggregate::Dataset(id) = &env.aggregate {
                q(
                    tables,
                    "UPDATE datasets{s} SET deleted_at = $2, updated_at = $2, last_seq = $3 \
                     WHERE id = $1",
                )
                .bind(id.to_string())
                .bind(at)
                .bind(seq)
                .execute(&mut *conn)
                .await?;
            }
        }
        Event::DatasetRestored(_) => {
            if let Aggregate::Dataset(id) = &env.aggregate {
                q(
                    tables,
                    "UPDATE datasets{s} SET deleted_at = NULL, updated_at = $2, last_seq = $3 \
                     WHERE id = $1",
                )
                .bind(id.to_string())
                .bind(at)
                .bind(seq)
                .execute(&mut *conn)
                .await?;
            }
        }
        Event::TokenCreated(e) => {
            q(
                tables,
                "INSERT INTO tokens{s} (owner, token_id, sha256, created_at, revoked_at, seq) \
                 VALUES ($1, $2, $3, $4, NULL, $5) \
                 ON CONFLICT (owner, token_id) DO UPDATE SET sha256 = excluded.sha256, \
                 created_at = excluded.created_at, revoked_at = NULL, seq = excluded.seq",
            )
            .bind(e.owner.to_string())
            .bind(&e.token_id)
            .bind(e.sha256.to_string())
            .bind(at)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
        }
        Event::TokenRevoked(e) => {
            q(
                tables,
                "UPDATE tokens{s} SET revoked_at = $3 WHERE owner = $1 AND token_id = $2 \
                 AND revoked_at IS NULL",
            )
            .bind(e.owner.to_string())
            .bind(&e.token_id)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

fn compression_text(c: weir_events::Compression) -> &'static str {
    match c {
        weir_events::Compression::None => "none",
        weir_events::Compression::Gzip => "gzip",
        weir_events::Compression::Zstd => "zstd",
    }
}

async fn start_step(
    conn: &mut AnyConnection,
    tables: Tables,
    upload: &str,
    step: Step,
    at: i64,
    seq: i64,
) -> Result<(), Error> {
    q(
        tables,
        "INSERT INTO upload_steps{s} (upload_id, step, started_at, start_seq) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (upload_id, step) DO NOTHING",
    )
    .bind(upload)
    .bind(step.as_str())
    .bind(at)
    .bind(seq)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn end_step(
    conn: &mut AnyConnection,
    tables: Tables,
    upload: &str,
    step: Step,
    outcome: &'static str,
    at: i64,
    seq: i64,
) -> Result<(), Error> {
    q(
        tables,
        "UPDATE upload_steps{s} SET ended_at = $3, outcome = $4, end_seq = $5 \
         WHERE upload_id = $1 AND step = $2 AND ended_at IS NULL",
    )
    .bind(upload)
    .bind(step.as_str())
    .bind(at)
    .bind(outcome)
    .bind(seq)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn close_open_steps(
    conn: &mut AnyConnection,
    tables: Tables,
    upload: &str,
    outcome: &'static str,
    at: i64,
    seq: i64,
) -> Result<(), Error> {
    q(
        tables,
        "UPDATE upload_steps{s} SET ended_at = $2, outcome = $3, end_seq = $4 \
         WHERE upload_id = $1 AND ended_at IS NULL",
    )
    .bind(upload)
    .bind(at)
    .bind(outcome)
    .bind(seq)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

struct Notice<'a> {
    /// The event that raised it: the notification's id.
    id: EventId,
    owner: String,
    kind: &'static str,
    upload: &'a str,
    dataset: Option<&'a str>,
    message: String,
    at: i64,
    seq: i64,
}

async fn notify(conn: &mut AnyConnection, tables: Tables, n: Notice<'_>) -> Result<(), Error> {
    q(
        tables,
        "INSERT INTO notifications{s} (id, owner, kind, upload_id, dataset_id, message, \
         created_at, seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(n.id.to_string())
    .bind(n.owner)
    .bind(n.kind)
    .bind(n.upload)
    .bind(n.dataset)
    .bind(n.message)
    .bind(n.at)
    .bind(n.seq)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// `NotificationRead`: marks one of `owner`'s notifications read, first read wins; a
/// notification of another owner is left alone.
async fn notification_read(
    conn: &mut AnyConnection,
    tables: Tables,
    owner: &Owner,
    notification: EventId,
    at: i64,
    seq: i64,
) -> Result<(), Error> {
    q(
        tables,
        "UPDATE notifications{s} SET read_at = $3, read_seq = $4 \
         WHERE id = $1 AND owner = $2 AND read_seq IS NULL",
    )
    .bind(notification.to_string())
    .bind(owner.to_string())
    .bind(at)
    .bind(seq)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
