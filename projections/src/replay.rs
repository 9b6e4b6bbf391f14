//! Rebuilding projections from the log: a full replay into the shadow tables swapped in
//! atomically while the live tables keep serving, and a point-in-time build into a
//! separate database.
//!
//! The shadow tables are filled without their secondary indexes, except the ones the
//! projector reads by while it writes (`schema::WRITE_INDEXES`, renamed to their live
//! names by the swap). The swap is one
//! transaction: it drops every live table, renames its shadow table into its place and
//! builds the indexes under their live names, so no row is copied and each index is
//! built once, from sorted data. SQLite and Postgres both run DDL inside transactions,
//! so a reader sees either all of the old projections or all of the new ones; on
//! Postgres a reader waits for the swap's commit instead of reading a half-swapped set.

use sqlx::{AssertSqlSafe, Row};
use weir_journal::Journal;

use crate::Error;
use crate::db::{Backend, Db};
use crate::projector::{Projector, Until};
use crate::schema::{TABLES, Tables};

/// How often a replay tries to swap before giving up on a live projector that keeps
/// getting ahead of it.
const SWAP_ATTEMPTS: u32 = 20;

/// What a replay did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ReplayReport {
    /// The checkpoint of the tables swapped in.
    pub seq: u64,
    /// Swap attempts it took (more than one when the live projector was ahead).
    pub attempts: u32,
}

enum Swap {
    Done(u64),
    /// The live tables are further on than the shadow ones: catch up and try again.
    Behind,
}

/// Rebuilds every projection from sequence 1 into the `_new` tables and swaps them in.
/// A live projector may keep running: the swap waits for its batch in flight, never
/// moves the tables backwards, and the projector follows on from the swapped-in
/// checkpoint.
pub async fn replay(journal: &Journal, db: &Db) -> Result<ReplayReport, Error> {
    db.drop_set(Tables::Shadow).await?;
    db.create_set(Tables::Shadow).await?;
    let result = replay_into_shadow(journal, db).await;
    // The shadow tables are scaffolding: leave none behind, whatever happened.
    let dropped = db.drop_set(Tables::Shadow).await;
    let report = result?;
    dropped?;
    Ok(report)
}

async fn replay_into_shadow(journal: &Journal, db: &Db) -> Result<ReplayReport, Error> {
    let shadow = Projector::for_tables(db.clone(), Tables::Shadow);
    let started = std::time::Instant::now();
    for attempt in 1..=SWAP_ATTEMPTS {
        shadow.catch_up(journal).await?;
        let swapping = std::time::Instant::now();
        match swap(db).await? {
            Swap::Done(seq) => {
                // Every attempt's catch-up counts, and a refused swap with it.
                tracing::info!(
                    seq,
                    attempt,
                    catch_up_ms = (swapping - started).as_secs_f64() * 1e3,
                    swap_ms = swapping.elapsed().as_secs_f64() * 1e3,
                    "replayed projections swapped in"
                );
                return Ok(ReplayReport {
                    seq,
                    attempts: attempt,
                });
            }
            Swap::Behind => {}
        }
    }
    Err(Error::ReplayBehind(SWAP_ATTEMPTS))
}

async fn checkpoint_in(conn: &mut sqlx::AnyConnection, tables: Tables) -> Result<i64, Error> {
    Ok(
        sqlx::query(tables.sql("SELECT seq FROM projection_checkpoint{s} WHERE name = 'main'"))
            .fetch_one(&mut *conn)
            .await?
            .try_get("seq")?,
    )
}

async fn swap(db: &Db) -> Result<Swap, Error> {
    let mut tx = db.begin_write().await?;
    // The checkpoint table first, as every projector batch does: a batch in flight
    // finishes before this goes on, later ones wait for the swap, and with one lock
    // order there is no deadlock. On Postgres the lock must be the table's (the swap
    // drops it); SQLite's `BEGIN IMMEDIATE` already holds the only write lock.
    match db.backend() {
        Backend::Postgres => {
            sqlx::raw_sql("LOCK TABLE projection_checkpoint IN ACCESS EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await?;
        }
        Backend::Sqlite => {}
    }
    let live = checkpoint_in(&mut tx, Tables::Live).await?;
    let shadow = checkpoint_in(&mut tx, Tables::Shadow).await?;
    if shadow < live {
        tx.rollback().await?;
        return Ok(Swap::Behind);
    }
    // The read views depend on the live tables: off while they are swapped.
    crate::read_views::drop_all(&mut tx).await?;
    for table in TABLES {
        let live = Tables::Live.table(table);
        let shadow = Tables::Shadow.table(table);
        sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE {live}")))
            .execute(&mut *tx)
            .await?;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "ALTER TABLE {shadow} RENAME TO {live}"
        )))
        .execute(&mut *tx)
        .await?;
        if db.backend() == Backend::Postgres {
            // The primary key's index keeps its shadow name through the rename; give
            // it the live one, which the next replay's shadow set needs free.
            sqlx::raw_sql(AssertSqlSafe(format!(
                "ALTER INDEX {shadow}_pkey RENAME TO {live}_pkey"
            )))
            .execute(&mut *tx)
            .await?;
        }
    }
    // The indexes the replay made with its tables keep their shadow names through the
    // renames; give them the live ones, which the next replay's shadow set needs free.
    for ((shadow, _), (live, create)) in Tables::Shadow
        .write_indexes()
        .into_iter()
        .zip(Tables::Live.write_indexes())
    {
        let sql = match db.backend() {
            Backend::Postgres => format!("ALTER INDEX {shadow} RENAME TO {live}"),
            // SQLite cannot rename an index: made again under its live name.
            Backend::Sqlite => format!("DROP INDEX {shadow}; {create}"),
        };
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *tx).await?;
    }
    for index in Tables::Live.index_sql() {
        sqlx::raw_sql(AssertSqlSafe(index))
            .execute(&mut *tx)
            .await?;
    }
    crate::read_views::create_all(&mut tx).await?;
    tx.commit().await?;
    Ok(Swap::Done(u64::try_from(shadow).unwrap_or(0)))
}

/// Builds the projections as they were at `until` into `target`, a separate, fresh
/// database (migrated by [`Db::connect`]); the live one is not touched. Returns the
/// last sequence applied.
pub async fn build_until(journal: &Journal, target: &Db, until: Until) -> Result<u64, Error> {
    let projector = Projector::new(target.clone());
    let checkpoint = projector.checkpoint().await?;
    if checkpoint != 0 {
        return Err(Error::TargetNotEmpty(checkpoint));
    }
    projector.build(journal, until).await
}

#[cfg(test)]
mod tests {
    use weir_events::{Aggregate, Envelope, Event, Owner, StreamSpec, UploadId, UploadReceived};
    use weir_journal::{Expect, Journal};

    use super::*;
    use crate::snapshot::snapshot;

    fn received(n: u64) -> Envelope {
        let owner: Owner = "acme".parse().unwrap();
        let upload = UploadId::new();
        Envelope::new(
            Aggregate::Upload(upload),
            owner.clone(),
            upload,
            None,
            Event::UploadReceived(UploadReceived {
                owner,
                filename: format!("f{n}.csv"),
                content_type: None,
                format: None,
                label: None,
                table_name: None,
                size: n,
                parts: Vec::new(),
                dataset: None,
                parent_version: None,
                branch: None,
                options: Default::default(),
                more_files: Vec::new(),
            }),
        )
    }

    /// A swap never moves the live tables backwards: while the shadow set is behind the
    /// live checkpoint it is refused, and goes through once the shadow caught up.
    #[tokio::test]
    async fn swap_waits_for_the_shadow_to_reach_the_live_checkpoint() {
        let nats = weir_testkit::NatsServer::start();
        let journal = Journal::connect(&nats.url(), &StreamSpec::default())
            .await
            .unwrap();
        for n in 1..=10 {
            journal.append(&received(n), Expect::Any).await.unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&dir.path().join("w.db").display().to_string())
            .await
            .unwrap();
        Projector::new(db.clone()).catch_up(&journal).await.unwrap();
        let live = snapshot(&db, Tables::Live).await.unwrap();

        db.create_set(Tables::Shadow).await.unwrap();
        let shadow = Projector::for_tables(db.clone(), Tables::Shadow);
        assert_eq!(shadow.build(&journal, Until::Sequence(6)).await.unwrap(), 6);
        assert!(matches!(swap(&db).await.unwrap(), Swap::Behind));
        assert_eq!(snapshot(&db, Tables::Live).await.unwrap(), live);

        assert_eq!(shadow.catch_up(&journal).await.unwrap(), 10);
        assert!(matches!(swap(&db).await.unwrap(), Swap::Done(10)));
        assert_eq!(snapshot(&db, Tables::Live).await.unwrap(), live);
        db.drop_set(Tables::Shadow).await.unwrap();
    }
}
