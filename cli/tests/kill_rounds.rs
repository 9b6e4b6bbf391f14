//! Every service SIGKILLed at random points: the combiner, inferrer and registrar run as
//! `weir serve <service>` processes (each as its own NATS user), uploads go in in waves,
//! and each round a random service is killed with SIGKILL at a random moment and
//! started again. A killed step's event is redelivered once its ack wait runs out.
//! Each wave holds good files, malformed ones (`Failed` at the infer step) and ones
//! asking for the same table name (the first ever registers, the rest fail at the
//! register step, whose compensation removes their Parquet), so that failures and
//! compensations are killed too.
//!
//! Once nothing is in flight: every upload acknowledged is in the log and ends exactly
//! once, as expected; no duplicate effect (at most one `PartsCombined`,
//! `SchemaInferred`, `DatasetRegistered` and table-name claim per upload, no
//! compensation recorded twice); every registered version's Parquet is in the store;
//! every failure of a step recorded the same compensation (none lost to a kill) and each
//! removal it records holds; the stream lost no sequence; the live projections (a
//! projector in this process) equal a rebuild.
//!
//! The default run has 8 rounds; `WEIR_SOAK=1` (`scripts/test --soak`) 50.
//! `WEIR_SEED=<n>` replays a run's choices of victim and moment.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use weir_events::*;
use weir_journal::Role;
use weir_journal::auth::Passwords;
use weir_testkit::NatsServer;

mod support;
use support::{Checked, Pipeline, Projections, Rng, Setup, log_to_stderr, request, soak, within};

/// Uploads per round: good ones; malformed ones (they fail at the infer step); and
/// ones asking for the table name `clash` (the first ever registers, the others fail
/// at the register step, whose compensation removes their Parquet).
const GOOD: usize = 20;
const MALFORMED: usize = 2;
const CLASHING: usize = 3;

/// One `weir serve <service>` process.
struct Service {
    name: &'static str,
    child: Child,
}

/// How the test starts a service: the pipeline's NATS server, store and data dir.
struct Launcher {
    url: String,
    passwords: Passwords,
    data_dir: PathBuf,
    store: PathBuf,
}

impl Launcher {
    /// Starts `weir serve <name>` and waits for its ready line.
    async fn start(&self, name: &'static str) -> Service {
        let role = Role::of_service(name).expect("a service role");
        let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
        command
            .env_remove("NATS_URL")
            .env_remove("WEIR_DATA_DIR")
            .env(
                role.password_var(),
                self.passwords.credentials(role).password(),
            )
            .args(["serve", name, "--nats-url", &self.url])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--store")
            .arg(&self.store)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // What a killed service said is noise unless asked for (WEIR_LOG).
            .stderr(match std::env::var_os("WEIR_LOG") {
                Some(_) => Stdio::inherit(),
                None => Stdio::null(),
            })
            .kill_on_drop(true);
        let mut child = command.spawn().expect("start weir serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("weir serve {name}: no ready line within 30 s"))
            .unwrap()
            .unwrap_or_else(|| panic!("weir serve {name} exited before ready"));
        assert_eq!(line, format!("ready {name}"));
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Service { name, child }
    }
}

/// A malformed NDJSON file (its third record does not parse) that `bad_rows: fail`
/// turns into `Failed` at the infer step; `i` makes its content, so its blob, unique.
fn bad_file(dir: &std::path::Path, i: usize) -> PathBuf {
    let p = dir.join(format!("bad{i}.ndjson"));
    std::fs::write(
        &p,
        format!("{{\"a\": {i}}}\n{{\"a\": 2}}\n{{\"a\": 3,,}}\n"),
    )
    .unwrap();
    p
}

/// Uploads that have ended so far.
async fn ended(reader: &weir_journal::Journal) -> usize {
    let mut n = 0;
    for kind in [
        EventKind::DatasetRegistered,
        EventKind::Failed,
        EventKind::UploadAborted,
    ] {
        n += reader
            .read_all(Subject::kind_filter(kind))
            .await
            .map(|l| l.len())
            .unwrap_or(0);
    }
    n
}

async fn kill_rounds(rounds: usize) {
    log_to_stderr();
    let started = Instant::now();
    let mut rng = Rng::from_env();
    let nats = NatsServer::start_with_users();
    let passwords = nats.passwords().unwrap().clone();
    let sys = Pipeline::start_with(
        &nats.url(),
        &passwords,
        Setup {
            replicas: 1,
            projections: Projections::Sqlite,
            services_here: false,
        },
    )
    .await;
    let launcher = Launcher {
        url: nats.url(),
        passwords,
        data_dir: sys.dir.path().join("data"),
        store: sys.store_dir(),
    };
    let mut services = Vec::new();
    // The services killed: every step of the pipeline.
    for name in support::STEPS {
        services.push(launcher.start(name).await);
    }
    let in_dir = sys.dir.path().join("in");
    let acked = Arc::new(AtomicUsize::new(0));
    let (_open, gate) = tokio::sync::watch::channel(true);
    let mut waves = Vec::new();
    let (mut launched, mut max_in_flight) = (0usize, 0usize);
    let mut kills: BTreeMap<&str, usize> = BTreeMap::new();
    for round in 0..rounds {
        let per_round = GOOD + CLASHING;
        let good = sys.files_from(round * per_round, per_round);
        let mut files: Vec<_> = good
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut r = request(p);
                if i >= GOOD {
                    r.table_name = Some("clash".parse().unwrap());
                }
                (p.clone(), r, false)
            })
            .collect();
        for b in 0..MALFORMED {
            let p = bad_file(&in_dir, round * MALFORMED + b);
            let mut r = request(&p);
            r.options.bad_rows = Some(BadRows::Fail);
            files.push((p, r, false));
        }
        launched += files.len();
        waves.push(sys.upload_requests(files, acked.clone(), gate.clone()));
        // A random moment: while the wave is being combined, inferred or registered.
        tokio::time::sleep(Duration::from_millis(rng.below(800))).await;
        max_in_flight = max_in_flight.max(launched.saturating_sub(ended(&sys.reader).await));
        let victim = rng.below(services.len() as u64) as usize;
        let name = services[victim].name;
        let child = &mut services[victim].child;
        child.start_kill().expect("SIGKILL");
        child.wait().await.unwrap();
        *kills.entry(name).or_default() += 1;
        // Sometimes down for a while, so its events queue up.
        tokio::time::sleep(Duration::from_millis(rng.below(2) * rng.below(500))).await;
        services[victim] = launcher.start(name).await;
    }
    let mut ids = Vec::new();
    let mut retries = 0;
    for wave in waves {
        let (wave_ids, r) = wave.await.unwrap();
        ids.extend(wave_ids);
        retries += r;
    }
    let store = sys.store.clone();
    // A killed step comes back after the ack wait (30 s), plus its backoff.
    let Checked {
        registered,
        failed,
        log,
        dir: _dir, // the store stays until the checks below are done
    } = sys.check(&ids, Duration::from_secs(150)).await;
    assert_eq!(retries, 0, "NATS stayed up: no upload needed a retry");
    assert_eq!(
        (registered, failed),
        (rounds * GOOD + 1, rounds * (MALFORMED + CLASHING) - 1)
    );

    // No duplicate effect, every effect in place, every compensation complete.
    let mut by_upload: BTreeMap<UploadId, Vec<&weir_journal::Recorded>> = BTreeMap::new();
    let mut claims: BTreeMap<UploadId, usize> = BTreeMap::new();
    for r in &log {
        match (&r.envelope.aggregate, &r.envelope.event) {
            (Aggregate::Upload(u), _) => by_upload.entry(*u).or_default().push(r),
            (_, Event::TableNameClaimed(c)) => *claims.entry(c.upload).or_default() += 1,
            _ => {}
        }
    }
    let (mut compensations, mut late, mut removals_checked) = (0, 0, 0);
    // What each step's failures recorded as compensation: the same for every failure
    // of a step, or one was lost.
    let mut shapes: BTreeMap<String, BTreeMap<Vec<String>, usize>> = BTreeMap::new();
    for (u, events) in &by_upload {
        assert!(
            claims.get(u).copied().unwrap_or(0) <= 1,
            "{u} claimed a table name {} times",
            claims[u]
        );
        let end = events
            .iter()
            .position(|r| support::terminal(r.envelope.kind()))
            .expect("checked: every upload ended");
        match &events[end].envelope.event {
            Event::DatasetRegistered(d) => {
                assert_eq!(claims.get(u), Some(&1), "{u}: registered without one claim");
                assert!(
                    store.exists(&d.parquet).await.unwrap().is_some(),
                    "{u}: registered {} is not in the store",
                    d.parquet
                );
                assert_eq!(events.len(), end + 1, "{u}: events after DatasetRegistered");
            }
            Event::Failed(f) => {
                let expected = match f.step {
                    Step::Infer => "bad",
                    Step::Register => "clash",
                    _ => "(no failure expected at this step)",
                };
                assert!(f.reason.contains(expected), "{u}: {f:?}");
                let mut actions = Vec::new();
                for r in &events[end + 1..] {
                    let Event::Compensated(c) = &r.envelope.event else {
                        panic!("{u}: {:?} after Failed", r.envelope.kind());
                    };
                    assert_eq!(c.step, f.step, "{u}");
                    compensations += 1;
                    // Completed by a redelivery, after the ack wait (µs).
                    if r.stored_at.0 - events[end].stored_at.0 > 20_000_000 {
                        late += 1;
                    }
                    let removed = match &c.action {
                        CompensationAction::BlobRemoved { blob } => Some(blob),
                        CompensationAction::ParquetRemoved { parquet } => Some(parquet),
                        CompensationAction::RejectsRemoved { rejects } => Some(rejects),
                        _ => None,
                    };
                    if let Some(key) = removed {
                        assert_eq!(
                            store.exists(key).await.unwrap(),
                            None,
                            "{u}: compensation says {key} removed, but it is there"
                        );
                        removals_checked += 1;
                    }
                    let kind = format!("{:?}", c.action);
                    let kind = kind.split([' ', '{']).next().unwrap_or_default().to_owned();
                    assert!(!actions.contains(&kind), "{u}: {kind} recorded twice");
                    actions.push(kind);
                }
                if f.step == Step::Register {
                    // The registrar removes a Parquet only at its per-version key; one
                    // stored by content may be shared and is left to the janitor.
                    let inferred = events[..end].iter().find_map(|r| match &r.envelope.event {
                        Event::SchemaInferred(i) => Some(i),
                        _ => None,
                    });
                    let own = inferred.is_some_and(|i| {
                        i.rewritten
                            && i.parquet == weir_events::ObjectKey::parquet(i.dataset, i.version)
                    });
                    let expected: &[&str] = if own { &["ParquetRemoved"] } else { &[] };
                    assert_eq!(actions, expected, "{u}: compensation incomplete");
                }
                *shapes
                    .entry(format!("{:?}", f.step))
                    .or_default()
                    .entry(actions)
                    .or_default() += 1;
            }
            other => panic!("{u} ended with {other:?}"),
        }
    }
    for (step, by_shape) in &shapes {
        assert_eq!(
            by_shape.len(),
            1,
            "the {step} step's failures recorded different compensations (one was lost): {by_shape:?}"
        );
    }
    // Parts a kill left between PartsCombined and their deletion: the janitor's.
    let orphan_parts = store.list("uploads/").await.unwrap().len();
    for mut s in services {
        s.child.start_kill().unwrap();
        s.child.wait().await.unwrap();
    }
    eprintln!(
        "{rounds} rounds of SIGKILL on weir serve processes: {launched} uploads ({} malformed or clashing), \
         up to {max_in_flight} in flight at a kill, kills {kills:?}; {registered} registered, \
         {failed} failed with {compensations} compensations ({late} completed by a redelivery \
         after a kill; {removals_checked} removals checked), {} events checked, {orphan_parts} \
         orphan parts left for the janitor, lost = 0; {:.1} s",
        rounds * (MALFORMED + CLASHING),
        log.len(),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_sigkilled_at_random_points_loses_and_repeats_nothing() {
    if soak() {
        within(Duration::from_secs(900), kill_rounds(50)).await;
    } else {
        within(Duration::from_secs(300), kill_rounds(8)).await;
    }
}
