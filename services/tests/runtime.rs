//! The service runtime's promises, with small services made for the test on a real
//! nats-server: a panic becomes `Failed`, a transient fault is retried with backoff and
//! ends `Failed { retryable: true }` after the last attempt, success after a retry
//! appends exactly once, and a compensation cut short by a crash is completed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use weir_events::*;
use weir_journal::{Expect, Journal};
use weir_services::producer::{self, Terminal};
use weir_services::runtime::{self, RunConfig};
use weir_services::state::UploadState;
use weir_services::{Ctx, Service, StepError, Store};
use weir_testkit::{NatsServer, sample};

/// Panics on every event it gets.
struct Boom;

impl Service for Boom {
    const NAME: &'static str = "boom";
    const STEP: Step = Step::Combine;
    const INPUT: EventKind = EventKind::UploadReceived;

    async fn handle(
        self: Arc<Self>,
        _: Ctx,
        _: weir_journal::Recorded,
        _: UploadState,
    ) -> Result<Vec<Event>, StepError> {
        panic!("boom at byte 42")
    }
}

/// Fails transiently `fail_first` times, then registers a result.
struct Flaky {
    calls: AtomicU32,
    fail_first: u32,
}

impl Service for Flaky {
    const NAME: &'static str = "flaky";
    const STEP: Step = Step::Combine;
    const INPUT: EventKind = EventKind::UploadReceived;

    async fn handle(
        self: Arc<Self>,
        _: Ctx,
        input: weir_journal::Recorded,
        _: UploadState,
    ) -> Result<Vec<Event>, StepError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n <= self.fail_first {
            return Err(StepError::Transient(format!(
                "store unreachable (attempt {n})"
            )));
        }
        let registered = sample::dataset_registered(
            input.envelope.correlation_id,
            input.envelope.event_id,
            "flaky",
        );
        Ok(vec![registered.event])
    }
}

/// A service running on its own task until `stop`.
struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), StepError>>,
}

impl Running {
    fn start<S: Service>(service: Arc<S>, ctx: &Ctx) -> Self {
        let (stop, mut rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(runtime::run(service, ctx.clone(), fast(), async move {
            let _ = rx.wait_for(|s| *s).await;
        }));
        Self { stop, task }
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

fn fast() -> RunConfig {
    RunConfig {
        concurrency: 2,
        max_deliver: 3,
        backoff: vec![Duration::from_millis(20)],
    }
}

async fn setup() -> (NatsServer, Ctx, tempfile::TempDir) {
    let nats = NatsServer::start();
    let journal = Journal::connect(&nats.url(), &StreamSpec::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctx = Ctx {
        journal,
        store: Store::local(&dir.path().join("objects")).unwrap(),
        work_dir: dir.path().to_path_buf(),
        limits: Default::default(),
    };
    (nats, ctx, dir)
}

async fn received(ctx: &Ctx) -> UploadId {
    let up = UploadId::new();
    ctx.journal
        .append(&sample::upload_received(up, "x.csv"), Expect::Empty)
        .await
        .unwrap();
    up
}

async fn terminal(journal: &Journal, up: UploadId) -> Terminal {
    tokio::time::timeout(Duration::from_secs(30), producer::wait(journal, up))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn a_panic_in_a_step_becomes_failed_and_the_service_lives_on() {
    let (_nats, ctx, _dir) = setup().await;
    let running = Running::start(Arc::new(Boom), &ctx);
    for _ in 0..2 {
        let up = received(&ctx).await;
        let Terminal::Failed(f) = terminal(&ctx.journal, up).await else {
            panic!()
        };
        assert_eq!(f.step, Step::Combine);
        assert!(
            f.reason.contains("panicked: boom at byte 42"),
            "{}",
            f.reason
        );
        assert!(!f.retryable);
    }
    running.stop().await;
}

#[tokio::test]
async fn transient_faults_are_retried_then_succeed_once() {
    let (_nats, ctx, _dir) = setup().await;
    let flaky = Arc::new(Flaky {
        calls: AtomicU32::new(0),
        fail_first: 2,
    });
    let running = Running::start(flaky.clone(), &ctx);
    let up = received(&ctx).await;
    assert!(matches!(
        terminal(&ctx.journal, up).await,
        Terminal::Registered(_)
    ));
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);
    let kinds: Vec<_> = ctx
        .journal
        .history(&Aggregate::Upload(up))
        .await
        .unwrap()
        .iter()
        .map(|r| r.envelope.kind())
        .collect();
    assert_eq!(
        kinds,
        [EventKind::UploadReceived, EventKind::DatasetRegistered]
    );
    running.stop().await;
}

#[tokio::test]
async fn exhausted_retries_end_in_a_retryable_failure() {
    let (_nats, ctx, _dir) = setup().await;
    let flaky = Arc::new(Flaky {
        calls: AtomicU32::new(0),
        fail_first: u32::MAX,
    });
    let running = Running::start(flaky.clone(), &ctx);
    let up = received(&ctx).await;
    let Terminal::Failed(f) = terminal(&ctx.journal, up).await else {
        panic!()
    };
    assert_eq!((f.attempts, f.retryable), (3, true));
    assert!(f.reason.contains("attempt 3"), "{}", f.reason);
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);
    running.stop().await;
}

/// Fails every upload; its compensation hangs the first time (the process is killed
/// there, between `Failed` and `Compensated`) and succeeds after.
struct CrashesWhileCompensating {
    compensations: AtomicU32,
}

impl Service for CrashesWhileCompensating {
    const NAME: &'static str = "crashes";
    const STEP: Step = Step::Combine;
    const INPUT: EventKind = EventKind::UploadReceived;

    async fn handle(
        self: Arc<Self>,
        _: Ctx,
        _: weir_journal::Recorded,
        _: UploadState,
    ) -> Result<Vec<Event>, StepError> {
        Err(StepError::Permanent(
            "part 1 does not match its sha256".into(),
        ))
    }

    async fn compensate(
        self: Arc<Self>,
        _: Ctx,
        _: UploadState,
    ) -> Result<Vec<CompensationAction>, StepError> {
        if self.compensations.fetch_add(1, Ordering::SeqCst) == 0 {
            std::future::pending::<()>().await;
        }
        Ok(vec![CompensationAction::PartsRemoved { count: 1 }])
    }
}

/// A crash between `Failed` and its compensation: the delivery was never acknowledged,
/// so it comes again (after the ack wait, 30 s) and the compensation is completed,
/// recorded once.
#[tokio::test]
async fn a_compensation_cut_short_by_a_crash_is_completed_on_redelivery() {
    let (_nats, ctx, _dir) = setup().await;
    let service = Arc::new(CrashesWhileCompensating {
        compensations: AtomicU32::new(0),
    });
    let running = Running::start(service.clone(), &ctx);
    let up = received(&ctx).await;
    assert!(matches!(
        terminal(&ctx.journal, up).await,
        Terminal::Failed(_)
    ));
    while service.compensations.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Killed in the middle of the compensation.
    running.task.abort();
    let _ = running.task.await;
    let running = Running::start(service.clone(), &ctx);
    let kinds = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let kinds: Vec<_> = ctx
                .journal
                .history(&Aggregate::Upload(up))
                .await
                .unwrap()
                .iter()
                .map(|r| r.envelope.kind())
                .collect();
            if kinds.contains(&EventKind::Compensated) {
                break kinds;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the compensation was not completed within 60 s");
    assert_eq!(
        kinds,
        [
            EventKind::UploadReceived,
            EventKind::Failed,
            EventKind::Compensated
        ]
    );
    assert_eq!(service.compensations.load(Ordering::SeqCst), 2);
    running.stop().await;
}
