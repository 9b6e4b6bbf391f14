//! What the retention janitor reads: the object references (`refs.rs`), multipart
//! uploads still receiving, soft-deleted datasets not yet purged, failed uploads whose
//! compensation left objects behind. Reads only; the janitor decides and appends.
//!
//! Times are microseconds since the epoch, as in every table; `cutoff` arguments are
//! "ended (or started, or deleted) at or before".

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::Error;
use crate::db::Db;

/// One reference to an object, as `object_refs` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub object_key: String,
    /// `upload:<id>` or `dataset:<id>`.
    pub holder: String,
    /// `part`, `staging`, `blob`, `parquet` or `rejects`.
    pub role: String,
    pub owner: String,
    pub upload_id: String,
    pub dataset_id: Option<String>,
    pub live: bool,
    pub created_at: i64,
    /// Why and since when the reference is not live (`refs::ended`).
    pub ended_by: Option<String>,
    pub ended_at: Option<i64>,
    pub ended_seq: Option<i64>,
    /// When the object was recorded deleted, for this life of the key.
    pub deleted_at: Option<i64>,
}

const REF_COLUMNS: &str = "object_key, holder, role, owner, upload_id, dataset_id, live, \
     created_at, ended_by, ended_at, ended_seq, deleted_at";

fn object_ref(r: &AnyRow) -> Result<ObjectRef, Error> {
    Ok(ObjectRef {
        object_key: r.try_get("object_key")?,
        holder: r.try_get("holder")?,
        role: r.try_get("role")?,
        owner: r.try_get("owner")?,
        upload_id: r.try_get("upload_id")?,
        dataset_id: r.try_get("dataset_id")?,
        live: r.try_get::<i64, _>("live")? != 0,
        created_at: r.try_get("created_at")?,
        ended_by: r.try_get("ended_by")?,
        ended_at: r.try_get("ended_at")?,
        ended_seq: r.try_get("ended_seq")?,
        deleted_at: r.try_get("deleted_at")?,
    })
}

/// Every reference to `key`, deleted lives included, by holder.
pub async fn refs_of(db: &Db, key: &str) -> Result<Vec<ObjectRef>, Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {REF_COLUMNS} FROM object_refs WHERE object_key = $1 ORDER BY holder"
    )))
    .bind(key.to_owned())
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(object_ref)
    .collect()
}

/// Every key under `prefix` that some event named (whatever became of it since): the
/// objects the janitor judges by their references. The rest under the prefix no event
/// names at all.
pub async fn referenced_keys(
    db: &Db,
    prefix: &str,
) -> Result<std::collections::HashSet<String>, Error> {
    // A prefix match that no collation changes (Postgres compares text by locale).
    sqlx::query(
        "SELECT DISTINCT object_key FROM object_refs WHERE substr(object_key, 1, length($1)) = $1",
    )
    .bind(prefix.to_owned())
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|r| r.try_get::<String, _>("object_key").map_err(Error::from))
    .collect()
}

/// Every reference of `holder` (`upload:<id>`, `dataset:<id>`), by key.
pub async fn refs_held_by(db: &Db, holder: &str) -> Result<Vec<ObjectRef>, Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {REF_COLUMNS} FROM object_refs WHERE holder = $1 ORDER BY object_key"
    )))
    .bind(holder.to_owned())
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(object_ref)
    .collect()
}

/// The undeleted references of every object that has a reference ended by a failure,
/// an abort or a purge and not recorded deleted: the objects the janitor may have to
/// delete, each with everything that still holds it. Ordered by key.
pub async fn pending(db: &Db) -> Result<Vec<ObjectRef>, Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {REF_COLUMNS} FROM object_refs WHERE deleted_seq IS NULL AND object_key IN \
         (SELECT object_key FROM object_refs WHERE live = 0 AND deleted_seq IS NULL \
          AND ended_by IN ('failed', 'aborted', 'purged')) \
         ORDER BY object_key, holder"
    )))
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(object_ref)
    .collect()
}

/// Failed uploads whose parts, staging object, Parquet or rejects are neither live nor
/// recorded deleted since a failure at or before `cutoff`: a compensation that did not
/// run to its end (a crash between `Failed` and `Compensated`), or one that removes
/// nothing. By upload id.
pub async fn uncompensated(db: &Db, cutoff: i64) -> Result<Vec<(String, String)>, Error> {
    pairs(
        db,
        "SELECT DISTINCT upload_id AS a, owner AS b FROM object_refs WHERE live = 0 \
         AND deleted_seq IS NULL AND ended_by = 'failed' AND ended_at <= $1 \
         AND role IN ('part', 'staging', 'parquet', 'rejects') AND holder LIKE 'upload:%' \
         ORDER BY upload_id",
        cutoff,
    )
    .await
}

/// The rows of `sql` (columns `a` and `b`, `$1` bound to `cutoff`) as pairs.
async fn pairs(db: &Db, sql: &'static str, cutoff: i64) -> Result<Vec<(String, String)>, Error> {
    sqlx::query(sql)
        .bind(cutoff)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| Ok((r.try_get("a")?, r.try_get("b")?)))
        .collect()
}

/// Multipart uploads opened at or before `cutoff` that are still receiving parts
/// (`UploadStarted`, nothing after it): (upload id, owner), oldest first.
pub async fn stale_multipart(db: &Db, cutoff: i64) -> Result<Vec<(String, String)>, Error> {
    pairs(
        db,
        "SELECT id AS a, owner AS b FROM uploads WHERE status = 'receiving' AND received_at <= $1 \
         ORDER BY received_at, id",
        cutoff,
    )
    .await
}

/// Datasets soft-deleted at or before `cutoff` that still hold a live reference (not
/// purged): (dataset id, owner), oldest deletion first.
pub async fn purgeable(db: &Db, cutoff: i64) -> Result<Vec<(String, String)>, Error> {
    pairs(
        db,
        "SELECT id AS a, owner AS b FROM datasets d WHERE deleted_at IS NOT NULL \
         AND deleted_at <= $1 \
         AND EXISTS (SELECT 1 FROM object_refs r WHERE r.dataset_id = d.id \
                     AND r.holder LIKE 'dataset:%' AND r.live = 1) \
         ORDER BY deleted_at, id",
        cutoff,
    )
    .await
}

/// Dataset versions whose Parquet file has no reference from their dataset: not zero
/// when `object_refs` was not built from the whole log (a database migrated to 0005
/// after events were projected), and then no deletion may rest on it until a replay
/// (`weir replay`) rebuilds it from sequence 1.
pub async fn versions_without_references(db: &Db) -> Result<i64, Error> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM dataset_versions v WHERE NOT EXISTS \
         (SELECT 1 FROM object_refs r WHERE r.object_key = v.parquet_key \
          AND r.holder = 'dataset:' || v.dataset_id)",
    )
    .fetch_one(db.pool())
    .await?)
}
