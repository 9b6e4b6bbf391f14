//! The pipeline end to end: `weir_services::run_all` in this process (the services
//! `weir up` runs, on the same kind of nats-server child with the repository's
//! `nats.conf`, and a local object store), fed by `producer::upload_file`.
//!
//! Latency is measured on the log itself: `DatasetRegistered`'s server timestamp minus
//! `UploadReceived`'s. Small files go through a closed loop of `window` uploads in
//! flight (each worker uploads, waits for its upload's terminal event, takes the next
//! file), so the latency is what an upload sees at that load, not a queue's length.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use tokio::sync::oneshot;
use weir_events::{Event, EventKind, Owner, StreamSpec, Subject, Timestamp, UploadId};
use weir_journal::auth::Passwords;
use weir_journal::server::{ClusterConfig, LocalCluster, LocalServer, find_binary, free_port};
use weir_journal::{Follow, Journal, Role, Start, StreamSetup};
use weir_services::producer::{DEFAULT_PART_SIZE, UploadRequest, upload_file};
use weir_services::{Ctx, Store};

use crate::conversion::Inputs;
use crate::{RunArgs, Sizes, data};

/// The repository's server settings, the same `weir up` writes into its data dir.
const NATS_CONF: &str = include_str!("../../nats.conf");

/// How the benchmark's NATS runs: the repository's `nats.conf` as it is, or with another
/// `sync_interval`, on one node or a cluster with the stream replicated on each node.
#[derive(Debug, Clone, Default)]
pub struct NatsShape {
    /// `None`: nats.conf's own choice; `Some("default")`: the line removed (the
    /// server's default); otherwise the value written in its place (`1s`, `always`).
    pub sync: Option<String>,
    /// 1, or 3 for an R3 stream on three nodes.
    pub nodes: usize,
}

impl NatsShape {
    /// nats.conf with this shape's `sync_interval`.
    fn conf(&self) -> Result<String> {
        let Some(sync) = &self.sync else {
            return Ok(NATS_CONF.to_owned());
        };
        let line = NATS_CONF
            .lines()
            .find(|l| l.trim_start().starts_with("sync_interval:"))
            .context("nats.conf has no sync_interval line to replace")?;
        let with = match sync.as_str() {
            "default" => String::new(),
            "always" => "  sync_interval: always".to_owned(),
            v => format!("  sync_interval: \"{v}\""),
        };
        Ok(NATS_CONF.replacen(line, &with, 1))
    }

    /// What the report calls it: `sync <value>, <n> node(s)`.
    pub fn label(&self) -> String {
        format!(
            "sync_interval {}, {}",
            self.sync.as_deref().unwrap_or("as in nats.conf (1s)"),
            if self.nodes > 1 {
                format!("{} nodes, R{}", self.nodes, self.nodes)
            } else {
                "one node".to_owned()
            }
        )
    }
}

enum Server {
    One(LocalServer),
    Cluster(LocalCluster),
}

/// A nats-server (or a cluster of them) with the repository's `nats.conf` and its
/// users, as `weir up` runs it: passwords generated for the run, each part connecting
/// as its own role.
pub struct Nats {
    server: Server,
    url: String,
    passwords: Passwords,
    spec: StreamSpec,
}

impl Nats {
    pub fn start(dir: &Path, shape: &NatsShape) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let conf = dir.join("nats.conf");
        std::fs::write(&conf, shape.conf()?)?;
        let bin = find_binary().context("finding nats-server (run scripts/setup)")?;
        let passwords = Passwords::generate()?;
        let spec = StreamSpec {
            replicas: shape.nodes.max(1),
            ..StreamSpec::default()
        };
        if shape.nodes > 1 {
            std::fs::create_dir_all(dir.join("nats"))?;
            let cluster = LocalCluster::start(
                &bin,
                ClusterConfig {
                    nodes: shape.nodes,
                    dir: dir.join("nats"),
                    conf: Some(conf),
                    env: passwords.env(),
                },
            )?;
            let url = cluster.url();
            return Ok(Nats {
                server: Server::Cluster(cluster),
                url,
                passwords,
                spec,
            });
        }
        let port = free_port()?;
        let args: Vec<OsString> = vec![
            "-c".into(),
            conf.into(),
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string().into(),
            "-sd".into(),
            dir.join("nats").into(),
        ];
        let log = std::fs::File::create(dir.join("nats.log"))?;
        let server = LocalServer::spawn_env(&bin, &args, &passwords.env(), port, Some(log))?;
        let url = server.url().to_owned();
        Ok(Nats {
            server: Server::One(server),
            url,
            passwords,
            spec,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sets the stream up as the admin (as `weir up` does first).
    pub async fn set_up(&self) -> Result<()> {
        Journal::set_up(
            self.url(),
            Some(&self.passwords.credentials(Role::Admin)),
            &self.spec,
            std::time::Duration::from_secs(30),
        )
        .await
        .context("setting the stream up as the admin")?;
        Ok(())
    }

    /// A connection as `role`; the stream must be set up.
    pub async fn connect(&self, role: Role) -> Result<Journal> {
        Journal::connect_as(
            self.url(),
            Some(&self.passwords.credentials(role)),
            &self.spec,
            StreamSetup::CreateIfMissing,
        )
        .await
        .with_context(|| format!("connecting as {}", role.user()))
    }

    /// CPU seconds the nats-server has used so far (one node; NaN for a cluster,
    /// whose nodes are not counted).
    pub fn cpu_seconds(&self) -> f64 {
        match &self.server {
            Server::One(s) => crate::events::cpu_seconds_of(&s.pid().to_string()),
            Server::Cluster(_) => f64::NAN,
        }
    }

    pub fn stop(self) {
        match self.server {
            Server::One(s) => s.stop(),
            Server::Cluster(c) => drop(c),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PipelineFigures {
    pub mode: String,
    pub files: usize,
    /// Uploads started before `--pipeline-seconds` ran out (all of them without it).
    pub attempted: usize,
    /// `upload_file` itself failed (store or append): these never reached the log.
    pub producer_errors: usize,
    pub first_producer_error: Option<String>,
    pub window: usize,
    pub registered: usize,
    pub failed: usize,
    pub small_seconds: f64,
    pub uploads_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The figures under their own names (results.json `pipeline.*`): small
    /// uploads registered per second, their p99 latency (`UploadReceived` to
    /// `DatasetRegistered`, server timestamps), and the big file's time over the
    /// conversion alone (1.10 is the target).
    pub small_uploads_per_s: f64,
    pub small_p99_ms: f64,
    pub big_overhead_ratio: Option<f64>,
    /// Where a small upload's time goes, p50 and p99 of each stretch in ms: the producer
    /// (`upload_file`: part written, `UploadReceived` appended, client clock), then
    /// received → combined, combined → inferred, inferred → registered (server clock).
    pub small_stages_ms: Vec<Stage>,
    /// CPU ms per small upload during that run: weir's process (the services, the
    /// producer and the benchmark's tracker of the log) and the nats-server (NaN for a
    /// cluster).
    pub small_cpu_ms: f64,
    pub small_nats_cpu_ms: f64,
    pub big: Option<BigFile>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Stage {
    pub stage: String,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BigFile {
    pub input_bytes: u64,
    /// From the first byte uploaded to `DatasetRegistered` seen.
    pub total_seconds: f64,
    /// weir's conversion of the same file alone (the conversion benchmark's process).
    pub conversion_seconds: f64,
    pub overhead_percent: f64,
    /// Producer writing parts and appending `UploadReceived`.
    pub upload_seconds: f64,
    /// `UploadReceived` → `PartsCombined` (verify and concatenate the parts).
    pub combine_seconds: f64,
    /// `PartsCombined` → `SchemaInferred` (download, convert, store the Parquet).
    pub infer_seconds: f64,
    /// `SchemaInferred` → `DatasetRegistered` (claim the name).
    pub register_seconds: f64,
    /// The upload's peer, timed right after the pipeline: `std::fs::copy` of the same
    /// file to a new file beside the store (no hashing, no sync). The producer's upload
    /// is one such copy plus a SHA-256 of the bytes read back, on a second thread, so
    /// `upload_seconds` near this figure means the upload runs at the speed this
    /// machine writes new files.
    pub copy_seconds: f64,
    /// The same file uploaded again in [`MULTIPART_PARTS`] parts:
    /// `UploadReceived` → `PartsCombined`, the combiner concatenating and hashing them
    /// (the presigned multi-part path's step). The bytes are the first upload's, so the
    /// blob is found already stored after the concatenation; the step's work is the
    /// same.
    pub multipart_parts: usize,
    pub multipart_combine_seconds: f64,
}

/// Parts of the big file's multi-part upload (64 MB each for the 1 GB file; the
/// quick run's file is cut the same way, so it is concatenated too).
const MULTIPART_PARTS: u64 = 16;

/// What the log said about one upload so far.
#[derive(Default)]
struct Entry {
    /// Server timestamps of UploadReceived, PartsCombined, SchemaInferred, terminal.
    at: [Option<Timestamp>; 4],
    ok: Option<bool>,
    waiter: Option<oneshot::Sender<()>>,
}

type Tracker = Arc<Mutex<HashMap<UploadId, Entry>>>;

fn lock(t: &Tracker) -> std::sync::MutexGuard<'_, HashMap<UploadId, Entry>> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

/// Follows the terminal kinds and wakes whoever waits on an upload. Only those: every
/// event the benchmark follows live is CPU taken from the system it measures (the
/// other kinds' timestamps are read once the uploads are done, see [`fill`]).
async fn track(journal: Journal) -> Result<Tracker> {
    let kinds = [EventKind::DatasetRegistered, EventKind::Failed];
    let mut events = Box::pin(
        journal
            .follow(Follow {
                filters: kinds.iter().map(|k| Subject::kind_filter(*k)).collect(),
                start: Start::New,
            })
            .await?,
    );
    let tracker: Tracker = Arc::default();
    let t = tracker.clone();
    tokio::spawn(async move {
        while let Some(Ok(rec)) = events.next().await {
            let upload = rec.envelope.correlation_id;
            let ok = match &rec.envelope.event {
                Event::DatasetRegistered(_) => true,
                Event::Failed(f) => {
                    eprintln!("bench: upload {upload} failed: {}", f.reason);
                    false
                }
                _ => continue,
            };
            let mut map = lock(&t);
            let e = map.entry(upload).or_default();
            e.at[3] = Some(rec.stored_at);
            e.ok = Some(ok);
            if let Some(w) = e.waiter.take() {
                let _ = w.send(());
            }
        }
    });
    Ok(tracker)
}

/// Reads the server timestamps of every upload's first three events into the tracker.
async fn fill(journal: &Journal, tracker: &Tracker) -> Result<()> {
    let kinds = [
        EventKind::UploadReceived,
        EventKind::PartsCombined,
        EventKind::SchemaInferred,
    ];
    for (slot, kind) in kinds.into_iter().enumerate() {
        let events = journal.read_all(Subject::kind_filter(kind)).await?;
        let mut map = lock(tracker);
        for rec in events {
            map.entry(rec.envelope.correlation_id).or_default().at[slot] = Some(rec.stored_at);
        }
    }
    Ok(())
}

/// Waits until the tracker has seen `upload`'s terminal event.
async fn terminal(tracker: &Tracker, upload: UploadId) {
    let rx = {
        let mut map = lock(tracker);
        let e = map.entry(upload).or_default();
        if e.ok.is_some() {
            return;
        }
        let (tx, rx) = oneshot::channel();
        e.waiter = Some(tx);
        rx
    };
    let _ = rx.await;
}

fn request(owner: &Owner, path: &Path) -> UploadRequest {
    UploadRequest {
        owner: owner.clone(),
        filename: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        label: None,
        table_name: None,
        format: None,
        content_type: None,
        part_size: DEFAULT_PART_SIZE,
        options: Default::default(),
        dataset: None,
        parent_version: None,
        branch: None,
    }
}

fn small_files(out: &Path, count: usize) -> Result<Vec<PathBuf>> {
    let dir = out
        .join("data")
        .join(format!("small_{count}_{:x}", data::SEED));
    let done = dir.join(".done");
    if done.exists() {
        return Ok((0..count)
            .map(|n| dir.join(format!("small_{n:05}.csv")))
            .collect());
    }
    let paths = data::write_small_files(&dir, count, data::SEED)?;
    std::fs::write(&done, "")?;
    Ok(paths)
}

fn ms(a: Timestamp, b: Timestamp) -> f64 {
    (b.0 - a.0) as f64 / 1000.0
}

pub async fn run(
    args: &RunArgs,
    sizes: &Sizes,
    inputs: &Inputs,
    conversion_seconds: Option<f64>,
) -> Result<PipelineFigures> {
    let files = small_files(&args.out, sizes.files)?;
    let dir = args.out.join("pipeline");
    // The previous run's files are moved aside now and deleted only after measuring:
    // on ext4 without a journal (this machine), inode allocation skips inodes freed in
    // the last minute or more, and after tens of thousands of deletions every `mkdir`
    // of the run would pay for it (14 % of the CPU instead of 3 % in one profile).
    let old = args.out.join("pipeline.old");
    let _ = std::fs::remove_dir_all(&old);
    let _ = std::fs::rename(&dir, &old);
    std::fs::create_dir_all(&dir)?;
    let nats = Nats::start(&dir, &args.nats_shape())?;
    nats.set_up().await?;
    // The producer appends as `weir upload` does (the gateway's user); each service
    // connects as its own user, as in `weir up`.
    let journal = nats.connect(Role::Gateway).await?;
    let store = Store::local(&dir.join("objects"))?;
    let work_dir = dir.join("work");
    std::fs::create_dir_all(&work_dir)?;
    let ctx = |journal: Journal| Ctx {
        journal,
        store: store.clone(),
        work_dir: work_dir.clone(),
        limits: Default::default(),
    };
    let ctxs = weir_services::Ctxs {
        combiner: ctx(nats.connect(Role::Combiner).await?),
        inferrer: ctx(nats.connect(Role::Inferrer).await?),
        registrar: ctx(nats.connect(Role::Registrar).await?),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let services = tokio::spawn(weir_services::run_each(ctxs, stop_rx));
    let tracker = track(nats.connect(Role::Projector).await?).await?;
    let owner: Owner = "bench".parse()?;

    eprintln!(
        "bench: pipeline: {} small files, {} in flight …",
        files.len(),
        args.window
    );
    let t = Instant::now();
    let (cpu, nats_cpu) = (crate::events::cpu_seconds(), nats.cpu_seconds());
    let cap = args.pipeline_seconds;
    let uploads: Vec<Result<(UploadId, f64)>> = futures::stream::iter(files.iter())
        .take_while(|_| futures::future::ready(cap.is_none_or(|c| t.elapsed().as_secs_f64() < c)))
        .map(|path| {
            let (journal, store, tracker, req) =
                (&journal, &store, &tracker, request(&owner, path));
            async move {
                let t = Instant::now();
                let id = upload_file(journal, store, path, &req, |_| {}).await?;
                let produced = t.elapsed().as_secs_f64() * 1000.0;
                terminal(tracker, id).await;
                Ok((id, produced))
            }
        })
        .buffer_unordered(args.window.max(1))
        .collect()
        .await;
    let small_seconds = t.elapsed().as_secs_f64();
    let cpu = crate::events::cpu_seconds() - cpu;
    let nats_cpu = nats.cpu_seconds() - nats_cpu;
    fill(&journal, &tracker).await?;
    let mut latencies = Vec::new();
    let mut stages: [Vec<f64>; 4] = Default::default();
    let mut failed = 0;
    let mut producer_errors = 0;
    let mut first_producer_error = None;
    {
        let map = lock(&tracker);
        for id in uploads {
            let (id, produced) = match id {
                Ok(x) => x,
                Err(e) => {
                    // The producer could not write the parts or append: no upload.
                    producer_errors += 1;
                    first_producer_error.get_or_insert_with(|| format!("{e:#}"));
                    continue;
                }
            };
            let e = map.get(&id).context("an upload the tracker never saw")?;
            match e.at {
                [Some(r), Some(c), Some(i), Some(d)] if e.ok == Some(true) => {
                    latencies.push(ms(r, d));
                    stages[0].push(produced);
                    stages[1].push(ms(r, c));
                    stages[2].push(ms(c, i));
                    stages[3].push(ms(i, d));
                }
                _ => failed += 1,
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    let pct_of = |v: &[f64], p: f64| -> f64 {
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
        v[i]
    };
    let pct = |p: f64| pct_of(&latencies, p);
    let small_stages_ms: Vec<Stage> = ["producer", "combine", "infer", "register"]
        .iter()
        .zip(stages.iter_mut())
        .map(|(name, v)| {
            v.sort_by(f64::total_cmp);
            Stage {
                stage: (*name).to_owned(),
                p50_ms: pct_of(v, 0.50),
                p99_ms: pct_of(v, 0.99),
            }
        })
        .collect();
    for st in &small_stages_ms {
        eprintln!(
            "bench: pipeline: {:>8}: p50 {:.1} ms, p99 {:.1} ms",
            st.stage, st.p50_ms, st.p99_ms
        );
    }
    let registered = latencies.len();
    let attempted = registered + failed + producer_errors;
    if let Some(e) = &first_producer_error {
        eprintln!("bench: pipeline: {producer_errors} uploads failed in the producer, first: {e}");
    }
    let figures_small = (
        registered as f64 / small_seconds,
        pct(0.50),
        pct(0.99),
        latencies.last().copied().unwrap_or(f64::NAN),
    );
    eprintln!(
        "bench: pipeline: {registered} registered, {failed} failed in {small_seconds:.1} s = {:.0}/s; p50 {:.1} ms, p99 {:.1} ms",
        figures_small.0, figures_small.1, figures_small.2
    );
    // CPU per upload: less moved by a busy or drifting machine than the rate, so two
    // builds compare on it even when their rates overlap.
    let per_upload = |seconds: f64| seconds * 1000.0 / attempted.max(1) as f64;
    let (small_cpu_ms, small_nats_cpu_ms) = (per_upload(cpu), per_upload(nats_cpu));
    eprintln!(
        "bench: pipeline: CPU per upload: {small_cpu_ms:.2} ms in weir's process (services, producer, tracker), {small_nats_cpu_ms:.2} ms in nats-server"
    );

    // One big CSV: the conversion benchmark's file.
    let big_path = &inputs.csv;
    let input_bytes = std::fs::metadata(big_path)?.len();
    let conversion_seconds = match conversion_seconds {
        Some(s) => s,
        None => {
            eprintln!("bench: pipeline: timing the conversion alone (in process) …");
            let (input, output) = (big_path.clone(), dir.join("alone.parquet"));
            tokio::task::spawn_blocking(move || -> Result<f64> {
                let t = Instant::now();
                weir_schemas::convert(
                    &input,
                    &output,
                    &weir_schemas::ConvertOptions::default(),
                    &mut |_| {},
                )?;
                let s = t.elapsed().as_secs_f64();
                let _ = std::fs::remove_file(&output);
                Ok(s)
            })
            .await??
        }
    };
    eprintln!(
        "bench: pipeline: one {:.0} MB CSV …",
        input_bytes as f64 / 1e6
    );
    let started = Timestamp::now();
    let t = Instant::now();
    let id = upload_file(
        &journal,
        &store,
        big_path,
        &request(&owner, big_path),
        |_| {},
    )
    .await?;
    terminal(&tracker, id).await;
    let total_seconds = t.elapsed().as_secs_f64();
    let copy_seconds = {
        let (from, to) = (big_path.clone(), dir.join("copy-peer.csv"));
        tokio::task::spawn_blocking(move || -> Result<f64> {
            let t = Instant::now();
            std::fs::copy(&from, &to)
                .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
            let s = t.elapsed().as_secs_f64();
            std::fs::remove_file(&to)?;
            Ok(s)
        })
        .await??
    };
    // The same file again, in parts: the combiner's concatenation. After the plain
    // copy, so that the copy still follows the single-part pipeline at once.
    let mut in_parts = request(&owner, big_path);
    let part_size = input_bytes.div_ceil(MULTIPART_PARTS).max(1);
    in_parts.part_size = usize::try_from(part_size)?;
    let again = upload_file(&journal, &store, big_path, &in_parts, |_| {}).await?;
    terminal(&tracker, again).await;
    // One read of the log's timestamps for both uploads.
    fill(&journal, &tracker).await?;
    let big = {
        let map = lock(&tracker);
        let e = map.get(&id).context("the big upload was never seen")?;
        let [Some(r), Some(c), Some(i), Some(d)] = e.at else {
            bail!("the big upload did not register: {:?}", e.ok);
        };
        let e = map
            .get(&again)
            .context("the multi-part upload was never seen")?;
        let [Some(parts_received), Some(parts_combined), ..] = e.at else {
            bail!("the multi-part upload was not combined: {:?}", e.ok);
        };
        BigFile {
            input_bytes,
            total_seconds,
            conversion_seconds,
            overhead_percent: (total_seconds / conversion_seconds - 1.0) * 100.0,
            upload_seconds: ms(started, r) / 1000.0,
            combine_seconds: ms(r, c) / 1000.0,
            infer_seconds: ms(c, i) / 1000.0,
            register_seconds: ms(i, d) / 1000.0,
            copy_seconds,
            multipart_parts: input_bytes.div_ceil(part_size).max(1) as usize,
            multipart_combine_seconds: ms(parts_received, parts_combined) / 1000.0,
        }
    };
    eprintln!(
        "bench: pipeline: big file {:.1} s vs conversion alone {:.1} s ({:+.0} %); upload {:.1} s vs a plain copy {:.1} s",
        big.total_seconds,
        big.conversion_seconds,
        big.overhead_percent,
        big.upload_seconds,
        big.copy_seconds
    );
    eprintln!(
        "bench: pipeline: the same file in {} parts of {:.0} MB: combined in {:.2} s",
        big.multipart_parts,
        part_size as f64 / 1e6,
        big.multipart_combine_seconds
    );

    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), services).await;
    drop(journal);
    nats.stop();
    let _ = std::fs::remove_dir_all(&old);
    Ok(PipelineFigures {
        mode: format!(
            "weir_services::run_each in the benchmark's process (the services of `weir up`, each connected as its own nats.conf user), nats-server child with nats.conf and generated passwords ({}), local object store",
            args.nats_shape().label()
        ),
        files: files.len(),
        attempted,
        producer_errors,
        first_producer_error,
        window: args.window,
        registered,
        failed,
        small_seconds,
        uploads_per_s: figures_small.0,
        p50_ms: figures_small.1,
        p99_ms: figures_small.2,
        max_ms: figures_small.3,
        small_uploads_per_s: figures_small.0,
        small_p99_ms: figures_small.2,
        big_overhead_ratio: Some(big.total_seconds / big.conversion_seconds),
        small_stages_ms,
        small_cpu_ms,
        small_nats_cpu_ms,
        big: Some(big),
    })
}
