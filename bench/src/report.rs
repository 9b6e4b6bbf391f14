//! The run's results: one table on stdout and the same figures as JSON. Every number
//! here was measured in this run; nothing is filled in.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context, Result};

use crate::conversion::Measured;
use crate::events::EventFigures;
use crate::pipeline::PipelineFigures;
use crate::{RunArgs, Sizes};

#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub quick: bool,
    pub sizes: Sizes,
    pub machine: Machine,
    pub load_before: String,
    pub load_after: String,
    pub conversion: Vec<Measured>,
    pub ratios: Vec<Ratio>,
    pub events: Option<EventFigures>,
    pub pipeline: Option<PipelineFigures>,
    /// The headline figures under stable, flat names (`events.replay_sqlite_eps`, …):
    /// what scripts and BENCHMARKS.md compare across runs. Only measured keys appear.
    pub keys: BTreeMap<String, f64>,
}

#[derive(Debug, serde::Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_mb: u64,
}

/// weir against the peers on one input.
#[derive(Debug, serde::Serialize)]
pub struct Ratio {
    pub format: String,
    pub best_peer: String,
    /// weir's MB/s over the best peer's.
    pub vs_best: f64,
    /// weir's MB/s over DuckDB's.
    pub vs_duckdb: Option<f64>,
    pub weir_peak_rss_mb: f64,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    Machine {
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_default(),
        memory_mb: meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024),
    }
}

impl Report {
    pub fn new(args: &RunArgs, sizes: &Sizes) -> Self {
        Report {
            quick: args.quick,
            sizes: sizes.clone(),
            machine: machine(),
            load_before: loadavg(),
            load_after: String::new(),
            conversion: Vec::new(),
            ratios: Vec::new(),
            events: None,
            pipeline: None,
            keys: BTreeMap::new(),
        }
    }

    pub fn save(&mut self, args: &RunArgs) -> Result<()> {
        self.load_after = loadavg();
        self.ratios = ratios(&self.conversion);
        self.keys = self.keys();
        let path = args
            .json
            .clone()
            .unwrap_or_else(|| args.out.join("results.json"));
        std::fs::write(&path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    pub fn print_conversion(&self) {
        print!("{}", self.conversion_table());
    }

    pub fn print_events(&self) {
        print!("{}", self.events_table());
    }

    pub fn print_pipeline(&self) {
        print!("{}", self.pipeline_table());
    }

    /// Everything once more at the end, as one table (Markdown).
    pub fn print_all(&self) {
        println!();
        println!(
            "## weir-bench {} — {} × {}, {} MB RAM; load {} → {}",
            if self.quick { "--quick" } else { "(full)" },
            self.machine.cpus,
            self.machine.cpu_model,
            self.machine.memory_mb,
            self.load_before,
            loadavg()
        );
        print!("{}", self.conversion_table());
        print!("{}", self.events_table());
        print!("{}", self.pipeline_table());
        print!("{}", self.targets_table());
    }

    /// The headline figures under their stable names.
    fn keys(&self) -> BTreeMap<String, f64> {
        let mut k = BTreeMap::new();
        for r in ratios(&self.conversion) {
            if let Some(v) = r.vs_duckdb {
                k.insert(format!("conversion.{}_vs_duckdb", r.format), v);
            }
            k.insert(format!("conversion.{}_vs_best_peer", r.format), r.vs_best);
        }
        // NDJSON's memory target is relative: weir's peak over DuckDB's (≤ 0.25).
        let rss = |format: &str, contender: &str| {
            self.conversion
                .iter()
                .find(|m| m.format == format && m.contender == contender)
                .map(|m| m.peak_rss_mb)
        };
        if let (Some(w), Some(d)) = (rss("ndjson", "weir"), rss("ndjson", "duckdb"))
            && d > 0.0
        {
            k.insert("conversion.ndjson_rss_vs_duckdb".into(), w / d);
        }
        if let Some((utf8, w1252)) = self.encodings() {
            k.insert(
                "conversion.csv_windows1252_vs_utf8".into(),
                w1252.wall_seconds / utf8.wall_seconds,
            );
        }
        for m in &self.conversion {
            let name = if m.contender == "weir" {
                format!("conversion.{}_peak_rss_mb", m.format)
            } else {
                format!("conversion.{}_{}_peak_rss_mb", m.format, m.contender)
            };
            k.insert(name, m.peak_rss_mb);
            k.insert(
                format!("conversion.{}_{}_mb_per_s", m.format, m.contender),
                m.mb_per_s,
            );
        }
        if let Some(e) = &self.events {
            k.insert("events.appends_per_s".into(), e.appends_per_s);
            k.insert("events.read_eps".into(), e.read_events_per_s);
            for p in &e.projections {
                k.insert(
                    format!("events.apply_{}_eps", p.database),
                    p.apply_events_per_s,
                );
                k.insert(
                    format!("events.replay_{}_eps", p.database),
                    p.replay_events_per_s,
                );
            }
        }
        if let Some(p) = &self.pipeline {
            k.insert("pipeline.small_uploads_per_s".into(), p.small_uploads_per_s);
            k.insert("pipeline.small_p50_ms".into(), p.p50_ms);
            k.insert("pipeline.small_p99_ms".into(), p.small_p99_ms);
            k.insert("pipeline.small_cpu_ms_per_upload".into(), p.small_cpu_ms);
            k.insert(
                "pipeline.small_nats_cpu_ms_per_upload".into(),
                p.small_nats_cpu_ms,
            );
            if let Some(r) = p.big_overhead_ratio {
                k.insert("pipeline.big_overhead_ratio".into(), r);
            }
            if let Some(b) = &p.big {
                k.insert("pipeline.big_upload_seconds".into(), b.upload_seconds);
                k.insert("pipeline.big_copy_seconds".into(), b.copy_seconds);
                k.insert(
                    "pipeline.big_multipart_combine_seconds".into(),
                    b.multipart_combine_seconds,
                );
            }
        }
        k
    }

    /// Each headline figure beside its target (issue 9), as measured in this run.
    fn targets_table(&self) -> String {
        // (key, target, higher is better)
        const TARGETS: &[(&str, f64, bool)] = &[
            ("events.apply_sqlite_eps", 150_000.0, true),
            ("events.replay_sqlite_eps", 150_000.0, true),
            ("events.apply_postgres_eps", 50_000.0, true),
            ("events.replay_postgres_eps", 50_000.0, true),
            ("pipeline.small_uploads_per_s", 1_000.0, true),
            ("pipeline.small_p99_ms", 50.0, false),
            ("pipeline.big_overhead_ratio", 1.10, false),
            ("conversion.csv_vs_duckdb", 1.25, true),
            ("conversion.ndjson_vs_duckdb", 1.25, true),
            ("conversion.ndjson_rss_vs_duckdb", 0.25, false),
            ("conversion.csv_big_peak_rss_mb", 256.0, false),
            ("conversion.ndjson_big_peak_rss_mb", 256.0, false),
        ];
        let keys = self.keys();
        let mut s = String::new();
        let rows: Vec<_> = TARGETS
            .iter()
            .filter_map(|(key, target, up)| keys.get(*key).map(|v| (key, v, target, up)))
            .collect();
        if rows.is_empty() {
            return s;
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "| figure | measured | target | met? |");
        let _ = writeln!(s, "|---|---:|---:|---|");
        for (key, v, target, up) in rows {
            let met = if *up { v >= target } else { v <= target };
            let _ = writeln!(
                s,
                "| `{key}` | {} | {} {} | {} |",
                fmt_figure(*v),
                if *up { "≥" } else { "≤" },
                fmt_figure(*target),
                if met { "yes" } else { "**no**" }
            );
        }
        s
    }
}

fn fmt_figure(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

impl Report {
    /// weir's UTF-8 and Windows-1252 runs on the same rows, when measured.
    fn encodings(&self) -> Option<(&Measured, &Measured)> {
        let of = |format: &str| {
            self.conversion
                .iter()
                .find(|m| m.format == format && m.contender == "weir")
        };
        Some((of("csv_utf8")?, of("csv_windows1252")?))
    }

    fn conversion_table(&self) -> String {
        let mut s = String::new();
        if self.conversion.is_empty() {
            return s;
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "| input | contender | version | MB/s | wall s | own timer s | peak RSS MB | CPU s (user+sys) | output MB | rows |"
        );
        let _ = writeln!(s, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|");
        for m in &self.conversion {
            let _ = writeln!(
                s,
                "| {} {:.0} MB | {} | {} | {:.1} | {:.2} | {} | {:.0} | {:.1} | {:.1} | {} |",
                m.format,
                m.input_bytes as f64 / 1e6,
                m.contender,
                m.version,
                m.mb_per_s,
                m.wall_seconds,
                m.inner_seconds.map_or("—".into(), |v| format!("{v:.2}")),
                m.peak_rss_mb,
                m.user_seconds + m.system_seconds,
                m.output_bytes as f64 / 1e6,
                m.rows
            );
        }
        let _ = writeln!(s);
        for r in ratios(&self.conversion) {
            let _ = writeln!(
                s,
                "{}: weir / best peer ({}) = {:.2}×; weir / DuckDB = {}; weir peak RSS {:.0} MB",
                r.format,
                r.best_peer,
                r.vs_best,
                r.vs_duckdb.map_or("—".into(), |v| format!("{v:.2}×")),
                r.weir_peak_rss_mb
            );
        }
        if let Some((utf8, w1252)) = self.encodings() {
            let _ = writeln!(
                s,
                "encodings (same {} rows): UTF-8 {:.1} MB/s, Windows-1252 {:.1} MB/s; Windows-1252 takes {:.3}× the time (CPU {:.3}×)",
                utf8.rows,
                utf8.mb_per_s,
                w1252.mb_per_s,
                w1252.wall_seconds / utf8.wall_seconds,
                (w1252.user_seconds + w1252.system_seconds)
                    / (utf8.user_seconds + utf8.system_seconds)
            );
        }
        s
    }

    fn events_table(&self) -> String {
        let mut s = String::new();
        let Some(e) = &self.events else { return s };
        let _ = writeln!(s);
        let _ = writeln!(s, "| event layer | events | seconds | events/s |");
        let _ = writeln!(s, "|---|---:|---:|---:|");
        let _ = writeln!(
            s,
            "| conditional appends, {} in flight ({}) | {} | {:.2} | {:.0} |",
            e.in_flight, e.nats, e.events, e.append_seconds, e.appends_per_s
        );
        let _ = writeln!(
            s,
            "| the log read and decoded, nothing applied | {} | {:.2} | {:.0} |",
            e.events, e.read_seconds, e.read_events_per_s
        );
        for p in &e.projections {
            let _ = writeln!(
                s,
                "| projector apply from seq 1, {} | {} | {:.2} | {:.0} |",
                p.database, e.events, p.apply_seconds, p.apply_events_per_s
            );
            let _ = writeln!(
                s,
                "| full replay from seq 1, {} | {} | {:.2} | {:.0} |",
                p.database, e.events, p.replay_seconds, p.replay_events_per_s
            );
        }
        s
    }

    fn pipeline_table(&self) -> String {
        let mut s = String::new();
        let Some(p) = &self.pipeline else { return s };
        let _ = writeln!(s);
        let _ = writeln!(s, "pipeline: {}", p.mode);
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "| small files (1–10 KB) | uploaded | in flight | registered | failed | producer errors | seconds | uploads/s | p50 ms | p99 ms | max ms | CPU ms/upload weir | CPU ms/upload nats-server |"
        );
        let _ = writeln!(
            s,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.1} | {:.0} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} |",
            p.files,
            p.attempted,
            p.window,
            p.registered,
            p.failed,
            p.producer_errors,
            p.small_seconds,
            p.uploads_per_s,
            p.p50_ms,
            p.p99_ms,
            p.max_ms,
            p.small_cpu_ms,
            p.small_nats_cpu_ms
        );
        if let Some(e) = &p.first_producer_error {
            let _ = writeln!(s, "\nfirst producer error: {e}");
        }
        if let Some(b) = &p.big {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "| one CSV | total s | conversion alone s | overhead | upload s | combine s | infer s | register s | plain copy s | combine s, in parts |"
            );
            let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            let _ = writeln!(
                s,
                "| {:.0} MB | {:.1} | {:.1} | {:+.0} % | {:.1} | {:.1} | {:.1} | {:.2} | {:.1} | {:.2} ({} parts) |",
                b.input_bytes as f64 / 1e6,
                b.total_seconds,
                b.conversion_seconds,
                b.overhead_percent,
                b.upload_seconds,
                b.combine_seconds,
                b.infer_seconds,
                b.register_seconds,
                b.copy_seconds,
                b.multipart_combine_seconds,
                b.multipart_parts
            );
        }
        s
    }
}

fn ratios(conversion: &[Measured]) -> Vec<Ratio> {
    let mut out = Vec::new();
    for format in ["csv", "ndjson"] {
        let of = |c: &str| {
            conversion
                .iter()
                .find(|m| m.format == format && m.contender == c)
        };
        let Some(weir) = of("weir") else { continue };
        let best = conversion
            .iter()
            .filter(|m| m.format == format && m.contender != "weir")
            .max_by(|a, b| a.mb_per_s.total_cmp(&b.mb_per_s));
        let Some(best) = best else { continue };
        out.push(Ratio {
            format: format.to_owned(),
            best_peer: best.contender.clone(),
            vs_best: weir.mb_per_s / best.mb_per_s,
            vs_duckdb: of("duckdb").map(|d| weir.mb_per_s / d.mb_per_s),
            weir_peak_rss_mb: weir.peak_rss_mb,
        });
    }
    out
}
