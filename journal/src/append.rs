//! Conditional appends: the only way an event enters the log.
//!
//! Every append carries a deterministic `Nats-Msg-Id` (the server stores a repeat
//! once) and, unless told otherwise, `Nats-Expected-Last-Subject-Sequence` scoped by
//! `Nats-Expected-Last-Subject-Sequence-Subject` to the aggregate's whole subject tree.
//! Losing that race is an expected outcome ([`AppendOutcome::WrongLastSequence`]),
//! not an error. A repeat of an event already stored is refused by the expectation
//! before the server looks at its message id; `append` tells the two apart by the
//! subject's last message and reports the repeat as a duplicate.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use weir_events::{EncodeError, Envelope, KIND_HEADER, SCHEMA_HEADER, Subject};

use crate::Journal;

const EXPECTED_SUBJECT_SEQ: &str = "Nats-Expected-Last-Subject-Sequence";
const EXPECTED_SUBJECT_SEQ_SUBJECT: &str = "Nats-Expected-Last-Subject-Sequence-Subject";
const MSG_ID: &str = "Nats-Msg-Id";

/// What the aggregate's log must look like for the append to go in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// No event on the aggregate's subjects yet (create-once, e.g. a name claim).
    Empty,
    /// The aggregate's last event has this stream sequence.
    LastSequence(u64),
    /// No check (for events that only add to an aggregate, e.g. compensations). The
    /// message id still de-duplicates.
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Stored at `seq`; `duplicate` when an earlier attempt with the same message id had
    /// already stored it (the sequence is that attempt's).
    Appended { seq: u64, duplicate: bool },
    /// Someone else appended to the aggregate first; re-read it and decide again.
    WrongLastSequence,
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The event cannot be built (too large): a bug or an input to reject, not retried.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// No acknowledgement after every attempt: transient, retry later.
    #[error("append of {subject} not acknowledged after {attempts} attempts: {message}")]
    Unacknowledged {
        subject: String,
        attempts: u32,
        message: String,
    },
    #[error("append of {subject} refused: {message}")]
    Refused { subject: String, message: String },
}

impl AppendError {
    /// A later attempt may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unacknowledged { .. })
    }
}

/// Attempts for one append when the PubAck times out, the connection drops or the
/// stream has no leader for a moment (≈ 5 s of backoff between them: a cluster elects
/// a new stream leader within a few seconds of losing one).
const ATTEMPTS: u32 = 6;

impl Journal {
    /// Appends `envelope` to the log under `expect`, awaiting the PubAck and retrying a
    /// timeout with the same message id.
    pub async fn append(
        &self,
        envelope: &Envelope,
        expect: Expect,
    ) -> Result<AppendOutcome, AppendError> {
        let payload = bytes::Bytes::from(envelope.encode(self.max_payload())?);
        let subject = envelope.subject();
        let mut headers = HeaderMap::new();
        headers.insert(MSG_ID, envelope.msg_id().as_str());
        headers.insert(KIND_HEADER, envelope.kind().as_str());
        headers.insert(SCHEMA_HEADER, envelope.schema_version.to_string().as_str());
        let expected = match expect {
            Expect::Empty => Some(0),
            Expect::LastSequence(seq) => Some(seq),
            Expect::Any => None,
        };
        if let Some(seq) = expected {
            headers.insert(EXPECTED_SUBJECT_SEQ, seq.to_string().as_str());
            let scope = Subject::aggregate_filter(&envelope.aggregate);
            headers.insert(EXPECTED_SUBJECT_SEQ_SUBJECT, scope.as_str());
        }

        let mut last_error = String::new();
        for attempt in 1..=ATTEMPTS {
            let message = PublishMessage::build()
                .payload(payload.clone())
                .headers(headers.clone());
            let result = match self.js.send_publish(subject.to_string(), message).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match result {
                Ok(ack) => {
                    tracing::debug!(subject = %subject, seq = ack.sequence, duplicate = ack.duplicate, "appended");
                    return Ok(AppendOutcome::Appended {
                        seq: ack.sequence,
                        duplicate: ack.duplicate,
                    });
                }
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    // The "someone else" may be this very event: an earlier attempt
                    // (of this call, or of a caller retrying after an error) stored
                    // but not acknowledged, e.g. across a timeout or a leader change.
                    // The server checks the expectation before the message id (2.15,
                    // one node and R3), so the repeat is refused instead of reported
                    // as a duplicate. If the subject's last message has this message
                    // id, the event went in.
                    if let Some(seq) = self.stored_as_last(&subject, envelope).await {
                        tracing::info!(subject = %subject, seq, "an earlier unacknowledged attempt was stored");
                        return Ok(AppendOutcome::Appended {
                            seq,
                            duplicate: true,
                        });
                    }
                    return Ok(AppendOutcome::WrongLastSequence);
                }
                Err(e) if retryable(&e) => {
                    tracing::warn!(subject = %subject, attempt, error = %e, "append not acknowledged; retrying with the same message id");
                    last_error = e.to_string();
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => {
                    return Err(AppendError::Refused {
                        subject: subject.to_string(),
                        message: e.to_string(),
                    });
                }
            }
        }
        Err(AppendError::Unacknowledged {
            subject: subject.to_string(),
            attempts: ATTEMPTS,
            message: last_error,
        })
    }
}

impl Journal {
    /// The sequence of the last message on `subject` when it carries `envelope`'s
    /// message id (the server's de-duplication key: the event, or the same reaction
    /// rebuilt); `None` when it does not, or the lookup fails.
    async fn stored_as_last(&self, subject: &Subject, envelope: &Envelope) -> Option<u64> {
        let stream = self.js.get_stream_no_info(&self.stream).await.ok()?;
        let m = stream
            .get_last_raw_message_by_subject(subject.as_str())
            .await
            .ok()?;
        let stored = Envelope::decode(&m.payload).ok()?;
        (stored.msg_id() == envelope.msg_id()).then_some(m.sequence)
    }
}

/// Whether the same publish may be acknowledged on another attempt: no ack in time, a
/// broken connection, too many in flight; and, in a cluster, no stream leader for a
/// moment (no responders, or the server's "cluster not available" / "not leader" while
/// a new leader is elected or a node restarts).
fn retryable(e: &async_nats::jetstream::context::PublishError) -> bool {
    use async_nats::jetstream::ErrorCode;
    match e.kind() {
        PublishErrorKind::TimedOut
        | PublishErrorKind::BrokenPipe
        | PublishErrorKind::MaxAckPending
        | PublishErrorKind::StreamNotFound => true,
        PublishErrorKind::Other => std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>())
            .is_some_and(|js| {
                matches!(
                    js.error_code(),
                    ErrorCode::CLUSTER_NOT_AVAILABLE
                        | ErrorCode::CLUSTER_NOT_LEADER
                        | ErrorCode::CLUSTER_NOT_ACTIVE
                )
            }),
        _ => false,
    }
}

/// 100 ms, 200 ms, 400 ms … capped at 2 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(
        100u64
            .saturating_mul(1 << attempt.min(5).saturating_sub(1))
            .min(2000),
    )
}
