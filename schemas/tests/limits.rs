//! Hostile inputs end as errors that name the limit, with bounded work: compression
//! bombs, endless lines, endless JSON records; and a very wide file still converts.

mod common;

use std::io::Write;

use common::{options, run};
use weir_schemas::{ConvertOptions, Limits};

/// `rows` copies of a small CSV row behind a header, gzip- or zstd-compressed.
fn bomb(zstd: bool, rows: usize) -> Vec<u8> {
    let row = b"1,aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n";
    if zstd {
        let mut e = zstd::Encoder::new(Vec::new(), 19).expect("a zstd encoder");
        e.write_all(b"id,text\n").unwrap();
        for _ in 0..rows {
            e.write_all(row).unwrap();
        }
        e.finish().expect("zstd finishes")
    } else {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(b"id,text\n").unwrap();
        for _ in 0..rows {
            e.write_all(row).unwrap();
        }
        e.finish().expect("gzip finishes")
    }
}

/// The default limits with records of at most 1 MiB.
fn small_records() -> Limits {
    Limits {
        max_record_bytes: 1 << 20,
        ..Limits::default()
    }
}

#[test]
fn compression_bombs_fail_naming_the_limit() {
    // About 110 MB of text each, compressed far beyond 250x.
    for (zstd, name) in [(false, "bomb.csv.gz"), (true, "bomb.csv.zst")] {
        let bytes = bomb(zstd, 2_000_000);
        let ratio = 112_000_000 / bytes.len();
        assert!(ratio > 250, "{name}: only {ratio}x, not a bomb");
        let err = run(name, &bytes, &options(name))
            .err()
            .map(|e| e.to_string());
        let msg = err.unwrap_or_default();
        assert!(
            msg.contains("limit:")
                && msg.contains("(max_inflation, raise it with WEIR_MAX_INFLATION)")
                && msg.contains(name),
            "{name}: {msg}"
        );
        // The same file converts when the limit allows it.
        let opts = ConvertOptions {
            limits: Limits {
                max_inflation: 100_000,
                ..Limits::default()
            },
            ..options(name)
        };
        let r = run(name, &bytes, &opts).expect("converts under a higher limit");
        assert_eq!(r.converted.statistics.rows, 2_000_000);
    }
}

#[test]
fn an_endless_line_fails_naming_the_limit() {
    let mut csv = b"id,text\n1,".to_vec();
    csv.extend(std::iter::repeat_n(b'x', 3 << 20));
    csv.extend_from_slice(b"\n2,ok\n");
    let opts = ConvertOptions {
        limits: small_records(),
        ..options("long.csv")
    };
    let msg = run("long.csv", &csv, &opts)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        msg.starts_with("long.csv: line 2")
            && msg.contains("limit: a record longer than 1048576 bytes (max_record_bytes, raise it with WEIR_MAX_RECORD_BYTES)"),
        "{msg}"
    );
    // A quote that never closes runs over many lines: the same limit.
    let mut csv = b"id,text\n1,\"open\n".to_vec();
    for _ in 0..100_000 {
        csv.extend_from_slice(b"2,still inside the quote\n");
    }
    let msg = run(
        "quote.csv",
        &csv,
        &ConvertOptions {
            limits: small_records(),
            ..options("quote.csv")
        },
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(msg.contains("limit: a record longer than"), "{msg}");
    // Under the default limit (64 MiB) the 3 MiB line is a value like any other.
    let mut csv = b"id,text\n1,".to_vec();
    csv.extend(std::iter::repeat_n(b'x', 3 << 20));
    csv.extend_from_slice(b"\n2,ok\n");
    let r = run("long.csv", &csv, &options("long.csv")).expect("converts");
    assert_eq!(r.converted.statistics.rows, 2);
}

#[test]
fn an_endless_json_record_fails_naming_the_limit() {
    let mut json = b"{\"a\": 1}\n{\"a\": \"".to_vec();
    json.extend(std::iter::repeat_n(b'y', 3 << 20));
    json.extend_from_slice(b"\"}\n");
    let opts = ConvertOptions {
        limits: small_records(),
        ..options("long.ndjson")
    };
    let msg = run("long.ndjson", &json, &opts)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        msg.starts_with("long.ndjson: line 2")
            && msg.contains("limit: a JSON record longer than 1048576 bytes"),
        "{msg}"
    );
}

#[test]
fn ten_thousand_columns_convert() {
    let header: Vec<String> = (0..10_000).map(|i| format!("c{i}")).collect();
    let mut csv = header.join(",");
    csv.push('\n');
    for r in 0..3 {
        let row: Vec<String> = (0..10_000).map(|i| (i * r).to_string()).collect();
        csv.push_str(&row.join(","));
        csv.push('\n');
    }
    let r = run("wide.csv", csv.as_bytes(), &options("wide.csv")).expect("converts");
    assert_eq!(r.converted.schema.fields.len(), 10_000);
    assert_eq!(r.converted.statistics.rows, 3);
    assert_eq!(r.converted.schema.fields[9_999].data_type, "Int64");
}
