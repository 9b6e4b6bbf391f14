//! `weir upload FILE…`: parts to the object store, `UploadReceived` to the log, and with
//! `--wait` the upload followed to its end.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Result;
use weir_events::{Format, Owner};
use weir_journal::Journal;
use weir_services::Store;
use weir_services::producer::{self, DEFAULT_PART_SIZE, Terminal, UploadRequest};

#[derive(Debug, clap::Args)]
pub struct UploadArgs {
    /// Files to upload (CSV, TSV, NDJSON, JSON, Parquet; optionally .gz/.zst)
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// A human label for the dataset (also the source of a generated table name)
    #[arg(long)]
    pub label: Option<String>,
    /// The table name to register (fails if the owner already has one by that name)
    #[arg(long)]
    pub table: Option<String>,
    /// Declared format; the content has the last word
    #[arg(long, value_parser = parse_format)]
    pub format: Option<Format>,
    /// Follow each upload to registered or failed
    #[arg(long)]
    pub wait: bool,
    /// One JSON object per file on stdout
    #[arg(long)]
    pub json: bool,
    /// The owner to upload as
    #[arg(long, env = "WEIR_OWNER", default_value = "local")]
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

fn progress_bar(path: &Path, size: u64, enabled: bool) -> indicatif::ProgressBar {
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
    bar.set_message(path.display().to_string());
    bar
}

pub async fn run(journal: &Journal, store: &Store, args: UploadArgs) -> Result<i32> {
    let mut any_failed = false;
    let show_progress = std::io::stderr().is_terminal() && !args.json;
    for path in &args.files {
        let filename = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let request = UploadRequest {
            owner: args.owner.clone(),
            filename: filename.clone(),
            label: args.label.clone(),
            table_name: args.table.clone(),
            format: args.format,
            content_type: None,
            part_size: args.part_size,
        };
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let bar = progress_bar(path, size, show_progress);
        let uploaded =
            producer::upload_file(journal, store, path, &request, |n| bar.set_position(n)).await;
        bar.finish_and_clear();
        let upload = match uploaded {
            Ok(u) => u,
            Err(e) => {
                any_failed = true;
                report(
                    &args,
                    serde_json::json!({
                        "upload_id": null, "file": path.display().to_string(), "status": "failed",
                        "dataset_id": null, "table_name": null, "row_count": null,
                        "failure": { "step": "upload", "reason": e.to_string() },
                    }),
                    format!("{}: upload failed: {e}", path.display()),
                );
                continue;
            }
        };
        if !args.wait {
            report(
                &args,
                serde_json::json!({
                    "upload_id": upload.to_string(), "file": path.display().to_string(), "status": "received",
                    "dataset_id": null, "table_name": null, "row_count": null, "failure": null,
                }),
                format!("{upload}  {filename}: received"),
            );
            continue;
        }
        let (json, line) = match producer::wait(journal, upload).await? {
            Terminal::Registered(r) => (
                serde_json::json!({
                    "upload_id": upload.to_string(), "file": path.display().to_string(), "status": "registered",
                    "dataset_id": r.dataset.to_string(), "table_name": r.table_name.to_string(),
                    "row_count": r.statistics.rows, "failure": null,
                }),
                format!(
                    "{upload}  {filename}: registered as {} ({}, {} rows)",
                    r.table_name, r.dataset, r.statistics.rows
                ),
            ),
            Terminal::Failed(f) => {
                any_failed = true;
                (
                    serde_json::json!({
                        "upload_id": upload.to_string(), "file": path.display().to_string(), "status": "failed",
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
                        "upload_id": upload.to_string(), "file": path.display().to_string(), "status": "aborted",
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
