//! Page sizes a Parquet file claims, read before any page is decoded: the reader
//! allocates a page's claimed uncompressed size up front (and brotli a buffer of it),
//! so a page header of a few bytes could ask for gigabytes. Found by fuzzing:
//! parquet-testing's `large_string_map.brotli.parquet` (4 KB) took 1 GiB.
//!
//! The parquet crate keeps its page header type private, so this reads the few fields
//! it needs from the Thrift compact encoding itself: `PageHeader` fields 2
//! (`uncompressed_page_size`) and 3 (`compressed_page_size`), skipping the rest. A
//! header that does not fit in what is left of its column chunk is refused (the
//! reader spent minutes skipping through one, found by fuzzing); one longer than
//! 64 KB is left unchecked.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use parquet::file::metadata::ParquetMetaData;

use crate::ConvertError;

/// The largest page header read (statistics can make them long; longer ones are
/// left unchecked rather than refused).
const MAX_HEADER: usize = 64 << 10;

/// Refuses the file when a page claims more than `limit` bytes uncompressed.
pub(crate) fn check(
    file: &mut File,
    name: &str,
    metadata: &ParquetMetaData,
    limit: usize,
) -> Result<(), ConvertError> {
    let mut header = vec![0u8; MAX_HEADER];
    for group in metadata.row_groups() {
        for column in group.columns() {
            let start = match column.dictionary_page_offset() {
                Some(d) if d > 0 => d,
                _ => column.data_page_offset(),
            };
            let (Ok(mut pos), Ok(len)) = (
                u64::try_from(start),
                u64::try_from(column.compressed_size()),
            ) else {
                continue;
            };
            let end = pos.saturating_add(len);
            while pos < end {
                if file.seek(SeekFrom::Start(pos)).is_err() {
                    break;
                }
                let rest = usize::try_from(end - pos).unwrap_or(usize::MAX);
                let n = read_up_to(file, &mut header[..rest.min(MAX_HEADER)]);
                let Some((uncompressed, compressed, used)) = page_sizes(&header[..n]) else {
                    if n < MAX_HEADER {
                        // The header runs past its column chunk (or the file): the
                        // reader would skip through it a few KB at a time, for minutes
                        // when a length in it claims gigabytes (found by fuzzing).
                        return Err(ConvertError::malformed(
                            name,
                            None,
                            None,
                            format!(
                                "a page header of column {} at byte {pos} does not fit in its column chunk: a corrupt file",
                                column.column_path()
                            ),
                        ));
                    }
                    break;
                };
                if uncompressed > limit as u64 {
                    return Err(ConvertError::unsupported(
                        name,
                        format!(
                            "limit: a page of column {} claims {uncompressed} bytes uncompressed, more than {limit} ({})",
                            column.column_path(),
                            crate::limits::RECORD
                        ),
                    ));
                }
                pos = pos.saturating_add(used as u64).saturating_add(compressed);
            }
        }
    }
    Ok(())
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n
}

/// (uncompressed size, compressed size, header length) of the page header at the
/// start of `b`; `None` when it is not a readable header.
fn page_sizes(b: &[u8]) -> Option<(u64, u64, usize)> {
    let mut r = Compact { b, pos: 0 };
    let (mut uncompressed, mut compressed) = (None, None);
    let mut last = 0i16;
    loop {
        let byte = r.byte()?;
        if byte == 0 {
            break;
        }
        let kind = byte & 0x0f;
        let delta = i16::from(byte >> 4);
        let id = if delta == 0 {
            r.zigzag()? as i16
        } else {
            last.checked_add(delta)?
        };
        last = id;
        match (id, kind) {
            (2, 5) => uncompressed = u64::try_from(r.zigzag()?).ok(),
            (3, 5) => compressed = u64::try_from(r.zigzag()?).ok(),
            _ => r.skip(kind, 0)?,
        }
    }
    Some((uncompressed?, compressed?, r.pos))
}

/// A cursor over Thrift compact-protocol bytes.
struct Compact<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Compact<'_> {
    fn byte(&mut self) -> Option<u8> {
        let v = *self.b.get(self.pos)?;
        self.pos += 1;
        Some(v)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn zigzag(&mut self) -> Option<i64> {
        let v = self.varint()?;
        Some((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn take(&mut self, n: u64) -> Option<()> {
        let end = self.pos.checked_add(usize::try_from(n).ok()?)?;
        (end <= self.b.len()).then(|| self.pos = end)
    }

    /// Skips one value of compact type `kind` (nesting bounded: a hostile header
    /// cannot recurse without end).
    fn skip(&mut self, kind: u8, depth: u32) -> Option<()> {
        if depth > 32 {
            return None;
        }
        match kind {
            1 | 2 => Some(()),
            3 => self.take(1),
            4..=6 => self.varint().map(|_| ()),
            7 => self.take(8),
            8 => {
                let n = self.varint()?;
                self.take(n)
            }
            9 | 10 => {
                let head = self.byte()?;
                let n = match head >> 4 {
                    15 => self.varint()?,
                    n => u64::from(n),
                };
                let elem = head & 0x0f;
                for _ in 0..n {
                    // A bool inside a list takes a byte.
                    if matches!(elem, 1 | 2) {
                        self.take(1)?;
                    } else {
                        self.skip(elem, depth + 1)?;
                    }
                }
                Some(())
            }
            11 => {
                let n = self.varint()?;
                if n == 0 {
                    return Some(());
                }
                let kv = self.byte()?;
                for _ in 0..n {
                    self.skip(kv >> 4, depth + 1)?;
                    self.skip(kv & 0x0f, depth + 1)?;
                }
                Some(())
            }
            12 => {
                let mut last = 0i16;
                loop {
                    let byte = self.byte()?;
                    if byte == 0 {
                        return Some(());
                    }
                    let delta = i16::from(byte >> 4);
                    last = if delta == 0 {
                        self.zigzag()? as i16
                    } else {
                        last.checked_add(delta)?
                    };
                    self.skip(byte & 0x0f, depth + 1)?;
                }
            }
            _ => None,
        }
    }
}
