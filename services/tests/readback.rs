//! What weir writes reads back with the same types in DuckDB and pyarrow (the readers
//! users reach for), via scripts/readback.py in the venv that scripts/setup makes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use weir_events::*;
use weir_journal::Journal;
use weir_services::producer::{self, Terminal, UploadRequest};
use weir_services::{Ctx, Store};
use weir_testkit::NatsServer;

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("WEIR_PYTHON") {
        return p.into();
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup (it installs pyarrow and duckdb)",
        p.display()
    );
    p
}

async fn register(
    journal: &Journal,
    store: &Store,
    dir: &Path,
    name: &str,
    body: &str,
) -> DatasetRegistered {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    let request = UploadRequest {
        owner: "acme".parse().unwrap(),
        filename: name.into(),
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
    let id = producer::upload_file(journal, store, &path, &request, |_| {})
        .await
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(60), producer::wait(journal, id))
        .await
        .unwrap()
        .unwrap()
    {
        Terminal::Registered(r) => r,
        other => panic!("{name}: {other:?}"),
    }
}

fn read_back(store: &Store, key: &ObjectKey) -> serde_json::Value {
    let path = store.local_root().unwrap().join(key.as_str());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/readback.py");
    let out = std::process::Command::new(python())
        .arg(script)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_and_pyarrow_read_the_inferred_types() {
    let nats = NatsServer::start();
    let journal = Journal::connect(&nats.url(), &StreamSpec::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("objects")).unwrap();
    let ctx = Ctx {
        journal: journal.clone(),
        store: store.clone(),
        work_dir: dir.path().to_path_buf(),
        limits: Default::default(),
    };
    let (_stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(weir_services::run_all(ctx, rx));

    let csv = "id,zip,ok,score,day,seen,at\n\
               1,00501,true,1.5,2026-01-05,2026-01-05 09:30:00,2026-01-05T09:30:00Z\n\
               2,02115,false,,2026-02-10,2026-02-10 18:00:05,2026-02-10T18:00:05+02:00\n\
               3,,,-7,,,\n";
    let r = register(&journal, &store, dir.path(), "types.csv", csv).await;
    let got = read_back(&store, &r.parquet);
    assert_eq!(got["rows"], 3);
    let want_pyarrow = [
        ("id", "int64"),
        ("zip", "string"),
        ("ok", "bool"),
        ("score", "double"),
        ("day", "date32[day]"),
        ("seen", "timestamp[us]"),
        ("at", "timestamp[us, tz=UTC]"),
    ];
    let want_duckdb = [
        ("id", "BIGINT"),
        ("zip", "VARCHAR"),
        ("ok", "BOOLEAN"),
        ("score", "DOUBLE"),
        ("day", "DATE"),
        ("seen", "TIMESTAMP"),
        ("at", "TIMESTAMP WITH TIME ZONE"),
    ];
    for (name, t) in want_pyarrow {
        assert_eq!(got["pyarrow"][name], t, "pyarrow {name}: {got}");
    }
    for (name, t) in want_duckdb {
        assert_eq!(got["duckdb"][name], t, "duckdb {name}: {got}");
    }
    let rows = got["duckdb_rows"].as_array().unwrap();
    assert_eq!(rows[0][1], "00501", "leading zeros survive");
    assert_eq!(
        rows[1][6]
            .as_str()
            .map(|s| s.starts_with("2026-02-10 16:00:05")),
        Some(true),
        "offset normalised to UTC: {}",
        rows[1][6]
    );
    assert!(
        rows[2][2].is_null() && rows[1][3].is_null(),
        "empty values are nulls"
    );

    let ndjson = "{\"b\": 1, \"a\": {\"x\": 1.5, \"y\": [1, 2]}, \"t\": \"2026-01-05T09:30:00Z\"}\n\
                  {\"b\": 2, \"a\": null, \"t\": null}\n";
    let r = register(&journal, &store, dir.path(), "nested.ndjson", ndjson).await;
    let got = read_back(&store, &r.parquet);
    let cols: Vec<_> = got["duckdb"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(got["rows"], 2);
    assert_eq!(got["duckdb"]["b"], "BIGINT");
    assert_eq!(
        got["duckdb"]["a"], "STRUCT(x DOUBLE, y BIGINT[])",
        "{cols:?}"
    );
    assert_eq!(
        got["pyarrow"]["a"],
        "struct<x: double, y: list<item: int64>>"
    );
}
