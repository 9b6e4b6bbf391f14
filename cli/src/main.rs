//! The `weir` command: parses flags and wires the libraries together. The work itself
//! lives in the library crates; each subcommand here is a thin shell around them.

mod system;
mod tail;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "weir",
    version,
    about = "Event-sourced dataset ingestion on NATS JetStream"
)]
struct Cli {
    /// Where weir keeps its state (objects, database, nats store) and where other
    /// commands find a running `weir up`
    #[arg(long, global = true, env = "WEIR_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Use this NATS server instead of the one `weir up` runs under --data-dir
    #[arg(long, global = true, env = "NATS_URL")]
    nats_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Follow the event log live, one line per event (or --json)
    Tail(tail::TailArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weir: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("weir: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Tail(args) => {
            let journal = system::connect(cli.nats_url.as_deref(), &cli.data_dir).await?;
            tail::run(&journal, args).await
        }
    }
}
