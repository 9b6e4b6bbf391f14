//! Which table a name in a statement means for the caller, and registering it in the
//! query's session: the owner from the reference's schema part (the caller's own when
//! there is none), the dataset by its table name among that owner's active datasets,
//! the version from the `@ref` suffix (the head without one).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider,
};
use datafusion::common::TableReference;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::SessionContext;
use weir_events::{DatasetAction, DatasetId, Owner};
use weir_projections::{Db, OwnedTable};

use crate::{CATALOG, QueryError, STORE_URL};

/// Tables named in a hint when a name is not found.
const HINT_TABLES: usize = 20;

/// Registers every table `references` name (as written, so the planner finds them)
/// in `ctx`, or fails naming the first one the caller cannot read.
pub(crate) async fn register(
    ctx: &SessionContext,
    db: &Db,
    caller: &Owner,
    references: &[TableReference],
) -> Result<(), QueryError> {
    let catalog = Arc::new(MemoryCatalogProvider::new());
    ctx.register_catalog(CATALOG, catalog.clone());
    let mut schemas: HashMap<Owner, Arc<MemorySchemaProvider>> = HashMap::new();
    let mut tables: HashMap<Owner, Vec<OwnedTable>> = HashMap::new();
    let mut datasets: HashMap<String, weir_projections::Dataset> = HashMap::new();
    let own = Arc::new(MemorySchemaProvider::new());
    schemas.insert(caller.clone(), own.clone());
    catalog
        .register_schema(caller.as_str(), own)
        .map_err(QueryError::from_datafusion)?;

    for reference in references {
        let name = reference.table();
        let owner = visible_owner(caller, reference)?;
        let (table, version) = match name.split_once('@') {
            Some((table, version)) => (table, Some(version)),
            None => (name, None),
        };
        if !tables.contains_key(&owner) {
            tables.insert(
                owner.clone(),
                weir_projections::owner_tables(db, &owner).await?,
            );
        }
        let owned = &tables[&owner];
        let Some(entry) = owned.iter().find(|t| t.table_name == table) else {
            return Err(no_such_table(reference, owned));
        };
        if !datasets.contains_key(&entry.dataset_id) {
            let id: DatasetId = entry.dataset_id.parse().map_err(|e| {
                QueryError::Internal(format!("catalog dataset id {:?}: {e}", entry.dataset_id))
            })?;
            // The read side's one access check: the caller's own dataset, or another
            // owner's that was shared with them (a read grant or more).
            let Ok((d, _)) =
                weir_projections::dataset_for(db, caller, id, DatasetAction::Read).await?
            else {
                if &owner == caller {
                    // Deleted between the two reads.
                    return Err(no_such_table(reference, owned));
                }
                return Err(QueryError::NoSuchTable {
                    name: reference.to_string(),
                    hint: format!(" ({owner} has not shared it with you)"),
                });
            };
            datasets.insert(entry.dataset_id.clone(), d);
        }
        let d = &datasets[&entry.dataset_id];
        let v = d
            .resolve(version.unwrap_or("main"))
            .ok_or_else(|| QueryError::NoSuchVersion {
                table: table.to_owned(),
                reference: version.unwrap_or("main").to_owned(),
            })?;
        let schema = match schemas.get(&owner) {
            Some(s) => s.clone(),
            None => {
                let s = Arc::new(MemorySchemaProvider::new());
                catalog
                    .register_schema(owner.as_str(), s.clone())
                    .map_err(QueryError::from_datafusion)?;
                schemas.insert(owner.clone(), s.clone());
                s
            }
        };
        if schema.table_exist(name) {
            // `orders` and `<caller>.orders` in one statement: one table.
            continue;
        }
        let provider = parquet_table(ctx, &v.parquet_key).await?;
        schema
            .register_table(name.to_owned(), provider)
            .map_err(QueryError::from_datafusion)?;
    }
    Ok(())
}

/// The owner whose tables `reference` may name: the caller's own (no schema part, or
/// the caller's name), or the owner the schema part names (`<owner>.<table>`), whose
/// table is then read only if they granted the caller access to it.
fn visible_owner(caller: &Owner, reference: &TableReference) -> Result<Owner, QueryError> {
    if let Some(catalog) = reference.catalog()
        && catalog != CATALOG
    {
        return Err(QueryError::NoSuchTable {
            name: reference.to_string(),
            hint: format!(" (the only catalog is {CATALOG:?})"),
        });
    }
    match reference.schema() {
        None => Ok(caller.clone()),
        Some(schema) if schema == caller.as_str() => Ok(caller.clone()),
        Some(schema) => schema.parse().map_err(|_| QueryError::NoSuchTable {
            name: reference.to_string(),
            hint: format!(" ({schema:?} is not an owner's name)"),
        }),
    }
}

fn no_such_table(reference: &TableReference, owned: &[OwnedTable]) -> QueryError {
    let hint = if owned.is_empty() {
        " (no datasets are registered for you)".to_owned()
    } else {
        let names: Vec<&str> = owned
            .iter()
            .take(HINT_TABLES)
            .map(|t| t.table_name.as_str())
            .collect();
        let more = if owned.len() > HINT_TABLES {
            ", …"
        } else {
            ""
        };
        format!(" (your tables: {}{more})", names.join(", "))
    };
    QueryError::NoSuchTable {
        name: reference.to_string(),
        hint,
    }
}

/// The Parquet file at `key` in weir's object store, as a table.
async fn parquet_table(ctx: &SessionContext, key: &str) -> Result<Arc<ListingTable>, QueryError> {
    let url = ListingTableUrl::parse(format!("{STORE_URL}/{}", key.trim_start_matches('/')))
        .map_err(QueryError::from_datafusion)?;
    // Strings read as Utf8, the type the catalog shows, not Utf8View.
    let format = ParquetFormat::default().with_force_view_types(false);
    let options = ListingOptions::new(Arc::new(format)).with_file_extension(".parquet");
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .infer_schema(&ctx.state())
        .await
        .map_err(QueryError::from_datafusion)?;
    Ok(Arc::new(
        ListingTable::try_new(config).map_err(QueryError::from_datafusion)?,
    ))
}
