//! nats-server killed under load: a node of a 3-node JetStream cluster (R3 stream) and
//! then its stream leader, SIGKILLed in the middle of 300 concurrent uploads and
//! restarted later; and a single server killed and restarted during 500 concurrent
//! uploads. The kill comes once a third of the uploads are acknowledged, while the
//! services work on them; the second half of the uploads is released at the kill. The whole pipeline runs in this process, each part as its own NATS user
//! (the repository's `nats.conf`): services, a live projector, producers.
//!
//! After each: every upload acknowledged to its producer is in the log; every upload in
//! the log ends registered or failed exactly once, each step's event at most once; the
//! stream has every sequence it acknowledged (nothing lost, nothing deleted); and the
//! live projections equal a rebuild from the log.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use weir_events::*;
use weir_journal::auth::Passwords;
use weir_journal::{Journal, Role, StreamSetup};
use weir_projections::{Db, Tables, catch_up, snapshot};
use weir_services::producer::{self, UploadRequest};
use weir_services::{Ctx, Ctxs, Store};
use weir_testkit::{NatsCluster, NatsServer};

/// The pipeline in this process, each part connected as its own user.
struct Pipeline {
    gateway: Journal,
    reader: Journal,
    store: Store,
    db: Db,
    dir: tempfile::TempDir,
    stop: tokio::sync::watch::Sender<bool>,
    services: tokio::task::JoinHandle<Result<(), weir_services::StepError>>,
    projector: tokio::task::JoinHandle<Result<(), weir_projections::Error>>,
}

impl Pipeline {
    async fn start(url: &str, passwords: &Passwords, replicas: usize) -> Self {
        let spec = StreamSpec {
            replicas,
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
        let (stop, rx) = tokio::sync::watch::channel(false);
        let services = tokio::spawn(weir_services::run_each(ctxs, rx.clone()));
        let reader = connect(Role::Projector).await;
        let db = Db::connect(&dir.path().join("live.db").display().to_string())
            .await
            .unwrap();
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
            stop,
            services,
            projector,
        }
    }

    /// `n` distinct small CSV files.
    fn files(&self, n: usize) -> Vec<PathBuf> {
        let dir = self.dir.path().join("in");
        std::fs::create_dir_all(&dir).unwrap();
        (0..n)
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
    fn upload_all(
        &self,
        files: Vec<PathBuf>,
        acked: Arc<AtomicUsize>,
        gate: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<(Vec<UploadId>, usize)> {
        let (journal, store) = (self.gateway.clone(), self.store.clone());
        let half = files.len() / 2;
        tokio::spawn(async move {
            let retries = Arc::new(AtomicUsize::new(0));
            let tasks = files.into_iter().enumerate().map(|(i, path)| {
                let (journal, store, acked, retries) = (
                    journal.clone(),
                    store.clone(),
                    acked.clone(),
                    retries.clone(),
                );
                let mut gate = gate.clone();
                async move {
                    if i >= half {
                        let _ = gate.wait_for(|open| *open).await;
                    }
                    let request = request(&path);
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
    async fn uploads_with_fault(
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

    /// Waits until every upload in the log has ended, then checks the log and the
    /// projections; returns (registered, failed).
    async fn check(self, acked: &[UploadId]) -> (usize, usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let (uploads, log) = loop {
            // A read can time out while a node rejoins; the deadline bounds the retries.
            let log = match self.reader.read_all(Subject::all()).await {
                Ok(log) => log,
                Err(e) => {
                    assert!(Instant::now() < deadline, "the log cannot be read: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let mut uploads: BTreeMap<UploadId, Vec<EventKind>> = BTreeMap::new();
            for r in &log {
                if let Aggregate::Upload(u) = r.envelope.aggregate {
                    uploads.entry(u).or_default().push(r.envelope.kind());
                }
            }
            let open = uploads
                .values()
                .filter(|k| !k.iter().any(|k| terminal(*k)))
                .count();
            if open == 0 && uploads.len() >= acked.len() {
                break (uploads, log);
            }
            if Instant::now() >= deadline {
                let mut last: BTreeMap<String, usize> = BTreeMap::new();
                for kinds in uploads.values().filter(|k| !k.iter().any(|k| terminal(*k))) {
                    *last.entry(format!("{:?}", kinds.last())).or_default() += 1;
                }
                panic!(
                    "{open} of {} uploads still open after 120 s, by last event: {last:?}; services stopped: {}",
                    uploads.len(),
                    self.services.is_finished()
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

        // The live projections (built while nodes died) equal a rebuild from the log.
        let deadline = Instant::now() + Duration::from_secs(60);
        while weir_projections::lag(&self.reader, &self.db).await.unwrap() > 0 {
            assert!(Instant::now() < deadline, "the projector did not catch up");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let live = snapshot(&self.db, Tables::Live).await.unwrap();
        let fresh = Db::connect(&self.dir.path().join("rebuilt.db").display().to_string())
            .await
            .unwrap();
        assert_eq!(
            catch_up(&self.reader, &fresh).await.unwrap(),
            health.last_sequence
        );
        let rebuilt = snapshot(&fresh, Tables::Live).await.unwrap();
        assert_eq!(rebuilt, live, "the live projections differ from a rebuild");
        assert_eq!(live.rows("uploads").len(), uploads.len());

        let _ = self.stop.send(true);
        let (services, projector) = tokio::join!(self.services, self.projector);
        services.unwrap().unwrap();
        projector.unwrap().unwrap();
        (registered, failed)
    }
}

fn terminal(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::DatasetRegistered | EventKind::Failed | EventKind::UploadAborted
    )
}

fn request(path: &Path) -> UploadRequest {
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

#[derive(Debug, Clone, Copy)]
enum Victim {
    /// A node that does not lead the stream.
    Follower,
    /// The stream's leader.
    Leader,
}

/// `WEIR_LOG=warn cargo test …` shows what the parts report while nodes die.
fn log_to_stderr() {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
}

async fn cluster_node_killed_mid_flight(victim: Victim) {
    const UPLOADS: usize = 300;
    log_to_stderr();
    let mut nats = NatsCluster::start_with_users(3);
    let passwords = nats.passwords().unwrap().clone();
    let sys = Pipeline::start(&nats.url(), &passwords, 3).await;
    let info = sys
        .reader
        .jetstream()
        .get_stream("WEIR")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.config.num_replicas, 3);
    let leader = info
        .cluster
        .and_then(|c| c.leader)
        .expect("a stream leader");
    let leader = nats
        .cluster
        .node_named(&leader)
        .expect("the leader is a node");
    let node = match victim {
        Victim::Leader => leader,
        Victim::Follower => (leader + 1) % nats.cluster.len(),
    };

    let started = Instant::now();
    let (uploads, killed_at) = sys
        .uploads_with_fault(UPLOADS, || nats.cluster.kill(node))
        .await;
    // The rest of the uploads go in with one node down, then it comes back.
    let (ids, retries) = uploads.await.unwrap();
    nats.cluster.restart(node).unwrap();
    let (registered, failed) = sys.check(&ids).await;
    eprintln!(
        "{victim:?} (node {}) killed after {killed_at} of {UPLOADS} uploads: {registered} registered, {failed} failed, {retries} producer retries, {:.1} s",
        node + 1,
        started.elapsed().as_secs_f64()
    );
    assert!(registered + failed >= UPLOADS);
    assert!(registered >= UPLOADS, "{failed} uploads failed");
}

/// Bounds a whole test (each takes 15-50 s here; the bound is for a stuck one).
async fn within<T>(test: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(180), test)
        .await
        .expect("the test took over 180 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_killed_mid_flight_loses_nothing() {
    within(cluster_node_killed_mid_flight(Victim::Follower)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_leader_killed_mid_flight_loses_nothing() {
    within(cluster_node_killed_mid_flight(Victim::Leader)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_server_restarted_mid_flight_loses_nothing() {
    within(async {
        const UPLOADS: usize = 500;
        let mut nats = NatsServer::start_with_users();
        let passwords = nats.passwords().unwrap().clone();
        let sys = Pipeline::start(&nats.url(), &passwords, 1).await;
        let started = Instant::now();
        let (uploads, killed_at) = sys.uploads_with_fault(UPLOADS, || nats.kill()).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        nats.restart();
        let (ids, retries) = uploads.await.unwrap();
        let (registered, failed) = sys.check(&ids).await;
        eprintln!(
            "server killed after {killed_at} of {UPLOADS} uploads, back 0.5 s later: {registered} registered, {failed} failed, {retries} producer retries, {:.1} s",
            started.elapsed().as_secs_f64()
        );
        assert!(registered >= UPLOADS, "{failed} uploads failed");
    })
    .await;
}
