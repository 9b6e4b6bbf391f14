//! Delimited records with the physical line each starts on.
//!
//! The record rules are `csv-core`'s with weir's settings (quote `"`, doubled quotes
//! inside quoted fields, `\r`, `\n` and `\r\n` all end a record, blank lines skipped, a
//! quote only opens a quoted field at the start of a field, text after a closing quote
//! joins the field, the last record may lack its line end, an unclosed quote runs to
//! the end of the input). This reader parses them in place: the input is read in
//! chunks of whole lines, each chunk is checked as UTF-8 once, and a field is a slice
//! of the chunk, copied only when doubled quotes or text after a closing quote have to
//! be joined. A chunk that is not valid UTF-8 is kept as bytes, and its fields are
//! checked one by one, so the error names the field as before.
//!
//! Lines: every `\n` consumed moves the line on, and a record's line is the line of its
//! first byte that is not a line terminator. Newlines inside quoted values count like
//! any other, so later records keep their true line numbers.

use std::io::BufRead;
use std::ops::Range;
use std::str::Utf8Error;

/// Bytes read before the input is cut into a chunk of whole lines.
#[cfg(not(test))]
const READ_BYTES: usize = 1 << 20;
/// In tests, a few bytes: records then cross chunk ends everywhere.
#[cfg(test)]
const READ_BYTES: usize = 5;

pub struct Records<R> {
    input: R,
    delimiter: u8,
    chunk: Chunk,
    /// Read after the chunk's last line end: the start of the next chunk.
    tail: Vec<u8>,
    /// Parse position in the chunk: the start of the next record.
    pos: usize,
    eof: bool,
    /// The current record's fields.
    fields: Vec<Span>,
    /// Fields that had to be joined (doubled quotes, text after a closing quote).
    scratch: Vec<u8>,
    /// 1-based line of the byte at `pos`.
    unread_line: u64,
    /// 1-based line the current record starts on.
    record_line: u64,
    /// Where the current record starts in the chunk.
    record_start: usize,
    /// Bytes of the input before the current chunk.
    chunk_offset: u64,
    /// A record (or a line) longer than this is an error, not a buffer that grows.
    max_record: usize,
}

/// The default longest record: a row this long is almost always a file that is not
/// delimited text, or a quote that never closes.
pub const MAX_RECORD_BYTES: usize = 64 << 20;

/// The current chunk: text when it is valid UTF-8, else bytes.
enum Chunk {
    Text(String),
    Bytes(Vec<u8>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Text(s) => s.as_bytes(),
            Chunk::Bytes(b) => b,
        }
    }
}

/// A field: a range of the chunk, or of the scratch buffer.
#[derive(Debug, Clone)]
struct Span {
    range: Range<usize>,
    joined: bool,
}

/// The chunk ends inside the record: read more, then parse it again.
struct More;

impl<R: BufRead> Records<R> {
    pub fn new(input: R, delimiter: u8) -> Self {
        Records {
            input,
            delimiter,
            chunk: Chunk::Bytes(Vec::new()),
            tail: Vec::new(),
            pos: 0,
            eof: false,
            fields: Vec::with_capacity(64),
            scratch: Vec::new(),
            unread_line: 1,
            record_line: 1,
            record_start: 0,
            chunk_offset: 0,
            max_record: MAX_RECORD_BYTES,
        }
    }

    /// Refuses records longer than `bytes` (default [`MAX_RECORD_BYTES`]).
    pub fn with_max_record(mut self, bytes: usize) -> Self {
        self.max_record = bytes.max(1);
        self
    }

    /// Reads the next record; false at the end of the input.
    pub fn read(&mut self) -> std::io::Result<bool> {
        loop {
            match self.parse() {
                Ok(Some((end, record_line, line))) => {
                    self.pos = end;
                    self.record_line = record_line;
                    self.unread_line = line;
                    return Ok(true);
                }
                Ok(None) => {
                    self.fields.clear();
                    return Ok(false);
                }
                Err(More) => self.refill()?,
            }
        }
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Field `i` of the current record.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let span = self.fields.get(i)?;
        if span.joined {
            self.scratch.get(span.range.clone())
        } else {
            self.chunk.bytes().get(span.range.clone())
        }
    }

    /// Field `i` of the current record as text; `Ok("")` when the record has no such
    /// field. The chunk was checked as a whole, so most fields need no check of their own.
    pub fn get_str(&self, i: usize) -> Result<&str, Utf8Error> {
        let Some(span) = self.fields.get(i) else {
            return Ok("");
        };
        if let (Chunk::Text(text), false) = (&self.chunk, span.joined)
            && let Some(s) = text.get(span.range.clone())
        {
            return Ok(s);
        }
        std::str::from_utf8(self.get(i).unwrap_or_default())
    }

    /// The current record's text as read, without its line end.
    pub fn raw(&self) -> &[u8] {
        self.chunk
            .bytes()
            .get(self.record_start..self.pos)
            .unwrap_or_default()
    }

    /// The byte offset (0-based, in the text after decompression) of byte `at` of
    /// field `i`, for errors; the record's start when the field was joined.
    pub fn offset_in_field(&self, i: usize, at: usize) -> u64 {
        let start = match self.fields.get(i) {
            Some(span) if !span.joined => span.range.start + at,
            _ => self.record_start,
        };
        self.chunk_offset + start as u64
    }

    /// The 1-based line the current record starts on.
    pub fn line(&self) -> u64 {
        self.record_line
    }

    /// The 1-based line of the next unread byte (where an I/O error happened).
    pub fn next_line(&self) -> u64 {
        let b = self.chunk.bytes();
        self.unread_line + newlines(b.get(self.pos..).unwrap_or_default()) + newlines(&self.tail)
    }

    /// Reads at least `READ_BYTES` more (or to the end), and makes a new chunk of the
    /// unparsed rest of the old one and whole lines of what was read.
    fn refill(&mut self) -> std::io::Result<()> {
        let old = std::mem::replace(&mut self.chunk, Chunk::Bytes(Vec::new()));
        let mut pending = match old {
            Chunk::Text(s) => s.into_bytes(),
            Chunk::Bytes(b) => b,
        };
        let consumed = self.pos.min(pending.len());
        pending.drain(..consumed);
        self.chunk_offset += consumed as u64;
        pending.append(&mut self.tail);
        self.pos = 0;
        let carried = pending.len();
        if carried > self.max_record {
            // The unparsed rest is one record that is still open (a quote that never
            // closes, or a line that never ends). Kept, so `next_line` counts it.
            self.chunk = Chunk::Bytes(Vec::new());
            self.tail = pending;
            return Err(self.too_long());
        }
        let mut line_end = false;
        loop {
            let buf = match self.input.fill_buf() {
                Ok(buf) => buf,
                Err(e) => {
                    // Keep what was read, so `next_line` counts it.
                    self.chunk = Chunk::Bytes(Vec::new());
                    self.tail = pending;
                    return Err(e);
                }
            };
            if buf.is_empty() {
                self.eof = true;
                break;
            }
            let n = buf.len();
            line_end |= buf.iter().any(|&c| c == b'\n' || c == b'\r');
            pending.extend_from_slice(buf);
            self.input.consume(n);
            if pending.len() - carried >= READ_BYTES && line_end {
                break;
            }
            if !line_end && pending.len() > self.max_record {
                self.chunk = Chunk::Bytes(Vec::new());
                self.tail = pending;
                return Err(self.too_long());
            }
        }
        let cut = if self.eof {
            pending.len()
        } else {
            pending
                .iter()
                .rposition(|&c| c == b'\n' || c == b'\r')
                .map_or(pending.len(), |p| p + 1)
        };
        self.tail = pending.split_off(cut);
        self.chunk = match String::from_utf8(pending) {
            Ok(s) => Chunk::Text(s),
            Err(e) => Chunk::Bytes(e.into_bytes()),
        };
        Ok(())
    }

    fn too_long(&self) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "limit: a record longer than {} bytes ({}): a line that never ends or a quote that never closes?",
                self.max_record,
                crate::limits::RECORD
            ),
        )
    }

    /// Parses the record at `pos`: its end, its line and the line after it; `None` at
    /// the end of the input.
    fn parse(&mut self) -> Result<Option<(usize, u64, u64)>, More> {
        let b = self.chunk.bytes();
        let len = b.len();
        let d = self.delimiter;
        let mut line = self.unread_line;
        let mut i = self.pos;
        // Line terminators before a record are skipped (blank lines).
        while i < len && (b[i] == b'\n' || b[i] == b'\r') {
            line += u64::from(b[i] == b'\n');
            i += 1;
        }
        if i == len {
            return if self.eof && self.tail.is_empty() {
                Ok(None)
            } else {
                Err(More)
            };
        }
        let at_end = self.eof && self.tail.is_empty();
        let record_line = line;
        self.record_start = i;
        self.fields.clear();
        self.scratch.clear();
        loop {
            // At the start of a field.
            if i == len {
                if !at_end {
                    return Err(More);
                }
                // The input ends after a delimiter: one more, empty field.
                self.fields.push(Span {
                    range: i..i,
                    joined: false,
                });
                return Ok(Some((i, record_line, line)));
            }
            let c = b[i];
            if c == b'"' {
                let (span, next, newlines) = quoted(b, i + 1, d, at_end, &mut self.scratch)?;
                line += newlines;
                self.fields.push(span);
                i = next;
            } else {
                let end = special(b, i, d);
                self.fields.push(Span {
                    range: i..end,
                    joined: false,
                });
                i = end;
            }
            // After a field: a delimiter, a line end, or the end of the input.
            match b.get(i) {
                Some(&c) if c == d => i += 1,
                Some(_) => return Ok(Some((i, record_line, line))),
                None if at_end => return Ok(Some((i, record_line, line))),
                None => return Err(More),
            }
        }
    }
}

/// The first delimiter, `\r` or `\n` at or after `i` (or `b.len()`), eight bytes at a
/// time: the bytes of a field are mostly plain, so finding its end is most of the work.
#[inline]
fn special(b: &[u8], mut i: usize, d: u8) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let dd = ONES * u64::from(d);
    let cr = ONES * u64::from(b'\r');
    let lf = ONES * u64::from(b'\n');
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    while let Some(word) = b.get(i..i + 8) {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(word);
        let w = u64::from_le_bytes(bytes);
        // A set high bit marks a byte equal to one of the three; the lowest one is
        // exact (a false mark can only follow a true one).
        let hit = zero(w ^ dd) | zero(w ^ cr) | zero(w ^ lf);
        if hit != 0 {
            return i + (hit.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && b[i] != d && b[i] != b'\r' && b[i] != b'\n' {
        i += 1;
    }
    i
}

/// A quoted field whose content starts at `start` (after the opening quote): its span,
/// the position after it (at a delimiter, a line end or the end), and the newlines in it.
fn quoted(
    b: &[u8],
    start: usize,
    d: u8,
    at_end: bool,
    scratch: &mut Vec<u8>,
) -> Result<(Span, usize, u64), More> {
    let len = b.len();
    let mut newlines = 0;
    let mut i = start;
    // Joined content, once the field is not one plain slice.
    let mut joined: Option<usize> = None;
    let mut piece = start;
    loop {
        // Inside the quotes: up to the next quote.
        while i < len && b[i] != b'"' {
            newlines += u64::from(b[i] == b'\n');
            i += 1;
        }
        if i == len {
            if !at_end {
                return Err(More);
            }
            // An unclosed quote runs to the end of the input.
            return Ok((finish(b, piece..i, joined, scratch), i, newlines));
        }
        // `i` is a quote: doubled (a literal quote), or the closing one.
        match b.get(i + 1) {
            Some(b'"') => {
                joined.get_or_insert(scratch.len());
                scratch.extend_from_slice(&b[piece..=i]);
                i += 2;
                piece = i;
            }
            Some(&c) if c == d || c == b'\r' || c == b'\n' => {
                return Ok((finish(b, piece..i, joined, scratch), i + 1, newlines));
            }
            None if at_end => {
                return Ok((finish(b, piece..i, joined, scratch), i + 1, newlines));
            }
            None => return Err(More),
            Some(_) => {
                // Text after the closing quote joins the field, quotes and all, up to
                // the next delimiter or line end.
                joined.get_or_insert(scratch.len());
                scratch.extend_from_slice(&b[piece..i]);
                let end = special(b, i + 1, d);
                if end == len && !at_end {
                    return Err(More);
                }
                return Ok((finish(b, i + 1..end, joined, scratch), end, newlines));
            }
        }
    }
}

/// The span of a quoted field whose last piece is `last`: the slice itself when
/// nothing was joined, else the joined text in `scratch`.
fn finish(b: &[u8], last: Range<usize>, joined: Option<usize>, scratch: &mut Vec<u8>) -> Span {
    match joined {
        None => Span {
            range: last,
            joined: false,
        },
        Some(from) => {
            scratch.extend_from_slice(&b[last]);
            Span {
                range: from..scratch.len(),
                joined: true,
            }
        }
    }
}

/// `\n` bytes in `bytes`: a branch-free count the compiler vectorises.
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

    use csv_core::{ReadRecordResult, Reader, ReaderBuilder};

    /// The reader this one replaced (`csv-core` with weir's settings and its own line
    /// count): the records and lines it gave are the reference.
    struct Old<R> {
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

    impl<R: BufRead> Old<R> {
        fn new(input: R, delimiter: u8) -> Self {
            Old {
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
        fn read(&mut self) -> std::io::Result<bool> {
            let mut out_len = 0;
            let mut fields = 0;
            let mut started = false;
            loop {
                let input = self.input.fill_buf()?;
                let (result, nin, nout, nend) = self.core.read_record(
                    input,
                    &mut self.out[out_len..],
                    &mut self.ends[fields..],
                );
                let consumed = &input[..nin];
                if !started
                    && let Some(first) = consumed.iter().position(|&c| c != b'\n' && c != b'\r')
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

        fn len(&self) -> usize {
            self.fields
        }

        /// Field `i` of the current record.
        fn get(&self, i: usize) -> Option<&[u8]> {
            if i >= self.fields {
                return None;
            }
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            self.out.get(start..self.ends[i])
        }

        /// The 1-based line the current record starts on.
        fn line(&self) -> u64 {
            self.record_line
        }
    }

    fn reference(data: &[u8]) -> Vec<(u64, Vec<String>)> {
        let mut r = Old::new(data, b',');
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
    fn records_are_csv_cores() {
        for data in [
            &b"a,b\nc,d"[..],
            b"a,b\n",
            b"a,\n,\n,,",
            b"a,",
            b"\"ab\"cd,e\n\"x\"\"\"y,\"\"\n",
            b"\"a,b\",\"c\nd\",\"e\r\nf\"\rg,h\r\n",
            b"a\"b,c\"d\n\"unclosed,\nx",
            b"\"q\"\"\"",
            b"\"\"",
            b"\n\n\r\r\n",
            b"",
            b"one long field without line end",
            b"\"a\"\"b\"\"c\"\"\"tail\"x,y\n",
            b"12345678,123456789,1234567890123456789\n\"12345678\",x\r\n",
        ] {
            assert_eq!(
                lines(data),
                reference(data),
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[test]
    fn records_across_chunks_are_whole() {
        // Records with quoted newlines and CR-only line ends across chunk boundaries.
        let mut data = Vec::new();
        for i in 0..100_000 {
            match i % 4 {
                0 => data.extend_from_slice(format!("{i},\"multi\nline {i}\",x\n").as_bytes()),
                1 => data.extend_from_slice(format!("{i},\"q\"\"{i}\",y\r").as_bytes()),
                2 => data.extend_from_slice(format!("{i},plain,z\r\n").as_bytes()),
                _ => data.extend_from_slice(format!("\n{i},\"é{i}\"end,w\n").as_bytes()),
            }
        }
        assert_eq!(lines(&data), reference(&data));
    }

    #[test]
    fn long_records_grow_the_buffers() {
        let wide = vec!["v"; 1000].join(",");
        let long = "x".repeat(3_000_000);
        let data = format!("{wide}\n{long}\n");
        let got = lines(data.as_bytes());
        assert_eq!(got[0].1.len(), 1000);
        assert_eq!(got[1].0, 2);
        assert!(got[1].1 == [long], "the long field survives");
    }

    #[test]
    fn fields_of_invalid_utf8_are_checked_one_by_one() {
        let mut r = Records::new(&b"ok,\xff bad\n"[..], b',');
        assert!(r.read().unwrap_or(false));
        assert_eq!(r.get_str(0), Ok("ok"));
        assert!(r.get_str(1).is_err());
        assert_eq!(r.get_str(2), Ok(""));
    }
}
