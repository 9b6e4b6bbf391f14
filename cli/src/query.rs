//! `weir query SQL`: runs one SQL query over the owner's datasets (weir-query) and
//! streams the result to the terminal as a table, or as JSON lines, CSV or a Parquet
//! file.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use weir_events::Owner;
use weir_projections::Db;
use weir_query::output::{self, Format};
use weir_query::{Engine, Limits};
use weir_services::Store;

/// Rows the table view shows unless `--max-rows` says otherwise.
const TABLE_MAX_ROWS: u64 = 10_000;

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// One SQL query. Tables are your datasets by table name (`orders`); a version,
    /// branch or tag as a quoted name: `"orders@v1"`, `"orders@main"`, `"orders@gold"`
    pub sql: String,
    /// The owner whose datasets the query reads
    #[arg(long, env = "WEIR_OWNER", default_value = "local")]
    pub owner: Owner,
    /// One JSON object per row
    #[arg(long, conflicts_with_all = ["csv", "parquet"])]
    pub json: bool,
    /// CSV with a header line
    #[arg(long, conflicts_with = "parquet")]
    pub csv: bool,
    /// Write the result to this Parquet file instead of printing it
    #[arg(long, value_name = "FILE")]
    pub parquet: Option<PathBuf>,
    /// Return at most N rows; more is reported on stderr with exit code 1 (default
    /// 10000 for the table, no limit for --json, --csv and --parquet; 0: no limit)
    #[arg(long, value_name = "N")]
    pub max_rows: Option<u64>,
    /// Stop the query after this many seconds (fractions allowed)
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_secs)]
    pub timeout: Duration,
}

fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{text:?}: give a positive number of seconds"))
}

pub async fn run(db: Db, store: &Store, args: QueryArgs) -> Result<i32> {
    let format = match (&args.parquet, args.json, args.csv) {
        (Some(_), ..) => Format::Parquet,
        (None, true, _) => Format::JsonLines,
        (None, false, true) => Format::Csv,
        (None, false, false) => Format::Table,
    };
    let max_rows = match args.max_rows {
        Some(0) => None,
        Some(n) => Some(n),
        None if format == Format::Table => Some(TABLE_MAX_ROWS),
        None => None,
    };
    let engine = Engine::new(db, store.object_store())?;
    let mut rows = engine
        .query(
            &args.owner,
            &args.sql,
            Limits {
                max_rows,
                timeout: args.timeout,
            },
        )
        .await?;
    let out: Box<dyn Write + Send> = match &args.parquet {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let written = async {
        let mut writer = output::writer(format, rows.schema(), out)?;
        while let Some(batch) = rows.next_batch().await? {
            writer.write(&batch)?;
        }
        writer.finish()?;
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = written {
        if let Some(path) = &args.parquet {
            let _ = std::fs::remove_file(path);
        }
        if broken_pipe(&e) {
            // `| head`: the reader has what it wanted.
            return Ok(0);
        }
        return Err(e);
    }
    if rows.truncated() {
        let max = rows.returned();
        bail!(
            "the result has more than {max} rows; {} the first {max} (--max-rows N raises the limit, 0 removes it)",
            if args.parquet.is_some() {
                "wrote"
            } else {
                "printed"
            }
        );
    }
    Ok(0)
}

fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || matches!(
                cause.downcast_ref::<output::ArrowError>(),
                Some(output::ArrowError::IoError(_, io)) if io.kind() == std::io::ErrorKind::BrokenPipe
            )
    })
}
