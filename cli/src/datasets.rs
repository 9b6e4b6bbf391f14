//! `weir datasets list|show`: the registered datasets, read from the log's
//! `DatasetRegistered` events until the catalog projection serves them.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use weir_events::{DatasetId, DatasetRegistered, Event, EventKind, Subject};
use weir_journal::Journal;
use weir_services::Store;

#[derive(Debug, clap::Subcommand)]
pub enum DatasetsCommand {
    /// All registered datasets
    List {
        #[arg(long)]
        json: bool,
    },
    /// One dataset: schema, statistics and where its Parquet lives
    Show {
        id: DatasetId,
        #[arg(long)]
        json: bool,
    },
}

/// The dataset as `datasets show --json` prints it (a stable shape).
pub fn to_json(
    r: &DatasetRegistered,
    upload: &str,
    registered_at: &str,
    store: &Store,
) -> serde_json::Value {
    serde_json::json!({
        "id": r.dataset.to_string(),
        "owner": r.owner.to_string(),
        "label": r.label,
        "table_name": r.table_name.to_string(),
        "version": r.version,
        "row_count": r.statistics.rows,
        "size_bytes": r.parquet_size,
        "schema": {
            "fields": r.schema.fields.iter().map(|f| serde_json::json!({
                "name": f.name,
                "type": f.data_type,
                "nullable": f.nullable,
                "original_name": f.original_name,
            })).collect::<Vec<_>>()
        },
        "statistics": r.statistics,
        "location": store.location(&r.parquet),
        "upload_id": upload,
        "registered_at": registered_at,
    })
}

async fn load(
    journal: &Journal,
) -> Result<BTreeMap<DatasetId, (DatasetRegistered, String, String)>> {
    let events = journal
        .read_all(Subject::kind_filter(EventKind::DatasetRegistered))
        .await?;
    let mut out = BTreeMap::new();
    for r in events {
        if let Event::DatasetRegistered(d) = r.envelope.event {
            out.insert(
                d.dataset,
                (
                    d,
                    r.envelope.correlation_id.to_string(),
                    r.stored_at.to_string(),
                ),
            );
        }
    }
    Ok(out)
}

pub async fn run(journal: &Journal, store: &Store, command: DatasetsCommand) -> Result<i32> {
    let all = load(journal).await?;
    match command {
        DatasetsCommand::List { json } => {
            if json {
                let list: Vec<_> = all
                    .values()
                    .map(|(d, u, t)| to_json(d, u, t, store))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if all.is_empty() {
                println!("no datasets yet: `weir upload FILE --wait` registers one");
            } else {
                println!("{:<31}  {:<24}  {:>10}  owner", "id", "table", "rows");
                for (d, _, _) in all.values() {
                    println!(
                        "{:<31}  {:<24}  {:>10}  {}",
                        d.dataset, d.table_name, d.statistics.rows, d.owner
                    );
                }
            }
        }
        DatasetsCommand::Show { id, json } => {
            let Some((d, u, t)) = all.get(&id) else {
                bail!("no dataset {id}");
            };
            let value = to_json(d, u, t, store);
            if json {
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                println!(
                    "{}  table {}  v{}  {} rows  owner {}",
                    d.dataset, d.table_name, d.version, d.statistics.rows, d.owner
                );
                println!(
                    "location {}",
                    value["location"].as_str().unwrap_or_default()
                );
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
