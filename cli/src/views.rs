//! `weir status`, `weir history`, `weir notifications` and `weir replay`: the read
//! models, and rebuilding them from the log.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use weir_events::{
    Aggregate, Envelope, Event, EventId, NotificationRead, Owner, Timestamp, UploadId,
};
use weir_journal::{AppendOutcome, Expect, Journal};
use weir_projections::{Db, EntityId, Until};

use crate::system::Runtime;

/// The projections database: the flag, else the running system's, else the embedded
/// default `<data dir>/weir.db`.
pub fn database_url(flag: Option<&str>, data_dir: &Path) -> String {
    match flag {
        Some(url) => url.to_owned(),
        None => Runtime::read(data_dir)
            .and_then(|rt| rt.database_url)
            .unwrap_or_else(|| data_dir.join("weir.db").display().to_string()),
    }
}

/// Opens the projections and, when they are the ones a live projector keeps up to
/// date, waits (up to 10 s) until it has applied everything the log held when the
/// command started, so a read follows the writes before it. A point-in-time database
/// (built by `weir replay --into`) is read as it is.
pub async fn open_fresh(url: &str, journal: &Journal, data_dir: &Path) -> Result<Db> {
    let db = Db::connect(url)
        .await
        .with_context(|| format!("opening projections at {url}"))?;
    if !Runtime::serves(data_dir, url) {
        return Ok(db);
    }
    let target = journal.last_sequence().await?;
    let projector = weir_projections::Projector::new(db.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let at = projector.checkpoint().await?;
        if at >= target {
            return Ok(db);
        }
        if Instant::now() >= deadline {
            eprintln!(
                "weir: projections are {} events behind the log; showing them as they are",
                target - at
            );
            return Ok(db);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The lines `weir status` and `weir datasets show` print about how the rows were read:
/// encoding, policy, where every row went, the first bad rows and the rejects file.
pub fn quality_lines(
    q: &weir_projections::QualityView,
    rejects_location: Option<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    if !q.encoding.is_empty() {
        out.push(format!(
            "encoding {} ({})",
            q.encoding,
            if q.encoding_detected {
                "detected"
            } else {
                "as asked"
            }
        ));
    }
    out.push(format!(
        "rows     {} read, {} registered, {} rejected (bad rows: {})",
        q.rows_read,
        q.rows_registered,
        q.rejected,
        q.bad_rows.as_deref().unwrap_or("pad")
    ));
    if q.problem_count > 0 {
        out.push(format!("warning  {} bad row(s):", q.problem_count));
        for p in &q.problems {
            out.push(format!(
                "  line {}{}: {}",
                p.line,
                p.column
                    .as_ref()
                    .map(|c| format!(", column {c:?}"))
                    .unwrap_or_default(),
                p.message
            ));
        }
        if q.problem_count > q.problems.len() as u64 {
            out.push(format!(
                "  … and {} more",
                q.problem_count - q.problems.len() as u64
            ));
        }
    }
    if let Some(location) = rejects_location {
        out.push(format!(
            "rejects  {location} ({} entries)",
            q.rejects_entries
        ));
    }
    if let Some(summary) = q.validation_summary() {
        out.push(format!("checked  {summary}"));
    }
    out
}

pub async fn status(db: &Db, id: UploadId, json: bool) -> Result<i32> {
    let Some(s) = weir_projections::upload_status(db, id).await? else {
        bail!("no upload {id}");
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(0);
    }
    println!("{}  {}  {} ({})", s.id, s.filename, s.status, s.phase);
    println!(
        "owner {}  size {} bytes in {} part(s)  received {}",
        s.owner, s.size_bytes, s.part_count, s.received_at
    );
    if let (Some(d), Some(t)) = (&s.dataset_id, &s.table_name) {
        println!("dataset {d}  table {t}");
    }
    for step in &s.steps {
        let took = step
            .duration_ms
            .map(|ms| format!("{ms} ms"))
            .unwrap_or_else(|| "running".into());
        println!(
            "  {:<9} {}  {:<8} {}",
            step.step,
            step.started_at,
            step.outcome.as_deref().unwrap_or("…"),
            took
        );
    }
    if let Some(f) = &s.failure {
        println!(
            "failed at {} after {} attempt(s): {}",
            f.step, f.attempts, f.reason
        );
    }
    if let Some(reason) = &s.abort_reason {
        println!("aborted: {reason}");
    }
    if let Some(q) = &s.quality {
        for line in quality_lines(q, q.rejects.clone()) {
            println!("{line}");
        }
    }
    Ok(0)
}

pub async fn history(db: &Db, id: EntityId, json: bool) -> Result<i32> {
    let entries = weir_projections::history(db, id).await?;
    if entries.is_empty() {
        bail!("no events for {id}");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(0);
    }
    for e in &entries {
        let cause = e
            .causation_id
            .as_deref()
            .map(|c| format!("  ← {c}"))
            .unwrap_or_default();
        println!(
            "#{:<6} {}  {:<21} {:<10} {}{cause}",
            e.seq, e.stored_at, e.kind, e.actor, e.summary
        );
    }
    Ok(0)
}

#[derive(Debug, clap::Args)]
pub struct NotificationsArgs {
    /// Whose feed
    #[arg(long, env = "WEIR_OWNER", default_value = "local")]
    pub owner: Owner,
    /// Only unread notifications
    #[arg(long)]
    pub unread: bool,
    /// Mark this notification read (an event in the log)
    #[arg(long, value_name = "ID")]
    pub mark_read: Option<EventId>,
    #[arg(long)]
    pub json: bool,
}

pub async fn notifications(
    journal: &Journal,
    db_url: &str,
    data_dir: &Path,
    args: NotificationsArgs,
) -> Result<i32> {
    if let Some(id) = args.mark_read {
        let db = open_fresh(db_url, journal, data_dir).await?;
        let mine = weir_projections::notifications(&db, &args.owner, false).await?;
        let Some(n) = mine.iter().find(|n| n.id == id.to_string()) else {
            bail!("owner {} has no notification {id}", args.owner);
        };
        if n.read {
            println!("{id} was already read");
            return Ok(0);
        }
        let upload: UploadId = n.upload_id.parse()?;
        let env = Envelope::new(
            Aggregate::Owner(args.owner.clone()),
            args.owner.clone(),
            upload,
            Some(id),
            Event::NotificationRead(NotificationRead {
                owner: args.owner.clone(),
                notification: id,
            }),
        );
        match journal.append(&env, Expect::Any).await? {
            AppendOutcome::Appended { .. } | AppendOutcome::WrongLastSequence => {}
        }
        println!("{id} marked read");
        return Ok(0);
    }
    let db = open_fresh(db_url, journal, data_dir).await?;
    let list = weir_projections::notifications(&db, &args.owner, args.unread).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else if list.is_empty() {
        println!(
            "no {}notifications for {}",
            if args.unread { "unread " } else { "" },
            args.owner
        );
    } else {
        for n in &list {
            println!(
                "{} {}  {}  {:<14} {}",
                if n.read { " " } else { "*" },
                n.id,
                n.created_at,
                n.kind,
                n.message
            );
        }
    }
    Ok(0)
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Build the catalog as it was after this stream sequence (needs --into)
    #[arg(
        long,
        value_name = "N",
        conflicts_with = "until_time",
        requires = "into"
    )]
    pub until_seq: Option<u64>,
    /// Build the catalog as it was at this time, RFC 3339 (needs --into)
    #[arg(long, value_name = "TIME", requires = "into")]
    pub until_time: Option<Timestamp>,
    /// The separate database for a point-in-time build (a file path or postgres://…);
    /// must be new or empty
    #[arg(long, value_name = "URL")]
    pub into: Option<String>,
    /// One JSON object: {"seq", "into"} or {"seq", "seconds", "attempts"}
    #[arg(long)]
    pub json: bool,
}

pub async fn replay(journal: &Journal, db_url: &str, args: ReplayArgs) -> Result<i32> {
    let until = match (args.until_seq, args.until_time) {
        (Some(seq), _) => Some(Until::Sequence(seq)),
        (None, Some(t)) => Some(Until::Time(t)),
        (None, None) => None,
    };
    match (until, args.into) {
        (Some(until), Some(into)) => {
            let target = Db::connect(&into)
                .await
                .with_context(|| format!("opening {into}"))?;
            let seq = weir_projections::build_until(journal, &target, until).await?;
            crate::say(
                args.json,
                serde_json::json!({"seq": seq, "into": into}),
                format!(
                    "built the projections as of sequence {seq} into {into}; the live ones are untouched"
                ),
            );
        }
        (None, Some(_)) => bail!(
            "--into needs --until-seq or --until-time (a full rebuild swaps the live tables in place)"
        ),
        (None, None) => {
            let db = Db::connect(db_url)
                .await
                .with_context(|| format!("opening {db_url}"))?;
            let started = Instant::now();
            let report = weir_projections::replay(journal, &db).await?;
            let seconds = started.elapsed().as_secs_f64();
            crate::say(
                args.json,
                serde_json::json!({"seq": report.seq, "seconds": seconds, "attempts": report.attempts}),
                format!(
                    "rebuilt every projection from sequence 1 to {} and swapped it in ({seconds:.1} s, {} attempt(s))",
                    report.seq, report.attempts
                ),
            );
        }
        (Some(_), None) => unreachable!("clap requires --into"),
    }
    Ok(0)
}
