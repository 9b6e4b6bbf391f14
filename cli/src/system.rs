//! Finding the running system: `weir up` writes `<data dir>/weir.runtime.json` once it
//! is ready; other commands given the same `--data-dir` read it (waiting up to 30 s) so
//! they need no more flags. `--nats-url`/`NATS_URL` skips the lookup.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use weir_events::StreamSpec;
use weir_journal::Journal;

pub const RUNTIME_FILE: &str = "weir.runtime.json";
pub const READY_WAIT: Duration = Duration::from_secs(30);

/// What a running `weir up` tells other commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Runtime {
    pub nats_url: String,
    pub pid: u32,
    pub object_store: String,
    /// The projections database the running system keeps up to date.
    #[serde(default)]
    pub database_url: Option<String>,
}

pub fn runtime_path(data_dir: &Path) -> PathBuf {
    data_dir.join(RUNTIME_FILE)
}

impl Runtime {
    pub fn write(&self, data_dir: &Path) -> Result<()> {
        let path = runtime_path(data_dir);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
    }

    pub fn read(data_dir: &Path) -> Option<Self> {
        let bytes = std::fs::read(runtime_path(data_dir)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Whether the system running on `data_dir` keeps `database_url` up to date.
    pub fn serves(data_dir: &Path, database_url: &str) -> bool {
        Self::read(data_dir)
            .and_then(|rt| rt.database_url)
            .as_deref()
            == Some(database_url)
    }

    pub fn remove(data_dir: &Path) {
        let _ = std::fs::remove_file(runtime_path(data_dir));
    }
}

/// Connects to the log: the given URL, or the system running on `data_dir`.
pub async fn connect(nats_url: Option<&str>, data_dir: &Path) -> Result<Journal> {
    let spec = StreamSpec::default();
    if let Some(url) = nats_url {
        return Ok(Journal::connect(url, &spec).await?);
    }
    let deadline = Instant::now() + READY_WAIT;
    let mut last_error = None;
    loop {
        if let Some(rt) = Runtime::read(data_dir) {
            match Journal::connect(&rt.nats_url, &spec).await {
                Ok(j) => return Ok(j),
                Err(e @ weir_journal::ConnectError::TooOld { .. }) => return Err(e.into()),
                Err(e) => last_error = Some(e.to_string()),
            }
        }
        if Instant::now() >= deadline {
            match last_error {
                Some(e) => bail!(
                    "weir under {} did not become reachable within 30 s: {e}",
                    data_dir.display()
                ),
                None => bail!(
                    "no running weir found under {} (waited 30 s for {}): start `weir up --data-dir {}` or pass --nats-url",
                    data_dir.display(),
                    RUNTIME_FILE,
                    data_dir.display()
                ),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
