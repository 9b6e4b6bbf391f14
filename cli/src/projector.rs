//! `weir serve projector`: keeps the projections database up to date from the log as
//! a process of its own (docker-compose.yml's `projector` container), connected as the
//! read-only `projector` user. `weir up` runs the same loop in-process.

use std::path::Path;

use anyhow::{Context, Result};
use weir_journal::Role;
use weir_projections::Db;

use crate::tail::shutdown_signal;
use crate::up::{ReadyFile, ServeArgs};

pub async fn serve(
    data_dir: &Path,
    nats_url: Option<&str>,
    db_url: &str,
    args: ServeArgs,
) -> Result<i32> {
    let journal = crate::system::connect(Role::Projector, nats_url, data_dir).await?;
    // The URL may hold the database's password: it is not printed.
    let db = Db::connect(db_url)
        .await
        .context("opening the projections database")?;
    let _ready = ReadyFile::create(args.ready_file, "projector")?;
    crate::say(
        args.json,
        serde_json::json!({"ready": true, "service": "projector"}),
        "ready projector",
    );
    let result = weir_projections::run(&journal, &db, shutdown_signal()).await;
    db.close().await;
    result.map_err(|e| anyhow::anyhow!("projector: {e}"))?;
    Ok(0)
}
