//! The pipeline's services and their runtime.
//!
//! Each service is a [`runtime::Service`]: a step from one event kind to the next
//! (combiner: `UploadReceived` → `PartsCombined`; inferrer: → `SchemaInferred`;
//! registrar: → `DatasetRegistered`). [`runtime::run`] drives one on a durable
//! consumer; [`run_all`] runs every one in this process (`weir up`).

pub mod combiner;
pub mod inferrer;
pub mod producer;
pub mod registrar;
pub mod runtime;
pub mod state;
pub mod store;

use std::future::Future;
use std::sync::Arc;

pub use runtime::{Ctx, RunConfig, Service, StepError};
pub use store::Store;

/// The services `weir serve` can run on their own.
pub const SERVICES: [&str; 3] = ["combiner", "inferrer", "registrar"];

/// Runs the named service until `shutdown`.
pub async fn run_one(
    name: &str,
    ctx: Ctx,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), StepError> {
    match name {
        "combiner" => {
            runtime::run(
                Arc::new(combiner::Combiner),
                ctx,
                RunConfig::default(),
                shutdown,
            )
            .await
        }
        // Conversions are CPU-bound: one per core.
        "inferrer" => {
            runtime::run(
                Arc::new(inferrer::Inferrer),
                ctx,
                RunConfig {
                    concurrency: 2,
                    ..RunConfig::default()
                },
                shutdown,
            )
            .await
        }
        "registrar" => {
            runtime::run(
                Arc::new(registrar::Registrar),
                ctx,
                RunConfig::default(),
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

/// Runs every service until `shutdown` resolves (a watch on a shared signal).
pub async fn run_all(
    ctx: Ctx,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), StepError> {
    let stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let (a, b, c) = tokio::join!(
        run_one("combiner", ctx.clone(), stop(shutdown.clone())),
        run_one("inferrer", ctx.clone(), stop(shutdown.clone())),
        run_one("registrar", ctx, stop(shutdown)),
    );
    a.and(b).and(c)
}
