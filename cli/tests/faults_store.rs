//! The object store refuses a write under the inferrer, for real: the store's
//! `datasets` prefix is a plain file (every write under it fails), and the store's
//! directory is a small tmpfs filled up to one free page (the upload's part fits, its
//! Parquet does not: ENOSPC). Each time the step is retried with backoff, then ends
//! `Failed { retryable }` naming the cause; what its compensation records holds; no
//! object of a dataset that did not register is left in the store; once the fault is
//! gone the next upload registers; and the usual check holds (`support::Pipeline`).
//!
//! The full-disk test mounts a tmpfs, so it needs root; elsewhere it says it skipped.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use weir_events::*;
use weir_services::producer::{self, Terminal};
use weir_testkit::NatsServer;

mod support;
use support::{Checked, Pipeline, log_to_stderr, request, within};

/// Uploads `path` and waits (bounded) for its end.
async fn upload(sys: &Pipeline, path: &Path) -> (UploadId, Terminal) {
    let id = producer::upload_file(&sys.gateway, &sys.store, path, &request(path), |_| {})
        .await
        .unwrap();
    // Five attempts with backoff 0.5 + 2 + 5 + 15 s before `Failed`.
    let end = tokio::time::timeout(Duration::from_secs(90), producer::wait(&sys.gateway, id))
        .await
        .expect("no end within 90 s")
        .unwrap();
    (id, end)
}

/// The failure after every retry, its compensation, and nothing of its dataset left.
async fn failed_after_retries(sys: &Pipeline, id: UploadId, end: Terminal, cause: &str) -> Failed {
    let Terminal::Failed(f) = end else {
        panic!("{id}: {end:?}, not Failed")
    };
    assert_eq!(f.step, Step::Infer, "{f:?}");
    assert!(f.retryable, "{f:?}");
    assert_eq!(f.attempts, 5, "retried until the last delivery: {f:?}");
    assert!(f.reason.contains(cause), "{cause:?} not in {:?}", f.reason);
    // The delivery is acknowledged only after the compensation ran: wait for that.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while let Err(busy) = sys.consumers_idle().await {
        assert!(
            std::time::Instant::now() < deadline,
            "still in flight after 30 s: {busy}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let history = sys.gateway.history(&Aggregate::Upload(id)).await.unwrap();
    let Some(Event::PartsCombined(combined)) = history
        .iter()
        .map(|r| &r.envelope.event)
        .find(|e| matches!(e, Event::PartsCombined(_)))
    else {
        panic!("{id}: no PartsCombined")
    };
    // What the infer step's compensation does is its own (today: remove the blob no
    // other upload shares); whatever it records must hold in the store.
    let compensations: Vec<_> = history
        .iter()
        .skip_while(|r| !matches!(r.envelope.event, Event::Failed(_)))
        .skip(1)
        .map(|r| &r.envelope.event)
        .collect();
    for event in compensations {
        let Event::Compensated(Compensated { step, action }) = event else {
            panic!("{id}: {event:?} after Failed")
        };
        assert_eq!(*step, Step::Infer, "{id}");
        if let CompensationAction::BlobRemoved { blob } = action {
            assert_eq!(blob, &combined.blob, "{id}");
            assert_eq!(sys.store.exists(blob).await.unwrap(), None, "{id}");
        }
    }
    f
}

/// Every file under `dir` (the store's `datasets/`): only registered versions' objects.
fn files_under(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.insert(p);
        }
    }
    out
}

/// What the store holds of datasets: the files under `datasets/` and the converted
/// Parquet, stored by content under `parquet/`.
fn dataset_files(store_dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = files_under(&store_dir.join("datasets"));
    out.extend(files_under(&store_dir.join("parquet")));
    out
}

/// The registered versions' Parquet files, as paths under the store's directory.
fn registered_files(store_dir: &Path, log: &[weir_journal::Recorded]) -> BTreeSet<PathBuf> {
    log.iter()
        .filter_map(|r| match &r.envelope.event {
            Event::DatasetRegistered(d) => Some(store_dir.join(d.parquet.to_string())),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_write_failure_is_retried_then_failed_and_leaves_no_partial_dataset() {
    within(Duration::from_secs(180), async {
        log_to_stderr();
        let nats = NatsServer::start_with_users();
        let passwords = nats.passwords().unwrap().clone();
        let sys = Pipeline::start(&nats.url(), &passwords, 1).await;
        let files = sys.files(2);
        // A plain file where the store keeps converted Parquet (and where conversions
        // are staged): every write under it fails.
        let converted = sys.store_dir().join("parquet");
        std::fs::write(&converted, "in the way").unwrap();
        let (bad, end) = upload(&sys, &files[0]).await;
        let f = failed_after_retries(&sys, bad, end, "parquet").await;
        assert_eq!(std::fs::read(&converted).unwrap(), b"in the way");
        // The fault gone, the next upload registers.
        std::fs::remove_file(&converted).unwrap();
        let (good, end) = upload(&sys, &files[1]).await;
        assert!(matches!(end, Terminal::Registered(_)), "{end:?}");
        let store_dir = sys.store_dir();
        let Checked {
            registered,
            failed,
            log,
            dir: _dir, // the store stays until the checks below are done
        } = sys.check(&[bad, good], Duration::from_secs(60)).await;
        assert_eq!((registered, failed), (1, 1));
        assert_eq!(dataset_files(&store_dir), registered_files(&store_dir, &log));
        eprintln!(
            "store write refused: 1 upload retried {} times then Failed ({:?}), compensation checked, \
             no partial dataset; {} events checked, lost = 0",
            f.attempts,
            f.reason,
            log.len()
        );
    })
    .await;
}

/// A tmpfs mounted over a directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts `size` bytes of tmpfs over `dir`; `None` when this process may not mount.
    fn mount(dir: &Path, size: usize) -> Option<Self> {
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "skipped: cannot mount a tmpfs (needs root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Self(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the file system under `dir` page by page until it refuses, then frees one
/// page; returns the filler's path.
fn fill_but_one_page(dir: &Path) -> PathBuf {
    const PAGE: usize = 4096;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let page = [7u8; PAGE];
    let mut len = 0u64;
    loop {
        match file.write(&page) {
            Ok(PAGE) => len += PAGE as u64,
            Ok(n) => panic!("a short write of {n} bytes at {len}"),
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    file.set_len(len - PAGE as u64).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_store_is_retried_then_failed_and_leaves_no_partial_dataset() {
    within(Duration::from_secs(180), async {
        log_to_stderr();
        let nats = NatsServer::start_with_users();
        let passwords = nats.passwords().unwrap().clone();
        let sys = Pipeline::start(&nats.url(), &passwords, 1).await;
        let Some(tmpfs) = Tmpfs::mount(&sys.store_dir(), 1 << 20) else {
            return;
        };
        let files = sys.files(3);
        let (first, end) = upload(&sys, &files[0]).await;
        assert!(matches!(end, Terminal::Registered(_)), "{end:?}");
        // One free page: the next upload's part fits, its Parquet does not.
        let filler = fill_but_one_page(&sys.store_dir());
        let (bad, end) = upload(&sys, &files[1]).await;
        let f = failed_after_retries(&sys, bad, end, "No space left on device").await;
        std::fs::remove_file(&filler).unwrap();
        let (good, end) = upload(&sys, &files[2]).await;
        assert!(matches!(end, Terminal::Registered(_)), "{end:?}");
        let store_dir = sys.store_dir();
        let Checked {
            registered,
            failed,
            log,
            dir,
        } = sys
            .check(&[first, bad, good], Duration::from_secs(60))
            .await;
        assert_eq!((registered, failed), (2, 1));
        assert_eq!(
            dataset_files(&store_dir),
            registered_files(&store_dir, &log)
        );
        // Unmounted before the temp dir under it goes.
        drop(tmpfs);
        drop(dir);
        eprintln!(
            "store's disk full: 1 upload retried {} times then Failed ({:?}), compensation checked, \
             no partial dataset; {} events checked, lost = 0",
            f.attempts,
            f.reason,
            log.len()
        );
    })
    .await;
}
