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
        Self::spawn_env(bin, args, &[], port, log)
    }

    /// [`LocalServer::spawn`] with extra environment variables (the users' passwords
    /// `nats.conf` reads), which never appear on the command line.
    pub fn spawn_env(
        bin: &Path,
        args: &[OsString],
        env: &[(&str, String)],
        port: u16,
        log: Option<std::fs::File>,
    ) -> Result<Self, ServerError> {
        let mut child = Command::new(bin)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
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

/// How to start the nodes of a [`LocalCluster`].
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub nodes: usize,
    /// Each node's store is `<dir>/node-<i>`; its log `<dir>/node-<i>.log`.
    pub dir: PathBuf,
    /// A config file every node reads (`-c`); none: JetStream on, no users.
    pub conf: Option<PathBuf>,
    /// Environment for the config's `$VARIABLES`.
    pub env: Vec<(&'static str, String)>,
}

/// A JetStream cluster of nats-servers on loopback (`--cluster 3`, and tests that kill
/// and restart nodes). Each node keeps its ports and store across a restart.
pub struct LocalCluster {
    bin: PathBuf,
    config: ClusterConfig,
    nodes: Vec<Node>,
}

struct Node {
    name: String,
    port: u16,
    args: Vec<OsString>,
    server: Option<LocalServer>,
}

/// The name of the cluster's `i`th node (its `server_name`).
pub fn node_name(i: usize) -> String {
    format!("weir-{}", i + 1)
}

impl LocalCluster {
    /// Starts `config.nodes` servers routed to each other and waits until each is ready.
    pub fn start(bin: &Path, config: ClusterConfig) -> Result<Self, ServerError> {
        let mut last = None;
        // A port free when picked can be taken before a node binds it: pick again.
        for _ in 0..3 {
            match Self::try_start(bin, config.clone()) {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(ServerError::NotReady {
            secs: 0,
            log: "no attempt".to_owned(),
        }))
    }

    fn try_start(bin: &Path, config: ClusterConfig) -> Result<Self, ServerError> {
        let spawn_err = |source| ServerError::Spawn {
            bin: bin.display().to_string(),
            source,
        };
        let mut ports = Vec::new();
        for _ in 0..config.nodes * 2 {
            ports.push(free_port().map_err(spawn_err)?);
        }
        let (client_ports, route_ports) = ports.split_at(config.nodes);
        let routes = route_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        for i in 0..config.nodes {
            let store = config.dir.join(format!("node-{}", i + 1));
            let mut args: Vec<OsString> = Vec::new();
            if let Some(conf) = &config.conf {
                args.push("-c".into());
                args.push(conf.clone().into());
            } else {
                args.push("-js".into());
            }
            for a in [
                "-a".to_owned(),
                "127.0.0.1".to_owned(),
                "-p".to_owned(),
                client_ports[i].to_string(),
                "--name".to_owned(),
                node_name(i),
                "--cluster_name".to_owned(),
                "weir".to_owned(),
                "--cluster".to_owned(),
                format!("nats://127.0.0.1:{}", route_ports[i]),
                "--routes".to_owned(),
                routes.clone(),
                "-sd".to_owned(),
            ] {
                args.push(a.into());
            }
            args.push(store.into());
            nodes.push(Node {
                name: node_name(i),
                port: client_ports[i],
                args,
                server: None,
            });
        }
        let mut cluster = Self {
            bin: bin.to_owned(),
            config,
            nodes,
        };
        for i in 0..cluster.nodes.len() {
            cluster.restart(i)?;
        }
        Ok(cluster)
    }

    /// Every node's client URL, comma-separated: what a client connects to.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The `i`th node's own client URL.
    pub fn node_url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].port)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node with this `server_name`.
    pub fn node_named(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Kills the `i`th node with SIGKILL (no shutdown of any kind) and waits for it.
    pub fn kill(&mut self, i: usize) {
        if let Some(server) = self.nodes[i].server.take() {
            server.stop();
        }
    }

    /// Starts the `i`th node again (same ports, same store); a no-op when it runs.
    pub fn restart(&mut self, i: usize) -> Result<(), ServerError> {
        if self.nodes[i].server.is_some() {
            return Ok(());
        }
        let log_path = self.config.dir.join(format!("node-{}.log", i + 1));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| ServerError::Spawn {
                bin: log_path.display().to_string(),
                source,
            })?;
        let node = &mut self.nodes[i];
        node.server = Some(LocalServer::spawn_env(
            &self.bin,
            &node.args,
            &self.config.env,
            node.port,
            Some(log),
        )?);
        Ok(())
    }
}
