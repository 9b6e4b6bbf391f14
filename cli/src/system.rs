//! Finding the running system: `weir up` writes `<data dir>/weir.runtime.json` once it
//! is ready; other commands given the same `--data-dir` read it (waiting up to 30 s) so
//! they need no more flags. `--nats-url`/`NATS_URL` skips the lookup.
//!
//! Each command connects as the NATS user of its role (`weir_journal::Role`): with the
//! password from `WEIR_NATS_<ROLE>_PASSWORD` when set, else (for the system running on
//! the data dir) from the data dir's `nats.passwords`, else anonymously (an external
//! server without users).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use weir_events::StreamSpec;
use weir_journal::auth::Passwords;
use weir_journal::{Credentials, Journal, Role, StreamSetup};

pub const RUNTIME_FILE: &str = "weir.runtime.json";
/// The data dir's NATS passwords, one per role (mode 0600), made by `weir up`.
pub const PASSWORDS_FILE: &str = "nats.passwords";
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

pub fn passwords_path(data_dir: &Path) -> PathBuf {
    data_dir.join(PASSWORDS_FILE)
}

/// The credentials `role` connects with: its environment variable, else (when
/// `local`: the system running on the data dir) the data dir's passwords file.
pub fn credentials(role: Role, data_dir: &Path, local: bool) -> Result<Option<Credentials>> {
    if let Some(c) = Credentials::from_env(role) {
        return Ok(Some(c));
    }
    if !local {
        return Ok(None);
    }
    Ok(Passwords::load(&passwords_path(data_dir))?.map(|p| p.credentials(role)))
}

/// Connects to the log as `role`: the given URL, or the system running on `data_dir`.
/// The stream is created when missing, never reconfigured (that is `weir up`'s).
pub async fn connect(role: Role, nats_url: Option<&str>, data_dir: &Path) -> Result<Journal> {
    let spec = StreamSpec::default();
    let setup = StreamSetup::CreateIfMissing;
    if let Some(url) = nats_url {
        let creds = credentials(role, data_dir, false)?;
        return Journal::connect_as(url, creds.as_ref(), &spec, setup)
            .await
            .map_err(|e| refused_hint(e, role));
    }
    let deadline = Instant::now() + READY_WAIT;
    let mut last_error = None;
    loop {
        if let Some(rt) = Runtime::read(data_dir) {
            let creds = credentials(role, data_dir, true)?;
            match Journal::connect_as(&rt.nats_url, creds.as_ref(), &spec, setup).await {
                Ok(j) => return Ok(j),
                Err(e @ weir_journal::ConnectError::TooOld { .. }) => return Err(e.into()),
                Err(e) if e.is_refused_credentials() => return Err(refused_hint(e, role)),
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

/// A refused connection, with what to set: the role's password variable.
pub fn refused_hint(e: weir_journal::ConnectError, role: Role) -> anyhow::Error {
    if e.is_refused_credentials() {
        anyhow::anyhow!(
            "NATS refused {} as user {:?}: set {} to its password (nats.conf; `weir up` keeps them in <data dir>/{PASSWORDS_FILE})",
            if Credentials::from_env(role).is_some() {
                "the password"
            } else {
                "a connection without a password"
            },
            role.user(),
            role.password_var(),
        )
    } else {
        e.into()
    }
}
