//! Row images and set-based I/O: each projection table as a Rust struct, loaded by key
//! and written back many rows per statement.
//!
//! A batch of events is folded in memory (see `apply.rs`) into the final image of every
//! row it touches; this module reads the images those events start from and writes the
//! results, one statement per table. Rows travel as one JSON array bound as a single
//! parameter: SQLite unpacks it with `json_each`, Postgres with
//! `json_populate_recordset`, both in C inside the database. That is what keeps a
//! batch of thousands of events to a dozen statements, and it is the one place where
//! the SQL differs between the two databases.

use std::collections::HashMap;
use std::hash::Hash;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AssertSqlSafe, Row};

use crate::Error;
use crate::db::Backend;
use crate::schema::Tables;

/// One projection table as a Rust struct: its field names are the column names, in the
/// migrations' order.
pub(crate) trait RowImage: Serialize + DeserializeOwned + Clone {
    const TABLE: &'static str;
    const COLUMNS: &'static [&'static str];
    /// The primary key's columns.
    const KEY: &'static [&'static str];

    /// Binds every column's value, in `COLUMNS` order.
    fn bind_all<'q>(&self, q: Query<'q, Any, AnyArguments>) -> Query<'q, Any, AnyArguments>;
}

/// A column value bound without an intermediate copy of its text.
trait BindValue {
    fn bind_to<'q>(&self, q: Query<'q, Any, AnyArguments>) -> Query<'q, Any, AnyArguments>;
}

impl BindValue for String {
    fn bind_to<'q>(&self, q: Query<'q, Any, AnyArguments>) -> Query<'q, Any, AnyArguments> {
        q.bind(self.as_str())
    }
}

impl BindValue for Option<String> {
    fn bind_to<'q>(&self, q: Query<'q, Any, AnyArguments>) -> Query<'q, Any, AnyArguments> {
        q.bind(self.as_deref())
    }
}

impl BindValue for i64 {
    fn bind_to<'q>(&self, q: Query<'q, Any, AnyArguments>) -> Query<'q, Any, AnyArguments> {
        q.bind(*self)
    }
}

impl BindValue for Option<i64> {
    fn bind_to<'q>(&self, q: Query<'q, Any, AnyArguments>) -> Query<'q, Any, AnyArguments> {
        q.bind(*self)
    }
}

macro_rules! row_image {
    ($name:ident, $table:literal, key = [$($key:literal),+], { $($field:ident : $ty:ty),+ $(,)? }) => {
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        pub(crate) struct $name {
            $(pub $field: $ty),+
        }
        impl RowImage for $name {
            const TABLE: &'static str = $table;
            const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),+];
            const KEY: &'static [&'static str] = &[$($key),+];

            fn bind_all<'q>(
                &self,
                q: Query<'q, Any, AnyArguments>,
            ) -> Query<'q, Any, AnyArguments> {
                let q = q;
                $(let q = BindValue::bind_to(&self.$field, q);)+
                q
            }
        }
    };
}

row_image!(UploadRow, "uploads", key = ["id"], {
    id: String,
    owner: String,
    filename: String,
    label: Option<String>,
    requested_table: Option<String>,
    content_type: Option<String>,
    declared_format: Option<String>,
    size_bytes: i64,
    part_count: i64,
    target_dataset: Option<String>,
    status: String,
    dataset_id: Option<String>,
    version: Option<i64>,
    table_name: Option<String>,
    blob_key: Option<String>,
    deduplicated: Option<i64>,
    format: Option<String>,
    compression: Option<String>,
    problem_count: Option<i64>,
    failed_step: Option<String>,
    failure_reason: Option<String>,
    failure_attempts: Option<i64>,
    failure_retryable: Option<i64>,
    received_at: i64,
    updated_at: i64,
    finished_at: Option<i64>,
    last_seq: i64,
    quality_json: Option<String>,
});

row_image!(StepRow, "upload_steps", key = ["upload_id", "step"], {
    upload_id: String,
    step: String,
    started_at: i64,
    ended_at: Option<i64>,
    outcome: Option<String>,
    start_seq: i64,
    end_seq: Option<i64>,
});

row_image!(DatasetRow, "datasets", key = ["id"], {
    id: String,
    owner: String,
    label: Option<String>,
    table_name: String,
    current_version: i64,
    schema_json: String,
    row_count: i64,
    size_bytes: i64,
    parquet_key: String,
    created_at: i64,
    updated_at: i64,
    deleted_at: Option<i64>,
    last_seq: i64,
    quality_json: Option<String>,
    bad_rows_default: Option<String>,
});

row_image!(VersionRow, "dataset_versions", key = ["dataset_id", "version"], {
    dataset_id: String,
    version: i64,
    parent_version: Option<i64>,
    schema_json: String,
    statistics_json: String,
    upload_id: String,
    parquet_key: String,
    size_bytes: i64,
    row_count: i64,
    registered_at: i64,
    seq: i64,
    quality_json: Option<String>,
});

row_image!(NotificationRow, "notifications", key = ["id"], {
    id: String,
    owner: String,
    kind: String,
    upload_id: String,
    dataset_id: Option<String>,
    message: String,
    created_at: i64,
    seq: i64,
    read_at: Option<i64>,
    read_seq: Option<i64>,
});

row_image!(AuditRow, "audit", key = ["seq"], {
    seq: i64,
    event_id: String,
    stored_at: i64,
    occurred_at: i64,
    kind: String,
    actor: String,
    causation_id: Option<String>,
    correlation_id: String,
    aggregate: String,
    dataset_id: Option<String>,
    summary: String,
});

row_image!(TableNameRow, "table_names", key = ["owner", "table_name"], {
    owner: String,
    table_name: String,
    dataset_id: String,
    upload_id: String,
    claimed_at: i64,
    claim_seq: i64,
});

row_image!(TokenRow, "tokens", key = ["owner", "token_id"], {
    owner: String,
    token_id: String,
    sha256: String,
    created_at: i64,
    revoked_at: Option<i64>,
    seq: i64,
});

/// Rows of one table keyed in memory: `None` is a row known to be absent (never there,
/// or deleted by this batch). Only keys in `dirty` are written back.
#[derive(Debug)]
pub(crate) struct Keyed<K, R> {
    pub rows: HashMap<K, Option<R>>,
    pub dirty: Vec<K>,
}

impl<K, R> Default for Keyed<K, R> {
    fn default() -> Self {
        Self {
            rows: HashMap::new(),
            dirty: Vec::new(),
        }
    }
}

impl<K: Eq + Hash + Clone, R> Keyed<K, R> {
    /// The row's current image; a key that was not loaded reads as absent.
    pub fn get(&self, key: &K) -> Option<&R> {
        self.rows.get(key).and_then(Option::as_ref)
    }

    /// The row to change in place, marking it for writing; `None` when absent.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut R> {
        let row = self.rows.get_mut(key)?.as_mut()?;
        // Marking twice is harmless: `changed` deduplicates.
        self.dirty.push(key.clone());
        Some(row)
    }

    pub fn put(&mut self, key: K, row: R) {
        self.dirty.push(key.clone());
        self.rows.insert(key, Some(row));
    }

    pub fn remove(&mut self, key: &K) {
        if self.rows.get(key).is_some_and(Option::is_some) {
            self.dirty.push(key.clone());
            self.rows.insert(key.clone(), None);
        }
    }

    /// Records what the database holds for `key` before the batch.
    pub fn loaded(&mut self, key: K, row: Option<R>) {
        self.rows.insert(key, row);
    }

    /// The dirty keys once each, split into rows to upsert and keys to delete.
    pub fn changed(&self) -> (Vec<&R>, Vec<&K>) {
        let mut seen = std::collections::HashSet::with_capacity(self.dirty.len());
        let (mut put, mut gone) = (Vec::new(), Vec::new());
        for key in &self.dirty {
            if !seen.insert(key) {
                continue;
            }
            match self.rows.get(key) {
                Some(Some(row)) => put.push(row),
                _ => gone.push(key),
            }
        }
        (put, gone)
    }
}

/// SQLite's limit on parameters in one statement (`SQLITE_MAX_VARIABLE_NUMBER`).
const SQLITE_MAX_PARAMS: usize = 32_766;

/// Rows per statement on SQLite: past a few hundred, longer statements gain nothing.
const SQLITE_MAX_ROWS: usize = 512;

/// The SQL for one table set on one backend.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sql {
    pub backend: Backend,
    pub tables: Tables,
}

impl Sql {
    /// `SELECT` of whole rows as JSON objects where `match_cols` is in the JSON array
    /// bound as `$1` (of values for one column, of arrays for several).
    fn select<R: RowImage>(&self, match_cols: &[&str]) -> String {
        let table = self.tables.table(R::TABLE);
        let (row, from) = match self.backend {
            Backend::Sqlite => (
                format!(
                    "json_object({})",
                    R::COLUMNS
                        .iter()
                        .map(|c| format!("'{c}', {c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                table.clone(),
            ),
            Backend::Postgres => ("row_to_json(t)::text".to_owned(), format!("{table} t")),
        };
        format!(
            "SELECT {row} AS image FROM {from} WHERE {}",
            self.match_json(match_cols)
        )
    }

    /// `(a, b) IN (…the JSON array bound as $1…)`.
    fn match_json(&self, cols: &[&str]) -> String {
        let list = cols.join(", ");
        let source = match (self.backend, cols.len()) {
            (Backend::Sqlite, 1) => "SELECT value FROM json_each($1)".to_owned(),
            (Backend::Sqlite, _) => format!(
                "SELECT {} FROM json_each($1)",
                (0..cols.len())
                    .map(|i| format!("json_extract(value, '$[{i}]')"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            (Backend::Postgres, 1) => "SELECT json_array_elements_text($1::json)".to_owned(),
            (Backend::Postgres, _) => format!(
                "SELECT {} FROM json_array_elements($1::json) x",
                (0..cols.len())
                    .map(|i| format!("x->>{i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        if cols.len() == 1 {
            format!("{list} IN ({source})")
        } else {
            format!("({list}) IN ({source})")
        }
    }

    /// Inserts rows, replacing any row with the same key: on Postgres the rows of the
    /// JSON array bound as `$1`, on SQLite `rows` rows of bound values.
    fn upsert<R: RowImage>(&self, rows: usize) -> String {
        let table = self.tables.table(R::TABLE);
        let cols = R::COLUMNS.join(", ");
        let source = match self.backend {
            Backend::Sqlite => {
                let n = R::COLUMNS.len();
                // Anonymous `?`: SQLite looks a named parameter (`$n`) up by a linear
                // scan, which makes binding thousands of them quadratic.
                let row = format!("({})", vec!["?"; n].join(", "));
                format!("VALUES {}", vec![row; rows].join(", "))
            }
            Backend::Postgres => {
                format!("SELECT {cols} FROM json_populate_recordset(NULL::{table}, $1::json)")
            }
        };
        let set: Vec<String> = R::COLUMNS
            .iter()
            .filter(|c| !R::KEY.contains(c))
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        let action = if set.is_empty() {
            "DO NOTHING".to_owned()
        } else {
            format!("DO UPDATE SET {}", set.join(", "))
        };
        format!(
            "INSERT INTO {table} ({cols}) {source} ON CONFLICT ({}) {action}",
            R::KEY.join(", ")
        )
    }

    fn delete<R: RowImage>(&self) -> String {
        format!(
            "DELETE FROM {} WHERE {}",
            self.tables.table(R::TABLE),
            self.match_json(R::KEY)
        )
    }

    /// The rows whose `match_cols` are among `keys`, e.g. every step of some uploads.
    pub async fn load<R: RowImage, K: Serialize>(
        &self,
        conn: &mut AnyConnection,
        match_cols: &[&str],
        keys: &[K],
    ) -> Result<Vec<R>, Error> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys = serde_json::to_string(keys).map_err(Error::Json)?;
        let rows = sqlx::query(AssertSqlSafe(self.select::<R>(match_cols)))
            .bind(keys)
            .fetch_all(&mut *conn)
            .await?;
        rows.iter()
            .map(|row| {
                let text: String = row.try_get("image")?;
                serde_json::from_str(&text).map_err(|source| Error::CorruptJson {
                    column: "(whole row)".to_owned(),
                    row: format!("{} {text}", R::TABLE),
                    source,
                })
            })
            .collect()
    }

    /// Writes `rows` (inserted or replacing the rows with their keys) in one statement.
    pub async fn write<R: RowImage>(
        &self,
        conn: &mut AnyConnection,
        rows: &[&R],
    ) -> Result<(), Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        match self.backend {
            Backend::Postgres => {
                let json = serde_json::to_string(rows).map_err(Error::Json)?;
                sqlx::query(AssertSqlSafe(self.upsert::<R>(0)))
                    .bind(json)
                    .execute(&mut *conn)
                    .await?;
            }
            Backend::Sqlite => {
                // SQLite reads bound values far faster than it takes JSON apart. Chunks
                // of a few sizes only (the largest that fits the parameter limit, then
                // powers of two), so the prepared statements are reused from batch to
                // batch.
                let most = (SQLITE_MAX_PARAMS / R::COLUMNS.len()).clamp(1, SQLITE_MAX_ROWS);
                let mut rest = rows;
                while !rest.is_empty() {
                    let take = if rest.len() >= most {
                        most
                    } else {
                        1 << rest.len().ilog2()
                    };
                    let (chunk, tail) = rest.split_at(take);
                    let sql = self.upsert::<R>(chunk.len());
                    let mut q = sqlx::query(AssertSqlSafe(sql));
                    for row in chunk {
                        q = row.bind_all(q);
                    }
                    q.execute(&mut *conn).await?;
                    rest = tail;
                }
            }
        }
        tracing::trace!(
            table = R::TABLE,
            rows = rows.len(),
            write_ms = started.elapsed().as_secs_f64() * 1e3,
            "rows written"
        );
        Ok(())
    }

    /// Deletes the rows with these keys (each a JSON value or array in `R::KEY` order).
    pub async fn delete_keys<R: RowImage, K: Serialize>(
        &self,
        conn: &mut AnyConnection,
        keys: &[K],
    ) -> Result<(), Error> {
        if keys.is_empty() {
            return Ok(());
        }
        let json = serde_json::to_string(keys).map_err(Error::Json)?;
        sqlx::query(AssertSqlSafe(self.delete::<R>()))
            .bind(json)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each image names exactly the columns the migrations create, in their order.
    #[tokio::test]
    async fn row_images_match_the_migrated_tables() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::Db::connect(&dir.path().join("w.db").display().to_string())
            .await
            .unwrap();
        async fn columns(db: &crate::Db, table: &str) -> Vec<String> {
            sqlx::query(AssertSqlSafe(format!(
                "SELECT name FROM pragma_table_info('{table}') ORDER BY cid"
            )))
            .fetch_all(db.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>("name"))
            .collect()
        }
        fn names<R: RowImage>() -> (&'static str, Vec<String>) {
            (
                R::TABLE,
                R::COLUMNS.iter().map(|c| (*c).to_owned()).collect(),
            )
        }
        for (table, want) in [
            names::<UploadRow>(),
            names::<StepRow>(),
            names::<DatasetRow>(),
            names::<VersionRow>(),
            names::<NotificationRow>(),
            names::<AuditRow>(),
            names::<TableNameRow>(),
            names::<TokenRow>(),
        ] {
            assert_eq!(columns(&db, table).await, want, "columns of {table}");
        }
    }
}
