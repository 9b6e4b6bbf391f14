//! SQL over an owner's registered datasets, with DataFusion.
//!
//! A query runs in a session of its own that holds only what the caller may read: the
//! catalog `weir` with one schema per visible owner, today only the caller's, whose
//! tables are the caller's active datasets under their table names. Only the tables a
//! statement names are looked up (one catalog query for the owner's names, one per
//! table for its versions) and registered, each as the Parquet file of the version it
//! names: `orders` is the head, `"orders@v2"`, `"orders@2"`, `"orders@main"`, a tag or
//! a branch name that version. The files are read through the same object store the
//! pipeline writes to, registered with DataFusion under the `weir://objects` URL.
//!
//! Only queries run: DDL, DML and session statements (`CREATE EXTERNAL TABLE`, `COPY`,
//! `SET`) are refused, so a statement cannot reach a file or setting outside its tables.
//! Results stream ([`Rows`]) under a row limit and a deadline that cover planning and
//! reading; a query that runs past its deadline is dropped, which cancels its work.
//!
//! Sharing by grant will add schemas named after other owners (`alice.orders`); the
//! lookup in [`catalog`] already takes the owner from the reference.

mod catalog;
pub mod output;

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use object_store::ObjectStore;
use tokio::time::Instant;
use weir_events::Owner;
use weir_projections::Db;

/// The URL DataFusion knows weir's object store by; a table's file is
/// `weir://objects/<object key>`.
const STORE_URL: &str = "weir://objects";

/// The catalog name in SQL (`weir.<owner>.<table>`).
pub const CATALOG: &str = "weir";

/// Default deadline of a query.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Default memory all queries of one [`Engine`] may hold at once (sorts, joins,
/// aggregations); a query that needs more fails with a clear error.
pub const DEFAULT_MEMORY_LIMIT: usize = 1 << 30;

/// What can go wrong, by who can fix it: [`QueryError::is_caller_error`].
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A table the statement names is not one of the caller's.
    #[error("no such table {name}{hint}")]
    NoSuchTable { name: String, hint: String },
    /// `table@ref` names no version, branch or tag of the table.
    #[error(
        "table {table} has no version, branch or tag {reference:?} (use @vN, @main, a branch or a tag)"
    )]
    NoSuchVersion { table: String, reference: String },
    /// The SQL does not parse or plan (syntax, unknown column or function, types).
    #[error("{0}")]
    Sql(String),
    /// A statement other than a query.
    #[error("only queries (SELECT, WITH, VALUES, EXPLAIN) can run here: {0}")]
    NotAQuery(String),
    /// The query ran past its deadline and was stopped.
    #[error("the query did not finish within its time limit of {} s", .0.as_secs_f64())]
    Timeout(Duration),
    /// The query failed while it ran on valid input (division by zero, a cast that
    /// does not fit, more memory than the limit).
    #[error("the query failed: {0}")]
    Execution(String),
    /// A dataset's file could not be read: the store is unreachable or the file gone.
    #[error("reading a dataset's Parquet file: {0}")]
    Storage(String),
    /// The catalog could not be read.
    #[error("catalog: {0}")]
    Catalog(#[from] weir_projections::Error),
    /// A bug or a damaged catalog.
    #[error("internal error: {0}")]
    Internal(String),
}

impl QueryError {
    /// The caller's statement is at fault (a 400, not a 500); retrying it as it is
    /// fails again.
    pub fn is_caller_error(&self) -> bool {
        matches!(
            self,
            Self::NoSuchTable { .. }
                | Self::NoSuchVersion { .. }
                | Self::Sql(_)
                | Self::NotAQuery(_)
                | Self::Timeout(_)
                | Self::Execution(_)
        )
    }

    /// A later attempt may succeed (database, NATS or object store unreachable).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Storage(_) => true,
            Self::Catalog(e) => e.is_transient(),
            _ => false,
        }
    }

    fn from_datafusion(e: DataFusionError) -> Self {
        let message = e.strip_backtrace();
        match e.find_root() {
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_)
            | DataFusionError::Configuration(_) => Self::Sql(message),
            DataFusionError::ObjectStore(_)
            | DataFusionError::IoError(_)
            | DataFusionError::ParquetError(_) => Self::Storage(message),
            DataFusionError::Internal(_) | DataFusionError::ExecutionJoin(_) => {
                Self::Internal(message)
            }
            _ => Self::Execution(message),
        }
    }
}

/// How much a query may return and for how long it may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Rows returned at most; [`Rows::truncated`] tells whether there were more.
    /// `None`: no limit.
    pub max_rows: Option<u64>,
    /// From the start of planning to the last row read.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_rows: Some(10_000),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Runs queries for owners over the catalog and the object store. Cheap to clone;
/// one per process: its memory pool bounds all the queries it runs together.
#[derive(Clone)]
pub struct Engine {
    db: Db,
    runtime: Arc<RuntimeEnv>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine reading datasets from `store` (the pipeline's own object store) as
    /// the catalog in `db` describes them.
    pub fn new(db: Db, store: Arc<dyn ObjectStore>) -> Result<Self, QueryError> {
        Self::with_memory_limit(db, store, DEFAULT_MEMORY_LIMIT)
    }

    pub fn with_memory_limit(
        db: Db,
        store: Arc<dyn ObjectStore>,
        memory_limit: usize,
    ) -> Result<Self, QueryError> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(memory_limit, 1.0)
            .build_arc()
            .map_err(QueryError::from_datafusion)?;
        let url = url::Url::parse(STORE_URL).map_err(|e| QueryError::Internal(e.to_string()))?;
        runtime.register_object_store(&url, store);
        Ok(Self { db, runtime })
    }

    /// Plans `sql` for `owner` and starts it. The rows come from [`Rows::next_batch`];
    /// dropping [`Rows`] stops the query.
    pub async fn query(
        &self,
        owner: &Owner,
        sql: &str,
        limits: Limits,
    ) -> Result<Rows, QueryError> {
        let deadline = Instant::now() + limits.timeout;
        let timeout = || QueryError::Timeout(limits.timeout);
        let start = async {
            let ctx = self.session(owner);
            let state = ctx.state();
            let dialect = state.config().options().sql_parser.dialect;
            let statement = state
                .sql_to_statement(sql, &dialect)
                .map_err(QueryError::from_datafusion)?;
            // Before any table is looked up: `CREATE EXTERNAL TABLE t …` names a table
            // too, and "no such table t" would be the wrong answer.
            if !is_query(&statement) {
                let text = statement.to_string();
                let head: String = text.chars().take(60).collect();
                let more = if head.len() < text.len() { "…" } else { "" };
                return Err(QueryError::NotAQuery(format!("{head}{more}")));
            }
            let references = state
                .resolve_table_references(&statement)
                .map_err(QueryError::from_datafusion)?;
            catalog::register(&ctx, &self.db, owner, &references).await?;
            let plan = ctx
                .state()
                .statement_to_plan(statement)
                .await
                .map_err(QueryError::from_datafusion)?;
            SQLOptions::new()
                .with_allow_ddl(false)
                .with_allow_dml(false)
                .with_allow_statements(false)
                .verify_plan(&plan)
                .map_err(|e| QueryError::NotAQuery(e.strip_backtrace()))?;
            let frame = ctx
                .execute_logical_plan(plan)
                .await
                .map_err(QueryError::from_datafusion)?;
            frame
                .execute_stream()
                .await
                .map_err(QueryError::from_datafusion)
        };
        let stream = tokio::time::timeout_at(deadline, start)
            .await
            .map_err(|_| timeout())??;
        Ok(Rows {
            schema: stream.schema(),
            stream: Some(stream),
            deadline,
            limits,
            returned: 0,
            truncated: false,
        })
    }

    /// A session that sees the catalog `weir` and nothing else; its default schema is
    /// the caller's, so `orders` means `weir.<owner>.orders`.
    fn session(&self, owner: &Owner) -> SessionContext {
        let mut config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, owner.as_str())
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(false);
        let options = config.options_mut();
        // Strings stay Utf8 as the catalog shows them, not Utf8View.
        options.execution.parquet.schema_force_view_types = false;
        options.sql_parser.map_string_types_to_utf8view = false;
        SessionContext::new_with_config_rt(config, self.runtime.clone())
    }
}

/// A query (`SELECT`, `WITH`, `VALUES`, set operations), or `EXPLAIN` of one.
fn is_query(statement: &datafusion::sql::parser::Statement) -> bool {
    use datafusion::sql::parser::Statement;
    use datafusion::sql::sqlparser::ast::Statement as Sql;
    match statement {
        Statement::Statement(s) => matches!(**s, Sql::Query(_)),
        Statement::Explain(e) => is_query(&e.statement),
        _ => false,
    }
}

/// A running query's result, batch by batch, within its limits.
pub struct Rows {
    schema: SchemaRef,
    /// `None` once the query ended, failed or reached the row limit.
    stream: Option<SendableRecordBatchStream>,
    deadline: Instant,
    limits: Limits,
    returned: u64,
    truncated: bool,
}

impl Rows {
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The next non-empty batch, `None` at the end (or at the row limit). Past the
    /// deadline it fails with [`QueryError::Timeout`] and the query stops.
    pub async fn next_batch(&mut self) -> Result<Option<RecordBatch>, QueryError> {
        loop {
            let Some(stream) = self.stream.as_mut() else {
                return Ok(None);
            };
            // Checked before polling too: a stream whose batches are always ready would
            // never let the timer fire.
            if Instant::now() >= self.deadline {
                self.stream = None;
                return Err(QueryError::Timeout(self.limits.timeout));
            }
            let next = match tokio::time::timeout_at(self.deadline, stream.next()).await {
                Ok(next) => next,
                Err(_) => {
                    self.stream = None;
                    return Err(QueryError::Timeout(self.limits.timeout));
                }
            };
            let batch = match next {
                None => {
                    self.stream = None;
                    return Ok(None);
                }
                Some(Err(e)) => {
                    self.stream = None;
                    return Err(QueryError::from_datafusion(e));
                }
                Some(Ok(batch)) if batch.num_rows() == 0 => continue,
                Some(Ok(batch)) => batch,
            };
            let rows = batch.num_rows() as u64;
            if let Some(max) = self.limits.max_rows
                && self.returned + rows > max
            {
                // More rows than allowed: keep what fits, stop the query.
                self.truncated = true;
                self.stream = None;
                let room = max - self.returned;
                if room == 0 {
                    return Ok(None);
                }
                self.returned = max;
                return Ok(Some(batch.slice(0, room as usize)));
            }
            self.returned += rows;
            return Ok(Some(batch));
        }
    }

    /// Rows returned so far.
    pub fn returned(&self) -> u64 {
        self.returned
    }

    /// The result had more rows than [`Limits::max_rows`] (known once
    /// [`Rows::next_batch`] returned `None`).
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }
}
