//! `weir upload --api URL --token T`: the HTTP gateway's presigned multipart flow
//! (init → PUT each part → complete), then with `--wait` the status followed to its
//! end. Prints the same lines and JSON objects as the direct upload.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use crate::upload::UploadArgs;

/// How often `--wait` asks for the status.
const POLL: Duration = Duration::from_millis(250);

async fn checked(response: reqwest::Response, what: &str) -> Result<Value> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let reason = body["error"].as_str().unwrap_or("no reason given");
        bail!("{what}: HTTP {status}: {reason}");
    }
    Ok(body)
}

/// Sends one file; returns the upload id.
async fn send(
    http: &reqwest::Client,
    api: &str,
    token: &str,
    path: &Path,
    args: &UploadArgs,
    bar: &indicatif::ProgressBar,
) -> Result<String> {
    let shown = path.display().to_string();
    let mut file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("opening {shown}"))?;
    let size = file
        .metadata()
        .await
        .with_context(|| format!("reading {shown}"))?
        .len();
    let filename = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| shown.clone());
    let session = checked(
        http.post(format!("{api}/v1/uploads/multipart"))
            .bearer_auth(token)
            .json(&json!({"filename": filename, "size": size, "part_size": api_part_size(args.part_size)}))
            .send()
            .await
            .with_context(|| format!("reaching the gateway at {api}"))?,
        "opening the upload",
    )
    .await?;
    let upload = session["upload_id"]
        .as_str()
        .context("the gateway sent no upload id")?
        .to_owned();
    let mut parts = Vec::new();
    let mut sent = 0u64;
    for part in session["parts"]
        .as_array()
        .context("the gateway sent no part URLs")?
    {
        let number = part["number"].as_u64().context("part without a number")?;
        let len = part["size"].as_u64().context("part without a size")?;
        let url = part["url"].as_str().context("part without a URL")?;
        let mut chunk = vec![0u8; len as usize];
        file.read_exact(&mut chunk)
            .await
            .with_context(|| format!("reading part {number} of {shown}"))?;
        let response = http
            .put(url)
            .body(chunk)
            .send()
            .await
            .with_context(|| format!("sending part {number} of {shown}"))?;
        let etag = response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        checked(response, &format!("part {number} of {shown}")).await?;
        let etag = etag.with_context(|| format!("part {number}: the gateway sent no ETag"))?;
        parts.push(json!({"number": number, "etag": etag}));
        sent += len;
        bar.set_position(sent);
    }
    checked(
        http.post(format!("{api}/v1/uploads/{upload}/complete"))
            .bearer_auth(token)
            .json(&json!({
                "parts": parts,
                "label": args.label,
                "table_name": args.table,
                "format": args.format.map(|f| f.as_str()),
                "encoding": args.encoding,
                "bad_rows": args.bad_rows.map(|b| b.as_str()),
                "max_bad_rows": args.max_bad_rows.map(|m| match m {
                    weir_events::MaxBadRows::Rows(n) => n.to_string(),
                    weir_events::MaxBadRows::Ppm(p) => format!("{}%", f64::from(p) / 10_000.0),
                }),
                "validator": args.validator,
                "dataset": args.dataset.map(|d| d.to_string()),
                "parent_version": args.parent,
                "columns": (!args.columns.is_empty()).then(|| args
                    .columns
                    .iter()
                    .map(|c| format!("{}={}", c.name, c.data_type))
                    .collect::<Vec<_>>()
                    .join(";")),
            }))
            .send()
            .await
            .with_context(|| format!("completing {shown}"))?,
        "completing the upload",
    )
    .await?;
    Ok(upload)
}

/// Polls the upload's status until it is registered, failed or aborted.
async fn wait(http: &reqwest::Client, api: &str, token: &str, upload: &str) -> Result<Value> {
    loop {
        let status = checked(
            http.get(format!("{api}/v1/uploads/{upload}"))
                .bearer_auth(token)
                .send()
                .await
                .with_context(|| format!("reaching the gateway at {api}"))?,
            "reading the upload's status",
        )
        .await?;
        if matches!(
            status["status"].as_str(),
            Some("registered" | "failed" | "aborted")
        ) {
            return Ok(status);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Parts through the gateway: the CLI's default (one part, which suits the store) is
/// over what presigned parts allow, so the gateway's own default (8 MiB) is used unless
/// `--part-size` asked for something else; at most 5 GiB, the gateway's limit.
fn api_part_size(asked: usize) -> u64 {
    const API_DEFAULT: u64 = 8 << 20;
    const API_MAX: u64 = 5 << 30;
    if asked == weir_services::producer::DEFAULT_PART_SIZE {
        API_DEFAULT
    } else {
        (asked as u64).clamp(1, API_MAX)
    }
}

pub async fn run(args: UploadArgs) -> Result<i32> {
    let api = args.api.clone().context("--api needs a URL")?;
    let api = api.trim_end_matches('/').to_owned();
    let token = args.token.clone().context("--api needs --token")?;
    if args.branch.is_some() {
        anyhow::bail!("--branch is not available through --api yet: upload to the store directly");
    }
    let http = reqwest::Client::new();
    let show_progress = std::io::stderr().is_terminal() && !args.json;
    let mut any_failed = false;
    for path in &args.files {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let bar = if show_progress {
            let bar = indicatif::ProgressBar::new(size);
            bar.set_message(path.display().to_string());
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        let sent = send(&http, &api, &token, path, &args, &bar).await;
        bar.finish_and_clear();
        let file = path.display().to_string();
        let upload = match sent {
            Ok(u) => u,
            Err(e) => {
                any_failed = true;
                print(
                    &args,
                    json!({"upload_id": null, "file": file, "status": "failed", "dataset_id": null,
                    "table_name": null, "row_count": null, "failure": {"step": "upload", "reason": format!("{e:#}")}}),
                    format!("{file}: upload failed: {e:#}"),
                );
                continue;
            }
        };
        if !args.wait {
            print(
                &args,
                json!({"upload_id": upload, "file": file, "status": "received", "dataset_id": null,
                "table_name": null, "row_count": null, "failure": null}),
                format!("{upload}  {file}: received"),
            );
            continue;
        }
        let status = wait(&http, &api, &token, &upload).await?;
        let outcome = status["status"].as_str().unwrap_or("failed").to_owned();
        let failure = match outcome.as_str() {
            "registered" => Value::Null,
            "aborted" => json!({"step": "upload", "reason": status["abort_reason"]}),
            _ => json!({"step": status["failure"]["step"], "reason": status["failure"]["reason"]}),
        };
        any_failed |= outcome != "registered";
        let row_count = if outcome == "registered" {
            let dataset = status["dataset_id"].as_str().unwrap_or_default();
            checked(
                http.get(format!("{api}/v1/datasets/{dataset}"))
                    .bearer_auth(&token)
                    .send()
                    .await?,
                "reading the dataset",
            )
            .await?["row_count"]
                .clone()
        } else {
            Value::Null
        };
        let line = match outcome.as_str() {
            "registered" => format!(
                "{upload}  {file}: registered as {} ({}, {} rows)",
                status["table_name"].as_str().unwrap_or("?"),
                status["dataset_id"].as_str().unwrap_or("?"),
                row_count
            ),
            other => format!(
                "{upload}  {file}: {other}: {}",
                failure["reason"].as_str().unwrap_or("no reason given")
            ),
        };
        print(
            &args,
            json!({"upload_id": upload, "file": file, "status": outcome, "dataset_id": status["dataset_id"],
            "table_name": status["table_name"], "row_count": row_count, "failure": failure}),
            line,
        );
    }
    Ok(if any_failed { 1 } else { 0 })
}

fn print(args: &UploadArgs, json: Value, line: String) {
    if args.json {
        println!("{json}");
    } else {
        println!("{line}");
    }
}
