//! `/metrics` in Prometheus text format, computed from the log: events by kind, events
//! handled per service, step durations (from the server's store times of a step's input
//! and output events), failures by step, bytes written to the object store, rows
//! registered and rejected; plus, read at scrape time, the log's last sequence, the
//! projector's lag and each service consumer's backlog. The log watcher here also keeps the token table current.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use futures::StreamExt;
use weir_events::{Event, Timestamp, UploadId};
use weir_journal::{Follow, Recorded, Start};

use crate::AppState;

/// Upper bounds of the step-duration histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

#[derive(Debug, Default)]
struct Counters {
    /// The last sequence the watcher applied.
    seen_seq: u64,
    by_kind: BTreeMap<&'static str, u64>,
    handled: BTreeMap<&'static str, u64>,
    failures: BTreeMap<&'static str, u64>,
    durations: BTreeMap<&'static str, Histogram>,
    /// The step each unfinished upload is in and when its input was stored.
    running: HashMap<UploadId, (&'static str, Timestamp)>,
    /// Bytes weir wrote to the object store, by what they are: `blob` (distinct
    /// content combined), `parquet` (conversions).
    stored_bytes: BTreeMap<&'static str, u64>,
    /// Rows registered, and rows rejected by the bad-row policy.
    rows_registered: u64,
    rows_rejected: u64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<Counters>,
}

impl Metrics {
    /// Folds one event in.
    pub fn apply(&self, r: &Recorded) {
        let Ok(mut c) = self.counters.lock() else {
            return;
        };
        if r.seq <= c.seen_seq {
            return;
        }
        c.seen_seq = r.seq;
        let kind = r.envelope.kind().as_str();
        *c.by_kind.entry(kind).or_default() += 1;
        let upload = r.envelope.correlation_id;
        let at = r.stored_at;
        let finish = |c: &mut Counters, step: &'static str, next: Option<&'static str>| {
            if let Some((running, since)) = c.running.remove(&upload)
                && running == step
            {
                let seconds = (at.0 - since.0).max(0) as f64 / 1e6;
                c.durations.entry(step).or_default().observe(seconds);
            }
            if let Some(next) = next {
                c.running.insert(upload, (next, at));
            }
        };
        match &r.envelope.event {
            Event::UploadReceived(_) => {
                c.running.insert(upload, ("combine", at));
            }
            Event::PartsCombined(p) => {
                if !p.deduplicated {
                    *c.stored_bytes.entry("blob").or_default() += p.size;
                }
                for b in p.more_blobs.iter().filter(|b| !b.deduplicated) {
                    *c.stored_bytes.entry("blob").or_default() += b.size;
                }
                *c.handled.entry("combiner").or_default() += 1;
                finish(&mut c, "combine", Some("infer"));
            }
            Event::SchemaInferred(e) => {
                if e.rewritten {
                    *c.stored_bytes.entry("parquet").or_default() += e.parquet_size;
                }
                c.rows_rejected += e.quality.rejected;
                *c.handled.entry("inferrer").or_default() += 1;
                finish(&mut c, "infer", Some("register"));
            }
            Event::DatasetRegistered(e) => {
                c.rows_registered += e.statistics.rows;
                *c.handled.entry("registrar").or_default() += 1;
                finish(&mut c, "register", None);
            }
            Event::Failed(f) => {
                let service = match f.step {
                    weir_events::Step::Upload => "producer",
                    weir_events::Step::Combine => "combiner",
                    weir_events::Step::Infer => "inferrer",
                    weir_events::Step::Register => "registrar",
                };
                *c.handled.entry(service).or_default() += 1;
                *c.failures.entry(f.step.as_str()).or_default() += 1;
                c.running.remove(&upload);
            }
            Event::UploadAborted(_) => {
                c.running.remove(&upload);
            }
            _ => {}
        }
    }

    fn render(&self, out: &mut String) {
        let Ok(c) = self.counters.lock() else {
            return;
        };
        let _ = writeln!(out, "# HELP weir_events_total Events in the log by kind.");
        let _ = writeln!(out, "# TYPE weir_events_total counter");
        for (kind, n) in &c.by_kind {
            let _ = writeln!(out, "weir_events_total{{kind=\"{kind}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP weir_service_events_handled_total Events each service appended as the outcome of a step (success or Failed)."
        );
        let _ = writeln!(out, "# TYPE weir_service_events_handled_total counter");
        for (service, n) in &c.handled {
            let _ = writeln!(
                out,
                "weir_service_events_handled_total{{service=\"{service}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP weir_step_failures_total Failed events by step."
        );
        let _ = writeln!(out, "# TYPE weir_step_failures_total counter");
        for (step, n) in &c.failures {
            let _ = writeln!(out, "weir_step_failures_total{{step=\"{step}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP weir_step_duration_seconds Time from a step's input event to its output event, as stored by the server."
        );
        let _ = writeln!(out, "# TYPE weir_step_duration_seconds histogram");
        for (step, h) in &c.durations {
            for (bound, n) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "weir_step_duration_seconds_bucket{{step=\"{step}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "weir_step_duration_seconds_bucket{{step=\"{step}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "weir_step_duration_seconds_sum{{step=\"{step}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "weir_step_duration_seconds_count{{step=\"{step}\"}} {}",
                h.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP weir_uploads_in_progress Uploads received and not yet registered, failed or aborted."
        );
        let _ = writeln!(
            out,
            "# HELP weir_object_store_bytes_total Bytes weir wrote to the object store: distinct blobs and Parquet conversions."
        );
        let _ = writeln!(out, "# TYPE weir_object_store_bytes_total counter");
        for kind in ["blob", "parquet"] {
            let n = c.stored_bytes.get(kind).copied().unwrap_or(0);
            let _ = writeln!(out, "weir_object_store_bytes_total{{kind=\"{kind}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP weir_rows_total Rows registered, and rows rejected into rejects files."
        );
        let _ = writeln!(out, "# TYPE weir_rows_total counter");
        let _ = writeln!(
            out,
            "weir_rows_total{{outcome=\"registered\"}} {}",
            c.rows_registered
        );
        let _ = writeln!(
            out,
            "weir_rows_total{{outcome=\"rejected\"}} {}",
            c.rows_rejected
        );
        let _ = writeln!(out, "# TYPE weir_uploads_in_progress gauge");
        let _ = writeln!(out, "weir_uploads_in_progress {}", c.running.len());
        let _ = writeln!(
            out,
            "# HELP weir_gateway_watched_sequence The last stream sequence the gateway's metrics include."
        );
        let _ = writeln!(out, "# TYPE weir_gateway_watched_sequence gauge");
        let _ = writeln!(out, "weir_gateway_watched_sequence {}", c.seen_seq);
    }

    fn seen(&self) -> u64 {
        self.counters.lock().map(|c| c.seen_seq).unwrap_or(0)
    }
}

/// Follows the whole log into the metrics and the token table until aborted.
pub async fn watch_log(state: AppState) {
    loop {
        let seen = state.metrics().seen();
        let start = if seen == 0 {
            Start::All
        } else {
            Start::Sequence(seen + 1)
        };
        match state
            .journal()
            .follow(Follow {
                filters: Vec::new(),
                start,
            })
            .await
        {
            Ok(events) => {
                let mut events = std::pin::pin!(events);
                while let Some(item) = events.next().await {
                    match item {
                        Ok(r) => {
                            state.tokens().apply(&r);
                            state.metrics().apply(&r);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "gateway log watcher skipped an event")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "gateway log watcher cannot follow the log"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn handler(State(state): State<AppState>) -> impl IntoResponse {
    let mut out = String::new();
    state.metrics().render(&mut out);
    if let Ok(last) = state.journal().last_sequence().await {
        let _ = writeln!(
            out,
            "# HELP weir_log_last_sequence The event log's last stream sequence."
        );
        let _ = writeln!(out, "# TYPE weir_log_last_sequence gauge");
        let _ = writeln!(out, "weir_log_last_sequence {last}");
    }
    let _ = writeln!(
        out,
        "# HELP weir_consumer_pending_events Events each service's durable consumer has not yet been delivered."
    );
    let _ = writeln!(out, "# TYPE weir_consumer_pending_events gauge");
    let _ = writeln!(
        out,
        "# HELP weir_consumer_unacknowledged_events Events delivered to a service and not yet acknowledged."
    );
    let _ = writeln!(out, "# TYPE weir_consumer_unacknowledged_events gauge");
    for service in ["combiner", "inferrer", "registrar"] {
        if let Ok((pending, unacked, _)) = state
            .journal()
            .consumer_backlog(&format!("weir-{service}"))
            .await
        {
            let _ = writeln!(
                out,
                "weir_consumer_pending_events{{consumer=\"weir-{service}\"}} {pending}"
            );
            let _ = writeln!(
                out,
                "weir_consumer_unacknowledged_events{{consumer=\"weir-{service}\"}} {unacked}"
            );
        }
    }
    if let Ok(lag) = weir_projections::lag(state.journal(), state.db()).await {
        let _ = writeln!(
            out,
            "# HELP weir_projector_lag_events Events in the log not yet in the projections."
        );
        let _ = writeln!(out, "# TYPE weir_projector_lag_events gauge");
        let _ = writeln!(out, "weir_projector_lag_events {lag}");
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}
