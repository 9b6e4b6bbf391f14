//! The projection tables: the embedded migrations, the table sets they are created for
//! (live and the replay's shadow set), and the list of tables a replay copies.
//!
//! One source of truth: `migrations/*.sql`, written in portable SQL with a table-set
//! marker after every table and index name. For the live set the marker becomes nothing
//! and the files run through sqlx's [`Migrator`] (recorded in `_sqlx_migrations`, with
//! checksums); for the shadow set the marker becomes `_new` and the same files are
//! executed in order, unrecorded, into tables that are dropped again after the swap.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AssertSqlSafe, SqlSafeStr as _};

/// The marker in migrations and statements that stands for the table-set suffix.
const MARKER: &str = "{s}";

/// The migrations, in order: (version, description, SQL with markers).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "projections",
        include_str!("../migrations/0001_projections.sql"),
    ),
    (2, "tokens", include_str!("../migrations/0002_tokens.sql")),
    (3, "quality", include_str!("../migrations/0003_quality.sql")),
    (4, "grants", include_str!("../migrations/0004_grants.sql")),
    (
        5,
        "object_refs",
        include_str!("../migrations/0005_object_refs.sql"),
    ),
    (
        6,
        "steps_in_uploads",
        include_str!("../migrations/0006_steps_in_uploads.sql"),
    ),
];

/// Every projection table, in the order a replay copies them. A test checks this list
/// against the tables the migrations create.
pub const TABLES: &[&str] = &[
    "projection_checkpoint",
    "datasets",
    "dataset_versions",
    "uploads",
    "notifications",
    "audit",
    "table_names",
    "tokens",
    "dataset_grants",
    "object_refs",
];

/// Tables a migration has dropped: a shadow set an earlier weir left behind (a replay
/// stopped before its swap) may still hold them, and a new shadow set is created only
/// after every one of them is gone.
pub(crate) const RETIRED: &[&str] = &["upload_steps"];

/// Which set of tables a projector writes and a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tables {
    /// The tables every reader sees.
    Live,
    /// The `_new` tables a replay builds from sequence 1 while `Live` keeps serving.
    Shadow,
}

impl Tables {
    pub fn suffix(self) -> &'static str {
        match self {
            Self::Live => "",
            Self::Shadow => "_new",
        }
    }

    /// `name` in this set, e.g. `datasets_new`.
    pub fn table(self, name: &str) -> String {
        format!("{name}{}", self.suffix())
    }

    /// A statement template with its markers resolved for this set. Only templates
    /// written in this crate pass through here; values always travel as bind parameters.
    pub(crate) fn sql(self, template: &'static str) -> AssertSqlSafe<String> {
        AssertSqlSafe(template.replace(MARKER, self.suffix()))
    }

    /// The migrations' SQL for this set, in order.
    pub(crate) fn migration_sql(self) -> impl Iterator<Item = String> {
        MIGRATIONS
            .iter()
            .map(move |(_, _, sql)| sql.replace(MARKER, self.suffix()))
    }

    /// The migrations' statements for this set, in order, without their comments.
    fn statements(self) -> impl Iterator<Item = String> {
        self.migration_sql().flat_map(|sql| {
            let code: String = sql
                .lines()
                .map(|line| line.split("--").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n");
            code.split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
    }

    /// Every statement of the migrations except the secondary indexes that only
    /// readers use: what a replay builds its shadow tables with, so that rows go in
    /// without index upkeep. An index the projector itself reads by while it writes
    /// ([`WRITE_INDEXES`]) is made with its table.
    pub(crate) fn table_sql(self) -> Vec<String> {
        self.statements().filter(|s| !deferred_index(s)).collect()
    }

    /// The migrations' other `CREATE INDEX` statements: built once the rows are in.
    pub(crate) fn index_sql(self) -> Vec<String> {
        self.statements().filter(|s| deferred_index(s)).collect()
    }

    /// The [`WRITE_INDEXES`] of this set, (name, statement): made with a replay's
    /// tables, so the swap gives them their live names.
    pub(crate) fn write_indexes(self) -> Vec<(String, String)> {
        self.statements()
            .filter(|s| is_index(s) && !deferred_index(s))
            .map(|s| (index_name(&s).unwrap_or_default().to_owned(), s))
            .collect()
    }
}

/// The name a `CREATE INDEX name ON …` statement gives.
fn index_name(statement: &str) -> Option<&str> {
    statement.split_whitespace().nth(2)
}

/// Secondary indexes the projector reads by while it folds a batch; without them a
/// replay's shadow tables would be scanned whole for every batch (quadratic in the
/// log): the object references of a batch's uploads and datasets are loaded by holder.
const WRITE_INDEXES: &[&str] = &["object_refs{s}_holder_idx"];

fn is_index(statement: &str) -> bool {
    let upper = statement.to_ascii_uppercase();
    upper.starts_with("CREATE INDEX") || upper.starts_with("CREATE UNIQUE INDEX")
}

/// A secondary index built after a replay's rows are in (not one of [`WRITE_INDEXES`]).
fn deferred_index(statement: &str) -> bool {
    is_index(statement)
        && !WRITE_INDEXES.iter().any(|name| {
            [Tables::Live, Tables::Shadow].iter().any(|t| {
                let name = name.replace(MARKER, t.suffix());
                index_name(statement).is_some_and(|n| n.eq_ignore_ascii_case(&name))
            })
        })
}

/// The migrator for the live tables.
pub fn migrator() -> Migrator {
    migrator_through(i64::MAX)
}

/// The live tables' migrator up to and including `last` (a test's older database).
pub(crate) fn migrator_through(last: i64) -> Migrator {
    let migrations = MIGRATIONS
        .iter()
        .filter(|(version, _, _)| *version <= last)
        .map(|(version, description, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                AssertSqlSafe(sql.replace(MARKER, "")).into_sql_str(),
                false,
            )
        })
        .collect();
    Migrator::with_migrations(migrations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_marker_is_resolved() {
        for set in [Tables::Live, Tables::Shadow] {
            for sql in set.migration_sql() {
                assert!(!sql.contains(MARKER));
            }
        }
        let shadow: String = Tables::Shadow.migration_sql().collect();
        for table in TABLES {
            assert!(
                shadow.contains(&format!("CREATE TABLE {table}_new (")),
                "{table} is not created by the migrations"
            );
        }
        assert_eq!(
            shadow.matches("CREATE TABLE ").count(),
            TABLES.len() + RETIRED.len(),
            "TABLES lists every table the migrations create and RETIRED the ones they drop"
        );
        for table in RETIRED {
            assert!(
                shadow.contains(&format!("DROP TABLE {table}_new;")),
                "{table} is retired but no migration drops it"
            );
        }
    }

    /// Splitting the migrations into tables and indexes loses no statement.
    #[test]
    fn tables_and_indexes_split_the_migrations() {
        let tables = Tables::Shadow.table_sql();
        let indexes = Tables::Shadow.index_sql();
        let all: String = Tables::Shadow.migration_sql().collect();
        assert_eq!(
            tables
                .iter()
                .filter(|s| s.starts_with("CREATE TABLE"))
                .count(),
            TABLES.len() + RETIRED.len()
        );
        let with_tables: Vec<&String> = tables
            .iter()
            .filter(|s| s.contains("CREATE INDEX"))
            .collect();
        assert_eq!(
            indexes.len() + with_tables.len(),
            all.matches("CREATE INDEX").count()
        );
        assert!(indexes.len() >= 7);
        assert!(indexes.iter().all(|s| s.contains("_new")));
        // The projector loads object references by holder while it writes.
        assert_eq!(with_tables.len(), 1);
        assert!(with_tables[0].starts_with("CREATE INDEX object_refs_new_holder_idx"));
        assert_eq!(Tables::Live.write_indexes()[0].0, "object_refs_holder_idx");
    }
}
