//! Replays the recorded fixture logs in `tests/fixtures/` (written by
//! `scripts/record-fixture` from real runs, never by hand): each event's exact
//! postcard bytes must decode to the human-readable envelope beside them, the bytes are
//! published to a real nats-server, projected into SQLite and Postgres, and the rows
//! must equal the fixture's snapshot (`<name>.snapshot`; `UPDATE_SNAPSHOTS=1` rewrites
//! them). Every fixture is replayed twice to prove idempotence.
//!
//! `frozen-2026-11-22.jsonl` was recorded with the first event encoding and is frozen
//! forever: whatever the events crate becomes, those bytes must keep decoding and
//! projecting to the same rows.

use std::path::{Path, PathBuf};

use async_nats::HeaderMap;
use weir_events::{Envelope, KIND_HEADER, StreamSpec};
use weir_journal::Journal;
use weir_projections::{Db, Snapshot, Tables};
use weir_testkit::NatsServer;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");

struct Record {
    seq: u64,
    subject: String,
    bytes: Vec<u8>,
}

fn load(path: &Path) -> Vec<Record> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1));
            let bytes = hex::decode(v["postcard"].as_str().unwrap()).unwrap();
            let decoded = Envelope::decode(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{}:{}: the recorded bytes no longer decode: {e}",
                    path.display(),
                    i + 1
                )
            });
            let readable: Envelope = serde_json::from_value(v["envelope"].clone()).unwrap();
            assert_eq!(
                decoded,
                readable,
                "{}:{}: bytes and JSON disagree",
                path.display(),
                i + 1
            );
            assert_eq!(
                decoded.kind().as_str(),
                v["kind"],
                "{}:{}",
                path.display(),
                i + 1
            );
            Record {
                seq: v["seq"].as_u64().unwrap(),
                subject: v["subject"].as_str().unwrap().to_owned(),
                bytes,
            }
        })
        .collect()
}

/// Publishes the recorded bytes as they are (not re-encoded) on their subjects.
async fn publish(journal: &Journal, records: &[Record]) {
    for (i, r) in records.iter().enumerate() {
        assert_eq!(
            r.seq,
            i as u64 + 1,
            "fixtures are whole logs from sequence 1"
        );
        let env = Envelope::decode(&r.bytes).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(KIND_HEADER, env.kind().as_str());
        let ack = journal
            .jetstream()
            .publish_with_headers(r.subject.clone(), headers, r.bytes.clone().into())
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(ack.sequence, r.seq);
    }
}

/// The snapshot as text, with the times the server assigned on this run (`*_at`
/// columns and durations derived from them) masked: everything else must be equal
/// run after run.
fn render(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    for t in &snapshot.tables {
        out += &format!("== {} ({})\n", t.table, t.columns.join(", "));
        let masked: Vec<usize> = t
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.ends_with("_at") || c.ends_with("_ms"))
            .map(|(i, _)| i)
            .collect();
        let mut rows: Vec<String> = t
            .rows
            .iter()
            .map(|row| {
                let mut v: Vec<serde_json::Value> = serde_json::from_str(row).unwrap();
                for &i in &masked {
                    if !v[i].is_null() {
                        v[i] = "<time>".into();
                    }
                }
                serde_json::Value::Array(v).to_string()
            })
            .collect();
        rows.sort();
        for r in rows {
            out += &r;
            out.push('\n');
        }
    }
    out
}

async fn project(journal: &Journal, db: &Db) -> String {
    weir_projections::catch_up(journal, db).await.unwrap();
    render(&weir_projections::snapshot(db, Tables::Live).await.unwrap())
}

async fn postgres() -> (Db, String) {
    let base = std::env::var("WEIR_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let name = format!(
        "weir_fx_{}",
        weir_events::UploadId::new()
            .to_string()
            .trim_start_matches("upld_")
    );
    let admin = Db::open(&format!("{base}/postgres"))
        .await
        .unwrap_or_else(|e| {
            panic!("fixture tests need Postgres at {base} (set WEIR_TEST_POSTGRES): {e}")
        });
    sqlx_exec(&admin, &format!("CREATE DATABASE {name}")).await;
    admin.close().await;
    (Db::connect(&format!("{base}/{name}")).await.unwrap(), name)
}

async fn drop_postgres(base_db: Db, name: &str) {
    base_db.close().await;
    let base = std::env::var("WEIR_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let admin = Db::open(&format!("{base}/postgres")).await.unwrap();
    sqlx_exec(
        &admin,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
    .await;
    admin.close().await;
}

async fn sqlx_exec(db: &Db, sql: &str) {
    use sqlx::Executor;
    db.pool()
        .execute(sqlx::AssertSqlSafe(sql.to_owned()))
        .await
        .unwrap();
}

fn fixtures() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(FIXTURES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_logs_project_to_their_snapshots_twice_on_sqlite_and_postgres() {
    let files = fixtures();
    assert!(
        files.iter().any(|f| f.ends_with("frozen-2026-11-22.jsonl")),
        "the frozen fixture is missing"
    );
    for file in files {
        let records = load(&file);
        let nats = NatsServer::start();
        let journal = Journal::connect(&nats.url(), &StreamSpec::default())
            .await
            .unwrap();
        publish(&journal, &records).await;

        let dir = tempfile::tempdir().unwrap();
        let sqlite = Db::connect(&dir.path().join("weir.db").display().to_string())
            .await
            .unwrap();
        let on_sqlite = project(&journal, &sqlite).await;
        let (pg, pg_name) = postgres().await;
        let on_postgres = project(&journal, &pg).await;
        assert_eq!(
            on_sqlite,
            on_postgres,
            "{}: SQLite and Postgres disagree",
            file.display()
        );

        let snapshot_path = file.with_extension("snapshot");
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(&snapshot_path, &on_sqlite).unwrap();
        }
        let want = std::fs::read_to_string(&snapshot_path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; record it once with UPDATE_SNAPSHOTS=1",
                snapshot_path.display()
            )
        });
        assert_eq!(
            on_sqlite,
            want,
            "{}: rows differ from the snapshot",
            file.display()
        );

        // Replayed twice from sequence 1: the same rows each time.
        for round in 1..=2 {
            weir_projections::replay(&journal, &sqlite).await.unwrap();
            weir_projections::replay(&journal, &pg).await.unwrap();
            let s = render(
                &weir_projections::snapshot(&sqlite, Tables::Live)
                    .await
                    .unwrap(),
            );
            let p = render(&weir_projections::snapshot(&pg, Tables::Live).await.unwrap());
            assert_eq!(s, want, "{}: replay {round} on SQLite", file.display());
            assert_eq!(p, want, "{}: replay {round} on Postgres", file.display());
        }
        drop_postgres(pg, &pg_name).await;
    }
}
