//! Conversion of CSV, TSV, NDJSON and JSON inputs, compressed or not: the inferred
//! schema, statistics, row problems and errors, and the values read back from Parquet.

mod common;

use common::{check, check_with, gzip, options, pad, rows, run, strict_utf8, with_policy, zstd};
use weir_events::{Compression, Format};
use weir_schemas::{ConvertError, ConvertOptions, sniff};

#[test]
fn csv_types() {
    check(
        "types.csv",
        b"flag,n,x,day,naive,zoned,name\n\
          true,1,1.5,2024-01-02,2024-01-02 03:04:05,2024-01-02T03:04:05Z,alpha\n\
          FALSE,-20,2,2023-12-31,2024-01-02T03:04:05.25,2024-01-02T05:04:05+02:00,\n\
          ,,,,,,gamma\n",
        r#"
            csv None rewritten=true
            column flag: Boolean
            column n: Int64
            column x: Float64
            column day: Date32
            column naive: Timestamp(µs)
            column zoned: Timestamp(µs, "UTC")
            column name: Utf8
            rows: 3
            stats flag: nulls=1 min=- max=-
            stats n: nulls=1 min=-20 max=1
            stats x: nulls=1 min=1.5 max=2.0
            stats day: nulls=1 min=2023-12-31 max=2024-01-02
            stats naive: nulls=1 min=2024-01-02T03:04:05 max=2024-01-02T03:04:05.250000
            stats zoned: nulls=1 min=2024-01-02T03:04:05Z max=2024-01-02T03:04:05Z
            stats name: nulls=1 min=- max=-
            | true | 1 | 1.5 | 2024-01-02 | 2024-01-02T03:04:05 | 2024-01-02T03:04:05Z | "alpha"
            | false | -20 | 2.0 | 2023-12-31 | 2024-01-02T03:04:05.250 | 2024-01-02T03:04:05Z | null
            | null | null | null | null | null | null | "gamma"
        "#,
    );
}

#[test]
fn tsv() {
    check(
        "data.tsv",
        b"id\tname\n1\ta,b\n2\tc;d\n",
        r#"
            tsv None rewritten=true
            column id: Int64
            column name: Utf8
            rows: 2
            stats id: nulls=0 min=1 max=2
            | 1 | "a,b"
            | 2 | "c;d"
        "#,
    );
}

#[test]
fn semicolon_and_pipe() {
    check(
        "semi.csv",
        b"id;price;label\n1;3,5;x\n2;4,25;y\n",
        r#"
            csv None rewritten=true
            column id: Int64
            column price: Utf8
            column label: Utf8
            rows: 2
            stats id: nulls=0 min=1 max=2
            | 1 | "3,5" | "x"
            | 2 | "4,25" | "y"
        "#,
    );
    check(
        "pipe.txt",
        b"id|label\n1|a,b\n2|c\n",
        r#"
            csv None rewritten=true
            column id: Int64
            column label: Utf8
            rows: 2
            stats id: nulls=0 min=1 max=2
            | 1 | "a,b"
            | 2 | "c"
        "#,
    );
}

#[test]
fn bom_and_crlf() {
    check(
        "bom.csv",
        b"\xEF\xBB\xBFid,name\r\n1,a\r\n2,b\r\n",
        r#"
            csv None rewritten=true
            column id: Int64
            column name: Utf8
            rows: 2
            stats id: nulls=0 min=1 max=2
            | 1 | "a"
            | 2 | "b"
        "#,
    );
}

#[test]
fn quoted_newlines_keep_line_numbers() {
    // Record 2 spans lines 3-5; the ragged record after it is on line 6.
    check_with(
        "quotes.csv",
        b"id,text\n1,plain\n2,\"three\nline\n\"\"quoted\"\"\"\n3\n4,last\n",
        &pad("quotes.csv"),
        r#"
            csv None rewritten=true
            column id: Int64
            column text: Utf8
            rows: 4
            stats id: nulls=0 min=1 max=4
            stats text: nulls=1 min=- max=-
            problems: 1
            line 6 None: expected 2 fields, found 1: the missing values are null
            | 1 | "plain"
            | 2 | "three\nline\n\"quoted\""
            | 3 | null
            | 4 | "last"
        "#,
    );
    // An error after a multi-line record names the physical line too.
    check_with(
        "quoted-bad.csv",
        b"id,text\n1,\"a\r\nb\r\nc\"\r\n2,caf\xE9\r\n",
        &strict_utf8("quoted-bad.csv"),
        r#"
            error (permanent=true): quoted-bad.csv: line 5, column "text": not valid UTF-8 text at byte offset 26 (bad-row policy `fail`; `--bad-rows reject` registers the good rows and lists the bad ones in a rejects file)
        "#,
    );
}

#[test]
fn leading_zeros_stay_text() {
    check(
        "codes.csv",
        b"zip,fips,bond,n,f\n02134,06037,007,0,0.5\n10001,36061,7,10,1.25\n",
        r#"
            csv None rewritten=true
            column zip: Utf8
            column fips: Utf8
            column bond: Utf8
            column n: Int64
            column f: Float64
            rows: 2
            stats n: nulls=0 min=0 max=10
            stats f: nulls=0 min=0.5 max=1.25
            | "02134" | "06037" | "007" | 0 | 0.5
            | "10001" | "36061" | "7" | 10 | 1.25
        "#,
    );
}

#[test]
fn column_names_are_sanitised() {
    check(
        "names.csv",
        b"Id,Full Name,id,,2nd\n1,a,2,x,y\n",
        r#"
            csv None rewritten=true
            column id: Int64 (from "Id")
            column full_name: Utf8 (from "Full Name")
            column id_2: Int64 (from "id")
            column column_4: Utf8 (from "")
            column _2nd: Utf8 (from "2nd")
            rows: 1
            stats id: nulls=0 min=1 max=1
            stats id_2: nulls=0 min=2 max=2
            | 1 | "a" | 2 | "x" | "y"
        "#,
    );
}

#[test]
fn ragged_rows_are_kept_and_reported() {
    let ragged = b"a,b,c\n1,2,3\n4,5\n6,7,8,9\n10,11,12\n";
    // The default (`reject`): good rows registered, both ragged rows in the rejects file.
    check(
        "ragged.csv",
        ragged,
        r#"
            csv None rewritten=true
            column a: Int64
            column b: Int64
            column c: Int64
            rows: 2
            stats a: nulls=0 min=1 max=10
            stats b: nulls=0 min=2 max=11
            stats c: nulls=0 min=3 max=12
            problems: 2
            line 3 None: expected 3 fields, found 2
            line 4 None: expected 3 fields, found 4
            rejected: 2 of 4
            rejected line 3: "4,5"
            rejected line 4: "6,7,8,9"
            | 1 | 2 | 3
            | 10 | 11 | 12
        "#,
    );
    // `pad`: the short row padded with null, the long row's extra value kept aside.
    check_with(
        "ragged.csv",
        ragged,
        &pad("ragged.csv"),
        r#"
            csv None rewritten=true
            column a: Int64
            column b: Int64
            column c: Int64
            rows: 4
            stats a: nulls=0 min=1 max=10
            stats b: nulls=0 min=2 max=11
            stats c: nulls=1 min=3 max=12
            problems: 2
            line 3 None: expected 3 fields, found 2: the missing values are null
            line 4 None: expected 3 fields, found 4: the extra values are kept in the rejects file
            extra_fields_kept line 4: "6,7,8,9" extra=["9"]
            | 1 | 2 | 3
            | 4 | 5 | null
            | 6 | 7 | 8
            | 10 | 11 | 12
        "#,
    );
    // `fail`: the first ragged row fails the file.
    check_with(
        "ragged.csv",
        ragged,
        &with_policy("ragged.csv", weir_events::BadRows::Fail),
        r#"
            error (permanent=true): ragged.csv: line 3: expected 3 fields, found 2 (bad-row policy `fail`; `--bad-rows reject` registers the good rows and lists the bad ones in a rejects file)
        "#,
    );
    // The other way round: a long row first.
    check(
        "long.csv",
        b"id,v\n1,2\n3\n4,5,6\n",
        r#"
            csv None rewritten=true
            column id: Int64
            column v: Int64
            rows: 1
            stats id: nulls=0 min=1 max=1
            stats v: nulls=0 min=2 max=2
            problems: 2
            line 3 None: expected 2 fields, found 1
            line 4 None: expected 2 fields, found 3
            rejected: 2 of 3
            rejected line 3: "3"
            rejected line 4: "4,5,6"
            | 1 | 2
        "#,
    );
}

/// Too many bad rows fail the file: a count as soon as it is passed, a share at the end.
#[test]
fn max_bad_rows_fails_past_the_limit() {
    let csv = b"a,b\n1,2\n3\n4,5\n6\n7,8\n";
    let limited = |max: &str| ConvertOptions {
        max_bad_rows: Some(max.parse().expect("a limit")),
        ..options("limit.csv")
    };
    assert!(run("limit.csv", csv, &limited("2")).is_ok());
    let msg = run("limit.csv", csv, &limited("1"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        msg,
        "limit.csv: 2 bad rows, over the limit of 1 rows (--max-bad-rows); the first, line 3: expected 2 fields, found 1"
    );
    let msg = run("limit.csv", csv, &limited("30%"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        msg,
        "limit.csv: 2 bad rows of 5 data rows, over the limit of 30% (--max-bad-rows); the first, line 3: expected 2 fields, found 1"
    );
    assert!(run("limit.csv", csv, &limited("0.4")).is_ok());
}

#[test]
fn problems_are_capped_and_counted() {
    let mut csv = b"a,b\n".to_vec();
    for i in 0..15 {
        csv.extend_from_slice(format!("{i}\n").as_bytes());
    }
    let r = run("many.csv", &csv, &options("many.csv")).expect("converts");
    assert_eq!(r.converted.problem_count, 15);
    assert_eq!(r.converted.problems.len(), weir_events::MAX_ROW_PROBLEMS);
    assert_eq!(r.converted.problems[0].line, 2);
    assert_eq!(r.converted.problems[9].line, 11);
}

#[test]
fn invalid_utf8_names_line_and_column() {
    check_with(
        "latin1.csv",
        b"id,name\n1,ok\n2,caf\xE9\n",
        &strict_utf8("latin1.csv"),
        r#"
            error (permanent=true): latin1.csv: line 3, column "name": not valid UTF-8 text at byte offset 18 (bad-row policy `fail`; `--bad-rows reject` registers the good rows and lists the bad ones in a rejects file)
        "#,
    );
}

#[test]
fn header_only_and_empty_files() {
    check(
        "header.csv",
        b"a,b\n",
        r#"
            csv None rewritten=true
            column a: Utf8
            column b: Utf8
            rows: 0
        "#,
    );
    check(
        "empty.csv",
        b"",
        r#"
            error (permanent=true): empty.csv: the file is empty (no header, no data)
        "#,
    );
    check(
        "blank.csv",
        b"\n\n  \n",
        r#"
            error (permanent=true): blank.csv: the file is empty (no header, no data)
        "#,
    );
}

#[test]
fn ndjson_nested_in_first_appearance_order() {
    check(
        "events.ndjson",
        br#"{"zeta": 1, "alpha": {"y": "a", "b": true}, "tags": ["x", "y"]}
{"alpha": {"b": false, "c": 2.5}, "zeta": 2, "middle": null}

{"zeta": 3, "tags": [], "middle": "m", "alpha": null}
"#,
        r#"
            ndjson None rewritten=true
            column zeta: Int64
            column alpha: Struct("y": Utf8, "b": Boolean, "c": Float64)
            column tags: List(Utf8)
            column middle: Utf8
            rows: 3
            stats zeta: nulls=0 min=1 max=3
            stats alpha: nulls=1 min=- max=-
            stats tags: nulls=1 min=- max=-
            stats middle: nulls=2 min=- max=-
            | 1 | {y: "a", b: true, c: null} | ["x", "y"] | null
            | 2 | {y: null, b: false, c: 2.5} | null | null
            | 3 | null | [] | "m"
        "#,
    );
}

#[test]
fn json_array_streams_multiline_records() {
    check(
        "list.json",
        br#"[
  {"id": 1, "name": "a", "score": 1},
  {
    "id": 2,
    "name": "b,]}",
    "score": 2.5
  }
]
"#,
        r#"
            json None rewritten=true
            column id: Int64
            column name: Utf8
            column score: Float64
            rows: 2
            stats id: nulls=0 min=1 max=2
            stats score: nulls=0 min=1.0 max=2.5
            | 1 | "a" | 1.0
            | 2 | "b,]}" | 2.5
        "#,
    );
}

#[test]
fn json_mixed_scalars_widen_to_text() {
    check(
        "mixed.ndjson",
        b"{\"a\": 1, \"b\": true, \"big\": 1}\n{\"a\": \"x\", \"b\": 3, \"big\": 18446744073709551615}\n",
        r#"
            ndjson None rewritten=true
            column a: Utf8
            column b: Utf8
            column big: Utf8
            rows: 2
            | "1" | "true" | "1"
            | "x" | "3" | "18446744073709551615"
        "#,
    );
}

#[test]
fn gzip_csv() {
    check(
        "data.csv.gz",
        &gzip(b"id,name\n1,a\n2,b\n"),
        r#"
            csv Gzip rewritten=true
            column id: Int64
            column name: Utf8
            rows: 2
            stats id: nulls=0 min=1 max=2
            | 1 | "a"
            | 2 | "b"
        "#,
    );
}

#[test]
fn zstd_ndjson() {
    check(
        "data.ndjson.zst",
        &zstd(b"{\"id\": 1}\n{\"id\": 2, \"x\": [1, 2]}\n"),
        r#"
            ndjson Zstd rewritten=true
            column id: Int64
            column x: List(Int64)
            rows: 2
            stats id: nulls=0 min=1 max=2
            stats x: nulls=1 min=- max=-
            | 1 | null
            | 2 | [1, 2]
        "#,
    );
}

#[test]
fn corrupt_gzip_is_a_permanent_error() {
    let mut bytes = gzip(&b"id,name\n1,a\n".repeat(1000));
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 16] {
        *b ^= 0x5a;
    }
    let err = run("bad.csv.gz", &bytes, &options("bad.csv.gz")).err();
    let err = err.expect("a corrupt gzip stream fails");
    assert!(err.is_permanent(), "{err}");
    assert!(err.to_string().contains("bad.csv.gz"), "{err}");
}

#[test]
fn malformed_json_names_the_line() {
    check_with(
        "bad.ndjson",
        b"{\"a\": 1}\n{\"a\": 2}\n{\"a\": 3,, \"b\": 1}\n{\"a\": 4}\n",
        &with_policy("bad.ndjson", weir_events::BadRows::Fail),
        r#"
            error (permanent=true): bad.ndjson: line 3: invalid JSON near character 9: key must be a string
        "#,
    );
    check_with(
        "unclosed.ndjson",
        b"{\"a\": 1}\n{\"a\": 2\n{\"a\": 3}\n",
        &with_policy("unclosed.ndjson", weir_events::BadRows::Fail),
        r#"
            error (permanent=true): unclosed.ndjson: line 3: invalid JSON near character 1: expected `,` or `}` (in the record that starts on line 2)
        "#,
    );
    check_with(
        "scalar.ndjson",
        b"{\"a\": 1}\n42\n",
        &with_policy("scalar.ndjson", weir_events::BadRows::Fail),
        r#"
            error (permanent=true): scalar.ndjson: line 2: a record must be a JSON object, found a number
        "#,
    );
    check_with(
        "conflict.ndjson",
        b"{\"a\": {\"b\": 1}}\n{\"a\": 2}\n",
        &with_policy("conflict.ndjson", weir_events::BadRows::Fail),
        r#"
            error (permanent=true): conflict.ndjson: line 2, column "a": a number where earlier records have an object
        "#,
    );
    check_with(
        "trailing.json",
        b"[{\"a\": 1},\n{\"a\": 2},\n]\n",
        &with_policy("trailing.json", weir_events::BadRows::Fail),
        r#"
            error (permanent=true): trailing.json: line 3: a trailing comma before ']'
        "#,
    );
    // Rejected instead: each bad record is a row of the rejects file, the rest register.
    check(
        "bad.ndjson",
        b"{\"a\": 1}\n{\"a\": 3,, \"b\": 1}\n42\nnot json\n{\"a\": {\"b\": 1}}\n{\"a\": 4}\n",
        r#"
            ndjson None rewritten=true
            column a: Int64
            rows: 2
            stats a: nulls=0 min=1 max=4
            problems: 4
            line 2 None: invalid JSON near character 9: key must be a string
            line 3 None: a record must be a JSON object, found a number
            line 4 None: invalid JSON near character 2: expected ident
            line 5 Some("a"): an object where earlier records have a number
            rejected: 4 of 6
            rejected line 2: "{\"a\": 3,, \"b\": 1}"
            rejected line 3: "42"
            rejected line 4: "not json"
            rejected line 5: "{\"a\": {\"b\": 1}}"
            | 1
            | 4
        "#,
    );
}

/// A CSV whose 20,001st data row breaks the types inferred from the first 10,000.
#[test]
fn csv_widens_after_the_sample() {
    let mut csv = String::from("id,amount,code,when\n");
    for i in 1..=20_000 {
        csv.push_str(&format!("{i},{i},{},2024-01-01\n", i % 7));
    }
    csv.push_str("20001,12.5,A7,2024-01-01 10:00:00\n");
    csv.push_str("20002,3,8,\n");
    let r = run("wide.csv", csv.as_bytes(), &pad("wide.csv")).expect("converts");
    let types: Vec<(&str, &str)> = r
        .converted
        .schema
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.data_type.as_str()))
        .collect();
    assert_eq!(
        types,
        [
            ("id", "Int64"),
            ("amount", "Float64"),
            ("code", "Utf8"),
            ("when", "Timestamp(µs)")
        ]
    );
    let all = rows(&r.batches);
    assert_eq!(all.len(), 20_002);
    assert_eq!(all[0], "1 | 1.0 | \"1\" | 2024-01-01T00:00:00");
    assert_eq!(all[20_000], "20001 | 12.5 | \"A7\" | 2024-01-01T10:00:00");
    assert_eq!(all[20_001], "20002 | 3.0 | \"8\" | null");
    assert_eq!(r.converted.statistics.rows, 20_002);
    let amount = &r.converted.statistics.columns[1];
    assert_eq!(amount.min, Some(weir_events::StatValue::Float(1.0)));
    assert_eq!(amount.max, Some(weir_events::StatValue::Float(20_000.0)));
}

/// The same for NDJSON: a new key and a float after the sample.
#[test]
fn ndjson_widens_after_the_sample() {
    let mut json = String::new();
    for i in 1..=20_000 {
        json.push_str(&format!("{{\"id\": {i}, \"v\": {i}}}\n"));
    }
    json.push_str("{\"id\": 20001, \"v\": 0.5, \"late\": {\"k\": [true]}}\n");
    let opts = ConvertOptions {
        batch_rows: 4096,
        ..pad("wide.ndjson")
    };
    let r = run("wide.ndjson", json.as_bytes(), &opts).expect("converts");
    let types: Vec<&str> = r
        .converted
        .schema
        .fields
        .iter()
        .map(|f| f.data_type.as_str())
        .collect();
    assert_eq!(types[..2], ["Int64", "Float64"]);
    assert!(types[2].starts_with("Struct("), "{}", types[2]);
    let all = rows(&r.batches);
    assert_eq!(all.len(), 20_001);
    assert_eq!(all[19_999], "20000 | 20000.0 | null");
    assert_eq!(all[20_000], "20001 | 0.5 | {k: [true]}");
}

/// 30,000 CSV rows with a multi-line quoted value early on; only the last line does
/// not fit the sampled types. The conversion widens on that line alone: every earlier
/// row is kept and typed as before, the last one keeps its text.
#[test]
fn csv_widens_on_the_last_line_only() {
    let mut csv = String::from("id,n,x,when,note\n1,1,0.5,2024-01-01 00:00:00,\"two\nlines\"\n");
    for i in 2..=30_000 {
        csv.push_str(&format!("{i},{i},{i}.25,2024-01-01 10:00:00,n{i}\n"));
    }
    csv.push_str("30001,n/a,7,2024-01-02,last\n");
    let r = run("last.csv", csv.as_bytes(), &pad("last.csv")).expect("converts");
    let types: Vec<(&str, &str)> = r
        .converted
        .schema
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.data_type.as_str()))
        .collect();
    assert_eq!(
        types,
        [
            ("id", "Int64"),
            ("n", "Utf8"),
            ("x", "Float64"),
            ("when", "Timestamp(µs)"),
            ("note", "Utf8")
        ]
    );
    let all = rows(&r.batches);
    assert_eq!(all.len(), 30_001);
    assert_eq!(
        all[0],
        "1 | \"1\" | 0.5 | 2024-01-01T00:00:00 | \"two\\nlines\""
    );
    assert_eq!(
        all[29_999],
        "30000 | \"30000\" | 30000.25 | 2024-01-01T10:00:00 | \"n30000\""
    );
    assert_eq!(
        all[30_000],
        "30001 | \"n/a\" | 7.0 | 2024-01-02T00:00:00 | \"last\""
    );
    assert_eq!(r.converted.statistics.rows, 30_001);
    // Widening is reported: the value and where it was.
    assert_eq!(r.converted.problem_count, 1);
    assert_eq!(r.converted.problems[0].line, 30_003);
    assert_eq!(r.converted.problems[0].column.as_deref(), Some("n"));
    assert!(
        r.converted.problems[0]
            .message
            .contains("\"n/a\" does not fit Int64")
    );
}

/// A value that does not fit its column's type a million lines in, under each policy:
/// `fail` names the line, column and value; `reject` registers every other row and
/// puts that one in the rejects file; `pad` widens the column and keeps every row.
#[test]
fn a_type_violation_at_line_one_million() {
    let mut csv = String::with_capacity(16 << 20);
    csv.push_str("id,qty\n");
    for i in 1..999_999u64 {
        csv.push_str(&format!("{i},{}\n", i % 97));
    }
    // Line 1,000,000 (the header is line 1).
    csv.push_str("999999,twelve\n");
    csv.push_str("1000000,5\n");
    let bytes = csv.as_bytes();

    let fail = with_policy("big.csv", weir_events::BadRows::Fail);
    let msg = run("big.csv", bytes, &fail)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        msg.starts_with("big.csv: line 1000000, column \"qty\": \"twelve\" is not a valid Int64"),
        "{msg}"
    );

    let r = run("big.csv", bytes, &options("big.csv")).expect("reject converts");
    let c = &r.converted;
    assert_eq!(
        (c.rows_read, c.statistics.rows, c.rejected),
        (1_000_000, 999_999, 1)
    );
    assert_eq!(c.schema.fields[1].data_type, "Int64");
    assert_eq!(r.rejects.len(), 1);
    assert_eq!(r.rejects[0]["line"], 1_000_000);
    assert_eq!(r.rejects[0]["column"], "qty");
    assert_eq!(r.rejects[0]["raw"], "999999,twelve");
    assert_eq!(r.rejects[0]["action"], "rejected");
    let all = rows(&r.batches);
    assert_eq!(all.last().map(String::as_str), Some("1000000 | 5"));

    let r = run("big.csv", bytes, &pad("big.csv")).expect("pad converts");
    let c = &r.converted;
    assert_eq!(
        (c.rows_read, c.statistics.rows, c.rejected),
        (1_000_000, 1_000_000, 0)
    );
    assert_eq!(c.schema.fields[1].data_type, "Utf8");
    assert!(r.rejects.is_empty());
}

/// An invalid value on the last line of a long CSV fails the file naming that line
/// (counted across the quoted newline) and the column.
#[test]
fn csv_error_on_the_last_line_names_line_and_field() {
    let mut csv = b"id,name\n1,\"a\nb\"\n".to_vec();
    for i in 2..=30_000 {
        csv.extend_from_slice(format!("{i},n{i}\n").as_bytes());
    }
    csv.extend_from_slice(b"30001,caf\xE9\n");
    let err = run("bad-last.csv", &csv, &strict_utf8("bad-last.csv")).err();
    let msg = err.map(|e| e.to_string()).unwrap_or_default();
    let offset = csv.len() - 2;
    assert_eq!(
        msg,
        format!(
            "bad-last.csv: line 30003, column \"name\": not valid UTF-8 text at byte offset {offset} (bad-row policy `fail`; `--bad-rows reject` registers the good rows and lists the bad ones in a rejects file)"
        )
    );
    // Rejected instead: every other row registers, the bad one is in the rejects file.
    let opts = ConvertOptions {
        encoding: Some("utf-8".into()),
        ..options("bad-last.csv")
    };
    let r = run("bad-last.csv", &csv, &opts).expect("converts");
    assert_eq!(r.converted.statistics.rows, 30_000);
    assert_eq!((r.converted.rejected, r.converted.rows_read), (1, 30_001));
    assert_eq!(r.rejects[0]["line"], 30003);
    assert_eq!(r.rejects[0]["raw"], "30001,caf\u{FFFD}");
    assert_eq!(r.rejects[0]["raw_hex"], "33303030312c636166e9");
}

/// NDJSON whose last record alone breaks the shape: a conflict or invalid JSON there
/// fails the file naming that line (and the key), after 30,000 records that fit.
#[test]
fn ndjson_error_on_the_last_line_names_line_and_key() {
    let mut json = String::new();
    for i in 1..=30_000 {
        json.push_str(&format!("{{\"id\": {i}, \"v\": {{\"k\": {i}}}}}\n"));
    }
    for (last, want) in [
        (
            "{\"id\": 30001, \"v\": [1]}",
            "late.ndjson: line 30001, column \"v\": an array where earlier records have an object",
        ),
        (
            "{\"id\": 30001, \"v\": {\"k\": 1},}",
            "late.ndjson: line 30001: invalid JSON near character 29: trailing comma",
        ),
    ] {
        let input = format!("{json}{last}\n");
        let opts = with_policy("late.ndjson", weir_events::BadRows::Fail);
        let err = run("late.ndjson", input.as_bytes(), &opts).err();
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(msg, want);
    }
}

/// NDJSON whose last record alone widens: an integer column becomes Float64 and a key
/// appears, and every earlier record keeps its values.
#[test]
fn ndjson_widens_on_the_last_line_only() {
    let mut json = String::new();
    for i in 1..=30_000 {
        json.push_str(&format!(
            "{{\"id\": {i}, \"v\": {i}, \"s\": \"x\\u00e9{i}\"}}\n"
        ));
    }
    json.push_str("{\"id\": 30001, \"v\": -0, \"s\": null, \"new\": true}\n");
    let r = run(
        "wide-last.ndjson",
        json.as_bytes(),
        &pad("wide-last.ndjson"),
    )
    .expect("converts");
    let types: Vec<&str> = r
        .converted
        .schema
        .fields
        .iter()
        .map(|f| f.data_type.as_str())
        .collect();
    assert_eq!(types, ["Int64", "Float64", "Utf8", "Boolean"]);
    let all = rows(&r.batches);
    assert_eq!(all.len(), 30_001);
    assert_eq!(all[29_999], "30000 | 30000.0 | \"xé30000\" | null");
    assert_eq!(all[30_000], "30001 | -0.0 | null | true");
}

#[test]
fn json_shape_conflict_after_the_sample_names_line_and_key() {
    let mut json = String::new();
    for i in 0..50 {
        json.push_str(&format!("{{\"a\": {{\"n\": {i}}}}}\n"));
    }
    json.push_str("{\"a\": [1]}\n");
    let opts = ConvertOptions {
        sample_rows: 10,
        ..with_policy("late.ndjson", weir_events::BadRows::Fail)
    };
    let err = run("late.ndjson", json.as_bytes(), &opts).err();
    let msg = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("line 51"), "{msg}");
    assert!(msg.contains("\"a\""), "{msg}");
}

#[test]
fn sniffing_prefers_content() {
    let s = |head: &[u8], name: &str, declared: Option<Format>, ct: Option<&str>| {
        sniff(head, name, declared, ct).map_err(|e| e.to_string())
    };
    assert_eq!(
        s(b"PAR1....", "x.csv", Some(Format::Csv), None),
        Ok((Format::Parquet, Compression::None))
    );
    assert_eq!(
        s(b"  [{\"a\":1}]", "x.csv", Some(Format::Csv), None),
        Ok((Format::Json, Compression::None))
    );
    assert_eq!(
        s(b"{\"a\":1}\n", "x.json", None, None),
        Ok((Format::Ndjson, Compression::None))
    );
    assert_eq!(
        s(b"a\tb\n1\t2\n", "x.csv", Some(Format::Csv), None),
        Ok((Format::Tsv, Compression::None))
    );
    assert_eq!(
        s(&gzip(b"a;b\n1;2\n"), "x", None, None),
        Ok((Format::Csv, Compression::Gzip))
    );
    assert_eq!(
        s(&zstd(b"{\"a\":1}"), "x", None, None),
        Ok((Format::Ndjson, Compression::Zstd))
    );
    // One column: no delimiter in the content, so the hints decide.
    assert_eq!(
        s(b"name\nx\n", "x.tsv", None, None),
        Ok((Format::Tsv, Compression::None))
    );
    assert_eq!(
        s(b"name\nx\n", "x", None, Some("text/tab-separated-values")),
        Ok((Format::Tsv, Compression::None))
    );
    assert_eq!(
        s(b"name\nx\n", "x.tsv", Some(Format::Csv), None),
        Ok((Format::Csv, Compression::None))
    );
    assert_eq!(
        s(b"name\nx\n", "x", None, None),
        Ok((Format::Csv, Compression::None))
    );
    assert!(s(b"\x00\x01\x02garbage", "x.bin", None, None).is_err());
    assert!(s(&gzip(b"PAR1xxxx"), "x.parquet.gz", None, None).is_err());
}

#[test]
fn missing_input_is_a_transient_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = weir_schemas::convert(
        &dir.path().join("nope.csv"),
        &dir.path().join("out.parquet"),
        &options("nope.csv"),
        &mut |_| {},
    )
    .err();
    assert!(matches!(err, Some(ConvertError::Io { .. })), "{err:?}");
    assert!(!err.is_some_and(|e| e.is_permanent()));
}

#[test]
fn parquet_output_round_trips_unchanged() {
    let csv = b"id,when,score\n1,2024-01-02T03:04:05Z,0.5\n2,,1.5\n";
    let first = run("src.csv", csv, &options("src.csv")).expect("csv converts");
    let dir = tempfile::tempdir().expect("tempdir");
    let written = dir.path().join("src.parquet");
    // Write the batches read back from the first conversion as a Parquet input.
    let file = std::fs::File::create(&written).expect("create");
    let mut w = parquet::arrow::ArrowWriter::try_new(file, first.batches[0].schema(), None)
        .expect("writer");
    for b in &first.batches {
        w.write(b).expect("write");
    }
    w.close().expect("close");
    let again = common::run_file(&written, &options("src.parquet")).expect("parquet converts");
    assert!(!again.converted.rewritten);
    assert_eq!(again.converted.format, Format::Parquet);
    assert_eq!(again.converted.schema, first.converted.schema);
    assert_eq!(again.converted.statistics, first.converted.statistics);
    assert_eq!(rows(&again.batches), rows(&first.batches));
}

#[test]
fn parquet_with_unsafe_names_is_rewritten() {
    use arrow::array::{Float32Array, Int32Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let schema = Arc::new(Schema::new(vec![
        Field::new("Order ID", DataType::Int32, false),
        Field::new("half", DataType::Float16, true),
    ]));
    let batch = arrow::array::RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int32Array::from(vec![3, 1, 2])),
            arrow::compute::cast(
                &Float32Array::from(vec![Some(0.5), None, Some(-2.0)]),
                &DataType::Float16,
            )
            .expect("f32 casts to f16"),
        ],
    )
    .expect("batch");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("in.parquet");
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&path).expect("create"),
        schema,
        None,
    )
    .expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
    let r = common::run_file(&path, &options("in.parquet")).expect("converts");
    assert_eq!(
        common::render(&r, 10).trim(),
        "parquet None rewritten=true\n\
         column order_id: Int32 not null (from \"Order ID\")\n\
         column half: Float32\n\
         rows: 3\n\
         stats order_id: nulls=0 min=1 max=3\n\
         stats half: nulls=1 min=-2.0 max=0.5\n\
         | 3 | 0.5\n\
         | 1 | null\n\
         | 2 | -2.0"
    );
}

#[test]
fn progress_is_reported() {
    let mut csv = String::from("a,b\n");
    for i in 0..300_000 {
        csv.push_str(&format!("{i},{}\n", i * 2));
    }
    let r = run("big.csv", csv.as_bytes(), &options("big.csv")).expect("converts");
    assert!(r.progress_calls >= 2, "{}", r.progress_calls);
    assert_eq!(r.converted.statistics.rows, 300_000);
    assert_eq!(
        r.converted.statistics.columns[1].max,
        Some(weir_events::StatValue::Int(599_998))
    );
}

#[test]
fn declared_format_does_not_override_content() {
    let opts = ConvertOptions {
        declared: Some(Format::Parquet),
        content_type: Some("application/json".into()),
        ..options("upload.bin")
    };
    check_with(
        "upload.bin",
        b"a,b\n1,2\n",
        &opts,
        r#"
            csv None rewritten=true
            column a: Int64
            column b: Int64
            rows: 1
            stats a: nulls=0 min=1 max=1
            stats b: nulls=0 min=2 max=2
            | 1 | 2
        "#,
    );
}

#[test]
fn json_keys_after_empty_records_and_a_zero_sample() {
    let opts = ConvertOptions {
        sample_rows: 0,
        ..pad("sparse.ndjson")
    };
    check_with(
        "sparse.ndjson",
        b"{}\n{}\n{\"a\": 1}\n{\"b\": \"x\", \"a\": 2.5}\n",
        &opts,
        r#"
            ndjson None rewritten=true
            column a: Float64
            column b: Utf8
            rows: 4
            stats a: nulls=2 min=1.0 max=2.5
            stats b: nulls=3 min=- max=-
            | null | null
            | null | null
            | 1.0 | null
            | 2.5 | "x"
        "#,
    );
    check(
        "none.json",
        b"[]",
        r#"
        error (permanent=true): none.json: no columns: the JSON holds no records, or only empty objects
    "#,
    );
}

/// NDJSON after the sample under `reject` and `fail`: a new key or a wider value is a
/// bad row (under `pad` the shape widens, as `ndjson_widens_after_the_sample` shows).
#[test]
fn ndjson_misfits_after_the_sample_follow_the_policy() {
    let mut json = String::new();
    for i in 1..=100 {
        json.push_str(&format!("{{\"id\": {i}, \"v\": {i}}}\n"));
    }
    json.push_str(
        "{\"id\": 101, \"v\": 0.5}\n{\"id\": 102, \"late\": true}\n{\"id\": 103, \"v\": 3}\n",
    );
    let opts = ConvertOptions {
        sample_rows: 10,
        ..options("late.ndjson")
    };
    let r = run("late.ndjson", json.as_bytes(), &opts).expect("converts");
    let c = &r.converted;
    assert_eq!((c.rows_read, c.statistics.rows, c.rejected), (103, 101, 2));
    assert_eq!(r.rejects[0]["line"], 101);
    assert!(
        r.rejects[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("key \"v\": the value does not fit Int64"),
        "{}",
        r.rejects[0]
    );
    assert_eq!(r.rejects[1]["line"], 102);
    assert!(
        r.rejects[1]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("key \"late\" is not among the columns"),
        "{}",
        r.rejects[1]
    );
    let fail = ConvertOptions {
        bad_rows: weir_events::BadRows::Fail,
        ..opts
    };
    let msg = run("late.ndjson", json.as_bytes(), &fail)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(msg.starts_with("late.ndjson: line 101: key \"v\""), "{msg}");
}

/// Column type overrides: the producer's types win over the sample's (leading zeros
/// kept as text, a decimal with its scale); a value that does not fit is a bad row
/// naming line, column and value, under every policy; an unknown column or type fails
/// with what is known.
#[test]
fn column_overrides_win_and_a_misfit_is_a_bad_row() {
    let csv = b"id,zip,amount\n1,02115,12.50\n2,10001,7\n3,99999,abc\n";
    let with = |policy: weir_events::BadRows| ConvertOptions {
        columns: vec![
            ("zip".into(), "utf8".into()),
            ("amount".into(), "decimal(12,2)".into()),
        ],
        ..with_policy("o.csv", policy)
    };
    check_with(
        "o.csv",
        csv,
        &with(weir_events::BadRows::Reject),
        r#"
            csv None rewritten=true
            column id: Int64
            column zip: Utf8
            column amount: Decimal128(12, 2)
            rows: 2
            stats id: nulls=0 min=1 max=2
            problems: 1
            line 4 Some("amount"): "abc" does not fit the column's override Decimal128(12, 2)
            rejected: 1 of 3
            rejected line 4: "3,99999,abc"
            | 1 | "02115" | 12.50
            | 2 | "10001" | 7.00
        "#,
    );
    let msg = run("o.csv", csv, &with(weir_events::BadRows::Fail))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        msg.starts_with("o.csv: line 4, column \"amount\": \"abc\" does not fit"),
        "{msg}"
    );
    // pad does not widen an override: the row is rejected too.
    let r = run("o.csv", csv, &with(weir_events::BadRows::Pad)).expect("converts");
    assert_eq!((r.converted.statistics.rows, r.converted.rejected), (2, 1));
    // 12.345 has more decimals than the scale: not a decimal(12,2), no rounding.
    let r = run(
        "d.csv",
        b"amount\n12.345\n1.5\n",
        &ConvertOptions {
            columns: vec![("amount".into(), "decimal(12,2)".into())],
            ..options("d.csv")
        },
    )
    .expect("converts");
    assert_eq!((r.converted.statistics.rows, r.converted.rejected), (1, 1));
    for (columns, want) in [
        (
            vec![("nope".to_owned(), "utf8".to_owned())],
            "no column \"nope\" (columns: id, zip, amount)",
        ),
        (
            vec![("zip".to_owned(), "money".to_owned())],
            "unknown type \"money\"",
        ),
    ] {
        let opts = ConvertOptions {
            columns,
            ..options("o.csv")
        };
        let msg = run("o.csv", csv, &opts)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains(want), "{msg}");
    }
    let opts = ConvertOptions {
        columns: vec![("a".into(), "utf8".into())],
        ..options("o.ndjson")
    };
    let msg = run("o.ndjson", b"{\"a\": 1}\n", &opts)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(msg.contains("apply to CSV and TSV"), "{msg}");
}

/// Content validators: `conversation-jsonl` checks every line and reports statistics;
/// an invalid line fails the conversion naming line, field and a hint.
#[test]
fn the_conversation_validator_checks_and_counts() {
    let good = concat!(
        "{\"conversation_id\": \"c1\", \"turns\": [{\"role\": \"user\", \"content\": \"hello there\"}, {\"role\": \"assistant\", \"content\": \"hi!\"}]}\n",
        "{\"conversation_id\": 2, \"turns\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\"}, {\"role\": \"user\", \"content\": \"c\"}, {\"role\": \"assistant\", \"content\": \"d\"}]}\n",
    );
    let opts = ConvertOptions {
        validator: Some("conversation-jsonl".into()),
        ..options("chat.jsonl")
    };
    let r = run("chat.jsonl", good.as_bytes(), &opts).expect("valid conversations convert");
    let v: serde_json::Value =
        serde_json::from_str(r.converted.validation.as_deref().expect("a report")).unwrap();
    assert_eq!(v["validator"], "conversation-jsonl");
    assert_eq!(v["statistics"]["conversations"], 2);
    assert_eq!(v["statistics"]["training_pairs"], 3);
    assert_eq!(v["statistics"]["average_turns"], 3.0);
    assert_eq!(v["statistics"]["estimated_tokens"], 5);
    assert_eq!(v["statistics"]["samples"][0]["first_turn"], "hello there");
    let bad = concat!(
        "{\"conversation_id\": \"c1\", \"turns\": []}\n",
        "{\"turns\": [{\"role\": \"user\"}]}\n",
        "not json\n",
    );
    let msg = run("chat.jsonl", bad.as_bytes(), &opts)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        msg.contains("validator conversation-jsonl: 3 of 3 records are invalid"),
        "{msg}"
    );
    assert!(
        msg.contains("line 1, field \"turns\": empty (hint:"),
        "{msg}"
    );
    assert!(
        msg.contains("line 2, field \"conversation_id\": missing"),
        "{msg}"
    );
    assert!(
        msg.contains("line 2, field \"turns[0].content\": missing"),
        "{msg}"
    );
    assert!(msg.contains("line 3: not JSON"), "{msg}");
    let unknown = ConvertOptions {
        validator: Some("nope".into()),
        ..options("chat.jsonl")
    };
    let msg = run("chat.jsonl", good.as_bytes(), &unknown)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(msg.contains("unknown validator \"nope\""), "{msg}");
}

/// Several files of one version: one validator over all of them (statistics over
/// every record, an invalid record named by its file and line), rows in file order.
#[test]
fn several_files_are_validated_together_and_written_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        (path, name.to_owned())
    };
    let turn = |id: &str| {
        format!(
            "{{\"conversation_id\": \"{id}\", \"turns\": [{{\"role\": \"user\", \"content\": \"q {id}\"}}, {{\"role\": \"assistant\", \"content\": \"a\"}}]}}\n"
        )
    };
    let inputs = [
        write("one.jsonl", &(turn("c1") + &turn("c2"))),
        write("two.jsonl", &turn("c3")),
    ];
    let opts = ConvertOptions {
        validator: Some("conversation-jsonl".into()),
        ..options("one.jsonl")
    };
    let out = dir.path().join("out.parquet");
    let converted = weir_schemas::convert_many(&inputs, &out, &opts, &mut |_| {}).unwrap();
    assert_eq!(converted.statistics.rows, 3);
    assert_eq!(converted.format, Format::Ndjson);
    let v: serde_json::Value =
        serde_json::from_str(converted.validation.as_deref().expect("a report")).unwrap();
    assert_eq!(v["statistics"]["conversations"], 3, "{v}");
    assert_eq!(v["records"], 3, "{v}");
    let file = std::fs::File::open(&out).unwrap();
    let ids: Vec<String> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .flat_map(|b| {
                let b = b.unwrap();
                let col = b.column_by_name("conversation_id").unwrap().clone();
                (0..b.num_rows())
                    .map(|i| arrow::util::display::array_value_to_string(&col, i).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect();
    assert_eq!(ids, ["c1", "c2", "c3"]);

    let bad = [
        write("ok.jsonl", &turn("c1")),
        write(
            "bad.jsonl",
            &(turn("c2") + "{\"conversation_id\": \"c3\", \"turns\": []}\n"),
        ),
    ];
    let msg = weir_schemas::convert_many(&bad, &out, &opts, &mut |_| {})
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        msg.starts_with("bad.jsonl: validator conversation-jsonl: 1 of 3 records are invalid; bad.jsonl: line 2, field \"turns\": empty"),
        "{msg}"
    );
}

/// Each column chunk's codec in the Parquet at `path`, by column name.
fn codecs(path: &std::path::Path) -> Vec<(String, parquet::basic::Compression)> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let meta = reader.metadata();
    let mut out = Vec::new();
    for group in meta.row_groups() {
        for c in group.columns() {
            out.push((c.column_path().string(), c.compression()));
        }
    }
    out
}

#[test]
fn a_small_file_stores_its_tiny_columns_uncompressed_and_the_rest_with_zstd() {
    use parquet::basic::Compression as Pq;
    let dir = tempfile::tempdir().unwrap();
    // 100 rows: `id` takes 800 bytes as Int64, `note` about 7 KB of text.
    let mut text = String::from("id,note\n");
    for i in 0..100 {
        text.push_str(&format!(
            "{i},{}\n",
            "a note that repeats itself ".repeat(2)
        ));
    }
    let (input, output) = (
        dir.path().join("small.csv"),
        dir.path().join("small.parquet"),
    );
    std::fs::write(&input, &text).unwrap();
    let converted =
        weir_schemas::convert(&input, &output, &options("small.csv"), &mut |_| {}).unwrap();
    assert_eq!(converted.statistics.rows, 100);
    let got = codecs(&output);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0], ("id".to_owned(), Pq::UNCOMPRESSED), "{got:?}");
    assert!(
        matches!(got[1], (ref n, Pq::ZSTD(_)) if n == "note"),
        "{got:?}"
    );
    // Every value reads back, whichever way its column was stored.
    let back = rows(
        &run("small.csv", text.as_bytes(), &options("small.csv"))
            .unwrap()
            .batches,
    );
    assert_eq!(back.len(), 100);
    assert!(back[99].starts_with("99 | \"a note"), "{}", back[99]);

    // A file past the small-file size compresses every column, tiny or not.
    let mut big = String::from("id,flag\n");
    for i in 0..200_000 {
        big.push_str(&format!("{i},{}\n", i % 2 == 0));
    }
    let (input, output) = (dir.path().join("big.csv"), dir.path().join("big.parquet"));
    std::fs::write(&input, &big).unwrap();
    weir_schemas::convert(&input, &output, &options("big.csv"), &mut |_| {}).unwrap();
    let got = codecs(&output);
    assert!(got.iter().all(|(_, c)| matches!(c, Pq::ZSTD(_))), "{got:?}");
}
