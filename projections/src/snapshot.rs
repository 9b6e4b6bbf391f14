//! Every row of a table set, rendered the same way whatever the database, and its
//! digest: how tests (and `weir replay --verify`-style checks) compare two builds of
//! the projections, across runs and across SQLite and Postgres.

use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Column, Row};

use crate::Error;
use crate::db::Db;
use crate::schema::{TABLES, Tables};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRows {
    pub table: String,
    pub columns: Vec<String>,
    /// Each row as a JSON array of its values (integers, strings, nulls), sorted.
    pub rows: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub tables: Vec<TableRows>,
}

impl Snapshot {
    /// sha256 over every table's name, columns and sorted rows, hex.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for t in &self.tables {
            h.update(t.table.as_bytes());
            h.update([0]);
            for c in &t.columns {
                h.update(c.as_bytes());
                h.update([0]);
            }
            for r in &t.rows {
                h.update(r.as_bytes());
                h.update([b'\n']);
            }
        }
        hex(&h.finalize())
    }

    pub fn rows(&self, table: &str) -> &[String] {
        self.tables
            .iter()
            .find(|t| t.table == table)
            .map(|t| t.rows.as_slice())
            .unwrap_or(&[])
    }

    pub fn row_count(&self) -> usize {
        self.tables.iter().map(|t| t.rows.len()).sum()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn render(row: &AnyRow) -> Result<String, Error> {
    let mut values = Vec::with_capacity(row.columns().len());
    for i in 0..row.columns().len() {
        // Integers and text are the only column types the migrations use.
        let value = match row.try_get::<Option<i64>, _>(i) {
            Ok(v) => v.map_or(serde_json::Value::Null, serde_json::Value::from),
            Err(_) => row
                .try_get::<Option<String>, _>(i)?
                .map_or(serde_json::Value::Null, serde_json::Value::from),
        };
        values.push(value);
    }
    Ok(serde_json::Value::Array(values).to_string())
}

/// Every row of every table of `tables`, tables in a fixed order, rows sorted.
pub async fn snapshot(db: &Db, tables: Tables) -> Result<Snapshot, Error> {
    let mut out = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT * FROM {}",
            tables.table(table)
        )))
        .fetch_all(db.pool())
        .await?;
        let columns = rows
            .first()
            .map(|r| r.columns().iter().map(|c| c.name().to_owned()).collect())
            .unwrap_or_default();
        let mut rendered = rows.iter().map(render).collect::<Result<Vec<_>, _>>()?;
        rendered.sort();
        out.push(TableRows {
            table: (*table).to_owned(),
            columns,
            rows: rendered,
        });
    }
    Ok(Snapshot { tables: out })
}
