//! A Postgres cluster of the test's own: `initdb` into a temp dir, `pg_ctl` on a free
//! loopback port (no Unix socket), stopped and removed on drop. A test can stop it as a
//! crash would (`pg_ctl stop -m immediate`) and start it again on the same port and
//! data, which the shared server behind `WEIR_TEST_POSTGRES` cannot offer.
//!
//! The binaries come from `WEIR_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`,
//! else `pg_config --bindir`. As root (which `initdb` refuses) every command runs as
//! the `postgres` user through `runuser`, and the temp dir is handed to that user.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use weir_journal::server::free_port;

/// Set to make a test fail, instead of skip, when no Postgres binaries are installed.
pub const REQUIRE_VAR: &str = "WEIR_REQUIRE_POSTGRES";

pub struct PgCluster {
    bin: PathBuf,
    /// `Some(user)` when commands run as that user (the tests run as root).
    run_as: Option<String>,
    dir: tempfile::TempDir,
    port: u16,
    running: bool,
}

/// Where `initdb` and `pg_ctl` are, when installed.
pub fn find_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WEIR_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let bin = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    bin.join("initdb").exists().then_some(bin)
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `id -u`/`id -g` of a user.
fn ids(user: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, user]).output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

impl PgCluster {
    /// Starts a fresh cluster, or returns `None` (after saying why on stderr) when no
    /// Postgres binaries are installed and `WEIR_REQUIRE_POSTGRES` is not `1`.
    pub fn start() -> Option<Self> {
        let Some(bin) = find_bin() else {
            let why = "no initdb found (WEIR_PG_BIN, /usr/lib/postgresql/*/bin, pg_config --bindir): install postgresql";
            if std::env::var(REQUIRE_VAR).as_deref() == Ok("1") {
                panic!("{why} ({REQUIRE_VAR}=1)");
            }
            eprintln!("skipped: {why}");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("weir-pg-")
            .tempdir()
            .expect("temp dir for Postgres");
        let run_as = if is_root() {
            let (uid, gid) = ids("postgres")
                .expect("running as root, initdb needs another user: create a postgres user");
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("hand the temp dir to the postgres user");
            Some("postgres".to_owned())
        } else {
            None
        };
        let mut pg = Self {
            bin,
            run_as,
            dir,
            port: 0,
            running: false,
        };
        let data = pg.data_dir();
        pg.run(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        // A port free when asked can be taken before the server binds it: try again.
        for attempt in 1.. {
            pg.port = free_port().expect("a free port");
            let conf = format!(
                "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = ''\n\
                 fsync = off\nshared_buffers = 16MB\nmax_connections = 40\n",
                pg.port
            );
            let file = data.join("postgresql.auto.conf");
            std::fs::write(&file, conf).expect("write postgresql.auto.conf");
            if pg.try_start() {
                return Some(pg);
            }
            assert!(attempt < 5, "Postgres would not start:\n{}", pg.log());
        }
        unreachable!("the loop returns or panics")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The server's log so far (for a failure message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates an empty database.
    pub fn create_database(&self, name: &str) {
        let port = self.port.to_string();
        self.run(
            "createdb",
            &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", name],
        );
    }

    /// Cuts every connection to `database` (`pg_terminate_backend`), as a network
    /// partition or an administrator would; returns how many there were.
    pub fn cut_connections(&self, database: &str) -> usize {
        let port = self.port.to_string();
        let sql = format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{database}'"
        );
        let out = self.output(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-tAc",
                &sql,
            ],
        );
        assert!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a count")
    }

    /// Stops the server as a crash would: every backend killed, no checkpoint; the next
    /// start recovers from the WAL.
    pub fn stop_immediate(&mut self) {
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &["stop", "-D", path_str(&data), "-m", "immediate", "-w"],
        );
        self.running = false;
    }

    /// Starts the stopped server again on the same port and data.
    pub fn restart(&mut self) {
        assert!(
            self.try_start(),
            "Postgres would not start again:\n{}",
            self.log()
        );
    }

    fn try_start(&mut self) -> bool {
        let (data, log) = (self.data_dir(), self.log_path());
        let out = self.output(
            "pg_ctl",
            &[
                "start",
                "-D",
                path_str(&data),
                "-l",
                path_str(&log),
                "-w",
                "-t",
                "60",
            ],
        );
        self.running = out.status.success();
        self.running
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        let mut c = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        c.stdin(Stdio::null()).current_dir(self.dir.path());
        c
    }

    fn output(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self.output(program, args);
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            let data = self.data_dir();
            let _ = self
                .command("pg_ctl")
                .args(["stop", "-D", path_str(&data), "-m", "immediate", "-w"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}
