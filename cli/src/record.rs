//! `weir record`: writes the log (or part of it) as a fixture: one JSON object per
//! event with its stream position, its exact postcard bytes (hex) and the same event
//! in human-readable JSON. Tests replay such fixtures; the bytes prove that old
//! encodings keep decoding, the JSON lets a reader see what happened.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use weir_events::{Subject, UploadId};
use weir_journal::Journal;

#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    /// Where to write the fixture (JSON lines)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Only this upload's events
    #[arg(long, value_name = "ID")]
    pub upload: Option<UploadId>,
    /// One JSON object: {"events", "out"}
    #[arg(long)]
    pub json: bool,
}

pub async fn run(journal: &Journal, args: RecordArgs) -> Result<i32> {
    let filter = match args.upload {
        Some(up) => Subject::upload_filter(up),
        None => Subject::all(),
    };
    let events = journal.read_all(filter).await?;
    let stream = journal
        .jetstream()
        .get_stream(journal.stream_name())
        .await
        .context("opening the stream")?;
    let file = std::fs::File::create(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for r in &events {
        // The bytes exactly as stored, not a re-encoding of today's types.
        let raw = stream
            .get_raw_message(r.seq)
            .await
            .with_context(|| format!("reading sequence {}", r.seq))?;
        let line = serde_json::json!({
            "seq": r.seq,
            "subject": r.subject,
            "stored_at": r.stored_at.to_string(),
            "kind": r.envelope.kind().as_str(),
            "postcard": hex::encode(&raw.payload),
            "envelope": r.envelope,
        });
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    crate::say(
        args.json,
        serde_json::json!({"events": events.len(), "out": args.out.display().to_string()}),
        format!("recorded {} events to {}", events.len(), args.out.display()),
    );
    Ok(0)
}
