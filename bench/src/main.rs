//! weir-bench: the benchmark driver behind `scripts/bench`.
//!
//! `run` generates the inputs (fixed seed), converts each with weir and its peers as
//! separate processes, runs the event-layer and pipeline benchmarks in this process, and
//! writes one table and one JSON file. `convert` is weir's conversion alone (the
//! inferrer's code path, `weir_schemas::convert`) as a process of its own, so its time
//! and peak RSS are measured exactly like the peers'.

mod conversion;
mod data;
mod events;
mod pipeline;
mod report;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "weir-bench", about = "weir's benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every benchmark: conversion vs peers, event layer, pipeline
    Run(Box<RunArgs>),
    /// weir's conversion alone (weir_schemas::convert), printing one JSON line
    Convert { input: PathBuf, output: PathBuf },
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// A small version: under two minutes
    #[arg(long)]
    pub quick: bool,
    /// Where inputs, outputs and results go
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,
    /// The Python with duckdb, polars and pyarrow
    #[arg(long, default_value = ".tools/venv/bin/python")]
    pub python: PathBuf,
    /// The peers' script
    #[arg(long, default_value = "bench/peers.py")]
    pub peers: PathBuf,
    /// Postgres server for the projector benchmark (a fresh database is created)
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pub postgres: String,
    /// Which parts to run (comma-separated): conversion, events, pipeline
    #[arg(
        long,
        default_value = "conversion,events,pipeline",
        value_delimiter = ','
    )]
    pub only: Vec<String>,
    /// Which conversion contenders to run (comma-separated)
    #[arg(
        long,
        default_value = "weir,duckdb,polars,pyarrow",
        value_delimiter = ','
    )]
    pub contenders: Vec<String>,
    /// Override: CSV size in MB
    #[arg(long)]
    pub csv_mb: Option<u64>,
    /// Override: NDJSON size in MB
    #[arg(long)]
    pub ndjson_mb: Option<u64>,
    /// Override: small files through the pipeline
    #[arg(long)]
    pub files: Option<usize>,
    /// Override: uploads in flight through the pipeline (closed loop)
    #[arg(long, default_value_t = 32)]
    pub window: usize,
    /// Stop starting small-file uploads after this many seconds (the figures then
    /// cover the uploads that ran; the table says how many)
    #[arg(long)]
    pub pipeline_seconds: Option<f64>,
    /// Override: uploads whose four lifecycle events the event benchmark appends
    #[arg(long)]
    pub event_uploads: Option<usize>,
    /// Results file (JSON); default <out>/results.json
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The events' and pipeline's nats-server `sync_interval`: `default` (the
    /// server's own, line removed), `1s`, `always`, …; unset: as nats.conf says
    #[arg(long)]
    pub nats_sync: Option<String>,
    /// nats-servers for the events and pipeline parts: 1, or 3 (a cluster, R3 stream)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub nats_nodes: u8,
}

/// Sizes of one run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sizes {
    pub csv_mb: u64,
    pub ndjson_mb: u64,
    pub files: usize,
    pub event_uploads: usize,
}

impl RunArgs {
    pub fn nats_shape(&self) -> pipeline::NatsShape {
        pipeline::NatsShape {
            sync: self.nats_sync.clone(),
            nodes: usize::from(self.nats_nodes),
        }
    }

    fn sizes(&self) -> Sizes {
        let (csv, ndjson, files, ev) = if self.quick {
            (64, 24, 200, 2_500)
        } else {
            (1000, 300, 10_000, 50_000)
        };
        Sizes {
            csv_mb: self.csv_mb.unwrap_or(csv),
            ndjson_mb: self.ndjson_mb.unwrap_or(ndjson),
            files: self.files.unwrap_or(files),
            event_uploads: self.event_uploads.unwrap_or(ev),
        }
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Convert { input, output } => conversion::weir_convert(&input, &output),
        Command::Run(args) => run(*args),
    }
}

fn run(args: RunArgs) -> Result<()> {
    let sizes = args.sizes();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    // The services' warnings (retries, slow reads) go to a file: they explain figures.
    let log_path = args.out.join("services.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::sync::Mutex::new(log))
        .with_ansi(false)
        .init();
    let mut report = report::Report::new(&args, &sizes);
    let inputs = conversion::inputs(&args.out, &sizes)?;
    let wants = |part: &str| args.only.iter().any(|p| p == part);
    if wants("conversion") {
        report.conversion = conversion::run_all(&args, &inputs)?;
        report.print_conversion();
        report.save(&args)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    if wants("events") {
        report.events = Some(rt.block_on(events::run(&args, &sizes))?);
        report.print_events();
        report.save(&args)?;
    }
    if wants("pipeline") {
        let weir_csv_secs = report
            .conversion
            .iter()
            .find(|c| c.contender == "weir" && c.format == "csv")
            .map(|c| c.wall_seconds);
        report.pipeline =
            Some(rt.block_on(pipeline::run(&args, &sizes, &inputs, weir_csv_secs))?);
        report.print_pipeline();
        report.save(&args)?;
    }
    report.print_all();
    report.save(&args)?;
    Ok(())
}
