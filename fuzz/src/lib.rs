//! What every fuzz target shares: the bytes written to a scratch file, converted with
//! options the first byte picks, and the result checked against what a conversion
//! promises (every row accounted for; the Parquet written reads back with as many
//! rows as the statistics say). A panic in weir's code, caught by `convert` or not, is
//! a crash (libfuzzer-sys's panic hook aborts). A panic inside the arrow or parquet
//! crates on a hostile file is what `convert`'s guard exists for: it unwinds to the
//! guard, which fails the file, and fuzzing goes on (each one found is kept as a
//! regression test in `schemas/tests/hostile.rs`).

use std::fs::File;
use std::path::PathBuf;
use std::sync::OnceLock;

use weir_events::{BadRows, Format};
use weir_schemas::{ConvertOptions, convert};

/// One scratch directory per fuzzing process (`scripts/fuzz` points TMPDIR at a
/// directory it removes afterwards).
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("weir-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&path).expect("creates the scratch dir");
        path
    })
}

/// Converts `data` as a file named `filename`. The first byte picks the bad-row
/// policy and how many rows the inference samples (1 and 2 make the widening restart
/// reachable with small inputs).
pub fn convert_bytes(data: &[u8], filename: &str, declared: Option<Format>) {
    upstream_panics_unwind();
    let Some((&knobs, data)) = data.split_first() else {
        return;
    };
    let dir = scratch();
    let input = dir.join(filename);
    let output = dir.join("out.parquet");
    let rejects = dir.join("rejects.ndjson");
    let _ = std::fs::remove_file(&output);
    let _ = std::fs::remove_file(&rejects);
    std::fs::write(&input, data).expect("writes the scratch input");
    let opts = ConvertOptions {
        filename: filename.to_owned(),
        declared,
        bad_rows: match knobs & 3 {
            0 => BadRows::Fail,
            1 => BadRows::Pad,
            _ => BadRows::Reject,
        },
        sample_rows: [1, 2, 10, 10_000][usize::from(knobs >> 2 & 3)],
        batch_rows: [3, 1024][usize::from(knobs >> 4 & 1)],
        rejects: Some(rejects),
        ..ConvertOptions::default()
    };
    let Ok(c) = convert(&input, &output, &opts, &mut |_| {}) else {
        return;
    };
    assert_eq!(
        c.rows_read,
        c.statistics.rows + c.rejected,
        "rows read = rows written + rows rejected"
    );
    let served = if c.rewritten { &output } else { &input };
    let file = File::open(served).expect("the Parquet served exists");
    let reader = parquet::file::reader::SerializedFileReader::new(file)
        .expect("the Parquet served reads back");
    let metadata = parquet::file::reader::FileReader::metadata(&reader);
    assert!(
        metadata.row_groups().iter().all(|g| g.num_rows() >= 0),
        "no row group of the Parquet served claims a negative count"
    );
    // weir's own output counts its rows in its row groups; a file kept as it is must
    // have a footer that says what the pages hold (row groups of files in the wild may
    // count differently from what Arrow reads: see parquet_in.rs).
    let rows: i64 = if c.rewritten {
        metadata.row_groups().iter().map(|g| g.num_rows()).sum()
    } else {
        metadata.file_metadata().num_rows()
    };
    assert_eq!(rows as u64, c.statistics.rows, "rows in the Parquet served");
}

/// Wraps libfuzzer-sys's aborting panic hook (installed before the first input) so
/// that a panic raised inside the arrow or parquet crates unwinds to `convert`'s guard
/// instead; every other panic still aborts as a crash.
fn upstream_panics_unwind() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let fuzzer = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let upstream = info.location().is_some_and(|l| {
                let file = l.file();
                ["/arrow-", "/parquet-"].iter().any(|c| file.contains(c))
                    && file.contains("registry")
            });
            if !upstream {
                fuzzer(info);
            }
        }));
    });
}
