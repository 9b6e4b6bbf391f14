//! The one error type of conversion, with the split the inferrer acts on: a permanent
//! fault of the input (fail the upload) versus a local I/O fault (retry later).

use std::fmt;

/// Where in the input a fault is, for messages: `file.csv: line 12, column "price"`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    pub file: String,
    /// 1-based physical line (CSV, JSON) or row (Parquet has no lines).
    pub line: Option<u64>,
    pub column: Option<String>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        match (self.line, &self.column) {
            (Some(l), Some(c)) => write!(f, ": line {l}, column {c:?}"),
            (Some(l), None) => write!(f, ": line {l}"),
            (None, Some(c)) => write!(f, ": column {c:?}"),
            (None, None) => Ok(()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The input is not what it claims or cannot be parsed: permanent.
    #[error("{at}: {reason}")]
    Malformed { at: Location, reason: String },
    /// The input is well formed but uses something weir does not read (a codec, a
    /// nested Parquet input wrapped in gzip, a type with no Parquet mapping): permanent.
    #[error("{file}: unsupported: {reason}")]
    Unsupported { file: String, reason: String },
    /// Arrow or Parquet panicked on this input; caught and reported: permanent.
    #[error("{file}: the reader crashed on this input: {message}")]
    Panic { file: String, message: String },
    /// Reading the local input or writing the local output failed: transient.
    #[error("{file}: I/O error: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

impl ConvertError {
    /// A malformed or unsupported input fails the same way every time; only local I/O
    /// faults are worth a retry.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, ConvertError::Io { .. })
    }

    pub(crate) fn malformed(
        file: &str,
        line: Option<u64>,
        column: Option<&str>,
        reason: impl Into<String>,
    ) -> Self {
        ConvertError::Malformed {
            at: Location {
                file: file.to_owned(),
                line,
                column: column.map(str::to_owned),
            },
            reason: reason.into(),
        }
    }

    pub(crate) fn unsupported(file: &str, reason: impl Into<String>) -> Self {
        ConvertError::Unsupported {
            file: file.to_owned(),
            reason: reason.into(),
        }
    }

    /// I/O errors from the input stack: a decompressor reports a corrupt stream as
    /// `InvalidData`/`InvalidInput`/`UnexpectedEof`, which is the input's fault.
    pub(crate) fn from_read(file: &str, line: Option<u64>, e: std::io::Error) -> Self {
        use std::io::ErrorKind::*;
        match e.kind() {
            InvalidData | InvalidInput | UnexpectedEof => {
                ConvertError::malformed(file, line, None, format!("cannot read: {e}"))
            }
            _ => ConvertError::io(file, e),
        }
    }

    pub(crate) fn io(file: &str, source: std::io::Error) -> Self {
        ConvertError::Io {
            file: file.to_owned(),
            source,
        }
    }

    /// An error from writing Parquet: an I/O fault is transient, anything else is the
    /// data's (a type the writer refuses).
    pub(crate) fn from_write(output: &str, e: parquet::errors::ParquetError) -> Self {
        match e {
            parquet::errors::ParquetError::External(inner) => {
                match inner.downcast::<std::io::Error>() {
                    Ok(io) => ConvertError::io(output, *io),
                    Err(other) => ConvertError::unsupported(output, other.to_string()),
                }
            }
            // The writer's last flush (its buffered writer's `into_inner`) reports an I/O
            // fault, a full disk say, as text only. Found by `cli/tests/faults_store.rs`.
            parquet::errors::ParquetError::General(message)
                if message.starts_with(INNER_WRITER_FAILED) =>
            {
                ConvertError::io(output, std::io::Error::other(message))
            }
            other => ConvertError::unsupported(output, format!("writing Parquet: {other}")),
        }
    }
}

/// How the parquet crate words an I/O error of its final flush.
const INNER_WRITER_FAILED: &str = "fail to get inner writer";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_final_flush_is_transient_and_a_refused_type_is_not() {
        let flush = parquet::errors::ParquetError::General(format!(
            "{INNER_WRITER_FAILED}: \"No space left on device (os error 28)\""
        ));
        let e = ConvertError::from_write("out.parquet", flush);
        assert!(!e.is_permanent(), "{e}");
        assert!(e.to_string().contains("No space left on device"), "{e}");
        let refused = parquet::errors::ParquetError::NYI("a type".into());
        assert!(ConvertError::from_write("out.parquet", refused).is_permanent());
    }
}
