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

use std::time::{Duration, Instant};

use weir_testkit::{NatsCluster, NatsServer};

mod support;
use support::{Pipeline, log_to_stderr};

#[derive(Debug, Clone, Copy)]
enum Victim {
    /// A node that does not lead the stream.
    Follower,
    /// The stream's leader.
    Leader,
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
    let support::Checked {
        registered, failed, ..
    } = sys.check(&ids, Duration::from_secs(120)).await;
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
    support::within(Duration::from_secs(180), test).await
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
        let support::Checked {
        registered, failed, ..
    } = sys.check(&ids, Duration::from_secs(120)).await;
        eprintln!(
            "server killed after {killed_at} of {UPLOADS} uploads, back 0.5 s later: {registered} registered, {failed} failed, {retries} producer retries, {:.1} s",
            started.elapsed().as_secs_f64()
        );
        assert!(registered >= UPLOADS, "{failed} uploads failed");
    })
    .await;
}
