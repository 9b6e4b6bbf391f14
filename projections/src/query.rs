//! What the CLI and the HTTP gateway read: upload status, an id's history, the
//! dataset list and one dataset, and an owner's notifications. Every answer is a plain
//! serde-serializable struct; times are RFC 3339 in JSON.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};
use weir_events::{
    Access, AccessLevel, DatasetAction, DatasetId, Denied, Owner, Sha256, Step, Timestamp, UploadId,
};

use crate::Error;
use crate::apply::{QualityView, SchemaView};
use crate::db::Db;

/// An upload's or a dataset's id, as `weir history ID` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityId {
    Upload(UploadId),
    Dataset(DatasetId),
}

impl std::str::FromStr for EntityId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.starts_with(UploadId::PREFIX) {
            s.parse().map(Self::Upload).map_err(|e| format!("{e}"))
        } else if s.starts_with(DatasetId::PREFIX) {
            s.parse().map(Self::Dataset).map_err(|e| format!("{e}"))
        } else {
            Err(format!(
                "{s:?} is neither an upload id (upld_…) nor a dataset id (data_…)"
            ))
        }
    }
}

impl std::fmt::Display for EntityId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Upload(id) => id.fmt(f),
            Self::Dataset(id) => id.fmt(f),
        }
    }
}

/// Where an upload is. `status` is what the last event said (`receiving` after a
/// multipart UploadStarted, then `received`, `combined`, `inferred`, and one of
/// `registered`, `failed`, `aborted`); `phase` adds what is under way: after
/// `received` the combiner works (`combining`), after `combined` the inferrer
/// (`inferring`), after `inferred` the registrar (`registering`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploadStatus {
    pub id: String,
    pub owner: String,
    pub filename: String,
    pub label: Option<String>,
    pub requested_table: Option<String>,
    pub size_bytes: u64,
    pub part_count: u64,
    /// receiving | received | combined | inferred | registered | failed | aborted
    pub status: String,
    /// The step under way after `status` (combining, inferring, registering), or
    /// `status` itself when nothing runs after it (receiving parts, or terminal).
    pub phase: String,
    pub dataset_id: Option<String>,
    pub version: Option<u32>,
    pub table_name: Option<String>,
    pub failure: Option<Failure>,
    /// Why the upload was aborted, when it was.
    pub abort_reason: Option<String>,
    pub received_at: Timestamp,
    pub updated_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub steps: Vec<StepLog>,
    /// The stream sequence of the last event applied to this upload.
    pub last_seq: u64,
    /// Encoding, bad rows and the rejects file, once the upload was inferred.
    pub quality: Option<QualityView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub step: String,
    pub reason: String,
    pub attempts: u32,
    pub retryable: bool,
}

/// One step of an upload: started when its input event was stored, ended with its
/// output (or the upload's failure or abort).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepLog {
    pub step: String,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    /// ok | failed | aborted; `None` while the step runs.
    pub outcome: Option<String>,
    pub duration_ms: Option<u64>,
}

/// One event in an upload's or a dataset's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub event_id: String,
    pub stored_at: Timestamp,
    pub occurred_at: Timestamp,
    pub kind: String,
    pub actor: String,
    pub causation_id: Option<String>,
    pub correlation_id: String,
    /// `upload:upld_…`, `dataset:data_…` or `name:<table>@<owner>`.
    pub aggregate: String,
    pub dataset_id: Option<String>,
    pub summary: String,
}

/// Which datasets a listing shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DatasetStatus {
    #[default]
    Active,
    Deleted,
    All,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetFilter {
    pub owner: Option<Owner>,
    /// With `owner`: also the datasets other owners granted `owner` access to.
    pub with_shared: bool,
    pub status: DatasetStatus,
    /// Case-insensitive substring of the label or the table name.
    pub search: Option<String>,
    pub limit: u32,
    pub offset: u32,
}

impl Default for DatasetFilter {
    fn default() -> Self {
        Self {
            owner: None,
            with_shared: false,
            status: DatasetStatus::Active,
            search: None,
            limit: 50,
            offset: 0,
        }
    }
}

/// Most rows one listing returns, whatever the filter asks.
pub const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatasetPage {
    /// Datasets matching the filter, over all pages.
    pub total: u64,
    pub datasets: Vec<DatasetSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatasetSummary {
    pub id: String,
    pub owner: String,
    pub label: Option<String>,
    pub table_name: String,
    pub current_version: u32,
    pub row_count: u64,
    pub size_bytes: u64,
    pub parquet_key: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub deleted_at: Option<Timestamp>,
    /// The current version's bad rows and rejects file.
    pub quality: Option<QualityView>,
    /// When listed `with_shared`: the level granted to the filter's owner on another
    /// owner's dataset (`read`, `write`, `admin`); `None` for the owner's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dataset {
    pub id: String,
    pub owner: String,
    pub label: Option<String>,
    pub table_name: String,
    pub current_version: u32,
    pub row_count: u64,
    pub size_bytes: u64,
    /// The object key of the current version's Parquet file.
    pub parquet_key: String,
    pub schema: SchemaView,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub deleted_at: Option<Timestamp>,
    /// The current version's encoding, bad rows and rejects file.
    pub quality: Option<QualityView>,
    /// Branches (other than `main`, whose head is `current_version`) and tags.
    pub refs: crate::apply::Refs,
    /// Oldest first.
    pub versions: Vec<DatasetVersion>,
}

impl Dataset {
    /// The version `name` names: `v3` or `3`, `main`, a branch or a tag.
    pub fn resolve(&self, name: &str) -> Option<&DatasetVersion> {
        let n = match name {
            "main" => Some(self.current_version),
            _ => name
                .strip_prefix('v')
                .unwrap_or(name)
                .parse::<u32>()
                .ok()
                .or_else(|| self.refs.tags.get(name).copied())
                .or_else(|| self.refs.branches.get(name).copied()),
        }?;
        self.versions.iter().find(|v| v.version == n)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetVersion {
    pub version: u32,
    pub parent_version: Option<u32>,
    pub schema: SchemaView,
    /// Rows, and per column nulls and min/max, as the inferrer computed them.
    pub statistics: serde_json::Value,
    pub upload_id: String,
    pub parquet_key: String,
    pub size_bytes: u64,
    pub row_count: u64,
    pub registered_at: Timestamp,
    /// This version's encoding, bad rows and rejects file.
    pub quality: Option<QualityView>,
    /// How its schema differs from its parent's: `{"added": [fields], "removed":
    /// [fields], "type_changes": [{"name", "from", "to", "change"}]}`.
    pub schema_diff: Option<weir_events::SchemaDiff>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    /// The id of the event that raised it.
    pub id: String,
    pub owner: String,
    /// dataset_ready | upload_failed
    pub kind: String,
    pub upload_id: String,
    pub dataset_id: Option<String>,
    pub message: String,
    pub created_at: Timestamp,
    pub read: bool,
    pub read_at: Option<Timestamp>,
    pub seq: u64,
}

fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn small(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

fn get_u64(row: &AnyRow, col: &str) -> Result<u64, Error> {
    Ok(unsigned(row.try_get::<i64, _>(col)?))
}

fn get_ts(row: &AnyRow, col: &str) -> Result<Timestamp, Error> {
    Ok(Timestamp(row.try_get::<i64, _>(col)?))
}

fn get_opt_ts(row: &AnyRow, col: &str) -> Result<Option<Timestamp>, Error> {
    Ok(row.try_get::<Option<i64>, _>(col)?.map(Timestamp))
}

fn get_opt_json<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    col: &str,
    owner: &str,
) -> Result<Option<T>, Error> {
    let text: Option<String> = row.try_get(col)?;
    text.map(|t| {
        serde_json::from_str(&t).map_err(|source| Error::CorruptJson {
            column: col.to_owned(),
            row: owner.to_owned(),
            source,
        })
    })
    .transpose()
}

fn get_json<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    col: &str,
    owner: &str,
) -> Result<T, Error> {
    let text: String = row.try_get(col)?;
    serde_json::from_str(&text).map_err(|source| Error::CorruptJson {
        column: col.to_owned(),
        row: owner.to_owned(),
        source,
    })
}

/// An upload's status and step log, `None` when no such upload was received.
pub async fn upload_status(db: &Db, upload: UploadId) -> Result<Option<UploadStatus>, Error> {
    let id = upload.to_string();
    let Some(row) = sqlx::query(
        "SELECT id, owner, filename, label, requested_table, size_bytes, part_count, status, \
         dataset_id, version, table_name, failed_step, failure_reason, failure_attempts, \
         failure_retryable, received_at, updated_at, finished_at, last_seq, quality_json, \
         upload_started_at, upload_ended_at, upload_outcome, combine_started_at, \
         combine_ended_at, combine_outcome, infer_started_at, infer_ended_at, infer_outcome, \
         register_started_at, register_ended_at, register_outcome \
         FROM uploads WHERE id = $1",
    )
    .bind(&id)
    .fetch_optional(db.pool())
    .await?
    else {
        return Ok(None);
    };
    // The step log is three columns per step of the upload's row (migration 0006),
    // listed in the order the steps started.
    let mut steps = Vec::with_capacity(Step::ALL.len());
    for step in Step::ALL.map(Step::as_str) {
        let Some(started_at) = get_opt_ts(&row, &format!("{step}_started_at"))? else {
            continue;
        };
        let ended_at = get_opt_ts(&row, &format!("{step}_ended_at"))?;
        steps.push(StepLog {
            step: step.to_owned(),
            started_at,
            ended_at,
            outcome: row.try_get(format!("{step}_outcome").as_str())?,
            duration_ms: ended_at.map(|e| unsigned(e.0 - started_at.0) / 1000),
        });
    }
    // Stable: steps that started at the same moment stay in their running order.
    steps.sort_by_key(|s| s.started_at.0);

    let status: String = row.try_get("status")?;
    let phase = match status.as_str() {
        "received" => "combining",
        "combined" => "inferring",
        "inferred" => "registering",
        other => other,
    }
    .to_owned();
    let failed_step: Option<String> = row.try_get("failed_step")?;
    let reason: Option<String> = row.try_get("failure_reason")?;
    let (failure, abort_reason) = match (failed_step, status.as_str()) {
        (Some(step), _) => (
            Some(Failure {
                step,
                reason: reason.unwrap_or_default(),
                attempts: small(
                    row.try_get::<Option<i64>, _>("failure_attempts")?
                        .unwrap_or(0),
                ),
                retryable: row
                    .try_get::<Option<i64>, _>("failure_retryable")?
                    .unwrap_or(0)
                    != 0,
            }),
            None,
        ),
        (None, "aborted") => (None, reason),
        (None, _) => (None, None),
    };
    Ok(Some(UploadStatus {
        id,
        owner: row.try_get("owner")?,
        filename: row.try_get("filename")?,
        label: row.try_get("label")?,
        requested_table: row.try_get("requested_table")?,
        size_bytes: get_u64(&row, "size_bytes")?,
        part_count: get_u64(&row, "part_count")?,
        status,
        phase,
        dataset_id: row.try_get("dataset_id")?,
        version: row.try_get::<Option<i64>, _>("version")?.map(small),
        table_name: row.try_get("table_name")?,
        failure,
        abort_reason,
        received_at: get_ts(&row, "received_at")?,
        updated_at: get_ts(&row, "updated_at")?,
        finished_at: get_opt_ts(&row, "finished_at")?,
        steps,
        last_seq: get_u64(&row, "last_seq")?,
        quality: get_opt_json(&row, "quality_json", "upload")?,
    }))
}

/// Every event touching an upload (its whole chain) or a dataset (events naming it and
/// the chains of every upload that targeted it), in log order.
pub async fn history(db: &Db, id: EntityId) -> Result<Vec<AuditEntry>, Error> {
    const COLUMNS: &str = "seq, event_id, stored_at, occurred_at, kind, actor, causation_id, \
                           correlation_id, aggregate, dataset_id, summary";
    let sql = match id {
        EntityId::Upload(_) => {
            format!("SELECT {COLUMNS} FROM audit WHERE correlation_id = $1 ORDER BY seq")
        }
        EntityId::Dataset(_) => format!(
            "SELECT {COLUMNS} FROM audit WHERE dataset_id = $1 OR correlation_id IN \
             (SELECT id FROM uploads WHERE dataset_id = $1 OR target_dataset = $1) ORDER BY seq"
        ),
    };
    sqlx::query(AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(AuditEntry {
                seq: get_u64(r, "seq")?,
                event_id: r.try_get("event_id")?,
                stored_at: get_ts(r, "stored_at")?,
                occurred_at: get_ts(r, "occurred_at")?,
                kind: r.try_get("kind")?,
                actor: r.try_get("actor")?,
                causation_id: r.try_get("causation_id")?,
                correlation_id: r.try_get("correlation_id")?,
                aggregate: r.try_get("aggregate")?,
                dataset_id: r.try_get("dataset_id")?,
                summary: r.try_get("summary")?,
            })
        })
        .collect()
}

/// `%text%` for LIKE with `!` as the escape character, lowercased.
fn like_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '!' | '%' | '_') {
            out.push('!');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// One page of datasets, most recently updated first.
pub async fn list_datasets(db: &Db, filter: &DatasetFilter) -> Result<DatasetPage, Error> {
    let mut clauses = Vec::new();
    let mut binds: Vec<String> = Vec::new();
    let mut shared_col = "CAST(NULL AS TEXT)".to_owned();
    if let Some(owner) = &filter.owner {
        binds.push(owner.to_string());
        let n = binds.len();
        if filter.with_shared {
            clauses.push(format!(
                "(owner = ${n} OR id IN (SELECT dataset_id FROM dataset_grants WHERE grantee = ${n}))"
            ));
            shared_col = format!(
                "(SELECT level FROM dataset_grants g WHERE g.dataset_id = d.id AND g.grantee = ${n} AND d.owner <> ${n})"
            );
        } else {
            clauses.push(format!("owner = ${n}"));
        }
    }
    match filter.status {
        DatasetStatus::Active => clauses.push("deleted_at IS NULL".to_owned()),
        DatasetStatus::Deleted => clauses.push("deleted_at IS NOT NULL".to_owned()),
        DatasetStatus::All => {}
    }
    if let Some(search) = filter.search.as_deref().filter(|s| !s.is_empty()) {
        binds.push(like_pattern(search));
        let n = binds.len();
        clauses.push(format!(
            "(LOWER(COALESCE(label, '')) LIKE ${n} ESCAPE '!' OR LOWER(table_name) LIKE ${n} ESCAPE '!')"
        ));
    }
    let filter_sql = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };

    let mut count = sqlx::query(AssertSqlSafe(format!(
        "SELECT COUNT(*) AS n FROM datasets{filter_sql}"
    )));
    for b in &binds {
        count = count.bind(b.clone());
    }
    let total = get_u64(&count.fetch_one(db.pool()).await?, "n")?;

    let n = binds.len();
    let mut page = sqlx::query(AssertSqlSafe(format!(
        "SELECT id, owner, label, table_name, current_version, \
         COALESCE(v.row_count, d.row_count) AS row_count, \
         COALESCE(v.size_bytes, d.size_bytes) AS size_bytes, \
         COALESCE(v.parquet_key, d.parquet_key) AS parquet_key, created_at, updated_at, \
         deleted_at, COALESCE(v.quality_json, d.quality_json) AS quality_json, \
         {shared_col} AS shared \
         FROM datasets d LEFT JOIN dataset_versions v \
         ON v.dataset_id = d.id AND v.version = d.current_version{filter_sql} \
         ORDER BY updated_at DESC, id LIMIT ${} OFFSET ${}",
        n + 1,
        n + 2
    )));
    for b in &binds {
        page = page.bind(b.clone());
    }
    let rows = page
        .bind(i64::from(filter.limit.min(MAX_LIMIT)))
        .bind(i64::from(filter.offset))
        .fetch_all(db.pool())
        .await?;
    let datasets = rows
        .iter()
        .map(|r| {
            Ok(DatasetSummary {
                id: r.try_get("id")?,
                owner: r.try_get("owner")?,
                label: r.try_get("label")?,
                table_name: r.try_get("table_name")?,
                current_version: small(r.try_get("current_version")?),
                row_count: get_u64(r, "row_count")?,
                size_bytes: get_u64(r, "size_bytes")?,
                parquet_key: r.try_get("parquet_key")?,
                created_at: get_ts(r, "created_at")?,
                updated_at: get_ts(r, "updated_at")?,
                deleted_at: get_opt_ts(r, "deleted_at")?,
                quality: get_opt_json(r, "quality_json", "dataset")?,
                shared: r.try_get("shared")?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(DatasetPage { total, datasets })
}

/// One dataset with its schema and versions, `None` when it is not in the catalog.
pub async fn dataset(db: &Db, id: DatasetId) -> Result<Option<Dataset>, Error> {
    let id = id.to_string();
    let Some(r) = sqlx::query(
        "SELECT id, owner, label, table_name, current_version, schema_json, row_count, \
         size_bytes, parquet_key, created_at, updated_at, deleted_at, quality_json, refs_json \
         FROM datasets WHERE id = $1",
    )
    .bind(&id)
    .fetch_optional(db.pool())
    .await?
    else {
        return Ok(None);
    };
    let versions = sqlx::query(
        "SELECT version, parent_version, schema_json, statistics_json, upload_id, parquet_key, \
         size_bytes, row_count, registered_at, quality_json, schema_diff_json FROM dataset_versions WHERE dataset_id = $1 \
         ORDER BY version",
    )
    .bind(&id)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|v| {
        let label = format!("{id} version {}", v.try_get::<i64, _>("version")?);
        Ok(DatasetVersion {
            version: small(v.try_get("version")?),
            parent_version: v.try_get::<Option<i64>, _>("parent_version")?.map(small),
            schema: get_json(v, "schema_json", &label)?,
            statistics: get_json(v, "statistics_json", &label)?,
            upload_id: v.try_get("upload_id")?,
            parquet_key: v.try_get("parquet_key")?,
            size_bytes: get_u64(v, "size_bytes")?,
            row_count: get_u64(v, "row_count")?,
            registered_at: get_ts(v, "registered_at")?,
            quality: get_opt_json(v, "quality_json", &label)?,
            schema_diff: get_opt_json(v, "schema_diff_json", &label)?,
        })
    })
    .collect::<Result<Vec<_>, Error>>()?;
    let refs: crate::apply::Refs = get_opt_json(&r, "refs_json", "dataset")?.unwrap_or_default();
    let mut d = Dataset {
        schema: get_json(&r, "schema_json", &id)?,
        id,
        owner: r.try_get("owner")?,
        label: r.try_get("label")?,
        table_name: r.try_get("table_name")?,
        current_version: small(r.try_get("current_version")?),
        row_count: get_u64(&r, "row_count")?,
        size_bytes: get_u64(&r, "size_bytes")?,
        parquet_key: r.try_get("parquet_key")?,
        created_at: get_ts(&r, "created_at")?,
        updated_at: get_ts(&r, "updated_at")?,
        deleted_at: get_opt_ts(&r, "deleted_at")?,
        quality: get_opt_json(&r, "quality_json", "dataset")?,
        refs,
        versions,
    };
    // The head's own figures (a rollback moves the head without copying them).
    if let Some(v) = d.versions.iter().find(|v| v.version == d.current_version) {
        d.schema = v.schema.clone();
        d.row_count = v.row_count;
        d.size_bytes = v.size_bytes;
        d.parquet_key = v.parquet_key.clone();
        d.quality = v.quality.clone();
    }
    Ok(Some(d))
}

/// One live grant on a dataset: who may use it, how, and who granted it when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    pub grantee: String,
    /// `read`, `write` or `admin`.
    pub level: String,
    pub granted_by: String,
    pub granted_at: Timestamp,
}

/// The live grants on dataset `id`, by grantee.
pub async fn grants(db: &Db, id: DatasetId) -> Result<Vec<Grant>, Error> {
    sqlx::query(
        "SELECT grantee, level, granted_by, granted_at FROM dataset_grants \
         WHERE dataset_id = $1 ORDER BY grantee",
    )
    .bind(id.to_string())
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|r| {
        Ok(Grant {
            grantee: r.try_get("grantee")?,
            level: r.try_get("level")?,
            granted_by: r.try_get("granted_by")?,
            granted_at: get_ts(r, "granted_at")?,
        })
    })
    .collect()
}

/// `caller`'s access to dataset `d` as the catalog shows it (`Access::of` on its owner
/// and the caller's grant).
pub async fn access(db: &Db, caller: &Owner, d: &Dataset) -> Result<Access, Error> {
    if d.owner == caller.as_str() {
        return Ok(Access::Owner);
    }
    let level: Option<String> =
        sqlx::query("SELECT level FROM dataset_grants WHERE dataset_id = $1 AND grantee = $2")
            .bind(&d.id)
            .bind(caller.to_string())
            .fetch_optional(db.pool())
            .await?
            .map(|r| r.try_get("level"))
            .transpose()?;
    let grant = match level {
        Some(l) => Some(l.parse::<AccessLevel>().map_err(|e| {
            Error::Corrupt(format!("dataset_grants of {} for {caller}: {e}", d.id))
        })?),
        None => None,
    };
    let owner: Owner = d
        .owner
        .parse()
        .map_err(|e| Error::Corrupt(format!("owner of dataset {}: {e}", d.id)))?;
    Ok(Access::of(caller, &owner, grant))
}

/// Dataset `id` for `caller` about to do `action`: the read side's one access check
/// (CLI `--as` and the gateway). `Err(Denied::NotFound)` when the caller may not see
/// it (or it does not exist), `Err(Denied::TooWeak)` when the grant is too weak.
pub async fn dataset_for(
    db: &Db,
    caller: &Owner,
    id: DatasetId,
    action: DatasetAction,
) -> Result<Result<(Dataset, Access), Denied>, Error> {
    let Some(d) = dataset(db, id).await? else {
        return Ok(Err(Denied::NotFound));
    };
    let access = access(db, caller, &d).await?;
    Ok(access.check(action).map(|()| (d, access)))
}

/// An owner's active (not deleted) datasets by table name, sorted by name: the tables
/// `weir query` can read for them.
pub async fn owner_tables(db: &Db, owner: &Owner) -> Result<Vec<OwnedTable>, Error> {
    sqlx::query(
        "SELECT table_name, id FROM datasets WHERE owner = $1 AND deleted_at IS NULL \
         ORDER BY table_name",
    )
    .bind(owner.to_string())
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|r| {
        Ok(OwnedTable {
            table_name: r.try_get("table_name")?,
            dataset_id: r.try_get("id")?,
        })
    })
    .collect()
}

/// One row of [`owner_tables`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedTable {
    pub table_name: String,
    pub dataset_id: String,
}

/// An owner's notifications, newest first.
pub async fn notifications(
    db: &Db,
    owner: &Owner,
    unread_only: bool,
) -> Result<Vec<Notification>, Error> {
    let sql = if unread_only {
        "SELECT id, owner, kind, upload_id, dataset_id, message, created_at, read_at, seq \
         FROM notifications WHERE owner = $1 AND read_seq IS NULL ORDER BY seq DESC"
    } else {
        "SELECT id, owner, kind, upload_id, dataset_id, message, created_at, read_at, seq \
         FROM notifications WHERE owner = $1 ORDER BY seq DESC"
    };
    sqlx::query(sql)
        .bind(owner.to_string())
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| {
            let read_at = get_opt_ts(r, "read_at")?;
            Ok(Notification {
                id: r.try_get("id")?,
                owner: r.try_get("owner")?,
                kind: r.try_get("kind")?,
                upload_id: r.try_get("upload_id")?,
                dataset_id: r.try_get("dataset_id")?,
                message: r.try_get("message")?,
                created_at: get_ts(r, "created_at")?,
                read: read_at.is_some(),
                read_at,
                seq: get_u64(r, "seq")?,
            })
        })
        .collect()
}

/// The owner of the live (not revoked) API token whose sha256 is `sha256`: how the
/// gateway authenticates a caller.
pub async fn token_owner(db: &Db, sha256: &Sha256) -> Result<Option<String>, Error> {
    let row = sqlx::query(
        "SELECT owner FROM tokens WHERE sha256 = $1 AND revoked_at IS NULL \
         ORDER BY seq DESC LIMIT 1",
    )
    .bind(sha256.to_string())
    .fetch_optional(db.pool())
    .await?;
    Ok(match row {
        Some(r) => Some(r.try_get("owner")?),
        None => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_patterns_escape_like_wildcards() {
        assert_eq!(like_pattern("Sales_Q3"), "%sales!_q3%");
        assert_eq!(like_pattern("100%!"), "%100!%!!%");
    }

    #[test]
    fn entity_ids_parse_by_prefix() {
        let up = UploadId::from_u128(5);
        let ds = DatasetId::from_u128(5);
        assert_eq!(up.to_string().parse(), Ok(EntityId::Upload(up)));
        assert_eq!(ds.to_string().parse(), Ok(EntityId::Dataset(ds)));
        assert!("nope".parse::<EntityId>().is_err());
    }
}
