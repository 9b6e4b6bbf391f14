//! An upload's current state, folded from its history: what each step reads before it
//! decides. Pure: no I/O, so the fold is tested without a broker.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use weir_events::{
    CompensationAction, DatasetRegistered, Envelope, Event, EventId, Failed, PartLayout,
    PartsCombined, SchemaInferred, UploadId, UploadReceived,
};

use weir_journal::Recorded;

#[derive(Debug, Clone, Default)]
pub struct UploadState {
    pub upload: Option<UploadId>,
    pub received: Option<(EventId, UploadReceived)>,
    /// Where the parts `received` names lie (by its event's schema version).
    pub parts: PartLayout,
    pub combined: Option<PartsCombined>,
    pub inferred: Option<SchemaInferred>,
    pub registered: Option<DatasetRegistered>,
    pub failed: Option<Failed>,
    /// What the failed step's compensation recorded after `Failed`, in order.
    pub compensated: Vec<CompensationAction>,
    pub aborted: bool,
    /// Stream sequence of the last event on the upload's subjects.
    pub last_seq: u64,
    /// Id of that event (what the next step's event names as its cause).
    pub last_event: Option<EventId>,
}

impl UploadState {
    pub fn fold(history: &[Recorded]) -> Self {
        let mut state = Self::default();
        for r in history {
            state.apply(r);
        }
        state
    }

    pub fn apply(&mut self, r: &Recorded) {
        self.apply_event(r.seq, &r.envelope);
    }

    /// Folds one event stored at `seq` (an event this process just appended has no
    /// [`Recorded`] yet, only the sequence from its acknowledgement).
    pub fn apply_event(&mut self, seq: u64, envelope: &Envelope) {
        self.last_seq = seq;
        self.last_event = Some(envelope.event_id);
        self.upload = Some(envelope.correlation_id);
        match &envelope.event {
            Event::UploadReceived(e) => {
                self.received = Some((envelope.event_id, e.clone()));
                self.parts = PartLayout::of(envelope.schema_version);
            }
            Event::PartsCombined(e) => self.combined = Some(e.clone()),
            Event::SchemaInferred(e) => self.inferred = Some(e.clone()),
            Event::DatasetRegistered(e) => self.registered = Some(e.clone()),
            Event::Failed(e) => self.failed = Some(e.clone()),
            Event::Compensated(e) => self.compensated.push(e.action.clone()),
            Event::UploadAborted(_) => self.aborted = true,
            // Not part of an upload's own progress.
            _ => {}
        }
    }

    /// Ended: registered, failed or aborted.
    pub fn is_terminal(&self) -> bool {
        self.registered.is_some() || self.failed.is_some() || self.aborted
    }

    /// The file name the producer gave, for messages.
    pub fn filename(&self) -> &str {
        self.received
            .as_ref()
            .map(|(_, r)| r.filename.as_str())
            .unwrap_or("(unknown file)")
    }
}

/// Upload states this process has folded, shared by the services of one process
/// (`run_all`): the state a step started from plus the events it appended, each at the
/// sequence the server gave it. The next service's step starts from it instead of
/// reading the upload's history again (one round trip per event).
///
/// An entry is exact for its `last_seq`: it is the fold of the aggregate's history up
/// to that sequence, because every event in it was appended conditionally on the one
/// before. The runtime uses an entry only when its `last_seq` is the delivered event's
/// own sequence, and the step's append, conditional on that sequence, then proves that
/// nothing came after it. An entry ahead of the delivered event means the upload has
/// moved on. Anything else (another process appended, a restart) reads the history.
#[derive(Clone, Default)]
pub struct States {
    inner: Arc<Mutex<HashMap<UploadId, UploadState>>>,
    /// Steps that started from an entry, and steps that read the history: how well
    /// the cache works (logged when the services stop).
    pub used: Arc<AtomicU64>,
    pub read: Arc<AtomicU64>,
    /// Woken on every `put`: a step whose input was appended by this process a moment
    /// ago waits for that step's entry instead of reading the history (the server
    /// delivers the event and acknowledges its append at the same time).
    changed: Arc<tokio::sync::Notify>,
}

/// Entries kept at most; uploads that stop halfway (a crash, another process took
/// over) would otherwise stay forever. Dropping entries only costs history reads.
const MAX_STATES: usize = 65_536;

impl States {
    fn map(&self) -> MutexGuard<'_, HashMap<UploadId, UploadState>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state last stored for `upload`, if any.
    pub fn get(&self, upload: UploadId) -> Option<UploadState> {
        self.map().get(&upload).cloned()
    }

    /// Stores `state` as the upload's latest; a terminal state is dropped instead (no
    /// step follows it, and a redelivery reads the history).
    pub fn put(&self, state: UploadState) {
        let Some(upload) = state.upload else { return };
        let mut map = self.map();
        if state.is_terminal() {
            map.remove(&upload);
            return;
        }
        if map.len() >= MAX_STATES && !map.contains_key(&upload) {
            map.clear();
        }
        map.insert(upload, state);
        drop(map);
        self.changed.notify_waiters();
    }

    /// The entry for the event `input` once it is there: at once when it is; when the
    /// entry is at the event `input` was caused by (the step before is finishing in this
    /// process), after waiting up to `patience` for it; else `None`.
    pub async fn at_or_after(
        &self,
        input: &Recorded,
        patience: std::time::Duration,
    ) -> Option<UploadState> {
        let upload = input.envelope.correlation_id;
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let entry = self.get(upload)?;
            if entry.last_seq >= input.seq {
                return Some(entry);
            }
            if entry.last_event.is_none() || entry.last_event != input.envelope.causation_id {
                return None;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return None;
            }
        }
    }

    /// Forgets `upload` (its entry can no longer be vouched for).
    pub fn forget(&self, upload: UploadId) {
        self.map().remove(&upload);
    }
}

#[cfg(test)]
mod tests {
    use weir_events::{
        Aggregate, Envelope, Event, Owner, PartsCombined, Sha256, UploadId, UploadReceived,
    };
    use weir_journal::Recorded;

    use super::{States, UploadState};

    fn env(upload: UploadId, event: Event) -> Envelope {
        let owner: Owner = "acme".parse().unwrap();
        Envelope::new(Aggregate::Upload(upload), owner, upload, None, event)
    }

    fn received(upload: UploadId) -> Recorded {
        Recorded {
            seq: 7,
            subject: String::new(),
            stored_at: weir_events::Timestamp::now(),
            envelope: env(
                upload,
                Event::UploadReceived(UploadReceived {
                    owner: "acme".parse().unwrap(),
                    filename: "a.csv".into(),
                    content_type: None,
                    format: None,
                    label: None,
                    table_name: None,
                    size: 0,
                    parts: Vec::new(),
                    dataset: None,
                    parent_version: None,
                    branch: None,
                    options: Default::default(),
                    more_files: Vec::new(),
                }),
            ),
        }
    }

    #[test]
    fn an_appended_event_folds_like_the_recorded_one() {
        let upload = UploadId::new();
        let r = received(upload);
        let mut a = UploadState::default();
        a.apply(&r);
        let mut b = UploadState::default();
        b.apply_event(r.seq, &r.envelope);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert_eq!(a.last_seq, 7);
        assert_eq!(a.filename(), "a.csv");
    }

    #[test]
    fn states_keep_the_latest_and_drop_terminal_or_forgotten_uploads() {
        let states = States::default();
        let upload = UploadId::new();
        let mut state = UploadState::default();
        state.apply(&received(upload));
        states.put(state.clone());
        assert_eq!(states.get(upload).map(|s| s.last_seq), Some(7));
        let blob = weir_events::ObjectKey::blob(&Sha256([1; 32]));
        state.apply_event(
            9,
            &env(
                upload,
                Event::PartsCombined(PartsCombined {
                    blob,
                    size: 0,
                    sha256: Sha256([1; 32]),
                    deduplicated: false,
                    more_blobs: Vec::new(),
                }),
            ),
        );
        states.put(state.clone());
        assert_eq!(states.get(upload).map(|s| s.last_seq), Some(9));
        states.forget(upload);
        assert!(states.get(upload).is_none());
        state.failed = Some(weir_events::Failed {
            step: weir_events::Step::Infer,
            reason: "bad".into(),
            attempts: 1,
            retryable: false,
        });
        states.put(state);
        assert!(states.get(upload).is_none(), "a terminal state is not kept");
    }
}
