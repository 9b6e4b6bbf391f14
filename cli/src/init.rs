//! `weir init`: what `weir up` does at start, as a one-shot step for a system whose
//! parts run as separate `weir serve` processes (docker-compose.yml's `setup`
//! container): sets the stream up on an external NATS as the `admin` user (created, or
//! updated to weir's spec with the replicas asked for; only `admin` may, the other
//! users can only use an existing stream) and, given a database, migrates the
//! projections.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use weir_events::StreamSpec;
use weir_journal::{Credentials, Journal, Role};

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Keep the stream on this many nodes (3 on a 3-node cluster)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub replicas: u8,
    /// How long to wait for the server (and a cluster's leader) to answer
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub wait: u64,
    /// Print the result as one JSON object
    #[arg(long)]
    pub json: bool,
}

pub async fn run(
    nats_url: Option<&str>,
    database_url: Option<&str>,
    args: InitArgs,
) -> Result<i32> {
    let Some(url) = nats_url else {
        bail!(
            "weir init sets up an external NATS: pass --nats-url (or NATS_URL); `weir up` sets up the server it starts itself"
        );
    };
    let spec = StreamSpec {
        replicas: usize::from(args.replicas),
        ..StreamSpec::default()
    };
    let journal = Journal::set_up(
        url,
        Credentials::from_env(Role::Admin).as_ref(),
        &spec,
        Duration::from_secs(args.wait),
    )
    .await
    .map_err(|e| crate::system::refused_hint(e, Role::Admin))?;
    let health = journal
        .stream_health()
        .await
        .context("reading the stream's state")?;
    let migrated = match database_url {
        Some(db_url) => {
            // The URL may hold the database's password: it is not printed.
            let db = weir_projections::Db::connect(db_url)
                .await
                .context("migrating the projections database")?;
            db.close().await;
            true
        }
        None => false,
    };
    crate::say(
        args.json,
        serde_json::json!({
            "stream": journal.stream_name(),
            "replicas": health.replicas,
            "messages": health.messages,
            "database_migrated": migrated,
        }),
        format_args!(
            "stream {}: {} replica(s), {} event(s){}",
            journal.stream_name(),
            health.replicas,
            health.messages,
            if migrated {
                "; projections database migrated"
            } else {
                ""
            }
        ),
    );
    Ok(0)
}
