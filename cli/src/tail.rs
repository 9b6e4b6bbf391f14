//! `weir tail`: live events, one readable line each or JSON, with filters; optionally
//! following one upload until its terminal event.

use std::io::Write;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use weir_events::{Envelope, Event, EventKind, Subject, Timestamp, UploadId};
use weir_journal::{Follow, Journal, ReadError, Recorded, Start};

#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// Only this upload's events (from its first event unless --from-seq/--since)
    #[arg(long, value_name = "ID")]
    pub upload: Option<UploadId>,
    /// Only events of this kind (e.g. failed, dataset_registered); repeatable
    #[arg(long = "kind", value_name = "KIND")]
    pub kinds: Vec<EventKind>,
    /// Start at this stream sequence
    #[arg(long, value_name = "N", conflicts_with = "since")]
    pub from_seq: Option<u64>,
    /// Start at this time: RFC 3339 (2026-11-22T08:00:00Z) or an age (90s, 15m, 2h, 1d)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// One JSON object per line, decoded from the log
    #[arg(long)]
    pub json: bool,
    /// With --upload: exit 0 on DatasetRegistered, 1 on Failed or UploadAborted
    #[arg(long, requires = "upload")]
    pub until_terminal: bool,
}

/// Parses an RFC 3339 time or an age such as `15m` into a timestamp.
pub fn parse_since(text: &str, now: Timestamp) -> Result<Timestamp> {
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    let (digits, unit) = text.split_at(
        text.trim_end_matches(|c: char| c.is_ascii_alphabetic())
            .len(),
    );
    let n: i64 = digits
        .parse()
        .with_context(|| format!("--since {text:?}: expected RFC 3339 (2026-11-22T08:00:00Z) or an age like 90s, 15m, 2h, 1d"))?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        other => bail!("--since {text:?}: unknown unit {other:?}; use s, m, h or d"),
    };
    Ok(Timestamp(now.0 - secs * 1_000_000))
}

fn filters(args: &TailArgs) -> Vec<Subject> {
    match (&args.upload, args.kinds.as_slice()) {
        (None, []) => vec![Subject::all()],
        (None, kinds) => kinds.iter().map(|k| Subject::kind_filter(*k)).collect(),
        (Some(up), []) => vec![Subject::upload_filter(*up)],
        (Some(up), kinds) => kinds
            .iter()
            .map(|k| Subject::new(&weir_events::Aggregate::Upload(*up), *k))
            .collect(),
    }
}

/// The whole event as JSON: envelope fields, stream position, and the payload under
/// `data` (without the variant wrapper; `kind` names it).
pub fn to_json(r: &Recorded) -> serde_json::Value {
    let e: &Envelope = &r.envelope;
    let data = match serde_json::to_value(&e.event) {
        Ok(serde_json::Value::Object(mut map)) if map.len() == 1 => map
            .values_mut()
            .next()
            .map(std::mem::take)
            .unwrap_or_default(),
        Ok(other) => other,
        Err(err) => serde_json::json!({ "error": err.to_string() }),
    };
    serde_json::json!({
        "seq": r.seq,
        "stored_at": r.stored_at.to_string(),
        "subject": r.subject,
        "kind": e.kind().as_str(),
        "event_id": e.event_id.to_string(),
        "aggregate": e.aggregate.to_string(),
        "occurred_at": e.occurred_at.to_string(),
        "actor": e.actor.to_string(),
        "causation_id": e.causation_id.map(|c| c.to_string()),
        "correlation_id": e.correlation_id.to_string(),
        "schema_version": e.schema_version,
        "data": data,
    })
}

/// `time  #seq  kind  aggregate  key fields`
pub fn to_line(r: &Recorded) -> String {
    let e = &r.envelope;
    format!(
        "{}  #{:<6} {:<19} {}  {}",
        e.occurred_at,
        r.seq,
        e.kind().as_str(),
        e.aggregate,
        e.event.summary()
    )
}

/// Runs the tail until Ctrl-C (exit 0), the end of stdout, or with `until_terminal` the
/// upload's terminal event. Returns the process exit code.
pub async fn run(journal: &Journal, args: TailArgs) -> Result<i32> {
    let start = match (args.from_seq, &args.since) {
        (Some(seq), _) => Start::Sequence(seq.max(1)),
        (None, Some(since)) => Start::Time(parse_since(since, Timestamp::now())?),
        (None, None) if args.upload.is_some() => Start::All,
        (None, None) => Start::New,
    };
    let mut events = Box::pin(
        journal
            .follow(Follow {
                filters: filters(&args),
                start,
            })
            .await
            .context("cannot follow the event log")?,
    );
    let mut stdout = std::io::stdout().lock();
    let ctrl_c = shutdown_signal();
    tokio::pin!(ctrl_c);
    loop {
        let item = tokio::select! {
            _ = &mut ctrl_c => return Ok(0),
            item = events.next() => item,
        };
        let Some(item) = item else {
            bail!("the event stream ended unexpectedly");
        };
        let recorded = match item {
            Ok(r) => r,
            Err(e @ ReadError::Decode { .. }) => {
                eprintln!("weir tail: skipping an event: {e}");
                continue;
            }
            Err(e) => return Err(e).context("reading the event log"),
        };
        let line = if args.json {
            to_json(&recorded).to_string()
        } else {
            to_line(&recorded)
        };
        if writeln!(stdout, "{line}")
            .and_then(|_| stdout.flush())
            .is_err()
        {
            return Ok(0); // the reader went away (e.g. `| head`)
        }
        if args.until_terminal {
            match &recorded.envelope.event {
                Event::DatasetRegistered(_) => return Ok(0),
                Event::Failed(_) | Event::UploadAborted(_) => return Ok(1),
                _ => {}
            }
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_rfc3339_and_ages() {
        let now: Timestamp = "2026-11-22T08:00:00Z".parse().unwrap();
        assert_eq!(
            parse_since("2026-11-22T07:00:00Z", now)
                .unwrap()
                .to_string(),
            "2026-11-22T07:00:00Z"
        );
        assert_eq!(
            parse_since("15m", now).unwrap().to_string(),
            "2026-11-22T07:45:00Z"
        );
        assert_eq!(
            parse_since("1d", now).unwrap().to_string(),
            "2026-11-21T08:00:00Z"
        );
        assert!(parse_since("yesterday", now).is_err());
        assert!(parse_since("5w", now).is_err());
    }
}
