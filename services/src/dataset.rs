//! A dataset as its events tell it, for the steps that add a version: who owns it,
//! its current table name and label, whether it is deleted, its versions with their
//! parents, its default bad-row policy and who else may use it (grants).
//!
//! Read from two places, both small: the history of the upload that created the
//! dataset (its id is that upload's, so no index is needed) and the dataset's own
//! aggregate (labels, renames, deletes, version reservations, policy). Which reserved
//! versions registered is read from each reserving upload's last event, newest first,
//! only as far as needed.

use std::collections::BTreeMap;

use weir_events::{
    Access, Aggregate, BadRows, DatasetAction, DatasetId, DatasetRegistered, Denied, Event, Grants,
    Owner, SchemaPolicy, TableName, UploadId,
};
use weir_journal::Journal;

use crate::runtime::StepError;

/// One version: the upload that made it, the version it derives from, its branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionFact {
    pub upload: UploadId,
    pub parent: Option<u32>,
    /// `None`: `main`.
    pub branch: Option<String>,
}

/// Where a branch's head was set on the dataset's aggregate: by its creation or a
/// move (sequence, version).
type HeadSet = (u64, u32);

#[derive(Debug, Clone)]
pub struct DatasetFacts {
    pub id: DatasetId,
    pub owner: Owner,
    pub table: TableName,
    pub label: Option<String>,
    pub deleted: bool,
    /// Purged by the janitor (`DatasetPurged`): deleted for good, never restored.
    pub purged: bool,
    /// Every version taken, registered or not (version 1 always is).
    pub versions: BTreeMap<u32, VersionFact>,
    pub bad_rows: Option<BadRows>,
    pub schema_policy: SchemaPolicy,
    /// Branches other than `main`, with the last creation or move of their head.
    pub branches: BTreeMap<String, HeadSet>,
    /// The last move of `main`'s head, if any.
    pub main_moved: Option<HeadSet>,
    pub tags: BTreeMap<String, u32>,
    /// Other owners' access, as the grant events left it.
    pub grants: Grants,
    /// Sequence of the last event on the dataset's aggregate (0: none).
    pub last_seq: u64,
}

impl DatasetFacts {
    /// The facts of `id`; a permanent error naming it when no such dataset was ever
    /// registered.
    pub async fn read(journal: &Journal, id: DatasetId) -> Result<Self, StepError> {
        let origin = UploadId::from_u128(id.as_u128());
        let first = journal
            .history(&Aggregate::Upload(origin))
            .await?
            .into_iter()
            .find_map(|r| match r.envelope.event {
                Event::DatasetRegistered(e) => Some(e),
                _ => None,
            })
            .ok_or_else(|| {
                StepError::Permanent(format!(
                    "dataset {id} does not exist (no upload registered it); upload without --dataset to create one"
                ))
            })?;
        let mut facts = DatasetFacts {
            id,
            owner: first.owner,
            table: first.table_name,
            label: first.label,
            deleted: false,
            purged: false,
            versions: BTreeMap::from([(
                first.version,
                VersionFact {
                    upload: origin,
                    parent: None,
                    branch: None,
                },
            )]),
            bad_rows: None,
            schema_policy: SchemaPolicy::default(),
            branches: BTreeMap::new(),
            main_moved: None,
            tags: BTreeMap::new(),
            grants: Grants::default(),
            last_seq: 0,
        };
        for r in journal.history(&Aggregate::Dataset(id)).await? {
            facts.last_seq = r.seq;
            facts.grants.apply(&r.envelope.event);
            match r.envelope.event {
                Event::DatasetRenamed(e) => facts.table = e.to,
                Event::DatasetLabelChanged(e) => facts.label = e.label,
                Event::DatasetDeleted(_) => facts.deleted = true,
                Event::DatasetRestored(_) => facts.deleted = false,
                Event::DatasetPurged(_) => facts.purged = true,
                Event::DatasetBadRowsChanged(e) => facts.bad_rows = e.bad_rows,
                Event::DatasetSchemaPolicyChanged(e) => facts.schema_policy = e.policy,
                Event::DatasetVersionReserved(e) => {
                    facts.versions.insert(
                        e.version,
                        VersionFact {
                            upload: e.upload,
                            parent: e.parent_version,
                            branch: e.branch,
                        },
                    );
                }
                Event::DatasetBranched(e) => {
                    facts.branches.insert(e.branch, (r.seq, e.from_version));
                }
                Event::DatasetTagged(e) => {
                    facts.tags.insert(e.tag, e.version);
                }
                Event::DatasetHeadMoved(e) => match e.branch {
                    Some(b) => {
                        facts.branches.insert(b, (r.seq, e.to_version));
                    }
                    None => facts.main_moved = Some((r.seq, e.to_version)),
                },
                _ => {}
            }
        }
        Ok(facts)
    }

    /// `caller`'s access, by the log: what a decision appended after `last_seq` rests on.
    pub fn access(&self, caller: &Owner) -> Access {
        self.grants.access(caller, &self.owner)
    }

    /// `Ok` when `caller` may do `action`; otherwise why not, in words for `caller`.
    pub fn allow(&self, caller: &Owner, action: DatasetAction) -> Result<(), String> {
        self.access(caller).check(action).map_err(|d| match d {
            // The dataset exists for the log's reader; say whose it is not.
            Denied::NotFound => format!(
                "owner {caller} has no access to dataset {} (owner {}: weir datasets grant {} {caller} read|write|admin)",
                self.id, self.owner, self.id
            ),
            too_weak => too_weak.message(caller, self.id),
        })
    }

    /// The version `upload` reserved, if it did (a redelivered step finds its own).
    pub fn reserved_by(&self, upload: UploadId) -> Option<(u32, Option<u32>)> {
        self.versions
            .iter()
            .find(|(_, v)| v.upload == upload)
            .map(|(n, v)| (*n, v.parent))
    }

    /// The next free version number.
    pub fn next_version(&self) -> u32 {
        self.versions.keys().next_back().map_or(1, |v| v + 1)
    }

    /// True when version `n` was registered: version 1, or a reservation whose upload
    /// ended in `DatasetRegistered`.
    pub async fn registered(&self, journal: &Journal, n: u32) -> Result<bool, StepError> {
        Ok(self.registered_at(journal, n).await?.is_some())
    }

    /// The stream sequence of version `n`'s registration (0 for version 1, which comes
    /// before anything on the dataset's aggregate), `None` when it did not register.
    async fn registered_at(&self, journal: &Journal, n: u32) -> Result<Option<u64>, StepError> {
        let Some(v) = self.versions.get(&n) else {
            return Ok(None);
        };
        if n == 1 {
            return Ok(Some(0));
        }
        let last = journal.last_on(&Aggregate::Upload(v.upload)).await?;
        // Compensations follow a failure; a registered upload ends with its
        // registration.
        Ok(last
            .filter(|r| matches!(r.envelope.event, Event::DatasetRegistered(_)))
            .map(|r| r.seq))
    }

    /// True when `branch` exists (`main` always does).
    pub fn has_branch(&self, branch: Option<&str>) -> bool {
        branch.is_none_or(|b| b == "main" || self.branches.contains_key(b))
    }

    /// The head of `branch` (`None` or `main`: the main line): whichever came last in
    /// the log of its creation, a move of its head, and the registration of a version
    /// on it. `except` (the upload asking) is left out.
    pub async fn branch_head(
        &self,
        journal: &Journal,
        branch: Option<&str>,
        except: UploadId,
    ) -> Result<u32, StepError> {
        let branch = branch.filter(|b| *b != "main");
        let mut best: HeadSet = match branch {
            None => self.main_moved.unwrap_or((0, 1)),
            Some(b) => self.branches.get(b).copied().unwrap_or((0, 1)),
        };
        for (&n, v) in &self.versions {
            if v.upload == except || v.branch.as_deref() != branch || (n == 1 && branch.is_some()) {
                continue;
            }
            if let Some(seq) = self.registered_at(journal, n).await?
                && seq >= best.0
            {
                best = (seq, n);
            }
        }
        Ok(best.1)
    }

    /// Version `n`'s registration (its schema, for a child's diff), if it registered.
    pub async fn registration(
        &self,
        journal: &Journal,
        n: u32,
    ) -> Result<Option<DatasetRegistered>, StepError> {
        let Some(v) = self.versions.get(&n) else {
            return Ok(None);
        };
        Ok(journal
            .history(&Aggregate::Upload(v.upload))
            .await?
            .into_iter()
            .find_map(|r| match r.envelope.event {
                Event::DatasetRegistered(e) if e.dataset == self.id => Some(e),
                _ => None,
            }))
    }

    /// The head of `main`, skipping `except` (the upload asking).
    pub async fn head(&self, journal: &Journal, except: UploadId) -> Result<u32, StepError> {
        self.branch_head(journal, None, except).await
    }
}
