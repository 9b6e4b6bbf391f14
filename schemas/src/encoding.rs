//! Which text encoding a file is in, decided from a sample, and the sample as UTF-8 for
//! the rest of sniffing. The streaming side (transcoding the whole file while it is
//! read) is `input::Transcode`.
//!
//! The decision, first rule that applies:
//! 1. an encoding the caller named (a WHATWG label: `latin1`, `utf-16le`, `shift_jis`);
//! 2. a byte order mark: UTF-8, UTF-16LE, UTF-16BE;
//! 3. UTF-16 without a BOM: most code units of a CSV are ASCII, so one byte of each pair
//!    is mostly zero and the other almost never; the guess stands only if the sample
//!    then decodes without a malformed unit and without a NUL character;
//! 4. the sample is valid UTF-8 (a sequence cut by the end of the sample counts as
//!    valid): UTF-8, unless the sample is ASCII with the escape sequences of
//!    ISO-2022-JP (7-bit). A sample that is all ASCII but not the whole file decides nothing
//!    yet: [`look_further`] reads on to the first non-ASCII byte (within
//!    [`LOOK_FURTHER`] bytes) and decides on the text around it;
//! 5. chardetng's guess among the legacy encodings (Windows-1252 for Latin-1, the other
//!    windows-125x, ISO-8859-x, KOI8, Shift_JIS, EUC-JP, ISO-2022-JP, GBK, Big5,
//!    EUC-KR).
//!
//! Names are encoding_rs's, which follow the WHATWG Encoding Standard: `latin1` and
//! `iso-8859-1` are `windows-1252` (its superset), `utf-16` is `UTF-16LE`, `gb2312` is
//! `GBK`.
//!
//! Not text: a NUL byte (for UTF-16, a NUL code unit) in the sample fails the file with
//! the line and byte offset of the first one. Other bytes are left to the readers.
//!
//! Malformed sequences are errors, never replaced: a byte sequence that is not valid in
//! the encoding (an unpaired UTF-16 surrogate, a bad Shift_JIS trail byte, invalid
//! UTF-8) fails the file with its line and byte offset, so a wrong guess or a corrupt
//! file is never registered with U+FFFD where the data was. The way out is to name the
//! encoding; `windows-1252` decodes every byte. UTF-8 itself is checked by the readers
//! (line and column), not here.

use std::borrow::Cow;
use std::io::BufRead;
use std::path::Path;

use encoding_rs::{DecoderResult, Encoding, UTF_8, UTF_16BE, UTF_16LE};
use weir_events::Compression;

use crate::ConvertError;

/// How far past the sniffed head [`look_further`] reads for a first non-ASCII byte in
/// a file whose head is all ASCII (decompressed bytes).
pub(crate) const LOOK_FURTHER: u64 = 16 << 20;
/// The text from the first non-ASCII byte on that decides the encoding.
const WINDOW: usize = 64 << 10;

/// The encoding a WHATWG label names, or an error naming the label. The `replacement`
/// encoding (labels such as `iso-2022-kr`) is refused: it decodes any input to one
/// U+FFFD.
pub(crate) fn for_label(label: &str, file: &str) -> Result<&'static Encoding, ConvertError> {
    match Encoding::for_label(label.trim().as_bytes()) {
        Some(e) if e != encoding_rs::REPLACEMENT => Ok(e),
        _ => Err(ConvertError::unsupported(
            file,
            format!(
                "unknown encoding {label:?}: use a WHATWG label such as utf-8, latin1, windows-1252, utf-16le, shift_jis"
            ),
        )),
    }
}

/// What [`decide`] found in a sample.
pub(crate) struct Decided<'a> {
    pub encoding: &'static Encoding,
    /// The sample as UTF-8, BOM removed (invalid UTF-8 in a UTF-8 sample is kept as it
    /// is: the readers name its line and column).
    pub text: Cow<'a, [u8]>,
    /// The sample is all ASCII, was not the whole file and no encoding was named: UTF-8
    /// for now, to be settled by [`look_further`].
    pub open: bool,
}

/// Decides the encoding of `sample` (the decompressed start of a file; `complete`: the
/// whole file) and transcodes it to UTF-8. `forced` always wins.
pub(crate) fn decide<'a>(
    sample: &'a [u8],
    complete: bool,
    forced: Option<&'static Encoding>,
    file: &str,
) -> Result<Decided<'a>, ConvertError> {
    let (encoding, open) = match forced {
        Some(e) => (e, false),
        None => guess(sample, complete),
    };
    if let Some(at) = first_nul(sample, encoding) {
        let line = line_of(sample, at, encoding);
        return Err(ConvertError::malformed(
            file,
            Some(line),
            None,
            format!(
                "binary content (a NUL {} at byte offset {at}): not text in {}, and not Parquet, gzip or zstd",
                if is_utf16(encoding) {
                    "code unit"
                } else {
                    "byte"
                },
                if forced.is_some() {
                    encoding.name()
                } else {
                    "any encoding weir detects"
                },
            ),
        ));
    }
    let text = if encoding == UTF_8 {
        Cow::Borrowed(sample.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(sample))
    } else {
        Cow::Owned(transcode(sample, complete, encoding, file)?)
    };
    Ok(Decided {
        encoding,
        text,
        open,
    })
}

/// The encoding by rules 2-5 of the module docs, and whether it is still open.
fn guess(sample: &[u8], complete: bool) -> (&'static Encoding, bool) {
    if let Some((e, _)) = Encoding::for_bom(sample) {
        return (e, false);
    }
    // Before the UTF-8 rules: UTF-16 text of ASCII characters is "ASCII" too.
    if let Some(e) = utf16_without_bom(sample, complete) {
        return (e, false);
    }
    if sample.is_ascii() {
        // ISO-2022-JP is 7-bit: its escape sequences are the only sign of it.
        if sample.contains(&0x1B) && legacy(sample, complete) == encoding_rs::ISO_2022_JP {
            return (encoding_rs::ISO_2022_JP, false);
        }
        return (UTF_8, !complete);
    }
    if valid_utf8(sample, complete) {
        return (UTF_8, false);
    }
    (legacy(sample, complete), false)
}

/// Valid UTF-8, allowing a sequence cut by the end of an incomplete sample.
fn valid_utf8(sample: &[u8], complete: bool) -> bool {
    match std::str::from_utf8(sample) {
        Ok(_) => true,
        Err(e) => !complete && e.error_len().is_none(),
    }
}

/// chardetng's guess, UTF-8 excluded (the caller has ruled it out).
fn legacy(sample: &[u8], complete: bool) -> &'static Encoding {
    let mut detector = chardetng::EncodingDetector::new();
    detector.feed(sample, complete);
    detector.guess(None, false)
}

/// UTF-16LE or BE by where the zero bytes are, confirmed by a clean decode.
fn utf16_without_bom(sample: &[u8], complete: bool) -> Option<&'static Encoding> {
    let units = sample.len() / 2;
    if units < 2 {
        return None;
    }
    let (mut even, mut odd) = (0usize, 0usize);
    for pair in sample.chunks_exact(2) {
        even += usize::from(pair[0] == 0);
        odd += usize::from(pair[1] == 0);
    }
    // A quarter of the units in U+0000..U+00FF (ASCII delimiters, digits, newlines),
    // and the other byte of a pair twenty times less often zero.
    let candidate = if odd * 4 >= units && even * 20 <= odd {
        UTF_16LE
    } else if even * 4 >= units && odd * 20 <= even {
        UTF_16BE
    } else {
        return None;
    };
    let mut decoder = candidate.new_decoder_without_bom_handling();
    let mut out = String::with_capacity(decoder.max_utf8_buffer_length(sample.len())?);
    let (result, _) = decoder.decode_to_string_without_replacement(sample, &mut out, complete);
    (result == DecoderResult::InputEmpty && !out.contains('\0')).then_some(candidate)
}

fn is_utf16(e: &'static Encoding) -> bool {
    e == UTF_16LE || e == UTF_16BE
}

/// Byte offset of the first NUL character: a zero code unit in UTF-16, a zero byte in
/// every other encoding weir reads (none uses 0x00 inside a multi-byte sequence).
fn first_nul(sample: &[u8], encoding: &'static Encoding) -> Option<usize> {
    if is_utf16(encoding) {
        sample
            .chunks_exact(2)
            .position(|pair| pair == [0, 0])
            .map(|i| 2 * i)
    } else {
        sample.iter().position(|&b| b == 0)
    }
}

/// The 1-based line of byte offset `at` of `sample`.
fn line_of(sample: &[u8], at: usize, encoding: &'static Encoding) -> u64 {
    let (before, _) = encoding.decode_with_bom_removal(&sample[..at]);
    1 + before.bytes().filter(|&b| b == b'\n').count() as u64
}

/// `sample` as UTF-8 without the BOM; a malformed sequence (not one cut by the end of
/// an incomplete sample) is an error with its line and byte offset.
fn transcode(
    sample: &[u8],
    complete: bool,
    encoding: &'static Encoding,
    file: &str,
) -> Result<Vec<u8>, ConvertError> {
    let mut decoder = encoding.new_decoder_with_bom_removal();
    let capacity = decoder
        .max_utf8_buffer_length_without_replacement(sample.len())
        .unwrap_or(sample.len().saturating_mul(3));
    let mut out = vec![0u8; capacity];
    let (result, read, written) =
        decoder.decode_to_utf8_without_replacement(sample, &mut out, complete);
    match result {
        DecoderResult::InputEmpty => {
            out.truncate(written);
            Ok(out)
        }
        DecoderResult::Malformed(bad, after) => {
            let at = (read - usize::from(bad) - usize::from(after)) as u64;
            let line = 1 + out[..written].iter().filter(|&&b| b == b'\n').count() as u64;
            Err(malformed_sequence(file, line, at, encoding, false))
        }
        // The capacity is the decoder's own bound for the whole sample.
        DecoderResult::OutputFull => Err(ConvertError::malformed(
            file,
            None,
            None,
            format!(
                "{}: the sample did not fit its UTF-8 bound",
                encoding.name()
            ),
        )),
    }
}

/// The error for a byte sequence that is not valid in `encoding`, at byte offset `at`
/// (of the decompressed content when `compressed`).
pub(crate) fn malformed_sequence(
    file: &str,
    line: u64,
    at: u64,
    encoding: &'static Encoding,
    compressed: bool,
) -> ConvertError {
    let reason = malformed_reason(at, None, encoding, compressed);
    ConvertError::malformed(file, Some(line), None, reason)
}

/// The reason of [`malformed_sequence`]; `line` is named in it when the caller's
/// location may be another line (a reader reports the record it was reading).
pub(crate) fn malformed_reason(
    at: u64,
    line: Option<u64>,
    encoding: &'static Encoding,
    compressed: bool,
) -> String {
    format!(
        "not {} text: a malformed byte sequence at byte offset {at}{}{}; name the file's encoding (windows-1252 decodes every byte)",
        encoding.name(),
        if compressed {
            " of the decompressed content"
        } else {
            ""
        },
        line.map(|l| format!(" (line {l})")).unwrap_or_default(),
    )
}

/// Settles an open decision ([`Decided::open`]): reads the file on (decompressed, up
/// to [`LOOK_FURTHER`] bytes) to its first non-ASCII byte and decides between UTF-8
/// and chardetng's guess on the text from the start of that line. A file that stays
/// ASCII that far is UTF-8 (ASCII is a subset of every encoding this can pick, so
/// the choice only matters from the first non-ASCII byte on; one past the bound that
/// is not UTF-8 fails in the reader with its line and column).
pub(crate) fn look_further(
    path: &Path,
    file: &str,
    compression: Compression,
) -> Result<&'static Encoding, ConvertError> {
    let mut progress = |_| {};
    let mut reader =
        crate::input::open_text(path, file, compression, UTF_8, u64::MAX, &mut progress)?;
    let read_err = |e| ConvertError::from_read(file, None, e);
    let mut seen = 0u64;
    let mut window = Vec::new();
    loop {
        let buf = reader.fill_buf().map_err(read_err)?;
        if buf.is_empty() {
            return Ok(UTF_8);
        }
        let n = buf.len();
        if let Some(i) = buf.iter().position(|b| !b.is_ascii()) {
            let floor = i.saturating_sub(WINDOW / 2);
            let start = buf[floor..i]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(floor, |p| floor + p + 1);
            window.extend_from_slice(&buf[start..n.min(start + WINDOW)]);
            reader.consume(n);
            break;
        }
        reader.consume(n);
        seen += n as u64;
        if seen >= LOOK_FURTHER {
            return Ok(UTF_8);
        }
    }
    let mut complete = false;
    while window.len() < WINDOW {
        let buf = reader.fill_buf().map_err(read_err)?;
        if buf.is_empty() {
            complete = true;
            break;
        }
        let take = buf.len().min(WINDOW - window.len());
        window.extend_from_slice(&buf[..take]);
        reader.consume(take);
    }
    // Everything before the first non-ASCII byte is ASCII, so the window starts on a
    // character boundary.
    if valid_utf8(&window, complete) {
        return Ok(UTF_8);
    }
    Ok(legacy(&window, complete))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guessed(sample: &[u8], complete: bool) -> &'static str {
        match decide(sample, complete, None, "f.csv") {
            Ok(d) => d.encoding.name(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn boms() {
        assert_eq!(guessed(b"\xEF\xBB\xBFa,b\n", true), "UTF-8");
        assert_eq!(guessed(b"\xFF\xFEa\0,\0b\0\n\0", true), "UTF-16LE");
        assert_eq!(guessed(b"\xFE\xFF\0a\0,\0b\0\n", true), "UTF-16BE");
    }

    #[test]
    fn utf8_cut_at_the_end_of_a_sample_is_utf8() {
        let text = "name\nMünchen\n€".as_bytes();
        let cut = &text[..text.len() - 1];
        assert_eq!(guessed(cut, false), "UTF-8");
        // The whole file ending mid-sequence is not UTF-8.
        assert_ne!(guessed(cut, true), "UTF-8");
    }

    #[test]
    fn ascii_is_open_until_the_whole_file_is_seen() {
        let d = decide(b"a,b\n1,2\n", false, None, "f.csv").map(|d| (d.encoding, d.open));
        assert_eq!(d.ok(), Some((UTF_8, true)));
        let d = decide(b"a,b\n1,2\n", true, None, "f.csv").map(|d| (d.encoding, d.open));
        assert_eq!(d.ok(), Some((UTF_8, false)));
    }

    #[test]
    fn latin1_and_windows_1252() {
        assert_eq!(guessed(b"city,n\nM\xfcnchen,21\n", true), "windows-1252");
        assert_eq!(
            guessed(
                b"quote\n\x93Hello,\x94 she said\n\x93It\x92s fine\x94\n",
                true
            ),
            "windows-1252"
        );
    }

    #[test]
    fn utf16_without_bom_by_zero_bytes() {
        let le: Vec<u8> = "id,name\r\n1,Zoë\r\n"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let be: Vec<u8> = "id,name\r\n1,Zoë\r\n"
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect();
        assert_eq!(guessed(&le, true), "UTF-16LE");
        assert_eq!(guessed(&be, true), "UTF-16BE");
        // All ASCII characters (so all ASCII bytes).
        let ascii: Vec<u8> = "a,b\r\n1,2\r\n"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert_eq!(guessed(&ascii, true), "UTF-16LE");
        // Cut mid-unit by the end of the sample.
        assert_eq!(guessed(&le[..le.len() - 1], false), "UTF-16LE");
        let d = decide(&le, true, None, "f.csv").map(|d| d.text.into_owned());
        assert_eq!(d.ok(), Some("id,name\r\n1,Zoë\r\n".as_bytes().to_vec()));
    }

    #[test]
    fn nul_bytes_fail_with_line_and_offset() {
        let e = decide(b"a,b\n1,2\n3,\0\x01\x02\n", true, None, "x.csv").err();
        assert_eq!(
            e.map(|e| e.to_string()).as_deref(),
            Some(
                "x.csv: line 3: binary content (a NUL byte at byte offset 10): not text in any encoding weir detects, and not Parquet, gzip or zstd"
            )
        );
        // A UTF-16 file with a NUL character: a zero code unit, at an even offset.
        let mut le: Vec<u8> = "a\nb".encode_utf16().flat_map(u16::to_le_bytes).collect();
        le.extend_from_slice(&[0, 0]);
        let e = decide(&le, true, Some(UTF_16LE), "x.csv").err();
        assert_eq!(
            e.map(|e| e.to_string()).as_deref(),
            Some(
                "x.csv: line 2: binary content (a NUL code unit at byte offset 6): not text in UTF-16LE, and not Parquet, gzip or zstd"
            )
        );
    }

    #[test]
    fn forced_wins_and_malformed_sequences_fail() {
        let d = decide(
            "München".as_bytes(),
            true,
            Some(encoding_rs::WINDOWS_1252),
            "f",
        )
        .map(|d| String::from_utf8_lossy(&d.text).into_owned());
        assert_eq!(d.ok().as_deref(), Some("MÃ¼nchen"));
        // 0x81 0x20 is not Shift_JIS.
        let e = decide(b"a\nb\x81 c", true, Some(encoding_rs::SHIFT_JIS), "f.csv").err();
        assert_eq!(
            e.map(|e| e.to_string()).as_deref(),
            Some(
                "f.csv: line 2: not Shift_JIS text: a malformed byte sequence at byte offset 3; name the file's encoding (windows-1252 decodes every byte)"
            )
        );
    }

    #[test]
    fn labels() {
        assert_eq!(
            for_label(" Latin1 ", "f").ok(),
            Some(encoding_rs::WINDOWS_1252)
        );
        assert_eq!(for_label("utf-16", "f").ok(), Some(UTF_16LE));
        assert!(for_label("iso-2022-kr", "f").is_err());
        assert!(for_label("klingon", "f").is_err());
    }
}
