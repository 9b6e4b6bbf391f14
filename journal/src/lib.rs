//! weir's access to the event log on JetStream.
//!
//! [`Journal::connect`] refuses servers older than 2.11 (they ignore the header that
//! scopes conditional appends to an aggregate); [`Journal::append`] is the only way
//! events enter the log; [`Journal::follow`] and [`Journal::history`] read it back.
//! [`server`] finds and starts a local nats-server (one node or a cluster) for `weir up`
//! and for tests; [`auth`] names the users each part of weir connects as.

pub mod append;
pub mod auth;
pub mod read;
pub mod server;

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use weir_events::StreamSpec;

pub use append::{AppendError, AppendOutcome, Expect};
pub use auth::{Credentials, Role};
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
    #[error("NATS URL {url:?} is not valid: {message}")]
    BadUrl { url: String, message: String },
}

impl ConnectError {
    /// The server refused the credentials (or their absence).
    pub fn is_refused_credentials(&self) -> bool {
        matches!(self, ConnectError::Connect { source, .. } if matches!(
            source.kind(),
            async_nats::ConnectErrorKind::AuthorizationViolation
                | async_nats::ConnectErrorKind::Authentication
        ))
    }

    /// Whether trying again later may succeed (a server still starting or electing);
    /// refused credentials and old servers are not.
    pub fn is_transient(&self) -> bool {
        match self {
            ConnectError::Connect { source, .. } => !matches!(
                source.kind(),
                async_nats::ConnectErrorKind::AuthorizationViolation
                    | async_nats::ConnectErrorKind::Authentication
                    | async_nats::ConnectErrorKind::ServerParse
            ),
            ConnectError::Stream { .. } => true,
            _ => false,
        }
    }
}

/// What connecting does to the stream's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamSetup {
    /// Create the stream, or bring an existing one's settings in line with the spec
    /// (the admin's job: it needs `$JS.API.STREAM.CREATE`/`UPDATE`).
    Update,
    /// Create the stream only when it is missing; leave an existing one as it is (a
    /// service or command: an R3 stream stays R3 whatever spec it was built with).
    CreateIfMissing,
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
        Self::connect_as(url, None, spec, StreamSetup::Update).await
    }

    /// Connects as `credentials` (none: anonymous) to `url`, which may list several
    /// servers of one cluster separated by commas (the client fails over between
    /// them), and sets the stream up as `setup` says.
    pub async fn connect_as(
        url: &str,
        credentials: Option<&Credentials>,
        spec: &StreamSpec,
        setup: StreamSetup,
    ) -> Result<Self, ConnectError> {
        let addrs = server_addrs(url)?;
        let mut options = async_nats::ConnectOptions::new()
            .name(match credentials {
                Some(c) => format!("weir-{}", c.user()),
                None => "weir".to_owned(),
            })
            .connection_timeout(Duration::from_secs(5));
        if let Some(c) = credentials {
            options = options.user_and_password(c.user().to_owned(), c.password().to_owned());
        }
        let client = options
            .connect(addrs)
            .await
            .map_err(|source| ConnectError::Connect {
                url: url.to_owned(),
                source,
            })?;
        let journal = Self::from_client(client, url, spec.name.clone())?;
        match setup {
            StreamSetup::Update => journal.ensure_stream(spec).await?,
            StreamSetup::CreateIfMissing => journal.create_stream_if_missing(spec).await?,
        }
        Ok(journal)
    }

    /// [`Journal::connect_as`] with [`StreamSetup::Update`], retried for up to
    /// `patience` while the servers are unreachable or cannot take stream requests yet
    /// (a cluster elects its JetStream leader a moment after its nodes are ready).
    pub async fn set_up(
        url: &str,
        credentials: Option<&Credentials>,
        spec: &StreamSpec,
        patience: Duration,
    ) -> Result<Self, ConnectError> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            match Self::connect_as(url, credentials, spec, StreamSetup::Update).await {
                Err(e) if e.is_transient() && tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "stream not ready; retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                result => return result,
            }
        }
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

    /// Creates the stream when it does not exist; an existing one is left as it is.
    pub async fn create_stream_if_missing(&self, spec: &StreamSpec) -> Result<(), ConnectError> {
        if self.js.get_stream(&spec.name).await.is_ok() {
            return Ok(());
        }
        self.js
            .get_or_create_stream(stream_config(spec))
            .await
            .map(|_| ())
            .map_err(|e| ConnectError::Stream {
                name: spec.name.clone(),
                message: e.to_string(),
            })
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

/// `nats://a:4222,nats://b:4222` → both addresses (a cluster's servers).
fn server_addrs(url: &str) -> Result<Vec<async_nats::ServerAddr>, ConnectError> {
    url.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse::<async_nats::ServerAddr>()
                .map_err(|e| ConnectError::BadUrl {
                    url: url.to_owned(),
                    message: e.to_string(),
                })
        })
        .collect()
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
