//! Format detection. The content decides (magic numbers, the first non-blank character,
//! the delimiter that splits the sampled lines consistently); the producer's declared
//! format, the content type and the file extension only break ties the content leaves
//! open: which delimiter when several fit, and comma or tab for a one-column file.
//! The text encoding is decided on the decompressed sample first (`encoding`), and the
//! format and delimiter on that sample transcoded to UTF-8.

use std::io::Read;

use weir_events::{Compression, Format};

use crate::ConvertError;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const PARQUET_MAGIC: &[u8] = b"PAR1";
/// At most this much decompressed text is looked at to decide.
const SNIFF_TEXT: usize = 1 << 20;
/// Lines compared for delimiter consistency.
const SNIFF_RECORDS: usize = 200;
const DELIMITERS: [u8; 4] = [b',', b'\t', b';', b'|'];

/// What sniffing found; `delimiter` is set for CSV and TSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sniffed {
    pub format: Format,
    pub compression: Compression,
    pub delimiter: Option<u8>,
    /// The text encoding (UTF-8 for Parquet).
    pub encoding: &'static encoding_rs::Encoding,
    /// The sample was all ASCII and not the whole file: `encoding` is UTF-8 until
    /// `encoding::look_further` has read on.
    pub encoding_open: bool,
}

/// Detects format and compression from the first bytes of a file (`head`, raw, maybe
/// compressed). Content wins over `declared`, `content_type` and the extension.
pub fn sniff(
    head: &[u8],
    filename: &str,
    declared: Option<Format>,
    content_type: Option<&str>,
) -> Result<(Format, Compression), ConvertError> {
    sniff_full(head, filename, declared, content_type, None).map(|s| (s.format, s.compression))
}

pub(crate) fn sniff_full(
    head: &[u8],
    filename: &str,
    declared: Option<Format>,
    content_type: Option<&str>,
    forced: Option<&'static encoding_rs::Encoding>,
) -> Result<Sniffed, ConvertError> {
    let hint = declared
        .or_else(|| content_type.and_then(format_of_content_type))
        .or_else(|| format_of_extension(filename));
    if head.starts_with(PARQUET_MAGIC) {
        return Ok(Sniffed {
            format: Format::Parquet,
            compression: Compression::None,
            delimiter: None,
            encoding: encoding_rs::UTF_8,
            encoding_open: false,
        });
    }
    let (compression, text) = if head.starts_with(GZIP_MAGIC) {
        let partial = decompress_head(flate2::read::MultiGzDecoder::new(head), filename)?;
        (Compression::Gzip, partial)
    } else if head.starts_with(ZSTD_MAGIC) {
        let decoder = zstd::stream::read::Decoder::new(head)
            .map_err(|e| ConvertError::malformed(filename, None, None, format!("zstd: {e}")))?;
        (Compression::Zstd, decompress_head(decoder, filename)?)
    } else {
        (Compression::None, Vec::new())
    };
    // A compressed head is cut too when the raw head was.
    let raw_complete = head.len() < crate::HEAD_BYTES;
    let (sample, complete) = match compression {
        Compression::None => (head, raw_complete),
        _ => (&text[..], raw_complete && text.len() < SNIFF_TEXT),
    };
    if sample.starts_with(PARQUET_MAGIC) {
        return Err(ConvertError::unsupported(
            filename,
            "compressed Parquet: Parquet compresses its own pages, upload the .parquet file as it is",
        ));
    }
    let decided = crate::encoding::decide(sample, complete, forced, filename)?;
    let (encoding, encoding_open) = (decided.encoding, decided.open);
    let text = &decided.text[..];
    if text.iter().all(u8::is_ascii_whitespace) {
        return Err(ConvertError::malformed(
            filename,
            None,
            None,
            "the file is empty (no header, no data)",
        ));
    }
    let format = match text.iter().find(|c| !c.is_ascii_whitespace()) {
        Some(b'[') => Format::Json,
        Some(b'{') => Format::Ndjson,
        _ => {
            let delimiter = detect_delimiter(text, complete, hint);
            return Ok(Sniffed {
                format: if delimiter == b'\t' {
                    Format::Tsv
                } else {
                    Format::Csv
                },
                compression,
                delimiter: Some(delimiter),
                encoding,
                encoding_open,
            });
        }
    };
    Ok(Sniffed {
        format,
        compression,
        delimiter: None,
        encoding,
        encoding_open,
    })
}

fn decompress_head(mut r: impl Read, filename: &str) -> Result<Vec<u8>, ConvertError> {
    let mut out = vec![0u8; SNIFF_TEXT];
    let mut filled = 0;
    // The head is cut mid-stream, so an error after some output is expected.
    while filled < out.len() {
        match r.read(&mut out[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if filled == 0 => {
                return Err(ConvertError::malformed(
                    filename,
                    None,
                    None,
                    format!("cannot decompress: {e}"),
                ));
            }
            Err(_) => break,
        }
    }
    out.truncate(filled);
    Ok(out)
}

fn format_of_content_type(ct: &str) -> Option<Format> {
    let essence = ct.split(';').next()?.trim().to_ascii_lowercase();
    match essence.as_str() {
        "text/csv" => Some(Format::Csv),
        "text/tab-separated-values" => Some(Format::Tsv),
        "application/x-ndjson" | "application/jsonl" | "application/jsonlines" => {
            Some(Format::Ndjson)
        }
        "application/json" => Some(Format::Json),
        "application/vnd.apache.parquet" | "application/x-parquet" => Some(Format::Parquet),
        _ => None,
    }
}

fn format_of_extension(filename: &str) -> Option<Format> {
    let lower = filename.to_ascii_lowercase();
    let stem = [".gz", ".gzip", ".zst", ".zstd"]
        .iter()
        .find_map(|ext| lower.strip_suffix(ext))
        .unwrap_or(&lower);
    stem.rsplit_once('.')?.1.parse().ok()
}

/// The delimiter among `,` tab `;` `|` that splits the sampled records into the same
/// number (> 1) of fields; the most fields wins, then the hint, then that order. With
/// no consistent candidate, the one whose most common count covers most records.
fn detect_delimiter(text: &[u8], complete: bool, hint: Option<Format>) -> u8 {
    let hinted = if hint == Some(Format::Tsv) {
        b'\t'
    } else {
        b','
    };
    let mut best: Option<(u8, (bool, usize, usize, bool))> = None;
    for d in DELIMITERS {
        let mut records = crate::records::Records::new(text, d);
        let mut counts: Vec<usize> = Vec::new();
        while counts.len() <= SNIFF_RECORDS {
            match records.read() {
                Ok(true) => counts.push(records.len()),
                _ => break,
            }
        }
        if !complete && counts.len() > 1 {
            counts.pop(); // the head may end mid-record
        }
        counts.truncate(SNIFF_RECORDS);
        let Some((mode, hits)) = mode(&counts) else {
            continue;
        };
        if mode < 2 {
            continue;
        }
        // Consistency first, then share of records, then fields, then the hint.
        let consistent = hits == counts.len();
        let score = (
            consistent,
            if consistent {
                usize::MAX
            } else {
                hits * 1000 / counts.len()
            },
            mode,
            d == hinted,
        );
        if best.is_none_or(|(_, b)| score > b) {
            best = Some((d, score));
        }
    }
    best.map_or(hinted, |(d, _)| d)
}

fn mode(counts: &[usize]) -> Option<(usize, usize)> {
    let mut freq = std::collections::BTreeMap::new();
    for &c in counts {
        *freq.entry(c).or_insert(0usize) += 1;
    }
    freq.into_iter().max_by_key(|&(c, n)| (n, c))
}
