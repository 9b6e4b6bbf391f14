//! Conversion: CSV and NDJSON → Parquet (zstd) by weir and each peer, every contender a
//! process of its own under `/usr/bin/time -v` (wall time around the process, peak RSS
//! from its report), on the same files in the same run, each file read once before
//! its contenders. Rows are counted from each output's Parquet footer, so a contender
//! that dropped rows shows it. The full run also converts a 5 GB CSV and a 2 GB NDJSON
//! file with weir alone, for its peak memory on inputs far larger than its buffers.
//! Encodings: weir converts the same rows as UTF-8 and as Windows-1252 in alternating
//! pairs, for the cost of transcoding (`conversion.csv_windows1252_vs_utf8`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use weir_schemas::{ConvertOptions, convert};

use crate::data;
use crate::{RunArgs, Sizes};

/// The generated inputs of one run.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub csv: PathBuf,
    pub ndjson: PathBuf,
    /// The same rows with non-ASCII text, as UTF-8 and as Windows-1252.
    pub csv_utf8: PathBuf,
    pub csv_windows_1252: PathBuf,
}

/// Size of the encoding inputs (UTF-8 bytes): the CSV's, at most this.
const ENCODING_MAX_MB: u64 = 200;
/// Alternating UTF-8 / Windows-1252 pairs; the pair with the median ratio is reported.
const ENCODING_PAIRS: usize = 3;

/// One contender on one input.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Measured {
    pub format: String,
    pub contender: String,
    pub version: String,
    pub input_bytes: u64,
    /// Wall time of the whole process (start-up and imports included).
    pub wall_seconds: f64,
    /// The conversion alone as the contender timed it, when it reports one.
    pub inner_seconds: Option<f64>,
    pub mb_per_s: f64,
    pub peak_rss_mb: f64,
    pub user_seconds: f64,
    pub system_seconds: f64,
    pub output_bytes: u64,
    pub rows: i64,
}

/// The large inputs of the memory check (full run only): weir converts each alone and
/// its peak RSS must stay within [`BIG_RSS_TARGET_MB`]. They are reported as `Measured`
/// rows with the format `csv_big` / `ndjson_big`.
pub const BIG_INPUTS: [(&str, u64); 2] = [("csv", 5000), ("ndjson", 2000)];
/// The bound on weir's peak RSS for the large inputs.
pub const BIG_RSS_TARGET_MB: f64 = 256.0;

/// Generates the inputs unless a finished file of the same size and seed is there.
pub fn inputs(out: &Path, sizes: &Sizes) -> Result<Inputs> {
    let (csv_utf8, csv_windows_1252) = encoding_inputs(out, sizes.csv_mb.min(ENCODING_MAX_MB))?;
    Ok(Inputs {
        csv: input(out, "csv", sizes.csv_mb)?,
        ndjson: input(out, "ndjson", sizes.ndjson_mb)?,
        csv_utf8,
        csv_windows_1252,
    })
}

/// The encoding inputs of `mb` megabytes, written unless finished ones are there.
fn encoding_inputs(out: &Path, mb: u64) -> Result<(PathBuf, PathBuf)> {
    let dir = out.join("data");
    std::fs::create_dir_all(&dir)?;
    let utf8 = dir.join(format!("orders_text_{mb}mb_{:x}_utf8.csv", data::SEED));
    let w1252 = dir.join(format!(
        "orders_text_{mb}mb_{:x}_windows1252.csv",
        data::SEED
    ));
    let done = utf8.with_extension("done");
    if done.exists() && utf8.exists() && w1252.exists() {
        return Ok((utf8, w1252));
    }
    let t = Instant::now();
    let rows = data::write_csv_two_encodings(&utf8, &w1252, mb * 1_000_000, data::SEED)?;
    std::fs::write(&done, rows.to_string())?;
    eprintln!(
        "bench: generated {} and its Windows-1252 twin ({rows} rows) in {:.1} s",
        utf8.display(),
        t.elapsed().as_secs_f64()
    );
    Ok((utf8, w1252))
}

/// The generated input of `format` ("csv" or "ndjson") and `mb` megabytes, written
/// from the fixed seed unless a finished one is there.
fn input(out: &Path, format: &str, mb: u64) -> Result<PathBuf> {
    let dir = out.join("data");
    std::fs::create_dir_all(&dir)?;
    let csv_kind = format == "csv";
    let path = if csv_kind {
        dir.join(format!("orders_{mb}mb_{:x}.csv", data::SEED))
    } else {
        dir.join(format!("events_{mb}mb_{:x}.ndjson", data::SEED))
    };
    let done = path.with_extension("done");
    if done.exists() && path.exists() {
        return Ok(path);
    }
    let t = Instant::now();
    let bytes = mb * 1_000_000;
    let rows = if csv_kind {
        data::write_csv(&path, bytes, data::SEED)?
    } else {
        data::write_ndjson(&path, bytes, data::SEED)?
    };
    std::fs::write(&done, rows.to_string())?;
    eprintln!(
        "bench: generated {} ({rows} rows) in {:.1} s",
        path.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(path)
}

/// Whether this run converts the large inputs: the full run does, `--quick` does not,
/// and `WEIR_BENCH_BIG=0` skips them (they take a few minutes and 7 GB of disk).
fn wants_big(args: &RunArgs) -> bool {
    !args.quick
        && args.contenders.iter().any(|c| c == "weir")
        && std::env::var("WEIR_BENCH_BIG").map_or(true, |v| v != "0")
}

/// `weir-bench convert`: the inferrer's conversion, as the inferrer calls it.
pub fn weir_convert(input: &Path, output: &Path) -> Result<()> {
    let options = ConvertOptions {
        filename: input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        ..ConvertOptions::default()
    };
    let t = Instant::now();
    let converted = convert(input, output, &options, &mut |_| {})
        .with_context(|| format!("converting {}", input.display()))?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "tool": "weir",
            "version": env!("CARGO_PKG_VERSION"),
            "rows": converted.statistics.rows,
            "seconds": secs,
            "schema": converted.schema.fields.iter()
                .map(|f| format!("{}:{}", f.name, f.data_type)).collect::<Vec<_>>(),
        })
    );
    Ok(())
}

/// Runs every contender on both inputs, interleaved per input.
pub fn run_all(args: &RunArgs, inputs: &Inputs) -> Result<Vec<Measured>> {
    let exe = std::env::current_exe().context("finding weir-bench itself")?;
    let outdir = args.out.join("parquet");
    std::fs::create_dir_all(&outdir)?;
    let mut results = Vec::new();
    for (format, input) in [("csv", &inputs.csv), ("ndjson", &inputs.ndjson)] {
        warm(input)?;
        for contender in &args.contenders {
            let output = outdir.join(format!("{format}_{contender}.parquet"));
            let _ = std::fs::remove_file(&output);
            let mut cmd = if contender == "weir" {
                let mut c = Command::new(&exe);
                c.arg("convert").arg(input).arg(&output);
                c
            } else {
                let mut c = Command::new(&args.python);
                c.arg(&args.peers)
                    .arg(contender)
                    .arg(format)
                    .arg(input)
                    .arg(&output);
                c
            };
            eprintln!("bench: {contender} {format} …");
            let m = measure(&mut cmd, format, contender, input, &output)
                .with_context(|| format!("{contender} on {}", input.display()))?;
            eprintln!(
                "bench: {contender} {format}: {:.1} MB/s, {:.0} MB RSS, {} rows",
                m.mb_per_s, m.peak_rss_mb, m.rows
            );
            results.push(m);
        }
    }
    if args.contenders.iter().any(|c| c == "weir") {
        results.extend(encodings(&exe, &outdir, inputs)?);
    }
    if wants_big(args) {
        for (format, mb) in BIG_INPUTS {
            let input = input(&args.out, format, mb)?;
            warm(&input)?;
            let output = outdir.join(format!("{format}_big_weir.parquet"));
            let _ = std::fs::remove_file(&output);
            let mut cmd = Command::new(&exe);
            cmd.arg("convert").arg(&input).arg(&output);
            let label = format!("{format}_big");
            eprintln!("bench: weir {label} ({mb} MB) …");
            let m = measure(&mut cmd, &label, "weir", &input, &output)
                .with_context(|| format!("weir on {}", input.display()))?;
            eprintln!(
                "bench: weir {label}: {:.1} MB/s, peak RSS {:.0} MB (bound {BIG_RSS_TARGET_MB:.0} MB), {} rows",
                m.mb_per_s, m.peak_rss_mb, m.rows
            );
            // The output is only measured; it would hold gigabytes of disk.
            let _ = std::fs::remove_file(&output);
            results.push(m);
        }
    }
    Ok(results)
}

/// weir on the same rows as UTF-8 and as Windows-1252, [`ENCODING_PAIRS`] pairs in
/// turn (a drift of the machine's speed hits both sides of a pair); the pair with the
/// median time ratio is returned, as formats `csv_utf8` and `csv_windows1252`.
fn encodings(exe: &Path, outdir: &Path, inputs: &Inputs) -> Result<Vec<Measured>> {
    let mut pairs = Vec::new();
    for _ in 0..ENCODING_PAIRS {
        let mut pair = Vec::new();
        for (format, input) in [
            ("csv_utf8", &inputs.csv_utf8),
            ("csv_windows1252", &inputs.csv_windows_1252),
        ] {
            warm(input)?;
            let output = outdir.join(format!("{format}_weir.parquet"));
            let _ = std::fs::remove_file(&output);
            let mut cmd = Command::new(exe);
            cmd.arg("convert").arg(input).arg(&output);
            let m = measure(&mut cmd, format, "weir", input, &output)
                .with_context(|| format!("weir on {}", input.display()))?;
            pair.push(m);
        }
        if pair[0].rows != pair[1].rows {
            bail!(
                "UTF-8 and Windows-1252 inputs gave {} and {} rows",
                pair[0].rows,
                pair[1].rows
            );
        }
        eprintln!(
            "bench: weir encodings: UTF-8 {:.1} MB/s, Windows-1252 {:.1} MB/s, time ratio {:.3}",
            pair[0].mb_per_s,
            pair[1].mb_per_s,
            pair[1].wall_seconds / pair[0].wall_seconds
        );
        pairs.push(pair);
    }
    pairs.sort_by(|a, b| {
        (a[1].wall_seconds / a[0].wall_seconds).total_cmp(&(b[1].wall_seconds / b[0].wall_seconds))
    });
    Ok(pairs.swap_remove(ENCODING_PAIRS / 2))
}

/// Reads `path` once so that the first contender does not pay for bringing the file
/// into memory for the ones after it: on this VM the first read of a cached file after a
/// while runs at a fraction of the speed of the next ones.
fn warm(path: &Path) -> Result<()> {
    let mut file = std::fs::File::open(path)?;
    std::io::copy(&mut file, &mut std::io::sink())
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(())
}

fn measure(
    cmd: &mut Command,
    format: &str,
    contender: &str,
    input: &Path,
    output: &Path,
) -> Result<Measured> {
    let time_report = output.with_extension("time.txt");
    let program = cmd.get_program().to_owned();
    let argv: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("-v")
        .arg("-o")
        .arg(&time_report)
        .arg(program)
        .args(argv);
    let input_bytes = std::fs::metadata(input)?.len();
    let t = Instant::now();
    let out = timed.output().context("running /usr/bin/time -v")?;
    let wall = t.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "{contender} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_default();
    let report = std::fs::read_to_string(&time_report)?;
    let field = |name: &str| -> f64 {
        report
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|v| v.trim_start_matches(':').trim().parse().ok())
            .unwrap_or(f64::NAN)
    };
    let rss_kb = field("Maximum resident set size (kbytes)");
    let output_bytes = std::fs::metadata(output)
        .with_context(|| format!("{contender} wrote no {}", output.display()))?
        .len();
    Ok(Measured {
        format: format.to_owned(),
        contender: contender.to_owned(),
        version: line["version"].as_str().unwrap_or("?").to_owned(),
        input_bytes,
        wall_seconds: wall,
        inner_seconds: line["seconds"].as_f64(),
        mb_per_s: input_bytes as f64 / 1e6 / wall,
        peak_rss_mb: rss_kb / 1024.0,
        user_seconds: field("User time (seconds)"),
        system_seconds: field("System time (seconds)"),
        output_bytes,
        rows: parquet_rows(output)?,
    })
}

fn parquet_rows(path: &Path) -> Result<i64> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let file = std::fs::File::open(path)?;
    let reader = SerializedFileReader::new(file)
        .with_context(|| format!("reading the footer of {}", path.display()))?;
    Ok(reader.metadata().file_metadata().num_rows())
}
