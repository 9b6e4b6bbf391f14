//! docker-compose.yml's shape on loopback, with no Docker: a 3-node JetStream cluster
//! with nats.conf's users, `weir init` as `admin` (the `setup` container), then every
//! part as its own `weir serve` process (combiner, inferrer, registrar, projector,
//! gateway) holding only its own role's password, and Postgres for the projections.
//! An upload goes through, the projector process writes what the gateway process
//! serves, and each process's ready file (the containers' health checks) comes and
//! goes with it. `scripts/check-compose` checks that the compose file says the same.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use weir_journal::Role;
use weir_journal::auth::Passwords;
use weir_projections::Db;
use weir_testkit::NatsCluster;

/// `weir` with no NATS password in its environment but `role`'s.
fn weir(passwords: &Passwords, role: Option<Role>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weir"));
    c.env_remove("NATS_URL")
        .env_remove("WEIR_DATA_DIR")
        .env_remove("DATABASE_URL")
        .kill_on_drop(true);
    for (var, password) in passwords.env() {
        c.env_remove(var);
        if role.is_some_and(|r| r.password_var() == var) {
            c.env(var, password);
        }
    }
    c
}

async fn output(command: &mut Command) -> (i32, String, String) {
    let out = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("command took over 120 s")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts a long-running command and waits for its `ready` line.
async fn start_ready(command: &mut Command) -> (Child, String) {
    let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("no ready line within 60 s")
        .unwrap()
        .expect("exited before ready");
    assert!(line.starts_with("ready"), "{line}");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, line)
}

/// A fresh Postgres database for this test: (server URL, database name).
async fn postgres() -> (String, String) {
    use sqlx::Executor;
    let base = std::env::var("WEIR_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let name = format!(
        "weir_compose_{}",
        weir_events::UploadId::new()
            .to_string()
            .trim_start_matches("upld_")
    );
    let admin = Db::open(&format!("{base}/postgres"))
        .await
        .unwrap_or_else(|e| panic!("this test needs Postgres at {base} (WEIR_TEST_POSTGRES): {e}"));
    admin
        .pool()
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .unwrap();
    admin.close().await;
    (base, name)
}

async fn drop_postgres(base: &str, name: &str) {
    use sqlx::Executor;
    let admin = Db::open(&format!("{base}/postgres")).await.unwrap();
    admin
        .pool()
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .await
        .unwrap();
    admin.close().await;
}

fn sample() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../samples/orders.csv").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_shape_runs_each_part_as_its_own_user_and_process() {
    let nats = NatsCluster::start_with_users(3);
    let passwords = nats.passwords().unwrap();
    let url = nats.url();
    let (pg, db_name) = postgres().await;
    let db_url = format!("{pg}/{db_name}");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("objects");
    let store = store.to_str().unwrap();

    // Only `admin` may create the stream: without its password `weir init` is refused
    // and says which variable to set.
    let (code, _, err) = output(weir(passwords, Some(Role::Gateway)).args([
        "init",
        "--nats-url",
        &url,
        "--replicas",
        "3",
        "--wait",
        "5",
    ]))
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("WEIR_NATS_ADMIN_PASSWORD"), "{err}");

    // The `setup` container: stream R3, projections migrated.
    let (code, out, err) = output(weir(passwords, Some(Role::Admin)).args([
        "init",
        "--nats-url",
        &url,
        "--database-url",
        &db_url,
        "--replicas",
        "3",
        "--json",
    ]))
    .await;
    assert_eq!(code, 0, "{err}");
    let init: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(init["replicas"], 3, "{init}");
    assert_eq!(init["database_migrated"], true, "{init}");
    assert!(
        !out.contains(&db_url),
        "the database URL was printed: {out}"
    );

    // One process per container of docker-compose.yml, each with its role's password
    // only and a ready file for its health check.
    let mut parts = Vec::new();
    let mut http = String::new();
    for (service, role) in [
        ("combiner", Role::Combiner),
        ("inferrer", Role::Inferrer),
        ("registrar", Role::Registrar),
        ("projector", Role::Projector),
        ("gateway", Role::Gateway),
    ] {
        let ready = dir.path().join(format!("{service}.ready"));
        let data = dir.path().join(format!("data-{service}"));
        let (child, line) = start_ready(weir(passwords, Some(role)).args([
            "serve",
            service,
            "--nats-url",
            &url,
            "--data-dir",
            data.to_str().unwrap(),
            "--database-url",
            &db_url,
            "--store",
            store,
            "--http",
            "127.0.0.1:0",
            "--ready-file",
            ready.to_str().unwrap(),
        ]))
        .await;
        assert!(ready.is_file(), "{service}: no ready file after {line:?}");
        assert!(
            !line.contains(&db_url),
            "the database URL was printed: {line}"
        );
        if service == "gateway" {
            http = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("http="))
                .unwrap()
                .to_owned();
        }
        parts.push((service, child, ready));
    }

    // A name `weir serve` does not run is a usage error that lists the ones it does.
    let (code, _, err) = output(weir(passwords, None).args(["serve", "janitor-x"])).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("projector") && err.contains("gateway"),
        "{err}"
    );

    let (code, out, err) = output(weir(passwords, Some(Role::Gateway)).args([
        "upload",
        "--nats-url",
        &url,
        "--store",
        store,
        &sample(),
        "--table",
        "orders",
        "--wait",
        "--json",
    ]))
    .await;
    assert_eq!(code, 0, "{err}");
    let upload: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(upload["status"], "registered", "{upload}");
    let dataset = upload["dataset_id"].as_str().unwrap().to_owned();

    // The gateway answers from what the projector process wrote into Postgres.
    let health = reqwest::get(format!("{http}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let (code, out, err) = output(weir(passwords, Some(Role::Gateway)).args([
        "tokens",
        "--nats-url",
        &url,
        "create",
        "local",
        "--json",
    ]))
    .await;
    assert_eq!(code, 0, "{err}");
    let token: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let shown = loop {
        let r = client
            .get(format!("{http}/v1/datasets/{dataset}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        if status == 200 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway did not show {dataset} within 30 s: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(shown.to_string().contains("orders"), "{shown}");

    for (_, child, _) in &parts {
        let pid = child.id().unwrap().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
    }
    for (service, mut child, ready) in parts {
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .unwrap_or_else(|_| panic!("{service} did not stop within 30 s"))
            .unwrap();
        assert_eq!(status.code(), Some(0), "{service}");
        assert!(!ready.exists(), "{service} left its ready file");
    }
    drop_postgres(&pg, &db_name).await;
}
