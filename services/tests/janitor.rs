//! The retention janitor on a real nats-server, a real local object store and real
//! projections (SQLite, and Postgres at `WEIR_TEST_POSTGRES`), with a clock the test
//! moves through every retention period: each act is an event in the log, each object
//! is gone or kept as it should be, a blob shared by two datasets outlives the first
//! purge, a compensation a crash lost is completed once, and the object references
//! rebuilt from the log equal the live ones.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use weir_events::*;
use weir_journal::{AppendOutcome, Expect, Journal};
use weir_projections::{Db, Tables, retention, snapshot};
use weir_services::janitor::{Clock, Janitor, JanitorConfig, Retention};
use weir_services::producer::{self, Terminal, UploadRequest};
use weir_services::{Ctx, Store};
use weir_testkit::NatsServer;

const DAY: Duration = Duration::from_secs(86_400);

/// Runs the test function `$name(postgres)` on SQLite, and on Postgres.
macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                tokio::time::timeout(std::time::Duration::from_secs(120), super::$name(false))
                    .await
                    .expect("the test took over 120 s");
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                tokio::time::timeout(std::time::Duration::from_secs(120), super::$name(true))
                    .await
                    .expect("the test took over 120 s");
            }
        }
    };
}

on_both!(every_retention_period_in_turn_each_act_an_event);
on_both!(a_blob_shared_by_two_datasets_goes_only_after_both_are_purged);
on_both!(a_compensation_lost_between_failed_and_compensated_is_completed_once);
on_both!(nothing_is_deleted_until_the_references_cover_the_whole_log);
on_both!(an_object_no_event_names_goes_once_it_is_old_enough);
on_both!(a_version_of_several_files_holds_every_blob_until_it_is_purged);

fn postgres_base() -> String {
    std::env::var("WEIR_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// A fresh projections database: a SQLite file in `dir`, or a new Postgres database.
async fn fresh_db(postgres: bool, dir: &Path, name: &str) -> Db {
    if !postgres {
        return Db::connect(&dir.join(format!("{name}.db")).display().to_string())
            .await
            .unwrap();
    }
    let db_name = format!("weir_janitor_{name}_{}", UploadId::new().as_u128() as u64);
    let admin = Db::open(&format!("{}/postgres", postgres_base()))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "tests need Postgres at {} (WEIR_TEST_POSTGRES): {e}",
                postgres_base()
            )
        });
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
        .execute(admin.pool())
        .await
        .unwrap();
    admin.close().await;
    Db::connect(&format!("{}/{db_name}", postgres_base()))
        .await
        .unwrap()
}

struct System {
    _nats: NatsServer,
    journal: Journal,
    store: Store,
    db: Db,
    postgres: bool,
    dir: tempfile::TempDir,
    clock: Clock,
    janitor: Janitor,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl System {
    /// The log, the store, a projector following the log, and a janitor on a clock
    /// that stands still until the test moves it; the pipeline's services too when
    /// `services`.
    async fn start(postgres: bool, services: bool) -> Self {
        let nats = NatsServer::start();
        let journal = Journal::connect(&nats.url(), &StreamSpec::default())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(&dir.path().join("objects")).unwrap();
        let work_dir = dir.path().join("work");
        std::fs::create_dir_all(&work_dir).unwrap();
        let db = fresh_db(postgres, dir.path(), "live").await;
        let ctx = Ctx {
            journal: journal.clone(),
            store: store.clone(),
            work_dir,
            limits: Default::default(),
        };
        let (stop, rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        if services {
            let rx = rx.clone();
            let ctx = ctx.clone();
            tasks.push(tokio::spawn(async move {
                weir_services::run_all(ctx, rx).await.unwrap();
            }));
        }
        {
            let (journal, db, mut rx) = (journal.clone(), db.clone(), rx.clone());
            tasks.push(tokio::spawn(async move {
                weir_projections::run(&journal, &db, async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await
                .unwrap();
            }));
        }
        let clock = Clock::manual(Timestamp::now());
        let janitor = Janitor {
            ctx,
            db: db.clone(),
            config: JanitorConfig {
                retention: Retention::default(),
                interval: Duration::from_secs(3600),
                catch_up: Duration::from_secs(30),
            },
            clock: clock.clone(),
        };
        Self {
            _nats: nats,
            journal,
            store,
            db,
            postgres,
            dir,
            clock,
            janitor,
            stop,
            tasks,
        }
    }

    async fn upload(&self, name: &str, bytes: &[u8], part_size: usize) -> (UploadId, Terminal) {
        let path = self.dir.path().join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
        let request = UploadRequest {
            owner: "acme".parse().unwrap(),
            filename: name.to_owned(),
            label: None,
            table_name: None,
            format: None,
            content_type: None,
            part_size,
            options: ReadOptions {
                bad_rows: Some(BadRows::Fail),
                ..Default::default()
            },
            dataset: None,
            parent_version: None,
            branch: None,
        };
        let upload = producer::upload_file(&self.journal, &self.store, &path, &request, |_| {})
            .await
            .unwrap();
        (upload, self.end_of(upload).await)
    }

    /// How `upload` ended (at most 60 s from now).
    async fn end_of(&self, upload: UploadId) -> Terminal {
        tokio::time::timeout(
            Duration::from_secs(60),
            producer::wait(&self.journal, upload),
        )
        .await
        .expect("no terminal event within 60 s")
        .unwrap()
    }

    async fn registered(&self, name: &str, bytes: &[u8]) -> DatasetRegistered {
        match self.upload(name, bytes, 8 << 20).await.1 {
            Terminal::Registered(r) => r,
            other => panic!("{name}: {other:?}"),
        }
    }

    /// Appends `event` on dataset `d`'s aggregate as its owner, after its last event.
    async fn on_dataset(&self, d: DatasetId, event: Event) {
        let last = self.journal.last_on(&Aggregate::Dataset(d)).await.unwrap();
        let env = Envelope::new(
            Aggregate::Dataset(d),
            "acme".parse().unwrap(),
            UploadId::from_u128(d.as_u128()),
            None,
            event,
        );
        let expect = last.map_or(Expect::Empty, |r| Expect::LastSequence(r.seq));
        assert!(matches!(
            self.journal.append(&env, expect).await.unwrap(),
            AppendOutcome::Appended { .. }
        ));
    }

    /// The projections brought up to the log's end (beside the running projector: the
    /// checkpoint decides who applies what).
    async fn projected(&self) {
        weir_projections::catch_up(&self.journal, &self.db)
            .await
            .unwrap();
    }

    async fn exists(&self, key: &ObjectKey) -> bool {
        self.store.exists(key).await.unwrap().is_some()
    }

    /// Every event of `kind` in the log.
    async fn all(&self, kind: EventKind) -> Vec<Envelope> {
        self.journal
            .read_all(Subject::kind_filter(kind))
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.envelope)
            .collect()
    }

    /// The keys `ObjectDeleted` names, in log order.
    async fn deleted_keys(&self) -> Vec<ObjectKey> {
        self.all(EventKind::ObjectDeleted)
            .await
            .into_iter()
            .map(|e| match e.event {
                Event::ObjectDeleted(d) => {
                    // Each on the object's own aggregate.
                    assert_eq!(e.aggregate, Aggregate::Object(d.key.clone()));
                    d.key
                }
                other => panic!("{other:?}"),
            })
            .collect()
    }

    /// The projections rebuilt from the log in a fresh database equal the live ones
    /// (the object references included).
    async fn assert_rebuild_equals_live(&self) {
        weir_projections::catch_up(&self.journal, &self.db)
            .await
            .unwrap();
        let live = snapshot(&self.db, Tables::Live).await.unwrap();
        let fresh = fresh_db(self.postgres, self.dir.path(), "rebuilt").await;
        weir_projections::catch_up(&self.journal, &fresh)
            .await
            .unwrap();
        let rebuilt = snapshot(&fresh, Tables::Live).await.unwrap();
        assert!(!live.rows("object_refs").is_empty());
        assert_eq!(
            rebuilt.rows("object_refs"),
            live.rows("object_refs"),
            "object references rebuilt from the log"
        );
        assert_eq!(rebuilt, live, "every projection rebuilt from the log");
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            t.await.unwrap();
        }
    }
}

fn csv(tag: &str, rows: usize) -> Vec<u8> {
    let mut out = String::from("id,name,amount\n");
    for i in 0..rows {
        out.push_str(&format!("{i},{tag}-{i},{}.5\n", i * 3));
    }
    out.into_bytes()
}

async fn every_retention_period_in_turn_each_act_an_event(postgres: bool) {
    let sys = System::start(postgres, true).await;
    let acme: Owner = "acme".parse().unwrap();

    // Kept for good: a registered dataset.
    let kept = sys.registered("kept.csv", &csv("kept", 20)).await;
    let kept_blob = ObjectKey::blob(&sha(&csv("kept", 20)));
    // Failed at inference (a malformed record under `fail`): its blob waits 90 days.
    let bad = b"{\"a\": 1}\n{\"a\": 2,,}\n".to_vec();
    let (failed, end) = sys.upload("bad.ndjson", &bad, 8 << 20).await;
    assert!(
        matches!(end, Terminal::Failed(ref f) if f.step == Step::Infer),
        "{end:?}"
    );
    let failed_blob = ObjectKey::blob(&sha(&bad));
    assert!(
        sys.exists(&failed_blob).await,
        "no compensation removes the blob"
    );
    // Registered from two parts; one part comes back as if the crash between
    // PartsCombined and the parts' removal had left it: an orphan.
    let two = csv("two-parts", 200);
    let (orphaned, end) = sys.upload("two.csv", &two, 1500).await;
    assert!(matches!(end, Terminal::Registered(_)), "{end:?}");
    let orphan = ObjectKey::part(orphaned, 1);
    sys.store
        .put_bytes(&orphan, bytes::Bytes::from_static(b"left behind"))
        .await
        .unwrap();
    // A multipart upload opened and never completed: one of its parts arrived.
    let stale = UploadId::new();
    start_multipart(&sys.journal, stale, &acme).await;
    let stale_part = ObjectKey::part(stale, 1);
    sys.store
        .put_bytes(&stale_part, bytes::Bytes::from_static(b"1,2\n"))
        .await
        .unwrap();
    // Aborted by its owner, the abort's part removal lost to a crash.
    let aborted = UploadId::new();
    let started = start_multipart(&sys.journal, aborted, &acme).await;
    let aborted_part = ObjectKey::part(aborted, 1);
    sys.store
        .put_bytes(&aborted_part, bytes::Bytes::from_static(b"3,4\n"))
        .await
        .unwrap();
    let abort = Envelope::new(
        Aggregate::Upload(aborted),
        acme.clone(),
        aborted,
        None,
        Event::UploadAborted(UploadAborted {
            reason: "aborted by the owner".into(),
            parts_removed: 1,
        }),
    );
    sys.journal
        .append(&abort, Expect::LastSequence(started))
        .await
        .unwrap();
    // Soft-deleted today, purged after 30 days.
    let gone = sys.registered("gone.csv", &csv("gone", 30)).await;
    let gone_blob = ObjectKey::blob(&sha(&csv("gone", 30)));
    sys.on_dataset(
        gone.dataset,
        Event::DatasetDeleted(DatasetDeleted { reason: None }),
    )
    .await;

    let everything = [
        &kept.parquet,
        &kept_blob,
        &failed_blob,
        &orphan,
        &stale_part,
        &aborted_part,
        &gone.parquet,
        &gone_blob,
    ];
    // Day 0, ten minutes on (every event above is stored by then): nothing is due.
    sys.clock.advance(Duration::from_secs(600));
    let s = sys.janitor.sweep().await.unwrap();
    assert!(s.is_empty(), "{s:?}");
    for key in everything {
        assert!(sys.exists(key).await, "{key} kept on day 0");
    }
    assert!(
        s.kept.contains(&failed_blob) && s.kept.contains(&aborted_part),
        "{s:?}"
    );

    // Day 1: the orphaned part goes, nothing else.
    sys.clock.advance(DAY);
    let s = sys.janitor.sweep().await.unwrap();
    assert_eq!(s.deleted, std::slice::from_ref(&orphan), "{s:?}");
    assert!(!sys.exists(&orphan).await);
    assert_eq!(sys.deleted_keys().await, std::slice::from_ref(&orphan));

    // Day 7: the stale multipart upload is aborted and its part removed.
    sys.clock.advance(6 * DAY);
    let s = sys.janitor.sweep().await.unwrap();
    assert_eq!(s.aborted, [stale], "{s:?}");
    assert!(s.deleted.is_empty(), "{s:?}");
    assert!(!sys.exists(&stale_part).await);
    let last = sys
        .journal
        .last_on(&Aggregate::Upload(stale))
        .await
        .unwrap()
        .unwrap();
    let Event::UploadAborted(a) = &last.envelope.event else {
        panic!("{last:?}")
    };
    assert_eq!(a.parts_removed, 1);
    assert!(a.reason.contains("aborted by the janitor"), "{}", a.reason);
    assert_eq!(last.envelope.actor, acme);
    // Aborting again finds nothing: the upload has moved on.
    assert!(sys.janitor.sweep().await.unwrap().aborted.is_empty());

    // Day 30: the aborted upload's part goes; the deleted dataset is purged and its
    // Parquet and blob, which nothing else holds, go.
    sys.clock.advance(23 * DAY);
    let s = sys.janitor.sweep().await.unwrap();
    assert_eq!(s.purged, [gone.dataset], "{s:?}");
    let deleted: BTreeSet<ObjectKey> = s.deleted.iter().cloned().collect();
    assert_eq!(
        deleted,
        BTreeSet::from([
            aborted_part.clone(),
            gone.parquet.clone(),
            gone_blob.clone()
        ]),
        "{s:?}"
    );
    for key in [&aborted_part, &gone.parquet, &gone_blob] {
        assert!(!sys.exists(key).await, "{key} deleted");
    }
    let purges = sys.all(EventKind::DatasetPurged).await;
    assert_eq!(purges.len(), 1);
    assert_eq!(purges[0].aggregate, Aggregate::Dataset(gone.dataset));
    let facts = weir_services::dataset::DatasetFacts::read(&sys.journal, gone.dataset)
        .await
        .unwrap();
    assert!(facts.deleted && facts.purged);
    // The failed upload's blob is still within its 90 days.
    assert!(sys.exists(&failed_blob).await);

    // Day 90: the failed upload's blob goes.
    sys.clock.advance(60 * DAY);
    let s = sys.janitor.sweep().await.unwrap();
    assert_eq!(s.deleted, std::slice::from_ref(&failed_blob), "{s:?}");
    assert!(!sys.exists(&failed_blob).await);
    let recorded = sys.all(EventKind::ObjectDeleted).await;
    let failed_deletion = recorded
        .iter()
        .find_map(|e| match &e.event {
            Event::ObjectDeleted(d) if d.key == failed_blob => Some((e, d)),
            _ => None,
        })
        .unwrap();
    assert_eq!(failed_deletion.0.correlation_id, failed);
    assert_eq!(failed_deletion.1.size, Some(bad.len() as u64));
    assert!(
        failed_deletion.1.reason.contains("failed")
            && failed_deletion.1.reason.contains("kept 90d"),
        "{}",
        failed_deletion.1.reason
    );

    // Every deletion is an event, once; what is live stays.
    let keys = sys.deleted_keys().await;
    assert_eq!(keys.len(), 5, "{keys:?}");
    assert_eq!(keys.iter().collect::<BTreeSet<_>>().len(), 5, "{keys:?}");
    for key in [&kept.parquet, &kept_blob] {
        assert!(sys.exists(key).await, "{key} is live and kept");
    }
    // A year on, nothing more to do.
    sys.clock.advance(365 * DAY);
    let s = sys.janitor.sweep().await.unwrap();
    assert!(s.is_empty(), "{s:?}");
    assert_eq!(sys.deleted_keys().await.len(), 5);
    sys.projected().await;
    let refs = retention::refs_of(&sys.db, kept_blob.as_str())
        .await
        .unwrap();
    assert!(
        refs.iter()
            .any(|r| r.live && r.holder.starts_with("dataset:")),
        "{refs:?}"
    );

    sys.assert_rebuild_equals_live().await;
    sys.stop().await;
}

async fn a_blob_shared_by_two_datasets_goes_only_after_both_are_purged(postgres: bool) {
    let sys = System::start(postgres, true).await;
    let bytes = csv("shared", 50);
    let first = sys.registered("first.csv", &bytes).await;
    let (_, end) = sys.upload("second.csv", &bytes, 8 << 20).await;
    let Terminal::Registered(second) = end else {
        panic!("{end:?}")
    };
    assert_ne!(first.dataset, second.dataset);
    // Identical input and options: one blob, and one Parquet file (issue 10.4).
    assert_eq!(first.parquet, second.parquet);
    assert!(first.parquet.as_str().starts_with("parquet/sha256/"));
    let parquet = first.parquet.clone();
    let blob = ObjectKey::blob(&sha(&bytes));

    // The first is deleted and purged; the second still holds the blob and the Parquet.
    sys.on_dataset(
        first.dataset,
        Event::DatasetDeleted(DatasetDeleted { reason: None }),
    )
    .await;
    sys.clock.advance(30 * DAY + Duration::from_secs(600));
    let s = sys.janitor.sweep().await.unwrap();
    assert_eq!(s.purged, [first.dataset], "{s:?}");
    assert!(s.deleted.is_empty(), "{s:?}");
    assert!(s.kept.contains(&blob) && s.kept.contains(&parquet), "{s:?}");
    assert!(
        sys.exists(&blob).await && sys.exists(&parquet).await,
        "the second dataset still references the blob and the Parquet"
    );
    sys.projected().await;
    let refs = retention::refs_of(&sys.db, blob.as_str()).await.unwrap();
    let holders: Vec<(&str, bool, Option<&str>)> = refs
        .iter()
        .map(|r| (r.holder.as_str(), r.live, r.ended_by.as_deref()))
        .collect();
    let d1 = format!("dataset:{}", first.dataset);
    let d2 = format!("dataset:{}", second.dataset);
    assert!(
        holders.contains(&(d1.as_str(), false, Some("purged"))),
        "{holders:?}"
    );
    assert!(holders.contains(&(d2.as_str(), true, None)), "{holders:?}");

    // Then the second: now nothing holds the blob.
    sys.on_dataset(
        second.dataset,
        Event::DatasetDeleted(DatasetDeleted { reason: None }),
    )
    .await;
    let s = sys.janitor.sweep().await.unwrap();
    assert_eq!(s.purged, [second.dataset], "{s:?}");
    let deleted: BTreeSet<ObjectKey> = s.deleted.iter().cloned().collect();
    assert_eq!(deleted, BTreeSet::from([parquet.clone(), blob.clone()]));
    assert!(!sys.exists(&blob).await && !sys.exists(&parquet).await);
    let keys = sys.deleted_keys().await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    sys.projected().await;
    assert!(
        retention::refs_of(&sys.db, blob.as_str())
            .await
            .unwrap()
            .iter()
            .all(|r| !r.live && r.deleted_at.is_some())
    );

    // The same content uploaded again is a new life of the key: stored, referenced,
    // kept.
    let third = sys.registered("third.csv", &bytes).await;
    assert!(sys.exists(&blob).await);
    sys.clock.advance(365 * DAY);
    let s = sys.janitor.sweep().await.unwrap();
    assert!(s.is_empty(), "{s:?}");
    assert_eq!(
        third.parquet, parquet,
        "the same content, the same key again"
    );
    assert!(sys.exists(&blob).await && sys.exists(&parquet).await);

    sys.assert_rebuild_equals_live().await;
    sys.stop().await;
}

/// Issue 11.4e: the combiner appended `Failed` and crashed before its compensation.
async fn a_compensation_lost_between_failed_and_compensated_is_completed_once(postgres: bool) {
    // No services: the log is written as a combiner that crashed would have left it.
    let sys = System::start(postgres, false).await;
    let acme: Owner = "acme".parse().unwrap();
    let upload = UploadId::new();
    let parts = [b"id,x\n1,a\n".as_slice(), b"2,b\n".as_slice()];
    let mut manifest = Vec::new();
    for (i, bytes) in parts.iter().enumerate() {
        let n = i as u32 + 1;
        sys.store
            .put_bytes(
                &ObjectKey::part(upload, n),
                bytes::Bytes::copy_from_slice(bytes),
            )
            .await
            .unwrap();
        manifest.push(PartManifest {
            number: n,
            size: bytes.len() as u64,
            sha256: sha(bytes),
        });
    }
    let received = Envelope::new(
        Aggregate::Upload(upload),
        acme.clone(),
        upload,
        None,
        Event::UploadReceived(UploadReceived {
            owner: acme.clone(),
            filename: "crash.csv".into(),
            content_type: None,
            format: None,
            label: None,
            table_name: None,
            size: 13,
            parts: manifest,
            dataset: None,
            parent_version: None,
            branch: None,
            options: Default::default(),
            more_files: Vec::new(),
        }),
    );
    let seq = match sys.journal.append(&received, Expect::Empty).await.unwrap() {
        AppendOutcome::Appended { seq, .. } => seq,
        other => panic!("{other:?}"),
    };
    let failed = Envelope::new(
        Aggregate::Upload(upload),
        acme.clone(),
        upload,
        Some(received.event_id),
        Event::Failed(Failed {
            step: Step::Combine,
            reason: "crash.csv: object store unreachable".into(),
            attempts: 5,
            retryable: true,
        }),
    );
    sys.journal
        .append(&failed, Expect::LastSequence(seq))
        .await
        .unwrap();
    // Within the grace a service's compensation gets, the janitor leaves it alone.
    let s = sys.janitor.sweep().await.unwrap();
    assert!(s.compensated.is_empty(), "{s:?}");
    for n in 1..=2 {
        assert!(sys.exists(&ObjectKey::part(upload, n)).await);
    }

    sys.clock.advance(Duration::from_secs(11 * 60));
    let s = sys.janitor.sweep().await.unwrap();
    assert_eq!(s.compensated, [upload], "{s:?}");
    for n in 1..=2 {
        assert!(
            !sys.exists(&ObjectKey::part(upload, n)).await,
            "part {n} removed"
        );
    }
    let history = sys
        .journal
        .history(&Aggregate::Upload(upload))
        .await
        .unwrap();
    let kinds: Vec<EventKind> = history.iter().map(|r| r.envelope.kind()).collect();
    assert_eq!(
        kinds,
        [
            EventKind::UploadReceived,
            EventKind::Failed,
            EventKind::Compensated
        ]
    );
    let last = &history[2].envelope;
    assert_eq!(last.causation_id, Some(failed.event_id));
    assert!(matches!(
        &last.event,
        Event::Compensated(Compensated {
            step: Step::Combine,
            action: CompensationAction::PartsRemoved { count: 2 }
        })
    ));

    // Done once: later sweeps, through every period, add nothing to the upload.
    for _ in 0..3 {
        sys.clock.advance(100 * DAY);
        let s = sys.janitor.sweep().await.unwrap();
        assert!(s.compensated.is_empty() && s.deleted.is_empty(), "{s:?}");
    }
    assert_eq!(
        sys.journal
            .history(&Aggregate::Upload(upload))
            .await
            .unwrap()
            .len(),
        3
    );
    sys.assert_rebuild_equals_live().await;
    sys.stop().await;
}

/// A database migrated to 0005 after its events were projected has no references for
/// them: the janitor refuses to delete anything (the old datasets' blobs would look
/// unreferenced) until a replay rebuilds them from the log.
async fn nothing_is_deleted_until_the_references_cover_the_whole_log(postgres: bool) {
    let sys = System::start(postgres, true).await;
    let old = sys.registered("old.csv", &csv("old", 10)).await;
    let bytes = csv("failed-later", 10);
    let (_, end) = sys.upload("again.csv", &bytes, 8 << 20).await;
    assert!(matches!(end, Terminal::Registered(_)), "{end:?}");
    sys.projected().await;
    // As if object_refs had been created empty on a database that already held these.
    sqlx::query("DELETE FROM object_refs")
        .execute(sys.db.pool())
        .await
        .unwrap();
    sys.on_dataset(
        old.dataset,
        Event::DatasetDeleted(DatasetDeleted { reason: None }),
    )
    .await;
    sys.clock.advance(400 * DAY);
    let err = sys.janitor.sweep().await.unwrap_err().to_string();
    assert!(
        err.contains("do not cover 2 dataset versions") && err.contains("run `weir replay`"),
        "{err}"
    );
    assert!(sys.exists(&old.parquet).await);
    assert!(sys.all(EventKind::DatasetPurged).await.is_empty());

    // Rebuilt from the log (under the running projector), the janitor does its work.
    weir_projections::replay(&sys.journal, &sys.db)
        .await
        .unwrap();
    let s = sys.janitor.sweep().await.unwrap();
    assert_eq!(s.purged, [old.dataset], "{s:?}");
    assert!(s.deleted.contains(&old.parquet), "{s:?}");
    assert!(!sys.exists(&old.parquet).await);
    sys.assert_rebuild_equals_live().await;
    sys.stop().await;
}

/// Opens a multipart upload of two parts as the gateway does; returns its sequence.
async fn start_multipart(journal: &Journal, upload: UploadId, owner: &Owner) -> u64 {
    let env = Envelope::new(
        Aggregate::Upload(upload),
        owner.clone(),
        upload,
        None,
        Event::UploadStarted(UploadStarted {
            owner: owner.clone(),
            filename: "big.csv".into(),
            size: 8,
            part_size: 4,
            part_count: 2,
            expires_at: Timestamp::now(),
        }),
    );
    match journal.append(&env, Expect::Empty).await.unwrap() {
        AppendOutcome::Appended { seq, .. } => seq,
        other => panic!("{other:?}"),
    }
}

fn sha(bytes: &[u8]) -> Sha256 {
    use sha2::Digest;
    Sha256(sha2::Sha256::digest(bytes).into())
}

/// Objects a step or a producer wrote and then stopped before recording (a Parquet
/// stored by content, a half-written file under `datasets/`, a part whose upload was
/// never appended) are named by no event. The janitor finds them by listing the store
/// and deletes each once it was last written `orphan` ago (`multipart` for parts), as
/// `ObjectDeleted` by weir's own actor; what a registered dataset holds stays.
async fn an_object_no_event_names_goes_once_it_is_old_enough(postgres: bool) {
    let sys = System::start(postgres, true).await;
    let kept = sys.registered("kept.csv", &csv("kept", 20)).await;
    let kept_blob = ObjectKey::blob(&sha(&csv("kept", 20)));
    let never_appended = UploadId::new();
    let parquet = ObjectKey::from_stored(format!("parquet/sha256/{}.parquet", "0f".repeat(32)));
    let partial = ObjectKey::from_stored(format!(
        "datasets/{}/v1/data.parquet#4242000000000001",
        DatasetId::new()
    ));
    let part = ObjectKey::part(never_appended, 1);
    for key in [&parquet, &partial, &part] {
        sys.store
            .put_bytes(key, bytes::Bytes::from_static(b"written, never recorded"))
            .await
            .unwrap();
    }
    let strays = |keys: &[&ObjectKey]| keys.iter().map(|k| (*k).clone()).collect::<BTreeSet<_>>();

    // Just written: nobody can tell a crash from a step about to append.
    let sweep = sys.janitor.sweep().await.unwrap();
    assert!(sweep.deleted.is_empty(), "{:?}", sweep.deleted);
    for key in [&parquet, &partial, &part] {
        assert!(sys.exists(key).await, "{key} kept while young");
    }

    // Past `orphan` (1 day): the Parquet and the half-written file go; the part waits
    // for `multipart` (7 days), as a producer may still be writing its siblings.
    sys.clock.advance(2 * DAY);
    let sweep = sys.janitor.sweep().await.unwrap();
    assert_eq!(
        sweep.deleted.iter().cloned().collect::<BTreeSet<_>>(),
        strays(&[&parquet, &partial]),
        "only what no event names, and only once it is old enough"
    );
    assert!(!sys.exists(&parquet).await && !sys.exists(&partial).await);
    assert!(sys.exists(&part).await);

    sys.clock.advance(6 * DAY);
    let sweep = sys.janitor.sweep().await.unwrap();
    assert_eq!(sweep.deleted, vec![part.clone()]);
    assert!(!sys.exists(&part).await);
    // Nothing a registered dataset holds went.
    assert!(sys.exists(&kept.parquet).await && sys.exists(&kept_blob).await);
    assert!(sys.janitor.sweep().await.unwrap().deleted.is_empty());

    // Each deletion an event by weir's own actor, naming why; the part's names the
    // upload it was meant for.
    let deleted = sys.all(EventKind::ObjectDeleted).await;
    assert_eq!(deleted.len(), 3);
    for e in &deleted {
        assert_eq!(e.actor, Owner::system());
        let Event::ObjectDeleted(d) = &e.event else {
            unreachable!()
        };
        assert!(d.reason.starts_with("no event names it"), "{}", d.reason);
        if d.key == part {
            assert_eq!(e.correlation_id, never_appended);
        }
    }
    sys.assert_rebuild_equals_live().await;
    sys.stop().await;
}

/// Issue 10.1 with 10.4: a version made of several files (`--one-version`) references
/// the blob of each; they are all kept while it lives and all deleted, as events, once
/// it is purged; the references rebuild from the log.
async fn a_version_of_several_files_holds_every_blob_until_it_is_purged(postgres: bool) {
    let sys = System::start(postgres, true).await;
    let (a, b) = (csv("north", 20), csv("south", 30));
    let paths: Vec<std::path::PathBuf> = [("north.csv", &a), ("south.csv", &b)]
        .iter()
        .map(|(name, bytes)| {
            let path = sys.dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        })
        .collect();
    let request = UploadRequest {
        owner: "acme".parse().unwrap(),
        filename: String::new(),
        label: None,
        table_name: None,
        format: None,
        content_type: None,
        // Several parts each: the staging objects are referenced too.
        part_size: 256,
        options: ReadOptions::default(),
        dataset: None,
        parent_version: None,
        branch: None,
    };
    let named = [
        (paths[0].as_path(), "north.csv"),
        (paths[1].as_path(), "south.csv"),
    ];
    let upload = producer::upload_files(&sys.journal, &sys.store, &named, &request, |_| {})
        .await
        .unwrap();
    let end = sys.end_of(upload).await;
    let Terminal::Registered(r) = end else {
        panic!("{end:?}")
    };
    assert_eq!(r.statistics.rows, 50);
    let blobs = [ObjectKey::blob(&sha(&a)), ObjectKey::blob(&sha(&b))];
    sys.projected().await;
    let holder = format!("dataset:{}", r.dataset);
    for key in blobs.iter().chain([&r.parquet]) {
        assert!(sys.exists(key).await, "{key}");
        let refs = retention::refs_of(&sys.db, key.as_str()).await.unwrap();
        assert!(
            refs.iter().any(|r| r.holder == holder && r.live),
            "{key}: {refs:?}"
        );
    }
    // A year on, nothing is deleted while the dataset lives.
    sys.clock.advance(365 * DAY);
    let s = sys.janitor.sweep().await.unwrap();
    assert!(s.deleted.is_empty(), "{s:?}");

    sys.on_dataset(
        r.dataset,
        Event::DatasetDeleted(DatasetDeleted { reason: None }),
    )
    .await;
    sys.clock.advance(30 * DAY + Duration::from_secs(600));
    let s = sys.janitor.sweep().await.unwrap();
    assert_eq!(s.purged, [r.dataset], "{s:?}");
    let deleted: BTreeSet<ObjectKey> = s.deleted.iter().cloned().collect();
    assert_eq!(
        deleted,
        BTreeSet::from([blobs[0].clone(), blobs[1].clone(), r.parquet.clone()])
    );
    for key in blobs.iter().chain([&r.parquet]) {
        assert!(!sys.exists(key).await, "{key}");
    }
    assert_eq!(sys.deleted_keys().await.len(), 3);
    sys.assert_rebuild_equals_live().await;
    sys.stop().await;
}
