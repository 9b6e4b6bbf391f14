//! A real S3-protocol server for one test: moto's server mode (`moto_server`, installed
//! into `.tools/venv` by scripts/setup) on a free loopback port, killed on drop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weir_journal::server::free_port;

/// Set to `1` to skip the S3 tests on a machine without moto (they fail otherwise).
pub const OPT_OUT: &str = "WEIR_SKIP_S3_TESTS";

pub struct S3Server {
    child: Child,
    port: u16,
}

fn moto_server() -> PathBuf {
    if let Some(p) = std::env::var_os("WEIR_MOTO_SERVER") {
        return p.into();
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/venv/bin/moto_server");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup (it installs moto[server]), point WEIR_MOTO_SERVER \
         at a moto_server, or set {OPT_OUT}=1 to skip the S3 tests",
        p.display()
    );
    p
}

impl S3Server {
    /// Starts moto accepting any credentials; `None` when [`OPT_OUT`] is set.
    pub fn start() -> Option<Self> {
        Self::start_with(&[])
    }

    /// Starts moto with extra environment, e.g. `INITIAL_NO_AUTH_ACTION_COUNT=0` to make
    /// it check credentials (unknown access keys are refused).
    pub fn start_with(env: &[(&str, &str)]) -> Option<Self> {
        if std::env::var_os(OPT_OUT).is_some_and(|v| v == "1") {
            eprintln!("{OPT_OUT}=1: S3 test skipped");
            return None;
        }
        let bin = moto_server();
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port().expect("a free port");
            let mut child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    last = format!("moto_server exited with {status}");
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(Self { child, port });
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
            if last.is_empty() {
                last = "moto_server did not listen within 30 s".into();
            }
        }
        panic!("{last}");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What a store needs to talk to this server: `AWS_*` settings as in the environment.
    pub fn options(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// `PUT /bucket` (unsigned: moto creates buckets for anyone unless it checks
    /// credentials); panics unless the server answers 200.
    pub fn create_bucket(&self, bucket: &str) {
        let status = self.request("PUT", &format!("/{bucket}"));
        assert!(
            status.starts_with("HTTP/1.1 200"),
            "create bucket {bucket}: {status}"
        );
    }

    /// Sends a bodiless request; returns the status line.
    fn request(&self, method: &str, path: &str) -> String {
        let mut conn = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        write!(
            conn,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .expect("send to moto");
        let mut reply = String::new();
        conn.read_to_string(&mut reply).expect("read moto's reply");
        reply.lines().next().unwrap_or_default().to_owned()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
