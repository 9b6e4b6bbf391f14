//! Datasets: list (pagination, status filter, search; the caller's own and those
//! shared with them), one with schema, statistics, versions and location, label and
//! table-name changes, soft delete and restore, a preview of the first rows, and
//! grants. Every handler checks the caller's access for its action
//! (`weir_events::DatasetAction`): by the catalog first (404 without access, 403 when
//! the grant is too weak), and before an append again by the dataset's events.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path as UrlPath, Query, State};
use weir_events::{
    Access, AccessLevel, Aggregate, DatasetAccessGranted, DatasetAccessRevoked, DatasetAction,
    DatasetDeleted, DatasetId, DatasetLabelChanged, DatasetRenamed, DatasetRestored, Denied,
    Envelope, Event, EventId, Grants, ObjectKey, Owner, TableName, TableNameClaimed,
    TableNameReleased, UploadId,
};
use weir_journal::{AppendOutcome, Expect};
use weir_projections::{DatasetFilter, DatasetStatus};

use crate::auth::Caller;
use crate::views::{
    DatasetChange, DatasetListQuery, DatasetPageView, DatasetUpdate, DatasetView, ErrorBody,
    GrantChange, GrantList, GrantRequest, GrantView, Preview, PreviewQuery, QualityView,
    VersionView, fields,
};
use crate::{ApiError, AppState};

#[utoipa::path(get, path = "/v1/datasets", tag = "datasets",
    params(DatasetListQuery),
    responses((status = 200, body = DatasetPageView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Caller(owner): Caller,
    query: Result<Query<DatasetListQuery>, QueryRejection>,
) -> Result<Json<DatasetPageView>, ApiError> {
    let Query(q) = query?;
    let status = match q.status.as_deref().unwrap_or("active") {
        "active" | "registered" => DatasetStatus::Active,
        "deleted" => DatasetStatus::Deleted,
        "all" => DatasetStatus::All,
        other => {
            return Err(ApiError::bad_request(format!(
                "status {other:?}: use active, deleted or all"
            )));
        }
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=weir_projections::query::MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 1000"));
    }
    let offset = q.offset.unwrap_or(0);
    let page = weir_projections::list_datasets(
        state.db(),
        &DatasetFilter {
            owner: Some(owner),
            with_shared: true,
            status,
            search: q.search,
            limit,
            offset,
        },
    )
    .await?;
    Ok(Json(DatasetPageView {
        total: page.total,
        limit,
        offset,
        datasets: page.datasets.into_iter().map(Into::into).collect(),
    }))
}

fn parse_dataset(id: &str) -> Result<DatasetId, ApiError> {
    id.parse()
        .map_err(|_| ApiError::not_found(format!("no dataset {id:?}")))
}

/// A refused access as HTTP: 404 when the caller may not see the dataset, 403 when
/// the grant is too weak for the action.
fn refused(caller: &Owner, id: DatasetId, denied: Denied) -> ApiError {
    match denied {
        Denied::NotFound => ApiError::not_found(denied.message(caller, id)),
        Denied::TooWeak { .. } => ApiError::forbidden(denied.message(caller, id)),
    }
}

/// The dataset from the catalog once `caller` may do `action` on it, with the
/// caller's access.
async fn permitted(
    state: &AppState,
    caller: &Owner,
    id: DatasetId,
    action: DatasetAction,
) -> Result<(weir_projections::Dataset, Access), ApiError> {
    weir_projections::dataset_for(state.db(), caller, id, action)
        .await?
        .map_err(|d| refused(caller, id, d))
}

/// An upload that names `dataset` needs write access to it (checked again by the
/// inferrer when it reserves the version, by the log).
pub(crate) async fn may_upload(
    state: &AppState,
    caller: &Owner,
    dataset: Option<DatasetId>,
) -> Result<(), ApiError> {
    if let Some(id) = dataset {
        permitted(state, caller, id, DatasetAction::Upload).await?;
    }
    Ok(())
}

fn view(state: &AppState, d: weir_projections::Dataset, access: Access) -> DatasetView {
    let statistics = d
        .versions
        .iter()
        .find(|v| v.version == d.current_version)
        .map(|v| v.statistics.clone())
        .unwrap_or(serde_json::Value::Null);
    DatasetView {
        status: if d.deleted_at.is_some() {
            "deleted"
        } else {
            "registered"
        }
        .into(),
        location: state.store().location(&d.parquet_key),
        fields: fields(&d.schema),
        statistics,
        versions: d
            .versions
            .iter()
            .map(|v| VersionView {
                version: v.version,
                parent_version: v.parent_version,
                upload_id: v.upload_id.clone(),
                row_count: v.row_count,
                size_bytes: v.size_bytes,
                registered_at: v.registered_at.to_string(),
                location: state.store().location(&v.parquet_key),
                fields: fields(&v.schema),
                statistics: v.statistics.clone(),
                quality: v
                    .quality
                    .clone()
                    .map(|q| QualityView::new(q, |k| state.store().location(k))),
                schema_diff: v
                    .schema_diff
                    .as_ref()
                    .and_then(|d| serde_json::to_value(d).ok()),
            })
            .collect(),
        quality: d
            .quality
            .clone()
            .map(|q| QualityView::new(q, |k| state.store().location(k))),
        refs: serde_json::to_value(&d.refs).unwrap_or_default(),
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
        access: access.as_str().to_owned(),
    }
}

#[utoipa::path(get, path = "/v1/datasets/{id}", tag = "datasets",
    params(("id" = String, Path, description = "dataset id")),
    responses((status = 200, body = DatasetView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_dataset(
    State(state): State<AppState>,
    Caller(owner): Caller,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<DatasetView>, ApiError> {
    let (d, access) = permitted(&state, &owner, parse_dataset(&id)?, DatasetAction::Read).await?;
    Ok(Json(view(&state, d, access)))
}

/// A dataset as its own events tell it, on top of the catalog row: the write side's
/// view for deciding a change.
struct DatasetState {
    owner: Owner,
    grants: Grants,
    table: TableName,
    label: Option<String>,
    deleted: bool,
    /// Purged by the janitor: never restored again.
    purged: bool,
    last_seq: u64,
    upload: UploadId,
}

async fn dataset_state(
    state: &AppState,
    d: &weir_projections::Dataset,
    id: DatasetId,
) -> Result<DatasetState, ApiError> {
    let table: TableName = d
        .table_name
        .parse()
        .map_err(|e| ApiError::internal(format!("catalog table name: {e}")))?;
    let upload = d
        .versions
        .first()
        .and_then(|v| v.upload_id.parse().ok())
        .unwrap_or(crate::tokens::NO_UPLOAD);
    let owner: Owner = d
        .owner
        .parse()
        .map_err(|e| ApiError::internal(format!("catalog owner: {e}")))?;
    let mut s = DatasetState {
        owner,
        grants: Grants::default(),
        table,
        label: d.label.clone(),
        deleted: false,
        purged: false,
        last_seq: 0,
        upload,
    };
    for r in state.journal().history(&Aggregate::Dataset(id)).await? {
        s.last_seq = r.seq;
        s.grants.apply(&r.envelope.event);
        match r.envelope.event {
            Event::DatasetRenamed(e) => s.table = e.to,
            Event::DatasetLabelChanged(e) => s.label = e.label,
            Event::DatasetDeleted(_) => s.deleted = true,
            Event::DatasetRestored(_) => s.deleted = false,
            Event::DatasetPurged(_) => s.purged = true,
            _ => {}
        }
    }
    Ok(s)
}

impl DatasetState {
    /// The events' say on whether `caller` may do `action` (the catalog may lag).
    fn allow(&self, caller: &Owner, id: DatasetId, action: DatasetAction) -> Result<(), ApiError> {
        self.grants
            .access(caller, &self.owner)
            .check(action)
            .map_err(|d| refused(caller, id, d))
    }
}

fn expect_after(seq: u64) -> Expect {
    if seq == 0 {
        Expect::Empty
    } else {
        Expect::LastSequence(seq)
    }
}

/// Appends one event to the dataset's aggregate after `s.last_seq`.
async fn append_dataset(
    state: &AppState,
    owner: &Owner,
    id: DatasetId,
    s: &mut DatasetState,
    event: Event,
) -> Result<(), ApiError> {
    let envelope = Envelope::new(
        Aggregate::Dataset(id),
        owner.clone(),
        s.upload,
        Some(EventId::new()),
        event,
    );
    match state
        .journal()
        .append(&envelope, expect_after(s.last_seq))
        .await?
    {
        AppendOutcome::Appended { seq, .. } => {
            s.last_seq = seq;
            Ok(())
        }
        AppendOutcome::WrongLastSequence => Err(ApiError::conflict(format!(
            "dataset {id} changed meanwhile; read it and try again"
        ))),
    }
}

/// Change the label and/or the table name. A rename claims the new name (expected
/// sequence 0 on its subject, or after its release), releases the old one, then
/// appends `DatasetRenamed`.
#[utoipa::path(patch, path = "/v1/datasets/{id}", tag = "datasets",
    params(("id" = String, Path, description = "dataset id")),
    request_body = DatasetUpdate,
    responses((status = 200, body = DatasetChange), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, description = "the name is taken, or the dataset changed meanwhile", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Caller(owner): Caller,
    UrlPath(id): UrlPath<String>,
    body: Result<Json<DatasetUpdate>, JsonRejection>,
) -> Result<Json<DatasetChange>, ApiError> {
    let id = parse_dataset(&id)?;
    let (d, _) = permitted(&state, &owner, id, DatasetAction::Update).await?;
    let Json(update) = body?;
    let mut s = dataset_state(&state, &d, id).await?;
    s.allow(&owner, id, DatasetAction::Update)?;
    // Table names are claimed in the dataset owner's namespace, whoever renames.
    let namespace = s.owner.clone();
    let new_table = update
        .table_name
        .as_deref()
        .map(|t| {
            t.parse::<TableName>()
                .map_err(|e| ApiError::bad_request(e.to_string()))
        })
        .transpose()?;
    let mut appended = Vec::new();
    if let Some(label) = update.label {
        let label = Some(label).filter(|l| !l.is_empty());
        if label != s.label {
            append_dataset(
                &state,
                &owner,
                id,
                &mut s,
                Event::DatasetLabelChanged(DatasetLabelChanged {
                    label: label.clone(),
                }),
            )
            .await?;
            s.label = label;
            appended.push("dataset_label_changed".to_owned());
        }
    }
    if let Some(to) = new_table.filter(|t| *t != s.table) {
        let from = s.table.clone();
        let upload: UploadId = s.upload;
        // Claim the new name: only when nobody holds it.
        let new_name = Aggregate::Name {
            owner: namespace.clone(),
            table: to.clone(),
        };
        let expect = match state.journal().last_on(&new_name).await? {
            None => Expect::Empty,
            Some(r) if matches!(r.envelope.event, Event::TableNameReleased(_)) => {
                Expect::LastSequence(r.seq)
            }
            Some(_) => return Err(ApiError::conflict(format!("table name {to} is taken"))),
        };
        let claim = Envelope::new(
            new_name,
            owner.clone(),
            upload,
            Some(EventId::new()),
            Event::TableNameClaimed(TableNameClaimed {
                owner: namespace.clone(),
                table_name: to.clone(),
                dataset: id,
                upload,
            }),
        );
        if state.journal().append(&claim, expect).await? == AppendOutcome::WrongLastSequence {
            return Err(ApiError::conflict(format!("table name {to} is taken")));
        }
        appended.push("table_name_claimed".to_owned());
        // Release the old one.
        let old_name = Aggregate::Name {
            owner: namespace.clone(),
            table: from.clone(),
        };
        let old_expect = match state.journal().last_on(&old_name).await? {
            Some(r) => Expect::LastSequence(r.seq),
            None => Expect::Empty,
        };
        let release = Envelope::new(
            old_name,
            owner.clone(),
            upload,
            Some(claim.event_id),
            Event::TableNameReleased(TableNameReleased {
                owner: namespace.clone(),
                table_name: from.clone(),
                dataset: id,
            }),
        );
        if state.journal().append(&release, old_expect).await? == AppendOutcome::WrongLastSequence {
            // The new name stays claimed for this dataset; a retry of the rename
            // finds the claim and goes on from the release.
            return Err(ApiError::conflict(format!(
                "table name {from} changed meanwhile; read the dataset and try again"
            )));
        }
        appended.push("table_name_released".to_owned());
        append_dataset(
            &state,
            &owner,
            id,
            &mut s,
            Event::DatasetRenamed(DatasetRenamed {
                from,
                to: to.clone(),
            }),
        )
        .await?;
        s.table = to;
        appended.push("dataset_renamed".to_owned());
    }
    Ok(Json(DatasetChange {
        id: id.to_string(),
        appended,
        label: s.label,
        table_name: s.table.to_string(),
        deleted: s.deleted,
    }))
}

/// Soft delete: hidden from listings (status=deleted shows it), objects kept.
#[utoipa::path(delete, path = "/v1/datasets/{id}", tag = "datasets",
    params(("id" = String, Path, description = "dataset id")),
    responses((status = 200, body = DatasetChange), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, description = "already deleted", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn soft_delete(
    State(state): State<AppState>,
    Caller(owner): Caller,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<DatasetChange>, ApiError> {
    let id = parse_dataset(&id)?;
    let (d, _) = permitted(&state, &owner, id, DatasetAction::Delete).await?;
    let mut s = dataset_state(&state, &d, id).await?;
    s.allow(&owner, id, DatasetAction::Delete)?;
    if s.deleted {
        return Err(ApiError::conflict(format!(
            "dataset {id} is already deleted"
        )));
    }
    append_dataset(
        &state,
        &owner,
        id,
        &mut s,
        Event::DatasetDeleted(DatasetDeleted {
            reason: Some(format!("deleted by {owner}")),
        }),
    )
    .await?;
    Ok(Json(DatasetChange {
        id: id.to_string(),
        appended: vec!["dataset_deleted".into()],
        label: s.label,
        table_name: s.table.to_string(),
        deleted: true,
    }))
}

#[utoipa::path(post, path = "/v1/datasets/{id}/restore", tag = "datasets",
    params(("id" = String, Path, description = "dataset id")),
    responses((status = 200, body = DatasetChange), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, description = "not deleted", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn restore(
    State(state): State<AppState>,
    Caller(owner): Caller,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<DatasetChange>, ApiError> {
    let id = parse_dataset(&id)?;
    let (d, _) = permitted(&state, &owner, id, DatasetAction::Restore).await?;
    let mut s = dataset_state(&state, &d, id).await?;
    s.allow(&owner, id, DatasetAction::Restore)?;
    if s.purged {
        return Err(ApiError::conflict(format!(
            "dataset {id} was purged by the retention janitor after its deletion; it can no longer be restored"
        )));
    }
    if !s.deleted {
        return Err(ApiError::conflict(format!("dataset {id} is not deleted")));
    }
    append_dataset(
        &state,
        &owner,
        id,
        &mut s,
        Event::DatasetRestored(DatasetRestored {}),
    )
    .await?;
    Ok(Json(DatasetChange {
        id: id.to_string(),
        appended: vec!["dataset_restored".into()],
        label: s.label,
        table_name: s.table.to_string(),
        deleted: false,
    }))
}

/// The first rows of the current version's Parquet file, as JSON objects.
#[utoipa::path(get, path = "/v1/datasets/{id}/preview", tag = "datasets",
    params(("id" = String, Path, description = "dataset id"), PreviewQuery),
    responses((status = 200, body = Preview), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn preview(
    State(state): State<AppState>,
    Caller(owner): Caller,
    UrlPath(id): UrlPath<String>,
    query: Result<Query<PreviewQuery>, QueryRejection>,
) -> Result<Json<Preview>, ApiError> {
    let id = parse_dataset(&id)?;
    let Query(q) = query?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 1000"));
    }
    let (d, _) = permitted(&state, &owner, id, DatasetAction::Read).await?;
    let key = parquet_key(&d)?;
    let dir = &state.config().work_dir;
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| ApiError::internal(format!("scratch folder {}: {e}", dir.display())))?;
    let path = dir.join(format!("preview-{}.parquet", UploadId::new()));
    let result = async {
        state.store().download(&key, &path).await?;
        let p = path.clone();
        tokio::task::spawn_blocking(move || read_rows(&p, limit as usize))
            .await
            .map_err(|e| ApiError::internal(format!("preview task: {e}")))?
    }
    .await;
    let _ = tokio::fs::remove_file(&path).await;
    result.map(Json)
}

/// Who may use the dataset besides its owner.
#[utoipa::path(get, path = "/v1/datasets/{id}/grants", tag = "datasets",
    params(("id" = String, Path, description = "dataset id")),
    responses((status = 200, body = GrantList), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_grants(
    State(state): State<AppState>,
    Caller(caller): Caller,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<GrantList>, ApiError> {
    let id = parse_dataset(&id)?;
    let (d, _) = permitted(&state, &caller, id, DatasetAction::Read).await?;
    let grants = weir_projections::grants(state.db(), id)
        .await?
        .into_iter()
        .map(|g| GrantView {
            grantee: g.grantee,
            level: g.level,
            granted_by: g.granted_by,
            granted_at: g.granted_at.to_string(),
        })
        .collect();
    Ok(Json(GrantList {
        dataset_id: d.id,
        owner: d.owner,
        grants,
    }))
}

/// The grantee named in the path: 400 when it is not an owner name.
fn parse_grantee(owner: &str) -> Result<Owner, ApiError> {
    owner
        .parse()
        .map_err(|e: weir_events::OwnerError| ApiError::bad_request(e.to_string()))
}

/// Give `owner` read, write or admin access (the dataset's owner or an admin grantee
/// may); granting again changes the level.
#[utoipa::path(put, path = "/v1/datasets/{id}/grants/{owner}", tag = "datasets",
    params(("id" = String, Path, description = "dataset id"),
           ("owner" = String, Path, description = "the owner given access")),
    request_body = GrantRequest,
    responses((status = 200, body = GrantChange), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, description = "the caller's access is below admin", body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, description = "the dataset changed meanwhile", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn grant(
    State(state): State<AppState>,
    Caller(caller): Caller,
    UrlPath((id, grantee)): UrlPath<(String, String)>,
    body: Result<Json<GrantRequest>, JsonRejection>,
) -> Result<Json<GrantChange>, ApiError> {
    let id = parse_dataset(&id)?;
    let (d, _) = permitted(&state, &caller, id, DatasetAction::Grant).await?;
    let grantee = parse_grantee(&grantee)?;
    let Json(request) = body?;
    let level: AccessLevel = request
        .level
        .parse()
        .map_err(|e: String| ApiError::bad_request(format!("level: {e}")))?;
    let mut s = dataset_state(&state, &d, id).await?;
    s.allow(&caller, id, DatasetAction::Grant)?;
    if grantee == s.owner {
        return Err(ApiError::bad_request(format!(
            "{grantee} owns dataset {id}; an owner needs no grant"
        )));
    }
    let mut appended = Vec::new();
    if s.grants.get(&grantee) != Some(level) {
        let event = Event::DatasetAccessGranted(DatasetAccessGranted {
            grantee: grantee.clone(),
            level,
        });
        append_dataset(&state, &caller, id, &mut s, event).await?;
        appended.push("dataset_access_granted".to_owned());
    }
    Ok(Json(GrantChange {
        dataset_id: id.to_string(),
        grantee: grantee.to_string(),
        level: Some(level.as_str().to_owned()),
        appended,
    }))
}

/// Take back `owner`'s access.
#[utoipa::path(delete, path = "/v1/datasets/{id}/grants/{owner}", tag = "datasets",
    params(("id" = String, Path, description = "dataset id"),
           ("owner" = String, Path, description = "the owner whose access ends")),
    responses((status = 200, body = GrantChange), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, description = "the caller's access is below admin", body = ErrorBody),
              (status = 404, description = "no such dataset, or the owner has no grant", body = ErrorBody),
              (status = 409, description = "the dataset changed meanwhile", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    Caller(caller): Caller,
    UrlPath((id, grantee)): UrlPath<(String, String)>,
) -> Result<Json<GrantChange>, ApiError> {
    let id = parse_dataset(&id)?;
    let (d, _) = permitted(&state, &caller, id, DatasetAction::Grant).await?;
    let grantee = parse_grantee(&grantee)?;
    let mut s = dataset_state(&state, &d, id).await?;
    s.allow(&caller, id, DatasetAction::Grant)?;
    if s.grants.get(&grantee).is_none() {
        return Err(ApiError::not_found(format!(
            "{grantee} has no grant on dataset {id}"
        )));
    }
    let event = Event::DatasetAccessRevoked(DatasetAccessRevoked {
        grantee: grantee.clone(),
    });
    append_dataset(&state, &caller, id, &mut s, event).await?;
    Ok(Json(GrantChange {
        dataset_id: id.to_string(),
        grantee: grantee.to_string(),
        level: None,
        appended: vec!["dataset_access_revoked".to_owned()],
    }))
}

fn parquet_key(d: &weir_projections::Dataset) -> Result<ObjectKey, ApiError> {
    // The catalog's key, as the services recorded it: the version's own
    // (`datasets/<id>/v<k>/data.parquet`, older logs), a content-addressed conversion
    // (`parquet/sha256/…`) or the upload's blob (a Parquet file served as it came).
    let known = ["datasets/", "parquet/sha256/", "blobs/sha256/"];
    if !known.iter().any(|p| d.parquet_key.starts_with(p)) || d.parquet_key.contains("..") {
        return Err(ApiError::internal(format!(
            "catalog parquet key {} of dataset {} is not one weir writes",
            d.parquet_key, d.id
        )));
    }
    Ok(ObjectKey::from_stored(d.parquet_key.clone()))
}

fn read_rows(path: &std::path::Path, limit: usize) -> Result<Preview, ApiError> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let bad =
        |e: &dyn std::fmt::Display| ApiError::internal(format!("reading the Parquet file: {e}"));
    let file = std::fs::File::open(path).map_err(|e| bad(&e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(&e))?;
    let columns = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let reader = builder
        .with_batch_size(limit.max(1))
        .with_limit(limit)
        .build()
        .map_err(|e| bad(&e))?;
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    let mut rows = 0;
    for batch in reader {
        let batch = batch.map_err(|e| bad(&e))?;
        let batch = utc_offsets(&batch.slice(0, batch.num_rows().min(limit - rows)))
            .map_err(|e| bad(&e))?;
        rows += batch.num_rows();
        writer.write(&batch).map_err(|e| bad(&e))?;
        if rows >= limit {
            break;
        }
    }
    writer.finish().map_err(|e| bad(&e))?;
    let bytes = writer.into_inner();
    let rows = if bytes.is_empty() {
        Vec::new()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| bad(&e))?
    };
    Ok(Preview { columns, rows })
}

/// The JSON writer renders only offset time zones (named ones need chrono-tz): relabel
/// `UTC` timestamps as `+00:00`, the same instants, and others as plain UTC instants.
fn utc_offsets(
    batch: &arrow::record_batch::RecordBatch,
) -> Result<arrow::record_batch::RecordBatch, arrow::error::ArrowError> {
    use arrow::datatypes::{DataType, Field, Schema};
    let schema = batch.schema();
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        match field.data_type() {
            DataType::Timestamp(unit, Some(tz)) if !tz.starts_with('+') && !tz.starts_with('-') => {
                let to = DataType::Timestamp(*unit, Some("+00:00".into()));
                columns.push(arrow::compute::cast(column, &to)?);
                fields.push(Field::new(field.name(), to, field.is_nullable()));
            }
            _ => {
                columns.push(column.clone());
                fields.push(field.as_ref().clone());
            }
        }
    }
    arrow::record_batch::RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns)
}
