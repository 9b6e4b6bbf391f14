//! The pipeline's services and their runtime.
//!
//! Each service is a [`runtime::Service`]: a step from one event kind to the next
//! (combiner: `UploadReceived` → `PartsCombined`; inferrer: → `SchemaInferred`;
//! registrar: → `DatasetRegistered`). [`runtime::run`] drives one on a durable
//! consumer; [`run_all`] runs every one in this process (`weir up`).
//!
//! [`janitor`] is not a step: it sweeps on a clock (retention, garbage collection,
//! lost compensations), deciding from the object references projection.

pub mod combiner;
pub mod dataset;
pub mod inferrer;
pub mod janitor;
pub mod producer;
pub mod registrar;
pub mod runtime;
pub mod state;
pub mod store;

use std::future::Future;
use std::sync::Arc;

pub use runtime::{Ctx, RunConfig, Service, StepError};
pub use state::States;
pub use store::Store;
pub use weir_schemas::Limits;

/// The services `weir serve` can run on their own.
pub const SERVICES: [&str; 3] = ["combiner", "inferrer", "registrar"];

/// Events one instance of a service works on at once. Steps spend most of their time
/// waiting for the log or the store, so many in flight keep the appends pipelined
/// across uploads (JETSTREAM.md: awaited one by one, appends run ≈ 20× slower). The
/// inferrer's CPU-heavy conversions are limited separately (`inferrer::HEAVY`).
pub const CONCURRENCY: usize = 64;

/// Runs the named service until `shutdown`.
pub async fn run_one(
    name: &str,
    ctx: Ctx,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), StepError> {
    run_named(name, ctx, States::default(), shutdown).await
}

async fn run_named(
    name: &str,
    ctx: Ctx,
    states: States,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), StepError> {
    let config = RunConfig {
        concurrency: CONCURRENCY,
        ..RunConfig::default()
    };
    match name {
        "combiner" => {
            runtime::run_with(Arc::new(combiner::Combiner), ctx, config, states, shutdown).await
        }
        "inferrer" => {
            runtime::run_with(Arc::new(inferrer::Inferrer), ctx, config, states, shutdown).await
        }
        "registrar" => {
            runtime::run_with(
                Arc::new(registrar::Registrar),
                ctx,
                config,
                states,
                shutdown,
            )
            .await
        }
        other => Err(StepError::Permanent(format!(
            "unknown service {other:?}: use one of {}",
            SERVICES.join(", ")
        ))),
    }
}

/// One [`Ctx`] per service, so that each connects to NATS as its own user (`weir up`).
pub struct Ctxs {
    pub combiner: Ctx,
    pub inferrer: Ctx,
    pub registrar: Ctx,
}

impl Ctxs {
    /// Every service on the same connection.
    pub fn same(ctx: Ctx) -> Self {
        Self {
            combiner: ctx.clone(),
            inferrer: ctx.clone(),
            registrar: ctx,
        }
    }
}

/// Runs every service until `shutdown` resolves (a watch on a shared signal). They
/// share one [`States`]: each step starts from the state the step before it left,
/// instead of reading the upload's history again.
pub async fn run_all(
    ctx: Ctx,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), StepError> {
    run_each(Ctxs::same(ctx), shutdown).await
}

/// [`run_all`] with each service on its own [`Ctx`].
pub async fn run_each(
    ctxs: Ctxs,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), StepError> {
    let stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let states = States::default();
    let (a, b, c) = tokio::join!(
        run_named(
            "combiner",
            ctxs.combiner,
            states.clone(),
            stop(shutdown.clone())
        ),
        run_named(
            "inferrer",
            ctxs.inferrer,
            states.clone(),
            stop(shutdown.clone())
        ),
        run_named("registrar", ctxs.registrar, states.clone(), stop(shutdown)),
    );
    tracing::info!(
        from_previous_step = states.used.load(std::sync::atomic::Ordering::Relaxed),
        history_reads = states.read.load(std::sync::atomic::Ordering::Relaxed),
        "where steps took their starting state from"
    );
    a.and(b).and(c)
}
