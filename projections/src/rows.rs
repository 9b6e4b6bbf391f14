//! Row images and set-based I/O: each projection table as a Rust struct, loaded by key
//! and written back in bulk.
//!
//! A batch of events is folded in memory (see `apply.rs`) into the final image of every
//! row it touches; this module reads the images those events start from (keys as one
//! JSON array: `json_each` on SQLite, `json_array_elements` on Postgres) and writes the
//! results, table by table, through the concrete drivers: on SQLite a prepared
//! single-row upsert stepped once per row with the row's values bound in place, on
//! Postgres one `INSERT … SELECT * FROM unnest(…) ON CONFLICT` with an array per
//! column. No JSON is built or parsed on the write path, and no value is copied more
//! than once on its way to the database. This is the one place where the SQL
//! differs between the two databases.

use std::collections::HashMap;
use std::hash::Hash;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::{AssertSqlSafe, Row};

use crate::Error;
use crate::db::{Backend, Conn};
use crate::schema::Tables;

/// One projection table as a Rust struct: its field names are the column names, in the
/// migrations' order.
pub(crate) trait RowImage: Serialize + DeserializeOwned + Clone {
    const TABLE: &'static str;
    const COLUMNS: &'static [&'static str];
    /// The primary key's columns.
    const KEY: &'static [&'static str];
    /// Each column's kind, in `COLUMNS` order.
    const KINDS: &'static [Kind];

    /// Hands every column's value to `out`, in `COLUMNS` order, borrowed from the row.
    fn put_all<'a, S: ColumnSink<'a>>(&'a self, out: &mut S);
}

/// Where a row's values go, one column after the other: a SQLite statement's bindings
/// or a line of Postgres `COPY` text. Values are borrowed, never copied on the way.
pub(crate) trait ColumnSink<'a> {
    fn text(&mut self, value: &'a str);
    fn int(&mut self, value: i64);
    fn null(&mut self);
}

/// What a column holds, as far as binding it is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Text,
    Int,
}

/// A column value as the sinks take it.
trait Column {
    const KIND: Kind;
    fn put<'a, S: ColumnSink<'a>>(&'a self, out: &mut S);
}

impl Column for String {
    const KIND: Kind = Kind::Text;
    fn put<'a, S: ColumnSink<'a>>(&'a self, out: &mut S) {
        out.text(self);
    }
}

impl Column for Option<String> {
    const KIND: Kind = Kind::Text;
    fn put<'a, S: ColumnSink<'a>>(&'a self, out: &mut S) {
        match self {
            Some(v) => out.text(v),
            None => out.null(),
        }
    }
}

impl Column for i64 {
    const KIND: Kind = Kind::Int;
    fn put<'a, S: ColumnSink<'a>>(&'a self, out: &mut S) {
        out.int(*self);
    }
}

impl Column for Option<i64> {
    const KIND: Kind = Kind::Int;
    fn put<'a, S: ColumnSink<'a>>(&'a self, out: &mut S) {
        match self {
            Some(v) => out.int(*v),
            None => out.null(),
        }
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
            const KINDS: &'static [Kind] = &[$(<$ty as Column>::KIND),+];

            fn put_all<'a, S: ColumnSink<'a>>(&'a self, out: &mut S) {
                $(Column::put(&self.$field, out);)+
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
    // The step log (migration 0006): when each step started and ended, and how.
    upload_started_at: Option<i64>,
    upload_ended_at: Option<i64>,
    upload_outcome: Option<String>,
    combine_started_at: Option<i64>,
    combine_ended_at: Option<i64>,
    combine_outcome: Option<String>,
    infer_started_at: Option<i64>,
    infer_ended_at: Option<i64>,
    infer_outcome: Option<String>,
    register_started_at: Option<i64>,
    register_ended_at: Option<i64>,
    register_outcome: Option<String>,
});

/// One step's cells of an upload row: the step log, one run of each step per upload.
pub(crate) struct StepCells<'a> {
    pub started_at: &'a mut Option<i64>,
    pub ended_at: &'a mut Option<i64>,
    pub outcome: &'a mut Option<String>,
}

impl UploadRow {
    /// The cells of `step`.
    pub fn step(&mut self, step: weir_events::Step) -> StepCells<'_> {
        use weir_events::Step;
        let (started_at, ended_at, outcome) = match step {
            Step::Upload => (
                &mut self.upload_started_at,
                &mut self.upload_ended_at,
                &mut self.upload_outcome,
            ),
            Step::Combine => (
                &mut self.combine_started_at,
                &mut self.combine_ended_at,
                &mut self.combine_outcome,
            ),
            Step::Infer => (
                &mut self.infer_started_at,
                &mut self.infer_ended_at,
                &mut self.infer_outcome,
            ),
            Step::Register => (
                &mut self.register_started_at,
                &mut self.register_ended_at,
                &mut self.register_outcome,
            ),
        };
        StepCells {
            started_at,
            ended_at,
            outcome,
        }
    }
}

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
    refs_json: Option<String>,
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
    schema_diff_json: Option<String>,
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

/// One audit row per event: the most numerous image, so its eight texts share one
/// allocation instead of one each (a batch of 16,384 events made and freed about
/// 130,000 strings for them). Built with [`AuditRow::new`] and one `text` or `opt` per
/// text column, in the columns' order.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct AuditRow {
    pub seq: i64,
    pub stored_at: i64,
    pub occurred_at: i64,
    /// event_id, kind, actor, causation_id, correlation_id, aggregate, dataset_id and
    /// summary, one after the other.
    texts: String,
    /// Where each text ends in `texts`.
    ends: [u32; AuditRow::TEXTS],
    /// Bit `i` set: text `i` is NULL.
    nulls: u8,
    /// Texts written so far.
    written: u8,
}

impl AuditRow {
    const TEXTS: usize = 8;

    pub fn new(seq: i64, stored_at: i64, occurred_at: i64) -> Self {
        Self {
            seq,
            stored_at,
            occurred_at,
            texts: String::with_capacity(192),
            ends: [0; Self::TEXTS],
            nulls: 0,
            written: 0,
        }
    }

    /// The next text column, written by its `Display`.
    pub fn text(mut self, value: impl std::fmt::Display) -> Self {
        use std::fmt::Write as _;
        let _ = write!(self.texts, "{value}");
        self.end()
    }

    /// The next text column, NULL when `None`.
    pub fn opt(mut self, value: Option<impl std::fmt::Display>) -> Self {
        match value {
            Some(v) => self.text(v),
            None => {
                self.nulls |= 1 << self.written;
                self.end()
            }
        }
    }

    fn end(mut self) -> Self {
        let i = usize::from(self.written);
        assert!(i < Self::TEXTS, "an audit row has {} texts", Self::TEXTS);
        self.ends[i] = u32::try_from(self.texts.len()).expect("an audit row under 4 GiB");
        self.written += 1;
        self
    }

    fn put_text<'a, S: ColumnSink<'a>>(&'a self, i: usize, out: &mut S) {
        debug_assert_eq!(usize::from(self.written), Self::TEXTS, "every text written");
        if self.nulls & (1 << i) != 0 {
            out.null();
        } else {
            let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
            out.text(&self.texts[start..self.ends[i] as usize]);
        }
    }
}

impl RowImage for AuditRow {
    const TABLE: &'static str = "audit";
    const COLUMNS: &'static [&'static str] = &[
        "seq",
        "event_id",
        "stored_at",
        "occurred_at",
        "kind",
        "actor",
        "causation_id",
        "correlation_id",
        "aggregate",
        "dataset_id",
        "summary",
    ];
    const KEY: &'static [&'static str] = &["seq"];
    const KINDS: &'static [Kind] = &[
        Kind::Int,
        Kind::Text,
        Kind::Int,
        Kind::Int,
        Kind::Text,
        Kind::Text,
        Kind::Text,
        Kind::Text,
        Kind::Text,
        Kind::Text,
        Kind::Text,
    ];

    fn put_all<'a, S: ColumnSink<'a>>(&'a self, out: &mut S) {
        out.int(self.seq);
        self.put_text(0, out);
        out.int(self.stored_at);
        out.int(self.occurred_at);
        for i in 1..Self::TEXTS {
            self.put_text(i, out);
        }
    }
}

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

row_image!(GrantRow, "dataset_grants", key = ["dataset_id", "grantee"], {
    dataset_id: String,
    grantee: String,
    level: String,
    granted_by: String,
    granted_at: i64,
    seq: i64,
});

row_image!(RefRow, "object_refs", key = ["object_key", "holder"], {
    object_key: String,
    holder: String,
    role: String,
    owner: String,
    upload_id: String,
    dataset_id: Option<String>,
    live: i64,
    created_at: i64,
    created_seq: i64,
    ended_by: Option<String>,
    ended_at: Option<i64>,
    ended_seq: Option<i64>,
    deleted_at: Option<i64>,
    deleted_seq: Option<i64>,
});

/// Rows of one table keyed in memory: `None` is a row known to be absent (never there,
/// or deleted by this batch). Only rows marked dirty are written back, in key order; a
/// row made and removed within the batch is not written at all.
#[derive(Debug)]
pub(crate) struct Keyed<K, R> {
    rows: HashMap<K, Slot<R>>,
}

#[derive(Debug)]
struct Slot<R> {
    row: Option<R>,
    dirty: bool,
    /// The database may hold the key when the batch commits (the batch started with a
    /// row for it): removing it then takes a `DELETE`, otherwise nothing.
    stored: bool,
}

impl<K, R> Default for Keyed<K, R> {
    fn default() -> Self {
        Self {
            rows: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash + Clone, R> Keyed<K, R> {
    /// What is known of `key`: `Some(None)` for a row known to be absent, `None` when
    /// the key was never loaded.
    pub fn image(&self, key: &K) -> Option<&Option<R>> {
        self.rows.get(key).map(|slot| &slot.row)
    }

    /// The row's current image; a key that was not loaded reads as absent.
    pub fn get(&self, key: &K) -> Option<&R> {
        self.rows.get(key).and_then(|slot| slot.row.as_ref())
    }

    /// The row to change in place, marking it for writing; `None` when absent.
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut R>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        let slot = self.rows.get_mut(key)?;
        let row = slot.row.as_mut()?;
        slot.dirty = true;
        Some(row)
    }

    pub fn put(&mut self, key: K, row: R) {
        match self.rows.get_mut(&key) {
            Some(slot) => {
                slot.row = Some(row);
                slot.dirty = true;
            }
            None => {
                self.rows.insert(
                    key,
                    Slot {
                        row: Some(row),
                        dirty: true,
                        stored: false,
                    },
                );
            }
        }
    }

    pub fn remove(&mut self, key: &K) {
        if let Some(slot) = self.rows.get_mut(key)
            && slot.row.is_some()
        {
            slot.row = None;
            slot.dirty = slot.stored;
        }
    }

    /// The keys of the rows the batch writes or deletes.
    pub fn written_keys(&self) -> impl Iterator<Item = &K> {
        self.rows
            .iter()
            .filter(|(_, slot)| slot.dirty)
            .map(|(k, _)| k)
    }

    /// Every key known, with its image or `None` for a row known to be absent.
    pub fn known(&self) -> impl Iterator<Item = (&K, Option<&R>)> {
        self.rows.iter().map(|(k, slot)| (k, slot.row.as_ref()))
    }

    /// Records what the database holds for `key` before the batch.
    pub fn loaded(&mut self, key: K, row: Option<R>) {
        let stored = row.is_some();
        self.rows.insert(
            key,
            Slot {
                row,
                dirty: false,
                stored,
            },
        );
    }

    /// The dirty keys once each, in key order, split into rows to upsert and keys to
    /// delete. Key order is the primary key's order: a batch's rows then go into each
    /// B-tree from left to right, touching every page once, instead of all over it
    /// (object keys are content hashes, so the order they are made in is random).
    pub fn changed(&self) -> (Vec<&R>, Vec<&K>)
    where
        K: Ord,
    {
        let mut dirty: Vec<(&K, Option<&R>)> = self
            .rows
            .iter()
            .filter(|(_, slot)| slot.dirty)
            .map(|(key, slot)| (key, slot.row.as_ref()))
            .collect();
        dirty.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let (mut put, mut gone) = (Vec::with_capacity(dirty.len()), Vec::new());
        for (key, row) in dirty {
            match row {
                Some(row) => put.push(row),
                None => gone.push(key),
            }
        }
        (put, gone)
    }
}

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

    /// `INSERT INTO <table> (<columns>) <source> ON CONFLICT (<key>) DO UPDATE …`:
    /// inserts rows, replacing any row with the same key.
    fn upsert<R: RowImage>(&self, source: &str) -> String {
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
            "INSERT INTO {} ({}) {source} ON CONFLICT ({}) {action}",
            self.tables.table(R::TABLE),
            R::COLUMNS.join(", "),
            R::KEY.join(", ")
        )
    }

    /// One row of anonymous parameters: SQLite's statement for one row.
    fn values<R: RowImage>() -> String {
        format!("VALUES ({})", vec!["?"; R::COLUMNS.len()].join(", "))
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
        conn: &mut Conn<'_>,
        match_cols: &[&str],
        keys: &[K],
    ) -> Result<Vec<R>, Error> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys = serde_json::to_string(keys).map_err(Error::Json)?;
        let sql = AssertSqlSafe(self.select::<R>(match_cols));
        let images: Vec<String> = match conn {
            Conn::Sqlite(c) => sqlx::query(sql)
                .bind(keys)
                .fetch_all(&mut **c)
                .await?
                .iter()
                .map(|row| row.try_get("image"))
                .collect::<Result<_, _>>()?,
            Conn::Postgres(c) => sqlx::query(sql)
                .bind(keys)
                .fetch_all(&mut **c)
                .await?
                .iter()
                .map(|row| row.try_get("image"))
                .collect::<Result<_, _>>()?,
        };
        images
            .iter()
            .map(|text| {
                serde_json::from_str(text).map_err(|source| Error::CorruptJson {
                    column: "(whole row)".to_owned(),
                    row: format!("{} {text}", R::TABLE),
                    source,
                })
            })
            .collect()
    }

    /// Writes `rows`, inserted or replacing the rows with their keys.
    ///
    /// SQLite: one prepared single-row upsert, stepped once per row with the values
    /// bound in place (no copy, no SQL text per row). Postgres: one statement, `INSERT
    /// … SELECT * FROM unnest($1::text[], $2::int8[], …) ON CONFLICT …`, an array per
    /// column. (Not `COPY`: a batch dropped mid-`COPY` leaves sqlx's connection out of
    /// step with the server, and a projector must survive being dropped anywhere.)
    pub async fn write<R: RowImage>(&self, conn: &mut Conn<'_>, rows: &[&R]) -> Result<(), Error> {
        self.put(conn, rows, false).await
    }

    /// Inserts `rows` into an append-only table (audit): every row is new, written once
    /// by the batch whose checkpoint move covers its sequence, so there is no conflict
    /// to resolve; a row already there is an error, as it would be a bug.
    pub async fn append<R: RowImage>(&self, conn: &mut Conn<'_>, rows: &[&R]) -> Result<(), Error> {
        self.put(conn, rows, true).await
    }

    async fn put<R: RowImage>(
        &self,
        conn: &mut Conn<'_>,
        rows: &[&R],
        append: bool,
    ) -> Result<(), Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        match conn {
            Conn::Sqlite(c) => {
                let sql = if append {
                    format!(
                        "INSERT INTO {} ({}) {}",
                        self.tables.table(R::TABLE),
                        R::COLUMNS.join(", "),
                        Self::values::<R>()
                    )
                } else {
                    self.upsert::<R>(&Self::values::<R>())
                };
                {
                    let mut handle = c.lock_handle().await?;
                    // SAFETY: the handle is an open connection, locked for this scope,
                    // in which the statement is prepared, run and finalised.
                    let mut statement =
                        unsafe { sqlite::Statement::prepare(handle.as_raw_handle(), &sql)? };
                    statement.run(rows)?;
                }
                // The rows went in synchronously, on this task's thread: let the
                // runtime's other tasks (the log reader) run before the next table.
                // It is also where a dropped batch stops, its transaction rolled back.
                tokio::task::yield_now().await;
            }
            Conn::Postgres(c) => {
                // One array per column, bound as parameters and unnested into rows by
                // the server: no JSON, and values are copied once, into the message.
                let mut arrays = Arrays::new(R::KINDS, rows.len());
                for row in rows {
                    arrays.next = 0;
                    row.put_all(&mut arrays);
                }
                let unnest = format!(
                    "SELECT * FROM unnest({})",
                    R::KINDS
                        .iter()
                        .enumerate()
                        .map(|(i, kind)| match kind {
                            Kind::Text => format!("${}::text[]", i + 1),
                            Kind::Int => format!("${}::int8[]", i + 1),
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let sql = if append {
                    format!(
                        "INSERT INTO {} ({}) {unnest}",
                        self.tables.table(R::TABLE),
                        R::COLUMNS.join(", ")
                    )
                } else {
                    self.upsert::<R>(&unnest)
                };
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for column in arrays.columns {
                    q = match column {
                        Array::Text(v) => q.bind(v),
                        Array::Int(v) => q.bind(v),
                    };
                }
                q.execute(&mut **c).await?;
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
        conn: &mut Conn<'_>,
        keys: &[K],
    ) -> Result<(), Error> {
        if keys.is_empty() {
            return Ok(());
        }
        let json = serde_json::to_string(keys).map_err(Error::Json)?;
        let sql = AssertSqlSafe(self.delete::<R>());
        match conn {
            Conn::Sqlite(c) => {
                sqlx::query(sql).bind(json).execute(&mut **c).await?;
            }
            Conn::Postgres(c) => {
                sqlx::query(sql).bind(json).execute(&mut **c).await?;
            }
        }
        Ok(())
    }
}

/// Rows turned column-major: one array per column, for Postgres' `unnest`.
struct Arrays<'a> {
    columns: Vec<Array<'a>>,
    /// The column the next value goes to.
    next: usize,
}

enum Array<'a> {
    Text(Vec<Option<&'a str>>),
    Int(Vec<Option<i64>>),
}

impl<'a> Arrays<'a> {
    fn new(kinds: &[Kind], rows: usize) -> Self {
        Self {
            columns: kinds
                .iter()
                .map(|kind| match kind {
                    Kind::Text => Array::Text(Vec::with_capacity(rows)),
                    Kind::Int => Array::Int(Vec::with_capacity(rows)),
                })
                .collect(),
            next: 0,
        }
    }

    fn column(&mut self) -> &mut Array<'a> {
        let i = self.next;
        self.next += 1;
        &mut self.columns[i]
    }
}

impl<'a> ColumnSink<'a> for Arrays<'a> {
    fn text(&mut self, value: &'a str) {
        if let Array::Text(v) = self.column() {
            v.push(Some(value));
        }
    }

    fn int(&mut self, value: i64) {
        if let Array::Int(v) = self.column() {
            v.push(Some(value));
        }
    }

    fn null(&mut self) {
        match self.column() {
            Array::Text(v) => v.push(None),
            Array::Int(v) => v.push(None),
        }
    }
}

/// SQLite's C API for the one thing sqlx does not offer: stepping a prepared statement
/// with values bound in place (`SQLITE_STATIC`), on sqlx's own connection and inside
/// its transaction. Everything unsafe in this crate is in here.
mod sqlite {
    use std::ffi::{CStr, c_int};
    use std::marker::PhantomData;
    use std::ptr::NonNull;

    use libsqlite3_sys as ffi;

    use super::{ColumnSink, RowImage};
    use crate::Error;

    /// A prepared statement, finalised when dropped.
    pub(super) struct Statement {
        db: NonNull<ffi::sqlite3>,
        raw: NonNull<ffi::sqlite3_stmt>,
    }

    impl Statement {
        /// # Safety
        ///
        /// `db` is an open connection that nothing else uses while the statement lives.
        pub(super) unsafe fn prepare(db: NonNull<ffi::sqlite3>, sql: &str) -> Result<Self, Error> {
            let mut raw = std::ptr::null_mut();
            let len = c_int::try_from(sql.len()).map_err(|_| failure("statement too long"))?;
            // SAFETY: `sql` is valid for `len` bytes; `raw` receives the statement.
            let rc = unsafe {
                ffi::sqlite3_prepare_v2(
                    db.as_ptr(),
                    sql.as_ptr().cast(),
                    len,
                    &mut raw,
                    std::ptr::null_mut(),
                )
            };
            match NonNull::new(raw) {
                Some(raw) if rc == ffi::SQLITE_OK => Ok(Self { db, raw }),
                _ => Err(last_error(db, rc)),
            }
        }

        /// Binds and steps the statement once per row.
        pub(super) fn run<R: RowImage>(&mut self, rows: &[&R]) -> Result<(), Error> {
            for row in rows {
                let mut bind = Bind {
                    stmt: self.raw,
                    next: 1,
                    rc: ffi::SQLITE_OK,
                    _values: PhantomData,
                };
                row.put_all(&mut bind);
                if bind.rc != ffi::SQLITE_OK {
                    // SAFETY: the statement is valid; resetting it is always allowed.
                    unsafe { ffi::sqlite3_reset(self.raw.as_ptr()) };
                    return Err(last_error(self.db, bind.rc));
                }
                // SAFETY: every parameter is bound to a value that `row` owns, and
                // `row` outlives this step; the reset ends the statement's use of them.
                let rc = unsafe { ffi::sqlite3_step(self.raw.as_ptr()) };
                let reset = unsafe { ffi::sqlite3_reset(self.raw.as_ptr()) };
                if rc != ffi::SQLITE_DONE {
                    return Err(last_error(
                        self.db,
                        if reset == ffi::SQLITE_OK { rc } else { reset },
                    ));
                }
            }
            Ok(())
        }
    }

    impl Drop for Statement {
        fn drop(&mut self) {
            // SAFETY: the statement was prepared on `db` and is finalised once.
            unsafe { ffi::sqlite3_finalize(self.raw.as_ptr()) };
        }
    }

    /// Binds a row's values to the statement's parameters, in order, without copying
    /// them: they must stay put until the step that uses them is over.
    struct Bind<'a> {
        stmt: NonNull<ffi::sqlite3_stmt>,
        next: c_int,
        rc: c_int,
        _values: PhantomData<&'a str>,
    }

    impl Bind<'_> {
        fn record(&mut self, rc: c_int) {
            if self.rc == ffi::SQLITE_OK {
                self.rc = rc;
            }
            self.next += 1;
        }
    }

    impl<'a> ColumnSink<'a> for Bind<'a> {
        fn text(&mut self, value: &'a str) {
            // SAFETY: `value` lives for 'a, past the step (see `run`).
            let rc = unsafe {
                ffi::sqlite3_bind_text64(
                    self.stmt.as_ptr(),
                    self.next,
                    value.as_ptr().cast(),
                    value.len() as u64,
                    ffi::SQLITE_STATIC(),
                    ffi::SQLITE_UTF8 as u8,
                )
            };
            self.record(rc);
        }

        fn int(&mut self, value: i64) {
            // SAFETY: plain value binding on a valid statement.
            let rc = unsafe { ffi::sqlite3_bind_int64(self.stmt.as_ptr(), self.next, value) };
            self.record(rc);
        }

        fn null(&mut self) {
            // SAFETY: plain value binding on a valid statement.
            let rc = unsafe { ffi::sqlite3_bind_null(self.stmt.as_ptr(), self.next) };
            self.record(rc);
        }
    }

    fn failure(message: &str) -> Error {
        Error::Database(sqlx::Error::Protocol(format!("sqlite: {message}")))
    }

    fn last_error(db: NonNull<ffi::sqlite3>, rc: c_int) -> Error {
        // SAFETY: `db` is open; the message is copied before the next call on it.
        let message = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db.as_ptr())) };
        failure(&format!("{} (code {rc})", message.to_string_lossy()))
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
            names::<DatasetRow>(),
            names::<VersionRow>(),
            names::<NotificationRow>(),
            names::<AuditRow>(),
            names::<TableNameRow>(),
            names::<TokenRow>(),
            names::<GrantRow>(),
            names::<RefRow>(),
        ] {
            assert_eq!(columns(&db, table).await, want, "columns of {table}");
        }
    }
}
