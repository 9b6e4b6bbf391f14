//! `weir datasets list|show|versions|bad-rows|grant|…`: the catalog projection, as
//! tables or JSON, and the dataset settings that are events. `--as OWNER` acts as that
//! owner: every command checks the access it needs (`weir_events::DatasetAction`)
//! against the catalog and, before an append, against the dataset's events.

use anyhow::{Result, bail};
use weir_events::{
    AccessLevel, Aggregate, BadRows, DatasetAccessGranted, DatasetAccessRevoked, DatasetAction,
    DatasetBadRowsChanged, DatasetId, Envelope, Event, EventId, Owner, UploadId,
};
use weir_journal::{AppendOutcome, Expect, Journal};
use weir_projections::{Dataset, DatasetFilter, DatasetStatus, Db, query::MAX_LIMIT};
use weir_services::Store;
use weir_services::dataset::DatasetFacts;

/// `weir datasets [--as OWNER] COMMAND`.
#[derive(Debug, clap::Args)]
pub struct DatasetsArgs {
    /// Act as this owner: the dataset must be theirs or granted to them at the level
    /// the command needs (read: list, show, versions, grants; write: branch, tag,
    /// rollback; admin: policy, bad-rows, grant, revoke). Without it: as the dataset's
    /// owner
    #[arg(long = "as", value_name = "OWNER", global = true)]
    pub as_owner: Option<Owner>,
    #[command(subcommand)]
    pub command: DatasetsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum DatasetsCommand {
    /// Registered datasets, newest first; with --as, that owner's and those shared
    /// with them (marked shared)
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
    /// One dataset: schema, statistics, versions and where its Parquet lives;
    /// `ID@v3` (or `ID@3`) shows that version
    Show {
        #[arg(value_name = "ID[@vN]")]
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// The version tree of a dataset: each version under the one it derives from
    Versions {
        id: DatasetId,
        #[arg(long)]
        json: bool,
    },
    /// Create a branch at a registered version (default: the main head); upload to it
    /// with `weir upload --dataset ID --branch NAME`
    Branch {
        id: DatasetId,
        name: String,
        #[arg(long, value_name = "N")]
        from: Option<u32>,
        #[arg(long)]
        json: bool,
    },
    /// Name a registered version; a tag never moves (tagging again fails)
    Tag {
        id: DatasetId,
        name: String,
        #[arg(value_name = "VERSION")]
        version: String,
        #[arg(long)]
        json: bool,
    },
    /// Move a branch's head (default: main) back to a registered version; the newer
    /// versions stay readable (`datasets show ID@vN`)
    Rollback {
        id: DatasetId,
        #[arg(long, value_name = "NAME")]
        branch: Option<String>,
        #[arg(long, value_name = "VERSION")]
        to: String,
        #[arg(long)]
        json: bool,
    },
    /// Which schema changes new versions may make: evolve (any, the default),
    /// additive (added columns, widened types) or freeze (none)
    Policy {
        id: DatasetId,
        #[arg(value_name = "evolve|additive|freeze")]
        policy: weir_events::SchemaPolicy,
        #[arg(long)]
        json: bool,
    },
    /// The dataset's default bad-row policy for new versions (`weir upload --dataset`
    /// without --bad-rows): fail, reject, pad, or default (weir's own)
    BadRows {
        id: DatasetId,
        #[arg(value_name = "fail|reject|pad|default")]
        policy: String,
        #[arg(long)]
        json: bool,
    },
    /// Give another owner read, write (new versions, branches, tags, rollback) or admin
    /// (also grant, revoke, policies) access; granting again changes the level
    Grant {
        id: DatasetId,
        owner: Owner,
        #[arg(value_name = "read|write|admin")]
        level: AccessLevel,
        #[arg(long)]
        json: bool,
    },
    /// Take back an owner's access
    Revoke {
        id: DatasetId,
        owner: Owner,
        #[arg(long)]
        json: bool,
    },
    /// Who may use the dataset besides its owner (`weir history ID` shows every grant
    /// and revoke, by whom and when)
    Grants {
        id: DatasetId,
        #[arg(long)]
        json: bool,
    },
}

/// `ID`, or `ID@REF` where REF is `vN`/`N`, `main`, a branch or a tag.
fn parse_ref(text: &str) -> Result<(DatasetId, Option<String>)> {
    let (id, reference) = match text.split_once('@') {
        Some((id, r)) => (id, Some(r.to_owned())),
        None => (text, None),
    };
    let id: DatasetId = id.parse().map_err(|e| anyhow::anyhow!("{text:?}: {e}"))?;
    Ok((id, reference))
}

/// The dataset as the catalog shows it, once `caller` (`--as`; none: its owner) may do
/// `action` by the catalog.
async fn permitted(
    db: &Db,
    id: DatasetId,
    caller: Option<&Owner>,
    action: DatasetAction,
) -> Result<Dataset> {
    let Some(caller) = caller else {
        return weir_projections::dataset(db, id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no dataset {id}"));
    };
    match weir_projections::dataset_for(db, caller, id, action).await? {
        Ok((d, _)) => Ok(d),
        Err(denied) => bail!("{}", denied.message(caller, id)),
    }
}

/// The dataset's events folded, once `actor` may do `action` by them.
async fn facts_for(
    journal: &Journal,
    id: DatasetId,
    actor: &Owner,
    action: DatasetAction,
) -> Result<DatasetFacts> {
    let facts = DatasetFacts::read(journal, id)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    facts.allow(actor, action).map_err(|e| anyhow::anyhow!(e))?;
    Ok(facts)
}

/// The dataset as the catalog shows it and as its events tell it (for a decision that
/// is appended conditionally on what the log said), once the caller may do `action`
/// by both; with who acts (the caller, else the owner).
async fn catalog_and_facts(
    db: &Db,
    journal: &Journal,
    id: DatasetId,
    caller: Option<&Owner>,
    action: DatasetAction,
) -> Result<(Dataset, DatasetFacts, Owner)> {
    let d = permitted(db, id, caller, action).await?;
    let actor: Owner = match caller {
        Some(c) => c.clone(),
        None => d.owner.parse()?,
    };
    let facts = facts_for(journal, id, &actor, action).await?;
    Ok((d, facts, actor))
}

/// A version named as `vN`, `N`, `main`, a branch or a tag: its number, registered.
async fn registered_version(
    journal: &Journal,
    facts: &DatasetFacts,
    d: &Dataset,
    name: &str,
) -> Result<u32> {
    let n = d.resolve(name).map(|v| v.version).ok_or_else(|| {
        anyhow::anyhow!("dataset {} has no version, branch or tag {name:?}", d.id)
    })?;
    if !facts
        .registered(journal, n)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
    {
        bail!("dataset {}: version {n} did not register", d.id);
    }
    Ok(n)
}

/// The versions as a tree, each under its parent, oldest first: `v1`, `├─ v2`, …
fn tree_lines(d: &Dataset) -> Vec<String> {
    fn walk(d: &Dataset, parent: Option<u32>, prefix: &str, out: &mut Vec<String>) {
        let children: Vec<_> = d
            .versions
            .iter()
            .filter(|v| v.parent_version == parent)
            .collect();
        for (i, v) in children.iter().enumerate() {
            let last = i + 1 == children.len();
            let (branch, next) = match parent {
                None => ("", String::new()),
                Some(_) if last => ("└─ ", format!("{prefix}   ")),
                Some(_) => ("├─ ", format!("{prefix}│  ")),
            };
            let mut names: Vec<String> = Vec::new();
            if v.version == d.current_version {
                names.push("main".into());
            }
            for (b, n) in &d.refs.branches {
                if *n == v.version {
                    names.push(b.clone());
                }
            }
            for (t, n) in &d.refs.tags {
                if *n == v.version {
                    names.push(format!("tag {t}"));
                }
            }
            let head = if v.version == d.current_version {
                format!("  (head; {})", names.join(", "))
            } else if names.is_empty() {
                String::new()
            } else {
                format!("  ({})", names.join(", "))
            };
            let schema = match &v.schema_diff {
                Some(diff) if !diff.is_empty() => format!("  schema: {}", diff.describe()),
                _ => String::new(),
            };
            out.push(format!(
                "{prefix}{branch}v{}  {} rows  {}  upload {}{head}{schema}",
                v.version, v.row_count, v.registered_at, v.upload_id
            ));
            walk(d, Some(v.version), &next, out);
        }
    }
    let mut out = Vec::new();
    walk(d, None, "", &mut out);
    // A version whose parent is not registered (cannot happen through weir) still shows.
    for v in &d.versions {
        if v.parent_version
            .is_some_and(|p| !d.versions.iter().any(|w| w.version == p))
        {
            out.push(format!(
                "v{} (parent v{} missing)",
                v.version,
                v.parent_version.unwrap_or(0)
            ));
        }
    }
    out
}

/// Appends `event` as `actor` after exactly the dataset event at `last_seq` (0: none):
/// a decision made on what the log said is refused (`false`) if it changed.
async fn try_append_after(
    journal: &Journal,
    id: DatasetId,
    actor: &Owner,
    last_seq: u64,
    event: Event,
) -> Result<bool> {
    let first: UploadId = UploadId::from_u128(id.as_u128());
    let env = Envelope::new(
        Aggregate::Dataset(id),
        actor.clone(),
        first,
        Some(EventId::new()),
        event,
    );
    let expect = if last_seq == 0 {
        Expect::Empty
    } else {
        Expect::LastSequence(last_seq)
    };
    Ok(matches!(
        journal.append(&env, expect).await?,
        AppendOutcome::Appended { .. }
    ))
}

/// [`try_append_after`], an error when the dataset changed meanwhile.
async fn append_after(
    journal: &Journal,
    id: DatasetId,
    actor: &Owner,
    last_seq: u64,
    event: Event,
) -> Result<()> {
    if !try_append_after(journal, id, actor, last_seq, event).await? {
        bail!("dataset {id} changed meanwhile; look again and retry");
    }
    Ok(())
}

/// Appends `event` (a dataset setting, whatever came before) after the dataset's last
/// event as `actor`, checking again on every try that `actor` may do `action`.
async fn set_dataset(
    journal: &Journal,
    id: DatasetId,
    actor: &Owner,
    action: DatasetAction,
    event: Event,
) -> Result<()> {
    for _ in 0..5 {
        let facts = facts_for(journal, id, actor, action).await?;
        if try_append_after(journal, id, actor, facts.last_seq, event.clone()).await? {
            return Ok(());
        }
    }
    bail!("dataset {id} kept changing meanwhile; try again")
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

pub async fn run(db: &Db, journal: &Journal, store: &Store, args: DatasetsArgs) -> Result<i32> {
    let caller = args.as_owner.as_ref();
    match args.command {
        DatasetsCommand::Grant {
            id,
            owner,
            level,
            json,
        } => grant(db, journal, caller, id, owner, level, json).await?,
        DatasetsCommand::Revoke { id, owner, json } => {
            revoke(db, journal, caller, id, owner, json).await?
        }
        DatasetsCommand::Grants { id, json } => list_grants(db, caller, id, json).await?,
        DatasetsCommand::Versions { id, json } => {
            let d = permitted(db, id, caller, DatasetAction::Read).await?;
            if json {
                let versions: Vec<_> = d
                    .versions
                    .iter()
                    .map(|v| {
                        serde_json::json!({
                            "version": v.version, "parent_version": v.parent_version,
                            "head": v.version == d.current_version, "row_count": v.row_count,
                            "upload_id": v.upload_id, "registered_at": v.registered_at.to_string(),
                            "location": store.location(&v.parquet_key),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&versions)?);
            } else {
                println!("{}  table {}", d.id, d.table_name);
                for line in tree_lines(&d) {
                    println!("{line}");
                }
            }
        }
        DatasetsCommand::Branch {
            id,
            name,
            from,
            json,
        } => {
            weir_events::valid_ref_name(&name).map_err(|e| anyhow::anyhow!(e))?;
            let (d, facts, actor) =
                catalog_and_facts(db, journal, id, caller, DatasetAction::Branch).await?;
            if name == "main"
                || facts.branches.contains_key(&name)
                || facts.tags.contains_key(&name)
            {
                bail!("dataset {id} already has a branch or tag named {name:?}");
            }
            let from = match from {
                Some(n) => registered_version(journal, &facts, &d, &n.to_string()).await?,
                None => d.current_version,
            };
            let event = Event::DatasetBranched(weir_events::DatasetBranched {
                branch: name.clone(),
                from_version: from,
            });
            append_after(journal, id, &actor, facts.last_seq, event).await?;
            crate::say(
                json,
                serde_json::json!({"dataset_id": id.to_string(), "branch": name, "version": from}),
                format!("{id}: branch {name} at v{from}"),
            );
        }
        DatasetsCommand::Tag {
            id,
            name,
            version,
            json,
        } => {
            weir_events::valid_ref_name(&name).map_err(|e| anyhow::anyhow!(e))?;
            let (d, facts, actor) =
                catalog_and_facts(db, journal, id, caller, DatasetAction::Tag).await?;
            if let Some(existing) = facts.tags.get(&name) {
                bail!("dataset {id}: tag {name} already points to v{existing}; tags never move");
            }
            if name == "main" || facts.branches.contains_key(&name) {
                bail!("dataset {id} already has a branch named {name:?}");
            }
            let n = registered_version(journal, &facts, &d, &version).await?;
            let event = Event::DatasetTagged(weir_events::DatasetTagged {
                tag: name.clone(),
                version: n,
            });
            append_after(journal, id, &actor, facts.last_seq, event).await?;
            crate::say(
                json,
                serde_json::json!({"dataset_id": id.to_string(), "tag": name, "version": n}),
                format!("{id}: tag {name} -> v{n}"),
            );
        }
        DatasetsCommand::Rollback {
            id,
            branch,
            to,
            json,
        } => {
            let (d, facts, actor) =
                catalog_and_facts(db, journal, id, caller, DatasetAction::Rollback).await?;
            let branch = branch.filter(|b| b != "main");
            if !facts.has_branch(branch.as_deref()) {
                bail!(
                    "dataset {id} has no branch {:?}",
                    branch.unwrap_or_default()
                );
            }
            let n = registered_version(journal, &facts, &d, &to).await?;
            let event = Event::DatasetHeadMoved(weir_events::DatasetHeadMoved {
                branch: branch.clone(),
                to_version: n,
            });
            append_after(journal, id, &actor, facts.last_seq, event).await?;
            let name = branch.as_deref().unwrap_or("main");
            crate::say(
                json,
                serde_json::json!({"dataset_id": id.to_string(), "branch": name, "version": n}),
                format!("{id}: {name} now at v{n}"),
            );
        }
        DatasetsCommand::Policy { id, policy, json } => {
            let (_, _, actor) =
                catalog_and_facts(db, journal, id, caller, DatasetAction::Policy).await?;
            let event =
                Event::DatasetSchemaPolicyChanged(weir_events::DatasetSchemaPolicyChanged {
                    policy,
                });
            set_dataset(journal, id, &actor, DatasetAction::Policy, event).await?;
            crate::say(
                json,
                serde_json::json!({"dataset_id": id.to_string(), "schema_policy": policy.as_str()}),
                format!(
                    "{id}: new versions may make {} schema changes",
                    policy.as_str()
                ),
            );
        }
        DatasetsCommand::BadRows { id, policy, json } => {
            let (_, _, actor) =
                catalog_and_facts(db, journal, id, caller, DatasetAction::Policy).await?;
            let bad_rows: Option<BadRows> = match policy.as_str() {
                "default" => None,
                other => Some(other.parse().map_err(|e: String| anyhow::anyhow!(e))?),
            };
            let event = Event::DatasetBadRowsChanged(DatasetBadRowsChanged { bad_rows });
            set_dataset(journal, id, &actor, DatasetAction::Policy, event).await?;
            crate::say(
                json,
                serde_json::json!({"dataset_id": id.to_string(), "bad_rows": policy}),
                format!("{id}: new versions use bad-rows {policy} unless the upload names one"),
            );
        }
        DatasetsCommand::List {
            json,
            owner,
            status,
            search,
            limit,
            offset,
        } => {
            let owner = match (caller, owner) {
                (Some(c), Some(o)) if *c != o => {
                    bail!(
                        "--as {c} lists {c}'s datasets and those shared with {c}; drop --owner {o}"
                    )
                }
                (Some(c), _) => Some(c.clone()),
                (None, o) => o,
            };
            let filter = DatasetFilter {
                owner,
                with_shared: caller.is_some(),
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
                    let shared = d
                        .shared
                        .as_deref()
                        .map(|l| format!("  (shared: {l})"))
                        .unwrap_or_default();
                    println!(
                        "{:<31}  {:<28}  {:>10}  {:<12}  {}{deleted}{warning}{shared}",
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
            let (id, reference) = parse_ref(&id)?;
            let d = permitted(db, id, caller, DatasetAction::Read).await?;
            if let Some(name) = reference {
                let Some(v) = d.resolve(&name) else {
                    let known: Vec<String> = d
                        .versions
                        .iter()
                        .map(|v| format!("v{}", v.version))
                        .collect();
                    let refs: Vec<&str> = d
                        .refs
                        .branches
                        .keys()
                        .chain(d.refs.tags.keys())
                        .map(String::as_str)
                        .collect();
                    bail!(
                        "dataset {id} has no version {name} (it has {}; branches and tags: main{}{})",
                        known.join(", "),
                        if refs.is_empty() { "" } else { ", " },
                        refs.join(", ")
                    );
                };
                if json {
                    let mut value = serde_json::to_value(v)?;
                    value["id"] = d.id.clone().into();
                    value["table_name"] = d.table_name.clone().into();
                    value["head"] = (v.version == d.current_version).into();
                    value["location"] = store.location(&v.parquet_key).into();
                    println!("{}", serde_json::to_string_pretty(&value)?);
                } else {
                    println!(
                        "{}@v{}  table {}  {} rows{}",
                        d.id,
                        v.version,
                        d.table_name,
                        v.row_count,
                        v.parent_version
                            .map(|p| format!("  parent v{p}"))
                            .unwrap_or_default()
                    );
                    println!("location {}", store.location(&v.parquet_key));
                    if let (Some(diff), Some(p)) = (&v.schema_diff, v.parent_version) {
                        println!("schema   against v{p}: {}", diff.describe());
                    }
                    if let Some(q) = &v.quality {
                        let rejects = q.rejects.as_deref().map(|k| store.location(k));
                        for line in crate::views::quality_lines(q, rejects) {
                            println!("{line}");
                        }
                    }
                    for f in &v.schema.fields {
                        println!("  {:<30} {}", f.name, f.data_type);
                    }
                }
                return Ok(0);
            }
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

/// `weir datasets grant ID OWNER LEVEL`: appended only when it changes something.
async fn grant(
    db: &Db,
    journal: &Journal,
    caller: Option<&Owner>,
    id: DatasetId,
    grantee: Owner,
    level: AccessLevel,
    json: bool,
) -> Result<()> {
    let (_, facts, actor) =
        catalog_and_facts(db, journal, id, caller, DatasetAction::Grant).await?;
    if grantee == facts.owner {
        bail!("{grantee} owns dataset {id}; an owner needs no grant");
    }
    if facts.grants.get(&grantee) != Some(level) {
        let event = Event::DatasetAccessGranted(DatasetAccessGranted {
            grantee: grantee.clone(),
            level,
        });
        append_after(journal, id, &actor, facts.last_seq, event).await?;
    }
    crate::say(
        json,
        serde_json::json!({"dataset_id": id.to_string(), "grantee": grantee.to_string(),
                    "level": level.as_str(), "granted_by": actor.to_string()}),
        format!("{id}: {grantee} has {level} access (granted by {actor})"),
    );
    Ok(())
}

async fn revoke(
    db: &Db,
    journal: &Journal,
    caller: Option<&Owner>,
    id: DatasetId,
    grantee: Owner,
    json: bool,
) -> Result<()> {
    let (_, facts, actor) =
        catalog_and_facts(db, journal, id, caller, DatasetAction::Grant).await?;
    if facts.grants.get(&grantee).is_none() {
        bail!("{grantee} has no grant on dataset {id}");
    }
    let event = Event::DatasetAccessRevoked(DatasetAccessRevoked {
        grantee: grantee.clone(),
    });
    append_after(journal, id, &actor, facts.last_seq, event).await?;
    crate::say(
        json,
        serde_json::json!({"dataset_id": id.to_string(), "grantee": grantee.to_string(),
                    "revoked_by": actor.to_string()}),
        format!("{id}: {grantee}'s access revoked (by {actor})"),
    );
    Ok(())
}

async fn list_grants(db: &Db, caller: Option<&Owner>, id: DatasetId, json: bool) -> Result<()> {
    let d = permitted(db, id, caller, DatasetAction::Read).await?;
    let list = weir_projections::grants(db, id).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "dataset_id": d.id, "owner": d.owner, "grants": list,
            }))?
        );
    } else {
        println!("{}  owner {}", d.id, d.owner);
        if list.is_empty() {
            println!("no grants: weir datasets grant {id} OWNER read|write|admin");
        }
        for g in &list {
            println!(
                "  {:<16} {:<6} granted by {} at {}",
                g.grantee, g.level, g.granted_by, g.granted_at
            );
        }
    }
    Ok(())
}
