//! An upload's current state, folded from its history: what each step reads before it
//! decides. Pure: no I/O, so the fold is tested without a broker.

use weir_events::{
    DatasetRegistered, Event, EventId, Failed, PartsCombined, SchemaInferred, UploadId,
    UploadReceived,
};
use weir_journal::Recorded;

#[derive(Debug, Clone, Default)]
pub struct UploadState {
    pub upload: Option<UploadId>,
    pub received: Option<(EventId, UploadReceived)>,
    pub combined: Option<PartsCombined>,
    pub inferred: Option<SchemaInferred>,
    pub registered: Option<DatasetRegistered>,
    pub failed: Option<Failed>,
    pub aborted: bool,
    /// Stream sequence of the last event on the upload's subjects.
    pub last_seq: u64,
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
        self.last_seq = r.seq;
        self.upload = Some(r.envelope.correlation_id);
        match &r.envelope.event {
            Event::UploadReceived(e) => self.received = Some((r.envelope.event_id, e.clone())),
            Event::PartsCombined(e) => self.combined = Some(e.clone()),
            Event::SchemaInferred(e) => self.inferred = Some(e.clone()),
            Event::DatasetRegistered(e) => self.registered = Some(e.clone()),
            Event::Failed(e) => self.failed = Some(e.clone()),
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
