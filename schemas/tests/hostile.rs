//! Hostile inputs at full size, with memory measured: compression bombs (gzip, zstd),
//! a 1 GB line, 10,000 Parquet columns, a Parquet footer claiming 2^40 rows. Each
//! conversion runs in a child process (this test binary again, one test selected) so
//! its peak resident memory (`VmHWM`) is its own and is read, not guessed.
//!
//! Sizes: in a normal run the gzip bomb is 256 KB inflating to 256 MiB and the zstd
//! one 100 KB inflating to 1 GiB; with `WEIR_TEST_FULL_BOMBS=1` both inflate to
//! 10 GiB (gzip: a 10 MB file, the size; a few minutes in a debug build).

mod common;

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::{
    ParquetMetaDataBuilder, ParquetMetaDataReader, ParquetMetaDataWriter,
};
use weir_schemas::{ConvertOptions, Limits, convert};

/// The most a conversion of any hostile file here may hold resident.
const MAX_RSS_KB: u64 = 256 * 1024;

/// Set in the child: the file to convert (its name is the file name reported).
const CHILD_INPUT: &str = "WEIR_HOSTILE_INPUT";
/// Set in the child: `max_columns`, when the test lowers it.
const CHILD_MAX_COLUMNS: &str = "WEIR_HOSTILE_MAX_COLUMNS";

/// What the child saw: the conversion's outcome and its peak resident memory.
struct Outcome {
    result: Result<String, String>,
    peak_kb: u64,
}

/// In the child, converts `WEIR_HOSTILE_INPUT`, prints the outcome and `VmHWM`, and
/// returns true; in the parent (variable unset) returns false.
fn child_converts() -> bool {
    let Some(input) = std::env::var_os(CHILD_INPUT) else {
        return false;
    };
    let input = Path::new(&input);
    let mut limits = Limits::default();
    if let Some(n) = std::env::var(CHILD_MAX_COLUMNS)
        .ok()
        .and_then(|v| v.parse().ok())
    {
        limits.max_columns = n;
    }
    let opts = ConvertOptions {
        filename: input.file_name().unwrap().to_string_lossy().into_owned(),
        limits,
        ..ConvertOptions::default()
    };
    let output = input.with_extension("out.parquet");
    let line = match convert(input, &output, &opts, &mut |_| {}) {
        Ok(c) => format!(
            "ok rows={} columns={} rewritten={}",
            c.statistics.rows,
            c.schema.fields.len(),
            c.rewritten
        ),
        Err(e) => format!("err {e}"),
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB");
    // One line each, escaped: the parent reads them back.
    println!("\nhostile-result: {line:?}\nhostile-peak-kb: {hwm}");
    true
}

/// Runs test `name` of this binary in a child process converting `input`.
fn in_child(name: &str, input: &Path, env: &[(&str, &str)]) -> Outcome {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_INPUT, input)
        .envs(env.iter().copied())
        .output()
        .expect("runs the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child {name}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("child {name} printed no {key}: {stdout}"))
            .trim()
            .to_owned()
    };
    let line: String = {
        let quoted = field("hostile-result:");
        // The Debug form of a string: unquote and unescape what a message can hold.
        quoted[1..quoted.len() - 1]
            .replace("\\\"", "\"")
            .replace("\\\\", "\\")
    };
    let peak_kb = field("hostile-peak-kb:").parse().unwrap();
    eprintln!("{name}: {line} (peak {} MB)", peak_kb / 1024);
    Outcome {
        result: match line.strip_prefix("ok ") {
            Some(ok) => Ok(ok.to_owned()),
            None => Err(line.strip_prefix("err ").unwrap_or(&line).to_owned()),
        },
        peak_kb,
    }
}

fn full_size() -> bool {
    std::env::var_os("WEIR_TEST_FULL_BOMBS").is_some()
}

/// A CSV of `mib` MiB of rows behind a header, compressed as one member/frame of
/// 64 MiB written again and again (gzip members and zstd frames concatenate): made in
/// a second or two. gzip's rows are `0`, which deflate shrinks ~1000x (its best);
/// zstd's are 63 letters (~10,000x), which a debug build reads faster.
fn write_bomb(path: &Path, zstd: bool, mib: u64) {
    const CHUNK: usize = 64 << 20;
    let row: &[u8] = if zstd {
        b"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz\n"
    } else {
        b"0\n"
    };
    let rows = row.repeat(CHUNK / row.len());
    let compress = |first: bool| -> Vec<u8> {
        let mut text = Vec::with_capacity(CHUNK + 8);
        if first {
            text.extend_from_slice(b"value\n");
        }
        text.extend_from_slice(&rows);
        if zstd {
            zstd::encode_all(&text[..], 3).unwrap()
        } else {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(&text).unwrap();
            e.finish().unwrap()
        }
    };
    let mut file = std::io::BufWriter::new(File::create(path).unwrap());
    file.write_all(&compress(true)).unwrap();
    let member = compress(false);
    for _ in 1..(mib << 20).div_ceil(CHUNK as u64) {
        file.write_all(&member).unwrap();
    }
    file.flush().unwrap();
}

fn assert_bomb_fails(name: &str, zstd: bool) {
    if child_converts() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = if zstd { "bomb.csv.zst" } else { "bomb.csv.gz" };
    let path = dir.path().join(file);
    // A normal run reads 250x the file before the limit stops it: keep the gzip one
    // small (a debug build reads its short rows at ~5 MB/s).
    let mib = match (full_size(), zstd) {
        (true, _) => 10 << 10,
        (false, false) => 256,
        (false, true) => 1 << 10,
    };
    write_bomb(&path, zstd, mib);
    let size = std::fs::metadata(&path).unwrap().len();
    let inflated = mib << 20;
    eprintln!("{file}: {size} bytes inflating to {inflated}");
    assert!(
        inflated / size > 900,
        "{file}: {}x is no bomb",
        inflated / size
    );
    let start = std::time::Instant::now();
    let outcome = in_child(name, &path, &[]);
    eprintln!("{file}: refused in {:?}", start.elapsed());
    let msg = outcome.result.expect_err("a bomb fails");
    assert!(
        msg.starts_with(file)
            && msg.contains("limit: the file decompresses to more than")
            && msg.contains(
                "250x its compressed size (max_inflation, raise it with WEIR_MAX_INFLATION)"
            ),
        "{msg}"
    );
    assert!(
        outcome.peak_kb < MAX_RSS_KB,
        "{file}: peak {} kB",
        outcome.peak_kb
    );
}

#[test]
fn a_gzip_bomb_fails_naming_the_limit_in_bounded_memory() {
    assert_bomb_fails(
        "a_gzip_bomb_fails_naming_the_limit_in_bounded_memory",
        false,
    );
}

#[test]
fn a_zstd_bomb_fails_naming_the_limit_in_bounded_memory() {
    assert_bomb_fails("a_zstd_bomb_fails_naming_the_limit_in_bounded_memory", true);
}

/// A 1 GB file: `head`, then zeros to 1 GB, sparse (nothing written for them).
fn sparse_gigabyte(path: &Path, head: &[u8]) {
    let mut f = File::create(path).unwrap();
    f.write_all(head).unwrap();
    f.set_len(1 << 30).unwrap();
}

#[test]
fn a_one_gigabyte_line_fails_at_the_record_limit_in_bounded_memory() {
    let name = "a_one_gigabyte_line_fails_at_the_record_limit_in_bounded_memory";
    if child_converts() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The head looks like text (what sniffing sees); the line never ends.
    let mut csv = b"id,text\n1,".to_vec();
    csv.extend(std::iter::repeat_n(b'x', 128 << 10));
    let mut json = b"{\"id\": 1, \"text\": \"".to_vec();
    json.extend(std::iter::repeat_n(b'y', 128 << 10));
    let limit =
        "longer than 67108864 bytes (max_record_bytes, raise it with WEIR_MAX_RECORD_BYTES)";
    for (file, head, at, what) in [
        ("line.csv", csv, "line.csv: line 2: ", "limit: a record"),
        (
            "line.ndjson",
            json,
            "line.ndjson: line 1: ",
            "limit: a JSON record",
        ),
    ] {
        let path = dir.path().join(file);
        sparse_gigabyte(&path, &head);
        let start = std::time::Instant::now();
        let outcome = in_child(name, &path, &[]);
        let msg = outcome.result.expect_err("the line is refused");
        assert!(
            msg.starts_with(at) && msg.contains(&format!("{what} {limit}")),
            "{file}: {msg}"
        );
        assert!(
            outcome.peak_kb < MAX_RSS_KB,
            "{file}: peak {} kB",
            outcome.peak_kb
        );
        eprintln!("{file}: refused in {:?}", start.elapsed());
    }
}

/// A Parquet file of `columns` Int64 columns and `rows` rows.
fn wide_parquet(path: &Path, columns: usize, rows: i64) {
    let fields: Vec<Field> = (0..columns)
        .map(|i| Field::new(format!("c{i}"), DataType::Int64, false))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let arrays: Vec<ArrayRef> = (0..columns)
        .map(|i| {
            Arc::new(Int64Array::from_iter_values(
                (0..rows).map(|r| r * i as i64),
            )) as ArrayRef
        })
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), arrays).unwrap();
    let mut w = ArrowWriter::try_new(File::create(path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn a_parquet_file_of_ten_thousand_columns_registers_or_names_the_limit() {
    let name = "a_parquet_file_of_ten_thousand_columns_registers_or_names_the_limit";
    if child_converts() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wide.parquet");
    wide_parquet(&path, 10_000, 5);
    let outcome = in_child(name, &path, &[]);
    assert_eq!(
        outcome.result.as_deref(),
        Ok("rows=5 columns=10000 rewritten=false")
    );
    assert!(outcome.peak_kb < MAX_RSS_KB, "peak {} kB", outcome.peak_kb);
    // Under a lower limit, the limit and its variable are named.
    let outcome = in_child(name, &path, &[(CHILD_MAX_COLUMNS, "5000")]);
    assert_eq!(
        outcome.result,
        Err("wide.parquet: unsupported: limit: 10000 columns, more than 5000 (max_columns, raise it with WEIR_MAX_COLUMNS)".into())
    );
}

#[test]
fn a_parquet_footer_claiming_two_to_the_forty_rows_is_refused() {
    let name = "a_parquet_footer_claiming_two_to_the_forty_rows_is_refused";
    if child_converts() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let honest = dir.path().join("honest.parquet");
    wide_parquet(&honest, 3, 1000);
    let bytes = std::fs::read(&honest).unwrap();
    let metadata = ParquetMetaDataReader::new()
        .parse_and_finish(&File::open(&honest).unwrap())
        .unwrap();
    // The row group (and so the file, whose count is their sum) claims 2^40 rows.
    let mut builder = ParquetMetaDataBuilder::new_from_metadata(metadata);
    let groups: Vec<_> = builder
        .take_row_groups()
        .into_iter()
        .map(|g| g.into_builder().set_num_rows(1 << 40).build().unwrap())
        .collect();
    let forged = builder.set_row_groups(groups).build();
    let footer_len =
        u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap());
    let mut out = bytes[..bytes.len() - 8 - footer_len as usize].to_vec();
    ParquetMetaDataWriter::new(&mut out, &forged)
        .finish()
        .unwrap();
    let path = dir.path().join("forged.parquet");
    std::fs::write(&path, &out).unwrap();
    let claimed = ParquetMetaDataReader::new()
        .parse_and_finish(&File::open(&path).unwrap())
        .unwrap();
    assert_eq!(
        claimed.file_metadata().num_rows(),
        1 << 40,
        "the footer claims 2^40 rows"
    );
    let outcome = in_child(name, &path, &[]);
    let msg = outcome.result.expect_err("a forged footer is refused");
    assert!(msg.starts_with("forged.parquet: "), "{msg}");
    assert!(
        msg.contains("1099511627776 rows") || msg.contains("cannot decode"),
        "names the claim or the pages that are not there: {msg}"
    );
    assert!(outcome.peak_kb < MAX_RSS_KB, "peak {} kB", outcome.peak_kb);
    // The honest file converts.
    let outcome = in_child(name, &honest, &[]);
    assert_eq!(
        outcome.result.as_deref(),
        Ok("rows=1000 columns=3 rewritten=false")
    );
}

/// A 10,000-column CSV costs more than a narrow one: about 25 KB per column stays
/// resident in the Parquet writer's column writers and the builders whatever the rows
/// (~300 MB at 200 rows), and its row group's pages add to that. Measured: 654 MB at
/// 2,000 rows (78 MB of CSV), down from 1.8 GB before the distinct counts and the
/// batches were bounded by width. `max_columns` caps it.
const WIDE_MAX_RSS_KB: u64 = 768 * 1024;

#[test]
fn a_csv_of_ten_thousand_columns_converts_in_bounded_memory() {
    let name = "a_csv_of_ten_thousand_columns_converts_in_bounded_memory";
    if child_converts() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wide.csv");
    let mut f = std::io::BufWriter::new(File::create(&path).unwrap());
    let header: Vec<String> = (0..10_000).map(|i| format!("c{i}")).collect();
    writeln!(f, "{}", header.join(",")).unwrap();
    for r in 0..2_000 {
        let row: Vec<String> = (0..10_000).map(|i| ((i + r) % 1000).to_string()).collect();
        writeln!(f, "{}", row.join(",")).unwrap();
    }
    f.flush().unwrap();
    drop(f);
    let size = std::fs::metadata(&path).unwrap().len();
    let outcome = in_child(name, &path, &[]);
    eprintln!("wide.csv: {size} bytes");
    assert_eq!(
        outcome.result.as_deref(),
        Ok("rows=2000 columns=10000 rewritten=true")
    );
    assert!(
        outcome.peak_kb < WIDE_MAX_RSS_KB,
        "peak {} kB",
        outcome.peak_kb
    );
}

/// Found by `scripts/fuzz parquet` (out of memory at its 1 GB limit, on a seed):
/// parquet-testing's `large_string_map.brotli.parquet`, 4 KB whose one page claims
/// 1 GiB uncompressed, which the reader allocated up front before failing.
#[test]
fn fuzz_found_a_parquet_page_claiming_a_gibibyte_is_refused_in_bounded_memory() {
    let name = "fuzz_found_a_parquet_page_claiming_a_gibibyte_is_refused_in_bounded_memory";
    if child_converts() {
        return;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/corpus/parquet-testing/large_string_map.brotli.parquet");
    let outcome = in_child(name, &path, &[]);
    assert_eq!(
        outcome.result,
        Err("large_string_map.brotli.parquet: unsupported: limit: a page of column \"arr.key_value.key\" claims 1073741828 bytes uncompressed, more than 67108864 (max_record_bytes, raise it with WEIR_MAX_RECORD_BYTES)".into())
    );
    assert!(outcome.peak_kb < MAX_RSS_KB, "peak {} kB", outcome.peak_kb);
}

/// Found by `scripts/fuzz parquet` (a timeout): 6 KB of Parquet with a page header
/// running past its column chunk, which the reader skipped through a few KB at a time
/// for over a minute.
#[test]
fn fuzz_found_a_parquet_page_header_past_its_chunk_is_refused_at_once() {
    let name = "fuzz_found_a_parquet_page_header_past_its_chunk_is_refused_at_once";
    if child_converts() {
        return;
    }
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/page-header-past-its-chunk.parquet");
    let start = std::time::Instant::now();
    let outcome = in_child(name, &path, &[]);
    assert_eq!(
        outcome.result,
        Err("page-header-past-its-chunk.parquet: a page header of column \"c_birth_day\" at byte 1701 does not fit in its column chunk: a corrupt file".into())
    );
    assert!(
        start.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    assert!(outcome.peak_kb < MAX_RSS_KB, "peak {} kB", outcome.peak_kb);
}

/// Found by `scripts/fuzz parquet` (a crash): a DELTA_BYTE_ARRAY page whose prefix
/// lengths overflow inside the parquet crate's decoder (a panic where overflow checks
/// are on, as in this debug build). The panic is caught and the file fails; no panic
/// reaches the service.
#[test]
fn fuzz_found_a_parquet_decoder_overflow_fails_the_file() {
    fuzz_input_fails_permanently("delta-byte-array-overflow.parquet");
}

/// Found by `scripts/fuzz parquet` (a crash): a page whose bit width is more than its
/// type allows, on which the parquet crate's bit reader panics ("Array too large,
/// expected less than 16"). The panic is caught and the file fails with its name; no
/// panic reaches the service.
#[test]
fn fuzz_found_a_parquet_bit_width_too_large_fails_the_file() {
    fuzz_input_fails_permanently("bit-width-too-large.parquet");
}

/// Found by `scripts/fuzz parquet` (its check of the Parquet served): a file whose
/// footer's total is right but whose row groups claim a negative count. Kept as it is,
/// a reader that sums its row groups (DuckDB does) would see another count than the
/// catalog; the file is refused as corrupt, naming the row group.
#[test]
fn fuzz_found_a_parquet_row_group_with_a_negative_count_is_refused() {
    let msg = fuzz_input_fails_permanently("negative-row-group.parquet");
    assert!(msg.contains("rows: a corrupt or forged footer"), "{msg}");
    assert!(
        msg.contains("row group ") && msg.contains("claims -"),
        "{msg}"
    );
}

/// Converts `tests/fuzz/<name>` in this process: it must fail permanently with an
/// error that begins with the file's name (a panic inside the parquet crate included,
/// caught by `convert`). Returns the message.
fn fuzz_input_fails_permanently(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz")
        .join(name);
    let dir = tempfile::tempdir().unwrap();
    let opts = ConvertOptions {
        filename: name.into(),
        ..ConvertOptions::default()
    };
    let err = convert(&path, &dir.path().join("out.parquet"), &opts, &mut |_| {})
        .expect_err("the file fails");
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("{name}: ")), "{msg}");
    assert!(err.is_permanent(), "{msg}");
    msg
}
