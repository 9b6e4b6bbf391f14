//! The pipeline on a real S3-protocol server (moto, started per test on loopback by the
//! testkit): upload in parts, combine, convert, register, read the Parquet back from the
//! bucket; a failed upload's compensation removes its objects from the bucket; a refused
//! credential and a missing bucket give errors naming the store and the cause.
//! Built only with `--features s3` (scripts/test runs it).

use std::path::Path;
use std::time::Duration;

use parquet::file::reader::{FileReader, SerializedFileReader};
use weir_events::*;
use weir_journal::Journal;
use weir_services::producer::{self, ProduceError, Terminal, UploadRequest};
use weir_services::{Ctx, Store};
use weir_testkit::{NatsServer, S3Server};

fn request(name: &str, part_size: usize, options: ReadOptions) -> UploadRequest {
    UploadRequest {
        owner: "acme".parse().unwrap(),
        filename: name.into(),
        label: None,
        table_name: None,
        format: None,
        content_type: None,
        part_size,
        options,
        dataset: None,
        parent_version: None,
        branch: None,
    }
}

/// nats-server, the journal and every service, on `store`.
struct Pipeline {
    journal: Journal,
    dir: tempfile::TempDir,
    _stop: tokio::sync::watch::Sender<bool>,
    _nats: NatsServer,
}

impl Pipeline {
    async fn start(store: &Store) -> Self {
        let nats = NatsServer::start();
        let journal = Journal::connect(&nats.url(), &StreamSpec::default())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ctx = Ctx {
            journal: journal.clone(),
            store: store.clone(),
            work_dir: dir.path().to_path_buf(),
            limits: Default::default(),
        };
        let (stop, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(weir_services::run_all(ctx, rx));
        Self {
            journal,
            dir,
            _stop: stop,
            _nats: nats,
        }
    }

    async fn upload(
        &self,
        store: &Store,
        name: &str,
        body: &[u8],
        req: UploadRequest,
    ) -> (UploadId, Terminal) {
        let path = self.dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        let id = producer::upload_file(&self.journal, store, &path, &req, |_| {})
            .await
            .unwrap();
        let end = tokio::time::timeout(Duration::from_secs(60), producer::wait(&self.journal, id))
            .await
            .expect("terminal event within 60 s")
            .unwrap();
        (id, end)
    }
}

/// Keys in the whole bucket (through a store opened at its root).
async fn bucket_keys(s3: &S3Server, bucket: &str) -> Vec<String> {
    let root = Store::open_with(&format!("s3://{bucket}"), s3.options()).unwrap();
    root.list("").await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_in_parts_on_s3_is_combined_converted_registered_and_reads_back() {
    let Some(s3) = S3Server::start() else { return };
    s3.create_bucket("weir");
    let store = Store::open_with("s3://weir/lake/prod", s3.options()).unwrap();
    assert_eq!(store.url(), "s3://weir/lake/prod");
    let p = Pipeline::start(&store).await;

    let mut csv = String::from("id,name,score\n");
    for i in 0..500 {
        csv.push_str(&format!("{i},name {i},{}.5\n", i % 7));
    }
    // 1 KiB parts: several parts, which the combiner concatenates in S3.
    let (upload, end) = p
        .upload(
            &store,
            "scores.csv",
            csv.as_bytes(),
            request("scores.csv", 1024, Default::default()),
        )
        .await;
    let Terminal::Registered(r) = end else {
        panic!("{end:?}")
    };
    assert_eq!(r.statistics.rows, 500);

    // The objects are in the bucket, under the prefix.
    let keys = bucket_keys(&s3, "weir").await;
    let parquet = format!("lake/prod/{}", r.parquet);
    assert!(keys.contains(&parquet), "{parquet} not in {keys:?}");
    assert!(
        keys.iter().all(|k| k.starts_with("lake/prod/")),
        "everything under the prefix: {keys:?}"
    );
    // The combiner removes the parts after it appended `PartsCombined`: the upload can
    // register before the last removal is done.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let keys = bucket_keys(&s3, "weir").await;
        if !keys.iter().any(|k| k.contains(&upload.to_string())) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the parts are gone once combined: {keys:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        keys.iter()
            .any(|k| k.starts_with("lake/prod/blobs/sha256/")),
        "the combined blob is kept: {keys:?}"
    );
    assert_eq!(
        store.location(r.parquet.as_str()),
        format!("s3://weir/lake/prod/{}", r.parquet)
    );

    // The Parquet reads back from the bucket with every row.
    let local = p.dir.path().join("back.parquet");
    store.download(&r.parquet, &local).await.unwrap();
    let reader = SerializedFileReader::new(std::fs::File::open(&local).unwrap()).unwrap();
    let meta = reader.metadata().file_metadata();
    assert_eq!(meta.num_rows(), 500);
    let names: Vec<_> = meta
        .schema_descr()
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    assert_eq!(names, ["id", "name", "score"]);

    // One part: the combiner makes it the blob by a server-side copy (S3 has no
    // copy-if-absent without extra settings; the fallback checks, then copies).
    let (_, end) = p
        .upload(
            &store,
            "one.csv",
            b"k,v\n1,a\n2,b\n",
            request("one.csv", producer::DEFAULT_PART_SIZE, Default::default()),
        )
        .await;
    let Terminal::Registered(one) = end else {
        panic!("{end:?}")
    };
    assert_eq!(one.statistics.rows, 2);
    let keys = bucket_keys(&s3, "weir").await;
    assert!(
        keys.contains(&format!("lake/prod/{}", one.parquet)),
        "{keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_csv_on_s3_fails_and_the_janitor_empties_the_bucket_after_its_period() {
    let Some(s3) = S3Server::start() else { return };
    s3.create_bucket("weir");
    let store = Store::open_with("s3://weir/p", s3.options()).unwrap();
    let p = Pipeline::start(&store).await;

    let options = ReadOptions {
        bad_rows: Some(BadRows::Fail),
        ..Default::default()
    };
    let body = b"a,b\n1,2\n3,4\n5,6,7\n8,9\n";
    let (upload, end) = p
        .upload(
            &store,
            "broken.csv",
            body,
            request("broken.csv", 8, options),
        )
        .await;
    let Terminal::Failed(f) = end else {
        panic!("{end:?}")
    };
    assert_eq!(f.step, Step::Infer);
    assert!(f.reason.contains("broken.csv"), "{}", f.reason);

    // The combine step's compensation removed the part; the blob, which another upload
    // may share, is the janitor's: kept through the `failed` period, then deleted.
    let blob = ObjectKey::blob(&Sha256(<sha2::Sha256 as sha2::Digest>::digest(body).into()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let keys = bucket_keys(&s3, "weir").await;
        if keys == [format!("p/{blob}")] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the compensation left {keys:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        store.exists(&ObjectKey::part(upload, 1)).await.unwrap(),
        None
    );

    let db = weir_projections::Db::connect(&p.dir.path().join("w.db").display().to_string())
        .await
        .unwrap();
    weir_projections::catch_up(&p.journal, &db).await.unwrap();
    let clock = weir_services::janitor::Clock::manual(Timestamp::now());
    let janitor = weir_services::janitor::Janitor {
        ctx: Ctx {
            journal: p.journal.clone(),
            store: store.clone(),
            work_dir: p.dir.path().to_path_buf(),
            limits: Default::default(),
        },
        db: db.clone(),
        config: weir_services::janitor::JanitorConfig {
            retention: Default::default(),
            interval: Duration::from_secs(3600),
            catch_up: Duration::from_secs(30),
        },
        clock: clock.clone(),
    };
    assert!(janitor.sweep().await.unwrap().deleted.is_empty());
    assert!(store.exists(&blob).await.unwrap().is_some());
    clock.advance(Duration::from_secs(91 * 86_400));
    assert_eq!(janitor.sweep().await.unwrap().deleted, vec![blob.clone()]);
    assert!(bucket_keys(&s3, "weir").await.is_empty());
    let deleted = p
        .journal
        .read_all(Subject::kind_filter(EventKind::ObjectDeleted))
        .await
        .unwrap();
    assert_eq!(deleted.len(), 1);
}

/// The error an upload of a small file to `store` ends with.
async fn upload_error(store: &Store, dir: &Path) -> String {
    let nats = NatsServer::start();
    let journal = Journal::connect(&nats.url(), &StreamSpec::default())
        .await
        .unwrap();
    let path = dir.join("t.csv");
    std::fs::write(&path, "t\n1\n").unwrap();
    let err = producer::upload_file(
        &journal,
        store,
        &path,
        &request("t.csv", 1 << 20, Default::default()),
        |_| {},
    )
    .await
    .expect_err("the store refuses the upload");
    assert!(matches!(err, ProduceError::Store(_)), "{err:?}");
    eprintln!("upload to {}: {err}", store.url());
    err.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_credential_and_a_missing_bucket_name_the_store_and_the_cause() {
    // moto checks signatures after its first action (the bucket's creation): an access
    // key it never issued is refused, as S3 refuses an unknown or revoked key.
    let Some(s3) = S3Server::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "1")]) else {
        return;
    };
    s3.create_bucket("weir");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with("s3://weir/p", s3.options()).unwrap();
    let err = upload_error(&store, dir.path()).await;
    assert!(
        err.contains("object store s3://weir/p") && err.contains("InvalidAccessKeyId"),
        "names the store and the cause: {err}"
    );
    // Probing the store (as `weir doctor` does) fails the same way.
    let probe = store.probe().await.unwrap_err().to_string();
    assert!(
        probe.contains("s3://weir/p") && probe.contains("InvalidAccessKeyId"),
        "{probe}"
    );

    let Some(open) = S3Server::start() else {
        return;
    };
    let store = Store::open_with("s3://nosuchbucket/p", open.options()).unwrap();
    let err = upload_error(&store, dir.path()).await;
    assert!(
        err.contains("object store s3://nosuchbucket/p") && err.contains("NoSuchBucket"),
        "names the store and the cause: {err}"
    );

    // Without AWS settings an s3:// URL still opens (credentials are looked up when
    // used); a malformed one is refused at once, naming it.
    let bad = Store::open_with("s3://", Vec::<(String, String)>::new()).unwrap_err();
    assert!(bad.to_string().contains("s3://"), "{bad}");
}
