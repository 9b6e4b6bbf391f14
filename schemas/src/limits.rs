//! The limits that bound what one hostile file can cost (memory, disk, time), and how
//! an operator sets them. Each error that enforces a limit starts with `limit:` and
//! names the limit and the variable that raises it.

/// `max_record_bytes` in messages: the limit and the variable that sets it.
pub(crate) const RECORD: &str = "max_record_bytes, raise it with WEIR_MAX_RECORD_BYTES";
/// `max_inflation` in messages.
pub(crate) const INFLATION: &str = "max_inflation, raise it with WEIR_MAX_INFLATION";
/// `max_columns` in messages.
pub(crate) const COLUMNS: &str = "max_columns, raise it with WEIR_MAX_COLUMNS";

/// Bounds on the work one file may cause. The defaults fit a machine with a few GB of
/// memory; `weir up` and `weir serve inferrer` read them from the environment
/// ([`Limits::from_env`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest record (CSV row, JSON record, NDJSON line) in bytes: one endless
    /// line, or a quote or brace that never closes, cannot take unbounded memory.
    pub max_record_bytes: usize,
    /// A gzip/zstd input may decompress to at most this many times its size (and
    /// always to 16 MiB): a compression bomb fails instead of filling the disk.
    pub max_inflation: u64,
    /// The most columns a file may have (CSV header, JSON keys, Parquet leaves).
    pub max_columns: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_record_bytes: crate::records::MAX_RECORD_BYTES,
            max_inflation: 250,
            max_columns: 20_000,
        }
    }
}

impl Limits {
    /// Refuses a file of more than `max_columns` columns.
    pub(crate) fn check_columns(
        &self,
        file: &str,
        columns: usize,
    ) -> Result<(), crate::ConvertError> {
        if columns > self.max_columns {
            return Err(crate::ConvertError::unsupported(
                file,
                format!(
                    "limit: {columns} columns, more than {} ({COLUMNS})",
                    self.max_columns
                ),
            ));
        }
        Ok(())
    }

    /// The defaults, each replaced by its variable when set: `WEIR_MAX_RECORD_BYTES`,
    /// `WEIR_MAX_INFLATION`, `WEIR_MAX_COLUMNS` (positive integers). An unusable
    /// value is an error naming the variable.
    pub fn from_env() -> Result<Limits, String> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`Limits::from_env`] over any source of variables.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Limits, String> {
        fn read<T: std::str::FromStr + PartialOrd + From<u8>>(
            var: &impl Fn(&str) -> Option<String>,
            name: &str,
            default: T,
        ) -> Result<T, String> {
            match var(name) {
                None => Ok(default),
                Some(v) => match v.trim().parse::<T>() {
                    Ok(n) if n >= T::from(1) => Ok(n),
                    _ => Err(format!("{name}={v:?} is not a positive whole number")),
                },
            }
        }
        let d = Limits::default();
        Ok(Limits {
            max_record_bytes: read(&var, "WEIR_MAX_RECORD_BYTES", d.max_record_bytes)?,
            max_inflation: read(&var, "WEIR_MAX_INFLATION", d.max_inflation)?,
            max_columns: read(&var, "WEIR_MAX_COLUMNS", d.max_columns)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_come_from_variables_or_defaults() {
        let none = Limits::from_vars(|_| None).unwrap();
        assert_eq!(none, Limits::default());
        let set = Limits::from_vars(|n| match n {
            "WEIR_MAX_INFLATION" => Some("1000".into()),
            "WEIR_MAX_COLUMNS" => Some(" 50 ".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(set.max_inflation, 1000);
        assert_eq!(set.max_columns, 50);
        assert_eq!(set.max_record_bytes, Limits::default().max_record_bytes);
        for bad in ["0", "-1", "lots", ""] {
            let e = Limits::from_vars(|n| (n == "WEIR_MAX_RECORD_BYTES").then(|| bad.to_owned()))
                .unwrap_err();
            assert!(e.starts_with("WEIR_MAX_RECORD_BYTES="), "{e}");
        }
    }
}
