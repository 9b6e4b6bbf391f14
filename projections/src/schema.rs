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
];

/// Every projection table, in the order a replay copies them. A test checks this list
/// against the tables the migrations create.
pub const TABLES: &[&str] = &[
    "projection_checkpoint",
    "datasets",
    "dataset_versions",
    "uploads",
    "upload_steps",
    "notifications",
    "audit",
    "table_names",
    "tokens",
    "dataset_grants",
    "object_refs",
];

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

    /// Every statement of the migrations except the secondary indexes: what a replay
    /// builds its shadow tables with, so that rows go in without index upkeep.
    pub(crate) fn table_sql(self) -> Vec<String> {
        self.statements().filter(|s| !is_index(s)).collect()
    }

    /// The migrations' `CREATE INDEX` statements: built once the rows are in.
    pub(crate) fn index_sql(self) -> Vec<String> {
        self.statements().filter(|s| is_index(s)).collect()
    }
}

fn is_index(statement: &str) -> bool {
    let upper = statement.to_ascii_uppercase();
    upper.starts_with("CREATE INDEX") || upper.starts_with("CREATE UNIQUE INDEX")
}

/// The migrator for the live tables.
pub fn migrator() -> Migrator {
    let migrations = MIGRATIONS
        .iter()
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
            TABLES.len(),
            "TABLES lists every table the migrations create"
        );
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
            TABLES.len()
        );
        assert_eq!(indexes.len(), all.matches("CREATE INDEX").count());
        assert!(indexes.len() >= 7);
        assert!(indexes.iter().all(|s| s.contains("_new")));
        assert!(tables.iter().all(|s| !s.contains("CREATE INDEX")));
    }
}
