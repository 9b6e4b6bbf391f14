//! Bad rows: the policy applied to each one, the first few kept for the event, and the
//! rejects file where every row that is not registered as it is goes, so that no value
//! is lost without the user being told where it went.
//!
//! The rejects file is NDJSON, one object per entry:
//!
//! ```json
//! {"line":3,"action":"rejected","reason":"expected 2 fields, found 1","raw":"3"}
//! {"line":4,"action":"extra_fields_kept","reason":"expected 2 fields, found 3: …","raw":"4,5,6","extra":["6"]}
//! ```
//!
//! `line` is the 1-based line the row starts on; `column` names the field when one is to
//! blame; `raw` is the row's text as read (after transcoding to UTF-8; invalid UTF-8 is
//! shown as U+FFFD and the exact bytes follow in `raw_hex`); a row over
//! [`MAX_RAW_BYTES`] is cut there and says so with `raw_truncated` and `raw_bytes`
//! (its length), the full row staying in the uploaded blob. Each pass over the input
//! starts the file anew, so it only ever holds the pass that was registered.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde::Serialize;
use weir_events::{BadRows, MaxBadRows};

use crate::{ConvertError, Job, Problems};

/// Raw text kept per entry; longer rows are cut and marked.
pub(crate) const MAX_RAW_BYTES: usize = 1 << 20;

/// What happened to a bad row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Not registered.
    Rejected,
    /// Registered padded; the fields beyond the header are kept in the rejects file.
    ExtraFieldsKept,
}

#[derive(Serialize)]
struct Entry<'a> {
    line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<&'a str>,
    action: &'static str,
    reason: &'a str,
    raw: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_hex: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    raw_truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_bytes: Option<usize>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    extra: &'a [String],
}

/// One pass's bad rows.
pub(crate) struct BadRowLog<'a> {
    pub policy: BadRows,
    max: Option<MaxBadRows>,
    file: &'a str,
    path: Option<&'a Path>,
    out: Option<BufWriter<File>>,
    /// The bad rows: the first few, and how many.
    pub problems: Problems,
    /// Rows not registered.
    pub rejected: u64,
    /// Entries written to the rejects file.
    pub entries: u64,
}

impl<'a> BadRowLog<'a> {
    pub fn new(job: &Job<'a>) -> Self {
        BadRowLog {
            policy: job.opts.bad_rows,
            max: job.opts.max_bad_rows,
            file: job.file,
            path: job.opts.rejects.as_deref(),
            out: None,
            problems: Problems::default(),
            rejected: 0,
            entries: 0,
        }
    }

    /// A row that will not be registered: an error under `fail`, else an entry.
    pub fn reject(
        &mut self,
        line: u64,
        column: Option<&str>,
        reason: &str,
        raw: &[u8],
    ) -> Result<(), ConvertError> {
        self.bad(line, column, reason)?;
        self.rejected += 1;
        self.entry(line, column, Action::Rejected, reason, raw, &[])
    }

    /// A row registered padded or widened (policy `pad`); `extra` are the values that
    /// did not fit in it, kept in the rejects file when there are any.
    pub fn padded(
        &mut self,
        line: u64,
        column: Option<&str>,
        reason: &str,
        raw: &[u8],
        extra: &[String],
    ) -> Result<(), ConvertError> {
        self.bad(line, column, reason)?;
        if extra.is_empty() {
            return Ok(());
        }
        self.entry(line, column, Action::ExtraFieldsKept, reason, raw, extra)
    }

    /// Counts a bad row; fails under `fail` and past a row-count limit.
    fn bad(&mut self, line: u64, column: Option<&str>, reason: &str) -> Result<(), ConvertError> {
        if self.policy == BadRows::Fail {
            return Err(ConvertError::malformed(
                self.file,
                Some(line),
                column,
                format!(
                    "{reason} (bad-row policy `fail`; `--bad-rows reject` registers the good rows and lists the bad ones in a rejects file)"
                ),
            ));
        }
        self.problems
            .push(line, column.map(str::to_owned), reason.to_owned());
        if let Some(max @ MaxBadRows::Rows(_)) = self.max
            && max.exceeded(self.problems.count, 0)
        {
            return Err(self.too_many(None, max));
        }
        Ok(())
    }

    fn too_many(&self, rows: Option<u64>, max: MaxBadRows) -> ConvertError {
        let of = rows
            .map(|r| format!(" of {r} data rows"))
            .unwrap_or_default();
        let first = self
            .problems
            .first
            .first()
            .map(|p| {
                format!(
                    "; the first, line {}{}: {}",
                    p.line,
                    p.column
                        .as_ref()
                        .map(|c| format!(", column {c:?}"))
                        .unwrap_or_default(),
                    p.message
                )
            })
            .unwrap_or_default();
        ConvertError::malformed(
            self.file,
            None,
            None,
            format!(
                "{} bad rows{of}, over the limit of {max} (--max-bad-rows){first}",
                self.problems.count
            ),
        )
    }

    fn entry(
        &mut self,
        line: u64,
        column: Option<&str>,
        action: Action,
        reason: &str,
        raw: &[u8],
        extra: &[String],
    ) -> Result<(), ConvertError> {
        let Some(path) = self.path else {
            // No place to put it: refusing is the only way not to lose it.
            return Err(ConvertError::malformed(
                self.file,
                Some(line),
                column,
                format!("{reason} (and there is no rejects file to keep the row in)"),
            ));
        };
        let io = |e: std::io::Error| ConvertError::io(&path.display().to_string(), e);
        if self.out.is_none() {
            self.out = Some(BufWriter::new(File::create(path).map_err(io)?));
        }
        let cut = raw.len().min(MAX_RAW_BYTES);
        let text = String::from_utf8_lossy(&raw[..cut]);
        let raw_hex = match text {
            std::borrow::Cow::Owned(_) => Some(hex(&raw[..cut])),
            std::borrow::Cow::Borrowed(_) => None,
        };
        let entry = Entry {
            line,
            column,
            action: match action {
                Action::Rejected => "rejected",
                Action::ExtraFieldsKept => "extra_fields_kept",
            },
            reason,
            raw: trim_line_end(&text),
            raw_hex,
            raw_truncated: cut < raw.len(),
            raw_bytes: (cut < raw.len()).then_some(raw.len()),
            extra,
        };
        let out = self.out.as_mut().expect("opened above");
        serde_json::to_writer(&mut *out, &entry).map_err(|e| io(e.into()))?;
        out.write_all(b"\n").map_err(io)?;
        self.entries += 1;
        Ok(())
    }

    /// Closes the rejects file; fails when the bad rows are over a share limit of
    /// `rows_read`.
    pub fn finish(mut self, rows_read: u64) -> Result<Self, ConvertError> {
        if let Some(max) = self.max
            && max.exceeded(self.problems.count, rows_read)
        {
            return Err(self.too_many(Some(rows_read), max));
        }
        if let (Some(out), Some(path)) = (self.out.as_mut(), self.path) {
            out.flush()
                .map_err(|e| ConvertError::io(&path.display().to_string(), e))?;
        }
        self.out = None;
        Ok(self)
    }
}

fn trim_line_end(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
