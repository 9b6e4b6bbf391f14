//! Read models built from the event log: the catalog, upload status with its step
//! log, a notification feed per owner, the audit trail and claimed table names.
//!
//! # How it fits together
//!
//! - [`Projector`] follows the JetStream log in order from its checkpoint and applies
//!   each batch of events *and* the new checkpoint in one SQL transaction, so a crash
//!   never applies an event twice or skips one. [`run`] is what a service starts
//!   in-process; [`catch_up`] returns once the tables reach the stream's current last
//!   sequence; [`lag`] tells how far behind they are.
//! - A batch is applied set-based (`apply.rs`, `rows.rs`): the rows its events start
//!   from are read with one query per table, the events are folded over them in
//!   memory in log order, and every changed row is written once, one statement per
//!   table. The fold is the meaning of every event for the tables, deterministic:
//!   times come from the envelope and the server's `stored_at`, never from a clock, so
//!   the rows do not depend on where batches begin and end (tests check this with
//!   batches of 5 to 16,384 events).
//! - [`query`] is what the CLI and the gateway read.
//! - [`replay()`] rebuilds everything from sequence 1 into the shadow (`_new`) tables,
//!   without their secondary indexes, while the live ones keep serving; then one
//!   transaction drops the live tables, renames the shadow ones into their place and
//!   builds the indexes. It never moves the tables backwards, and a running projector
//!   follows on from the swapped-in checkpoint. [`build_until`] builds the projections
//!   as of a sequence or a time into a separate database, leaving the live one alone.
//! - [`snapshot()`] renders every row the same way on both databases, with a digest:
//!   what the tests compare across replays, kills and databases.
//!
//! # One schema, two databases
//!
//! The database is SQLite (embedded default: a file such as `./data/weir.db`) or
//! Postgres (`postgres://…`), through `sqlx::Any`. The approach: **one set of
//! migrations in portable SQL** (`migrations/*.sql`), run unchanged on both by sqlx's
//! migrator, and statements written in the common subset: `$n` parameters, `ON
//! CONFLICT … DO UPDATE/NOTHING`, `LIMIT/OFFSET`, `LOWER(…) LIKE … ESCAPE`. Column types
//! are restricted to what both store the same way: ids and names `TEXT`, sequences,
//! counts, sizes and flags `BIGINT`, times `BIGINT` microseconds since the epoch (UTC;
//! rendered as RFC 3339 by the query structs), JSON as `TEXT`. The only places that
//! know which database is behind the pool are `db.rs` (SQLite write transactions start
//! with `BEGIN IMMEDIATE`, the file runs in WAL mode with `synchronous = NORMAL`;
//! Postgres batches commit with `synchronous_commit = off`: each says there what a
//! crash can cost and why the log makes that safe; batches go through a second pool of
//! the concrete driver), `rows.rs` (rows are read as one JSON key array per table,
//! `json_each` on SQLite and `json_array_elements` on Postgres, and written through
//! the concrete drivers: on SQLite one prepared upsert per table stepped once per row
//! with the values bound in place, on Postgres one `INSERT … SELECT FROM unnest(…)`
//! per table with an array per column) and the swap in `replay.rs`.
//!
//! Each table and index name in the migrations carries a table-set marker, so the same
//! files also create the replay's shadow tables (`datasets_new`, …): see [`Tables`].
//!
//! Marking a notification read is an event like any other (`NotificationRead`): the
//! read columns, like every column, change only in [`apply()`].
//!
//! # Invariants
//!
//! - `apply` reads no clock, no network, no randomness; the projector's only network
//!   use is reading the journal.
//! - Rows and checkpoint move together: the batch transaction first moves the
//!   checkpoint conditionally (`… WHERE seq = <expected>`), so two writers can never
//!   both apply the same events.

pub mod apply;
pub mod db;
mod fresh;
pub mod projector;
pub mod query;
pub mod read_views;
pub mod refs;
pub mod replay;
pub mod retention;
mod rows;
pub mod schema;
pub mod snapshot;

pub use apply::{FieldView, ProblemView, QualityView, Refs, SchemaView};
pub use db::{Backend, Db};
pub use projector::{Progress, Projector, Until, catch_up, lag, run};
pub use query::{
    AuditEntry, Dataset, DatasetFilter, DatasetPage, DatasetStatus, DatasetSummary, DatasetVersion,
    EntityId, Failure, Grant, Notification, OwnedTable, StepLog, UploadStatus, access, dataset,
    dataset_for, grants, history, list_datasets, notifications, owner_tables, token_owner,
    upload_status,
};
pub use replay::{ReplayReport, build_until, replay};
pub use schema::{TABLES, Tables, migrator};
pub use snapshot::{Snapshot, TableRows, snapshot};

/// Everything that can go wrong in this crate, by how a caller handles it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database refused or could not be reached; [`Error::is_transient`] tells
    /// whether retrying can help.
    #[error("projections database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("projections migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Reading the log failed: NATS (transient) or an event this build cannot decode
    /// (upgrade weir; the projector stops rather than skip it).
    #[error("event log: {0}")]
    Read(#[from] weir_journal::ReadError),
    /// A value could not be turned into JSON: a bug.
    #[error("cannot encode a projection value as JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// A JSON column does not parse: the database was edited by hand or is damaged.
    #[error("column {column} of {row} holds invalid JSON: {source}")]
    CorruptJson {
        column: String,
        row: String,
        #[source]
        source: serde_json::Error,
    },
    /// A user error in configuration.
    #[error("{0:?} is not a projections database: use a file path, sqlite://… or postgres://…")]
    UnsupportedUrl(String),
    #[error("cannot create folder {path} for the projections database: {source}")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A point-in-time build was pointed at a database that already holds projections.
    #[error(
        "the point-in-time target already holds projections up to sequence {0}; give it a fresh database"
    )]
    TargetNotEmpty(u64),
    /// The live projector kept getting ahead of a replay; try again when the log is
    /// quieter.
    #[error("replay could not catch up with the live projector after {0} attempts")]
    ReplayBehind(u32),
    /// A column holds a value no event writes: the database was edited or is damaged.
    #[error("projections database holds an impossible value: {0}")]
    Corrupt(String),
}

impl Error {
    /// A later attempt may succeed (database or NATS unreachable, busy, timed out, the
    /// database session ended by the server).
    pub fn is_transient(&self) -> bool {
        match self {
            // The server ended the session (a cut connection, a shutdown or restart, still
            // starting up): a new connection will do. Found by `cli/tests/faults_pg.rs`.
            Self::Database(sqlx::Error::Database(e)) => e
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some_and(|e| {
                    e.code().starts_with("08") || matches!(e.code(), "57P01" | "57P02" | "57P03")
                }),
            Self::Database(e) => matches!(
                e,
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed
            ),
            Self::Read(weir_journal::ReadError::Nats(_)) => true,
            Self::ReplayBehind(_) => true,
            _ => false,
        }
    }
}
