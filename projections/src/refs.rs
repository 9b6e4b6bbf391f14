//! The object references projection (`object_refs`): which uploads and datasets
//! reference each object key in the store, whether each reference is live, since when
//! it is not and why, and whether the object was deleted. Never a counter: one row per
//! (object, holder), folded from the events like every other row image (`apply.rs`
//! calls in here), so a rebuild from the log gives the same rows.
//!
//! - An upload holds its parts (from `UploadStarted`/`UploadReceived`), its staging
//!   object (several parts), its blob (`PartsCombined`), its Parquet and rejects
//!   (`SchemaInferred`) while it is under way. `PartsCombined` ends the parts' and
//!   staging's references (`combined`: what is left is an orphan); the upload's end
//!   ends the rest (`registered`, `failed`, `aborted`).
//! - A dataset holds, from each registration, that version's blob, Parquet and
//!   rejects, until it is purged (`DatasetPurged` → `purged`). Versions of one dataset
//!   sharing an object are one reference. The registration hands the upload's
//!   references over: the upload's rows for the objects the dataset now holds are
//!   removed, not ended (a live reference of the dataset decides everything they
//!   would, and a rebuild writes two rows per upload fewer); what the version did not
//!   take (its parts, a Parquet it did not register) ends as `registered`.
//! - An object is marked deleted on every reference it had when `ObjectDeleted` names
//!   it, when a compensation says it removed it, or when an abort says its parts were
//!   removed. A reference made later (the same content uploaded again) is a new life
//!   of the key and starts undeleted.

use std::collections::{BTreeSet, HashMap};

use weir_events::{
    Aggregate, CompensationAction, Envelope, Event, ObjectKey, Owner, PartLayout, UploadId,
};
use weir_journal::Recorded;

use crate::Error;
use crate::db::Conn;
use crate::fresh::Written;
use crate::rows::{Keyed, RefRow, Sql};

/// Why a reference stopped being live (`ended_by`).
pub mod ended {
    /// Parts and staging once the blob exists.
    pub const COMBINED: &str = "combined";
    /// An upload's references once its dataset version holds them.
    pub const REGISTERED: &str = "registered";
    pub const FAILED: &str = "failed";
    pub const ABORTED: &str = "aborted";
    /// A dataset's references once it is purged.
    pub const PURGED: &str = "purged";
}

/// `upload:<id>`: the holder name of an upload.
pub fn upload_holder(upload: &str) -> String {
    format!("upload:{upload}")
}

/// `dataset:<id>`: the holder name of a dataset.
pub fn dataset_holder(dataset: &str) -> String {
    format!("dataset:{dataset}")
}

/// The reference rows a batch starts from: by holder and by object key.
#[derive(Debug, Default)]
pub(crate) struct RefNeeds {
    holders: BTreeSet<String>,
    keys: BTreeSet<String>,
}

fn upload_of(env: &Envelope) -> String {
    match &env.aggregate {
        Aggregate::Upload(id) => id.to_string(),
        _ => env.correlation_id.to_string(),
    }
}

/// What [`Written`] records of references: their holders and their objects, the two
/// ways a batch reads them.
const BY_HOLDER: &str = "object_refs.holder";
const BY_KEY: &str = "object_refs.object_key";

/// Adds to `needs` the reference rows `rec` reads or changes.
pub(crate) fn needs(needs: &mut RefNeeds, rec: &Recorded) {
    let env = &rec.envelope;
    match &env.event {
        Event::UploadStarted(_)
        | Event::UploadReceived(_)
        | Event::UploadReceivedV1(_)
        | Event::UploadReceivedV2(_)
        | Event::PartsCombined(_)
        | Event::PartsCombinedV1(_)
        | Event::SchemaInferred(_)
        | Event::SchemaInferredV1(_)
        | Event::Failed(_)
        | Event::UploadAborted(_) => {
            needs.holders.insert(upload_holder(&upload_of(env)));
        }
        Event::DatasetRegistered(e) => {
            needs.holders.insert(upload_holder(&upload_of(env)));
            needs.holders.insert(dataset_holder(&e.dataset.to_string()));
        }
        Event::DatasetRegisteredV1(e) => {
            needs.holders.insert(upload_holder(&upload_of(env)));
            needs.holders.insert(dataset_holder(&e.dataset.to_string()));
        }
        Event::Compensated(e) => {
            needs.holders.insert(upload_holder(&upload_of(env)));
            if let Some(key) = removed_key(&e.action) {
                needs.keys.insert(key.to_string());
            }
        }
        Event::ObjectDeleted(e) => {
            needs.keys.insert(e.key.to_string());
        }
        Event::DatasetPurged(_) => {
            if let Aggregate::Dataset(id) = &env.aggregate {
                needs.holders.insert(dataset_holder(&id.to_string()));
            }
        }
        _ => {}
    }
}

/// The one object a compensation says it removed, if it names one.
fn removed_key(action: &CompensationAction) -> Option<&ObjectKey> {
    match action {
        CompensationAction::BlobRemoved { blob } => Some(blob),
        CompensationAction::ParquetRemoved { parquet } => Some(parquet),
        CompensationAction::RejectsRemoved { rejects } => Some(rejects),
        CompensationAction::BlobKept { .. } | CompensationAction::PartsRemoved { .. } => None,
    }
}

/// The reference rows of a batch, with an index by holder and by key. An index entry
/// may outlive its row (removed at a hand-over): every reader looks the row up.
#[derive(Debug, Default)]
pub(crate) struct ObjectRefs {
    rows: Keyed<(String, String), RefRow>,
    by_holder: HashMap<String, BTreeSet<String>>,
    /// Made when an event first needs it (an object deleted: rare beside the
    /// references every upload makes), then kept up to date.
    by_key: Option<HashMap<String, BTreeSet<String>>>,
}

/// Where a new reference comes from.
struct Origin<'a> {
    holder: String,
    owner: &'a str,
    upload: &'a str,
    dataset: Option<&'a str>,
    at: i64,
    seq: i64,
}

impl ObjectRefs {
    fn index(&mut self, key: &str, holder: &str) {
        match self.by_holder.get_mut(holder) {
            Some(keys) => {
                if !keys.contains(key) {
                    keys.insert(key.to_owned());
                }
            }
            None => {
                self.by_holder
                    .insert(holder.to_owned(), BTreeSet::from([key.to_owned()]));
            }
        }
        if let Some(by_key) = &mut self.by_key {
            by_key
                .entry(key.to_owned())
                .or_default()
                .insert(holder.to_owned());
        }
    }

    /// The holders of references to `key`, in order (the index is built on first use).
    fn holders_of(&mut self, key: &str) -> Vec<String> {
        let by_key = self.by_key.get_or_insert_with(|| {
            let mut by_key: HashMap<String, BTreeSet<String>> = HashMap::new();
            for (holder, keys) in &self.by_holder {
                for key in keys {
                    by_key
                        .entry(key.clone())
                        .or_default()
                        .insert(holder.clone());
                }
            }
            by_key
        });
        by_key
            .get(key)
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The rows `needs` names as they stand before the batch: from the database,
    /// overlaid with what `after` (the previous batch, maybe not committed yet) knows of
    /// the same holders and keys, the rows it removed included. A row that batch did not
    /// touch reads the same from the database.
    pub(crate) async fn load(
        sql: &Sql,
        conn: &mut Conn<'_>,
        needs: RefNeeds,
        after: Option<&ObjectRefs>,
        fresh: Option<&Written>,
    ) -> Result<Self, Error> {
        let mut refs = ObjectRefs::default();
        // A build on empty tables reads only the holders and keys it has written.
        let held = |what: &str, k: &String| fresh.is_none_or(|w| w.may_hold(what, k));
        let holders: Vec<&String> = needs
            .holders
            .iter()
            .filter(|h| held(BY_HOLDER, h))
            .collect();
        let keys: Vec<&String> = needs.keys.iter().filter(|k| held(BY_KEY, k)).collect();
        let mut rows = sql.load::<RefRow, _>(conn, &["holder"], &holders).await?;
        rows.extend(sql.load::<RefRow, _>(conn, &["object_key"], &keys).await?);
        for row in rows {
            refs.index(&row.object_key, &row.holder);
            refs.rows
                .loaded((row.object_key.clone(), row.holder.clone()), Some(row));
        }
        if let Some(after) = after {
            for (k, row) in after.rows.known() {
                let (key, holder) = k;
                if needs.holders.contains(holder) || needs.keys.contains(key) {
                    if row.is_some() {
                        refs.index(key, holder);
                    }
                    refs.rows.loaded(k.clone(), row.cloned());
                }
            }
        }
        Ok(refs)
    }

    /// Adds the holder and the object of every reference this batch writes or
    /// deletes to `fresh` (what [`ObjectRefs::load`] reads by).
    pub(crate) fn record(&self, fresh: &mut Written) {
        for (key, holder) in self.rows.written_keys() {
            fresh.insert(BY_HOLDER, holder);
            fresh.insert(BY_KEY, key);
        }
    }

    pub(crate) async fn write(&self, sql: &Sql, conn: &mut Conn<'_>) -> Result<(), Error> {
        let (put, gone) = self.rows.changed();
        sql.delete_keys::<RefRow, _>(conn, &gone).await?;
        sql.write(conn, &put).await
    }

    /// At registration the dataset holds what the upload held and the version keeps:
    /// the upload's own rows for those objects are removed (the dataset's live row
    /// says all they would); the rest of the upload's references end as `registered`.
    fn hand_over(&mut self, upload: &str, dataset: &str, at: i64, seq: i64) {
        for key in self.keys_of(upload) {
            let mut k = (key, dataset.to_owned());
            if self.rows.get(&k).is_some_and(|r| r.live == 1) {
                k.1 = upload.to_owned();
                self.rows.remove(&k);
            }
        }
        self.end(upload, |_| true, ended::REGISTERED, at, seq);
    }

    /// A live reference from `origin.holder` to `key`; one that exists stays as it is,
    /// one that ended lives again.
    fn add(&mut self, key: &ObjectKey, role: &str, o: &Origin<'_>) {
        let k = (key.to_string(), o.holder.clone());
        if let Some(row) = self.rows.get(&k) {
            if row.live == 1 {
                return;
            }
            if let Some(row) = self.rows.get_mut(&k) {
                row.live = 1;
                row.ended_by = None;
                row.ended_at = None;
                row.ended_seq = None;
                row.deleted_at = None;
                row.deleted_seq = None;
                row.created_at = o.at;
                row.created_seq = o.seq;
            }
            return;
        }
        self.index(&k.0, &k.1);
        self.rows.put(
            k.clone(),
            RefRow {
                object_key: k.0,
                holder: k.1,
                role: role.to_owned(),
                owner: o.owner.to_owned(),
                upload_id: o.upload.to_owned(),
                dataset_id: o.dataset.map(str::to_owned),
                live: 1,
                created_at: o.at,
                created_seq: o.seq,
                ended_by: None,
                ended_at: None,
                ended_seq: None,
                deleted_at: None,
                deleted_seq: None,
            },
        );
    }

    /// The keys `holder` references (or did, for a row removed this batch), in order.
    fn keys_of(&self, holder: &str) -> Vec<String> {
        self.by_holder
            .get(holder)
            .map(|keys| keys.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Ends `holder`'s live references whose role `which` accepts.
    fn end(&mut self, holder: &str, which: impl Fn(&str) -> bool, by: &str, at: i64, seq: i64) {
        for key in self.keys_of(holder) {
            let k = (key, holder.to_owned());
            if self
                .rows
                .get(&k)
                .is_some_and(|r| r.live == 1 && which(&r.role))
                && let Some(row) = self.rows.get_mut(&k)
            {
                row.live = 0;
                row.ended_by = Some(by.to_owned());
                row.ended_at = Some(at);
                row.ended_seq = Some(seq);
            }
        }
    }

    /// Marks the object deleted on every reference of this life of the key.
    fn deleted_key(&mut self, key: &str, at: i64, seq: i64) {
        for holder in self.holders_of(key) {
            self.deleted((key.to_owned(), holder), at, seq);
        }
    }

    fn deleted(&mut self, k: (String, String), at: i64, seq: i64) {
        if self.rows.get(&k).is_some_and(|r| r.deleted_seq.is_none())
            && let Some(row) = self.rows.get_mut(&k)
        {
            row.deleted_at = Some(at);
            row.deleted_seq = Some(seq);
        }
    }

    /// Marks `holder`'s objects of the roles `which` accepts deleted.
    fn deleted_roles(&mut self, holder: &str, which: impl Fn(&str) -> bool, at: i64, seq: i64) {
        for key in self.keys_of(holder) {
            let k = (key, holder.to_owned());
            if self.rows.get(&k).is_some_and(|r| which(&r.role)) {
                self.deleted(k, at, seq);
            }
        }
    }

    /// The key of `holder`'s reference in `role`, if it has one.
    fn key_in_role(&self, holder: &str, role: &str) -> Option<String> {
        self.keys_in_role(holder, role).into_iter().next()
    }

    /// Every key `holder` references in `role`, in key order.
    fn keys_in_role(&self, holder: &str, role: &str) -> Vec<String> {
        let Some(keys) = self.by_holder.get(holder) else {
            return Vec::new();
        };
        keys.iter()
            .filter(|key| {
                self.rows
                    .get(&((*key).clone(), holder.to_owned()))
                    .is_some_and(|r| r.role == role)
            })
            .cloned()
            .collect()
    }

    /// Folds one event (current variants only: `apply.rs` upgrades legacy ones).
    pub(crate) fn apply(&mut self, rec: &Recorded, at: i64, seq: i64) {
        let env = &rec.envelope;
        let upload = upload_of(env);
        let holder = upload_holder(&upload);
        let actor = env.actor.to_string();
        fn origin<'a>(
            holder: &str,
            owner: &'a Owner,
            upload: &'a str,
            at: i64,
            seq: i64,
        ) -> Origin<'a> {
            Origin {
                holder: holder.to_owned(),
                owner: owner.as_str(),
                upload,
                dataset: None,
                at,
                seq,
            }
        }
        // Parts lie where they did when the event was appended.
        let layout = PartLayout::of(env.schema_version);
        match &env.event {
            Event::UploadStarted(e) => {
                let upload_id: Option<UploadId> = upload.parse().ok();
                if let Some(id) = upload_id {
                    let o = origin(&holder, &e.owner, &upload, at, seq);
                    for n in 1..=e.part_count {
                        self.add(&layout.part(id, n), "part", &o);
                    }
                }
            }
            Event::UploadReceived(e) => {
                let upload_id: Option<UploadId> = upload.parse().ok();
                if let Some(id) = upload_id {
                    let o = origin(&holder, &e.owner, &upload, at, seq);
                    for p in e.all_parts() {
                        self.add(&layout.part(id, p.number), "part", &o);
                    }
                    for (i, (_, _, parts)) in e.files().enumerate() {
                        if parts.len() > 1 {
                            self.add(&layout.staging_of(id, i + 1), "staging", &o);
                        }
                    }
                }
            }
            Event::PartsCombined(e) => {
                self.end(
                    &holder,
                    |role| role == "part" || role == "staging",
                    ended::COMBINED,
                    at,
                    seq,
                );
                let o = Origin {
                    holder: holder.clone(),
                    owner: &actor,
                    upload: &upload,
                    dataset: None,
                    at,
                    seq,
                };
                for blob in e.blobs() {
                    self.add(blob, "blob", &o);
                }
            }
            Event::SchemaInferred(e) => {
                let o = Origin {
                    holder: holder.clone(),
                    owner: &actor,
                    upload: &upload,
                    dataset: None,
                    at,
                    seq,
                };
                self.add(&e.parquet, "parquet", &o);
                if let Some(rejects) = &e.quality.rejects {
                    self.add(rejects, "rejects", &o);
                }
            }
            Event::DatasetRegistered(e) => {
                let dataset = e.dataset.to_string();
                let o = Origin {
                    holder: dataset_holder(&dataset),
                    owner: e.owner.as_str(),
                    upload: &upload,
                    dataset: Some(&dataset),
                    at,
                    seq,
                };
                // One blob per file (several for `--one-version`).
                for blob in self.keys_in_role(&holder, "blob") {
                    self.add(&ObjectKey::from_stored(blob), "blob", &o);
                }
                self.add(&e.parquet, "parquet", &o);
                if let Some(rejects) = self.key_in_role(&holder, "rejects") {
                    self.add(&ObjectKey::from_stored(rejects), "rejects", &o);
                }
                self.hand_over(&holder, &o.holder, at, seq);
            }
            Event::Failed(_) => self.end(&holder, |_| true, ended::FAILED, at, seq),
            Event::UploadAborted(e) => {
                self.end(&holder, |_| true, ended::ABORTED, at, seq);
                if e.parts_removed > 0 {
                    self.deleted_roles(&holder, |role| role == "part", at, seq);
                }
            }
            Event::Compensated(e) => match &e.action {
                CompensationAction::PartsRemoved { .. } => {
                    self.deleted_roles(
                        &holder,
                        |role| role == "part" || role == "staging",
                        at,
                        seq,
                    );
                }
                other => {
                    if let Some(key) = removed_key(other) {
                        self.deleted_key(key.as_str(), at, seq);
                    }
                }
            },
            Event::ObjectDeleted(e) => self.deleted_key(e.key.as_str(), at, seq),
            Event::DatasetPurged(_) => {
                if let Aggregate::Dataset(id) = &env.aggregate {
                    self.end(
                        &dataset_holder(&id.to_string()),
                        |_| true,
                        ended::PURGED,
                        at,
                        seq,
                    );
                }
            }
            _ => {}
        }
    }
}
