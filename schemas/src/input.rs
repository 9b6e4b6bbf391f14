//! The byte stream under the text readers: the local file, a byte counter that reports
//! progress, streaming gzip/zstd decompression and the UTF-8 BOM.

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

/// Opens `path` as decompressed text with the BOM skipped. Each pass over the file
/// (inference, a restart after widening) opens it anew, so progress counts per pass.
pub fn open_text<'a>(
    path: &Path,
    file: &str,
    compression: Compression,
    encoding: &'static encoding_rs::Encoding,
    progress: &'a mut dyn FnMut(u64),
) -> Result<Box<dyn BufRead + 'a>, ConvertError> {
    // TODO(encoding): transcode to UTF-8 while streaming.
    let _ = encoding;
    let raw = File::open(path).map_err(|e| ConvertError::io(file, e))?;
    let counting = Counting {
        inner: raw,
        read: 0,
        reported: 0,
        progress,
    };
    let mut reader: Box<dyn BufRead + 'a> = match compression {
        Compression::None => Box::new(BufReader::with_capacity(256 << 10, counting)),
        Compression::Gzip => Box::new(BufReader::with_capacity(
            256 << 10,
            // Multi-member: `cat a.gz b.gz` is a valid gzip file.
            flate2::read::MultiGzDecoder::new(BufReader::new(counting)),
        )),
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(counting)
                .map_err(|e| ConvertError::from_read(file, None, e))?;
            Box::new(BufReader::with_capacity(256 << 10, decoder))
        }
    };
    let head = reader
        .fill_buf()
        .map_err(|e| ConvertError::from_read(file, Some(1), e))?;
    if head.starts_with(b"\xEF\xBB\xBF") {
        reader.consume(3);
    }
    Ok(reader)
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
