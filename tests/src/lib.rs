//! Test support: a real nats-server per test on a free port with its own temp store,
//! killed and removed on drop; plus the cross-crate tests under `tests/`.
//!
//! ```no_run
//! let nats = weir_testkit::NatsServer::start();
//! // connect to nats.url() …
//! ```

pub mod s3;
pub mod sample;

use std::ffi::OsString;
use std::path::Path;

pub use s3::S3Server;
use weir_journal::server::{LocalServer, find_binary, free_port};

/// A nats-server with JetStream for one test. Dropping it kills the process and removes
/// its store directory.
pub struct NatsServer {
    server: Option<LocalServer>,
    port: u16,
    store: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a server; panics with a one-line instruction when no nats-server ≥ 2.11
    /// is installed (tests cannot run without one).
    pub fn start() -> Self {
        Self::start_inner(None)
    }

    /// Starts a server with extra settings in nats-server's config syntax
    /// (e.g. `max_payload: 4096`); ports and the store stay per test.
    pub fn start_with_config(config: &str) -> Self {
        Self::start_inner(Some(config))
    }

    fn start_inner(config: Option<&str>) -> Self {
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
            match LocalServer::spawn(&bin, &args, port, None) {
                Ok(server) => {
                    return Self {
                        server: Some(server),
                        port,
                        store,
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

    /// Kills the server now, e.g. to test what a client does when it disappears.
    pub fn kill(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
