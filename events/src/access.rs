//! Who may do what with a dataset: the levels an owner grants another owner, the
//! access a caller has, what each action needs, and the fold of a dataset's grant
//! events. The one rule every reader and writer of datasets applies (CLI, gateway,
//! inferrer), pure and free of I/O; where the grants come from (the dataset's events,
//! or the `dataset_grants` projection) is the caller's business.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::ids::Owner;

/// What an owner grants another on a dataset, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLevel {
    /// See it: metadata, versions, rows, grants.
    Read,
    /// Read, and add versions, branches, tags; move heads.
    Write,
    /// Write, and grant, revoke, change its policies, rename, delete and restore.
    Admin,
}

impl AccessLevel {
    pub const ALL: [AccessLevel; 3] = [Self::Read, Self::Write, Self::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }
}

impl std::fmt::Display for AccessLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AccessLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| format!("unknown access level {s:?}: use read, write or admin"))
    }
}

/// The access a caller has to a dataset, weakest first: none, a grant, or ownership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    None,
    Read,
    Write,
    Admin,
    Owner,
}

impl Access {
    /// The one rule: the owner owns; anyone else has what was granted, or nothing.
    pub fn of(caller: &Owner, owner: &Owner, grant: Option<AccessLevel>) -> Access {
        if caller == owner {
            return Access::Owner;
        }
        match grant {
            None => Access::None,
            Some(AccessLevel::Read) => Access::Read,
            Some(AccessLevel::Write) => Access::Write,
            Some(AccessLevel::Admin) => Access::Admin,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
            Self::Owner => "owner",
        }
    }

    /// May this access do `action`? `Err` says why not.
    pub fn check(self, action: DatasetAction) -> Result<(), Denied> {
        let needs = action.needs();
        if self == Access::None {
            Err(Denied::NotFound)
        } else if self < needs {
            Err(Denied::TooWeak {
                has: self,
                needs,
                action,
            })
        } else {
            Ok(())
        }
    }
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything done to or with a dataset, by the access it needs (README: the matrix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatasetAction {
    /// Show it, its versions, rows, history and grants; list it.
    Read,
    /// Upload a new version (`weir upload --dataset`).
    Upload,
    Branch,
    Tag,
    Rollback,
    /// The schema policy and the default bad-row policy.
    Policy,
    /// The label and the table name.
    Update,
    Delete,
    Restore,
    /// Grant and revoke.
    Grant,
}

impl DatasetAction {
    pub fn needs(self) -> Access {
        match self {
            Self::Read => Access::Read,
            Self::Upload | Self::Branch | Self::Tag | Self::Rollback => Access::Write,
            Self::Policy | Self::Update | Self::Delete | Self::Restore | Self::Grant => {
                Access::Admin
            }
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Upload => "upload a version",
            Self::Branch => "branch",
            Self::Tag => "tag",
            Self::Rollback => "roll back",
            Self::Policy => "change the policy",
            Self::Update => "rename or relabel",
            Self::Delete => "delete",
            Self::Restore => "restore",
            Self::Grant => "grant or revoke",
        }
    }
}

/// Why an access check failed: the dataset is invisible to the caller (HTTP 404), or
/// visible but the grant is too weak (HTTP 403).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    NotFound,
    TooWeak {
        has: Access,
        needs: Access,
        action: DatasetAction,
    },
}

impl Denied {
    /// The message for `caller` about `dataset`.
    pub fn message(&self, caller: &Owner, dataset: impl std::fmt::Display) -> String {
        match self {
            Denied::NotFound => format!("no dataset {dataset}"),
            Denied::TooWeak { has, needs, action } => format!(
                "owner {caller} has {has} access to dataset {dataset}; to {} needs {needs}",
                action.as_str()
            ),
        }
    }
}

/// The live grants of one dataset, folded from its events in log order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants(pub BTreeMap<Owner, AccessLevel>);

impl Grants {
    /// Folds one event of the dataset's aggregate; other events change nothing.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::DatasetAccessGranted(e) => {
                self.0.insert(e.grantee.clone(), e.level);
            }
            Event::DatasetAccessRevoked(e) => {
                self.0.remove(&e.grantee);
            }
            _ => {}
        }
    }

    pub fn get(&self, grantee: &Owner) -> Option<AccessLevel> {
        self.0.get(grantee).copied()
    }

    /// `caller`'s access to a dataset owned by `owner` with these grants.
    pub fn access(&self, caller: &Owner, owner: &Owner) -> Access {
        Access::of(caller, owner, self.get(caller))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(s: &str) -> Owner {
        s.parse().unwrap()
    }

    #[test]
    fn matrix() {
        use DatasetAction::*;
        let all = [
            Read, Upload, Branch, Tag, Rollback, Policy, Update, Delete, Restore, Grant,
        ];
        let allowed = |a: Access| -> Vec<DatasetAction> {
            all.into_iter().filter(|x| a.check(*x).is_ok()).collect()
        };
        assert_eq!(allowed(Access::None), vec![]);
        assert_eq!(allowed(Access::Read), vec![Read]);
        assert_eq!(
            allowed(Access::Write),
            vec![Read, Upload, Branch, Tag, Rollback]
        );
        assert_eq!(allowed(Access::Admin), all.to_vec());
        assert_eq!(allowed(Access::Owner), all.to_vec());
        assert_eq!(Access::None.check(Read), Err(Denied::NotFound));
        assert!(matches!(
            Access::Read.check(Upload),
            Err(Denied::TooWeak {
                has: Access::Read,
                needs: Access::Write,
                ..
            })
        ));
    }

    #[test]
    fn grants_fold_regrant_and_revoke() {
        use crate::event::{DatasetAccessGranted, DatasetAccessRevoked};
        let (acme, bob) = (o("acme"), o("bob"));
        let mut g = Grants::default();
        assert_eq!(g.access(&bob, &acme), Access::None);
        assert_eq!(g.access(&acme, &acme), Access::Owner);
        g.apply(&Event::DatasetAccessGranted(DatasetAccessGranted {
            grantee: bob.clone(),
            level: AccessLevel::Read,
        }));
        assert_eq!(g.access(&bob, &acme), Access::Read);
        g.apply(&Event::DatasetAccessGranted(DatasetAccessGranted {
            grantee: bob.clone(),
            level: AccessLevel::Admin,
        }));
        assert_eq!(g.access(&bob, &acme), Access::Admin);
        g.apply(&Event::DatasetAccessRevoked(DatasetAccessRevoked {
            grantee: bob.clone(),
        }));
        assert_eq!(g.access(&bob, &acme), Access::None);
        assert_eq!("write".parse::<AccessLevel>(), Ok(AccessLevel::Write));
        assert!("owner".parse::<AccessLevel>().is_err());
    }
}
