//! The stream's configuration as plain data. The journal crate turns it into a
//! JetStream stream; keeping it here puts the log's shape next to the contract.

use std::time::Duration;

use crate::subject::ROOT;

/// The header naming an event's kind, so tools filter without decoding the payload.
pub const KIND_HEADER: &str = "Weir-Kind";
/// The header carrying the envelope's schema version.
pub const SCHEMA_HEADER: &str = "Weir-Schema";

/// How the stream is laid out. See `nats.conf` for the durability choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    pub name: String,
    pub subjects: Vec<String>,
    /// Window within which a repeated `Nats-Msg-Id` is stored once.
    pub duplicate_window: Duration,
    /// The log is append-only: nothing deletes or purges it.
    pub deny_delete: bool,
    pub deny_purge: bool,
    /// File storage (the alternative, memory, loses the log on restart).
    pub file_storage: bool,
    pub replicas: usize,
}

impl Default for StreamSpec {
    fn default() -> Self {
        Self {
            name: "WEIR".to_owned(),
            subjects: vec![format!("{ROOT}.>")],
            duplicate_window: Duration::from_secs(120),
            deny_delete: true,
            deny_purge: true,
            file_storage: true,
            replicas: 1,
        }
    }
}
