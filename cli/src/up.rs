//! `weir up` (the whole system in one process) and `weir serve <service>` (one service).
//!
//! `weir up` starts nats-server with the repository's `nats.conf` (one node, or a
//! loopback cluster with `--cluster N` and an R3 stream), its users' passwords
//! generated once per data dir (`nats.passwords`, mode 0600) and handed over in the
//! server's environment; then sets the stream up as `admin` and runs every part as
//! its own user: the gateway as `gateway`, each service as itself, the projector as
//! `projector`, the retention janitor as `janitor`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use weir_events::StreamSpec;
use weir_journal::auth::Passwords;
use weir_journal::server::{ClusterConfig, LocalCluster, LocalServer, find_binary, free_port};
use weir_journal::{Journal, Role, StreamSetup};
use weir_services::{Ctx, Ctxs, Store};

use crate::system::Runtime;
use crate::tail::shutdown_signal;

/// The repository's nats.conf, written into the data dir at start so `weir up` works
/// from any directory.
const NATS_CONF: &str = include_str!("../../nats.conf");

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Object store: a directory or URL (default: <data dir>/objects)
    #[arg(long, env = "WEIR_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// Serve the HTTP gateway and dashboard here (default 127.0.0.1:8080; when that
    /// default is taken, weir runs without HTTP and says so)
    #[arg(long, env = "WEIR_HTTP", value_name = "ADDR")]
    pub http: Option<String>,
    /// Run a JetStream cluster of this many nats-servers (3 to 5) on loopback and keep
    /// the stream replicated on 3 of them (R3); clients fail over between the nodes
    #[arg(long, value_name = "NODES", value_parser = clap::value_parser!(u8).range(3..=5))]
    pub cluster: Option<u8>,
    /// Print the ready line as one JSON object (nats, http, store, db, data, nats_server)
    #[arg(long)]
    pub json: bool,
    /// A retention period of the janitor, e.g. `failed=30d` (multipart, failed,
    /// aborted, deleted, orphan, compensation); wins over WEIR_RETENTION_*
    #[arg(long = "retention", value_name = "PERIOD=DURATION")]
    pub retention: Vec<String>,
}

/// What `weir serve` runs, each as its own process: the pipeline's services, the HTTP
/// gateway, the projector and the retention janitor (docker-compose.yml runs one
/// container of each).
pub fn serve_names() -> Vec<&'static str> {
    let mut names = weir_services::SERVICES.to_vec();
    names.extend(["gateway", "projector", "janitor"]);
    names
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// What to run
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(serve_names()))]
    pub service: String,
    /// Object store: a directory or URL (default: the running system's)
    #[arg(long, env = "WEIR_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// gateway only: where to serve HTTP (default 127.0.0.1:8080)
    #[arg(long, env = "WEIR_HTTP", value_name = "ADDR")]
    pub http: Option<String>,
    /// Print the ready line as one JSON object
    #[arg(long)]
    pub json: bool,
    /// janitor only: a retention period, e.g. `failed=30d` (multipart, failed,
    /// aborted, deleted, orphan, compensation); wins over WEIR_RETENTION_*
    #[arg(long = "retention", value_name = "PERIOD=DURATION")]
    pub retention: Vec<String>,
    /// Create this file once ready and remove it on a clean stop: a container's health
    /// check tests for it (keep it on a tmpfs, so a restarted container has none)
    #[arg(long, env = "WEIR_READY_FILE", value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
}

/// The `--ready-file` of `weir serve`, present from the ready line until the process
/// stops.
pub struct ReadyFile(Option<PathBuf>);

impl ReadyFile {
    pub fn create(path: Option<PathBuf>, service: &str) -> Result<Self> {
        if let Some(p) = &path {
            std::fs::write(p, format!("{service}\n"))
                .with_context(|| format!("writing {}", p.display()))?;
        }
        Ok(Self(path))
    }
}

impl Drop for ReadyFile {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The nats-server(s) `weir up` runs.
enum LocalNats {
    One(LocalServer),
    Cluster(LocalCluster),
}

impl LocalNats {
    fn url(&self) -> String {
        match self {
            LocalNats::One(s) => s.url().to_owned(),
            LocalNats::Cluster(c) => c.url(),
        }
    }
}

fn start_nats(data_dir: &Path, passwords: &Passwords, cluster: Option<u8>) -> Result<LocalNats> {
    let bin = find_binary()?;
    let conf = data_dir.join("nats.conf");
    std::fs::write(&conf, NATS_CONF).with_context(|| format!("writing {}", conf.display()))?;
    let env = passwords.env();
    if let Some(nodes) = cluster {
        let dir = data_dir.join("nats-cluster");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let cluster = LocalCluster::start(
            &bin,
            ClusterConfig {
                nodes: usize::from(nodes),
                dir,
                conf: Some(conf),
                env,
            },
        )?;
        return Ok(LocalNats::Cluster(cluster));
    }
    let store = data_dir.join("nats");
    let log_path = data_dir.join("nats.log");
    let mut last = None;
    for _ in 0..3 {
        let port = free_port().context("finding a free port for nats-server")?;
        let args: Vec<OsString> = vec![
            "-c".into(),
            conf.clone().into(),
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string().into(),
            "-sd".into(),
            store.clone().into(),
        ];
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        match LocalServer::spawn_env(&bin, &args, &env, port, Some(log)) {
            Ok(s) => return Ok(LocalNats::One(s)),
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .map(anyhow::Error::from)
        .unwrap_or_else(|| anyhow::anyhow!("nats-server did not start")))
}

fn work_dir(data_dir: &Path) -> Result<PathBuf> {
    let dir = data_dir.join("work");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

pub async fn up(
    data_dir: &Path,
    nats_url: Option<&str>,
    database_url: Option<&str>,
    args: UpArgs,
) -> Result<i32> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize()?;
    if let Some(rt) = Runtime::read(&data_dir)
        && rt.pid != std::process::id()
        && pid_alive(rt.pid)
    {
        bail!(
            "weir is already running on {} (pid {}, NATS at {})",
            data_dir.display(),
            rt.pid,
            rt.nats_url
        );
    }
    // A bad period stops weir before anything starts.
    let janitor_config = janitor_config(&args.retention)?;
    if nats_url.is_some() && args.cluster.is_some() {
        bail!("--cluster starts its own nats-servers; it cannot be used with --nats-url");
    }
    // With its own server, weir connects with the data dir's passwords; with an
    // external one, with the roles' WEIR_NATS_<ROLE>_PASSWORD variables when set.
    let passwords = match nats_url {
        Some(_) => None,
        None => Some(Passwords::load_or_create(&crate::system::passwords_path(
            &data_dir,
        ))?),
    };
    let server = match &passwords {
        Some(p) => Some(start_nats(&data_dir, p, args.cluster)?),
        None => None,
    };
    let url = match (&server, nats_url) {
        (Some(s), _) => s.url(),
        (None, Some(u)) => u.to_owned(),
        (None, None) => unreachable!("one of the two is set"),
    };
    let creds = |role: Role| match &passwords {
        Some(p) => Some(p.credentials(role)),
        None => weir_journal::Credentials::from_env(role),
    };
    let spec = StreamSpec {
        replicas: if args.cluster.is_some() { 3 } else { 1 },
        ..StreamSpec::default()
    };
    // The admin's connection only sets the stream up; it closes when dropped here.
    Journal::set_up(
        &url,
        creds(Role::Admin).as_ref(),
        &spec,
        Duration::from_secs(30),
    )
    .await?;
    let connect = |role: Role| {
        let url = url.clone();
        let spec = spec.clone();
        let creds = creds(role);
        async move {
            Journal::connect_as(&url, creds.as_ref(), &spec, StreamSetup::CreateIfMissing)
                .await
                .with_context(|| format!("connecting as {}", role.user()))
        }
    };
    let journal = connect(Role::Gateway).await?;
    let store_spec = args
        .store
        .unwrap_or_else(|| data_dir.join("objects").display().to_string());
    let store = Store::open(&store_spec)?;
    let work = work_dir(&data_dir)?;
    let limits = limits()?;
    let ctx = |journal: Journal| Ctx {
        journal,
        store: store.clone(),
        work_dir: work.clone(),
        limits,
    };
    let ctxs = Ctxs {
        combiner: ctx(connect(Role::Combiner).await?),
        inferrer: ctx(connect(Role::Inferrer).await?),
        registrar: ctx(connect(Role::Registrar).await?),
    };
    let projector_journal = connect(Role::Projector).await?;
    let janitor_ctx = ctx(connect(Role::Janitor).await?);
    let db_url = crate::views::database_url(database_url, &data_dir);
    let db = weir_projections::Db::connect(&db_url)
        .await
        .with_context(|| format!("opening projections at {db_url}"))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let http = match crate::gateway::start(
        args.http.as_deref().unwrap_or(crate::gateway::DEFAULT_ADDR),
        journal.clone(),
        store.clone(),
        db.clone(),
        &data_dir,
        stop_rx.clone(),
    )
    .await
    {
        Ok((addr, _task)) => format!("http://{addr}"),
        Err(e) if args.http.is_none() => {
            eprintln!("weir: running without the HTTP gateway: {e:#}");
            "none".to_owned()
        }
        Err(e) => return Err(e),
    };
    let services = tokio::spawn(weir_services::run_each(ctxs, stop_rx.clone()));
    let projector = {
        let journal = projector_journal;
        let db = db.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            weir_projections::run(&journal, &db, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
        })
    };
    let janitor = {
        let janitor = weir_services::janitor::Janitor {
            ctx: janitor_ctx,
            db: db.clone(),
            config: janitor_config,
            clock: weir_services::janitor::Clock::system(),
        };
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            janitor
                .run(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        })
    };
    Runtime {
        nats_url: url.clone(),
        pid: std::process::id(),
        object_store: store.url().to_owned(),
        database_url: Some(db_url.clone()),
    }
    .write(&data_dir)?;
    crate::say(
        args.json,
        serde_json::json!({
            "ready": true,
            "nats": url,
            "http": (http != "none").then_some(&http),
            "store": store.url(),
            "db": db_url,
            "data": data_dir.display().to_string(),
            "nats_server": journal.server_version().to_string(),
        }),
        format_args!(
            "ready nats={url} http={http} store={} db={db_url} data={} (nats-server {})",
            store.url(),
            data_dir.display(),
            journal.server_version()
        ),
    );
    let mut services = services;
    let mut projector = projector;
    tokio::select! {
        _ = shutdown_signal() => {}
        result = &mut services => {
            Runtime::remove(&data_dir);
            match result {
                Ok(Ok(())) => bail!("the services stopped unexpectedly"),
                Ok(Err(e)) => bail!("a service stopped: {e}"),
                Err(e) => bail!("a service crashed: {e}"),
            }
        }
        result = &mut projector => {
            Runtime::remove(&data_dir);
            let _ = stop_tx.send(true);
            match result {
                Ok(Ok(())) => bail!("the projector stopped unexpectedly"),
                Ok(Err(e)) => bail!("the projector stopped: {e}"),
                Err(e) => bail!("the projector crashed: {e}"),
            }
        }
    }
    eprintln!("weir: shutting down");
    let _ = stop_tx.send(true);
    match tokio::time::timeout(Duration::from_secs(30), projector).await {
        Ok(Ok(Err(e))) => eprintln!("weir: the projector stopped with an error: {e}"),
        Err(_) => eprintln!("weir: the projector did not stop within 30 s"),
        _ => {}
    }
    if tokio::time::timeout(Duration::from_secs(30), janitor)
        .await
        .is_err()
    {
        eprintln!("weir: the janitor did not stop within 30 s");
    }
    if tokio::time::timeout(Duration::from_secs(30), services)
        .await
        .is_err()
    {
        eprintln!("weir: services did not stop within 30 s; unfinished events will be redelivered");
    }
    Runtime::remove(&data_dir);
    drop(server);
    Ok(0)
}

pub async fn serve(data_dir: &Path, nats_url: Option<&str>, args: ServeArgs) -> Result<i32> {
    if !weir_services::SERVICES.contains(&args.service.as_str()) {
        bail!(
            "unknown service {:?}: use one of {}",
            args.service,
            weir_services::SERVICES.join(", ")
        );
    }
    let role = Role::of_service(&args.service).unwrap_or(Role::Admin);
    let journal = crate::system::connect(role, nats_url, data_dir).await?;
    let store = open_store(args.store.as_deref(), data_dir)?;
    let ctx = Ctx {
        journal,
        store,
        work_dir: work_dir(data_dir)?,
        limits: limits()?,
    };
    let _ready = ReadyFile::create(args.ready_file, &args.service)?;
    crate::say(
        args.json,
        serde_json::json!({"ready": true, "service": args.service}),
        format_args!("ready {}", args.service),
    );
    weir_services::run_one(&args.service, ctx, shutdown_signal())
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.service))?;
    Ok(0)
}

/// `weir serve janitor`: retention and garbage collection on the running system's
/// log, store and projections (which a projector keeps up to date).
pub async fn serve_janitor(
    data_dir: &Path,
    nats_url: Option<&str>,
    db_url: &str,
    args: ServeArgs,
) -> Result<i32> {
    // A bad period stops it before it connects anywhere.
    let config = janitor_config(&args.retention)?;
    let journal = crate::system::connect(Role::Janitor, nats_url, data_dir).await?;
    let store = open_store(args.store.as_deref(), data_dir)?;
    let db = weir_projections::Db::connect(db_url)
        .await
        .with_context(|| format!("opening projections at {db_url}"))?;
    let janitor = weir_services::janitor::Janitor {
        ctx: Ctx {
            journal,
            store,
            work_dir: work_dir(data_dir)?,
            limits: limits()?,
        },
        db,
        config,
        clock: weir_services::janitor::Clock::system(),
    };
    let _ready = ReadyFile::create(args.ready_file, "janitor")?;
    crate::say(
        args.json,
        serde_json::json!({"ready": true, "service": "janitor"}),
        format_args!("ready janitor"),
    );
    janitor.run(shutdown_signal()).await;
    Ok(0)
}

/// The janitor's periods: the defaults, `WEIR_RETENTION_*` and `WEIR_JANITOR_INTERVAL`
/// when set, then each `--retention PERIOD=DURATION`.
fn janitor_config(flags: &[String]) -> Result<weir_services::janitor::JanitorConfig> {
    let mut config =
        weir_services::janitor::JanitorConfig::from_env().map_err(anyhow::Error::msg)?;
    for flag in flags {
        let (name, value) = flag.split_once('=').ok_or_else(|| {
            anyhow::anyhow!("--retention {flag:?}: use PERIOD=DURATION, e.g. failed=30d")
        })?;
        config.retention = config
            .retention
            .with(name.trim(), value)
            .map_err(|e| anyhow::anyhow!("--retention {flag:?}: {e}"))?;
    }
    Ok(config)
}

/// The inferrer's limits: the defaults, or `WEIR_MAX_RECORD_BYTES`,
/// `WEIR_MAX_INFLATION`, `WEIR_MAX_COLUMNS` when set.
fn limits() -> Result<weir_services::Limits> {
    weir_services::Limits::from_env().map_err(anyhow::Error::msg)
}

/// The store given, else the one the running system uses, else `<data dir>/objects`.
pub fn open_store(spec: Option<&str>, data_dir: &Path) -> Result<Store> {
    let spec = match spec {
        Some(s) => s.to_owned(),
        None => match Runtime::read(data_dir) {
            Some(rt) => rt.object_store,
            None => data_dir.join("objects").display().to_string(),
        },
    };
    Ok(Store::open(&spec)?)
}
