//! End to end on a real nats-server and a real local object store: files go in through
//! the producer, every service runs in-process, and each upload must end registered
//! with the right schema and rows (read back from the Parquet written) or failed with a
//! clear reason, with its compensation recorded.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use weir_events::*;
use weir_journal::{Expect, Journal};
use weir_services::producer::{self, Terminal, UploadRequest};
use weir_services::{Ctx, Store};
use weir_testkit::NatsServer;

struct System {
    _nats: NatsServer,
    journal: Journal,
    store: Store,
    dir: tempfile::TempDir,
    stop: tokio::sync::watch::Sender<bool>,
    services: Option<tokio::task::JoinHandle<Result<(), weir_services::StepError>>>,
}

impl System {
    /// Appends `event` to dataset `d`'s aggregate as its owner acme, after its last
    /// event, as the CLI does.
    async fn append_dataset(&self, d: DatasetId, event: Event) {
        let last = self.journal.last_on(&Aggregate::Dataset(d)).await.unwrap();
        let env = Envelope::new(
            Aggregate::Dataset(d),
            "acme".parse().unwrap(),
            UploadId::from_u128(d.as_u128()),
            Some(EventId::new()),
            event,
        );
        let expect = last.map_or(Expect::Empty, |r| Expect::LastSequence(r.seq));
        assert!(matches!(
            self.journal.append(&env, expect).await.unwrap(),
            weir_journal::AppendOutcome::Appended { .. }
        ));
    }

    async fn start() -> Self {
        Self::start_with(Default::default()).await
    }

    /// A system whose inferrer works under `limits`.
    async fn start_with(limits: weir_services::Limits) -> Self {
        let nats = NatsServer::start();
        let journal = Journal::connect(&nats.url(), &StreamSpec::default())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(&dir.path().join("objects")).unwrap();
        let work_dir = dir.path().join("work");
        std::fs::create_dir_all(&work_dir).unwrap();
        let ctx = Ctx {
            journal: journal.clone(),
            store: store.clone(),
            work_dir,
            limits,
        };
        let (stop, rx) = tokio::sync::watch::channel(false);
        let services = Some(tokio::spawn(weir_services::run_all(ctx, rx)));
        Self {
            _nats: nats,
            journal,
            store,
            dir,
            stop,
            services,
        }
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
        path
    }

    async fn upload(&self, path: &Path, table: Option<&str>) -> (UploadId, Terminal) {
        self.upload_with(path, table, 8 * 1024 * 1024).await
    }

    async fn upload_with(
        &self,
        path: &Path,
        table: Option<&str>,
        part_size: usize,
    ) -> (UploadId, Terminal) {
        self.upload_opts(path, table, part_size, Default::default())
            .await
    }

    async fn upload_opts(
        &self,
        path: &Path,
        table: Option<&str>,
        part_size: usize,
        options: weir_events::ReadOptions,
    ) -> (UploadId, Terminal) {
        let request = UploadRequest {
            owner: "acme".parse().unwrap(),
            filename: path.file_name().unwrap().to_string_lossy().into_owned(),
            label: None,
            table_name: table.map(str::to_owned),
            format: None,
            content_type: None,
            part_size,
            options,
            dataset: None,
            parent_version: None,
            branch: None,
        };
        self.upload_request(path, request).await
    }

    /// A new version of `dataset` (from `parent`, else the head), as `owner`.
    async fn upload_version(
        &self,
        path: &Path,
        dataset: DatasetId,
        parent: Option<u32>,
        owner: &str,
    ) -> (UploadId, Terminal) {
        self.upload_on(path, dataset, parent, owner, None).await
    }

    /// As `upload_version`, on `branch`.
    async fn upload_on(
        &self,
        path: &Path,
        dataset: DatasetId,
        parent: Option<u32>,
        owner: &str,
        branch: Option<&str>,
    ) -> (UploadId, Terminal) {
        let request = UploadRequest {
            owner: owner.parse().unwrap(),
            filename: path.file_name().unwrap().to_string_lossy().into_owned(),
            label: None,
            table_name: None,
            format: None,
            content_type: None,
            part_size: 8 << 20,
            options: Default::default(),
            dataset: Some(dataset),
            parent_version: parent,
            branch: branch.map(str::to_owned),
        };
        self.upload_request(path, request).await
    }

    async fn upload_request(&self, path: &Path, request: UploadRequest) -> (UploadId, Terminal) {
        let upload = producer::upload_file(&self.journal, &self.store, path, &request, |_| {})
            .await
            .unwrap();
        (upload, self.end_of(upload).await)
    }

    /// How `upload` ended (at most 60 s from now).
    async fn end_of(&self, upload: UploadId) -> Terminal {
        tokio::time::timeout(
            std::time::Duration::from_secs(60),
            producer::wait(&self.journal, upload),
        )
        .await
        .expect("upload reached no terminal event within 60 s")
        .unwrap()
    }

    async fn registered(&self, path: &Path) -> DatasetRegistered {
        match self.upload(path, None).await.1 {
            Terminal::Registered(r) => r,
            other => panic!("{}: {other:?}", path.display()),
        }
    }

    fn parquet(&self, key: &ObjectKey) -> Vec<RecordBatch> {
        let path = self.store.local_root().unwrap().join(key.as_str());
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .map(|b| b.unwrap())
            .collect()
    }

    async fn kinds(&self, upload: UploadId) -> Vec<EventKind> {
        self.journal
            .history(&Aggregate::Upload(upload))
            .await
            .unwrap()
            .iter()
            .map(|r| r.envelope.kind())
            .collect()
    }

    async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(s) = self.services.take() {
            s.await.unwrap().unwrap();
        }
    }
}

/// Appends the `UploadReceived` of a one-part upload whose part is already stored, as
/// a producer other than `weir upload` would (owner `acme`).
async fn append_one_part(
    journal: &Journal,
    upload: UploadId,
    filename: &str,
    size: u64,
    sha256: Sha256,
    options: ReadOptions,
) {
    let part = PartManifest {
        number: 1,
        size,
        sha256,
    };
    append_parts(
        journal,
        upload,
        filename,
        vec![part],
        options,
        SCHEMA_VERSION,
    )
    .await;
}

/// Appends `UploadReceived` for one file of these parts, in an envelope of
/// `schema_version`.
async fn append_parts(
    journal: &Journal,
    upload: UploadId,
    filename: &str,
    parts: Vec<PartManifest>,
    options: ReadOptions,
    schema_version: u16,
) {
    let owner: Owner = "acme".parse().unwrap();
    let env = Envelope::new(
        Aggregate::Upload(upload),
        owner.clone(),
        upload,
        None,
        Event::UploadReceived(UploadReceived {
            owner,
            filename: filename.to_owned(),
            content_type: None,
            format: None,
            label: None,
            table_name: None,
            size: parts.iter().map(|p| p.size).sum(),
            parts,
            dataset: None,
            parent_version: None,
            branch: None,
            options,
            more_files: Vec::new(),
        }),
    );
    let env = Envelope {
        schema_version,
        ..env
    };
    journal.append(&env, Expect::Empty).await.unwrap();
}

/// Every cell of the batches as text (null as ""), row by row.
fn cells(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let options = FormatOptions::default();
    let mut rows = Vec::new();
    for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .zip(batch.columns())
                    .map(|(f, c)| {
                        if c.is_null(row) {
                            String::new()
                        } else {
                            f.value(row).to_string()
                        }
                    })
                    .collect(),
            );
        }
    }
    rows
}

fn types(r: &DatasetRegistered) -> Vec<(String, String)> {
    r.schema
        .fields
        .iter()
        .map(|f| (f.name.clone(), f.data_type.clone()))
        .collect()
}

const CSV_ROWS: [[&str; 6]; 4] = [
    [
        "1",
        "00501",
        "true",
        "1.5",
        "2026-01-05",
        "2026-01-05T09:30:00",
    ],
    [
        "2",
        "02115",
        "false",
        "2.25",
        "2026-02-10",
        "2026-02-10T18:00:05",
    ],
    ["3", "", "true", "", "2026-03-15", ""],
    ["4", "90210", "", "-7", "", "2026-04-01T00:00:00"],
];

fn delimited(sep: &str) -> String {
    let mut s = ["id", "zip", "active", "score", "day", "seen"].join(sep) + "\n";
    for row in CSV_ROWS {
        s += &(row.join(sep) + "\n");
    }
    s
}

fn expected_csv_cells() -> Vec<Vec<String>> {
    CSV_ROWS
        .iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .map(|(i, v)| match (i, *v) {
                    (3, "-7") => "-7.0".to_string(),
                    (5, v) if !v.is_empty() => v.to_string(),
                    (_, v) => v.to_string(),
                })
                .collect()
        })
        .collect()
}

fn csv_schema() -> Vec<(String, String)> {
    let types: BTreeMap<&str, &str> = [
        ("id", "Int64"),
        ("zip", "Utf8"),
        ("active", "Boolean"),
        ("score", "Float64"),
        ("day", "Date32"),
    ]
    .into_iter()
    .collect();
    ["id", "zip", "active", "score", "day"]
        .iter()
        .map(|n| (n.to_string(), types[n].to_string()))
        .chain([("seen".to_string(), "Timestamp(µs)".to_string())])
        .collect()
}

async fn check_delimited(sys: &System, name: &str, sep: &str) {
    let path = sys.file(name, delimited(sep).as_bytes());
    let r = sys.registered(&path).await;
    assert_eq!(r.statistics.rows, 4, "{name}");
    let got = types(&r);
    let want = csv_schema();
    assert_eq!(got[..5], want[..5], "{name}");
    assert!(
        got[5].1.starts_with("Timestamp(") && got[5].1.contains("s"),
        "{name}: {got:?}"
    );
    let rows = cells(&sys.parquet(&r.parquet));
    let want = expected_csv_cells();
    for (row, w) in rows.iter().zip(want.iter()) {
        assert_eq!(row[..5], w[..5], "{name}");
        assert_eq!(row[5], w[5], "{name}");
    }
    assert_eq!(rows.len(), 4);
    assert!(
        !r.parquet.as_str().starts_with("blobs/"),
        "converted to its own Parquet"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_tsv_and_semicolon_csv_register_with_types_and_values() {
    let sys = System::start().await;
    check_delimited(&sys, "comma.csv", ",").await;
    check_delimited(&sys, "tabs.tsv", "\t").await;
    check_delimited(&sys, "semi.csv", ";").await;
    sys.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_csv_registers_like_the_plain_file() {
    let sys = System::start().await;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(delimited(",").as_bytes()).unwrap();
    let path = sys.file("orders.csv.gz", &gz.finish().unwrap());
    let (upload, end) = sys.upload(&path, Some("orders_gz")).await;
    let Terminal::Registered(r) = end else {
        panic!("{end:?}")
    };
    assert_eq!(r.table_name.as_str(), "orders_gz");
    assert_eq!(r.statistics.rows, 4);
    assert_eq!(types(&r)[..5], csv_schema()[..5]);
    let history = sys
        .journal
        .history(&Aggregate::Upload(upload))
        .await
        .unwrap();
    let inferred = history.iter().find_map(|h| match &h.envelope.event {
        Event::SchemaInferred(s) => Some(s.clone()),
        _ => None,
    });
    assert_eq!(
        inferred.map(|s| (s.format, s.compression)),
        Some((Format::Csv, Compression::Gzip))
    );
    sys.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_and_nested_json_register_and_read_back_equal() {
    let sys = System::start().await;
    let lines = [
        r#"{"zeta": 1, "name": "a", "tags": ["x", "y"], "addr": {"city": "Boston", "zip": "02115"}}"#,
        r#"{"zeta": 2, "name": "b", "tags": [], "addr": {"city": "Austin", "zip": "78701"}}"#,
        r#"{"zeta": 3, "name": null, "tags": ["z"], "addr": null}"#,
    ];
    let path = sys.file("events.ndjson", (lines.join("\n") + "\n").as_bytes());
    let r = sys.registered(&path).await;
    assert_eq!(r.statistics.rows, 3);
    let names: Vec<_> = r.schema.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["zeta", "name", "tags", "addr"],
        "first-appearance order"
    );
    let t = types(&r);
    assert_eq!(t[0].1, "Int64");
    assert_eq!(t[1].1, "Utf8");
    assert!(t[2].1.starts_with("List("), "{t:?}");
    assert!(t[3].1.starts_with("Struct("), "{t:?}");
    let back = json_rows(&sys.parquet(&r.parquet));
    let want: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(back, strip_nulls(want));

    // The same records as one top-level JSON array.
    let array = format!("[{}]", lines.join(",\n"));
    let path = sys.file("events_array.json", array.as_bytes());
    let r = sys.registered(&path).await;
    assert_eq!(r.statistics.rows, 3);
    assert_eq!(types(&r), t);
    sys.stop().await;
}

/// Parquet rows as JSON objects (arrow's JSON writer drops null fields).
fn json_rows(batches: &[RecordBatch]) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    {
        let mut writer = arrow::json::LineDelimitedWriter::new(&mut out);
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        writer.write_batches(&refs).unwrap();
        writer.finish().unwrap();
    }
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn strip_nulls(values: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    fn strip(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => serde_json::Value::Object(
                m.into_iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k, strip(v)))
                    .collect(),
            ),
            serde_json::Value::Array(a) => {
                serde_json::Value::Array(a.into_iter().map(strip).collect())
            }
            other => other,
        }
    }
    values.into_iter().map(strip).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_is_registered_from_its_footer_and_multipart_parts_are_combined() {
    let sys = System::start().await;
    let source = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/corpus/parquet-testing/alltypes_plain.parquet"
    ));
    let bytes = std::fs::read(source).unwrap();
    let path = sys.file("alltypes_plain.parquet", &bytes);
    // Small parts: exercises combining several parts with their hashes.
    let (upload, end) = sys.upload_with(&path, None, 256).await;
    let Terminal::Registered(r) = end else {
        panic!("{end:?}")
    };
    assert_eq!(r.statistics.rows, 8);
    assert_eq!(r.schema.fields.len(), 11);
    let received = sys
        .journal
        .history(&Aggregate::Upload(upload))
        .await
        .unwrap();
    let Event::UploadReceived(u) = &received[0].envelope.event else {
        panic!()
    };
    assert!(u.parts.len() > 3, "{} parts", u.parts.len());
    // Parts are gone once combined; the blob holds the whole file.
    for p in &u.parts {
        assert_eq!(
            sys.store
                .exists(&ObjectKey::part(upload, p.number))
                .await
                .unwrap(),
            None
        );
    }
    let read_back = sys.parquet(&r.parquet);
    assert_eq!(read_back.iter().map(|b| b.num_rows()).sum::<usize>(), 8);
    let original: Vec<RecordBatch> =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(source).unwrap())
            .unwrap()
            .build()
            .unwrap()
            .map(|b| b.unwrap())
            .collect();
    assert_eq!(cells(&read_back), cells(&original));
    sys.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_content_is_stored_once() {
    let sys = System::start().await;
    let a = sys.file("a.csv", delimited(",").as_bytes());
    let b = sys.file("b.csv", delimited(",").as_bytes());
    let (ua, ea) = sys.upload(&a, None).await;
    let (ub, eb) = sys.upload(&b, None).await;
    assert!(matches!(ea, Terminal::Registered(_)) && matches!(eb, Terminal::Registered(_)));
    let combined = |u| {
        let j = sys.journal.clone();
        async move {
            j.history(&Aggregate::Upload(u))
                .await
                .unwrap()
                .into_iter()
                .find_map(|h| match h.envelope.event {
                    Event::PartsCombined(p) => Some(p),
                    _ => None,
                })
        }
    };
    let (pa, pb) = (combined(ua).await.unwrap(), combined(ub).await.unwrap());
    assert_eq!(pa.blob, pb.blob);
    assert!(!pa.deduplicated && pb.deduplicated);
    assert_eq!(sys.store.list("blobs/").await.unwrap().len(), 1);
    sys.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_part_upload_becomes_its_blob_without_a_copy() {
    use std::os::unix::fs::MetadataExt;
    let sys = System::start().await;
    let body = delimited(",");
    let upload = UploadId::new();
    let part = ObjectKey::part(upload, 1);
    let got = sys
        .store
        .put_file(
            &sys.file("one.csv", body.as_bytes()),
            0..body.len() as u64,
            &part,
        )
        .await
        .unwrap();
    let root = sys.store.local_root().unwrap();
    let inode = std::fs::metadata(root.join(part.as_str())).unwrap().ino();
    append_one_part(
        &sys.journal,
        upload,
        "one.csv",
        got.size,
        got.sha256,
        Default::default(),
    )
    .await;
    let end = producer::wait(&sys.journal, upload).await.unwrap();
    assert!(matches!(end, Terminal::Registered(_)), "{end:?}");
    let blob = ObjectKey::blob(&got.sha256);
    // The same file under its content address (a link), and the part's name is gone.
    assert_eq!(
        std::fs::metadata(root.join(blob.as_str())).unwrap().ino(),
        inode
    );
    assert_eq!(sys.store.exists(&part).await.unwrap(), None);
    assert_eq!(
        sys.store.list("uploads/").await.unwrap(),
        Vec::<String>::new()
    );
    sys.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_written_in_the_old_folder_layout_are_still_combined() {
    let sys = System::start().await;
    let put = |key: ObjectKey, text: &'static str| {
        let store = sys.store.clone();
        async move {
            let body = bytes::Bytes::from_static(text.as_bytes());
            let sha256 = Sha256(<sha2::Sha256 as sha2::Digest>::digest(&body).into());
            let size = body.len() as u64;
            store.put_bytes(&key, body).await.unwrap();
            (size, sha256)
        }
    };
    // One part in the upload's folder, named by an event of schema version 1 (before
    // parts were flat).
    let one = UploadId::new();
    let (size, sha256) = put(PartLayout::Folder.part(one, 1), "a,b\n1,2\n3,4\n").await;
    let part = PartManifest {
        number: 1,
        size,
        sha256,
    };
    append_parts(
        &sys.journal,
        one,
        "one.csv",
        vec![part],
        Default::default(),
        1,
    )
    .await;
    // Two parts: the first written before the change, the second after.
    let two = UploadId::new();
    let (s1, h1) = put(PartLayout::Folder.part(two, 1), "a,b\n5,6\n").await;
    let (s2, h2) = put(ObjectKey::part(two, 2), "7,8\n").await;
    let parts = vec![
        PartManifest {
            number: 1,
            size: s1,
            sha256: h1,
        },
        PartManifest {
            number: 2,
            size: s2,
            sha256: h2,
        },
    ];
    // Named by an event of this version: the first part is found in its folder.
    let v = SCHEMA_VERSION;
    append_parts(&sys.journal, two, "two.csv", parts, Default::default(), v).await;
    for (upload, rows) in [(one, 2), (two, 2)] {
        let end = producer::wait(&sys.journal, upload).await.unwrap();
        let Terminal::Registered(r) = end else {
            panic!("{upload}: {end:?}")
        };
        assert_eq!(r.statistics.rows, rows, "{upload}");
    }
    // The flat part is removed after the combine; the old-layout ones are the
    // janitor's (no event names them under that key).
    assert_eq!(
        sys.store.exists(&ObjectKey::part(two, 2)).await.unwrap(),
        None
    );
    sys.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_file_fails_with_a_reason_and_its_blob_is_left_to_the_janitor() {
    let sys = System::start().await;
    let path = sys.file("broken.ndjson", b"{\"a\": 1}\n{\"a\": 2}\n{\"a\": 3,,}\n");
    // `fail`: the bad record fails the upload (`reject` would register the other two).
    let options = ReadOptions {
        bad_rows: Some(BadRows::Fail),
        ..Default::default()
    };
    let (upload, end) = sys.upload_opts(&path, None, 8 << 20, options).await;
    let Terminal::Failed(f) = end else {
        panic!("{end:?}")
    };
    assert_eq!(f.step, Step::Infer);
    assert!(!f.retryable);
    assert!(
        f.reason.contains("broken.ndjson") && f.reason.contains('3'),
        "reason names file and line: {}",
        f.reason
    );
    // No compensation removes the blob: other uploads may share it, and which do is
    // the object references projection's to say; the janitor deletes it once nothing
    // live references it and the failed upload's retention is over.
    let history = sys
        .journal
        .history(&Aggregate::Upload(upload))
        .await
        .unwrap();
    let blob = history
        .iter()
        .find_map(|r| match &r.envelope.event {
            Event::PartsCombined(p) => Some(p.blob.clone()),
            _ => None,
        })
        .expect("combined before inference failed");
    assert!(sys.store.exists(&blob).await.unwrap().is_some());
    assert_eq!(sys.kinds(upload).await.last(), Some(&EventKind::Failed));
    sys.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_that_does_not_match_its_manifest_fails_the_combine_step() {
    let sys = System::start().await;
    let upload = UploadId::new();
    sys.store
        .put_bytes(
            &ObjectKey::part(upload, 1),
            bytes::Bytes::from_static(b"a,b\n1,2\n"),
        )
        .await
        .unwrap();
    // The manifest's digest is not the part's.
    append_one_part(
        &sys.journal,
        upload,
        "tampered.csv",
        8,
        Sha256([7; 32]),
        Default::default(),
    )
    .await;
    let end = producer::wait(&sys.journal, upload).await.unwrap();
    let Terminal::Failed(f) = end else {
        panic!("{end:?}")
    };
    assert_eq!(f.step, Step::Combine);
    assert!(
        f.reason.contains("part 1") && f.reason.contains("sha256"),
        "{}",
        f.reason
    );
    sys.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_uploads_asking_for_one_table_name_one_gets_it_the_other_fails() {
    let sys = System::start().await;
    let a = sys.file("one.csv", delimited(",").as_bytes());
    let b = sys.file("two.csv", b"x\n1\n");
    let (ra, rb) = tokio::join!(
        sys.upload(&a, Some("orders")),
        sys.upload(&b, Some("orders"))
    );
    let ends = [ra.1, rb.1];
    let won = ends
        .iter()
        .filter(|e| matches!(e, Terminal::Registered(r) if r.table_name.as_str() == "orders"))
        .count();
    let lost: Vec<_> = ends
        .iter()
        .filter_map(|e| match e {
            Terminal::Failed(f) => Some(f.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(won, 1, "{ends:?}");
    assert_eq!(lost.len(), 1, "{ends:?}");
    assert_eq!(lost[0].step, Step::Register);
    assert!(
        lost[0].reason.contains("\"orders\" is already taken"),
        "{}",
        lost[0].reason
    );

    // Generated names never fail: they get a suffix.
    let c = sys.file("orders.csv", b"x\n1\n");
    let d = sys.file("orders.tsv", b"x\n2\n");
    let Terminal::Registered(rc) = sys.upload(&c, None).await.1 else {
        panic!()
    };
    let Terminal::Registered(rd) = sys.upload(&d, None).await.1 else {
        panic!()
    };
    assert_eq!(rc.table_name.as_str(), "orders_2");
    assert_eq!(rd.table_name.as_str(), "orders_3");
    // An invalid requested name is a clear failure.
    let e = sys.file("bad.csv", b"x\n1\n");
    let Terminal::Failed(f) = sys.upload(&e, Some("select")).await.1 else {
        panic!()
    };
    assert!(f.reason.contains("reserved"), "{}", f.reason);
    sys.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_and_duplicated_events_have_no_duplicate_effect() {
    let sys = System::start().await;
    let path = sys.file("dup.csv", delimited(",").as_bytes());
    let (upload, end) = sys.upload(&path, None).await;
    assert!(matches!(end, Terminal::Registered(_)));
    let before = sys.kinds(upload).await;
    assert_eq!(
        before,
        [
            EventKind::UploadReceived,
            EventKind::PartsCombined,
            EventKind::SchemaInferred,
            EventKind::DatasetRegistered
        ]
    );
    // Replay every consumer from the start: each service sees its events again.
    for name in ["combiner", "inferrer", "registrar"] {
        let stream = sys.journal.jetstream().get_stream("WEIR").await.unwrap();
        stream
            .delete_consumer(&format!("weir-{name}"))
            .await
            .unwrap();
    }
    // Restart the services: fresh consumers deliver every event once more.
    let mut sys = sys;
    let _ = sys.stop.send(true);
    if let Some(s) = sys.services.take() {
        s.await.unwrap().unwrap();
    }
    let ctx = Ctx {
        journal: sys.journal.clone(),
        store: sys.store.clone(),
        work_dir: sys.dir.path().join("work"),
        limits: Default::default(),
    };
    let (stop, rx) = tokio::sync::watch::channel(false);
    sys.stop = stop;
    sys.services = Some(tokio::spawn(weir_services::run_all(ctx, rx)));
    // A sentinel upload goes through after the replayed ones (one consumer per kind,
    // in order), so once it is registered the old events have been seen again.
    let sentinel = sys.file("sentinel.csv", b"x\n1\n");
    assert!(matches!(
        sys.upload(&sentinel, None).await.1,
        Terminal::Registered(_)
    ));
    // And every consumer has finished with every event it was given.
    let stream = sys.journal.jetstream().get_stream("WEIR").await.unwrap();
    for name in ["combiner", "inferrer", "registrar"] {
        let mut consumer: async_nats::jetstream::consumer::PullConsumer =
            stream.get_consumer(&format!("weir-{name}")).await.unwrap();
        loop {
            let info = consumer.info().await.unwrap();
            if info.num_pending == 0 && info.num_ack_pending == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(sys.kinds(upload).await, before, "no duplicate effect");
    sys.stop().await;
}

/// The issue's ragged CSV (`id,v` / `1,2` / `3` / `4,5,6`): without a table name the
/// default policy rejects both bad rows into a rejects file beside the dataset, the
/// event says so, and nothing is lost; with `--table` the default is `fail`, naming the
/// line; `pad` keeps the extra value in the rejects file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ragged_rows_follow_the_policy_and_land_in_a_rejects_file() {
    let sys = System::start().await;
    let ragged = sys.file("ragged.csv", b"id,v\n1,2\n3\n4,5,6\n");

    let (upload, end) = sys.upload(&ragged, None).await;
    let Terminal::Registered(r) = end else {
        panic!("{end:?}")
    };
    assert_eq!(r.statistics.rows, 1);
    let inferred = sys
        .journal
        .history(&Aggregate::Upload(upload))
        .await
        .unwrap()
        .into_iter()
        .find_map(|rec| match rec.envelope.event {
            Event::SchemaInferred(s) => Some(s),
            _ => None,
        })
        .expect("SchemaInferred");
    let q = &inferred.quality;
    assert_eq!(q.bad_rows, Some(weir_events::BadRows::Reject));
    assert_eq!((q.rows_read, q.rejected, q.rejects_entries), (3, 2, 2));
    assert_eq!(q.encoding, "UTF-8");
    assert_eq!(inferred.problem_count, 2);
    let key = q.rejects.clone().expect("a rejects file");
    assert_eq!(key, ObjectKey::rejects(r.dataset, r.version));
    let text = std::fs::read_to_string(sys.store.local_root().unwrap().join(key.as_str())).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        (lines[0]["line"].as_u64(), lines[0]["raw"].as_str()),
        (Some(3), Some("3"))
    );
    assert_eq!(
        (lines[1]["line"].as_u64(), lines[1]["raw"].as_str()),
        (Some(4), Some("4,5,6"))
    );
    assert_eq!(
        cells(&sys.parquet(&r.parquet)),
        vec![vec!["1".to_owned(), "2".to_owned()]]
    );

    // A named table is a contract: the first bad row fails the upload, naming it.
    let named = sys.file("named.csv", b"id,v\n1,2\n3\n4,5,6\n");
    let (_, end) = sys.upload(&named, Some("named")).await;
    let Terminal::Failed(f) = end else {
        panic!("{end:?}")
    };
    assert_eq!(f.step, weir_events::Step::Infer);
    assert!(
        f.reason
            .starts_with("named.csv: line 3: expected 2 fields, found 1"),
        "{}",
        f.reason
    );

    // pad: every row registered, the extra field kept aside, not dropped.
    let padded = sys.file("padded.csv", b"id,v\n1,2\n3\n4,5,6\n");
    let options = weir_events::ReadOptions {
        bad_rows: Some(weir_events::BadRows::Pad),
        ..Default::default()
    };
    let (upload, end) = sys.upload_opts(&padded, None, 8 << 20, options).await;
    let Terminal::Registered(r) = end else {
        panic!("{end:?}")
    };
    assert_eq!(r.statistics.rows, 3);
    let key = ObjectKey::rejects(r.dataset, r.version);
    let text = std::fs::read_to_string(sys.store.local_root().unwrap().join(key.as_str())).unwrap();
    let kept: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(kept["action"], "extra_fields_kept");
    assert_eq!(kept["extra"], serde_json::json!(["6"]));
    assert!(
        sys.kinds(upload)
            .await
            .contains(&EventKind::DatasetRegistered)
    );

    // Too many bad rows: Failed with the count and the limit, nothing registered.
    let limited = sys.file("limited.csv", b"id,v\n1,2\n3\n4,5,6\n");
    let options = weir_events::ReadOptions {
        max_bad_rows: Some(weir_events::MaxBadRows::Rows(1)),
        ..Default::default()
    };
    let (_, end) = sys.upload_opts(&limited, None, 8 << 20, options).await;
    let Terminal::Failed(f) = end else {
        panic!("{end:?}")
    };
    assert!(
        f.reason.contains("2 bad rows, over the limit of 1 rows"),
        "{}",
        f.reason
    );
    sys.stop().await;
}

/// New versions of a dataset: the next number, the head as parent unless one is named,
/// the dataset's table name kept, the dataset's default bad-row policy applied, two
/// uploads at once never sharing a number, and clear failures for a dataset that does
/// not exist, a parent that was never registered and another owner's dataset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_versions_take_the_next_number_and_derive_from_the_head() {
    let sys = System::start().await;
    let first = sys.file("orders.csv", b"id,v\n1,2\n");
    let Terminal::Registered(r1) = sys.upload(&first, Some("orders")).await.1 else {
        panic!("v1 did not register")
    };
    let d = r1.dataset;

    let second = sys.file("orders-2.csv", b"id,v\n1,2\n3,4\n");
    let (_, end) = sys.upload_version(&second, d, None, "acme").await;
    let Terminal::Registered(r2) = end else {
        panic!("{end:?}")
    };
    assert_eq!((r2.dataset, r2.version, r2.parent_version), (d, 2, Some(1)));
    assert_eq!(r2.table_name.as_str(), "orders");
    // Content-addressed: the key is the sha256 of the Parquet bytes stored there.
    let stored = std::fs::read(sys.store.local_root().unwrap().join(r2.parquet.as_str())).unwrap();
    let digest: [u8; 32] = sha2::Digest::finalize(sha2::Digest::chain_update(
        <sha2::Sha256 as sha2::Digest>::new(),
        &stored,
    ))
    .into();
    assert_eq!(r2.parquet, ObjectKey::converted(&Sha256(digest)));
    assert_eq!(r2.statistics.rows, 2);
    assert_eq!(cells(&sys.parquet(&r2.parquet)).len(), 2);
    // v1's Parquet is still there, readable.
    assert_eq!(cells(&sys.parquet(&r1.parquet)).len(), 1);

    // The dataset's default policy (an event), then a ragged version from v1.
    sys.append_dataset(
        d,
        Event::DatasetBadRowsChanged(DatasetBadRowsChanged {
            bad_rows: Some(BadRows::Pad),
        }),
    )
    .await;
    let ragged = sys.file("orders-3.csv", b"id,v\n1,2\n3\n4,5,6\n");
    let (u3, end) = sys.upload_version(&ragged, d, Some(1), "acme").await;
    let Terminal::Registered(r3) = end else {
        panic!("{end:?}")
    };
    assert_eq!((r3.version, r3.parent_version), (3, Some(1)));
    assert_eq!(
        r3.statistics.rows, 3,
        "pad, the dataset's default, kept every row"
    );
    let inferred = sys
        .journal
        .history(&Aggregate::Upload(u3))
        .await
        .unwrap()
        .into_iter()
        .find_map(|r| match r.envelope.event {
            Event::SchemaInferred(s) => Some(s),
            _ => None,
        })
        .unwrap();
    assert_eq!(inferred.quality.bad_rows, Some(BadRows::Pad));

    // Two at once: two numbers.
    let a = sys.file("orders-a.csv", b"id,v\n7,8\n");
    let b = sys.file("orders-b.csv", b"id,v\n9,10\n");
    let (ea, eb) = tokio::join!(
        sys.upload_version(&a, d, None, "acme"),
        sys.upload_version(&b, d, None, "acme")
    );
    let (Terminal::Registered(ra), Terminal::Registered(rb)) = (ea.1, eb.1) else {
        panic!("concurrent versions did not both register")
    };
    let mut got = [ra.version, rb.version];
    got.sort();
    assert_eq!(got, [4, 5]);

    // Failures name the problem; nothing is registered.
    let other = sys.file("other.csv", b"id,v\n1,2\n");
    let missing = DatasetId::for_upload(UploadId::new());
    for (dataset, parent, owner, want) in [
        (missing, None, "acme", "does not exist"),
        (d, Some(9), "acme", "has no registered version 9"),
        (d, None, "globex", "owner globex has no access to dataset"),
    ] {
        let (_, end) = sys.upload_version(&other, dataset, parent, owner).await;
        let Terminal::Failed(f) = end else {
            panic!("{want}: {end:?}")
        };
        assert_eq!(f.step, Step::Infer);
        assert!(f.reason.contains(want), "{want}: {}", f.reason);
    }

    // Grants, as the inferrer reads them from the dataset's events: read is not
    // enough to add a version, write is; after a revoke it is refused again.
    let globex: Owner = "globex".parse().unwrap();
    for (level, registers) in [(AccessLevel::Read, false), (AccessLevel::Write, true)] {
        sys.append_dataset(
            d,
            Event::DatasetAccessGranted(DatasetAccessGranted {
                grantee: globex.clone(),
                level,
            }),
        )
        .await;
        let (_, end) = sys.upload_version(&other, d, None, "globex").await;
        match end {
            Terminal::Registered(r) if registers => {
                assert_eq!((r.dataset, r.owner.as_str()), (d, "acme"));
            }
            Terminal::Failed(f) if !registers => {
                assert!(f.reason.contains("globex has read access"), "{}", f.reason);
            }
            other => panic!("{level}: {other:?}"),
        }
    }
    sys.append_dataset(
        d,
        Event::DatasetAccessRevoked(DatasetAccessRevoked {
            grantee: globex.clone(),
        }),
    )
    .await;
    let (_, end) = sys.upload_version(&other, d, None, "globex").await;
    let Terminal::Failed(f) = end else {
        panic!("a revoked grantee added a version: {end:?}")
    };
    assert!(f.reason.contains("globex has no access"), "{}", f.reason);
    sys.stop().await;
}

/// Schema evolution: each new version's schema against its parent's, in the event;
/// under `additive` a removed column fails the upload at register with the diff and
/// no version; under `freeze` only the same schema passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_changes_follow_the_dataset_policy() {
    let sys = System::start().await;
    let set_policy = |d: DatasetId, policy: SchemaPolicy| {
        sys.append_dataset(
            d,
            Event::DatasetSchemaPolicyChanged(DatasetSchemaPolicyChanged { policy }),
        )
    };
    let v1 = sys.file("people.csv", b"id,name,qty\n1,a,2\n");
    let Terminal::Registered(r1) = sys.upload(&v1, Some("people")).await.1 else {
        panic!("v1 did not register")
    };
    let d = r1.dataset;
    assert_eq!(r1.schema_diff, None);
    set_policy(d, SchemaPolicy::Additive).await;

    // Added column and Int64 -> Float64: additive, accepted, the diff in the event.
    let v2 = sys.file("people-2.csv", b"id,name,qty,email\n1,a,2.5,x@y\n");
    let (_, end) = sys.upload_version(&v2, d, None, "acme").await;
    let Terminal::Registered(r2) = end else {
        panic!("{end:?}")
    };
    let diff = r2.schema_diff.clone().expect("a diff against v1");
    assert_eq!(diff.added.len(), 1);
    assert_eq!(diff.added[0].name, "email");
    assert_eq!(diff.type_changes.len(), 1);
    assert_eq!(diff.type_changes[0].change, TypeChangeKind::Widened);
    assert_eq!(
        diff.describe(),
        "added email (Utf8); widened qty Int64 → Float64"
    );

    // A removed column: refused, the diff in the reason, no version 3 registered.
    let v3 = sys.file("people-3.csv", b"id,qty,email\n1,2.5,x@y\n");
    let (_, end) = sys.upload_version(&v3, d, None, "acme").await;
    let Terminal::Failed(f) = end else {
        panic!("{end:?}")
    };
    assert_eq!(f.step, Step::Register);
    assert!(f.reason.contains("removed name (Utf8)"), "{}", f.reason);
    assert!(f.reason.contains("additive"), "{}", f.reason);

    // Freeze: the same schema passes (its parent is v2, the head), any change fails.
    set_policy(d, SchemaPolicy::Freeze).await;
    let same = sys.file("people-4.csv", b"id,name,qty,email\n2,b,1.5,z@y\n");
    let (_, end) = sys.upload_version(&same, d, None, "acme").await;
    let Terminal::Registered(r4) = end else {
        panic!("{end:?}")
    };
    assert_eq!((r4.version, r4.parent_version), (4, Some(2)));
    assert!(r4.schema_diff.is_some_and(|d| d.is_empty()));
    let wider = sys.file("people-5.csv", b"id,name,qty,email,age\n2,b,1.5,z@y,3\n");
    let (_, end) = sys.upload_version(&wider, d, None, "acme").await;
    assert!(
        matches!(end, Terminal::Failed(ref f) if f.reason.contains("accepts no schema changes")),
        "{end:?}"
    );
    sys.stop().await;
}

/// Branches and rollback as the inferrer and registrar see them: a version on a branch
/// derives from the branch's head and leaves main's alone; after a rollback of main,
/// the next version derives from where main was moved; an unknown branch fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branches_and_rollback_decide_the_parent() {
    let sys = System::start().await;
    let append = |d: DatasetId, event: Event| sys.append_dataset(d, event);
    let file = sys.file("t.csv", b"id\n1\n");
    let Terminal::Registered(r1) = sys.upload(&file, Some("t")).await.1 else {
        panic!("v1")
    };
    let d = r1.dataset;
    append(
        d,
        Event::DatasetBranched(DatasetBranched {
            branch: "dev".into(),
            from_version: 1,
        }),
    )
    .await;
    let registered = |end: Terminal| match end {
        Terminal::Registered(r) => r,
        other => panic!("{other:?}"),
    };
    let r2 = registered(sys.upload_on(&file, d, None, "acme", Some("dev")).await.1);
    assert_eq!(
        (r2.version, r2.parent_version, r2.branch.as_deref()),
        (2, Some(1), Some("dev"))
    );
    let r3 = registered(sys.upload_on(&file, d, None, "acme", None).await.1);
    assert_eq!(
        (r3.version, r3.parent_version, r3.branch),
        (3, Some(1), None),
        "main's head is still v1"
    );
    let r4 = registered(sys.upload_on(&file, d, None, "acme", Some("dev")).await.1);
    assert_eq!(
        (r4.version, r4.parent_version),
        (4, Some(2)),
        "dev's head is v2"
    );
    append(
        d,
        Event::DatasetHeadMoved(DatasetHeadMoved {
            branch: None,
            to_version: 1,
        }),
    )
    .await;
    let r5 = registered(sys.upload_on(&file, d, None, "acme", None).await.1);
    assert_eq!(
        (r5.version, r5.parent_version),
        (5, Some(1)),
        "after the rollback, from v1"
    );
    let (_, end) = sys.upload_on(&file, d, None, "acme", Some("nope")).await;
    let Terminal::Failed(f) = end else {
        panic!("{end:?}")
    };
    assert!(
        f.reason
            .contains("has no branch \"nope\" (branches: main, dev)"),
        "{}",
        f.reason
    );
    sys.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compression_bomb_fails_the_infer_step_naming_the_limit_it_passed() {
    // The limit comes from the system's configuration (`WEIR_MAX_INFLATION` for
    // `weir up`); 50x here, so a 40 MB gzip of zeros (~40 KB) stops at the 16 MiB floor.
    let sys = System::start_with(weir_services::Limits {
        max_inflation: 50,
        ..Default::default()
    })
    .await;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(b"n\n").unwrap();
    for _ in 0..20 {
        gz.write_all(&b"0\n".repeat(1 << 20)).unwrap();
    }
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 100 << 10, "{} bytes", bomb.len());
    let path = sys.file("bomb.csv.gz", &bomb);
    let (upload, end) = sys.upload(&path, None).await;
    let Terminal::Failed(f) = end else {
        panic!("{end:?}")
    };
    assert_eq!(f.step, Step::Infer);
    assert!(!f.retryable);
    assert!(
        f.reason.starts_with("bomb.csv.gz: ")
            && f.reason
                .contains("limit: the file decompresses to more than 16777216 bytes, 50x")
            && f.reason
                .contains("(max_inflation, raise it with WEIR_MAX_INFLATION)"),
        "{}",
        f.reason
    );
    // Failed, and no Parquet was kept; the blob is the janitor's (see janitor.rs).
    assert_eq!(sys.kinds(upload).await.last(), Some(&EventKind::Failed));
    assert!(sys.store.list("datasets/").await.unwrap().is_empty());
    sys.stop().await;
}

/// Log lines written by the services while a test runs, captured in memory.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_file_names_never_reach_an_object_key_or_a_raw_log_line() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    // Global: the services log from the runtime's worker threads. Only this test sets it.
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let sys = System::start().await;
    let csv = b"a,b\n1,2\n";
    let path = sys.file("plain.csv", csv);
    let request = |filename: String| UploadRequest {
        owner: "acme".parse().unwrap(),
        filename,
        label: None,
        table_name: None,
        format: None,
        content_type: None,
        part_size: 8 << 20,
        options: Default::default(),
        dataset: None,
        parent_version: None,
        branch: None,
    };
    // A name with NUL or a newline, or 1 KB long, is refused before a byte is stored
    // (the gateway answers 400 for the same names).
    for name in [
        "nul\0.csv".to_owned(),
        "two\nlines.csv".to_owned(),
        "n".repeat(1024),
    ] {
        let e = producer::upload_file(
            &sys.journal,
            &sys.store,
            &path,
            &request(name.clone()),
            |_| {},
        )
        .await
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("filename "), "{msg}");
        assert!(!msg.chars().any(char::is_control), "{msg:?}");
    }
    assert!(
        sys.store.list("uploads/").await.unwrap().is_empty(),
        "nothing stored"
    );
    // A path is reduced to its last component; keys come from ids and hashes only.
    let (upload, end) = sys
        .upload_request(&path, request("../../x.csv".into()))
        .await;
    let Terminal::Registered(r) = end else {
        panic!("{end:?}")
    };
    let received = sys
        .journal
        .history(&Aggregate::Upload(upload))
        .await
        .unwrap();
    let Event::UploadReceived(u) = &received[0].envelope.event else {
        panic!("{:?}", received[0].envelope.kind())
    };
    assert_eq!(u.filename, "x.csv");
    assert_eq!(r.schema.fields.len(), 2);
    // A name that got into the log anyway (an older or foreign producer) with a
    // newline, a NUL and an ESC, on a file that fails: its reason is logged escaped.
    let hostile = "evil\n2026-01-01T00:00:00Z  INFO forged line\0\u{1b}[2J.csv";
    let bad = bytes::Bytes::from_static(b"{\"a\": 1}\n{\"a\": \n");
    let foreign = UploadId::new();
    let part = ObjectKey::part(foreign, 1);
    sys.store.put_bytes(&part, bad.clone()).await.unwrap();
    let sha = sys.store.digest(&part).await.unwrap().sha256;
    let options = ReadOptions {
        bad_rows: Some(BadRows::Fail),
        ..Default::default()
    };
    append_one_part(
        &sys.journal,
        foreign,
        hostile,
        bad.len() as u64,
        sha,
        options,
    )
    .await;
    let end = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        producer::wait(&sys.journal, foreign),
    )
    .await
    .unwrap()
    .unwrap();
    let Terminal::Failed(f) = end else {
        panic!("{end:?}")
    };
    assert!(f.reason.contains("evil"), "{}", f.reason);
    let keys = sys.store.list("").await.unwrap();
    sys.stop().await;
    assert!(!keys.is_empty());
    for key in &keys {
        assert!(
            !key.contains("x.csv")
                && !key.contains("..")
                && !key.contains("evil")
                && !key.contains("plain"),
            "a key from a name: {key}"
        );
    }
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("step failed") && text.contains("evil\\n"),
        "the failure is logged, escaped:\n{text}"
    );
    assert!(
        !text.contains('\0') && !text.contains('\u{1b}'),
        "raw NUL/ESC in the log:\n{text}"
    );
    for line in text.lines() {
        assert!(
            !line.starts_with("2026-01-01T00:00:00Z"),
            "a forged log line: {line}"
        );
    }
}

impl System {
    /// One upload of several files (`--one-version`), each `part_size` bytes a part.
    async fn upload_files(
        &self,
        files: &[(&str, &[u8])],
        dataset: Option<DatasetId>,
        table: Option<&str>,
        options: ReadOptions,
        part_size: usize,
    ) -> (UploadId, Terminal) {
        let paths: Vec<PathBuf> = files.iter().map(|(n, b)| self.file(n, b)).collect();
        let named: Vec<(&Path, &str)> = paths
            .iter()
            .zip(files)
            .map(|(p, (n, _))| (p.as_path(), *n))
            .collect();
        let request = UploadRequest {
            owner: "acme".parse().unwrap(),
            filename: String::new(),
            label: None,
            table_name: table.map(str::to_owned),
            format: None,
            content_type: None,
            part_size,
            options,
            dataset,
            parent_version: None,
            branch: None,
        };
        let upload = producer::upload_files(&self.journal, &self.store, &named, &request, |_| {})
            .await
            .unwrap();
        (upload, self.end_of(upload).await)
    }

    async fn history(&self, upload: UploadId) -> Vec<Event> {
        self.journal
            .history(&Aggregate::Upload(upload))
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.envelope.event)
            .collect()
    }
}

/// Issue 10.1: `weir upload a.csv b.csv --one-version`. The files register together as
/// one version (one Parquet with every row, in file order), or, when one of them does
/// not fit, the upload fails as a whole naming that file, and no version is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_files_make_one_version_or_none() {
    let sys = System::start().await;
    // A new dataset from two files; parts of 5 bytes, so each file is several parts
    // and the part numbers run on across files.
    let (u1, end) = sys
        .upload_files(
            &[
                ("jan.csv", b"id,v\n1,2\n3,4\n"),
                ("feb.csv", b"id,v\n5,6\n"),
            ],
            None,
            Some("sales"),
            ReadOptions::default(),
            5,
        )
        .await;
    let Terminal::Registered(r1) = end else {
        panic!("{end:?}")
    };
    assert_eq!((r1.version, r1.statistics.rows), (1, 3));
    // The conversion was staged beside the converted Parquet: nothing was made under
    // datasets/ for a version without rejects.
    assert!(!sys.store.local_root().unwrap().join("datasets").exists());
    assert_eq!(
        cells(&sys.parquet(&r1.parquet)),
        [["1", "2"], ["3", "4"], ["5", "6"]]
    );
    let history = sys.history(u1).await;
    let Some(Event::UploadReceived(received)) = history.first() else {
        panic!("{history:?}")
    };
    assert_eq!(received.filename, "jan.csv");
    assert_eq!(received.more_files.len(), 1);
    assert_eq!(received.more_files[0].filename, "feb.csv");
    let numbers: Vec<u32> = received.all_parts().map(|p| p.number).collect();
    assert_eq!(numbers, (1..=numbers.len() as u32).collect::<Vec<_>>());
    assert!(received.more_files[0].parts.len() > 1);
    let combined = history
        .iter()
        .find_map(|e| match e {
            Event::PartsCombined(p) => Some(p.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(combined.more_blobs.len(), 1);
    for blob in combined.blobs() {
        assert!(sys.store.exists(blob).await.unwrap().is_some(), "{blob}");
    }
    // Every part and staging object of both files is gone once combined.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left: Vec<String> = sys
            .store
            .list("uploads/")
            .await
            .unwrap()
            .into_iter()
            .filter(|k| ObjectKey::from_stored(k.clone()).staged_for() == Some(u1))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "left: {left:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // A second version of that dataset from two more files.
    let d = r1.dataset;
    let (_, end) = sys
        .upload_files(
            &[
                ("mar.csv", b"id,v\n7,8\n"),
                ("apr.csv", b"id,v\n9,10\n11,12\n"),
            ],
            Some(d),
            None,
            ReadOptions::default(),
            8 << 20,
        )
        .await;
    let Terminal::Registered(r2) = end else {
        panic!("{end:?}")
    };
    assert_eq!((r2.dataset, r2.version, r2.parent_version), (d, 2, Some(1)));
    assert_eq!(r2.statistics.rows, 3);
    assert_eq!(
        cells(&sys.parquet(&r2.parquet)),
        [["7", "8"], ["9", "10"], ["11", "12"]]
    );

    // The second file's schema differs: the upload fails at infer naming it and the
    // difference; nothing registers.
    let (u3, end) = sys
        .upload_files(
            &[("may.csv", b"id,v\n1,2\n"), ("jun.csv", b"id,w\n1,x\n")],
            Some(d),
            None,
            ReadOptions::default(),
            8 << 20,
        )
        .await;
    let Terminal::Failed(f) = end else {
        panic!("{end:?}")
    };
    assert_eq!(f.step, Step::Infer);
    assert!(
        f.reason
            .starts_with("jun.csv: its schema differs from that of may.csv")
            && f.reason.contains("added w (Utf8)")
            && f.reason.contains("removed v (Int64)"),
        "{}",
        f.reason
    );
    assert!(
        !sys.history(u3)
            .await
            .iter()
            .any(|e| matches!(e, Event::DatasetRegistered(_))),
    );

    // A bad row in the second file under `fail`: the error names that file and line.
    let (_, end) = sys
        .upload_files(
            &[("jul.csv", b"id,v\n1,2\n"), ("aug.csv", b"id,v\n1,2\n3\n")],
            None,
            Some("strict"),
            ReadOptions::default(),
            8 << 20,
        )
        .await;
    let Terminal::Failed(f) = end else {
        panic!("{end:?}")
    };
    assert!(f.reason.starts_with("aug.csv: line 3"), "{}", f.reason);

    // Under `reject`, the bad rows of both files go to one rejects file, each entry
    // naming its file and line; every row is accounted for.
    let (u5, end) = sys
        .upload_files(
            &[
                ("sep.csv", b"id,v\n1,2\n3\n"),
                ("oct.csv", b"id,v\n4\n5,6\n"),
            ],
            None,
            None,
            ReadOptions {
                bad_rows: Some(BadRows::Reject),
                ..Default::default()
            },
            8 << 20,
        )
        .await;
    let Terminal::Registered(r5) = end else {
        panic!("{end:?}")
    };
    assert_eq!(r5.statistics.rows, 2);
    let inferred = sys
        .history(u5)
        .await
        .into_iter()
        .find_map(|e| match e {
            Event::SchemaInferred(s) => Some(s),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        (
            inferred.quality.rows_read,
            inferred.quality.rejected,
            inferred.problem_count
        ),
        (4, 2, 2)
    );
    let messages: Vec<(u64, &str)> = inferred
        .problems
        .iter()
        .map(|p| (p.line, p.message.split(':').next().unwrap()))
        .collect();
    assert_eq!(messages, [(3, "sep.csv"), (2, "oct.csv")]);
    let rejects = std::fs::read_to_string(
        sys.store
            .local_root()
            .unwrap()
            .join(inferred.quality.rejects.unwrap().as_str()),
    )
    .unwrap();
    let entries: Vec<(String, u64)> = rejects
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["file"].as_str().unwrap().to_owned(),
                v["line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [("sep.csv".to_owned(), 3), ("oct.csv".to_owned(), 2)]
    );

    // Files of two formats are refused as one version.
    let (_, end) = sys
        .upload_files(
            &[
                ("nov.csv", b"id,v\n1,2\n"),
                ("dec.ndjson", b"{\"id\":1,\"v\":2}\n"),
            ],
            None,
            None,
            ReadOptions::default(),
            8 << 20,
        )
        .await;
    let Terminal::Failed(f) = end else {
        panic!("{end:?}")
    };
    assert!(
        f.reason.contains("dec.ndjson") && f.reason.contains("share one format"),
        "{}",
        f.reason
    );
    sys.stop().await;
}
