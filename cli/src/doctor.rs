//! `weir doctor`: the health of every part, one line each (or `--json`), and an exit
//! code: 0 when every check passed, 1 when one failed. What it checks: the NATS
//! server (reachable, version ≥ 2.11), the stream (messages, bytes, replicas), each
//! service's durable consumer and how far behind it is, the projections database
//! (reachable, migrations applied, the projector's lag behind the log), and the object
//! store (a probe object written, read back and deleted).

use std::path::Path;

use anyhow::Result;
use serde::Serialize;
use weir_journal::Role;
use weir_services::Store;

/// The durable consumers `weir up` creates, one per service.
const SERVICES: [&str; 3] = ["combiner", "inferrer", "registrar"];

#[derive(Debug, Serialize)]
struct Check {
    part: String,
    ok: bool,
    detail: String,
}

fn check(part: impl Into<String>, result: Result<String, String>) -> Check {
    let (ok, detail) = match result {
        Ok(d) => (true, d),
        Err(d) => (false, d),
    };
    Check {
        part: part.into(),
        ok,
        detail,
    }
}

pub async fn run(
    nats_url: Option<&str>,
    data_dir: &Path,
    db_url: &str,
    store: Option<Store>,
    json: bool,
) -> Result<i32> {
    let mut checks = Vec::new();
    let journal = match crate::system::connect(Role::Projector, nats_url, data_dir).await {
        Ok(j) => {
            let version = j.server_version();
            checks.push(check(
                "nats-server",
                if weir_journal::version_ok(&version) {
                    Ok(format!("version {version}"))
                } else {
                    Err(format!("version {version}: weir needs 2.11 or newer"))
                },
            ));
            Some(j)
        }
        Err(e) => {
            checks.push(check("nats-server", Err(format!("{e:#}"))));
            None
        }
    };
    let mut last_seq = None;
    if let Some(j) = &journal {
        match j.stream_health().await {
            Ok(h) => {
                last_seq = Some(h.last_sequence);
                checks.push(check(
                    format!("stream {}", j.stream_name()),
                    Ok(format!(
                        "{} events, {} bytes, last seq {}, {} replica(s)",
                        h.messages, h.bytes, h.last_sequence, h.replicas
                    )),
                ));
                for service in SERVICES {
                    let name = format!("weir-{service}");
                    let result = match j.consumer_backlog(&name).await {
                        Ok((pending, unacked, redelivered)) => Ok(format!(
                            "{pending} pending, {unacked} unacknowledged, {redelivered} redelivered"
                        )),
                        Err(e) => Err(format!(
                            "missing ({e}): is `weir up` or `weir serve {service}` running?"
                        )),
                    };
                    checks.push(check(format!("consumer {name}"), result));
                }
            }
            Err(e) => checks.push(check(
                format!("stream {}", j.stream_name()),
                Err(format!("missing: {e}")),
            )),
        }
    }
    match weir_projections::Db::open(db_url).await {
        Ok(db) => {
            let expected = weir_projections::migrator().iter().count() as i64;
            let applied = db.migrations_applied().await.map_err(|e| e.to_string());
            checks.push(check(
                "database migrations",
                match applied {
                    Ok(n) if n == expected => Ok(format!("{n} of {expected} applied ({db_url})")),
                    Ok(n) => Err(format!(
                        "{n} of {expected} applied: run `weir up` (or any command) to migrate"
                    )),
                    Err(e) => Err(format!("{db_url}: {e}")),
                },
            ));
            if let Some(last) = last_seq {
                let projector = weir_projections::Projector::new(db.clone());
                checks.push(check(
                    "projector",
                    match projector.checkpoint().await {
                        Ok(seq) => Ok(format!(
                            "checkpoint {seq}, {} event(s) behind the log",
                            last.saturating_sub(seq)
                        )),
                        Err(e) => Err(e.to_string()),
                    },
                ));
            }
            db.close().await;
        }
        Err(e) => checks.push(check("database", Err(format!("{db_url}: {e}")))),
    }
    match store {
        Some(store) => {
            let records = match store.records_digests().await {
                Some(true) => "; digests recorded as objects are written",
                Some(false) => {
                    "; no digests recorded (the file system keeps no user extended attributes): each one-part upload is read again to be verified"
                }
                None => "",
            };
            checks.push(check(
                "object store",
                store
                    .probe()
                    .await
                    .map(|()| {
                        format!(
                            "{} (written, read back, deleted{records})",
                            store.location("")
                        )
                    })
                    .map_err(|e| e.to_string()),
            ))
        }
        None => checks.push(check("object store", Err("not configured".into()))),
    }
    let healthy = checks.iter().all(|c| c.ok);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "healthy": healthy, "checks": checks })
            )?
        );
    } else {
        for c in &checks {
            println!(
                "{}  {:<24} {}",
                if c.ok { "ok  " } else { "FAIL" },
                c.part,
                c.detail
            );
        }
        println!("{}", if healthy { "healthy" } else { "unhealthy" });
    }
    Ok(if healthy { 0 } else { 1 })
}
