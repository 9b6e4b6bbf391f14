//! The `weir` command: parses flags and wires the libraries together. The work itself
//! lives in the library crates; each subcommand here is a thin shell around them.

mod datasets;
mod doctor;
mod gateway;
mod init;
mod projector;
#[cfg(feature = "query")]
mod query;
mod record;
mod system;
mod tail;
mod tokens;
mod up;
mod upload;
mod upload_api;
mod views;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use weir_journal::Role;

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
    /// Projections database: a SQLite file path or postgres://… (default: the running
    /// system's, else <data dir>/weir.db)
    #[arg(long, global = true, env = "DATABASE_URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole system here: nats-server, every service; prints `ready` when serving
    Up(up::UpArgs),
    /// Run one part on its own against a running system: a service (combiner, inferrer,
    /// registrar), the HTTP gateway or the projector
    Serve(up::ServeArgs),
    /// Set the stream up on an external NATS as the admin user and migrate the
    /// projections database (what `weir up` does at start), then exit
    Init(init::InitArgs),
    /// Upload files: parts to the object store, then UploadReceived to the log
    Upload(upload::UploadArgs),
    /// Follow the event log live, one line per event (or --json)
    Tail(tail::TailArgs),
    /// Run one SQL query over your datasets (table names as registered; "orders@v2")
    #[cfg(feature = "query")]
    Query(query::QueryArgs),
    /// Registered datasets (the catalog)
    Datasets(datasets::DatasetsArgs),
    /// An upload's status and step log
    Status {
        id: weir_events::UploadId,
        #[arg(long)]
        json: bool,
    },
    /// The audit trail of an upload or dataset: every event, who and why
    History {
        id: weir_projections::EntityId,
        #[arg(long)]
        json: bool,
    },
    /// The notification feed of an owner
    Notifications(views::NotificationsArgs),
    /// Rebuild the projections from the log (swapped in atomically), or build a past
    /// moment into a separate database with --until-seq/--until-time --into
    Replay(views::ReplayArgs),
    /// Write the log as a fixture (JSON lines with each event's exact bytes) for tests
    Record(record::RecordArgs),
    /// API tokens for the HTTP gateway
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),
    /// The health of every part (nats-server, stream, consumers, database, projector,
    /// object store), one line each; exit code 1 when a check fails
    Doctor {
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script: `weir completions bash > /etc/bash_completion.d/weir`,
    /// `weir completions zsh > ~/.zfunc/_weir`, `weir completions fish > ~/.config/fish/completions/weir.fish`
    Completions { shell: clap_complete::Shell },
}

/// Prints `value` as one JSON line with `--json`, else `line`.
pub fn say(json: bool, value: serde_json::Value, line: impl std::fmt::Display) {
    if json {
        println!("{value}");
    } else {
        println!("{line}");
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
    let db_url = views::database_url(cli.database_url.as_deref(), &cli.data_dir);
    match cli.command {
        Command::Doctor { json } => {
            let store = up::open_store(None, &cli.data_dir).ok();
            doctor::run(cli.nats_url.as_deref(), &cli.data_dir, &db_url, store, json).await
        }
        Command::Completions { shell } => {
            use std::io::Write as _;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "weir", &mut script);
            // A closed pipe (`| head`) is the reader's choice, not an error.
            match std::io::stdout().write_all(&script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(0),
            }
        }
        Command::Up(args) => {
            up::up(
                &cli.data_dir,
                cli.nats_url.as_deref(),
                cli.database_url.as_deref(),
                args,
            )
            .await
        }
        Command::Serve(args) if args.service == "gateway" => {
            let store = up::open_store(args.store.as_deref(), &cli.data_dir)?;
            let addr = args.http.as_deref().unwrap_or(gateway::DEFAULT_ADDR);
            gateway::serve(
                &cli.data_dir,
                cli.nats_url.as_deref(),
                &db_url,
                store,
                addr,
                args.ready_file,
            )
            .await
        }
        Command::Serve(args) if args.service == "projector" => {
            projector::serve(&cli.data_dir, cli.nats_url.as_deref(), &db_url, args).await
        }
        Command::Init(args) => {
            init::run(cli.nats_url.as_deref(), cli.database_url.as_deref(), args).await
        }
        Command::Serve(args) if args.service == "janitor" => {
            up::serve_janitor(&cli.data_dir, cli.nats_url.as_deref(), &db_url, args).await
        }
        Command::Serve(args) => up::serve(&cli.data_dir, cli.nats_url.as_deref(), args).await,
        Command::Tokens(command) => {
            let journal =
                system::connect(Role::Gateway, cli.nats_url.as_deref(), &cli.data_dir).await?;
            tokens::run(&journal, command).await
        }
        Command::Upload(args) if args.api.is_some() => upload_api::run(args).await,
        Command::Upload(args) => {
            let journal =
                system::connect(Role::Gateway, cli.nats_url.as_deref(), &cli.data_dir).await?;
            let store = up::open_store(args.store.as_deref(), &cli.data_dir)?;
            upload::run(&journal, &store, args).await
        }
        Command::Datasets(args) => {
            let journal =
                system::connect(Role::Gateway, cli.nats_url.as_deref(), &cli.data_dir).await?;
            let store = up::open_store(None, &cli.data_dir)?;
            let db = views::open_fresh(&db_url, &journal, &cli.data_dir).await?;
            datasets::run(&db, &journal, &store, args).await
        }
        #[cfg(feature = "query")]
        Command::Query(args) => {
            // Reads only: the projector's user.
            let journal =
                system::connect(Role::Projector, cli.nats_url.as_deref(), &cli.data_dir).await?;
            let store = up::open_store(None, &cli.data_dir)?;
            let db = views::open_fresh(&db_url, &journal, &cli.data_dir).await?;
            query::run(db, &store, args).await
        }
        Command::Status { id, json } => {
            let journal =
                system::connect(Role::Projector, cli.nats_url.as_deref(), &cli.data_dir).await?;
            views::status(
                &views::open_fresh(&db_url, &journal, &cli.data_dir).await?,
                id,
                json,
            )
            .await
        }
        Command::History { id, json } => {
            let journal =
                system::connect(Role::Projector, cli.nats_url.as_deref(), &cli.data_dir).await?;
            views::history(
                &views::open_fresh(&db_url, &journal, &cli.data_dir).await?,
                id,
                json,
            )
            .await
        }
        Command::Notifications(args) => {
            let journal =
                system::connect(Role::Gateway, cli.nats_url.as_deref(), &cli.data_dir).await?;
            views::notifications(&journal, &db_url, &cli.data_dir, args).await
        }
        Command::Record(args) => {
            let journal =
                system::connect(Role::Projector, cli.nats_url.as_deref(), &cli.data_dir).await?;
            record::run(&journal, args).await
        }
        Command::Replay(args) => {
            let journal =
                system::connect(Role::Projector, cli.nats_url.as_deref(), &cli.data_dir).await?;
            views::replay(&journal, &db_url, args).await
        }
        Command::Tail(args) => {
            let journal =
                system::connect(Role::Projector, cli.nats_url.as_deref(), &cli.data_dir).await?;
            tail::run(&journal, args).await
        }
    }
}
