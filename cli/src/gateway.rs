//! Starting the HTTP gateway: inside `weir up` (`--http ADDR`) and on its own as
//! `weir serve gateway`. The signing key of presigned part URLs lives in
//! `<data dir>/gateway.key`, so URLs handed out survive a restart.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result};
use weir_gateway::{AppState, Config};
use weir_journal::Journal;
use weir_projections::Db;
use weir_services::Store;

/// Where `weir up` serves HTTP unless told otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";

/// The data dir's signing key, created (32 random bytes, hex, mode 0600) on first use.
pub fn signing_key(data_dir: &Path) -> Result<Vec<u8>> {
    let path = data_dir.join("gateway.key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return hex::decode(text.trim()).with_context(|| format!("{} is not hex", path.display()));
    }
    let mut key = [0u8; 32];
    getrandom::fill(&mut key)
        .map_err(|e| anyhow::anyhow!("no randomness for the signing key: {e}"))?;
    let tmp = path.with_extension("key.tmp");
    std::fs::write(&tmp, hex::encode(key)).with_context(|| format!("writing {}", tmp.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(key.to_vec())
}

/// Binds `addr` and serves the gateway until `stop` turns true; returns the bound address.
pub async fn start(
    addr: &str,
    journal: Journal,
    store: Store,
    db: Db,
    data_dir: &Path,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the HTTP gateway to {addr}"))?;
    let bound = listener.local_addr()?;
    let work = data_dir.join("work");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let mut config = Config::new(signing_key(data_dir)?, work);
    if let Ok(limit) = std::env::var("WEIR_MAX_UPLOAD_BYTES") {
        config.max_upload_bytes = limit
            .parse()
            .with_context(|| format!("WEIR_MAX_UPLOAD_BYTES={limit:?} is not a number of bytes"))?;
    }
    let state = AppState::new(journal, store, db, config);
    let task = tokio::spawn(weir_gateway::serve(listener, state, async move {
        let _ = stop.wait_for(|s| *s).await;
    }));
    Ok((bound, task))
}

/// `weir serve gateway`: reads the projections the running system keeps up to date.
pub async fn serve(
    data_dir: &Path,
    nats_url: Option<&str>,
    db_url: &str,
    store: Store,
    addr: &str,
    ready_file: Option<std::path::PathBuf>,
) -> Result<i32> {
    let journal = crate::system::connect(weir_journal::Role::Gateway, nats_url, data_dir).await?;
    let db = Db::connect(db_url)
        .await
        .with_context(|| format!("opening projections at {db_url}"))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (bound, task) = start(addr, journal, store, db, data_dir, stop_rx).await?;
    let _ready = crate::up::ReadyFile::create(ready_file, "gateway")?;
    println!("ready gateway http=http://{bound}");
    crate::tail::shutdown_signal().await;
    let _ = stop_tx.send(true);
    match tokio::time::timeout(std::time::Duration::from_secs(10), task).await {
        Ok(Ok(Err(e))) => anyhow::bail!("the gateway stopped: {e}"),
        _ => Ok(0),
    }
}
