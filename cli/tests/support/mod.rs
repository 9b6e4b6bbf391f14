//! What the fault tests share (`faults.rs`, `faults_pg.rs`, `kill_rounds.rs`): the
//! pipeline in this process, each part connected as its own NATS user (the repository's
//! `nats.conf`); producers uploading while a fault comes; and the check after it: every
//! upload acknowledged to its producer is in the log, every upload in the log ends
//! exactly once, no step appended twice, the stream lost no sequence, and the live
//! projections equal a rebuild from the log.

#![allow(dead_code)] // each test file uses its own part of it

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use weir_events::*;
use weir_journal::auth::Passwords;
use weir_journal::{Journal, Recorded, Role, StreamSetup};
use weir_projections::{Db, Tables, catch_up, snapshot};
use weir_services::producer::{self, UploadRequest};
use weir_services::{Ctx, Ctxs, Store};

/// The services that move an upload along, each on its durable consumer `weir-<name>`.
pub const STEPS: [&str; 3] = ["combiner", "inferrer", "registrar"];

/// Where the projections live: SQLite files in the pipeline's temp dir, or two
/// databases of a Postgres server (the live one and the one rebuilt for the compare).
pub enum Projections {
    Sqlite,
    Postgres { live: String, rebuilt: String },
}

/// How the pipeline runs.
pub struct Setup {
    pub replicas: usize,
    pub projections: Projections,
    /// The services in this process; `false` when the test runs them as `weir serve`
    /// processes on [`Pipeline::store_dir`] and [`Pipeline::work_dir`].
    pub services_here: bool,
}

/// The pipeline in this process, each part connected as its own user.
pub struct Pipeline {
    pub gateway: Journal,
    pub reader: Journal,
    pub store: Store,
    pub db: Db,
    pub dir: tempfile::TempDir,
    rebuilt_url: String,
    stop: tokio::sync::watch::Sender<bool>,
    services: Option<tokio::task::JoinHandle<Result<(), weir_services::StepError>>>,
    projector: tokio::task::JoinHandle<Result<(), weir_projections::Error>>,
}

/// What [`Pipeline::check`] found.
pub struct Checked {
    pub registered: usize,
    pub failed: usize,
    /// The whole log, in order.
    pub log: Vec<Recorded>,
    /// The pipeline's temp dir (store, databases), removed when this is dropped.
    pub dir: tempfile::TempDir,
}

impl Pipeline {
    /// Services and projector (SQLite) in this process.
    pub async fn start(url: &str, passwords: &Passwords, replicas: usize) -> Self {
        Self::start_with(
            url,
            passwords,
            Setup {
                replicas,
                projections: Projections::Sqlite,
                services_here: true,
            },
        )
        .await
    }

    pub async fn start_with(url: &str, passwords: &Passwords, setup: Setup) -> Self {
        let spec = StreamSpec {
            replicas: setup.replicas,
            ..StreamSpec::default()
        };
        Journal::set_up(
            url,
            Some(&passwords.credentials(Role::Admin)),
            &spec,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
        let connect = |role: Role| {
            let spec = spec.clone();
            async move {
                Journal::connect_as(
                    url,
                    Some(&passwords.credentials(role)),
                    &spec,
                    StreamSetup::CreateIfMissing,
                )
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", role.user()))
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(&dir.path().join("objects")).unwrap();
        let work_dir = dir.path().join("work");
        std::fs::create_dir_all(&work_dir).unwrap();
        let (stop, rx) = tokio::sync::watch::channel(false);
        let services = if setup.services_here {
            let ctx = |journal| Ctx {
                journal,
                store: store.clone(),
                work_dir: work_dir.clone(),
                limits: Default::default(),
            };
            let ctxs = Ctxs {
                combiner: ctx(connect(Role::Combiner).await),
                inferrer: ctx(connect(Role::Inferrer).await),
                registrar: ctx(connect(Role::Registrar).await),
            };
            Some(tokio::spawn(weir_services::run_each(ctxs, rx.clone())))
        } else {
            None
        };
        let reader = connect(Role::Projector).await;
        let (live_url, rebuilt_url) = match setup.projections {
            Projections::Sqlite => (
                dir.path().join("live.db").display().to_string(),
                dir.path().join("rebuilt.db").display().to_string(),
            ),
            Projections::Postgres { live, rebuilt } => (live, rebuilt),
        };
        let db = Db::connect(&live_url).await.unwrap();
        let projector = {
            let (journal, db, mut rx) = (reader.clone(), db.clone(), rx);
            tokio::spawn(async move {
                weir_projections::run(&journal, &db, async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await
            })
        };
        Self {
            gateway: connect(Role::Gateway).await,
            reader,
            store,
            db,
            dir,
            rebuilt_url,
            stop,
            services,
            projector,
        }
    }

    /// `Ok` when the services' consumers have nothing pending and nothing
    /// unacknowledged; else what is still in flight.
    pub async fn consumers_idle(&self) -> Result<(), String> {
        let stream = self
            .reader
            .jetstream()
            .get_stream(self.reader.stream_name())
            .await
            .map_err(|e| e.to_string())?;
        let mut busy = Vec::new();
        for service in STEPS {
            let name = format!("weir-{service}");
            let info = stream
                .consumer_info(&name)
                .await
                .map_err(|e| format!("{name}: {e}"))?;
            if info.num_pending > 0 || info.num_ack_pending > 0 {
                busy.push(format!(
                    "{name}: {} pending, {} unacknowledged",
                    info.num_pending, info.num_ack_pending
                ));
            }
        }
        if busy.is_empty() {
            Ok(())
        } else {
            Err(busy.join("; "))
        }
    }

    /// Whether the live projector has stopped (it should only at shutdown).
    pub fn projector_stopped(&self) -> bool {
        self.projector.is_finished()
    }

    /// The object store's directory (for `weir serve --store`).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("objects")
    }

    /// `n` distinct small CSV files.
    pub fn files(&self, n: usize) -> Vec<PathBuf> {
        self.files_from(0, n)
    }

    /// Files `first..first + n` of the same series as [`Pipeline::files`].
    pub fn files_from(&self, first: usize, n: usize) -> Vec<PathBuf> {
        let dir = self.dir.path().join("in");
        std::fs::create_dir_all(&dir).unwrap();
        (first..first + n)
            .map(|i| {
                let p = dir.join(format!("f{i}.csv"));
                let mut s = String::from("id,name,score\n");
                for r in 0..5 {
                    s += &format!("{r},n{i}-{r},{}.5\n", r * i);
                }
                std::fs::write(&p, s).unwrap();
                p
            })
            .collect()
    }

    /// Uploads every file at once, the second half only once `gate` opens (so that
    /// half certainly runs after the fault); an upload whose `UploadReceived` is not
    /// acknowledged is tried again (as a new upload), as a producer would. Returns the
    /// acknowledged upload ids; `acked` counts them as they come.
    pub fn upload_all(
        &self,
        files: Vec<PathBuf>,
        acked: Arc<AtomicUsize>,
        gate: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<(Vec<UploadId>, usize)> {
        let half = files.len() / 2;
        let files = files
            .into_iter()
            .enumerate()
            .map(|(i, path)| {
                let request = request(&path);
                (path, request, i >= half)
            })
            .collect();
        self.upload_requests(files, acked, gate)
    }

    /// [`Pipeline::upload_all`] with each file's request given, and whether it waits
    /// for `gate`.
    pub fn upload_requests(
        &self,
        files: Vec<(PathBuf, UploadRequest, bool)>,
        acked: Arc<AtomicUsize>,
        gate: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<(Vec<UploadId>, usize)> {
        let (journal, store) = (self.gateway.clone(), self.store.clone());
        tokio::spawn(async move {
            let retries = Arc::new(AtomicUsize::new(0));
            let tasks = files.into_iter().map(|(path, request, gated)| {
                let (journal, store, acked, retries) = (
                    journal.clone(),
                    store.clone(),
                    acked.clone(),
                    retries.clone(),
                );
                let mut gate = gate.clone();
                async move {
                    if gated {
                        let _ = gate.wait_for(|open| *open).await;
                    }
                    loop {
                        match producer::upload_file(&journal, &store, &path, &request, |_| {}).await
                        {
                            Ok(id) => {
                                acked.fetch_add(1, Ordering::SeqCst);
                                return id;
                            }
                            Err(e) => {
                                if retries.fetch_add(1, Ordering::SeqCst) % 200 == 0 {
                                    eprintln!("upload not acknowledged, trying again: {e}");
                                }
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                        }
                    }
                }
            });
            let ids = futures::future::join_all(tasks).await;
            (ids, retries.load(Ordering::SeqCst))
        })
    }

    /// Starts `n` concurrent uploads and runs `fault` once a third of them are
    /// acknowledged, then releases the second half. Returns the uploads' task and how
    /// many were acknowledged when the fault came.
    pub async fn uploads_with_fault(
        &self,
        n: usize,
        fault: impl FnOnce(),
    ) -> (tokio::task::JoinHandle<(Vec<UploadId>, usize)>, usize) {
        let acked = Arc::new(AtomicUsize::new(0));
        let (open, gate) = tokio::sync::watch::channel(false);
        let uploads = self.upload_all(self.files(n), acked.clone(), gate);
        while acked.load(Ordering::SeqCst) < n / 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let at = acked.load(Ordering::SeqCst);
        fault();
        open.send_replace(true);
        (uploads, at)
    }

    /// Waits (at most `bound`) until every upload in the log has ended, then checks the
    /// log and the projections.
    pub async fn check(self, acked: &[UploadId], bound: Duration) -> Checked {
        let deadline = Instant::now() + bound;
        let (uploads, log) = loop {
            // Nothing in flight: no event waits for a service (a killed one's come back
            // after the ack wait), so the log read next is the last word.
            let idle = self.consumers_idle().await;
            // A read can time out while a node rejoins; the deadline bounds the retries.
            let log = match self.reader.read_all(Subject::all()).await {
                Ok(log) => log,
                Err(e) => {
                    assert!(Instant::now() < deadline, "the log cannot be read: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let uploads = kinds_by_upload(&log);
            let open = uploads
                .values()
                .filter(|k| !k.iter().any(|k| terminal(*k)))
                .count();
            if open == 0 && uploads.len() >= acked.len() && idle.is_ok() {
                break (uploads, log);
            }
            if Instant::now() >= deadline {
                let mut last: BTreeMap<String, usize> = BTreeMap::new();
                for kinds in uploads.values().filter(|k| !k.iter().any(|k| terminal(*k))) {
                    *last.entry(format!("{:?}", kinds.last())).or_default() += 1;
                }
                panic!(
                    "{open} of {} uploads still open after {bound:?}, by last event: {last:?}; consumers: {idle:?}; in-process services stopped: {:?}",
                    uploads.len(),
                    self.services.as_ref().map(|s| s.is_finished())
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        // Every acknowledged upload is in the log; none of the log's is left open or
        // ended twice, and no step appended twice.
        let acked_set: BTreeSet<UploadId> = acked.iter().copied().collect();
        assert_eq!(
            acked_set.len(),
            acked.len(),
            "an upload id was acknowledged twice"
        );
        for u in &acked_set {
            assert!(
                uploads.contains_key(u),
                "acknowledged upload {u} is not in the log"
            );
        }
        let (mut registered, mut failed) = (0, 0);
        for (u, kinds) in &uploads {
            assert_eq!(kinds[0], EventKind::UploadReceived, "{u}: {kinds:?}");
            let ends: Vec<_> = kinds.iter().filter(|k| terminal(**k)).collect();
            assert_eq!(ends.len(), 1, "{u} ended {} times: {kinds:?}", ends.len());
            for step in [
                EventKind::UploadReceived,
                EventKind::PartsCombined,
                EventKind::SchemaInferred,
            ] {
                let n = kinds.iter().filter(|k| **k == step).count();
                assert!(n <= 1, "{u}: {step:?} appended {n} times: {kinds:?}");
            }
            match ends[0] {
                EventKind::DatasetRegistered => {
                    assert_eq!(
                        kinds[..4],
                        [
                            EventKind::UploadReceived,
                            EventKind::PartsCombined,
                            EventKind::SchemaInferred,
                            EventKind::DatasetRegistered
                        ],
                        "{u}"
                    );
                    registered += 1;
                }
                _ => failed += 1,
            }
        }
        // Nothing the stream acknowledged is missing: sequences 1..=last, no gap.
        let health = self.reader.stream_health().await.unwrap();
        assert_eq!(health.messages, health.last_sequence, "{health:?}");
        let seqs: Vec<u64> = log.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=health.last_sequence).collect::<Vec<_>>());

        // The live projections (built while things died) equal a rebuild from the log.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.projector.is_finished() {
                panic!("the projector stopped: {:?}", self.projector.await);
            }
            match weir_projections::lag(&self.reader, &self.db).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => eprintln!("projector lag unknown: {e}"),
            }
            assert!(Instant::now() < deadline, "the projector did not catch up");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let live = snapshot(&self.db, Tables::Live).await.unwrap();
        let fresh = Db::connect(&self.rebuilt_url).await.unwrap();
        assert_eq!(
            catch_up(&self.reader, &fresh).await.unwrap(),
            health.last_sequence
        );
        let rebuilt = snapshot(&fresh, Tables::Live).await.unwrap();
        assert_eq!(rebuilt, live, "the live projections differ from a rebuild");
        assert_eq!(live.rows("uploads").len(), uploads.len());

        let _ = self.stop.send(true);
        if let Some(services) = self.services {
            services.await.unwrap().unwrap();
        }
        self.projector.await.unwrap().unwrap();
        Checked {
            registered,
            failed,
            log,
            dir: self.dir,
        }
    }
}

/// Each upload's event kinds, in log order.
pub fn kinds_by_upload(log: &[Recorded]) -> BTreeMap<UploadId, Vec<EventKind>> {
    let mut uploads: BTreeMap<UploadId, Vec<EventKind>> = BTreeMap::new();
    for r in log {
        if let Aggregate::Upload(u) = r.envelope.aggregate {
            uploads.entry(u).or_default().push(r.envelope.kind());
        }
    }
    uploads
}

pub fn terminal(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::DatasetRegistered | EventKind::Failed | EventKind::UploadAborted
    )
}

pub fn request(path: &Path) -> UploadRequest {
    UploadRequest {
        owner: "acme".parse().unwrap(),
        filename: path.file_name().unwrap().to_string_lossy().into_owned(),
        label: None,
        table_name: None,
        format: None,
        content_type: None,
        part_size: 8 * 1024 * 1024,
        options: Default::default(),
        dataset: None,
        parent_version: None,
        branch: None,
    }
}

/// `WEIR_LOG=warn cargo test …` shows what the parts report while things die.
pub fn log_to_stderr() {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
}

/// Bounds a whole test: a stuck one fails instead of hanging.
pub async fn within<T>(bound: Duration, test: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(bound, test)
        .await
        .unwrap_or_else(|_| panic!("the test took over {bound:?}"))
}

/// Whether the long versions run (`WEIR_SOAK=1`, which `scripts/test --soak` sets).
pub fn soak() -> bool {
    std::env::var("WEIR_SOAK").as_deref() == Ok("1")
}

/// A small seeded generator (splitmix64): the seed is printed, and `WEIR_SEED` replays
/// a run.
pub struct Rng(u64);

impl Rng {
    pub fn from_env() -> Self {
        let seed = match std::env::var("WEIR_SEED") {
            Ok(s) => s.parse().expect("WEIR_SEED is a u64"),
            Err(_) => {
                let mut b = [0u8; 8];
                getrandom::fill(&mut b).expect("randomness");
                u64::from_le_bytes(b)
            }
        };
        eprintln!("seed {seed} (WEIR_SEED={seed} replays it)");
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
