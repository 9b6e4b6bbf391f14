//! The byte stream under the text readers: the local file, a byte counter that reports
//! progress, streaming gzip/zstd decompression, the BOM, and transcoding to UTF-8.
//!
//! UTF-8 input is passed through as it is (the readers check it), so a UTF-8 file pays
//! nothing for encodings. Any other encoding is decoded to UTF-8 while streaming by
//! [`Transcode`], one buffer at a time (bounded memory: two 256 KiB buffers). A byte
//! sequence that is not valid in the encoding is an error naming its line and byte
//! offset, never a U+FFFD: see `encoding` for why.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use weir_events::Compression;

use crate::ConvertError;

/// How often, in bytes read from the file, `progress` hears about it.
const PROGRESS_EVERY: u64 = 1 << 20;

/// Counts bytes read from the file and tells `progress` now and then.
struct Counting<'a, R> {
    inner: R,
    read: u64,
    reported: u64,
    progress: &'a mut dyn FnMut(u64),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if n == 0 || self.read - self.reported >= PROGRESS_EVERY {
            self.reported = self.read;
            (self.progress)(self.read);
        }
        Ok(n)
    }
}

/// Refuses to decompress more than `limit` bytes: a gzip or zstd bomb ends as an error
/// naming the limit instead of filling the disk with its Parquet.
struct Inflation<R> {
    inner: R,
    out: u64,
    limit: u64,
    ratio: u64,
}

impl<R: Read> Read for Inflation<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out += n as u64;
        if self.out > self.limit {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "limit: the file decompresses to more than {} bytes, {}x its compressed size ({}): a compression bomb?",
                    self.limit,
                    self.ratio,
                    crate::limits::INFLATION
                ),
            ));
        }
        Ok(n)
    }
}

/// Output every compressed file may decompress to whatever its ratio.
const INFLATION_FLOOR: u64 = 16 << 20;

/// Opens `path` as decompressed text with the BOM skipped. Each pass over the file
/// (inference, a restart after widening) opens it anew, so progress counts per pass.
pub fn open_text<'a>(
    path: &Path,
    file: &str,
    compression: Compression,
    encoding: &'static encoding_rs::Encoding,
    max_inflation: u64,
    progress: &'a mut dyn FnMut(u64),
) -> Result<Box<dyn BufRead + 'a>, ConvertError> {
    let raw = File::open(path).map_err(|e| ConvertError::io(file, e))?;
    // A buffer no larger than the file: BufReader zeroes its whole buffer on the first
    // read, which cost a small file more than its conversion.
    let size = raw.metadata().map_or(u64::MAX, |m| m.len());
    let capacity = usize::try_from(size.saturating_add(1))
        .unwrap_or(usize::MAX)
        .clamp(8 << 10, 256 << 10);
    let inflation = |inner| Inflation {
        inner,
        out: 0,
        limit: size.saturating_mul(max_inflation).max(INFLATION_FLOOR),
        ratio: max_inflation,
    };
    let counting = Counting {
        inner: raw,
        read: 0,
        reported: 0,
        progress,
    };
    let mut reader: Box<dyn BufRead + 'a> = match compression {
        Compression::None => Box::new(BufReader::with_capacity(capacity, counting)),
        Compression::Gzip => Box::new(BufReader::with_capacity(
            256 << 10,
            // Multi-member: `cat a.gz b.gz` is a valid gzip file.
            inflation(
                Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(counting)))
                    as Box<dyn Read + 'a>,
            ),
        )),
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(counting)
                .map_err(|e| ConvertError::from_read(file, None, e))?;
            Box::new(BufReader::with_capacity(
                256 << 10,
                inflation(Box::new(decoder) as Box<dyn Read + 'a>),
            ))
        }
    };
    if encoding != encoding_rs::UTF_8 {
        // The decoder removes the encoding's own BOM.
        let compressed = compression != Compression::None;
        // Sized like the input buffer (a small file's output is as small).
        let out = if compressed {
            TRANSCODE_BUFFER
        } else {
            capacity
        };
        return Ok(Box::new(Transcode::new(reader, encoding, compressed, out)));
    }
    let head = reader
        .fill_buf()
        .map_err(|e| ConvertError::from_read(file, Some(1), e))?;
    if head.starts_with(b"\xEF\xBB\xBF") {
        reader.consume(3);
    }
    Ok(reader)
}

/// Largest output buffer of [`Transcode`]: as large as the input's, so a refill is one
/// decoder call for single-byte encodings most of the time.
const TRANSCODE_BUFFER: usize = 256 << 10;

/// Decodes `inner` (text in a non-UTF-8 encoding) to UTF-8 as it is read.
struct Transcode<R> {
    inner: R,
    decoder: encoding_rs::Decoder,
    encoding: &'static encoding_rs::Encoding,
    out: Box<[u8]>,
    start: usize,
    end: usize,
    /// Input bytes decoded so far, for the byte offset of a malformed sequence.
    decoded: u64,
    /// Newlines in the output before `out`, for its line.
    lines: u64,
    /// A malformed sequence found after some output: reported once that is read.
    pending: Option<std::io::Error>,
    done: bool,
    compressed: bool,
}

impl<R: BufRead> Transcode<R> {
    /// `out`: the output buffer's size (at least 16 bytes: room for any character).
    fn new(
        inner: R,
        encoding: &'static encoding_rs::Encoding,
        compressed: bool,
        out: usize,
    ) -> Self {
        Transcode {
            inner,
            decoder: encoding.new_decoder_with_bom_removal(),
            encoding,
            out: vec![0; out.clamp(16, TRANSCODE_BUFFER)].into_boxed_slice(),
            start: 0,
            end: 0,
            decoded: 0,
            lines: 0,
            pending: None,
            done: false,
            compressed,
        }
    }

    fn refill(&mut self) -> std::io::Result<()> {
        self.lines += self.out[..self.end].iter().filter(|&&b| b == b'\n').count() as u64;
        self.start = 0;
        self.end = 0;
        // Loop while the decoder holds bytes back without writing (a sequence cut by
        // the end of the inner buffer).
        while self.end == 0 && !self.done {
            let input = self.inner.fill_buf()?;
            let last = input.is_empty();
            let (result, read, written) =
                self.decoder
                    .decode_to_utf8_without_replacement(input, &mut self.out, last);
            self.inner.consume(read);
            self.decoded += read as u64;
            self.end = written;
            match result {
                encoding_rs::DecoderResult::InputEmpty => self.done = last,
                encoding_rs::DecoderResult::OutputFull => {}
                encoding_rs::DecoderResult::Malformed(bad, after) => {
                    let at = self.decoded - u64::from(bad) - u64::from(after);
                    let line = 1
                        + self.lines
                        + self.out[..written].iter().filter(|&&b| b == b'\n').count() as u64;
                    let reason = crate::encoding::malformed_reason(
                        at,
                        Some(line),
                        self.encoding,
                        self.compressed,
                    );
                    self.done = true;
                    let e = std::io::Error::new(std::io::ErrorKind::InvalidData, reason);
                    if written == 0 {
                        return Err(e);
                    }
                    self.pending = Some(e);
                }
            }
        }
        Ok(())
    }
}

impl<R: BufRead> BufRead for Transcode<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.start == self.end {
            if let Some(e) = self.pending.take() {
                return Err(e);
            }
            self.refill()?;
        }
        Ok(&self.out[self.start..self.end])
    }

    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }
}

impl<R: BufRead> Read for Transcode<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// Reads up to `limit` bytes from the start of `path` (raw, not decompressed).
pub fn read_head(path: &Path, file: &str, limit: usize) -> Result<Vec<u8>, ConvertError> {
    let f = File::open(path).map_err(|e| ConvertError::io(file, e))?;
    let mut head = Vec::with_capacity(limit);
    f.take(limit as u64)
        .read_to_end(&mut head)
        .map_err(|e| ConvertError::io(file, e))?;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read};

    use super::Transcode;

    /// Transcodes `bytes` read through an inner buffer of `inner` bytes.
    fn transcode(
        bytes: &[u8],
        encoding: &'static encoding_rs::Encoding,
        inner: usize,
    ) -> std::io::Result<String> {
        let mut t = Transcode::new(
            BufReader::with_capacity(inner, bytes),
            encoding,
            false,
            inner,
        );
        let mut out = String::new();
        t.read_to_string(&mut out)?;
        Ok(out)
    }

    #[test]
    fn sequences_split_across_reads_decode_whole() {
        let text = "id,name\n1,Zoë 😀\n2,«ok»\n".repeat(50);
        let le: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain(text.encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        let sjis = encoding_rs::SHIFT_JIS
            .encode("名前,値\n東京,1\n")
            .0
            .repeat(20);
        for inner in [1, 3, 7, 4096] {
            assert_eq!(
                transcode(&le, encoding_rs::UTF_16LE, inner).ok(),
                Some(text.clone())
            );
            assert_eq!(
                transcode(&sjis, encoding_rs::SHIFT_JIS, inner).ok(),
                Some("名前,値\n東京,1\n".repeat(20))
            );
        }
    }

    #[test]
    fn a_malformed_sequence_is_an_error_after_the_text_before_it() {
        let bytes = b"a,b\n1,\x82\xa0\n2,\x81\x20\n";
        let mut t = Transcode::new(
            BufReader::new(&bytes[..]),
            encoding_rs::SHIFT_JIS,
            false,
            1 << 10,
        );
        let first = t.fill_buf().map(|b| b.to_vec()).ok();
        assert_eq!(first.as_deref(), Some("a,b\n1,あ\n2,".as_bytes()));
        let n = first.map_or(0, |f| f.len());
        t.consume(n);
        assert_eq!(
            t.fill_buf().err().map(|e| e.to_string()).as_deref(),
            Some(
                "not Shift_JIS text: a malformed byte sequence at byte offset 11 (line 3); name the file's encoding (windows-1252 decodes every byte)"
            )
        );
    }
}
