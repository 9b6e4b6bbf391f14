//! `weir datasets list|show`: the catalog projection, as tables or JSON.

use anyhow::{Result, bail};
use weir_events::{DatasetId, Owner};
use weir_projections::{Dataset, DatasetFilter, DatasetStatus, Db, query::MAX_LIMIT};
use weir_services::Store;

#[derive(Debug, clap::Subcommand)]
pub enum DatasetsCommand {
    /// Registered datasets, newest first
    List {
        #[arg(long)]
        json: bool,
        /// Only this owner's datasets
        #[arg(long)]
        owner: Option<Owner>,
        /// active (default), deleted or all
        #[arg(long, default_value = "active", value_parser = parse_status)]
        status: DatasetStatus,
        /// Case-insensitive text in the label or table name
        #[arg(long)]
        search: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long, default_value_t = 0)]
        offset: u32,
    },
    /// One dataset: schema, statistics, versions and where its Parquet lives
    Show {
        id: DatasetId,
        #[arg(long)]
        json: bool,
    },
}

fn parse_status(s: &str) -> Result<DatasetStatus, String> {
    match s {
        "active" => Ok(DatasetStatus::Active),
        "deleted" => Ok(DatasetStatus::Deleted),
        "all" => Ok(DatasetStatus::All),
        other => Err(format!(
            "unknown status {other:?}: use active, deleted or all"
        )),
    }
}

/// The dataset as `datasets show --json` prints it (a stable shape: id, table_name,
/// row_count, schema.fields[].{name,type}, location, and more).
pub fn to_json(d: &Dataset, store: &Store) -> serde_json::Value {
    let current = d.versions.iter().find(|v| v.version == d.current_version);
    serde_json::json!({
        "id": d.id,
        "owner": d.owner,
        "label": d.label,
        "table_name": d.table_name,
        "version": d.current_version,
        "row_count": d.row_count,
        "size_bytes": d.size_bytes,
        "schema": d.schema,
        "statistics": current.map(|v| v.statistics.clone()),
        "location": store.location(&d.parquet_key),
        "upload_id": current.map(|v| v.upload_id.clone()),
        "created_at": d.created_at.to_string(),
        "updated_at": d.updated_at.to_string(),
        "deleted_at": d.deleted_at.map(|t| t.to_string()),
        "quality": d.quality,
        "rejects_location": d.quality.as_ref().and_then(|q| q.rejects.as_deref()).map(|k| store.location(k)),
        "versions": d.versions,
    })
}

pub async fn run(db: &Db, store: &Store, command: DatasetsCommand) -> Result<i32> {
    match command {
        DatasetsCommand::List {
            json,
            owner,
            status,
            search,
            limit,
            offset,
        } => {
            let filter = DatasetFilter {
                owner,
                status,
                search,
                limit: limit.min(MAX_LIMIT),
                offset,
            };
            let page = weir_projections::list_datasets(db, &filter).await?;
            if json {
                let list: Vec<_> = page
                    .datasets
                    .iter()
                    .map(|d| {
                        let mut v = serde_json::to_value(d).unwrap_or_default();
                        v["location"] = store.location(&d.parquet_key).into();
                        v
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if page.datasets.is_empty() {
                println!("no datasets match: `weir upload FILE --wait` registers one");
            } else {
                println!(
                    "{:<31}  {:<28}  {:>10}  {:<12}  label",
                    "id", "table", "rows", "owner"
                );
                for d in &page.datasets {
                    let deleted = if d.deleted_at.is_some() {
                        "  (deleted)"
                    } else {
                        ""
                    };
                    let warning = match &d.quality {
                        Some(q) if q.rejected > 0 => format!("  ({} rows rejected)", q.rejected),
                        Some(q) if q.problem_count > 0 => {
                            format!("  ({} bad rows padded)", q.problem_count)
                        }
                        _ => String::new(),
                    };
                    println!(
                        "{:<31}  {:<28}  {:>10}  {:<12}  {}{deleted}{warning}",
                        d.id,
                        d.table_name,
                        d.row_count,
                        d.owner,
                        d.label.as_deref().unwrap_or("")
                    );
                }
                let shown = offset as u64 + page.datasets.len() as u64;
                if shown < page.total {
                    println!("… {} more (--offset {shown})", page.total - shown);
                }
            }
        }
        DatasetsCommand::Show { id, json } => {
            let Some(d) = weir_projections::dataset(db, id).await? else {
                bail!("no dataset {id}");
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&to_json(&d, store))?);
            } else {
                let deleted = d
                    .deleted_at
                    .map(|t| format!("  deleted {t}"))
                    .unwrap_or_default();
                println!(
                    "{}  table {}  v{}  {} rows  owner {}{deleted}",
                    d.id, d.table_name, d.current_version, d.row_count, d.owner
                );
                if let Some(label) = &d.label {
                    println!("label    {label}");
                }
                println!("location {}", store.location(&d.parquet_key));
                if let Some(q) = &d.quality {
                    let rejects = q.rejects.as_deref().map(|k| store.location(k));
                    for line in crate::views::quality_lines(q, rejects) {
                        println!("{line}");
                    }
                }
                for f in &d.schema.fields {
                    let was = f
                        .original_name
                        .as_ref()
                        .map(|o| format!(" (was {o:?})"))
                        .unwrap_or_default();
                    println!(
                        "  {:<30} {}{}{}",
                        f.name,
                        f.data_type,
                        if f.nullable { "" } else { " not null" },
                        was
                    );
                }
            }
        }
    }
    Ok(0)
}
