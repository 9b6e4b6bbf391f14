//! The one-parse write of NDJSON and JSON arrays: a parser that knows the inferred
//! shape checks each record against it and appends its values straight to Arrow
//! buffers, in one pass over the bytes.
//!
//! The exact path (`json::write_pass`) parses every record twice: serde checks it
//! against the shape, then arrow-json decodes it. This one accepts only records that
//! the exact path would check as fitting and decode without error, and builds the same
//! values arrow-json builds for them. Anything else — a value that would widen the
//! shape (a new key, `1.5` or `-0` in an integer column, a string in a number column,
//! a value in a column that was null in the whole sample), invalid JSON, a duplicate
//! key, an escaped key, a number near the limits of f64, invalid UTF-8, an unusual
//! separator between records — makes it give up, and the caller runs the exact path on
//! the file from the start. That path widens, or names the line and key of the
//! problem, as it always did. A clean file is parsed once; a file that widens late or
//! is broken costs one extra, partial read.

use std::io::Read;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, ListArray, StringArray};
use arrow::array::{BooleanBufferBuilder, NullBufferBuilder};
use arrow::array::{RecordBatch, StructArray, new_null_array};
use arrow::buffer::{Buffer, OffsetBuffer};
use arrow::datatypes::{DataType, FieldRef, Fields, SchemaRef};

use crate::input::open_text;
use crate::json::Shape;
use crate::sink::Sink;
use crate::{ConvertError, Job};

/// Bytes read from the input at a time. Records are parsed from this buffer in place.
#[cfg(not(test))]
const READ_BYTES: usize = 1 << 20;
/// In tests, a few bytes: every record then crosses the end of the buffer somewhere.
#[cfg(test)]
const READ_BYTES: usize = 7;
/// A batch is also handed on once its records took this many bytes of JSON: the
/// batches queued between the threads are most of the memory, and JSON records are
/// often wider than the rows `batch_rows` was chosen for.
const BATCH_BYTES: usize = 4 << 20;
/// A record still open after this many bytes goes to the exact path, which enforces
/// its own record size limit (64 MiB) with an error naming the line.
const MAX_RECORD_BYTES: usize = 16 << 20;

/// Why parsing stopped.
#[derive(Debug)]
enum Stop {
    /// The buffer ends inside the record: read more, then parse the record again.
    More,
    /// The exact path has to handle this file.
    GiveUp,
}

type P<T> = Result<T, Stop>;

/// Writes `job`'s records with the columns of `top` to a new `sink`. `Ok(None)` means
/// the fast path gave up: the caller discards the sink and runs the exact path. Errors
/// are only the sink's (writing Parquet), which the exact path would meet the same way.
pub(crate) fn write(
    job: &Job<'_>,
    array: bool,
    top: &[(String, Shape)],
    out_schema: &SchemaRef,
    mut sink: Sink,
    progress: &mut dyn FnMut(u64),
) -> Result<Option<Sink>, ConvertError> {
    let Ok(mut reader) = open_text(
        job.input,
        job.file,
        job.compression,
        job.encoding,
        job.opts.limits.max_inflation,
        progress,
    ) else {
        return Ok(None);
    };
    let batch_rows = job.opts.batch_rows.max(1);
    let mut root = Object::new(top);
    let mut buf: Vec<u8> = Vec::with_capacity(READ_BYTES * 2);
    let mut pos = 0;
    let mut eof = false;
    let mut framing = if array {
        Framing::BeforeArray
    } else {
        Framing::Lines
    };
    let mut rows = 0;
    let mut batch_bytes = 0;
    loop {
        // Parse what the buffer holds, record by record.
        loop {
            let mut c = Cursor { b: &buf, i: pos };
            match framing.seek(&mut c, eof) {
                Ok(Some(at)) => {
                    framing = at;
                    pos = c.i;
                }
                Ok(None) => {
                    if rows > 0 {
                        let Some(batch) = root.finish_batch(out_schema) else {
                            return Ok(None);
                        };
                        sink.write(&batch)?;
                    }
                    return Ok(Some(sink));
                }
                Err(Stop::More) if !eof => break,
                Err(_) => return Ok(None),
            }
            match root.record(&mut c) {
                Ok(()) => {
                    batch_bytes += c.i - pos;
                    pos = c.i;
                    framing = framing.after_record();
                    rows += 1;
                    if rows == batch_rows || batch_bytes >= BATCH_BYTES {
                        batch_bytes = 0;
                        let Some(batch) = root.finish_batch(out_schema) else {
                            return Ok(None);
                        };
                        sink.write(&batch)?;
                        rows = 0;
                    }
                }
                // Cut off by the end of the buffer: parse it again after reading more.
                Err(Stop::More) if !eof => {
                    root.truncate(rows);
                    break;
                }
                Err(_) => return Ok(None),
            }
        }
        // Keep the unparsed tail, read more after it.
        buf.drain(..pos);
        pos = 0;
        if buf.len() > MAX_RECORD_BYTES {
            return Ok(None);
        }
        // Straight into the buffer: a read this large bypasses the reader's own buffer,
        // so each byte is copied once.
        match (&mut reader).take(READ_BYTES as u64).read_to_end(&mut buf) {
            Ok(n) if n < READ_BYTES => eof = true,
            Ok(_) => {}
            Err(_) => return Ok(None),
        }
    }
}

/// What is expected at the parse position: records one after another (NDJSON), or
/// the parts of one top-level array around them.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    Lines,
    BeforeArray,
    /// After `[`: a record or `]`.
    ArrayFirst,
    /// After `,` (or `[`): a record.
    ArrayRecord,
    /// After a record: `,` or `]`.
    ArrayNext,
    AfterArray,
}

impl Framing {
    /// Moves `c` over whitespace and separators to the next record's `{`; the state
    /// there, or `None` at a complete end of the input.
    fn seek(mut self, c: &mut Cursor<'_>, eof: bool) -> P<Option<Framing>> {
        loop {
            let b = match c.ws() {
                Err(Stop::More) if eof => {
                    return match self {
                        Framing::Lines | Framing::AfterArray => Ok(None),
                        _ => Err(Stop::GiveUp),
                    };
                }
                Err(e) => return Err(e),
                Ok(b) => b,
            };
            self = match (self, b) {
                (Framing::Lines, b'{') => return Ok(Some(Framing::Lines)),
                (Framing::ArrayFirst | Framing::ArrayRecord, b'{') => {
                    return Ok(Some(Framing::ArrayRecord));
                }
                (Framing::BeforeArray, b'[') => Framing::ArrayFirst,
                (Framing::ArrayFirst | Framing::ArrayNext, b']') => Framing::AfterArray,
                (Framing::ArrayNext, b',') => Framing::ArrayRecord,
                _ => return Err(Stop::GiveUp),
            };
            c.i += 1;
        }
    }

    fn after_record(self) -> Framing {
        match self {
            Framing::Lines => Framing::Lines,
            _ => Framing::ArrayNext,
        }
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    /// Skips JSON whitespace; the next byte, not consumed.
    #[inline]
    fn ws(&mut self) -> P<u8> {
        loop {
            match self.b.get(self.i) {
                None => return Err(Stop::More),
                Some(b' ' | b'\n' | b'\t' | b'\r') => self.i += 1,
                Some(&b) => return Ok(b),
            }
        }
    }

    #[inline]
    fn byte(&self, at: usize) -> P<u8> {
        self.b.get(at).copied().ok_or(Stop::More)
    }

    /// Consumes `lit` (`true`, `false`, `null`), which starts at the cursor.
    #[inline]
    fn literal(&mut self, lit: &[u8]) -> P<()> {
        let end = self.i + lit.len();
        match self.b.get(self.i..end) {
            Some(s) if s == lit => {
                self.i = end;
                Ok(())
            }
            Some(_) => Err(Stop::GiveUp),
            None if self.b.len() - self.i < lit.len() && lit.starts_with(&self.b[self.i..]) => {
                Err(Stop::More)
            }
            None => Err(Stop::GiveUp),
        }
    }

    /// A string starting at the cursor (on its `"`): its bytes without escapes resolved
    /// when it has none (`Ok(Ok(..))`), or the position of its first backslash.
    #[inline]
    fn plain_string(&mut self) -> P<Result<&[u8], usize>> {
        let start = self.i + 1;
        let mut j = string_stop(self.b, start);
        loop {
            let b = self.byte(j)?;
            if b == b'"' {
                self.i = j + 1;
                return Ok(Ok(&self.b[start..j]));
            }
            if b == b'\\' {
                return Ok(Err(j));
            }
            if b < 0x20 {
                // serde refuses a raw control character in a string.
                return Err(Stop::GiveUp);
            }
            j += 1;
        }
    }

    /// Appends the string starting at the cursor to `out`, escapes resolved as serde and
    /// arrow-json resolve them; gives up on a lone surrogate.
    fn string_into(&mut self, out: &mut Vec<u8>) -> P<()> {
        let mut j = match self.plain_string()? {
            Ok(s) => {
                out.extend_from_slice(s);
                return Ok(());
            }
            Err(backslash) => {
                out.extend_from_slice(&self.b[self.i + 1..backslash]);
                backslash
            }
        };
        loop {
            let b = self.byte(j)?;
            match b {
                b'"' => {
                    self.i = j + 1;
                    return Ok(());
                }
                b'\\' => {
                    let e = self.byte(j + 1)?;
                    j += 2;
                    let plain = match e {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 8,
                        b'f' => 12,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            let hi = self.hex4(j)?;
                            j += 4;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                if self.byte(j)? != b'\\' || self.byte(j + 1)? != b'u' {
                                    return Err(Stop::GiveUp);
                                }
                                let lo = self.hex4(j + 2)?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(Stop::GiveUp);
                                }
                                j += 6;
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            let Some(ch) = char::from_u32(code) else {
                                return Err(Stop::GiveUp);
                            };
                            let mut utf8 = [0; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut utf8).as_bytes());
                            continue;
                        }
                        _ => return Err(Stop::GiveUp),
                    };
                    out.push(plain);
                }
                b if b < 0x20 => return Err(Stop::GiveUp),
                b => {
                    out.push(b);
                    j += 1;
                }
            }
        }
    }

    fn hex4(&self, at: usize) -> P<u32> {
        let mut v = 0;
        for k in 0..4 {
            let d = match self.byte(at + k)? {
                c @ b'0'..=b'9' => c - b'0',
                c @ b'a'..=b'f' => c - b'a' + 10,
                c @ b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(Stop::GiveUp),
            };
            v = v * 16 + u32::from(d);
        }
        Ok(v)
    }

    /// A number starting at the cursor, checked against JSON's grammar as serde reads it.
    #[inline]
    fn number(&mut self) -> P<Number> {
        let b = self.b;
        let start = self.i;
        let mut j = start;
        let negative = self.byte(j)? == b'-';
        if negative {
            j += 1;
        }
        let first = self.byte(j)?;
        if !first.is_ascii_digit() {
            return Err(Stop::GiveUp);
        }
        let int_start = j;
        let mut mantissa: u64 = 0;
        let mut overflow = false;
        while let Some(&d) = b.get(j).filter(|d| d.is_ascii_digit()) {
            match mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(u64::from(d - b'0')))
            {
                Some(m) => mantissa = m,
                None => overflow = true,
            }
            j += 1;
        }
        let int_digits = j - int_start;
        if first == b'0' && int_digits > 1 {
            return Err(Stop::GiveUp); // a leading zero is invalid JSON
        }
        let mut frac_digits = 0;
        if self.byte(j)? == b'.' {
            j += 1;
            while let Some(&d) = b.get(j).filter(|d| d.is_ascii_digit()) {
                match mantissa
                    .checked_mul(10)
                    .and_then(|m| m.checked_add(u64::from(d - b'0')))
                {
                    Some(m) => mantissa = m,
                    None => overflow = true,
                }
                j += 1;
                frac_digits += 1;
            }
            if frac_digits == 0 {
                self.byte(j)?;
                return Err(Stop::GiveUp);
            }
        }
        let mut exponent = false;
        if matches!(self.byte(j)?, b'e' | b'E') {
            exponent = true;
            j += 1;
            if matches!(self.byte(j)?, b'+' | b'-') {
                j += 1;
            }
            let digits_start = j;
            while b.get(j).is_some_and(u8::is_ascii_digit) {
                j += 1;
            }
            if j == digits_start {
                self.byte(j)?;
                return Err(Stop::GiveUp);
            }
        }
        // The record goes on after a number: running out here means read more.
        self.byte(j)?;
        self.i = j;
        let text = start..j;
        if frac_digits == 0 && !exponent {
            if overflow {
                return Ok(Number::Other { text });
            }
            // serde reads `-0` as a float, and a positive integer beyond i64 as text.
            let int = if negative {
                match mantissa {
                    0 => None,
                    m if m <= 1 << 63 => Some((m as i64).wrapping_neg()),
                    _ => None,
                }
            } else {
                i64::try_from(mantissa).ok()
            };
            return Ok(match int {
                Some(v) => Number::Int { value: v, text },
                None => Number::Other { text },
            });
        }
        // The exact fast path of decimal parsing: a mantissa below 2^53 divided by a
        // power of ten that is exact in f64 is correctly rounded, as a full parse is.
        let value = if !exponent && !overflow && mantissa < (1 << 53) && frac_digits <= 22 {
            let v = mantissa as f64 / POW10[frac_digits];
            if negative { -v } else { v }
        } else {
            let Some(v) = std::str::from_utf8(&b[text.clone()])
                .ok()
                .and_then(|s| s.parse::<f64>().ok())
            else {
                return Err(Stop::GiveUp);
            };
            // Far from f64's limits, serde and a correctly rounded parse agree that the
            // number is in range; near them, let the exact path decide.
            let zero_text = mantissa == 0 && !overflow;
            if !(v == 0.0 && zero_text || (1e-300..1e300).contains(&v.abs())) {
                return Err(Stop::GiveUp);
            }
            v
        };
        Ok(Number::Float { value, text })
    }
}

/// The first `"`, `\\` or control byte at or after `i` (or `b.len()`), eight bytes at a
/// time.
#[inline]
fn string_stop(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    while let Some(word) = b.get(i..i + 8) {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(word);
        let w = u64::from_le_bytes(bytes);
        // Marks bytes equal to `"` or `\\`, and bytes below 0x20; the lowest mark is
        // exact (a false one can only follow a true one).
        let below = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
        let hit = zero(w ^ (ONES * u64::from(b'"'))) | zero(w ^ (ONES * u64::from(b'\\'))) | below;
        if hit != 0 {
            return i + (hit.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && b[i] != b'"' && b[i] != b'\\' && b[i] >= 0x20 {
        i += 1;
    }
    i
}

const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A JSON number as serde classifies it.
enum Number {
    /// Fits Int64 (serde: `i64` or `u64` ≤ `i64::MAX`, not `-0`).
    Int {
        value: i64,
        text: std::ops::Range<usize>,
    },
    /// A float within f64's comfortable range (serde: `f64`).
    Float {
        value: f64,
        text: std::ops::Range<usize>,
    },
    /// Any other integer: beyond Int64 (serde: text or float), or `-0` (serde: float).
    Other { text: std::ops::Range<usize> },
}

/// One column's values as they are parsed, shaped like its `Shape`.
enum Column {
    /// Null in every sampled record: only `null` fits (written as Utf8).
    Null(usize),
    Bool(BooleanBufferBuilder, NullBufferBuilder),
    Int(Vec<i64>, NullBufferBuilder),
    Float(Vec<f64>, NullBufferBuilder),
    Text(Text),
    List {
        offsets: Vec<i32>,
        nulls: NullBufferBuilder,
        item: Box<Column>,
        field: FieldRef,
    },
    Struct {
        object: Object,
        nulls: NullBufferBuilder,
        fields: Fields,
    },
}

struct Text {
    offsets: Vec<i32>,
    bytes: Vec<u8>,
    nulls: NullBufferBuilder,
}

/// The keys of an object and their columns.
struct Object {
    keys: Vec<Box<[u8]>>,
    columns: Vec<Column>,
    /// The record each key was last seen in, to find duplicates and missing keys.
    seen: Vec<u64>,
    record: u64,
}

impl Object {
    fn new(fields: &[(String, Shape)]) -> Self {
        Object {
            keys: fields.iter().map(|(k, _)| k.as_bytes().into()).collect(),
            columns: fields.iter().map(|(_, s)| Column::new(s)).collect(),
            seen: vec![0; fields.len()],
            record: 0,
        }
    }

    /// Parses one object starting at the cursor (on its `{`).
    fn record(&mut self, c: &mut Cursor<'_>) -> P<()> {
        c.i += 1;
        self.record += 1;
        let mut cursor = 0;
        let mut b = c.ws()?;
        if b != b'}' {
            loop {
                if b != b'"' {
                    return Err(Stop::GiveUp);
                }
                // A key with escapes is compared only by the exact path.
                let Ok(key) = c.plain_string()? else {
                    return Err(Stop::GiveUp);
                };
                let idx = if self.keys.get(cursor).is_some_and(|k| same(k, key)) {
                    cursor
                } else {
                    match self.keys.iter().position(|k| same(k, key)) {
                        Some(i) => i,
                        None => return Err(Stop::GiveUp), // a new key widens the shape
                    }
                };
                if self.seen[idx] == self.record {
                    return Err(Stop::GiveUp); // a duplicate key
                }
                self.seen[idx] = self.record;
                cursor = idx + 1;
                if c.ws()? != b':' {
                    return Err(Stop::GiveUp);
                }
                c.i += 1;
                self.columns[idx].value(c)?;
                match c.ws()? {
                    b',' => {
                        c.i += 1;
                        b = c.ws()?;
                    }
                    b'}' => break,
                    _ => return Err(Stop::GiveUp),
                }
            }
        }
        c.i += 1;
        for (column, seen) in self.columns.iter_mut().zip(&self.seen) {
            if *seen != self.record {
                column.null();
            }
        }
        Ok(())
    }

    fn null(&mut self) {
        for column in &mut self.columns {
            column.null();
        }
    }

    fn truncate(&mut self, rows: usize) {
        for column in &mut self.columns {
            column.truncate(rows);
        }
    }

    fn finish(&mut self) -> Option<Vec<ArrayRef>> {
        self.columns.iter_mut().map(Column::finish).collect()
    }

    /// The rows parsed so far as one batch; `None` when Arrow refuses the data (invalid
    /// UTF-8 in a string): the exact path reports it.
    fn finish_batch(&mut self, schema: &SchemaRef) -> Option<RecordBatch> {
        let columns = self.finish()?;
        RecordBatch::try_new(schema.clone(), columns).ok()
    }
}

/// Key equality without a call to `memcmp`: keys are short, and the call cost more than
/// the comparison.
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

impl Column {
    fn new(shape: &Shape) -> Self {
        match shape {
            Shape::Null => Column::Null(0),
            Shape::Bool => Column::Bool(BooleanBufferBuilder::new(0), NullBufferBuilder::new(0)),
            Shape::Int => Column::Int(Vec::new(), NullBufferBuilder::new(0)),
            Shape::Float => Column::Float(Vec::new(), NullBufferBuilder::new(0)),
            Shape::Utf8 => Column::Text(Text {
                offsets: vec![0],
                bytes: Vec::new(),
                nulls: NullBufferBuilder::new(0),
            }),
            Shape::List(item) => {
                let DataType::List(field) = shape.data_type() else {
                    unreachable!("a list shape has a list type")
                };
                Column::List {
                    offsets: vec![0],
                    nulls: NullBufferBuilder::new(0),
                    item: Box::new(Column::new(item)),
                    field,
                }
            }
            Shape::Object(fields) => {
                let DataType::Struct(arrow_fields) = shape.data_type() else {
                    unreachable!("an object shape has a struct type")
                };
                Column::Struct {
                    object: Object::new(fields),
                    nulls: NullBufferBuilder::new(0),
                    fields: arrow_fields,
                }
            }
        }
    }

    /// Parses one value (after its key's colon) into this column, or gives up when it
    /// does not fit exactly.
    fn value(&mut self, c: &mut Cursor<'_>) -> P<()> {
        let b = c.ws()?;
        if b == b'n' {
            c.literal(b"null")?;
            self.null();
            return Ok(());
        }
        match self {
            Column::Null(_) => Err(Stop::GiveUp),
            Column::Bool(values, nulls) => {
                let v = match b {
                    b't' => c.literal(b"true").map(|()| true)?,
                    b'f' => c.literal(b"false").map(|()| false)?,
                    _ => return Err(Stop::GiveUp),
                };
                values.append(v);
                nulls.append_non_null();
                Ok(())
            }
            Column::Int(values, nulls) => match c.number()? {
                Number::Int { value, .. } => {
                    values.push(value);
                    nulls.append_non_null();
                    Ok(())
                }
                _ => Err(Stop::GiveUp),
            },
            Column::Float(values, nulls) => {
                let v = match c.number()? {
                    Number::Int { value, .. } => value as f64,
                    Number::Float { value, .. } => value,
                    Number::Other { .. } => return Err(Stop::GiveUp),
                };
                values.push(v);
                nulls.append_non_null();
                Ok(())
            }
            Column::Text(t) => {
                match b {
                    b'"' => c.string_into(&mut t.bytes)?,
                    b't' => {
                        c.literal(b"true")?;
                        t.bytes.extend_from_slice(b"true");
                    }
                    b'f' => {
                        c.literal(b"false")?;
                        t.bytes.extend_from_slice(b"false");
                    }
                    b'-' | b'0'..=b'9' => {
                        // arrow-json keeps a number's text as it was written.
                        let text = match c.number()? {
                            Number::Int { text, .. } | Number::Float { text, .. } => text,
                            // Long integers: serde may read them as an out-of-range float.
                            Number::Other { text } if text.len() <= 19 => text,
                            Number::Other { .. } => return Err(Stop::GiveUp),
                        };
                        t.bytes.extend_from_slice(&c.b[text]);
                    }
                    _ => return Err(Stop::GiveUp),
                }
                let Ok(end) = i32::try_from(t.bytes.len()) else {
                    return Err(Stop::GiveUp);
                };
                t.offsets.push(end);
                t.nulls.append_non_null();
                Ok(())
            }
            Column::List {
                offsets,
                nulls,
                item,
                ..
            } => {
                if b != b'[' {
                    return Err(Stop::GiveUp);
                }
                c.i += 1;
                let mut len = 0usize;
                if c.ws()? == b']' {
                    c.i += 1;
                } else {
                    loop {
                        item.value(c)?;
                        len += 1;
                        match c.ws()? {
                            b',' => c.i += 1,
                            b']' => {
                                c.i += 1;
                                break;
                            }
                            _ => return Err(Stop::GiveUp),
                        }
                    }
                }
                let last = offsets.last().copied().unwrap_or(0);
                let Some(end) = i32::try_from(len).ok().and_then(|n| last.checked_add(n)) else {
                    return Err(Stop::GiveUp);
                };
                offsets.push(end);
                nulls.append_non_null();
                Ok(())
            }
            Column::Struct { object, nulls, .. } => {
                if b != b'{' {
                    return Err(Stop::GiveUp);
                }
                object.record(c)?;
                nulls.append_non_null();
                Ok(())
            }
        }
    }

    fn null(&mut self) {
        match self {
            Column::Null(n) => *n += 1,
            Column::Bool(values, nulls) => {
                values.append(false);
                nulls.append_null();
            }
            Column::Int(values, nulls) => {
                values.push(0);
                nulls.append_null();
            }
            Column::Float(values, nulls) => {
                values.push(0.0);
                nulls.append_null();
            }
            Column::Text(t) => {
                let last = t.offsets.last().copied().unwrap_or(0);
                t.offsets.push(last);
                t.nulls.append_null();
            }
            Column::List { offsets, nulls, .. } => {
                let last = offsets.last().copied().unwrap_or(0);
                offsets.push(last);
                nulls.append_null();
            }
            Column::Struct { object, nulls, .. } => {
                object.null();
                nulls.append_null();
            }
        }
    }

    /// Drops every row from `rows` on (a record cut off at the end of the buffer).
    fn truncate(&mut self, rows: usize) {
        match self {
            Column::Null(n) => *n = rows,
            Column::Bool(values, nulls) => {
                values.truncate(rows);
                nulls.truncate(rows);
            }
            Column::Int(values, nulls) => {
                values.truncate(rows);
                nulls.truncate(rows);
            }
            Column::Float(values, nulls) => {
                values.truncate(rows);
                nulls.truncate(rows);
            }
            Column::Text(t) => {
                t.offsets.truncate(rows + 1);
                let end = t.offsets.last().copied().unwrap_or(0);
                t.bytes.truncate(usize::try_from(end).unwrap_or(0));
                t.nulls.truncate(rows);
            }
            Column::List {
                offsets,
                nulls,
                item,
                ..
            } => {
                offsets.truncate(rows + 1);
                let end = offsets.last().copied().unwrap_or(0);
                item.truncate(usize::try_from(end).unwrap_or(0));
                nulls.truncate(rows);
            }
            Column::Struct { object, nulls, .. } => {
                object.truncate(rows);
                nulls.truncate(rows);
            }
        }
    }

    /// The column's array; the column starts over, with room for as many rows.
    fn finish(&mut self) -> Option<ArrayRef> {
        Some(match self {
            Column::Null(n) => {
                let array = new_null_array(&DataType::Utf8, *n);
                *n = 0;
                array
            }
            Column::Bool(values, nulls) => {
                let rows = values.len();
                let array = BooleanArray::new(values.finish(), nulls.finish());
                *values = BooleanBufferBuilder::new(rows);
                Arc::new(array)
            }
            Column::Int(values, nulls) => {
                let rows = values.len();
                let taken = std::mem::replace(values, Vec::with_capacity(rows));
                Arc::new(Int64Array::new(taken.into(), nulls.finish()))
            }
            Column::Float(values, nulls) => {
                let rows = values.len();
                let taken = std::mem::replace(values, Vec::with_capacity(rows));
                Arc::new(Float64Array::new(taken.into(), nulls.finish()))
            }
            Column::Text(t) => {
                let rows = t.offsets.len();
                let offsets = std::mem::replace(&mut t.offsets, Vec::with_capacity(rows));
                t.offsets.push(0);
                let len = t.bytes.len();
                let bytes = std::mem::replace(&mut t.bytes, Vec::with_capacity(len));
                let offsets = OffsetBuffer::new(offsets.into());
                Arc::new(
                    StringArray::try_new(offsets, Buffer::from_vec(bytes), t.nulls.finish())
                        .ok()?,
                )
            }
            Column::List {
                offsets,
                nulls,
                item,
                field,
            } => {
                let rows = offsets.len();
                let taken = std::mem::replace(offsets, Vec::with_capacity(rows));
                offsets.push(0);
                let values = item.finish()?;
                Arc::new(
                    ListArray::try_new(
                        field.clone(),
                        OffsetBuffer::new(taken.into()),
                        values,
                        nulls.finish(),
                    )
                    .ok()?,
                )
            }
            Column::Struct {
                object,
                nulls,
                fields,
            } => {
                let children = object.finish()?;
                Arc::new(StructArray::try_new(fields.clone(), children, nulls.finish()).ok()?)
            }
        })
    }
}
