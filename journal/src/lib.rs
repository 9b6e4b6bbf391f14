//! weir's access to the event log on JetStream.
//!
//! [`Journal::connect`] refuses servers older than 2.11 (they ignore the header that
//! scopes conditional appends to an aggregate); [`Journal::append`] is the only way
//! events enter the log; [`Journal::follow`] and [`Journal::history`] read it back.
//! [`server`] finds and starts a local nats-server for `weir up` and for tests.

pub mod append;
pub mod read;
pub mod server;

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use weir_events::StreamSpec;

pub use append::{AppendError, AppendOutcome, Expect};
pub use read::{Follow, ReadError, Recorded, Start};

/// The oldest server weir accepts: 2.11 introduced
/// `Nats-Expected-Last-Subject-Sequence-Subject`; an older server silently ignores it,
/// which would turn every per-aggregate check into a per-subject one.
pub const MIN_SERVER_VERSION: (u64, u64) = (2, 11);

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error(
        "NATS at {url} runs nats-server {version}; weir needs 2.11 or newer (older servers ignore Nats-Expected-Last-Subject-Sequence-Subject, which weir's conditional appends rely on). Run scripts/setup for a current one"
    )]
    TooOld { url: String, version: String },
    #[error(
        "NATS at {url} has JetStream disabled; start nats-server with -js or `jetstream {{}}` in its config"
    )]
    NoJetStream { url: String },
    #[error("cannot create or update stream {name}: {message}")]
    Stream { name: String, message: String },
}

/// Parses `2.15.1`, `v2.11.0-RC.1` and the like into (major, minor).
pub fn parse_version(text: &str) -> Option<(u64, u64)> {
    let text = text.trim().trim_start_matches('v');
    let mut parts = text.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

pub fn version_ok(text: &str) -> bool {
    parse_version(text).is_some_and(|v| v >= MIN_SERVER_VERSION)
}

/// A connection to the log: the client, its JetStream context and the stream's name.
#[derive(Clone)]
pub struct Journal {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: String,
    max_payload: usize,
}

impl Journal {
    /// Connects, checks the server's version and that JetStream is on, and makes sure
    /// the stream exists with weir's configuration.
    pub async fn connect(url: &str, spec: &StreamSpec) -> Result<Self, ConnectError> {
        let client = async_nats::ConnectOptions::new()
            .name("weir")
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|source| ConnectError::Connect {
                url: url.to_owned(),
                source,
            })?;
        let journal = Self::from_client(client, url, spec.name.clone())?;
        journal.ensure_stream(spec).await?;
        Ok(journal)
    }

    /// Wraps an open client after checking the server it is connected to.
    pub fn from_client(
        client: async_nats::Client,
        url: &str,
        stream: String,
    ) -> Result<Self, ConnectError> {
        let info = client.server_info();
        if !version_ok(&info.version) {
            return Err(ConnectError::TooOld {
                url: url.to_owned(),
                version: info.version,
            });
        }
        if !info.jetstream {
            return Err(ConnectError::NoJetStream {
                url: url.to_owned(),
            });
        }
        let js = jetstream::new(client.clone());
        Ok(Self {
            client,
            js,
            stream,
            max_payload: info.max_payload,
        })
    }

    /// Creates the stream, or brings an existing one's settings in line with `spec`.
    pub async fn ensure_stream(&self, spec: &StreamSpec) -> Result<(), ConnectError> {
        let config = stream_config(spec);
        let err = |e: &dyn std::fmt::Display| ConnectError::Stream {
            name: spec.name.clone(),
            message: e.to_string(),
        };
        match self.js.get_stream(&spec.name).await {
            Ok(_) => {
                self.js.update_stream(&config).await.map_err(|e| err(&e))?;
            }
            Err(_) => {
                self.js
                    .get_or_create_stream(config)
                    .await
                    .map_err(|e| err(&e))?;
            }
        }
        Ok(())
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    pub fn stream_name(&self) -> &str {
        &self.stream
    }

    /// The server's `max_payload`: no event larger than this is ever built.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    pub fn server_version(&self) -> String {
        self.client.server_info().version
    }

    /// The stream's state for health checks: messages, bytes, last sequence, replicas.
    pub async fn stream_health(&self) -> Result<StreamHealth, ReadError> {
        let mut stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| ReadError::Nats(e.to_string()))?;
        let info = stream
            .info()
            .await
            .map_err(|e| ReadError::Nats(e.to_string()))?;
        Ok(StreamHealth {
            messages: info.state.messages,
            bytes: info.state.bytes,
            last_sequence: info.state.last_sequence,
            replicas: info.config.num_replicas,
        })
    }

    /// A durable consumer's backlog: (pending, unacknowledged, redelivered).
    pub async fn consumer_backlog(&self, durable: &str) -> Result<(u64, usize, usize), ReadError> {
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| ReadError::Nats(e.to_string()))?;
        let mut consumer = stream
            .get_consumer::<async_nats::jetstream::consumer::pull::Config>(durable)
            .await
            .map_err(|e| ReadError::Nats(e.to_string()))?;
        let info = consumer
            .info()
            .await
            .map_err(|e| ReadError::Nats(e.to_string()))?;
        Ok((info.num_pending, info.num_ack_pending, info.num_redelivered))
    }

    /// The stream's last sequence (0 when empty).
    pub async fn last_sequence(&self) -> Result<u64, ReadError> {
        Ok(self.stream_health().await?.last_sequence)
    }
}

/// What `Journal::stream_health` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHealth {
    pub messages: u64,
    pub bytes: u64,
    pub last_sequence: u64,
    pub replicas: usize,
}

fn stream_config(spec: &StreamSpec) -> stream::Config {
    stream::Config {
        name: spec.name.clone(),
        subjects: spec.subjects.clone(),
        storage: if spec.file_storage {
            stream::StorageType::File
        } else {
            stream::StorageType::Memory
        },
        num_replicas: spec.replicas,
        duplicate_window: spec.duplicate_window,
        deny_delete: spec.deny_delete,
        deny_purge: spec.deny_purge,
        allow_direct: true,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_below_2_11_are_refused() {
        assert!(version_ok("2.15.1"));
        assert!(version_ok("v2.11.0"));
        assert!(version_ok("2.11.0-RC.1"));
        assert!(version_ok("3.0.0"));
        assert!(!version_ok("2.10.22"));
        assert!(!version_ok("v2.9.10"));
        assert!(!version_ok("garbage"));
    }
}
