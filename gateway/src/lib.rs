//! weir's HTTP gateway: the API owners use (uploads, datasets, notifications, a live
//! event stream), `/metrics`, `/healthz`, `/openapi.json` and the dashboard page.
//!
//! The gateway only appends events, reads projections, and writes upload parts to the
//! object store. Before a conditional append it reads the one aggregate it appends to
//! (an upload session, a dataset, a table name), the way services fold an upload's
//! history before a step. [`app`] builds the router; [`serve`] runs it on a listener
//! until a shutdown future completes, so tests start it in-process.

pub mod auth;
pub mod datasets;
pub mod error;
pub mod events;
pub mod metrics;
pub mod notifications;
pub mod openapi;
pub mod presign;
#[cfg(feature = "query")]
pub mod query;
pub mod requests;
pub mod tokens;
pub mod uploads;
pub mod views;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post, put};
use weir_journal::Journal;
use weir_projections::Db;
use weir_services::Store;

pub use error::ApiError;
pub use tokens::{IssuedToken, TokenTable, create_token};

/// Default limit of one upload, single-shot or multipart: 5 GiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// Default part size of a multipart upload when the client names none.
pub const DEFAULT_PART_SIZE: u64 = 8 * 1024 * 1024;
/// How long presigned part URLs work by default.
pub const DEFAULT_URL_TTL: Duration = Duration::from_secs(15 * 60);

/// What the gateway is allowed to do and how big things may get.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest upload accepted (bytes); larger ones get 413 naming the limit.
    pub max_upload_bytes: u64,
    pub default_part_size: u64,
    /// Lifetime of presigned part URLs.
    pub url_ttl: Duration,
    /// The HMAC-SHA256 key that signs part URLs. Keep it across restarts or the URLs
    /// handed out before a restart stop working.
    pub signing_key: Vec<u8>,
    /// Scratch space for request bodies on their way to the store.
    pub work_dir: PathBuf,
    /// Base of the part URLs (e.g. `https://weir.example`); without it the request's
    /// `Host` header is used.
    pub public_url: Option<String>,
}

impl Config {
    pub fn new(signing_key: Vec<u8>, work_dir: PathBuf) -> Self {
        Self {
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            default_part_size: DEFAULT_PART_SIZE,
            url_ttl: DEFAULT_URL_TTL,
            signing_key,
            work_dir,
            public_url: None,
        }
    }
}

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    journal: Journal,
    store: Store,
    db: Db,
    config: Config,
    tokens: TokenTable,
    metrics: metrics::Metrics,
    /// Parts being written right now: a second PUT of the same part while the first
    /// runs is a replay.
    parts_in_flight: Mutex<std::collections::HashSet<(weir_events::UploadId, u32)>>,
    /// sha256 of the parts this process stored, checked against the list on complete.
    part_digests:
        Mutex<std::collections::HashMap<(weir_events::UploadId, u32), weir_events::Sha256>>,
    /// Set when the server shuts down, so live event streams end and let it.
    stopping: tokio::sync::watch::Sender<bool>,
    /// The SQL engine, made on the first query; one per process, so its memory limit
    /// holds for all queries together.
    #[cfg(feature = "query")]
    query: std::sync::OnceLock<weir_query::Engine>,
}

impl AppState {
    pub fn new(journal: Journal, store: Store, db: Db, config: Config) -> Self {
        Self {
            inner: Arc::new(Inner {
                tokens: TokenTable::new(journal.clone()),
                metrics: metrics::Metrics::default(),
                journal,
                store,
                db,
                config,
                parts_in_flight: Mutex::default(),
                part_digests: Mutex::default(),
                stopping: tokio::sync::watch::Sender::new(false),
                #[cfg(feature = "query")]
                query: std::sync::OnceLock::new(),
            }),
        }
    }

    pub fn journal(&self) -> &Journal {
        &self.inner.journal
    }
    pub fn store(&self) -> &Store {
        &self.inner.store
    }
    pub fn db(&self) -> &Db {
        &self.inner.db
    }
    pub fn config(&self) -> &Config {
        &self.inner.config
    }
    pub fn tokens(&self) -> &TokenTable {
        &self.inner.tokens
    }
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.inner.metrics
    }
    fn inner_in_flight(&self) -> &Mutex<std::collections::HashSet<(weir_events::UploadId, u32)>> {
        &self.inner.parts_in_flight
    }
    fn inner_digests(
        &self,
    ) -> &Mutex<std::collections::HashMap<(weir_events::UploadId, u32), weir_events::Sha256>> {
        &self.inner.part_digests
    }
    #[cfg(feature = "query")]
    pub fn query_engine(&self) -> Result<&weir_query::Engine, ApiError> {
        if let Some(engine) = self.inner.query.get() {
            return Ok(engine);
        }
        let engine = weir_query::Engine::new(self.db().clone(), self.store().object_store())
            .map_err(|e| ApiError::internal(format!("starting the query engine: {e}")))?;
        Ok(self.inner.query.get_or_init(|| engine))
    }
    /// Resolves once the server began shutting down.
    pub fn stopping(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        let mut rx = self.inner.stopping.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }
}

/// The whole HTTP surface.
pub fn app(state: AppState) -> Router {
    let router = Router::new()
        .route("/", get(dashboard))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::handler))
        .route("/openapi.json", get(openapi::handler))
        .route("/v1/uploads", post(uploads::single_shot))
        .route("/v1/uploads/multipart", post(uploads::init_multipart))
        .route(
            "/v1/uploads/{id}",
            get(uploads::get_upload).delete(uploads::abort),
        )
        .route("/v1/uploads/{id}/parts/{number}", put(uploads::put_part))
        .route("/v1/uploads/{id}/complete", post(uploads::complete))
        .route(
            "/v1/datasets",
            get(datasets::list).post(uploads::inline_dataset),
        )
        .route(
            "/v1/datasets/{id}",
            get(datasets::get_dataset)
                .patch(datasets::update)
                .delete(datasets::soft_delete),
        )
        .route("/v1/datasets/{id}/restore", post(datasets::restore))
        .route("/v1/datasets/{id}/preview", get(datasets::preview))
        .route("/v1/datasets/{id}/grants", get(datasets::list_grants))
        .route(
            "/v1/datasets/{id}/grants/{owner}",
            put(datasets::grant).delete(datasets::revoke),
        )
        .route("/v1/notifications", get(notifications::list))
        .route(
            "/v1/notifications/{id}/read",
            post(notifications::mark_read),
        )
        .route("/v1/events", get(events::stream));
    #[cfg(feature = "query")]
    let router = router.route("/v1/query", post(query::run));
    router
        .fallback(|| async { ApiError::not_found("no such route") })
        // Bodies stream through handlers that count bytes themselves.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

/// The dashboard: one static page, no build step.
const DASHBOARD: &str = include_str!("dashboard.html");

async fn dashboard() -> axum::response::Html<&'static str> {
    axum::response::Html(DASHBOARD)
}

#[utoipa::path(get, path = "/healthz", tag = "system",
    responses((status = 200, description = "the gateway is up and reaches NATS", body = views::Health),
              (status = 503, description = "NATS is unreachable", body = views::ErrorBody)))]
pub async fn healthz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<axum::Json<views::Health>, ApiError> {
    let last_seq = state
        .journal()
        .last_sequence()
        .await
        .map_err(|e| ApiError::unavailable(format!("event log: {e}")))?;
    Ok(axum::Json(views::Health {
        status: "ok".into(),
        last_seq,
    }))
}

/// Serves [`app`] on `listener` until `shutdown` completes. Also runs the log watcher
/// that keeps the token table and the metrics current.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let watcher = tokio::spawn(metrics::watch_log(state.clone()));
    let requests = tokio::spawn(requests::serve_requests(state.clone()));
    let mirror = tokio::spawn(requests::mirror_json(state.clone()));
    let stopping = state.inner.stopping.clone();
    let result = axum::serve(listener, app(state))
        .with_graceful_shutdown(async move {
            shutdown.await;
            stopping.send_replace(true);
        })
        .await;
    watcher.abort();
    requests.abort();
    mirror.abort();
    result
}
