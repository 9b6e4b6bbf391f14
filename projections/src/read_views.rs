//! The versioned read schema: SQL views named `v1_…` over the projection tables, for
//! dashboards and tools weir does not ship (`docs/read-schema.md`). The tables may
//! change from release to release; a `v1_` view keeps its columns, names and meaning,
//! and a change that cannot keep them becomes `v2_` beside it.
//!
//! The views are created after the migrations of the live tables ([`crate::Db::connect`])
//! and again by a replay's swap, which drops the live tables they read (Postgres
//! refuses to drop a table a view depends on, so the swap drops the views first, in its
//! transaction). Times are microseconds since the epoch (`…_us`), as in the tables;
//! flags are 0/1; both databases return the same values.

use sqlx::AnyConnection;
use sqlx::AssertSqlSafe;

use crate::db::Backend;

/// `v1_upload_steps`' rows of one step, from its three columns of `uploads`.
macro_rules! step_select {
    ($step:literal) => {
        concat!(
            "SELECT id AS upload_id, CAST('",
            $step,
            "' AS TEXT) AS step, ",
            $step,
            "_outcome AS outcome, ",
            $step,
            "_started_at AS started_at_us, ",
            $step,
            "_ended_at AS ended_at_us, ",
            "CASE WHEN ",
            $step,
            "_ended_at IS NULL THEN NULL ELSE ",
            $step,
            "_ended_at - ",
            $step,
            "_started_at END AS duration_us ",
            "FROM uploads WHERE ",
            $step,
            "_started_at IS NOT NULL"
        )
    };
}

/// Every read view: name and its `SELECT`, in portable SQL.
pub const READ_VIEWS: &[(&str, &str)] = &[
    (
        "v1_datasets",
        "SELECT d.id AS dataset_id, d.owner, d.label, d.table_name, d.current_version, \
         COALESCE(v.row_count, d.row_count) AS row_count, \
         COALESCE(v.size_bytes, d.size_bytes) AS size_bytes, \
         COALESCE(v.parquet_key, d.parquet_key) AS parquet_key, \
         d.created_at AS created_at_us, d.updated_at AS updated_at_us, \
         d.deleted_at AS deleted_at_us, \
         CASE WHEN d.deleted_at IS NULL THEN 'active' ELSE 'deleted' END AS status, \
         d.bad_rows_default, COALESCE(v.quality_json, d.quality_json) AS quality_json, \
         d.refs_json FROM datasets d LEFT JOIN dataset_versions v \
         ON v.dataset_id = d.id AND v.version = d.current_version",
    ),
    (
        "v1_dataset_versions",
        "SELECT dataset_id, version, parent_version, upload_id, row_count, size_bytes, \
         parquet_key, registered_at AS registered_at_us, schema_json, statistics_json, \
         schema_diff_json, quality_json FROM dataset_versions",
    ),
    (
        "v1_uploads",
        "SELECT id AS upload_id, owner, filename, label, status, dataset_id, version, \
         table_name, size_bytes, part_count, format, compression, problem_count, \
         failed_step, failure_reason, received_at AS received_at_us, \
         finished_at AS finished_at_us, \
         CASE WHEN finished_at IS NULL THEN NULL ELSE finished_at - received_at END \
         AS duration_us, quality_json FROM uploads",
    ),
    // The step log is three columns per step of `uploads` (migration 0006): one
    // `SELECT` per step, for the steps that started.
    (
        "v1_upload_steps",
        concat!(
            step_select!("upload"),
            " UNION ALL ",
            step_select!("combine"),
            " UNION ALL ",
            step_select!("infer"),
            " UNION ALL ",
            step_select!("register"),
        ),
    ),
    (
        "v1_notifications",
        "SELECT id AS notification_id, owner, kind, upload_id, dataset_id, message, \
         created_at AS created_at_us, CASE WHEN read_at IS NULL THEN 0 ELSE 1 END AS is_read \
         FROM notifications",
    ),
    (
        "v1_audit",
        "SELECT seq, event_id, kind, actor, aggregate, correlation_id AS upload_id, \
         dataset_id, causation_id, occurred_at AS occurred_at_us, stored_at AS stored_at_us, \
         summary FROM audit",
    ),
    (
        "v1_dataset_grants",
        "SELECT dataset_id, grantee, level, granted_by, granted_at AS granted_at_us \
         FROM dataset_grants",
    ),
    (
        "v1_object_refs",
        "SELECT object_key, holder, role, owner, upload_id, dataset_id, live, \
         created_at AS created_at_us, ended_by, ended_at AS ended_at_us, \
         deleted_at AS deleted_at_us FROM object_refs",
    ),
];

/// Drops every read view (before the tables they read are dropped).
pub(crate) async fn drop_all(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    for (name, _) in READ_VIEWS {
        sqlx::raw_sql(AssertSqlSafe(format!("DROP VIEW IF EXISTS {name}")))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// (Re)creates every read view over the live tables.
pub(crate) async fn create_all(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    drop_all(&mut *conn).await?;
    for (name, select) in READ_VIEWS {
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE VIEW {name} AS {select}")))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The statement that serialises view changes between processes opening one database
/// at once (Postgres: a transaction-scoped advisory lock; SQLite's write transaction
/// already does it).
pub(crate) fn lock_statement(backend: Backend) -> Option<&'static str> {
    match backend {
        Backend::Postgres => Some("SELECT pg_advisory_xact_lock(7310291)"),
        Backend::Sqlite => None,
    }
}
