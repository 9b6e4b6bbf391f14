//! Subjects as a type: `weir.<aggregate>.<id>.<kind>`, one subject tree per aggregate.
//!
//! Every subject has exactly four tokens, so `weir.*.*.<kind>` selects a kind across all
//! aggregates and `weir.upload.<id>.>` selects one upload's history.

use std::fmt;

use crate::envelope::Aggregate;
use crate::event::EventKind;
use crate::ids::UploadId;

/// The root token of every weir subject.
pub const ROOT: &str = "weir";

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Subject(String);

impl Subject {
    pub fn new(aggregate: &Aggregate, kind: EventKind) -> Self {
        Self(format!("{}.{kind}", aggregate_prefix(aggregate)))
    }

    /// Everything in one aggregate's tree: what a conditional append is checked against.
    pub fn aggregate_filter(aggregate: &Aggregate) -> Self {
        Self(format!("{}.>", aggregate_prefix(aggregate)))
    }

    /// One upload's history.
    pub fn upload_filter(upload: UploadId) -> Self {
        Self::aggregate_filter(&Aggregate::Upload(upload))
    }

    /// One kind of event across all aggregates.
    pub fn kind_filter(kind: EventKind) -> Self {
        Self(format!("{ROOT}.*.*.{kind}"))
    }

    /// Every weir subject.
    pub fn all() -> Self {
        Self(format!("{ROOT}.>"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The kind token of a concrete subject.
    pub fn kind_of(subject: &str) -> Option<EventKind> {
        subject.rsplit('.').next()?.parse().ok()
    }
}

fn aggregate_prefix(aggregate: &Aggregate) -> String {
    match aggregate {
        Aggregate::Upload(id) => format!("{ROOT}.upload.{id}"),
        Aggregate::Dataset(id) => format!("{ROOT}.dataset.{id}"),
        Aggregate::Name { owner, table } => format!("{ROOT}.name.{table}@{owner}"),
        Aggregate::Owner(owner) => format!("{ROOT}.owner.{owner}"),
        Aggregate::Object(key) => format!("{ROOT}.object.{}", key.subject_token()),
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Subject({})", self.0)
    }
}

impl From<Subject> for String {
    fn from(s: Subject) -> String {
        s.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Owner;

    #[test]
    fn subjects_have_four_tokens() {
        let up = UploadId::from_u128(7);
        let s = Subject::new(&Aggregate::Upload(up), EventKind::PartsCombined);
        assert_eq!(
            s.as_str(),
            "weir.upload.upld_00000000000000000000000007.parts_combined"
        );
        let name = Aggregate::Name {
            owner: "acme".parse::<Owner>().unwrap(),
            table: "orders".parse().unwrap(),
        };
        let s = Subject::new(&name, EventKind::TableNameClaimed);
        assert_eq!(s.as_str(), "weir.name.orders@acme.table_name_claimed");
        for kind in EventKind::ALL {
            let s = Subject::new(&name, kind);
            assert_eq!(s.as_str().split('.').count(), 4);
            assert_eq!(Subject::kind_of(s.as_str()), Some(kind));
        }
        let parquet =
            Aggregate::Object(crate::ObjectKey::parquet(crate::DatasetId::from_u128(7), 2));
        let s = Subject::new(&parquet, EventKind::ObjectDeleted);
        assert_eq!(
            s.as_str(),
            "weir.object.datasets/data_00000000000000000000000007/v2/data%2Eparquet.object_deleted"
        );
        assert_eq!(s.as_str().split('.').count(), 4);
        assert_eq!(
            Subject::upload_filter(up).as_str(),
            "weir.upload.upld_00000000000000000000000007.>"
        );
    }
}
