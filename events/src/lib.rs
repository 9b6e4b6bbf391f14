//! weir's wire contract: typed ids, the event enum and its envelope, postcard encoding,
//! subjects and the stream's shape. This crate does no I/O: no tokio, no NATS, no SQL.

pub mod access;
pub mod envelope;
pub mod event;
pub mod ids;
pub mod names;
pub mod stream;
pub mod subject;

pub use access::{Access, AccessLevel, DatasetAction, Denied, Grants};
pub use envelope::{
    Aggregate, DEFAULT_MAX_PAYLOAD, DecodeError, EncodeError, Envelope, SCHEMA_VERSION, Timestamp,
};
pub use event::*;
pub use ids::{DatasetId, EventId, IdError, Owner, OwnerError, UploadId};
pub use names::{
    MAX_FILENAME_BYTES, ObjectKey, PartLayout, Sha256, TableName, TableNameError, upload_filename,
};
pub use stream::{KIND_HEADER, SCHEMA_HEADER, StreamSpec};
pub use subject::Subject;
