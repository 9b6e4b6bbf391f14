//! Finding and starting a local nats-server, for `weir up` and for tests.
//!
//! The binary comes from `NATS_SERVER_BIN`, else the project's `.tools/bin` (filled by
//! `scripts/setup`), else the first `nats-server` on `PATH` that is 2.11 or newer.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::version_ok;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "no nats-server 2.11 or newer found{seen}: run scripts/setup (it installs one under .tools/), or set NATS_SERVER_BIN"
    )]
    NotFound { seen: String },
    #[error("NATS_SERVER_BIN={path} {problem}")]
    BadEnv { path: String, problem: String },
    #[error("cannot start {bin}: {source}")]
    Spawn {
        bin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("nats-server did not become ready within {secs}s; its last output:\n{log}")]
    NotReady { secs: u64, log: String },
}

/// The version a nats-server binary reports (`nats-server: v2.15.1` → `2.15.1`).
pub fn binary_version(bin: &Path) -> Option<String> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.trim().rsplit(' ').next()?.trim_start_matches('v');
    Some(version.to_owned())
}

fn tools_candidates() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."));
    roots
        .into_iter()
        .map(|r| r.join(".tools/bin/nats-server"))
        .collect()
}

/// Finds a nats-server of at least 2.11.
pub fn find_binary() -> Result<PathBuf, ServerError> {
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
        let path = PathBuf::from(path);
        let shown = path.display().to_string();
        return match binary_version(&path) {
            Some(v) if version_ok(&v) => Ok(path),
            Some(v) => Err(ServerError::BadEnv {
                path: shown,
                problem: format!("is version {v}; weir needs 2.11 or newer"),
            }),
            None => Err(ServerError::BadEnv {
                path: shown,
                problem: "cannot be run (missing or not a nats-server)".to_owned(),
            }),
        };
    }
    let mut seen = Vec::new();
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("nats-server"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for candidate in tools_candidates().into_iter().chain(on_path) {
        if !candidate.is_file() {
            continue;
        }
        match binary_version(&candidate) {
            Some(v) if version_ok(&v) => return Ok(candidate),
            Some(v) => seen.push(format!("{} is {v}", candidate.display())),
            None => {}
        }
    }
    let seen = if seen.is_empty() {
        String::new()
    } else {
        format!(" ({})", seen.join(", "))
    };
    Err(ServerError::NotFound { seen })
}

/// A nats-server child process, killed when dropped.
pub struct LocalServer {
    child: Child,
    url: String,
}

impl LocalServer {
    /// Starts `bin` with `args`, waits for it to print that it is ready, and returns the
    /// client URL on `port`. The server's output goes to `log` when given.
    pub fn spawn(
        bin: &Path,
        args: &[OsString],
        port: u16,
        log: Option<std::fs::File>,
    ) -> Result<Self, ServerError> {
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| ServerError::Spawn {
                bin: bin.display().to_string(),
                source,
            })?;
        let stderr = child.stderr.take().ok_or_else(|| ServerError::NotReady {
            secs: 0,
            log: "no stderr".to_owned(),
        })?;
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        // Drains the server's output for its whole life (a full pipe would stall it) and
        // reports readiness once.
        std::thread::spawn(move || {
            let mut log = log;
            let mut tail: Vec<String> = Vec::new();
            let mut ready_tx = Some(ready_tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(f) = log.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                if let Some(tx) = ready_tx.as_ref() {
                    tail.push(line.clone());
                    if tail.len() > 40 {
                        tail.remove(0);
                    }
                    if line.contains("Server is ready") {
                        let _ = tx.send(Ok(()));
                        ready_tx = None;
                    }
                }
            }
            if let Some(tx) = ready_tx {
                let _ = tx.send(Err(tail.join("\n")));
            }
        });
        let secs = 20;
        let result = ready_rx.recv_timeout(Duration::from_secs(secs));
        let failure = match result {
            Ok(Ok(())) => None,
            Ok(Err(log)) => Some(log),
            Err(_) => Some("(no output)".to_owned()),
        };
        if let Some(log) = failure {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ServerError::NotReady { secs, log });
        }
        Ok(Self {
            child,
            url: format!("nats://127.0.0.1:{port}"),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server and waits for it to exit.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
