//! The service runtime: one durable pull consumer per service, filtered to the one kind
//! it handles, shared by every instance of that service.
//!
//! For each delivered event it takes the upload's state (from the previous step in
//! this process, or folded from the history; see [`States`]), skips work the log
//! already shows as done, runs the step in its own task (a panic becomes `Failed`), sends
//! in-progress acks while the step runs, appends the step's events conditionally on the
//! consumed event's sequence, and acks only after that append is durable. Transient
//! faults are redelivered with backoff; a permanent fault or the last delivery ends in
//! `Failed` followed by the step's compensation, each recorded as an event. A crash
//! between the two leaves the delivery unacknowledged; its redelivery completes the
//! compensation.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use futures::StreamExt;
use tokio::task::JoinSet;
use tracing::Instrument;
use weir_events::{
    Compensated, CompensationAction, Envelope, Event, EventKind, Failed, Step, Subject,
};
use weir_journal::{AppendOutcome, Expect, Journal, Recorded};

use crate::state::{States, UploadState};
use crate::store::Store;

/// How long the server waits for an ack before redelivering; in-progress acks are sent
/// at a third of it while a step runs.
pub const ACK_WAIT: Duration = Duration::from_secs(30);

/// How long a step waits for the step before it (in this process) to record the state
/// it left, before reading the history instead.
const STATE_PATIENCE: Duration = Duration::from_millis(20);

/// What every step gets: the log, the object store and a scratch directory.
#[derive(Clone)]
pub struct Ctx {
    pub journal: Journal,
    pub store: Store,
    /// Local scratch space for downloads and conversions (same disk as the data dir).
    pub work_dir: PathBuf,
    /// What one file may cost the inferrer (`WEIR_MAX_*`, see `Limits::from_env`).
    pub limits: weir_schemas::Limits,
}

/// Why a step did not finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepError {
    /// May succeed on another attempt (store or NATS unreachable, disk full).
    Transient(String),
    /// Will never succeed (malformed file, name taken): fail the upload now.
    Permanent(String),
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transient(m) | Self::Permanent(m) => f.write_str(m),
        }
    }
}

impl From<crate::store::StoreError> for StepError {
    fn from(e: crate::store::StoreError) -> Self {
        if e.is_transient() {
            Self::Transient(e.to_string())
        } else {
            Self::Permanent(e.to_string())
        }
    }
}

impl From<weir_journal::ReadError> for StepError {
    fn from(e: weir_journal::ReadError) -> Self {
        Self::Transient(e.to_string())
    }
}

impl From<weir_journal::AppendError> for StepError {
    fn from(e: weir_journal::AppendError) -> Self {
        if e.is_transient() {
            Self::Transient(e.to_string())
        } else {
            Self::Permanent(e.to_string())
        }
    }
}

/// One step of the pipeline. `handle` decides; the runtime does the messaging.
pub trait Service: Send + Sync + 'static {
    /// Names the durable consumer (`weir-<name>`) and the service in logs.
    const NAME: &'static str;
    const STEP: Step;
    /// The one kind this service consumes.
    const INPUT: EventKind;

    /// The upload's state as of `input` when `input` alone determines it, so the step
    /// needs no history read; `None` (the default) folds the upload's history.
    fn state_from_input(_input: &Recorded) -> Option<UploadState> {
        None
    }

    /// Does the step's work for `input` and returns the events to append after it, in
    /// order. Side effects must be idempotent (keyed by the input).
    fn handle(
        self: Arc<Self>,
        ctx: Ctx,
        input: Recorded,
        state: UploadState,
    ) -> impl Future<Output = Result<Vec<Event>, StepError>> + Send;

    /// Clean-up once the step's events are in the log (e.g. remove parts), given the
    /// state the step started from. Idempotent; a failure here is logged, never undoes
    /// the step.
    fn after(
        self: Arc<Self>,
        _ctx: Ctx,
        _state: UploadState,
    ) -> impl Future<Output = Result<(), StepError>> + Send {
        async { Ok(()) }
    }

    /// Undoes what the step left behind after it failed; returns what it did.
    fn compensate(
        self: Arc<Self>,
        _ctx: Ctx,
        _state: UploadState,
    ) -> impl Future<Output = Result<Vec<CompensationAction>, StepError>> + Send {
        async { Ok(Vec::new()) }
    }
}

/// How one instance of a service works.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Events worked on at once.
    pub concurrency: usize,
    /// Deliveries before a transient fault becomes `Failed { retryable: true }`.
    pub max_deliver: u32,
    /// Redelivery delay after the 1st, 2nd … failed attempt (the last repeats).
    pub backoff: Vec<Duration>,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            max_deliver: 5,
            backoff: vec![
                Duration::from_millis(500),
                Duration::from_secs(2),
                Duration::from_secs(5),
                Duration::from_secs(15),
            ],
        }
    }
}

impl RunConfig {
    fn delay(&self, delivered: u32) -> Duration {
        let i = delivered.saturating_sub(1) as usize;
        self.backoff
            .get(i)
            .or(self.backoff.last())
            .copied()
            .unwrap_or(Duration::from_secs(1))
    }
}

/// Creates (or binds to) the service's durable consumer.
async fn consumer<S: Service>(
    journal: &Journal,
    config: &RunConfig,
) -> Result<async_nats::jetstream::consumer::Consumer<pull::Config>, StepError> {
    let err =
        |e: &dyn std::fmt::Display| StepError::Transient(format!("consumer weir-{}: {e}", S::NAME));
    let stream = journal
        .jetstream()
        .get_stream(journal.stream_name())
        .await
        .map_err(|e| err(&e))?;
    let name = format!("weir-{}", S::NAME);
    stream
        .get_or_create_consumer(
            &name,
            pull::Config {
                durable_name: Some(name.clone()),
                description: Some(format!("weir {}: {} events", S::NAME, S::INPUT)),
                filter_subject: Subject::kind_filter(S::INPUT).to_string(),
                ack_policy: AckPolicy::Explicit,
                deliver_policy: DeliverPolicy::All,
                ack_wait: ACK_WAIT,
                // One spare delivery: the last counted attempt appends Failed, so the server
                // never drops an event silently.
                max_deliver: i64::from(config.max_deliver) + 1,
                max_ack_pending: 256,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| err(&e))
}

/// Runs the service until `shutdown` resolves; events in flight finish first. The
/// consumer is rebuilt with backoff when the connection to it breaks.
pub async fn run<S: Service>(
    service: Arc<S>,
    ctx: Ctx,
    config: RunConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), StepError> {
    run_with(service, ctx, config, States::default(), shutdown).await
}

/// [`run`], starting steps from `states` where it can: the services of one process
/// share it, so each step starts from the state the previous step left.
pub async fn run_with<S: Service>(
    service: Arc<S>,
    ctx: Ctx,
    config: RunConfig,
    states: States,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), StepError> {
    tokio::pin!(shutdown);
    let mut tasks = JoinSet::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(config.concurrency.max(1)));
    let mut attempt = 0u32;
    'outer: loop {
        let consumer = match consumer::<S>(&ctx.journal, &config).await {
            Ok(c) => c,
            Err(e) if attempt < 10 => {
                attempt += 1;
                tracing::warn!(service = S::NAME, error = %e, "cannot bind consumer; retrying");
                tokio::select! {
                    _ = &mut shutdown => break 'outer,
                    _ = tokio::time::sleep(weir_journal::append::backoff(attempt)) => continue,
                }
            }
            Err(e) => return Err(e),
        };
        let mut messages = match consumer.messages().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(service = S::NAME, error = %e, "cannot pull; retrying");
                tokio::time::sleep(weir_journal::append::backoff(2)).await;
                continue;
            }
        };
        attempt = 0;
        loop {
            let permit = tokio::select! {
                _ = &mut shutdown => break 'outer,
                p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break 'outer },
            };
            let next = tokio::select! {
                _ = &mut shutdown => break 'outer,
                next = messages.next() => next,
            };
            let message = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    tracing::warn!(service = S::NAME, error = %e, "pull failed; rebinding");
                    continue 'outer;
                }
                None => continue 'outer,
            };
            let service = service.clone();
            let ctx = ctx.clone();
            let config = config.clone();
            let states = states.clone();
            tasks.spawn(async move {
                process(service, ctx, &config, &states, message).await;
                drop(permit);
            });
            while tasks.try_join_next().is_some() {}
        }
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn process<S: Service>(
    service: Arc<S>,
    ctx: Ctx,
    config: &RunConfig,
    states: &States,
    message: async_nats::jetstream::Message,
) {
    let recorded = match weir_journal::read::decode(&message) {
        Ok(r) => r,
        Err(e) => {
            // Not a weir event this version understands: leave it for a newer weir and
            // stop redelivering it to this one.
            tracing::error!(service = S::NAME, error = %e, "cannot decode event; terminating its delivery");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
    // Every step's span names the upload, the event's sequence and kind and, once
    // known, the dataset: the same upload id and dataset id in every service's lines.
    let span = tracing::info_span!("step", service = S::NAME, upload = %recorded.envelope.correlation_id, dataset = tracing::field::Empty, seq = recorded.seq, kind = %recorded.envelope.kind(), delivered);
    if let Some(d) = recorded.envelope.event.dataset() {
        span.record("dataset", tracing::field::display(d));
    }
    let outcome = step(
        service,
        &ctx,
        config,
        states,
        &recorded,
        &message,
        delivered as u32,
    )
    .instrument(span)
    .await;
    let reply = match outcome {
        Ok(()) => AckKind::Ack,
        Err(delay) => AckKind::Nak(Some(delay)),
    };
    if let Err(e) = message.ack_with(reply).await {
        tracing::warn!(service = S::NAME, seq = recorded.seq, error = %e, "ack failed; the event will be redelivered and skipped");
    }
}

/// Runs one delivery. `Err(delay)` asks for a redelivery after `delay`.
/// The upload's state as of the delivered event, from the cheapest source that can
/// vouch for it. A first delivery starts from the state the previous step left in
/// `states`, or from the event alone when the service says it suffices; the step's
/// append, conditional on the delivered event's sequence, then proves that nothing
/// came after it. A redelivery (a crash, a retry) or a miss folds the history, so work
/// the log already shows as done is skipped before it starts.
async fn starting_state<S: Service>(
    ctx: &Ctx,
    states: &States,
    input: &Recorded,
    delivered: u32,
) -> Result<UploadState, weir_journal::ReadError> {
    if delivered <= 1 {
        let known = match states.at_or_after(input, STATE_PATIENCE).await {
            Some(s) => Some(s),
            None => S::state_from_input(input).inspect(|s| {
                // What the next step will wait for while this one finishes.
                states.put(s.clone());
            }),
        };
        if let Some(state) = known {
            states.used.fetch_add(1, Ordering::Relaxed);
            return Ok(state);
        }
    }
    states.read.fetch_add(1, Ordering::Relaxed);
    let history = ctx.journal.history(&input.envelope.aggregate).await?;
    Ok(UploadState::fold(&history))
}

async fn step<S: Service>(
    service: Arc<S>,
    ctx: &Ctx,
    config: &RunConfig,
    states: &States,
    input: &Recorded,
    message: &async_nats::jetstream::Message,
    delivered: u32,
) -> Result<(), Duration> {
    let retry_delay = config.delay(delivered);
    let upload = input.envelope.correlation_id;
    let state = match starting_state::<S>(ctx, states, input, delivered).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(service = S::NAME, error = %e, "cannot read the upload's history");
            return Err(retry_delay);
        }
    };
    if state.last_seq > input.seq {
        if delivered > 1
            && let Some(failed) = &state.failed
            && failed.step == S::STEP
        {
            // This step failed the upload on a delivery that was never acknowledged: a
            // crash may have come between `Failed` and its compensation.
            return complete_compensation(service, ctx, input, state)
                .await
                .map_err(|()| retry_delay);
        }
        // The upload moved on (this step already ran, or it failed or was aborted):
        // a redelivery or a duplicate. Nothing to do.
        tracing::debug!(
            service = S::NAME,
            seq = input.seq,
            last = state.last_seq,
            "already handled; skipping"
        );
        return Ok(());
    }
    if state.last_seq < input.seq {
        // The history does not show the delivered event yet: never drop an event on a
        // stale read; look again shortly.
        tracing::warn!(
            service = S::NAME,
            seq = input.seq,
            last = state.last_seq,
            "history behind the delivered event; retrying"
        );
        return Err(retry_delay);
    }

    // The step runs in its own task (a panic becomes Failed); in-progress acks keep the
    // server from redelivering while a long one runs.
    let mut handle = tokio::spawn(service.clone().handle(
        ctx.clone(),
        input.clone(),
        state.clone(),
    ));
    let mut every =
        tokio::time::interval_at(tokio::time::Instant::now() + ACK_WAIT / 3, ACK_WAIT / 3);
    let result = loop {
        tokio::select! {
            r = &mut handle => break r,
            _ = every.tick() => {
                let _ = message.ack_with(AckKind::Progress).await;
            }
        }
    };
    let result = match result {
        Ok(r) => r,
        Err(join) => Err(StepError::Permanent(format!(
            "internal error in the {} step: {}",
            S::NAME,
            panic_message(join)
        ))),
    };

    match result {
        Ok(events) => {
            // The span got the input's dataset when it had one; else the step's own.
            if input.envelope.event.dataset().is_none()
                && let Some(d) = events.iter().find_map(Event::dataset)
            {
                tracing::Span::current().record("dataset", tracing::field::display(d));
            }
            tracing::debug!(events = events.len(), "step handled; appending its events");
            let mut expect = Expect::LastSequence(input.seq);
            let mut cause = input.envelope.event_id;
            // The state after this step's events, for the next step (see `States`).
            let mut next = Some(state.clone());
            for event in events {
                let env = follow_up(input, cause, event);
                match ctx.journal.append(&env, expect).await {
                    Ok(AppendOutcome::Appended { seq, duplicate }) => {
                        expect = Expect::LastSequence(seq);
                        cause = env.event_id;
                        match (&mut next, duplicate) {
                            // What is stored at `seq` is an earlier attempt's event, not
                            // necessarily this one: nothing to vouch for.
                            (_, true) => next = None,
                            (Some(next), false) => next.apply_event(seq, &env),
                            (None, false) => {}
                        }
                    }
                    Ok(AppendOutcome::WrongLastSequence) => {
                        states.forget(upload);
                        tracing::info!(
                            service = S::NAME,
                            seq = input.seq,
                            "another instance appended first; dropping this result"
                        );
                        return Ok(());
                    }
                    Err(e) if e.is_transient() => {
                        states.forget(upload);
                        return Err(retry_delay);
                    }
                    Err(e) => {
                        states.forget(upload);
                        return fail::<S>(
                            service,
                            ctx,
                            input,
                            state,
                            e.to_string(),
                            delivered,
                            false,
                        )
                        .await
                        .map_err(|()| retry_delay);
                    }
                }
            }
            match next {
                Some(next) => states.put(next),
                None => states.forget(upload),
            }
            if let Err(e) = service.after(ctx.clone(), state).await {
                tracing::warn!(service = S::NAME, error = %e, "clean-up after the step failed; left for the janitor");
            }
            Ok(())
        }
        Err(StepError::Transient(reason)) if delivered < config.max_deliver => {
            // `?`: a reason quotes file names, headers and values from the input; Debug
            // escapes their newlines and control characters, so no input forges a line.
            tracing::warn!(service = S::NAME, delivered, reason = ?reason, "transient fault; will retry");
            Err(retry_delay)
        }
        Err(StepError::Transient(reason)) => {
            states.forget(upload);
            fail::<S>(service, ctx, input, state, reason, delivered, true)
                .await
                .map_err(|()| retry_delay)
        }
        Err(StepError::Permanent(reason)) => {
            states.forget(upload);
            fail::<S>(service, ctx, input, state, reason, delivered, false)
                .await
                .map_err(|()| retry_delay)
        }
    }
}

/// An envelope for `event` that follows `input` in the same upload.
fn follow_up(input: &Recorded, cause: weir_events::EventId, event: Event) -> Envelope {
    Envelope::new(
        input.envelope.aggregate.clone(),
        input.envelope.actor.clone(),
        input.envelope.correlation_id,
        Some(cause),
        event,
    )
}

/// Appends `Failed` after `input`, then runs and records the step's compensation.
/// `Err(())` when `Failed` could not be appended: the event must be redelivered (not
/// acked), or the upload would stay open forever.
async fn fail<S: Service>(
    service: Arc<S>,
    ctx: &Ctx,
    input: &Recorded,
    state: UploadState,
    reason: String,
    attempts: u32,
    retryable: bool,
) -> Result<(), ()> {
    // `?`: escaped, as above.
    tracing::warn!(service = S::NAME, upload = %input.envelope.correlation_id, reason = ?reason, "step failed");
    let failed = follow_up(
        input,
        input.envelope.event_id,
        Event::Failed(Failed {
            step: S::STEP,
            reason: truncate(reason, 4000),
            attempts,
            retryable,
        }),
    );
    match ctx
        .journal
        .append(&failed, Expect::LastSequence(input.seq))
        .await
    {
        Ok(AppendOutcome::Appended { .. }) => {}
        Ok(AppendOutcome::WrongLastSequence) => return Ok(()), // someone else decided first
        Err(e) => {
            tracing::error!(service = S::NAME, error = %e, "cannot append Failed; the event will be redelivered");
            return Err(());
        }
    }
    let actions = match service.compensate(ctx.clone(), state).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(service = S::NAME, error = %e, "compensation failed; objects left for the janitor");
            return Ok(());
        }
    };
    let mut cause = failed.event_id;
    for action in actions {
        let env = follow_up(
            input,
            cause,
            Event::Compensated(Compensated {
                step: S::STEP,
                action,
            }),
        );
        if let Err(e) = ctx.journal.append(&env, Expect::Any).await {
            tracing::error!(service = S::NAME, error = %e, "cannot record a compensation");
        }
        cause = env.event_id;
    }
    Ok(())
}

/// Runs the failed step's compensation again (it is idempotent) and records the
/// actions the log does not show yet, each conditionally on the upload's last event, so
/// that a compensation completed meanwhile by someone else is stored once. `Err(())`:
/// try again on a later delivery. Found by `cli/tests/kill_rounds.rs`: a SIGKILL
/// between `Failed` and `Compensated` left the compensation undone for good.
async fn complete_compensation<S: Service>(
    service: Arc<S>,
    ctx: &Ctx,
    input: &Recorded,
    state: UploadState,
) -> Result<(), ()> {
    let Some(mut cause) = state.last_event else {
        return Ok(());
    };
    let mut expect = Expect::LastSequence(state.last_seq);
    let done = state.compensated.clone();
    let mut recorded = 0;
    let actions = match service.compensate(ctx.clone(), state).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(service = S::NAME, error = %e, "compensation failed again; will retry");
            return Err(());
        }
    };
    for action in actions.into_iter().filter(|a| !done.contains(a)) {
        let env = follow_up(
            input,
            cause,
            Event::Compensated(Compensated {
                step: S::STEP,
                action,
            }),
        );
        match ctx.journal.append(&env, expect).await {
            Ok(AppendOutcome::Appended { seq, .. }) => {
                expect = Expect::LastSequence(seq);
                cause = env.event_id;
                recorded += 1;
            }
            // Completed by someone else meanwhile.
            Ok(AppendOutcome::WrongLastSequence) => return Ok(()),
            Err(e) => {
                tracing::error!(service = S::NAME, error = %e, "cannot record a compensation; will retry");
                return Err(());
            }
        }
    }
    if recorded > 0 {
        tracing::info!(
            service = S::NAME,
            recorded,
            "compensation completed after an interrupted delivery"
        );
    }
    Ok(())
}

fn panic_message(join: tokio::task::JoinError) -> String {
    if !join.is_panic() {
        return "the task was cancelled".to_owned();
    }
    let payload = join.into_panic();
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_owned()
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}
