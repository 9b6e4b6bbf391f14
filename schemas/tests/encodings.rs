//! Text encodings: what is detected, what a named encoding does, and the values read
//! back from the Parquet, on made files and on chardet 5.2.0's test files (fetched by
//! `scripts/setup` into `.tools/testdata/chardet`).

mod common;

use std::path::{Path, PathBuf};

use common::{gzip, options, rows, run, run_file};
use weir_events::{BadRows, Compression, Format};
use weir_schemas::{ConvertError, ConvertOptions};

fn named(filename: &str, encoding: &str) -> ConvertOptions {
    ConvertOptions {
        encoding: Some(encoding.to_owned()),
        ..options(filename)
    }
}

/// Converts `bytes` and compares the encoding, whether it was detected, and the rows
/// read back from the Parquet.
fn check(filename: &str, bytes: &[u8], opts: &ConvertOptions, encoding: &str, expect: &[&str]) {
    let r = match run(filename, bytes, opts) {
        Ok(r) => r,
        Err(e) => panic!("{filename}: {e}"),
    };
    assert_eq!(r.converted.encoding, encoding, "{filename}");
    assert_eq!(
        r.converted.encoding_detected,
        opts.encoding.is_none(),
        "{filename}"
    );
    assert_eq!(rows(&r.batches), expect, "{filename}");
}

fn error(filename: &str, bytes: &[u8], opts: &ConvertOptions) -> String {
    match run(filename, bytes, opts) {
        Ok(r) => panic!("{filename}: converted, {:?}", rows(&r.batches)),
        Err(e) => {
            assert!(e.is_permanent(), "{filename}: {e}");
            e.to_string()
        }
    }
}

fn utf16(text: &str, big_endian: bool, bom: bool) -> Vec<u8> {
    let bom = if bom { Some(0xFEFF) } else { None };
    bom.into_iter()
        .chain(text.encode_utf16())
        .flat_map(|u| {
            if big_endian {
                u.to_be_bytes()
            } else {
                u.to_le_bytes()
            }
        })
        .collect()
}

#[test]
fn latin1() {
    check(
        "cities.csv",
        b"city,n\nM\xfcnchen,21\nK\xf6ln,7\n",
        &options("cities.csv"),
        "windows-1252",
        &["\"München\" | 21", "\"Köln\" | 7"],
    );
}

#[test]
fn windows_1252_smart_quotes() {
    check(
        "quotes.csv",
        b"id,quote\n1,\x93Hello\x94 \x96 it\x92s \x805\n2,\x84Gr\xfc\xdfe\x93\n",
        &options("quotes.csv"),
        "windows-1252",
        &["1 | \"“Hello” – it’s €5\"", "2 | \"„Grüße“\""],
    );
}

#[test]
fn utf16_with_bom() {
    let text = "id,name\r\n1,Zoë\r\n2,東京 😀\r\n";
    let expect = ["1 | \"Zoë\"", "2 | \"東京 😀\""];
    check(
        "le.csv",
        &utf16(text, false, true),
        &options("le.csv"),
        "UTF-16LE",
        &expect,
    );
    check(
        "be.csv",
        &utf16(text, true, true),
        &options("be.csv"),
        "UTF-16BE",
        &expect,
    );
    // TSV and NDJSON too: the sniffing sees the transcoded text.
    let r = run(
        "t.tsv",
        &utf16("a\tb\n1\tx\n", false, true),
        &options("t.tsv"),
    );
    assert_eq!(r.map(|r| r.converted.format).ok(), Some(Format::Tsv));
    check(
        "e.ndjson",
        &utf16("{\"k\":\"Zoë\"}\n{\"k\":\"€\"}\n", true, true),
        &options("e.ndjson"),
        "UTF-16BE",
        &["\"Zoë\"", "\"€\""],
    );
}

#[test]
fn utf16_without_bom() {
    let text = "id,name\r\n1,Zoë\r\n2,Łódź\r\n";
    let expect = ["1 | \"Zoë\"", "2 | \"Łódź\""];
    check(
        "le.csv",
        &utf16(text, false, false),
        &options("le.csv"),
        "UTF-16LE",
        &expect,
    );
    check(
        "be.csv",
        &utf16(text, true, false),
        &options("be.csv"),
        "UTF-16BE",
        &expect,
    );
}

#[test]
fn utf8_with_and_without_bom() {
    let opts = options("bom.csv");
    check(
        "bom.csv",
        "\u{feff}id,name\n1,Zoë\n".as_bytes(),
        &opts,
        "UTF-8",
        &["1 | \"Zoë\""],
    );
    let r = run("bom.csv", "\u{feff}id,name\n1,Zoë\n".as_bytes(), &opts);
    let first = r.ok().map(|r| r.converted.schema.fields[0].name.clone());
    assert_eq!(
        first.as_deref(),
        Some("id"),
        "the BOM is not part of the name"
    );
    check(
        "plain.csv",
        "id,name\n1,Zoë\n".as_bytes(),
        &options("plain.csv"),
        "UTF-8",
        &["1 | \"Zoë\""],
    );
}

#[test]
fn a_named_encoding_wins() {
    // Windows-1251 Cyrillic: chardetng says so; named as latin1 it reads as Latin-1.
    let bytes = b"city\n\xcc\xee\xf1\xea\xe2\xe0\n\xcf\xe5\xf2\xe5\xf0\xe1\xf3\xf0\xe3\n";
    check(
        "ru.csv",
        bytes,
        &options("ru.csv"),
        "windows-1251",
        &["\"Москва\"", "\"Петербург\""],
    );
    check(
        "ru.csv",
        bytes,
        &named("ru.csv", "latin1"),
        "windows-1252",
        &["\"Ìîñêâà\"", "\"Ïåòåðáóðã\""],
    );
    // Valid UTF-8 named as Windows-1252 is read as Windows-1252.
    check(
        "m.csv",
        "city\nMünchen\n".as_bytes(),
        &named("m.csv", "windows-1252"),
        "windows-1252",
        &["\"MÃ¼nchen\""],
    );
    // UTF-16 named, without a BOM.
    check(
        "le.csv",
        &utf16("a,b\n1,ü\n", false, false),
        &named("le.csv", "utf-16le"),
        "UTF-16LE",
        &["1 | \"ü\""],
    );
}

#[test]
fn unknown_encoding_label() {
    assert_eq!(
        error("a.csv", b"a\n1\n", &named("a.csv", "klingon")),
        "a.csv: unsupported: unknown encoding \"klingon\": use a WHATWG label such as utf-8, latin1, windows-1252, utf-16le, shift_jis"
    );
    // The replacement encoding would turn the file into one U+FFFD.
    assert!(error("a.csv", b"a\n1\n", &named("a.csv", "iso-2022-kr")).contains("unknown encoding"));
}

#[test]
fn binary_fails_with_line_and_byte_offset() {
    let e = error(
        "v.csv",
        b"id,v\n1,2\n3,\x00\x01\x02\x03\n",
        &options("v.csv"),
    );
    assert_eq!(
        e,
        "v.csv: line 3: binary content (a NUL byte at byte offset 11): not text in any encoding weir detects, and not Parquet, gzip or zstd"
    );
    // A PNG: its signature holds a CR LF and a LF, so the first NUL is on line 3.
    let png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00";
    let e = error("image.csv", png, &options("image.csv"));
    assert!(
        e.starts_with("image.csv: line 3: binary content (a NUL byte at byte offset 8)"),
        "{e}"
    );
    // Gzip around it changes nothing but the compression.
    let e = error("v.csv.gz", &gzip(b"id\n\x00\n"), &options("v.csv.gz"));
    assert!(
        e.starts_with("v.csv.gz: line 2: binary content (a NUL byte at byte offset 3)"),
        "{e}"
    );
    let Err(ConvertError::Malformed { at, .. }) = run("v.csv", b"a\n\0", &options("v.csv")) else {
        panic!("binary content is Malformed");
    };
    assert_eq!((at.line, at.column), (Some(2), None));
}

#[test]
fn malformed_sequences_fail_with_line_and_byte_offset() {
    // Shift_JIS named; 0x81 0x20 on line 3 is not Shift_JIS. In the sample:
    let bytes = b"id,v\n1,\x82\xa0\n2,\x81\x20\n";
    let e = error("j.csv", bytes, &named("j.csv", "shift_jis"));
    assert_eq!(
        e,
        "j.csv: line 3: not Shift_JIS text: a malformed byte sequence at byte offset 12; name the file's encoding (windows-1252 decodes every byte)"
    );
    // Past the sample, while streaming: the reader names its record, the message the
    // byte's own line.
    let mut long = b"id,v\n".to_vec();
    for i in 0..20_000 {
        long.extend_from_slice(format!("{i},").as_bytes());
        long.extend_from_slice(b"\x82\xa0\n");
    }
    let at = long.len() + 2;
    long.extend_from_slice(b"x,\x81\x20\n");
    let e = error("j.csv", &long, &named("j.csv", "shift_jis"));
    let want =
        format!("not Shift_JIS text: a malformed byte sequence at byte offset {at} (line 20002)");
    assert!(e.contains(&want), "{e}");
    // An unpaired surrogate in UTF-16.
    let mut u = utf16("a\n1\n", false, true);
    u.extend_from_slice(&[0x00, 0xD8, b'2', 0, b'\n', 0]);
    let e = error("u.csv", &u, &options("u.csv"));
    assert!(
        e.starts_with(
            "u.csv: line 3: not UTF-16LE text: a malformed byte sequence at byte offset 10"
        ),
        "{e}"
    );
}

#[test]
fn gzip_latin1() {
    let r = run(
        "cities.csv.gz",
        &gzip(b"city,n\nM\xfcnchen,21\n"),
        &options("cities.csv.gz"),
    );
    let r = match r {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(r.converted.compression, Compression::Gzip);
    assert_eq!(r.converted.encoding, "windows-1252");
    assert_eq!(rows(&r.batches), ["\"München\" | 21"]);
}

/// The first non-ASCII byte far past the sniffed head still decides, compressed or not;
/// a long file is transcoded across many buffers.
#[test]
fn latin1_past_the_head() {
    let mut csv = b"id,city\n".to_vec();
    for i in 0..200_000 {
        csv.extend_from_slice(format!("{i},Berlin\n").as_bytes());
    }
    csv.extend_from_slice(b"200000,M\xfcnchen\n");
    for name in ["late.csv", "late.csv.gz"] {
        let bytes = if name.ends_with(".gz") {
            gzip(&csv)
        } else {
            csv.clone()
        };
        let r = match run(name, &bytes, &options(name)) {
            Ok(r) => r,
            Err(e) => panic!("{name}: {e}"),
        };
        assert_eq!(r.converted.encoding, "windows-1252", "{name}");
        let all = rows(&r.batches);
        assert_eq!(all.len(), 200_001);
        assert_eq!(all[200_000], "200000 | \"München\"");
    }
    // An all-ASCII file is UTF-8.
    let r = run("ascii.csv", &csv[..csv.len() - 17], &options("ascii.csv"));
    assert_eq!(
        r.ok().map(|r| r.converted.encoding).as_deref(),
        Some("UTF-8")
    );
}

#[test]
fn long_utf16_and_windows_1252_files_stream() {
    let mut text = String::from("id,name\n");
    for i in 0..60_000 {
        text.push_str(&format!("{i},Zoë «{i}» €\n"));
    }
    let (w1252, _, lossy) = encoding_rs::WINDOWS_1252.encode(&text);
    assert!(!lossy);
    for (name, bytes, encoding) in [
        ("w.csv", w1252.into_owned(), "windows-1252"),
        ("u.csv", utf16(&text, true, true), "UTF-16BE"),
    ] {
        let r = match run(name, &bytes, &options(name)) {
            Ok(r) => r,
            Err(e) => panic!("{name}: {e}"),
        };
        assert_eq!(r.converted.encoding, encoding);
        let all = rows(&r.batches);
        assert_eq!(all.len(), 60_000, "{name}");
        assert_eq!(all[59_999], "59999 | \"Zoë «59999» €\"", "{name}");
    }
}

const CHARDET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../.tools/testdata/chardet");

/// chardet's folders and the encoding weir must find in each (encoding_rs names: the
/// WHATWG maps ISO-8859-1 to windows-1252, GB2312 to GBK, …). `None`: the folder's
/// files are not text in any encoding weir reads (UTF-32) and must fail as binary.
/// Folders not listed hold encodings encoding_rs lacks (IBM855, Johab, EUC-TW,
/// MacRoman, ISO-2022-KR).
const FOLDERS: &[(&str, Option<&str>)] = &[
    ("ascii", Some("UTF-8")),
    ("utf-8", Some("UTF-8")),
    ("utf-8-sig", Some("UTF-8")),
    ("UTF-16", Some("UTF-16")), // by the name: -le / -be
    ("UTF-16LE", Some("UTF-16LE")),
    ("UTF-16BE", Some("UTF-16BE")),
    ("windows-1252", Some("windows-1252")),
    ("iso-8859-1", Some("windows-1252")),
    ("SHIFT_JIS", Some("Shift_JIS")),
    ("CP932", Some("Shift_JIS")),
    ("EUC-JP", Some("EUC-JP")),
    ("iso-2022-jp", Some("ISO-2022-JP")),
    ("GB2312", Some("GBK")),
    ("Big5", Some("Big5")),
    ("EUC-KR", Some("EUC-KR")),
    ("CP949", Some("EUC-KR")),
    ("KOI8-R", Some("KOI8-R")),
    ("windows-1251-russian", Some("windows-1251")),
    ("windows-1251-bulgarian", Some("windows-1251")),
    ("iso-8859-5-russian", Some("ISO-8859-5")),
    ("iso-8859-5-bulgarian", Some("ISO-8859-5")),
    ("IBM866", Some("IBM866")),
    ("MacCyrillic", Some("x-mac-cyrillic")),
    ("iso-8859-7-greek", Some("ISO-8859-7")),
    ("windows-1255-hebrew", Some("windows-1255")),
    ("windows-1250-czech", Some("windows-1250")),
    ("windows-1250-hungarian", Some("windows-1250")),
    ("windows-1250-polish", Some("windows-1250")),
    ("iso-8859-2-czech", Some("ISO-8859-2")),
    ("iso-8859-2-hungarian", Some("ISO-8859-2")),
    ("iso-8859-2-polish", Some("ISO-8859-2")),
    ("iso-8859-9-turkish", Some("windows-1254")),
    ("windows-1254-turkish", Some("windows-1254")),
    ("TIS-620", Some("windows-874")),
    ("UTF-32", None),
    ("UTF-32LE", None),
    ("UTF-32BE", None),
];

/// Files of the folders above that are not text: weir must refuse them as binary.
const BINARY_FILES: &[&str] = &[
    // 1,070 of its 1,108 bytes are NUL (Mozilla bug 638318's test of exactly that).
    "ascii/_mozilla_bug638318_text.html",
];

/// Files chardetng guesses otherwise, with its guess, or whole folders (`folder/`).
/// Any other miss fails; each of these must convert right with its encoding named.
const KNOWN_MISSES: &[(&str, &str)] = &[
    // 671 bytes of markup with a handful of non-ASCII letters.
    ("windows-1252/_mozilla_bug421271_text.html", "windows-1250"),
    // Hungarian with few ő/ű (the letters where Latin-2 and Latin-1 differ) in much
    // English markup.
    (
        "windows-1250-hungarian/bbc.co.uk.hu.forum.xml",
        "windows-1252",
    ),
    (
        "windows-1250-hungarian/bbc.co.uk.hu.pressreview.xml",
        "windows-1252",
    ),
    ("iso-8859-2-hungarian/auto-apro.hu.xml", "windows-1252"),
    ("iso-8859-2-hungarian/honositomuhely.hu.xml", "windows-1252"),
    // chardetng, like the browsers it was written for, hardly ever says Mac Cyrillic.
    ("MacCyrillic/", "windows-1251, windows-1252 or KOI8-U"),
];

/// Every chardet test file in the folders above converts (bad-row policy `pad`, any
/// delimiter: these are prose and markup read as CSV) with the folder's encoding, and
/// every text value read back is a piece of the file decoded by encoding_rs; the UTF-32
/// files fail as binary with a line and byte offset.
#[test]
fn chardet_test_files() {
    let root = Path::new(CHARDET);
    if !root.is_dir() {
        println!(
            "SKIPPED chardet_test_files: {} is absent; scripts/setup fetches it",
            root.display()
        );
        eprintln!(
            "SKIPPED chardet_test_files: {} is absent; scripts/setup fetches it",
            root.display()
        );
        return;
    }
    let rejects_dir = tempfile::tempdir().expect("a temp dir");
    let mut checked = 0;
    let mut misses: Vec<String> = Vec::new();
    for (folder, expected) in FOLDERS {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(folder))
            .unwrap_or_else(|e| panic!("{folder}: {e}"))
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{folder} is empty");
        for path in files {
            let name = format!(
                "{folder}/{}",
                path.file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
            );
            let opts = ConvertOptions {
                bad_rows: BadRows::Pad,
                rejects: Some(rejects_dir.path().join(format!("{checked}.ndjson"))),
                // Markup and prose, not CSV: read them as CSV whatever they start with.
                declared: Some(Format::Csv),
                ..options(&name)
            };
            checked += 1;
            let binary = BINARY_FILES.contains(&name.as_str());
            let Some(expected) = expected.filter(|_| !binary) else {
                match run_file(&path, &opts) {
                    Ok(_) => panic!("{name}: binary content converted"),
                    Err(e) => assert!(
                        e.to_string().contains("binary content (a NUL"),
                        "{name}: {e}"
                    ),
                }
                println!("binary  {name}");
                continue;
            };
            let expected = match expected {
                "UTF-16" if name.contains("-be") => "UTF-16BE",
                "UTF-16" => "UTF-16LE",
                e => e,
            };
            let r = match run_file(&path, &opts) {
                Ok(r) => r,
                Err(e) => panic!("{name}: {e}"),
            };
            let got = r.converted.encoding.as_str();
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            let decode = |label: &str| {
                let encoding = encoding_rs::Encoding::for_label(label.as_bytes())
                    .unwrap_or_else(|| panic!("{label} is a label"));
                let (text, malformed) = encoding.decode_with_bom_removal(&bytes);
                (!malformed).then(|| text.into_owned())
            };
            let decoded = decode(expected).unwrap_or_else(|| panic!("{name}: not {expected}"));
            // Another name for the same text (KOI8-U for Russian KOI8-R without
            // box-drawing characters, windows-1253 for Greek ISO-8859-7 without the few
            // letters they place apart) reads the same values: as good.
            let same = got == expected || decode(got).as_ref() == Some(&decoded);
            println!("{got:<14}  {name}{}", if same { "" } else { "  (miss)" });
            let r = if same {
                r
            } else {
                misses.push(name.clone());
                let known = KNOWN_MISSES
                    .iter()
                    .any(|(n, _)| *n == name || (n.ends_with('/') && name.starts_with(n)));
                assert!(known, "{name}: {got}, not {expected}");
                // Named, it reads right.
                let opts = ConvertOptions {
                    encoding: Some(expected.to_owned()),
                    ..opts
                };
                match run_file(&path, &opts) {
                    Ok(r) => r,
                    Err(e) => panic!("{name} as {expected}: {e}"),
                }
            };
            let strip = |s: &str| s.replace(['"', '\r', '\n'], "");
            let decoded = strip(&decoded);
            for batch in &r.batches {
                for column in batch.columns() {
                    let Some(strings) = column.as_any().downcast_ref::<arrow::array::StringArray>()
                    else {
                        continue;
                    };
                    for value in strings.iter().flatten() {
                        assert!(
                            decoded.contains(&strip(value)),
                            "{name}: {value:?} is not in the decoded file"
                        );
                    }
                }
            }
        }
    }
    println!(
        "{checked} files, {} guessed otherwise than their folder (known, and right once named)",
        misses.len()
    );
    // A known miss that no longer misses is worth taking off the list.
    for (n, _) in KNOWN_MISSES {
        assert!(
            misses
                .iter()
                .any(|m| m == n || (n.ends_with('/') && m.starts_with(n))),
            "{n} is guessed right now: take it off KNOWN_MISSES"
        );
    }
    assert!(checked >= 300, "{checked} files");
}
