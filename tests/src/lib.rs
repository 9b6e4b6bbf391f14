//! Test support: a real nats-server per test on a free port with its own temp store,
//! killed and removed on drop (also with the repository's `nats.conf` users, and as a
//! 3-node cluster), a Postgres cluster of the test's own; plus the cross-crate tests
//! under `tests/`.
//!
//! ```no_run
//! let nats = weir_testkit::NatsServer::start();
//! // connect to nats.url() …
//! ```

pub mod postgres;
pub mod s3;
pub mod sample;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub use postgres::PgCluster;
pub use s3::S3Server;
use weir_journal::auth::Passwords;
use weir_journal::server::{ClusterConfig, LocalCluster, LocalServer, find_binary, free_port};

/// The repository's `nats.conf` (the one `weir up` uses).
pub fn repo_nats_conf() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../nats.conf")
}

/// A nats-server with JetStream for one test. Dropping it kills the process and removes
/// its store directory.
pub struct NatsServer {
    server: Option<LocalServer>,
    port: u16,
    store: tempfile::TempDir,
    passwords: Option<Passwords>,
    /// How it was started, to start it again after [`NatsServer::kill`].
    bin: PathBuf,
    args: Vec<OsString>,
}

impl NatsServer {
    /// Starts a server; panics with a one-line instruction when no nats-server ≥ 2.11
    /// is installed (tests cannot run without one).
    pub fn start() -> Self {
        Self::start_inner(None, None)
    }

    /// Starts a server with extra settings in nats-server's config syntax
    /// (e.g. `max_payload: 4096`); ports and the store stay per test.
    pub fn start_with_config(config: &str) -> Self {
        Self::start_inner(Some(config), None)
    }

    /// Starts a server with the repository's `nats.conf`: its users and permissions,
    /// with fresh random passwords ([`NatsServer::passwords`]).
    pub fn start_with_users() -> Self {
        let passwords = Passwords::generate().expect("random passwords");
        let conf = std::fs::read_to_string(repo_nats_conf()).expect("the repository's nats.conf");
        Self::start_inner(Some(&conf), Some(passwords))
    }

    /// The users' passwords (servers started with [`NatsServer::start_with_users`]).
    pub fn passwords(&self) -> Option<&Passwords> {
        self.passwords.as_ref()
    }

    fn start_inner(config: Option<&str>, passwords: Option<Passwords>) -> Self {
        let env = passwords.as_ref().map(Passwords::env).unwrap_or_default();
        let bin = find_binary().unwrap_or_else(|e| panic!("{e}"));
        let store = tempfile::Builder::new()
            .prefix("weir-nats-")
            .tempdir()
            .expect("temp dir for the nats store");
        // A port free when asked can be taken before the server binds it: try again.
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port().expect("a free port");
            let mut args: Vec<OsString> =
                ["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"]
                    .iter()
                    .map(OsString::from)
                    .collect();
            args.push(store.path().as_os_str().to_owned());
            if let Some(config) = config {
                let file = store.path().join("test.conf");
                std::fs::write(&file, config).expect("write the test's nats config");
                args.push("-c".into());
                args.push(file.into_os_string());
            }
            match LocalServer::spawn_env(&bin, &args, &env, port, None) {
                Ok(server) => {
                    return Self {
                        server: Some(server),
                        port,
                        store,
                        passwords,
                        bin,
                        args,
                    };
                }
                Err(e) => last = e.to_string(),
            }
        }
        panic!("nats-server would not start: {last}");
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn store_dir(&self) -> &Path {
        self.store.path()
    }

    /// Kills the server now (SIGKILL), e.g. to test what a client does when it
    /// disappears.
    pub fn kill(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }

    /// Starts the killed server again on the same port with the same store.
    pub fn restart(&mut self) {
        if self.server.is_some() {
            return;
        }
        let env = self
            .passwords
            .as_ref()
            .map(Passwords::env)
            .unwrap_or_default();
        let server = LocalServer::spawn_env(&self.bin, &self.args, &env, self.port, None)
            .unwrap_or_else(|e| panic!("nats-server would not start again: {e}"));
        self.server = Some(server);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A JetStream cluster on loopback for one test: its nodes' stores in a temp dir,
/// every node killed and the dir removed on drop.
pub struct NatsCluster {
    pub cluster: LocalCluster,
    passwords: Option<Passwords>,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// `nodes` servers, JetStream on, no users.
    pub fn start(nodes: usize) -> Self {
        Self::start_inner(nodes, None)
    }

    /// `nodes` servers with the repository's `nats.conf` (users, permissions) and
    /// fresh random passwords.
    pub fn start_with_users(nodes: usize) -> Self {
        Self::start_inner(
            nodes,
            Some(Passwords::generate().expect("random passwords")),
        )
    }

    fn start_inner(nodes: usize, passwords: Option<Passwords>) -> Self {
        let bin = find_binary().unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::Builder::new()
            .prefix("weir-cluster-")
            .tempdir()
            .expect("temp dir for the cluster");
        let cluster = LocalCluster::start(
            &bin,
            ClusterConfig {
                nodes,
                dir: dir.path().to_owned(),
                conf: passwords.as_ref().map(|_| repo_nats_conf()),
                env: passwords.as_ref().map(Passwords::env).unwrap_or_default(),
            },
        )
        .unwrap_or_else(|e| panic!("the cluster would not start: {e}"));
        Self {
            cluster,
            passwords,
            _dir: dir,
        }
    }

    /// Every node's URL, comma-separated.
    pub fn url(&self) -> String {
        self.cluster.url()
    }

    pub fn passwords(&self) -> Option<&Passwords> {
        self.passwords.as_ref()
    }
}
