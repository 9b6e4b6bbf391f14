//! Content validators chosen per upload (`--validator NAME`): each checks every record
//! of an NDJSON file against a content contract and computes statistics about it. A
//! file with an invalid record fails its upload with the first errors (line, field,
//! hint); a valid one registers with the statistics in its quality.
//!
//! Adding a validator is one file in `validators/` implementing [`Validator`] and one
//! line in [`by_name`].

mod conversation;

use std::io::BufRead;
use std::path::Path;

use serde::Serialize;

use crate::{ConvertError, HEAD_BYTES, input, sniff};

/// One record's problem: which field, what is wrong, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    pub field: String,
    pub message: String,
    pub hint: String,
}

/// A content contract over the records of an NDJSON file.
pub trait Validator {
    /// The name producers choose it by.
    fn name(&self) -> &'static str;
    /// Checks one record; its problems (none when it is valid).
    fn check(&mut self, record: &serde_json::Value) -> Vec<Issue>;
    /// Statistics over the valid records, for the catalog.
    fn statistics(&self) -> serde_json::Value;
}

/// The validator named `name`.
pub fn by_name(name: &str) -> Result<Box<dyn Validator>, String> {
    match name {
        "conversation-jsonl" => Ok(Box::new(conversation::Conversations::default())),
        other => Err(format!(
            "unknown validator {other:?}: use conversation-jsonl"
        )),
    }
}

/// What a validation found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub validator: String,
    pub records: u64,
    pub invalid: u64,
    /// The first 10 problems, with their file and line.
    pub first: Vec<(String, u64, Issue)>,
    pub statistics: serde_json::Value,
}

/// Runs one validator `name` over every non-blank line of each (path, file name) in
/// turn (gzip/zstd and text encodings handled as for conversion): the statistics are
/// over all of them, each problem names its file and line.
pub(crate) fn validate_files(
    files: &[(&Path, &str)],
    name: &str,
    encoding: Option<&str>,
    limits: &crate::Limits,
) -> Result<Report, ConvertError> {
    let first_file = files.first().map_or("", |(_, f)| *f);
    let mut validator = by_name(name).map_err(|e| ConvertError::unsupported(first_file, e))?;
    let mut report = Report {
        validator: name.to_owned(),
        records: 0,
        invalid: 0,
        first: Vec::new(),
        statistics: serde_json::Value::Null,
    };
    for (path, file) in files {
        validate_one(
            path,
            file,
            validator.as_mut(),
            &mut report,
            encoding,
            limits,
        )?;
    }
    report.statistics = validator.statistics();
    Ok(report)
}

fn validate_one(
    path: &Path,
    file: &str,
    validator: &mut dyn Validator,
    report: &mut Report,
    encoding: Option<&str>,
    limits: &crate::Limits,
) -> Result<(), ConvertError> {
    let max_record_bytes = limits.max_record_bytes;
    let forced = match encoding {
        Some(label) => Some(crate::encoding::for_label(label, file)?),
        None => None,
    };
    let head = input::read_head(path, file, HEAD_BYTES)?;
    let mut sniffed = sniff::sniff_full(&head, file, None, None, forced)?;
    if sniffed.encoding_open {
        sniffed.encoding = crate::encoding::look_further(path, file, sniffed.compression)?;
    }
    let mut progress = |_| {};
    let mut reader = input::open_text(
        path,
        file,
        sniffed.compression,
        sniffed.encoding,
        limits.max_inflation,
        &mut progress,
    )?;
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let n = std::io::Read::take(&mut reader, max_record_bytes as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| ConvertError::from_read(file, Some(number + 1), e))?;
        if n == 0 {
            break;
        }
        number += 1;
        if line.len() > max_record_bytes {
            return Err(ConvertError::malformed(
                file,
                Some(number),
                None,
                format!(
                    "limit: a line longer than {max_record_bytes} bytes ({})",
                    crate::limits::RECORD
                ),
            ));
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        report.records += 1;
        let issues = match serde_json::from_slice::<serde_json::Value>(&line) {
            Ok(record) => validator.check(&record),
            Err(e) => vec![Issue {
                field: String::new(),
                message: format!("not JSON: {e}"),
                hint: "each line is one JSON object".to_owned(),
            }],
        };
        if !issues.is_empty() {
            report.invalid += 1;
            for issue in issues {
                if report.first.len() < weir_events::MAX_ROW_PROBLEMS {
                    report.first.push((file.to_owned(), number, issue));
                }
            }
        }
    }
    Ok(())
}
