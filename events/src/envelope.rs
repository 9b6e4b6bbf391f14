//! The envelope around every event, its postcard encoding, and the size limit checked
//! when an event is built.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::event::{Event, EventKind};
use crate::ids::{DatasetId, EventId, Owner, UploadId};
use crate::names::{ObjectKey, TableName};
use crate::subject::Subject;

/// The envelope layout version. Bump it only together with a decoder for the old one.
///
/// 2: the bytes are those of 1; what changed is where the parts and staging objects an
/// event names lie ([`crate::PartLayout`]): flat under `uploads/` from 2 on, in a
/// folder per upload in 1.
pub const SCHEMA_VERSION: u16 = 2;

/// nats-server's default `max_payload`; the real limit comes from the server's INFO.
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;

/// Room left in a message for headers (msg id, expectations, kind).
const HEADER_ALLOWANCE: usize = 1024;

/// Which aggregate an event belongs to: its subject tree and its consistency boundary.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregate {
    Upload(UploadId),
    Dataset(DatasetId),
    /// A table name within one owner's namespace: the unit of uniqueness.
    Name {
        owner: Owner,
        table: TableName,
    },
    /// An owner: tokens and notification read-state.
    Owner(Owner),
    /// One object in the store: its deletions (`ObjectDeleted`), each appended
    /// conditionally on the last, so a deletion is recorded once per life of the key.
    Object(ObjectKey),
}

impl fmt::Display for Aggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Upload(id) => write!(f, "{id}"),
            Self::Dataset(id) => write!(f, "{id}"),
            Self::Name { owner, table } => write!(f, "{table}@{owner}"),
            Self::Owner(owner) => write!(f, "{owner}"),
            Self::Object(key) => write!(f, "{key}"),
        }
    }
}

/// Microseconds since the Unix epoch, UTC. Text form is RFC 3339.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        let now = time::OffsetDateTime::now_utc();
        Self((now.unix_timestamp_nanos() / 1000) as i64)
    }

    pub fn to_offset_date_time(self) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    }

    pub fn from_offset_date_time(t: time::OffsetDateTime) -> Self {
        Self((t.unix_timestamp_nanos() / 1000) as i64)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self
            .to_offset_date_time()
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for Timestamp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map(Self::from_offset_date_time)
            .map_err(|e| format!("{s:?} is not an RFC 3339 time (e.g. 2026-11-22T08:00:00Z): {e}"))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            String::deserialize(d)?
                .parse()
                .map_err(serde::de::Error::custom)
        } else {
            Ok(Self(i64::deserialize(d)?))
        }
    }
}

/// One event with everything needed to place it: who, when, why and in which aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// First on the wire so a decoder can branch on it before reading anything else.
    pub schema_version: u16,
    pub event_id: EventId,
    pub aggregate: Aggregate,
    pub occurred_at: Timestamp,
    /// The owner on whose behalf the event was appended (a service acts for the
    /// upload's owner).
    pub actor: Owner,
    /// The event this one responds to; `None` for an event a producer started.
    pub causation_id: Option<EventId>,
    /// The upload the whole chain started from.
    pub correlation_id: UploadId,
    pub event: Event,
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error(
        "{kind} event for {aggregate} is {size} bytes, over the server's max payload of {max} bytes; events carry object keys, never file contents"
    )]
    TooLarge {
        kind: EventKind,
        aggregate: String,
        size: usize,
        max: usize,
    },
    #[error("cannot encode {kind} event: {source}")]
    Postcard {
        kind: EventKind,
        #[source]
        source: postcard::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "event has schema version {0}, newer than this weir understands ({SCHEMA_VERSION}); upgrade weir"
    )]
    NewerSchema(u16),
    #[error("event is not a weir envelope: {0}")]
    Postcard(#[from] postcard::Error),
}

impl Envelope {
    /// The dataset the event touches, if any: the one its payload names, or the
    /// dataset whose aggregate it is on.
    pub fn dataset(&self) -> Option<DatasetId> {
        self.event.dataset().or(match &self.aggregate {
            Aggregate::Dataset(id) => Some(*id),
            _ => None,
        })
    }

    /// An envelope for `event` with a fresh id and the current time.
    pub fn new(
        aggregate: Aggregate,
        actor: Owner,
        correlation_id: UploadId,
        causation_id: Option<EventId>,
        event: Event,
    ) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            event_id: EventId::new(),
            aggregate,
            occurred_at: Timestamp::now(),
            actor,
            causation_id,
            correlation_id,
            event,
        }
    }

    pub fn kind(&self) -> EventKind {
        self.event.kind()
    }

    pub fn subject(&self) -> Subject {
        Subject::new(&self.aggregate, self.kind())
    }

    /// The `Nats-Msg-Id`: the same for every attempt at the same logical append, so the
    /// server stores a retried or duplicated publish once. A reaction is named by what
    /// it reacts to (a re-run of the same step builds a new envelope with the same
    /// causation); an event nothing caused (a producer's, a user's) by its own id,
    /// which every retry of that envelope keeps.
    pub fn msg_id(&self) -> String {
        match self.causation_id {
            Some(cause) => format!("{}#{cause}", self.subject()),
            None => format!("{}#{}", self.subject(), self.event_id),
        }
    }

    /// The postcard bytes, refused when the message would not fit `max_payload`.
    pub fn encode(&self, max_payload: usize) -> Result<Vec<u8>, EncodeError> {
        let bytes = postcard::to_stdvec(self).map_err(|source| EncodeError::Postcard {
            kind: self.kind(),
            source,
        })?;
        let limit = max_payload.saturating_sub(HEADER_ALLOWANCE);
        if bytes.len() > limit {
            return Err(EncodeError::TooLarge {
                kind: self.kind(),
                aggregate: self.aggregate.to_string(),
                size: bytes.len(),
                max: max_payload,
            });
        }
        Ok(bytes)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (version, _) = postcard::take_from_bytes::<u16>(bytes)?;
        if version > SCHEMA_VERSION {
            return Err(DecodeError::NewerSchema(version));
        }
        let mut envelope: Self = postcard::from_bytes(bytes)?;
        envelope.event = envelope.event.upgrade();
        Ok(envelope)
    }
}
