//! The event layer: conditional appends with many in flight, then the projector on
//! SQLite and Postgres — applying the log from sequence 1 into fresh tables
//! (`catch_up`) and a full `replay` (shadow tables rebuilt from sequence 1, swapped in).
//!
//! The log is the lifecycle of `uploads` uploads, four events each (`UploadReceived`,
//! `PartsCombined`, `SchemaInferred`, `DatasetRegistered`), appended as the services do:
//! the first with "aggregate empty", the next ones expecting the previous sequence.
//! Uploads run concurrently (one chain each), so up to `IN_FLIGHT` appends are in
//! flight at once.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use weir_events::{
    Aggregate, BadRows, ColumnStats, Compression, DatasetId, DatasetRegistered, Envelope, Event,
    Field, Format, ObjectKey, Owner, PartManifest, PartsCombined, Quality, Schema, SchemaInferred,
    Sha256, StatValue, Statistics, TableName, UploadId, UploadReceived,
};
use weir_journal::{AppendOutcome, Expect, Journal, Role};

use crate::pipeline::Nats;
use crate::{RunArgs, Sizes};

/// Appends in flight at once (JETSTREAM.md: 512–1024 is where throughput levels off).
const IN_FLIGHT: usize = 512;

#[derive(Debug, Clone, serde::Serialize)]
pub struct EventFigures {
    /// The nats-server shape the appends ran on (`sync_interval`, nodes).
    pub nats: String,
    pub events: u64,
    pub in_flight: usize,
    pub append_seconds: f64,
    pub appends_per_s: f64,
    /// The whole log read and decoded once, as the projector reads it, with nothing
    /// applied: the ceiling a replay cannot pass on this machine.
    pub read_seconds: f64,
    pub read_events_per_s: f64,
    /// CPU seconds of this process while reading (nats-server's not in it).
    pub read_cpu_seconds: f64,
    pub projections: Vec<ProjectorFigures>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ProjectorFigures {
    pub database: String,
    /// `catch_up` into fresh live tables from sequence 1.
    pub apply_seconds: f64,
    pub apply_events_per_s: f64,
    /// `replay`: shadow tables from sequence 1, then the swap.
    pub replay_seconds: f64,
    pub replay_events_per_s: f64,
    /// CPU seconds (user + system) of this process during each phase: the projector's
    /// own work, which a loaded machine changes far less than the wall time. The
    /// database server's CPU (Postgres) is not in it.
    pub apply_cpu_seconds: f64,
    pub replay_cpu_seconds: f64,
}

pub async fn run(args: &RunArgs, sizes: &Sizes) -> Result<EventFigures> {
    let dir = args.out.join("events");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let nats = Nats::start(&dir, &args.nats_shape())?;
    nats.set_up().await?;
    // Each event kind is appended by the user whose service produces it, as in `weir up`.
    let writers = [
        nats.connect(Role::Gateway).await?,
        nats.connect(Role::Combiner).await?,
        nats.connect(Role::Inferrer).await?,
        nats.connect(Role::Registrar).await?,
    ];
    let journal = nats.connect(Role::Projector).await?;
    let owner: Owner = "bench".parse()?;

    eprintln!(
        "bench: appending {} events ({IN_FLIGHT} in flight) …",
        sizes.event_uploads * 4
    );
    // One append in flight per chain.
    let chains = IN_FLIGHT;
    let t = Instant::now();
    let results: Vec<Result<u64>> = futures::stream::iter(0..sizes.event_uploads)
        .map(|n| {
            let writers = &writers;
            let owner = owner.clone();
            async move { lifecycle(writers, &owner, n).await }
        })
        .buffer_unordered(chains)
        .collect()
        .await;
    let append_seconds = t.elapsed().as_secs_f64();
    let mut events = 0;
    for r in results {
        events += r?;
    }
    let last = journal.last_sequence().await?;
    if last != events {
        bail!("the stream holds {last} events, {events} were appended");
    }
    let appends_per_s = events as f64 / append_seconds;
    eprintln!(
        "bench: {events} conditional appends in {append_seconds:.2} s = {appends_per_s:.0}/s"
    );

    let (read_seconds, read_cpu_seconds) = read_log(&journal, events).await?;
    let read_events_per_s = events as f64 / read_seconds;
    eprintln!(
        "bench: the log read and decoded alone: {read_events_per_s:.0} events/s ({read_cpu_seconds:.2} CPU s in-process)"
    );

    let mut projections = Vec::new();
    let sqlite = dir.join("projections.db");
    projections.push(project(&journal, "sqlite", &sqlite.display().to_string(), events).await?);
    match fresh_postgres(&args.postgres).await {
        Ok((url, name)) => {
            let figures = project(&journal, "postgres", &url, events).await;
            drop_postgres(&args.postgres, &name).await;
            projections.push(figures?);
        }
        Err(e) => eprintln!("bench: Postgres skipped: {e:#}"),
    }
    drop(journal);
    nats.stop();
    Ok(EventFigures {
        nats: args.nats_shape().label(),
        events,
        in_flight: IN_FLIGHT,
        append_seconds,
        appends_per_s,
        read_seconds,
        read_events_per_s,
        read_cpu_seconds,
        projections,
    })
}

/// Follows the log from sequence 1 the way the projector does (`Journal::follow_chunks`:
/// an ordered consumer, every event decoded, in chunks of what has arrived) until
/// `events` have arrived; returns the wall and CPU seconds.
async fn read_log(journal: &Journal, events: u64) -> Result<(f64, f64)> {
    let t = Instant::now();
    let cpu = cpu_seconds();
    let mut follow = std::pin::pin!(
        journal
            .follow_chunks(
                weir_journal::Follow {
                    filters: Vec::new(),
                    start: weir_journal::Start::All,
                },
                512,
            )
            .await?
    );
    let mut seen = 0u64;
    while seen < events {
        let Some(chunk) = follow.next().await else {
            bail!("the log ended after {seen} of {events} events");
        };
        for item in chunk {
            let recorded = item?;
            seen += 1;
            if recorded.seq != seen {
                bail!("read sequence {} where {seen} was expected", recorded.seq);
            }
        }
    }
    Ok((t.elapsed().as_secs_f64(), cpu_seconds() - cpu))
}

async fn project(
    journal: &Journal,
    name: &str,
    url: &str,
    events: u64,
) -> Result<ProjectorFigures> {
    let db = weir_projections::Db::connect(url)
        .await
        .with_context(|| format!("opening {name} projections at {url}"))?;
    eprintln!("bench: projector on {name}: applying {events} events …");
    let t = Instant::now();
    let cpu = cpu_seconds();
    let reached = weir_projections::catch_up(journal, &db).await?;
    let apply_seconds = t.elapsed().as_secs_f64();
    let apply_cpu_seconds = cpu_seconds() - cpu;
    if reached != events {
        bail!("{name}: catch_up reached {reached}, expected {events}");
    }
    eprintln!(
        "bench: projector on {name}: applied in {apply_seconds:.2} s; reading every row for the comparison …"
    );
    let applied = weir_projections::snapshot(&db, weir_projections::Tables::Live).await?;
    eprintln!("bench: projector on {name}: replaying …");
    let t = Instant::now();
    let cpu = cpu_seconds();
    let report = weir_projections::replay(journal, &db).await?;
    let replay_seconds = t.elapsed().as_secs_f64();
    let replay_cpu_seconds = cpu_seconds() - cpu;
    if report.seq != events {
        bail!("{name}: replay reached {}, expected {events}", report.seq);
    }
    // A fast replay that wrote other rows would be worthless: compare every row.
    let replayed = weir_projections::snapshot(&db, weir_projections::Tables::Live).await?;
    if replayed != applied {
        bail!(
            "{name}: the replayed rows differ from the applied ones (digest {} vs {})",
            replayed.digest(),
            applied.digest()
        );
    }
    eprintln!(
        "bench: {name}: replay equals apply: {} rows, digest {}",
        applied.row_count(),
        &applied.digest()[..16]
    );
    db.close().await;
    let f = ProjectorFigures {
        database: name.to_owned(),
        apply_seconds,
        apply_events_per_s: events as f64 / apply_seconds,
        replay_seconds,
        replay_events_per_s: events as f64 / replay_seconds,
        apply_cpu_seconds,
        replay_cpu_seconds,
    };
    eprintln!(
        "bench: {name}: apply {:.0} events/s ({:.2} CPU s in-process), replay {:.0} events/s ({:.2} CPU s)",
        f.apply_events_per_s, f.apply_cpu_seconds, f.replay_events_per_s, f.replay_cpu_seconds
    );
    Ok(f)
}

/// User + system CPU seconds of this process so far (Linux `/proc/self/stat`, in clock
/// ticks of 1/100 s); NaN where that cannot be read.
pub(crate) fn cpu_seconds() -> f64 {
    cpu_seconds_of("self")
}

/// [`cpu_seconds`] of the process `pid` (`"self"` or a number), e.g. the nats-server child.
pub(crate) fn cpu_seconds_of(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the command name, which is in parentheses and may hold spaces:
    // utime and stime are the 14th and 15th fields of the whole line.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => (user + system) / 100.0,
        _ => f64::NAN,
    }
}

/// Creates a database of its own for this run on the Postgres server at `server`.
async fn fresh_postgres(server: &str) -> Result<(String, String)> {
    let name = format!(
        "weir_bench_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
    );
    let admin = weir_projections::Db::open(server).await?;
    // The name is ours (pid and time), not input.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(admin.pool())
        .await
        .context("creating the benchmark database")?;
    admin.close().await;
    let base = server.rsplit_once('/').map(|(b, _)| b).unwrap_or(server);
    Ok((format!("{base}/{name}"), name))
}

async fn drop_postgres(server: &str, name: &str) {
    if let Ok(admin) = weir_projections::Db::open(server).await {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(admin.pool())
        .await;
        admin.close().await;
    }
}

fn schema() -> Schema {
    let f = |name: &str, t: &str| Field {
        name: name.to_owned(),
        original_name: None,
        data_type: t.to_owned(),
        nullable: true,
    };
    Schema {
        fields: vec![
            f("id", "Int64"),
            f("user_id", "Int64"),
            f("amount", "Float64"),
            f("score", "Float64"),
            f("created_at", "Timestamp(µs)"),
            f("updated_at", "Timestamp(µs, \"UTC\")"),
            f("country", "Utf8"),
            f("status", "Utf8"),
            f("name", "Utf8"),
            f("comment", "Utf8"),
        ],
    }
}

fn statistics(rows: u64) -> Statistics {
    Statistics {
        rows,
        columns: schema()
            .fields
            .into_iter()
            .map(|f| ColumnStats {
                name: f.name,
                null_count: 0,
                min: Some(StatValue::Int(1)),
                max: Some(StatValue::Int(rows as i64)),
            })
            .collect(),
    }
}

/// Appends one upload's four events, each conditional on the one before.
async fn lifecycle(writers: &[Journal; 4], owner: &Owner, n: usize) -> Result<u64> {
    let upload = UploadId::new();
    let dataset = DatasetId::for_upload(upload);
    let aggregate = Aggregate::Upload(upload);
    let sha = Sha256([n as u8; 32]);
    let parquet = ObjectKey::parquet(dataset, 1);
    let events = [
        Event::UploadReceived(UploadReceived {
            owner: owner.clone(),
            filename: format!("file_{n}.csv"),
            content_type: Some("text/csv".into()),
            format: None,
            label: None,
            table_name: None,
            size: 4096,
            parts: vec![PartManifest {
                number: 1,
                size: 4096,
                sha256: sha,
            }],
            dataset: None,
            parent_version: None,
            branch: None,
            options: Default::default(),
            more_files: Vec::new(),
        }),
        Event::PartsCombined(PartsCombined {
            blob: ObjectKey::blob(&sha),
            size: 4096,
            sha256: sha,
            deduplicated: false,
            more_blobs: Vec::new(),
        }),
        Event::SchemaInferred(SchemaInferred {
            format: Format::Csv,
            compression: Compression::None,
            dataset,
            version: 1,
            parquet: parquet.clone(),
            parquet_size: 3000,
            rewritten: true,
            schema: schema(),
            statistics: statistics(40),
            problems: vec![],
            problem_count: 0,
            quality: Quality {
                encoding: "UTF-8".into(),
                encoding_detected: true,
                bad_rows: Some(BadRows::Reject),
                rows_read: 40,
                ..Quality::default()
            },
        }),
        Event::DatasetRegistered(DatasetRegistered {
            dataset,
            version: 1,
            parent_version: None,
            owner: owner.clone(),
            table_name: TableName::derive(&format!("file_{n}")),
            label: None,
            schema: schema(),
            parquet,
            parquet_size: 3000,
            statistics: statistics(40),
            schema_diff: None,
            branch: None,
        }),
    ];
    let mut expect = Expect::Empty;
    let mut cause = None;
    let mut appended = 0;
    for (journal, event) in writers.iter().zip(events) {
        let env = Envelope::new(aggregate.clone(), owner.clone(), upload, cause, event);
        match journal.append(&env, expect).await? {
            AppendOutcome::Appended { seq, .. } => {
                expect = Expect::LastSequence(seq);
                cause = Some(env.event_id);
                appended += 1;
            }
            AppendOutcome::WrongLastSequence => {
                bail!("append to {upload} lost a race it should not")
            }
        }
    }
    Ok(appended)
}
