//! The shared corpus through the whole pipeline: every Apache parquet-testing file ends
//! registered with its footer's schema and row count, or failed with a clear reason;
//! the country-codes data package registers with every row.

use std::path::{Path, PathBuf};
use std::time::Duration;

use weir_events::*;
use weir_journal::Journal;
use weir_services::producer::{self, Terminal, UploadRequest};
use weir_services::{Ctx, Store};
use weir_testkit::NatsServer;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/corpus");

async fn start() -> (
    NatsServer,
    Journal,
    Store,
    tempfile::TempDir,
    tokio::sync::watch::Sender<bool>,
) {
    let nats = NatsServer::start();
    let journal = Journal::connect(&nats.url(), &StreamSpec::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("objects")).unwrap();
    std::fs::create_dir_all(dir.path().join("work")).unwrap();
    let ctx = Ctx {
        journal: journal.clone(),
        store: store.clone(),
        work_dir: dir.path().join("work"),
        limits: Default::default(),
    };
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(weir_services::run_all(ctx, rx));
    (nats, journal, store, dir, stop)
}

async fn upload(journal: &Journal, store: &Store, path: &Path) -> Terminal {
    let request = UploadRequest {
        owner: "corpus".parse().unwrap(),
        filename: path.file_name().unwrap().to_string_lossy().into_owned(),
        label: None,
        table_name: None,
        format: None,
        content_type: None,
        part_size: 1 << 20,
        options: Default::default(),
        dataset: None,
        parent_version: None,
        branch: None,
    };
    let id = producer::upload_file(journal, store, path, &request, |_| {})
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), producer::wait(journal, id))
        .await
        .unwrap_or_else(|_| panic!("{}: no terminal event within 60 s", path.display()))
        .unwrap()
}

fn footer_rows(path: &Path) -> Option<i64> {
    let file = std::fs::File::open(path).ok()?;
    let reader = parquet::file::reader::SerializedFileReader::new(file).ok()?;
    use parquet::file::reader::FileReader;
    Some(reader.metadata().file_metadata().num_rows())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_parquet_testing_file_registers_or_fails_with_a_reason() {
    let (_nats, journal, store, _dir, _stop) = start().await;
    let mut files: Vec<PathBuf> = std::fs::read_dir(format!("{CORPUS}/parquet-testing"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    assert!(files.len() >= 60, "corpus has {} files", files.len());
    let mut registered = 0;
    let mut failed = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match upload(&journal, &store, path).await {
            Terminal::Registered(r) => {
                registered += 1;
                assert!(!r.schema.fields.is_empty(), "{name}: empty schema");
                if let Some(rows) = footer_rows(path) {
                    assert_eq!(r.statistics.rows as i64, rows, "{name}: row count");
                }
            }
            Terminal::Failed(f) => {
                assert_eq!(f.step, Step::Infer, "{name}: {f:?}");
                assert!(
                    f.reason.contains(&name),
                    "{name}: the reason names the file: {}",
                    f.reason
                );
                failed.push(format!("{name}: {}", f.reason));
            }
            Terminal::Aborted(a) => panic!("{name}: aborted: {a}"),
        }
    }
    println!(
        "registered {registered} of {} parquet-testing files; failed:",
        files.len()
    );
    for f in &failed {
        println!("  {f}");
    }
    // The files the parquet crate cannot read are listed above; anything more is a regression.
    assert!(
        failed.len() <= 3,
        "{} failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_country_codes_data_package_registers_every_row() {
    let (_nats, journal, store, _dir, _stop) = start().await;
    let path = Path::new(CORPUS).join("datapackages/country-codes/country-codes.csv");
    let Terminal::Registered(r) = upload(&journal, &store, &path).await else {
        panic!("country-codes did not register")
    };
    // Records, not lines: count with a CSV reader's logic (quoted newlines allowed).
    let text = std::fs::read_to_string(&path).unwrap();
    let mut records = 0u64;
    let mut in_quotes = false;
    for line in text.lines() {
        if !in_quotes {
            records += 1;
        }
        in_quotes ^= line.matches('"').count() % 2 == 1;
    }
    assert_eq!(
        r.statistics.rows,
        records - 1,
        "every data row, header excluded"
    );
    assert_eq!(r.table_name.as_str(), "country_codes");
    let by_name = |n: &str| {
        r.schema
            .fields
            .iter()
            .find(|f| f.original_name.as_deref() == Some(n) || f.name == n)
            .map(|f| f.data_type.clone())
    };
    // The file writes numeric codes without padding ("4" for Afghanistan), so they are
    // integers; weir-schemas' datapackage test compares every declared type.
    assert_eq!(by_name("ISO3166-1-numeric").as_deref(), Some("Int64"));
    assert_eq!(by_name("ISO3166-1-Alpha-2").as_deref(), Some("Utf8"));
}
