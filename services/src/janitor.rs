//! janitor: retention and garbage collection, every act an event.
//!
//! Not a step on a durable consumer: every [`JanitorConfig::interval`] it sweeps. A
//! sweep first waits until the projections have caught up with the log as it was when
//! the sweep began (its decisions read them), then:
//!
//! 1. aborts multipart uploads still receiving parts after `multipart` (7 days):
//!    `UploadAborted` (appended conditionally on the `UploadStarted` it saw, so an
//!    upload completed meanwhile wins), then its parts are removed;
//! 2. completes the compensation a crash between `Failed` and `Compensated` lost: the
//!    failed step's own compensation, its `Compensated` events appended conditionally
//!    on the `Failed` (so a late compensation of the service is stored once);
//! 3. purges datasets soft-deleted for `deleted` (30 days): `DatasetPurged`,
//!    conditional on the dataset's last event (a restore that came first wins; after
//!    the purge, restore is refused);
//! 4. waits for the projections again, then deletes each object that nothing live
//!    references and whose every reference's grace period is over (`failed` 90 days,
//!    `aborted` 30, `orphan` 1 for parts left after their blob was made, none once
//!    registered or purged), each deletion an `ObjectDeleted` on the object's own
//!    aggregate, conditional on its last event. Candidates come from the references
//!    projection (`weir_projections::retention`) and, for leftovers of uploads, from a
//!    listing of `uploads/`;
//! 5. deletes what no event names at all (listed under `blobs/`, `parquet/`,
//!    `datasets/` and `uploads/`): an object a step or a producer wrote and then
//!    stopped before recording, once it was last written `orphan` ago (`multipart`
//!    under `uploads/`), as `ObjectDeleted` by weir's own actor ([`Owner::system`]).
//!
//! Time comes from a [`Clock`], so tests move it forward through every period.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use weir_events::{
    Aggregate, Compensated, DatasetId, DatasetPurged, Envelope, Event, EventKind, ObjectDeleted,
    ObjectKey, Owner, Step, Timestamp, UploadAborted, UploadId,
};
use weir_journal::{AppendOutcome, Expect, Recorded};
use weir_projections::Db;
use weir_projections::refs::ended;
use weir_projections::retention::{self, ObjectRef};

use crate::runtime::{Ctx, Service, StepError};
use crate::state::UploadState;

/// Where the janitor's "now" comes from: the system clock, or one a test moves.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicI64>>,
}

impl Clock {
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that stands at `start` until [`Clock::advance`] moves it.
    pub fn manual(start: Timestamp) -> Self {
        Self {
            manual: Some(Arc::new(AtomicI64::new(start.0))),
        }
    }

    pub fn now(&self) -> Timestamp {
        match &self.manual {
            Some(t) => Timestamp(t.load(Ordering::SeqCst)),
            None => Timestamp::now(),
        }
    }

    /// Moves a manual clock forward (a system clock moves by itself).
    pub fn advance(&self, by: Duration) {
        if let Some(t) = &self.manual {
            t.fetch_add(micros(by), Ordering::SeqCst);
        }
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

const DAY: Duration = Duration::from_secs(86_400);

/// How long each kind of leftover is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// A multipart upload still receiving parts is aborted after this.
    pub multipart: Duration,
    /// A failed upload's objects are deleted this long after the failure.
    pub failed: Duration,
    /// An aborted upload's objects, this long after the abort.
    pub aborted: Duration,
    /// A soft-deleted dataset is purged this long after its deletion.
    pub deleted: Duration,
    /// Parts and staging objects left after their blob was made (a crash between
    /// `PartsCombined` and their removal), this long after.
    pub orphan: Duration,
    /// A `Failed` whose compensation is not in the log this long after is completed.
    pub compensation: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            multipart: 7 * DAY,
            failed: 90 * DAY,
            aborted: 30 * DAY,
            deleted: 30 * DAY,
            orphan: DAY,
            compensation: Duration::from_secs(600),
        }
    }
}

/// The environment variables that set each period, with what they set.
pub const RETENTION_VARS: [(&str, &str); 6] = [
    ("WEIR_RETENTION_MULTIPART", "multipart"),
    ("WEIR_RETENTION_FAILED", "failed"),
    ("WEIR_RETENTION_ABORTED", "aborted"),
    ("WEIR_RETENTION_DELETED", "deleted"),
    ("WEIR_RETENTION_ORPHAN", "orphan"),
    ("WEIR_RETENTION_COMPENSATION", "compensation"),
];

impl Retention {
    /// The defaults, with each period given as `NAME=DURATION` in `settings` (e.g.
    /// `failed=30d`) replaced. Names: multipart, failed, aborted, deleted, orphan,
    /// compensation.
    pub fn with(mut self, name: &str, value: &str) -> Result<Self, String> {
        let d = parse_duration(value).map_err(|e| format!("retention {name}: {e}"))?;
        match name {
            "multipart" => self.multipart = d,
            "failed" => self.failed = d,
            "aborted" => self.aborted = d,
            "deleted" => self.deleted = d,
            "orphan" => self.orphan = d,
            "compensation" => self.compensation = d,
            other => {
                return Err(format!(
                    "unknown retention period {other:?}: use multipart, failed, aborted, deleted, orphan or compensation"
                ));
            }
        }
        Ok(self)
    }

    /// The defaults, overridden by `WEIR_RETENTION_*` variables that are set.
    pub fn from_env() -> Result<Self, String> {
        let mut r = Self::default();
        for (var, name) in RETENTION_VARS {
            if let Ok(v) = std::env::var(var)
                && !v.trim().is_empty()
            {
                r = r.with(name, &v).map_err(|e| format!("{var}: {e}"))?;
            }
        }
        Ok(r)
    }

    /// How long after a reference ended (by `ended_by`) its object must stay.
    pub fn grace(&self, ended_by: Option<&str>) -> Duration {
        match ended_by {
            Some(ended::REGISTERED) | Some(ended::PURGED) => Duration::ZERO,
            Some(ended::COMBINED) => self.orphan,
            Some(ended::ABORTED) => self.aborted,
            // `failed`, and anything this build does not know: the longest.
            _ => self.failed.max(self.aborted),
        }
    }
}

/// `90d`, `36h`, `15m`, `30s` or `0`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let bad = || format!("{t:?} is not a duration: use e.g. 90d, 36h, 15m, 30s or 0");
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "d" => n.checked_mul(86_400),
        "h" => n.checked_mul(3_600),
        "m" => n.checked_mul(60),
        "s" => Some(n),
        _ => None,
    }
    .ok_or_else(bad)?;
    Ok(Duration::from_secs(secs))
}

/// `90d`, `36h`, `15m` or `30s`: the largest whole unit.
pub fn show_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".to_owned(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[derive(Debug, Clone)]
pub struct JanitorConfig {
    pub retention: Retention,
    /// Time between sweeps.
    pub interval: Duration,
    /// How long a sweep waits for the projections to reach the log before it gives up
    /// (and tries again at the next sweep).
    pub catch_up: Duration,
}

impl Default for JanitorConfig {
    fn default() -> Self {
        Self {
            retention: Retention::default(),
            interval: Duration::from_secs(3_600),
            catch_up: Duration::from_secs(60),
        }
    }
}

impl JanitorConfig {
    /// The defaults, `WEIR_RETENTION_*` and `WEIR_JANITOR_INTERVAL` applied.
    pub fn from_env() -> Result<Self, String> {
        let mut c = Self {
            retention: Retention::from_env()?,
            ..Self::default()
        };
        if let Ok(v) = std::env::var("WEIR_JANITOR_INTERVAL")
            && !v.trim().is_empty()
        {
            c.interval = parse_duration(&v)
                .map_err(|e| format!("WEIR_JANITOR_INTERVAL: {e}"))?
                .max(Duration::from_secs(1));
        }
        Ok(c)
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sweep {
    pub aborted: Vec<UploadId>,
    pub compensated: Vec<UploadId>,
    pub purged: Vec<DatasetId>,
    pub deleted: Vec<ObjectKey>,
    /// Objects looked at and kept: something live holds them, or a grace period runs.
    pub kept: Vec<ObjectKey>,
}

impl Sweep {
    pub fn is_empty(&self) -> bool {
        self.aborted.is_empty()
            && self.compensated.is_empty()
            && self.purged.is_empty()
            && self.deleted.is_empty()
    }
}

/// The janitor: the log (as the `janitor` user), the store, the projections and a clock.
pub struct Janitor {
    pub ctx: Ctx,
    pub db: Db,
    pub config: JanitorConfig,
    pub clock: Clock,
}

fn transient(e: impl std::fmt::Display) -> StepError {
    StepError::Transient(e.to_string())
}

fn ago(now: Timestamp, d: Duration) -> i64 {
    now.0.saturating_sub(micros(d))
}

impl Janitor {
    /// Sweeps every `interval` until `shutdown`; a failed sweep is logged and tried
    /// again at the next one.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            match self.sweep().await {
                Ok(s) if s.is_empty() => {
                    tracing::debug!(kept = s.kept.len(), "janitor: nothing to do")
                }
                Ok(s) => tracing::info!(
                    aborted = s.aborted.len(),
                    compensated = s.compensated.len(),
                    purged = s.purged.len(),
                    deleted = s.deleted.len(),
                    kept = s.kept.len(),
                    "janitor: sweep done"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "janitor: sweep failed; trying again at the next")
                }
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(self.config.interval) => {}
            }
        }
    }

    /// Waits until the projections have applied the log up to its current end.
    async fn caught_up(&self) -> Result<(), StepError> {
        let target = self.ctx.journal.last_sequence().await?;
        let projector = weir_projections::Projector::new(self.db.clone());
        let started = tokio::time::Instant::now();
        loop {
            let at = projector.checkpoint().await.map_err(transient)?;
            if at >= target {
                return Ok(());
            }
            if started.elapsed() > self.config.catch_up {
                return Err(StepError::Transient(format!(
                    "the projections are at {at}, behind the log's {target}; is the projector running?"
                )));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// One sweep at the clock's current time.
    pub async fn sweep(&self) -> Result<Sweep, StepError> {
        let now = self.clock.now();
        let r = self.config.retention;
        let mut out = Sweep::default();
        self.caught_up().await?;
        let missing = retention::versions_without_references(&self.db)
            .await
            .map_err(transient)?;
        if missing > 0 {
            return Err(StepError::Permanent(format!(
                "the object references do not cover {missing} dataset versions (the projections were built before migration 0005 added them): run `weir replay` to rebuild them from the log; the janitor deletes nothing until then"
            )));
        }

        for (upload, _) in retention::stale_multipart(&self.db, ago(now, r.multipart))
            .await
            .map_err(transient)?
        {
            if let Ok(id) = upload.parse::<UploadId>()
                && done(self.abort(id, r).await, "abort", &upload)?
            {
                out.aborted.push(id);
            }
        }
        for (upload, _) in retention::uncompensated(&self.db, ago(now, r.compensation))
            .await
            .map_err(transient)?
        {
            if let Ok(id) = upload.parse::<UploadId>()
                && done(self.complete_compensation(id).await, "compensate", &upload)?
            {
                out.compensated.push(id);
            }
        }
        for (dataset, owner) in retention::purgeable(&self.db, ago(now, r.deleted))
            .await
            .map_err(transient)?
        {
            if let (Ok(id), Ok(owner)) = (dataset.parse::<DatasetId>(), owner.parse::<Owner>())
                && done(
                    self.purge(id, owner, ago(now, r.deleted), r).await,
                    "purge",
                    &dataset,
                )?
            {
                out.purged.push(id);
            }
        }
        if !out.is_empty() {
            // The deletions below read what those acts changed.
            self.caught_up().await?;
        }

        // Objects with a reference ended by a failure, an abort or a purge.
        let mut by_key: BTreeMap<String, Vec<ObjectRef>> = BTreeMap::new();
        for row in retention::pending(&self.db).await.map_err(transient)? {
            by_key.entry(row.object_key.clone()).or_default().push(row);
        }
        // Objects no event names at all: written by a step or a producer that stopped
        // before recording them (a crash between the write and the append, a write
        // whose event was refused). Judged by their age: `orphan` after they were last
        // written, `multipart` under uploads/ (a producer may write parts for a while
        // before it appends).
        let mut unnamed = Vec::new();
        let mut judge_unnamed = |key: String, written: Timestamp, grace: Duration| {
            if written.0 > ago(now, grace) {
                out.kept.push(ObjectKey::from_stored(key));
            } else {
                unnamed.push((key, written, grace));
            }
        };
        // What is left under uploads/: parts and staging objects nothing removed, and
        // parts no event names yet.
        for (key, written) in self.ctx.store.list_modified("uploads/").await? {
            if by_key.contains_key(&key) {
                continue;
            }
            let rows = retention::refs_of(&self.db, &key)
                .await
                .map_err(transient)?;
            if rows.is_empty() {
                judge_unnamed(key, written, r.multipart);
                continue;
            }
            let undeleted: Vec<ObjectRef> = rows
                .iter()
                .filter(|r| r.deleted_at.is_none())
                .cloned()
                .collect();
            // The object exists though every reference says it was removed (a crash
            // after an abort's append): judge it by all of them.
            by_key.insert(
                key,
                if undeleted.is_empty() {
                    rows
                } else {
                    undeleted
                },
            );
        }
        for prefix in ["blobs/", "parquet/", "datasets/"] {
            let named = retention::referenced_keys(&self.db, prefix)
                .await
                .map_err(transient)?;
            for (key, written) in self.ctx.store.list_modified(prefix).await? {
                if !named.contains(&key) && !by_key.contains_key(&key) {
                    judge_unnamed(key, written, r.orphan);
                }
            }
        }

        for (key, rows) in by_key {
            let key = ObjectKey::from_stored(key);
            match decide(&rows, now, &r) {
                Some((row, reason)) => {
                    let (Ok(owner), Ok(upload)) = (
                        row.owner.parse::<Owner>(),
                        row.upload_id.parse::<UploadId>(),
                    ) else {
                        done(
                            Err(StepError::Permanent(format!(
                                "object_refs row of {key} names owner {:?} and upload {:?}, not valid ids",
                                row.owner, row.upload_id
                            ))),
                            "delete",
                            key.as_str(),
                        )?;
                        continue;
                    };
                    if done(
                        self.delete(&key, owner, upload, reason).await,
                        "delete",
                        key.as_str(),
                    )? {
                        out.deleted.push(key);
                    }
                }
                None => out.kept.push(key),
            }
        }
        for (key, written, grace) in unnamed {
            let key = ObjectKey::from_stored(key);
            // weir's own act: no owner asked for it. Under uploads/ the key names the
            // upload it was meant for.
            let upload = key.staged_for().unwrap_or(NO_UPLOAD);
            let reason = format!(
                "no event names it: last written {written}, kept {} (written by a step or producer that stopped before recording it)",
                show_duration(grace)
            );
            if done(
                self.delete(&key, Owner::system(), upload, reason).await,
                "delete",
                key.as_str(),
            )? {
                out.deleted.push(key);
            }
        }
        Ok(out)
    }

    /// Aborts a multipart upload that is still only `UploadStarted`; false when it
    /// moved on.
    async fn abort(&self, upload: UploadId, r: Retention) -> Result<bool, StepError> {
        let journal = &self.ctx.journal;
        let history = journal.history(&Aggregate::Upload(upload)).await?;
        let Some(last) = history.last() else {
            return Ok(false);
        };
        let Event::UploadStarted(started) = &last.envelope.event else {
            return Ok(false);
        };
        let parts = self.ctx.store.list_parts(upload).await?;
        let env = Envelope::new(
            Aggregate::Upload(upload),
            started.owner.clone(),
            upload,
            Some(last.envelope.event_id),
            Event::UploadAborted(UploadAborted {
                reason: format!(
                    "no UploadReceived {} after the multipart upload was opened (at {}); aborted by the janitor",
                    show_duration(r.multipart),
                    last.stored_at
                ),
                parts_removed: parts.len() as u32,
            }),
        );
        match journal.append(&env, Expect::LastSequence(last.seq)).await? {
            AppendOutcome::Appended { .. } => {}
            AppendOutcome::WrongLastSequence => return Ok(false),
        }
        for key in &parts {
            self.ctx.store.delete(key).await?;
        }
        Ok(true)
    }

    /// Runs the compensation of a failed upload whose last event is its `Failed`;
    /// false when the log shows the compensation (or anything else) after it.
    async fn complete_compensation(&self, upload: UploadId) -> Result<bool, StepError> {
        let history = self.ctx.journal.history(&Aggregate::Upload(upload)).await?;
        let Some(last) = history.last() else {
            return Ok(false);
        };
        let Event::Failed(failed) = &last.envelope.event else {
            return Ok(false);
        };
        let state = UploadState::fold(&history);
        let ctx = self.ctx.clone();
        let actions = match failed.step {
            Step::Upload | Step::Combine => {
                Arc::new(crate::combiner::Combiner)
                    .compensate(ctx, state)
                    .await?
            }
            Step::Infer => {
                Arc::new(crate::inferrer::Inferrer)
                    .compensate(ctx, state)
                    .await?
            }
            Step::Register => {
                Arc::new(crate::registrar::Registrar)
                    .compensate(ctx, state)
                    .await?
            }
        };
        if actions.is_empty() {
            return Ok(false);
        }
        let mut expect = Expect::LastSequence(last.seq);
        let mut cause = last.envelope.event_id;
        for action in actions {
            let env = Envelope::new(
                Aggregate::Upload(upload),
                last.envelope.actor.clone(),
                upload,
                Some(cause),
                Event::Compensated(Compensated {
                    step: failed.step,
                    action,
                }),
            );
            match self.ctx.journal.append(&env, expect).await? {
                AppendOutcome::Appended { seq, .. } => {
                    expect = Expect::LastSequence(seq);
                    cause = env.event_id;
                }
                // The service's own compensation came first.
                AppendOutcome::WrongLastSequence => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Purges a dataset the log shows deleted (at or before `cutoff`) and not restored.
    async fn purge(
        &self,
        dataset: DatasetId,
        owner: Owner,
        cutoff: i64,
        r: Retention,
    ) -> Result<bool, StepError> {
        let history = self
            .ctx
            .journal
            .history(&Aggregate::Dataset(dataset))
            .await?;
        let mut deleted: Option<&Recorded> = None;
        for rec in &history {
            match rec.envelope.event {
                Event::DatasetDeleted(_) => deleted = Some(rec),
                Event::DatasetRestored(_) => deleted = None,
                Event::DatasetPurged(_) => return Ok(false),
                _ => {}
            }
        }
        let (Some(deleted), Some(last)) = (deleted, history.last()) else {
            return Ok(false);
        };
        if deleted.stored_at.0 > cutoff {
            return Ok(false);
        }
        let env = Envelope::new(
            Aggregate::Dataset(dataset),
            owner,
            UploadId::from_u128(dataset.as_u128()),
            Some(last.envelope.event_id),
            Event::DatasetPurged(DatasetPurged {
                reason: format!(
                    "deleted at {}; not restored within {}",
                    deleted.stored_at,
                    show_duration(r.deleted)
                ),
            }),
        );
        Ok(matches!(
            self.ctx
                .journal
                .append(&env, Expect::LastSequence(last.seq))
                .await?,
            AppendOutcome::Appended { .. }
        ))
    }

    /// Deletes `key` and records it, conditionally on the object's last event.
    async fn delete(
        &self,
        key: &ObjectKey,
        owner: Owner,
        upload: UploadId,
        reason: String,
    ) -> Result<bool, StepError> {
        let size = self.ctx.store.exists(key).await?;
        if size.is_some() {
            self.ctx.store.delete(key).await?;
        }
        let aggregate = Aggregate::Object(key.clone());
        let expect = match self.ctx.journal.last_on(&aggregate).await? {
            Some(last) => Expect::LastSequence(last.seq),
            None => Expect::Empty,
        };
        let env = Envelope::new(
            aggregate,
            owner,
            upload,
            None,
            Event::ObjectDeleted(ObjectDeleted {
                key: key.clone(),
                reason,
                size,
            }),
        );
        // Another janitor recorded it first: the object is gone either way.
        self.ctx.journal.append(&env, expect).await?;
        Ok(true)
    }
}

/// The correlation id of an object's deletion when no upload is involved (as for
/// owner-level events).
const NO_UPLOAD: UploadId = UploadId::from_u128(0);

/// An act's outcome for the sweep: a permanent fault of one item (a row that does not
/// parse, a store that refuses one key) is logged and the sweep goes on; a transient
/// one (NATS, the store or the database unreachable) ends the sweep, tried again at
/// the next.
fn done(result: Result<bool, StepError>, act: &str, what: &str) -> Result<bool, StepError> {
    match result {
        Err(StepError::Permanent(e)) => {
            tracing::warn!(act, item = what, error = ?e, "janitor: cannot do this one; skipping it");
            Ok(false)
        }
        other => other,
    }
}

/// Whether the object these references (of one key, one life) hold may go now: the
/// reference that ended last, and why, when nothing is live and every grace period is
/// over.
pub fn decide<'a>(
    rows: &'a [ObjectRef],
    now: Timestamp,
    r: &Retention,
) -> Option<(&'a ObjectRef, String)> {
    if rows.is_empty() || rows.iter().any(|row| row.live) {
        return None;
    }
    let mut deadline = i64::MIN;
    for row in rows {
        let ended = row.ended_at.unwrap_or(row.created_at);
        deadline = deadline.max(ended.saturating_add(micros(r.grace(row.ended_by.as_deref()))));
    }
    if now.0 < deadline {
        return None;
    }
    let last = rows.iter().max_by_key(|row| row.ended_seq.unwrap_or(0))?;
    let why = rows
        .iter()
        .map(|row| {
            format!(
                "{} ({} {} at {}, kept {})",
                row.holder,
                row.role,
                row.ended_by.as_deref().unwrap_or("ended"),
                Timestamp(row.ended_at.unwrap_or(row.created_at)),
                show_duration(r.grace(row.ended_by.as_deref()))
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    Some((last, format!("no live reference: {why}")))
}

/// The kinds the janitor appends (its NATS user may publish exactly these).
pub const APPENDS: [EventKind; 4] = [
    EventKind::UploadAborted,
    EventKind::Compensated,
    EventKind::DatasetPurged,
    EventKind::ObjectDeleted,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn row(holder: &str, live: bool, ended_by: Option<&str>, ended_at: i64) -> ObjectRef {
        ObjectRef {
            object_key: "blobs/sha256/x".into(),
            holder: holder.into(),
            role: "blob".into(),
            owner: "acme".into(),
            upload_id: "upld_00000000000000000000000001".into(),
            dataset_id: None,
            live,
            created_at: 0,
            ended_by: ended_by.map(str::to_owned),
            ended_at: (!live).then_some(ended_at),
            ended_seq: (!live).then_some(ended_at),
            deleted_at: None,
        }
    }

    #[test]
    fn an_object_goes_when_nothing_live_holds_it_and_every_grace_is_over() {
        let r = Retention::default();
        let day = micros(DAY);
        let failed = row("upload:a", false, Some("failed"), 0);
        let purged = row("dataset:b", false, Some("purged"), 10 * day);
        let live = row("dataset:c", true, None, 0);
        // A live reference keeps it whatever the others say.
        assert!(decide(&[failed.clone(), live], Timestamp(1000 * day), &r).is_none());
        // The failed upload's 90 days run until day 90.
        let both = [failed.clone(), purged.clone()];
        assert!(decide(&both, Timestamp(89 * day), &r).is_none());
        let (last, why) = decide(&both, Timestamp(90 * day), &r).unwrap();
        assert_eq!(last.holder, "dataset:b");
        assert!(
            why.contains("upload:a (blob failed") && why.contains("kept 90d"),
            "{why}"
        );
        // A purge alone needs no wait.
        assert!(decide(&[purged], Timestamp(10 * day), &r).is_some());
        assert!(decide(&[], Timestamp(0), &r).is_none());
    }

    #[test]
    fn periods_parse_and_show() {
        assert_eq!(parse_duration("90d").unwrap(), 90 * DAY);
        assert_eq!(
            parse_duration(" 36h ").unwrap(),
            Duration::from_secs(36 * 3600)
        );
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "d", "7 days", "-1d", "7w"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("is not a duration"), "{e}");
        }
        assert_eq!(show_duration(30 * DAY), "30d");
        assert_eq!(show_duration(Duration::from_secs(90)), "90s");
        let r = Retention::default().with("failed", "7d").unwrap();
        assert_eq!(r.failed, 7 * DAY);
        let e = Retention::default().with("forever", "7d").unwrap_err();
        assert!(e.contains("unknown retention period \"forever\""), "{e}");
        let e = Retention::default().with("aborted", "soon").unwrap_err();
        assert!(e.starts_with("retention aborted: "), "{e}");
    }
}
