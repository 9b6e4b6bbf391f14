//! Benchmark: the time from an event's append (PubAck received) to its upload status
//! row being readable, with a live projector on SQLite (default) or Postgres.
//!
//!     cargo run --release -p weir-projections --example visibility [-- N [postgres://…/db]]
//!
//! Prints median, p90, p99 and max over N sequential appends (default 1000).

use std::time::{Duration, Instant};

use weir_events::{StreamSpec, UploadId};
use weir_journal::{Expect, Journal};
use weir_projections::Db;
use weir_testkit::{NatsServer, sample};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let dir = tempfile::tempdir()?;
    let url = args
        .next()
        .unwrap_or_else(|| dir.path().join("weir.db").display().to_string());
    let nats = NatsServer::start();
    let journal = Journal::connect(&nats.url(), &StreamSpec::default()).await?;
    let db = Db::connect(&url).await?;
    let (stop, mut rx) = tokio::sync::watch::channel(false);
    let projector = {
        let (journal, db) = (journal.clone(), db.clone());
        tokio::spawn(async move {
            weir_projections::run(&journal, &db, async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await
        })
    };
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let up = UploadId::new();
        journal
            .append(&sample::upload_received(up, "v.csv"), Expect::Empty)
            .await?;
        let appended = Instant::now();
        loop {
            if weir_projections::upload_status(&db, up).await?.is_some() {
                break;
            }
            tokio::task::yield_now().await;
        }
        latencies.push(appended.elapsed());
    }
    stop.send(true)?;
    projector.await??;
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "append → status row visible ({}, n={n}): median {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        if url.starts_with("postgres") {
            "postgres"
        } else {
            "sqlite"
        },
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(0.99)),
        ms(*latencies.last().unwrap_or(&Duration::ZERO))
    );
    Ok(())
}
