//! registrar: `SchemaInferred` → `DatasetRegistered`.
//!
//! Decides the table name (asked for, else derived from the label or file name),
//! claims it in the log on its own subject with expected-last-sequence 0 (so of two
//! uploads asking for one name exactly one gets it), and registers the dataset.
//!
//! A name asked for with `--table` that is taken fails the upload with the reason; a
//! generated name that is taken gets the first free suffix (`orders_2`, `orders_3` …).

use std::sync::Arc;

use weir_events::{
    Aggregate, CompensationAction, DatasetId, DatasetRegistered, Envelope, Event, EventKind,
    ObjectKey, Owner, SchemaDiff, SchemaPolicy, Step, TableName, TableNameClaimed, UploadId,
};
use weir_journal::{AppendOutcome, Expect, Recorded};

use crate::runtime::{Ctx, Service, StepError};
use crate::state::UploadState;

pub struct Registrar;

/// Suffixes tried for a generated name before giving up.
const MAX_SUFFIX: u32 = 100;

enum Claim {
    Ours,
    TakenBy {
        dataset: DatasetId,
        upload: Option<UploadId>,
    },
}

/// Claims `table` for `dataset` in `owner`'s namespace, or says who holds it.
async fn claim(
    ctx: &Ctx,
    input: &Recorded,
    owner: &Owner,
    table: &TableName,
    dataset: DatasetId,
) -> Result<Claim, StepError> {
    let upload = input.envelope.correlation_id;
    let aggregate = Aggregate::Name {
        owner: owner.clone(),
        table: table.clone(),
    };
    // Most names are free: claim first (create-once) and look at who holds the name
    // only when that loses.
    let mut expect = Expect::Empty;
    for _ in 0..5 {
        let env = Envelope::new(
            aggregate.clone(),
            owner.clone(),
            upload,
            Some(input.envelope.event_id),
            Event::TableNameClaimed(TableNameClaimed {
                owner: owner.clone(),
                table_name: table.clone(),
                dataset,
                upload,
            }),
        );
        match ctx.journal.append(&env, expect).await? {
            AppendOutcome::Appended { .. } => return Ok(Claim::Ours),
            AppendOutcome::WrongLastSequence => {}
        }
        expect = match ctx.journal.last_on(&aggregate).await? {
            None => Expect::Empty, // raced with a claim that is not visible yet: again
            Some(last) => match &last.envelope.event {
                Event::TableNameClaimed(c) if c.dataset == dataset => return Ok(Claim::Ours),
                Event::TableNameClaimed(c) => {
                    return Ok(Claim::TakenBy {
                        dataset: c.dataset,
                        upload: Some(c.upload),
                    });
                }
                _ => Expect::LastSequence(last.seq), // released: free again
            },
        };
    }
    Err(StepError::Transient(format!(
        "table name {table}: claim kept racing; retrying"
    )))
}

fn file_stem(filename: &str) -> &str {
    let name = filename.rsplit(['/', '\\']).next().unwrap_or(filename);
    let name = name
        .strip_suffix(".gz")
        .or_else(|| name.strip_suffix(".zst"))
        .unwrap_or(name);
    name.rsplit_once('.')
        .map(|(stem, _)| stem)
        .filter(|s| !s.is_empty())
        .unwrap_or(name)
}

impl Service for Registrar {
    const NAME: &'static str = "registrar";
    const STEP: Step = Step::Register;
    const INPUT: EventKind = EventKind::SchemaInferred;

    async fn handle(
        self: Arc<Self>,
        ctx: Ctx,
        input: Recorded,
        state: UploadState,
    ) -> Result<Vec<Event>, StepError> {
        let (Some((_, received)), Some(inferred)) = (&state.received, &state.inferred) else {
            return Err(StepError::Permanent(
                "upload has no UploadReceived/SchemaInferred before registration".into(),
            ));
        };
        if let Some(d) = received.dataset {
            // A new version: the dataset keeps its table name, owner and label.
            let facts = crate::dataset::DatasetFacts::read(&ctx.journal, d).await?;
            if facts.deleted {
                return Err(StepError::Permanent(format!(
                    "{}: dataset {d} was deleted while the version was converted; restore it and upload again",
                    received.filename
                )));
            }
            let upload = input.envelope.correlation_id;
            let parent = facts.reserved_by(upload).and_then(|(_, p)| p);
            // The schema against the parent's, under the dataset's policy.
            let parent_schema = match parent {
                Some(p) => facts.registration(&ctx.journal, p).await?.map(|r| r.schema),
                None => None,
            };
            let schema_diff = parent_schema
                .as_ref()
                .map(|ps| SchemaDiff::between(ps, &inferred.schema));
            if let (Some(diff), Some(p)) = (&schema_diff, parent)
                && !facts.schema_policy.allows(diff)
            {
                return Err(StepError::Permanent(format!(
                    "{}: dataset {d} accepts {} schema changes only (weir datasets policy {d} evolve|additive|freeze); against v{p}: {}",
                    received.filename,
                    match facts.schema_policy {
                        SchemaPolicy::Freeze => "no",
                        SchemaPolicy::Additive => "additive (added columns, widened types)",
                        SchemaPolicy::Evolve => "all",
                    },
                    diff.describe()
                )));
            }
            return Ok(vec![Event::DatasetRegistered(DatasetRegistered {
                dataset: d,
                version: inferred.version,
                parent_version: parent,
                owner: facts.owner.clone(),
                table_name: facts.table.clone(),
                label: received.label.clone().or(facts.label.clone()),
                schema: inferred.schema.clone(),
                parquet: inferred.parquet.clone(),
                parquet_size: inferred.parquet_size,
                statistics: inferred.statistics.clone(),
                schema_diff,
                branch: received.branch.clone().filter(|b| b != "main"),
            })]);
        }
        let file = &received.filename;
        let owner = &received.owner;
        let (base, explicit) = match &received.table_name {
            Some(asked) => (
                asked
                    .parse::<TableName>()
                    .map_err(|e| StepError::Permanent(format!("{file}: {e}")))?,
                true,
            ),
            None => (
                TableName::derive(received.label.as_deref().unwrap_or_else(|| file_stem(file))),
                false,
            ),
        };
        let mut chosen = None;
        for n in 1..=MAX_SUFFIX {
            let candidate = if n == 1 {
                base.clone()
            } else {
                base.with_suffix(n)
            };
            match claim(&ctx, &input, owner, &candidate, inferred.dataset).await? {
                Claim::Ours => {
                    chosen = Some(candidate);
                    break;
                }
                Claim::TakenBy { dataset, upload } if explicit => {
                    let by = upload.map(|u| format!(", upload {u}")).unwrap_or_default();
                    return Err(StepError::Permanent(format!(
                        "{file}: table name \"{candidate}\" is already taken by dataset {dataset}{by} for owner {owner}; upload again with another --table"
                    )));
                }
                Claim::TakenBy { .. } => {}
            }
        }
        let table_name = chosen.ok_or_else(|| {
            StepError::Permanent(format!(
                "{file}: table names {base} … {base}_{MAX_SUFFIX} are all taken for owner {owner}; pass --table"
            ))
        })?;
        Ok(vec![Event::DatasetRegistered(DatasetRegistered {
            dataset: inferred.dataset,
            version: inferred.version,
            parent_version: None,
            owner: owner.clone(),
            table_name,
            label: received.label.clone(),
            schema: inferred.schema.clone(),
            parquet: inferred.parquet.clone(),
            parquet_size: inferred.parquet_size,
            statistics: inferred.statistics.clone(),
            schema_diff: None,
            branch: None,
        })])
    }

    /// Removes the rejects file written for the upload (and a Parquet file at its
    /// version's own key, as older weirs wrote it). A content-addressed Parquet file may
    /// be another version's too: the janitor deletes it once nothing live references
    /// it, as it does the blob.
    async fn compensate(
        self: Arc<Self>,
        ctx: Ctx,
        state: UploadState,
    ) -> Result<Vec<CompensationAction>, StepError> {
        let Some(inferred) = &state.inferred else {
            return Ok(Vec::new());
        };
        let mut actions = Vec::new();
        if inferred.rewritten
            && inferred.parquet == ObjectKey::parquet(inferred.dataset, inferred.version)
        {
            ctx.store.delete(&inferred.parquet).await?;
            actions.push(CompensationAction::ParquetRemoved {
                parquet: inferred.parquet.clone(),
            });
        }
        if let Some(rejects) = &inferred.quality.rejects {
            ctx.store.delete(rejects).await?;
            actions.push(CompensationAction::RejectsRemoved {
                rejects: rejects.clone(),
            });
        }
        Ok(actions)
    }
}

#[cfg(test)]
mod tests {
    use super::file_stem;

    #[test]
    fn stems_drop_directories_extensions_and_compression() {
        assert_eq!(file_stem("data/orders.csv"), "orders");
        assert_eq!(file_stem("orders.csv.gz"), "orders");
        assert_eq!(file_stem("events.ndjson.zst"), "events");
        assert_eq!(file_stem("README"), "README");
        assert_eq!(file_stem(".hidden"), ".hidden");
    }
}
