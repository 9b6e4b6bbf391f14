//! `convert IN OUT`: `weir_schemas::convert` with the inferrer's options, as a process
//! of its own, for timing and peak memory (`/usr/bin/time -v`) without building the
//! services. Prints the seconds, rows and schema as one JSON-like line.

use std::path::PathBuf;
use std::time::Instant;

use weir_schemas::{ConvertOptions, convert};

fn main() {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [input, output] = args.as_slice() else {
        eprintln!("usage: convert IN OUT");
        std::process::exit(2);
    };
    let options = ConvertOptions {
        filename: input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        ..ConvertOptions::default()
    };
    let t = Instant::now();
    match convert(input, output, &options, &mut |_| {}) {
        Ok(c) => {
            let types: Vec<String> = c
                .schema
                .fields
                .iter()
                .map(|f| format!("{}:{}", f.name, f.data_type))
                .collect();
            println!(
                "{{\"seconds\": {:.3}, \"rows\": {}, \"bytes\": {}, \"schema\": {:?}}}",
                t.elapsed().as_secs_f64(),
                c.statistics.rows,
                c.parquet_size,
                types.join(", ")
            );
        }
        Err(e) => {
            eprintln!("convert: {e}");
            std::process::exit(1);
        }
    }
}
