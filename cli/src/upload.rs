//! `weir upload FILE…`: parts to the object store, `UploadReceived` to the log, and with
//! `--wait` the upload followed to its end.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Result;
use weir_events::{BadRows, Format, MaxBadRows, Owner, ReadOptions, SchemaInferred};
use weir_journal::Journal;
use weir_services::Store;
use weir_services::producer::{self, DEFAULT_PART_SIZE, Terminal, UploadRequest};

#[derive(Debug, clap::Args)]
pub struct UploadArgs {
    /// Files to upload (CSV, TSV, NDJSON, JSON, Parquet; optionally .gz/.zst); `-` reads
    /// standard input
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The file name weir records for standard input (`-`); default `stdin`
    #[arg(long, value_name = "NAME")]
    pub stdin_name: Option<String>,
    /// A human label for the dataset (also the source of a generated table name)
    #[arg(long)]
    pub label: Option<String>,
    /// The table name to register (fails if the owner already has one by that name)
    #[arg(long)]
    pub table: Option<String>,
    /// Declared format; the content has the last word
    #[arg(long, value_parser = parse_format)]
    pub format: Option<Format>,
    /// Text encoding of CSV/TSV/JSON by WHATWG label (utf-8, latin1, windows-1252,
    /// utf-16le, shift_jis, …); default: detected from the content
    #[arg(long, value_name = "NAME")]
    pub encoding: Option<String>,
    /// What happens to a row that does not fit: fail (the upload fails), reject (good
    /// rows register, bad ones go to a rejects file) or pad (the table widens; extra
    /// fields go to the rejects file). Default: fail with --table, reject without
    #[arg(long, value_name = "POLICY", value_parser = parse_bad_rows)]
    pub bad_rows: Option<BadRows>,
    /// A column's type, overriding the inferred one (CSV/TSV; repeatable):
    /// `--column amount=decimal(12,2) --column zip=utf8`; a value that does not fit
    /// is a bad row
    #[arg(long = "column", value_name = "NAME=TYPE", value_parser = parse_column)]
    pub columns: Vec<weir_events::ColumnOverride>,
    /// A content validator every record must pass: conversation-jsonl (each line a
    /// conversation with non-empty turns of role and content); statistics go to the
    /// catalog
    #[arg(long, value_name = "NAME")]
    pub validator: Option<String>,
    /// More bad rows than this fails the upload: a count (100) or a share (0.5%)
    #[arg(long, value_name = "N|SHARE", value_parser = parse_max_bad_rows)]
    pub max_bad_rows: Option<MaxBadRows>,
    /// Add a version to this dataset (yours) instead of creating a dataset
    #[arg(long, value_name = "ID")]
    pub dataset: Option<weir_events::DatasetId>,
    /// With --dataset: the version the new one derives from (default: the head of the
    /// branch)
    #[arg(long, value_name = "N", requires = "dataset")]
    pub parent: Option<u32>,
    /// With --dataset: the branch the new version goes on (default: main)
    #[arg(long, value_name = "NAME", requires = "dataset")]
    pub branch: Option<String>,
    /// Upload all FILEs as one version, registered together or not at all: one upload
    /// whose files must share one format and one schema (column names and types);
    /// their rows make one Parquet file, and every error names the file and line
    #[arg(long, conflicts_with = "api")]
    pub one_version: bool,
    /// Follow each upload to registered or failed
    #[arg(long)]
    pub wait: bool,
    /// One JSON object per file on stdout
    #[arg(long)]
    pub json: bool,
    /// The owner to upload as (`--as`: the same); with --dataset it needs write access
    /// to that dataset (its owner, or a write or admin grant)
    #[arg(
        long,
        visible_alias = "as",
        env = "WEIR_OWNER",
        default_value = "local"
    )]
    pub owner: Owner,
    /// Part size in bytes
    #[arg(long, default_value_t = DEFAULT_PART_SIZE)]
    pub part_size: usize,
    /// Object store: a directory or URL (default: the running system's)
    #[arg(long, env = "WEIR_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// Upload through the HTTP gateway at URL (presigned multipart flow) instead of
    /// writing to the store and the log directly; needs --token
    #[arg(long, env = "WEIR_API", value_name = "URL", requires = "token")]
    pub api: Option<String>,
    /// The API token for --api (`weir tokens create OWNER`); the owner is the token's
    #[arg(long, env = "WEIR_TOKEN", value_name = "TOKEN")]
    pub token: Option<String>,
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
}

fn parse_bad_rows(s: &str) -> Result<BadRows, String> {
    s.parse()
}

fn parse_column(s: &str) -> Result<weir_events::ColumnOverride, String> {
    s.parse()
}

fn parse_max_bad_rows(s: &str) -> Result<MaxBadRows, String> {
    s.parse()
}

/// `problems` of `weir upload --json`: encoding, policy, where every row went and the
/// first bad rows (null until the upload was inferred).
fn problems_json(inferred: Option<&SchemaInferred>) -> serde_json::Value {
    let Some(s) = inferred else {
        return serde_json::Value::Null;
    };
    serde_json::json!({
        "count": s.problem_count,
        "rows_read": s.quality.rows_read,
        "rows_registered": s.statistics.rows,
        "rejected": s.quality.rejected,
        "rejects": s.quality.rejects.as_ref().map(ToString::to_string),
        "bad_rows": s.quality.bad_rows.map(BadRows::as_str),
        "encoding": s.quality.encoding,
        "first": s.problems.iter().map(|p| serde_json::json!({
            "line": p.line, "column": p.column, "message": p.message,
        })).collect::<Vec<_>>(),
    })
}

/// The lines `weir upload --wait` prints under a registered upload with bad rows: the
/// same as `weir status` shows.
fn problems_lines(inferred: Option<&SchemaInferred>) -> String {
    let Some(s) = inferred.filter(|s| s.problem_count > 0) else {
        return String::new();
    };
    let q = weir_projections::QualityView::from(s);
    crate::views::quality_lines(&q, q.rejects.clone())
        .iter()
        .map(|l| format!("\n  {l}"))
        .collect()
}

fn progress_bar(shown: &str, size: u64, enabled: bool) -> indicatif::ProgressBar {
    if !enabled {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(size);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(shown.to_owned());
    bar
}

/// Standard input written to a temporary file, removed when dropped.
struct Spooled(PathBuf);

impl Spooled {
    fn stdin() -> Result<Self> {
        let path =
            std::env::temp_dir().join(format!("weir-stdin-{}", weir_events::UploadId::new()));
        let mut file = std::fs::File::create(&path)?;
        let spooled = Spooled(path);
        std::io::copy(&mut std::io::stdin().lock(), &mut file)?;
        file.sync_all()?;
        Ok(spooled)
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub async fn run(journal: &Journal, store: &Store, args: UploadArgs) -> Result<i32> {
    if let Some(d) = args.dataset {
        // Refused here before any byte moves; the inferrer checks again when it
        // reserves the version (a grant may be revoked meanwhile).
        weir_services::dataset::DatasetFacts::read(journal, d)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .allow(&args.owner, weir_events::DatasetAction::Upload)
            .map_err(|e| anyhow::anyhow!(e))?;
    }
    let mut any_failed = false;
    let show_progress = std::io::stderr().is_terminal() && !args.json;
    // Each file is an upload of its own, unless --one-version makes them one.
    let groups: Vec<Vec<&PathBuf>> = if args.one_version {
        vec![args.files.iter().collect()]
    } else {
        args.files.iter().map(|f| vec![f]).collect()
    };
    for group in groups {
        // Standard input is spooled to a file first: parts are written from a file.
        let mut spooled = Vec::new();
        let mut files: Vec<(PathBuf, String)> = Vec::with_capacity(group.len());
        for given in &group {
            if given.as_os_str() == "-" {
                let s = Spooled::stdin()?;
                let name = args
                    .stdin_name
                    .clone()
                    .unwrap_or_else(|| "stdin".to_owned());
                files.push((s.0.clone(), name));
                spooled.push(s);
            } else {
                let name = given
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| given.display().to_string());
                files.push(((*given).clone(), name));
            }
        }
        let given = group
            .iter()
            .map(|g| g.display().to_string())
            .collect::<Vec<_>>()
            .join(" + ");
        let filename = files
            .iter()
            .map(|(_, n)| n.as_str())
            .collect::<Vec<_>>()
            .join(" + ");
        let request = UploadRequest {
            owner: args.owner.clone(),
            filename: files[0].1.clone(),
            label: args.label.clone(),
            table_name: args.table.clone(),
            format: args.format,
            content_type: None,
            part_size: args.part_size,
            options: ReadOptions {
                encoding: args.encoding.clone(),
                bad_rows: args.bad_rows,
                max_bad_rows: args.max_bad_rows,
                columns: args.columns.clone(),
                validator: args.validator.clone(),
            },
            dataset: args.dataset,
            parent_version: args.parent,
            branch: args.branch.clone(),
        };
        let size = files
            .iter()
            .map(|(p, _)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum();
        let bar = progress_bar(&given, size, show_progress);
        let parts: Vec<(&Path, &str)> = files
            .iter()
            .map(|(p, n)| (p.as_path(), n.as_str()))
            .collect();
        let uploaded =
            producer::upload_files(journal, store, &parts, &request, |n| bar.set_position(n)).await;
        bar.finish_and_clear();
        drop(spooled);
        let upload = match uploaded {
            Ok(u) => u,
            Err(e) => {
                any_failed = true;
                report(
                    &args,
                    serde_json::json!({
                        "upload_id": null, "file": given, "status": "failed",
                        "dataset_id": null, "table_name": null, "row_count": null,
                        "failure": { "step": "upload", "reason": e.to_string() },
                    }),
                    format!("{given}: upload failed: {e}"),
                );
                continue;
            }
        };
        if !args.wait {
            report(
                &args,
                serde_json::json!({
                    "upload_id": upload.to_string(), "file": given, "status": "received",
                    "dataset_id": null, "table_name": null, "row_count": null, "failure": null,
                }),
                format!("{upload}  {filename}: received"),
            );
            continue;
        }
        // On a terminal, the step under way after the upload, as its events arrive.
        let steps = if show_progress {
            let spinner = indicatif::ProgressBar::new_spinner();
            spinner.enable_steady_tick(std::time::Duration::from_millis(120));
            spinner.set_message(format!("{filename}: combining the parts…"));
            spinner
        } else {
            indicatif::ProgressBar::hidden()
        };
        let (terminal, inferred) = producer::wait_watching(journal, upload, |kind| {
            use weir_events::EventKind as K;
            let next = match kind {
                K::PartsCombined => "inferring the schema and converting to Parquet…",
                K::SchemaInferred => "registering…",
                _ => return,
            };
            steps.set_message(format!("{filename}: {next}"));
        })
        .await?;
        steps.finish_and_clear();
        let problems = problems_json(inferred.as_ref());
        let (json, line) = match terminal {
            Terminal::Registered(r) => (
                serde_json::json!({
                    "upload_id": upload.to_string(), "file": given, "status": "registered",
                    "dataset_id": r.dataset.to_string(), "table_name": r.table_name.to_string(),
                    "row_count": r.statistics.rows, "failure": null, "problems": problems,
                }),
                format!(
                    "{upload}  {filename}: registered as {} ({}, {} rows){}",
                    r.table_name,
                    r.dataset,
                    r.statistics.rows,
                    problems_lines(inferred.as_ref())
                ),
            ),
            Terminal::Failed(f) => {
                any_failed = true;
                (
                    serde_json::json!({
                        "upload_id": upload.to_string(), "file": given, "status": "failed",
                        "dataset_id": null, "table_name": null, "row_count": null,
                        "failure": { "step": f.step.as_str(), "reason": f.reason },
                    }),
                    format!(
                        "{upload}  {filename}: failed at {}: {}",
                        f.step.as_str(),
                        f.reason
                    ),
                )
            }
            Terminal::Aborted(reason) => {
                any_failed = true;
                (
                    serde_json::json!({
                        "upload_id": upload.to_string(), "file": given, "status": "aborted",
                        "dataset_id": null, "table_name": null, "row_count": null,
                        "failure": { "step": "upload", "reason": reason },
                    }),
                    format!("{upload}  {filename}: aborted: {reason}"),
                )
            }
        };
        report(&args, json, line);
    }
    Ok(if any_failed { 1 } else { 0 })
}

fn report(args: &UploadArgs, json: serde_json::Value, line: String) {
    if args.json {
        println!("{json}");
    } else {
        println!("{line}");
    }
}
