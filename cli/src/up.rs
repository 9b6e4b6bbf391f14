//! `weir up` (the whole system in one process) and `weir serve <service>` (one service).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use weir_events::StreamSpec;
use weir_journal::Journal;
use weir_journal::server::{LocalServer, find_binary, free_port};
use weir_services::{Ctx, Store};

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
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// combiner, inferrer, registrar or gateway
    pub service: String,
    /// Object store: a directory or URL (default: the running system's)
    #[arg(long, env = "WEIR_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// gateway only: where to serve HTTP (default 127.0.0.1:8080)
    #[arg(long, env = "WEIR_HTTP", value_name = "ADDR")]
    pub http: Option<String>,
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn start_nats(data_dir: &Path) -> Result<LocalServer> {
    let bin = find_binary()?;
    let conf = data_dir.join("nats.conf");
    std::fs::write(&conf, NATS_CONF).with_context(|| format!("writing {}", conf.display()))?;
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
        match LocalServer::spawn(&bin, &args, port, Some(log)) {
            Ok(s) => return Ok(s),
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
    let server = match nats_url {
        Some(_) => None,
        None => Some(start_nats(&data_dir)?),
    };
    let url = match (&server, nats_url) {
        (Some(s), _) => s.url().to_owned(),
        (None, Some(u)) => u.to_owned(),
        (None, None) => unreachable!("one of the two is set"),
    };
    let journal = Journal::connect(&url, &StreamSpec::default()).await?;
    let store_spec = args
        .store
        .unwrap_or_else(|| data_dir.join("objects").display().to_string());
    let store = Store::open(&store_spec)?;
    let ctx = Ctx {
        journal: journal.clone(),
        store: store.clone(),
        work_dir: work_dir(&data_dir)?,
        limits: limits()?,
    };
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
    let services = tokio::spawn(weir_services::run_all(ctx, stop_rx.clone()));
    let projector = {
        let journal = journal.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            weir_projections::run(&journal, &db, async move {
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
    println!(
        "ready nats={url} http={http} store={} db={db_url} data={} (nats-server {})",
        store.url(),
        data_dir.display(),
        journal.server_version()
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
    let journal = crate::system::connect(nats_url, data_dir).await?;
    let store = open_store(args.store.as_deref(), data_dir)?;
    let ctx = Ctx {
        journal,
        store,
        work_dir: work_dir(data_dir)?,
        limits: limits()?,
    };
    println!("ready {}", args.service);
    weir_services::run_one(&args.service, ctx, shutdown_signal())
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.service))?;
    Ok(0)
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
