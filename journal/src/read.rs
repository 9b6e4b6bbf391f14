//! Reading the log: live follows and bounded histories, both on ordered consumers
//! (ephemeral, no acks, recreated by the client on a gap).

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::{Stream, StreamExt};
use weir_events::{Aggregate, DecodeError, Envelope, Subject, Timestamp};

use crate::Journal;

/// One event as stored: its stream sequence, subject and the server's timestamp.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub seq: u64,
    pub subject: String,
    /// When the server stored it (the envelope's `occurred_at` is when it was built).
    pub stored_at: Timestamp,
    pub envelope: Envelope,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("NATS: {0}")]
    Nats(String),
    #[error("event at stream sequence {seq} ({subject}) cannot be decoded: {source}")]
    Decode {
        seq: u64,
        subject: String,
        #[source]
        source: DecodeError,
    },
}

/// Where a follow starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Only events appended from now on.
    New,
    /// From the first event.
    All,
    /// From this stream sequence on.
    Sequence(u64),
    /// From the first event stored at or after this time.
    Time(Timestamp),
}

/// What to follow: subject filters (none = everything) and where to start.
#[derive(Debug, Clone)]
pub struct Follow {
    pub filters: Vec<Subject>,
    pub start: Start,
}

impl Journal {
    async fn ordered(
        &self,
        follow: &Follow,
    ) -> Result<async_nats::jetstream::consumer::Consumer<pull::OrderedConfig>, ReadError> {
        let nats = |e: &dyn std::fmt::Display| ReadError::Nats(e.to_string());
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| nats(&e))?;
        let mut filters: Vec<String> = follow.filters.iter().map(|s| s.to_string()).collect();
        let (filter_subject, filter_subjects) = match filters.len() {
            0 => (String::new(), Vec::new()),
            1 => (filters.remove(0), Vec::new()),
            _ => (String::new(), filters),
        };
        let deliver_policy = match follow.start {
            Start::New => DeliverPolicy::New,
            Start::All => DeliverPolicy::All,
            Start::Sequence(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence },
            Start::Time(t) => DeliverPolicy::ByStartTime {
                start_time: t.to_offset_date_time(),
            },
        };
        stream
            .create_consumer(pull::OrderedConfig {
                filter_subject,
                filter_subjects,
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| nats(&e))
    }

    /// Events as they arrive, decoded. A message that does not decode is reported as an
    /// `Err` item and the follow goes on.
    pub async fn follow(
        &self,
        follow: Follow,
    ) -> Result<impl Stream<Item = Result<Recorded, ReadError>> + Send + use<>, ReadError> {
        Ok(self.messages(&follow).await?.map(|item| decode_item(&item)))
    }

    /// Like [`follow`](Self::follow), in chunks: whatever has arrived when the
    /// consumer is polled, up to `max` events at once, decoded in order. A reader that
    /// goes through the log in bulk (the projector) hands events between tasks a chunk
    /// at a time instead of one by one.
    pub async fn follow_chunks(
        &self,
        follow: Follow,
        max: usize,
    ) -> Result<impl Stream<Item = Vec<Result<Recorded, ReadError>>> + Send + use<>, ReadError>
    {
        Ok(self
            .messages(&follow)
            .await?
            .ready_chunks(max.max(1))
            .map(|chunk| chunk.iter().map(decode_item).collect()))
    }

    /// The raw messages of a new ordered consumer for `follow`.
    async fn messages(
        &self,
        follow: &Follow,
    ) -> Result<async_nats::jetstream::consumer::pull::Ordered, ReadError> {
        self.ordered(follow)
            .await?
            .messages()
            .await
            .map_err(|e| ReadError::Nats(e.to_string()))
    }

    /// Every event on `filter` stored so far, in order; returns when the consumer has
    /// nothing pending.
    pub async fn read_all(&self, filter: Subject) -> Result<Vec<Recorded>, ReadError> {
        let follow = Follow {
            filters: vec![filter],
            start: Start::All,
        };
        let consumer = self.ordered(&follow).await?;
        if consumer.cached_info().num_pending == 0 {
            return Ok(Vec::new());
        }
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| ReadError::Nats(e.to_string()))?;
        let mut out = Vec::new();
        while let Some(item) = messages.next().await {
            let message = item.map_err(|e| ReadError::Nats(e.to_string()))?;
            let pending = message
                .info()
                .map_err(|e| ReadError::Nats(e.to_string()))?
                .pending;
            out.push(decode(&message)?);
            if pending == 0 {
                break;
            }
        }
        Ok(out)
    }

    /// An aggregate's whole history, in order.
    ///
    /// Read with one stream-leader message get per event (`next_by_subj` from the
    /// sequence after the last one), not with a consumer: services read a short
    /// history before every step, and a consumer per read piles up faster than the
    /// server reaps them (it then refuses new ones: "maximum consumers limit reached").
    /// Gets go to the stream leader, so the history is never staler than the event
    /// that was just delivered.
    pub async fn history(&self, aggregate: &Aggregate) -> Result<Vec<Recorded>, ReadError> {
        let filter = Subject::aggregate_filter(aggregate);
        let stream = self
            .js
            .get_stream_no_info(&self.stream)
            .await
            .map_err(|e| ReadError::Nats(e.to_string()))?;
        let mut out = Vec::new();
        let mut next = 1u64;
        loop {
            let got = stream
                .raw_message_builder()
                .sequence(next)
                .next_by_subject(filter.as_str())
                .send()
                .await;
            let m = match got {
                Ok(m) => m,
                Err(e)
                    if e.kind()
                        == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
                {
                    return Ok(out);
                }
                Err(e) => return Err(ReadError::Nats(e.to_string())),
            };
            next = m.sequence + 1;
            let envelope = Envelope::decode(&m.payload).map_err(|source| ReadError::Decode {
                seq: m.sequence,
                subject: m.subject.to_string(),
                source,
            })?;
            out.push(Recorded {
                seq: m.sequence,
                subject: m.subject.to_string(),
                stored_at: Timestamp::from_offset_date_time(m.time),
                envelope,
            });
        }
    }

    /// The aggregate's last event, if any: the sequence a conditional append expects.
    pub async fn last_on(&self, aggregate: &Aggregate) -> Result<Option<Recorded>, ReadError> {
        // No stream info request: the get below is the only round trip.
        let stream = self
            .js
            .get_stream_no_info(&self.stream)
            .await
            .map_err(|e| ReadError::Nats(e.to_string()))?;
        let filter = Subject::aggregate_filter(aggregate);
        match stream
            .get_last_raw_message_by_subject(filter.as_str())
            .await
        {
            Ok(m) => {
                let envelope =
                    Envelope::decode(&m.payload).map_err(|source| ReadError::Decode {
                        seq: m.sequence,
                        subject: m.subject.to_string(),
                        source,
                    })?;
                Ok(Some(Recorded {
                    seq: m.sequence,
                    subject: m.subject.to_string(),
                    stored_at: Timestamp::from_offset_date_time(m.time),
                    envelope,
                }))
            }
            Err(e)
                if e.kind()
                    == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
            {
                Ok(None)
            }
            Err(e) => Err(ReadError::Nats(e.to_string())),
        }
    }
}

fn decode_item(
    item: &Result<
        async_nats::jetstream::Message,
        async_nats::jetstream::consumer::pull::OrderedError,
    >,
) -> Result<Recorded, ReadError> {
    match item {
        Ok(message) => decode(message),
        Err(e) => Err(ReadError::Nats(e.to_string())),
    }
}

/// Decodes one consumer message into a [`Recorded`].
pub fn decode(message: &async_nats::jetstream::Message) -> Result<Recorded, ReadError> {
    let info = message.info().map_err(|e| ReadError::Nats(e.to_string()))?;
    let seq = info.stream_sequence;
    let subject = message.subject.to_string();
    let envelope = Envelope::decode(&message.payload).map_err(|source| ReadError::Decode {
        seq,
        subject: subject.clone(),
        source,
    })?;
    Ok(Recorded {
        seq,
        subject,
        stored_at: Timestamp::from_offset_date_time(info.published),
        envelope,
    })
}
