//! `small [N]`: converts N small CSV files (1–10 KB, like the pipeline benchmark's) one
//! after the other with the inferrer's options and prints the time per file: the fixed
//! cost of a conversion, for profiling the small-file path
//! (`valgrind --tool=callgrind target/release/examples/small 200`).

use std::time::Instant;

use weir_schemas::{ConvertOptions, convert};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut inputs = Vec::with_capacity(n);
    for i in 0..n {
        let rows = 20 + (i * 37) % 180;
        let mut csv = String::from("id,name,amount,when,flag\n");
        for r in 0..rows {
            csv.push_str(&format!(
                "{r},name {i}-{r},{}.{:02},2026-11-{:02} 10:{:02}:00,{}\n",
                r * 3,
                r % 100,
                1 + r % 28,
                r % 60,
                r % 2 == 0
            ));
        }
        let path = dir.path().join(format!("f{i}.csv"));
        std::fs::write(&path, csv).expect("writes the input");
        inputs.push(path);
    }
    let out = dir.path().join("out.parquet");
    let rejects = dir.path().join("rejects.ndjson");
    let t = Instant::now();
    let mut rows = 0;
    for path in &inputs {
        let options = ConvertOptions {
            filename: "small.csv".into(),
            rejects: Some(rejects.clone()),
            ..ConvertOptions::default()
        };
        let c = convert(path, &out, &options, &mut |_| {}).expect("converts");
        rows += c.statistics.rows;
    }
    let took = t.elapsed();
    println!(
        "{n} files, {rows} rows: {:.1} µs per file",
        took.as_secs_f64() * 1e6 / n as f64
    );
}
