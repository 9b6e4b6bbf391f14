//! Postgres dies under the projector: a Postgres cluster of the test's own
//! (`weir_testkit::PgCluster`: initdb + pg_ctl on a free port) holds the live
//! projections while uploads flow through the whole pipeline; mid-way it is stopped as a
//! crash would stop it (`pg_ctl stop -m immediate`) and started again, and the
//! projector's connections are cut (`pg_terminate_backend`). The uploads go in in
//! groups, the next released at each fault, so that each fault finds the projector at
//! work and events keep coming while Postgres is down. The projector must wait
//! each fault out and resume from its committed checkpoint: in the end its rows equal a
//! clean rebuild from the log, and the log itself lost nothing (`support::Pipeline`).
//!
//! Skipped, saying so, when no Postgres binaries are installed; `WEIR_REQUIRE_POSTGRES=1`
//! makes that a failure. The default run injects 2 restarts and 1 cut during 200
//! uploads; `WEIR_SOAK=1` (`scripts/test --soak`) 6 restarts and 3 cuts during 1,000.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use weir_projections::Projector;
use weir_testkit::{NatsServer, PgCluster};

mod support;
use support::{Checked, Pipeline, Projections, Setup, log_to_stderr, request, soak, within};

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// `pg_ctl stop -m immediate`, down for a moment while events keep coming, started again.
    Restart,
    /// Every connection to the live database terminated by the server.
    Cut,
}

async fn postgres_faults_mid_projection(uploads: usize, faults: &[Fault]) {
    log_to_stderr();
    let Some(mut pg) = PgCluster::start() else {
        return;
    };
    pg.create_database("live");
    pg.create_database("rebuilt");
    let nats = NatsServer::start_with_users();
    let passwords = nats.passwords().unwrap().clone();
    let sys = Pipeline::start_with(
        &nats.url(),
        &passwords,
        Setup {
            replicas: 1,
            projections: Projections::Postgres {
                live: pg.url("live"),
                rebuilt: pg.url("rebuilt"),
            },
            services_here: true,
        },
    )
    .await;
    let started = Instant::now();
    let acked = Arc::new(AtomicUsize::new(0));
    // The uploads in groups, one more than faults: the first starts now, each next one
    // at a fault, so events keep coming while Postgres is away and after it is back.
    let files = sys.files(uploads);
    let groups = faults.len() + 1;
    let mut gates = Vec::new();
    let mut tasks = Vec::new();
    for (g, group) in files.chunks(uploads.div_ceil(groups)).enumerate() {
        let (open, gate) = tokio::sync::watch::channel(g == 0);
        let group = group
            .iter()
            .map(|p| (p.clone(), request(p), true))
            .collect();
        tasks.push(sys.upload_requests(group, acked.clone(), gate));
        gates.push(open);
    }
    let release = |g: usize| {
        if let Some(open) = gates.get(g) {
            open.send_replace(true);
        }
    };
    let projector = Projector::new(sys.db.clone());
    let mut checkpoint = 0;
    let (mut restarts, mut cuts, mut cut_connections, mut appended_while_down) = (0, 0, 0, 0);
    for (i, fault) in faults.iter().enumerate() {
        // Each fault once the projector has committed since the last one: it is
        // working on the group released at the last fault when this one comes.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(!sys.projector_stopped(), "fault {i}: the projector stopped");
            let now = projector.checkpoint().await.unwrap_or(checkpoint);
            if now > checkpoint {
                checkpoint = now;
                break;
            }
            assert!(
                Instant::now() < deadline,
                "fault {i}: the projector stayed at {now} for 60 s ({} uploads acknowledged)",
                acked.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        match fault {
            Fault::Restart => {
                let before = sys.reader.last_sequence().await.unwrap();
                pg.stop_immediate();
                release(i + 1);
                tokio::time::sleep(Duration::from_millis(1500)).await;
                appended_while_down += sys.reader.last_sequence().await.unwrap() - before;
                pg.restart();
                restarts += 1;
            }
            Fault::Cut => {
                cut_connections += pg.cut_connections("live");
                release(i + 1);
                cuts += 1;
            }
        }
    }
    let (mut ids, mut retries) = (Vec::new(), 0);
    for task in tasks {
        let (group, r) = task.await.unwrap();
        ids.extend(group);
        retries += r;
    }
    let Checked {
        registered,
        failed,
        log,
        ..
    } = sys.check(&ids, Duration::from_secs(120)).await;
    eprintln!(
        "Postgres under the projector: {uploads} uploads in {groups} groups, {restarts} restarts \
         (immediate stop; {appended_while_down} events appended while it was down), cuts: {cuts} \
         ({cut_connections} connections terminated); {registered} registered, {failed} failed, \
         {} events checked, live = rebuild, lost = 0; {retries} producer retries, {:.1} s",
        log.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(registered >= uploads, "{failed} uploads failed");
    assert_eq!(restarts + cuts, faults.len());
    assert!(
        appended_while_down > 0 || restarts == 0,
        "no event came while Postgres was down: the projector was never behind it"
    );
    assert_eq!(ids.len(), uploads);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_and_cut_mid_projection_the_projector_resumes() {
    use Fault::*;
    if soak() {
        let faults = [
            Restart, Cut, Restart, Restart, Cut, Restart, Restart, Cut, Restart,
        ];
        within(
            Duration::from_secs(600),
            postgres_faults_mid_projection(1000, &faults),
        )
        .await;
    } else {
        within(
            Duration::from_secs(180),
            postgres_faults_mid_projection(200, &[Restart, Cut, Restart]),
        )
        .await;
    }
}
