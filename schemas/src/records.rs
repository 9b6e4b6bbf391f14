//! Delimited records with the physical line each starts on, on top of `csv-core`.
//!
//! The `csv` crate's `Position::line` lags behind after blank lines and CRLF endings
//! (it is taken before the skipped terminators are counted), so weir counts lines
//! itself: every `\n` consumed moves the line on, and a record's line is the line of
//! its first byte that is not a line terminator. Newlines inside quoted values are
//! counted like any other, so later records keep their true line numbers.

use std::io::BufRead;

use csv_core::{ReadRecordResult, Reader, ReaderBuilder};

pub struct Records<R> {
    input: R,
    core: Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
    fields: usize,
    /// 1-based line of the next unread byte.
    unread_line: u64,
    /// 1-based line the current record starts on.
    record_line: u64,
}

impl<R: BufRead> Records<R> {
    pub fn new(input: R, delimiter: u8) -> Self {
        Records {
            input,
            core: ReaderBuilder::new()
                .delimiter(delimiter)
                .double_quote(true)
                .build(),
            out: vec![0; 64 << 10],
            ends: vec![0; 256],
            fields: 0,
            unread_line: 1,
            record_line: 1,
        }
    }

    /// Reads the next record; false at the end of the input.
    pub fn read(&mut self) -> std::io::Result<bool> {
        let mut out_len = 0;
        let mut fields = 0;
        let mut started = false;
        loop {
            let input = self.input.fill_buf()?;
            let (result, nin, nout, nend) =
                self.core
                    .read_record(input, &mut self.out[out_len..], &mut self.ends[fields..]);
            let consumed = &input[..nin];
            if !started && let Some(first) = consumed.iter().position(|&c| c != b'\n' && c != b'\r')
            {
                started = true;
                self.record_line = self.unread_line + newlines(&consumed[..first]);
            }
            self.unread_line += newlines(consumed);
            self.input.consume(nin);
            // csv-core keeps field ends relative to the record's start across calls.
            out_len += nout;
            fields += nend;
            match result {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => {
                    let len = self.out.len() * 2;
                    self.out.resize(len, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let len = self.ends.len() * 2;
                    self.ends.resize(len, 0);
                }
                ReadRecordResult::Record => {
                    if !started {
                        self.record_line = self.unread_line;
                    }
                    self.fields = fields;
                    return Ok(true);
                }
                ReadRecordResult::End => {
                    self.fields = 0;
                    return Ok(false);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.fields
    }

    /// Field `i` of the current record.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        if i >= self.fields {
            return None;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.out.get(start..self.ends[i])
    }

    /// The 1-based line the current record starts on.
    pub fn line(&self) -> u64 {
        self.record_line
    }

    /// The 1-based line of the next unread byte (where an I/O error happened).
    pub fn next_line(&self) -> u64 {
        self.unread_line
    }
}

/// `\n` bytes in `bytes`: a branch-free count the compiler vectorises, since every
/// byte of the file passes through here.
fn newlines(bytes: &[u8]) -> u64 {
    bytes.iter().map(|&c| u64::from(c == b'\n')).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(data: &[u8]) -> Vec<(u64, Vec<String>)> {
        let mut r = Records::new(data, b',');
        let mut out = Vec::new();
        while r.read().unwrap_or(false) {
            let fields = (0..r.len())
                .map(|i| String::from_utf8_lossy(r.get(i).unwrap_or_default()).into_owned())
                .collect();
            out.push((r.line(), fields));
        }
        out
    }

    #[test]
    fn lines_survive_crlf_blank_lines_and_quoted_newlines() {
        let got = lines(b"a,b\r\n\r\n1,\"x\r\ny\"\r\n\n3,\"\"\"q\"\"\"\r\n4");
        let want: Vec<(u64, Vec<String>)> = vec![
            (1, vec!["a".into(), "b".into()]),
            (3, vec!["1".into(), "x\r\ny".into()]),
            (6, vec!["3".into(), "\"q\"".into()]),
            (7, vec!["4".into()]),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn long_records_grow_the_buffers() {
        let wide = vec!["v"; 1000].join(",");
        let long = "x".repeat(200_000);
        let data = format!("{wide}\n{long}\n");
        let got = lines(data.as_bytes());
        assert_eq!(got[0].1.len(), 1000);
        assert_eq!(got[1].0, 2);
        assert!(got[1].1 == [long], "the long field survives");
    }
}
