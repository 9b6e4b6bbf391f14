//! The projections' database: one `sqlx::Any` pool over SQLite (embedded default, a
//! file) or Postgres, opened and migrated in one call, and the one place that knows how
//! the two differ when a write transaction begins.
//!
//! Beside the `Any` pool (queries, migrations, the replay's swap) sits a second pool of
//! the concrete driver, which only the projector's batches use: the set-based write
//! path needs what `Any` cannot give, SQLite's own prepared statements and Postgres
//! arrays (see `rows.rs`), and `Any` copies every bound value twice on the way.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions, Postgres};
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Any, AnyPool, Executor, Transaction};

use crate::Error;
use crate::schema::{Tables, migrator};

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A migrated projections database.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    /// The same database through the concrete driver, for batch transactions.
    batches: Batches,
}

#[derive(Debug, Clone)]
enum Batches {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A projector batch's transaction, on the concrete driver.
pub(crate) enum BatchTx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// A connection of the batch pool outside any transaction (reading rows ahead).
pub(crate) enum BatchConn {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

/// A borrowed connection of either kind: what `rows.rs` reads and writes through.
pub(crate) enum Conn<'c> {
    Sqlite(&'c mut SqliteConnection),
    Postgres(&'c mut PgConnection),
}

impl BatchTx {
    pub(crate) fn conn(&mut self) -> Conn<'_> {
        match self {
            Self::Sqlite(tx) => Conn::Sqlite(&mut *tx),
            Self::Postgres(tx) => Conn::Postgres(&mut *tx),
        }
    }

    pub(crate) async fn commit(self) -> Result<(), Error> {
        match self {
            Self::Sqlite(tx) => tx.commit().await?,
            Self::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }

    pub(crate) async fn rollback(self) -> Result<(), Error> {
        match self {
            Self::Sqlite(tx) => tx.rollback().await?,
            Self::Postgres(tx) => tx.rollback().await?,
        }
        Ok(())
    }
}

impl BatchConn {
    pub(crate) fn conn(&mut self) -> Conn<'_> {
        match self {
            Self::Sqlite(c) => Conn::Sqlite(&mut *c),
            Self::Postgres(c) => Conn::Postgres(&mut *c),
        }
    }
}

/// How long a SQLite writer waits for another writer (the live projector and a replay
/// write the same file) before giving up.
const SQLITE_BUSY_TIMEOUT_MS: u64 = 30_000;

/// The page size of a new SQLite file (an existing file keeps the one it was made
/// with). A projection row is a few hundred bytes to 2 KB (a version's schema and
/// statistics JSON): 4 KiB pages held two versions each and split often; with 16 KiB
/// pages the file has a quarter of the pages and B-tree levels, and a 200,000-event
/// apply or replay took 10-20 % less CPU (BENCHMARKS.md, "Event layer", round 9).
const SQLITE_PAGE_BYTES: u64 = 16 * 1024;

/// WAL pages between automatic checkpoints (64 MiB).
const SQLITE_WAL_CHECKPOINT_PAGES: u64 = (64 << 20) / SQLITE_PAGE_BYTES;

/// Page cache per SQLite connection (KiB; an upper bound, filled as pages are used).
const SQLITE_CACHE_KIB: u64 = 32 * 1024;

impl Db {
    /// Opens `url` and brings the live tables up to date. `url` is `postgres://…`,
    /// `sqlite://…` or a plain file path (created with its folder when missing), e.g.
    /// `./data/weir.db`.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let db = Self::open(url).await?;
        migrator().run(&db.pool).await?;
        // The versioned read views over the live tables (`docs/read-schema.md`).
        let mut tx = db.begin_write().await?;
        if let Some(lock) = crate::read_views::lock_statement(db.backend()) {
            sqlx::raw_sql(lock).execute(&mut *tx).await?;
        }
        crate::read_views::create_all(&mut tx).await?;
        tx.commit().await?;
        Ok(db)
    }

    /// Migrations recorded as applied (compare with `migrator().iter().count()`).
    pub async fn migrations_applied(&self) -> Result<i64, Error> {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM _sqlx_migrations WHERE success = TRUE",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Opens `url` without running migrations.
    pub async fn open(url: &str) -> Result<Self, Error> {
        install_default_drivers();
        let (url, backend) = normalise(url)?;
        let (pool, batches) = match backend {
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect(&url)
                    .await?;
                // Two batches at most are open at once (one written, one read ahead).
                let batches = PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_lazy(&url)?;
                (pool, Batches::Postgres(batches))
            }
            Backend::Sqlite => {
                // An in-memory database is one per connection unless it is named and
                // shared: name it, so that both pools see the same one, and keep one
                // connection per pool (no WAL in memory).
                let memory = url.contains(":memory:")
                    || url.contains("mode=memory")
                    || url.contains("vfs=memdb");
                let url = if memory { memory_url(&url) } else { url };
                let max = if memory { 1 } else { 4 };
                let pool = AnyPoolOptions::new()
                    .max_connections(max)
                    .acquire_timeout(Duration::from_secs(60))
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            conn.execute(sqlx::AssertSqlSafe(format!(
                                "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}"
                            )))
                            .await?;
                            // Before anything is written: only a new file takes it.
                            conn.execute(sqlx::AssertSqlSafe(format!(
                                "PRAGMA page_size = {SQLITE_PAGE_BYTES}"
                            )))
                            .await?;
                            // Durability: in WAL mode, NORMAL syncs at checkpoints, not
                            // at every commit. A commit survives a crash of weir; a power
                            // cut may lose the last few commits, never corrupt the file,
                            // and a commit carries its checkpoint with its rows, so the
                            // projector simply applies those events again from the log.
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                            // A rebuild reads and writes the same pages over and over.
                            conn.execute(sqlx::AssertSqlSafe(format!(
                                "PRAGMA cache_size = -{SQLITE_CACHE_KIB}"
                            )))
                            .await?;
                            conn.execute("PRAGMA temp_store = MEMORY").await?;
                            // A rebuild writes megabytes per batch: with the default
                            // (1,000 pages) nearly every commit would also copy the WAL
                            // into the file and sync it. Fewer, larger checkpoints; the
                            // WAL file may grow to this size between them.
                            conn.execute(sqlx::AssertSqlSafe(format!(
                                "PRAGMA wal_autocheckpoint = {SQLITE_WAL_CHECKPOINT_PAGES}"
                            )))
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?;
                // WAL lets readers go on while the projector writes; it is a property of
                // the file, so setting it once is enough.
                if max > 1 {
                    sqlx::query("PRAGMA journal_mode = WAL")
                        .fetch_optional(&pool)
                        .await?;
                }
                // The same settings as above, for the batch pool.
                let mut options = SqliteConnectOptions::from_str(&url)?
                    .page_size(SQLITE_PAGE_BYTES as u32)
                    .busy_timeout(Duration::from_millis(SQLITE_BUSY_TIMEOUT_MS))
                    .synchronous(SqliteSynchronous::Normal)
                    .pragma("cache_size", format!("-{SQLITE_CACHE_KIB}"))
                    .pragma("temp_store", "MEMORY")
                    .pragma(
                        "wal_autocheckpoint",
                        SQLITE_WAL_CHECKPOINT_PAGES.to_string(),
                    );
                if max > 1 {
                    options = options.journal_mode(SqliteJournalMode::Wal);
                }
                let batches = SqlitePoolOptions::new()
                    .max_connections(max)
                    .acquire_timeout(Duration::from_secs(60))
                    .connect_lazy_with(options);
                (pool, Batches::Sqlite(batches))
            }
        };
        Ok(Self {
            pool,
            backend,
            batches,
        })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Begins a write transaction. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`), so a transaction that reads before it writes cannot fail
    /// half-way when another writer got there first; Postgres serialises on the
    /// checkpoint row instead (see `projector.rs`).
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Any>, Error> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                // Durability: the commit returns before its WAL record is flushed (at
                // most three WAL-writer delays, 600 ms by default). A Postgres crash
                // may lose those last commits, never half of one: rows and checkpoint
                // go together, and the projector applies those events again from the
                // log. Only this transaction is affected.
                sqlx::raw_sql("SET LOCAL synchronous_commit = off")
                    .execute(&mut *tx)
                    .await?;
                tx
            }
        })
    }

    /// Begins a projector batch's transaction on the concrete driver, with the same
    /// settings and durability as [`Db::begin_write`].
    pub(crate) async fn begin_batch(&self) -> Result<BatchTx, Error> {
        Ok(match &self.batches {
            Batches::Sqlite(pool) => BatchTx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Batches::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                // Durability as in `begin_write`.
                sqlx::raw_sql("SET LOCAL synchronous_commit = off")
                    .execute(&mut *tx)
                    .await?;
                BatchTx::Postgres(tx)
            }
        })
    }

    /// A connection of the batch pool, outside any transaction.
    pub(crate) async fn acquire_batch(&self) -> Result<BatchConn, Error> {
        Ok(match &self.batches {
            Batches::Sqlite(pool) => BatchConn::Sqlite(pool.acquire().await?),
            Batches::Postgres(pool) => BatchConn::Postgres(pool.acquire().await?),
        })
    }

    /// Creates the tables of `set` when they do not exist, by running the migrations'
    /// SQL for it. The live set is created by [`Db::connect`] instead.
    pub(crate) async fn create_set(&self, set: Tables) -> Result<(), Error> {
        let mut tx = self.begin_write().await?;
        let statements = match set {
            // Rows go in first; the indexes are built by the swap (`replay.rs`).
            Tables::Shadow => set.table_sql(),
            Tables::Live => set.migration_sql().collect(),
        };
        for sql in statements {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Drops every table of `set` (used for the shadow set only).
    pub(crate) async fn drop_set(&self, set: Tables) -> Result<(), Error> {
        let mut tx = self.begin_write().await?;
        for table in crate::schema::TABLES.iter().chain(crate::schema::RETIRED) {
            let sql = format!("DROP TABLE IF EXISTS {}", set.table(table));
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn close(&self) {
        match &self.batches {
            Batches::Sqlite(pool) => pool.close().await,
            Batches::Postgres(pool) => pool.close().await,
        }
        self.pool.close().await;
    }
}

/// `url` (an in-memory SQLite URL) as an in-memory database that every connection of
/// this process opening the same URL shares: SQLite's `memdb` VFS with a name that
/// starts with `/`, unique to this process and call. (`:memory:` is a database of its
/// own per connection, and this build of SQLite shares no cache between connections.)
fn memory_url(url: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if url.contains("vfs=memdb") {
        // Already named by the caller.
        return url.to_owned();
    }
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("sqlite:/weir-memory-{}-{n}?vfs=memdb", std::process::id())
}

/// The URL sqlx understands and the backend it names.
fn normalise(url: &str) -> Result<(String, Backend), Error> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((url.to_owned(), Backend::Postgres));
    }
    if let Some(rest) = url.strip_prefix("sqlite:") {
        if rest.starts_with(":memory:") || rest.contains("mode=") {
            return Ok((url.to_owned(), Backend::Sqlite));
        }
        let sep = if rest.contains('?') { '&' } else { '?' };
        return Ok((format!("{url}{sep}mode=rwc"), Backend::Sqlite));
    }
    if url.contains("://") {
        return Err(Error::UnsupportedUrl(url.to_owned()));
    }
    let path = Path::new(url);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| Error::CreateDir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    Ok((format!("sqlite://{url}?mode=rwc"), Backend::Sqlite))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_backend() {
        let (url, b) = normalise("postgres://postgres@127.0.0.1/weir").unwrap();
        assert_eq!(
            (url.as_str(), b),
            ("postgres://postgres@127.0.0.1/weir", Backend::Postgres)
        );
        let (url, b) = normalise("sqlite://x.db").unwrap();
        assert_eq!(
            (url.as_str(), b),
            ("sqlite://x.db?mode=rwc", Backend::Sqlite)
        );
        let (url, b) = normalise("weir.db").unwrap();
        assert_eq!(
            (url.as_str(), b),
            ("sqlite://weir.db?mode=rwc", Backend::Sqlite)
        );
        assert!(matches!(
            normalise("mysql://x"),
            Err(Error::UnsupportedUrl(_))
        ));
    }
}

#[cfg(test)]
mod memory_tests {
    use super::*;

    /// An in-memory database is one database for both pools: the batch pool sees the
    /// tables the `Any` pool migrated, and two databases opened so stay apart.
    #[tokio::test]
    async fn in_memory_pools_share_one_database() {
        let db = Db::connect("sqlite::memory:").await.unwrap();
        let other = Db::connect("sqlite::memory:").await.unwrap();
        let mut tx = db.begin_batch().await.unwrap();
        let Conn::Sqlite(conn) = tx.conn() else {
            panic!("a SQLite batch connection");
        };
        sqlx::query("UPDATE projection_checkpoint SET seq = 7 WHERE name = 'main'")
            .execute(&mut *conn)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let seq = |db: Db| async move {
            sqlx::query_scalar::<_, i64>("SELECT seq FROM projection_checkpoint")
                .fetch_one(db.pool())
                .await
                .unwrap()
        };
        assert_eq!(seq(db.clone()).await, 7);
        assert_eq!(seq(other.clone()).await, 0);
    }
}

#[cfg(test)]
mod migration_tests {
    use sqlx::Row;

    use super::*;
    use crate::schema::TABLES;

    /// A database projected before migration 0006 keeps its step log: each
    /// `upload_steps` row becomes its upload's three columns, and the table goes. On
    /// SQLite, and on Postgres when the tests have one (`WEIR_TEST_POSTGRES`; required
    /// with `WEIR_REQUIRE_POSTGRES`).
    #[tokio::test]
    async fn the_step_log_moves_into_the_upload_rows() {
        let dir = tempfile::tempdir().unwrap();
        steps_move_on(&dir.path().join("weir.db").display().to_string()).await;
        let server = std::env::var("WEIR_TEST_POSTGRES").ok().or_else(|| {
            std::env::var_os("WEIR_REQUIRE_POSTGRES")
                .map(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
        });
        if let Some(server) = server {
            let name = format!("weir_t_steps_{}", std::process::id());
            let admin = Db::open(&format!("{server}/postgres")).await.unwrap();
            let create = format!("CREATE DATABASE {name}");
            sqlx::raw_sql(sqlx::AssertSqlSafe(create))
                .execute(admin.pool())
                .await
                .unwrap();
            steps_move_on(&format!("{server}/{name}")).await;
            let drop = format!("DROP DATABASE {name} WITH (FORCE)");
            sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
                .execute(admin.pool())
                .await
                .unwrap();
            admin.close().await;
        }
    }

    async fn steps_move_on(url: &str) {
        let old = Db::open(url).await.unwrap();
        crate::schema::migrator_through(5)
            .run(old.pool())
            .await
            .unwrap();
        for sql in [
            "INSERT INTO uploads (id, owner, filename, size_bytes, part_count, status, \
             received_at, updated_at, last_seq) \
             VALUES ('upld_a', 'acme', 'a.csv', 3, 1, 'failed', 10, 40, 4)",
            "INSERT INTO uploads (id, owner, filename, size_bytes, part_count, status, \
             received_at, updated_at, last_seq) \
             VALUES ('upld_b', 'acme', 'b.csv', 3, 1, 'received', 50, 50, 5)",
            "INSERT INTO upload_steps VALUES ('upld_a', 'combine', 10, 20, 'ok', 1, 2)",
            "INSERT INTO upload_steps VALUES ('upld_a', 'infer', 20, 40, 'failed', 2, 4)",
            "INSERT INTO upload_steps VALUES ('upld_b', 'combine', 50, NULL, NULL, 5, NULL)",
        ] {
            sqlx::raw_sql(sql).execute(old.pool()).await.unwrap();
        }
        old.close().await;

        let db = Db::connect(url).await.unwrap();
        let rows: Vec<(String, String, Option<String>, i64, Option<i64>)> = sqlx::query(
            "SELECT upload_id, step, outcome, started_at_us, ended_at_us \
             FROM v1_upload_steps ORDER BY upload_id, started_at_us",
        )
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get("upload_id"),
                r.get("step"),
                r.get("outcome"),
                r.get("started_at_us"),
                r.get("ended_at_us"),
            )
        })
        .collect();
        let own = |s: &str| s.to_owned();
        assert_eq!(
            rows,
            [
                (own("upld_a"), own("combine"), Some(own("ok")), 10, Some(20)),
                (
                    own("upld_a"),
                    own("infer"),
                    Some(own("failed")),
                    20,
                    Some(40)
                ),
                (own("upld_b"), own("combine"), None, 50, None),
            ],
            "{url}"
        );
        let tables = match db.backend() {
            Backend::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE name = 'upload_steps'",
            Backend::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'upload_steps'"
            }
        };
        let left: i64 = sqlx::query_scalar(tables)
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(left, 0, "upload_steps is dropped ({url})");
        db.close().await;
    }

    /// Connecting again finds the migrations applied (and their checksums unchanged),
    /// and the tables are exactly the ones `TABLES` lists.
    #[tokio::test]
    async fn migrations_apply_once_and_create_the_listed_tables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join("weir.db");
        let url = path.display().to_string();
        Db::connect(&url).await.unwrap().close().await;
        let db = Db::connect(&url).await.unwrap();
        assert_eq!(db.backend(), Backend::Sqlite);
        let applied: i64 = sqlx::query("SELECT COUNT(*) AS n FROM _sqlx_migrations")
            .fetch_one(db.pool())
            .await
            .unwrap()
            .get("n");
        assert_eq!(applied, crate::schema::migrator().iter().count() as i64);
        let mut tables: Vec<String> = sqlx::query(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE '\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite%' ORDER BY name",
        )
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("name"))
        .collect();
        let mut want: Vec<String> = TABLES.iter().map(|t| (*t).to_owned()).collect();
        tables.sort();
        want.sort();
        assert_eq!(tables, want);
        // A new file is made with the projections' page size, in WAL mode.
        let page: i64 = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(page as u64, SQLITE_PAGE_BYTES);
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let header = std::fs::read(&path).unwrap();
        assert_eq!(
            u16::from_be_bytes([header[16], header[17]]) as u64,
            SQLITE_PAGE_BYTES
        );
    }
}
