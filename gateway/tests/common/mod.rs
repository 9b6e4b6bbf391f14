//! A whole weir in-process for gateway tests: a real nats-server (testkit), the real
//! services, a projector on SQLite, and the gateway on a free port.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;
use weir_events::{Owner, StreamSpec, UploadId};
use weir_gateway::{AppState, Config};
use weir_journal::Journal;
use weir_projections::Db;
use weir_services::{Ctx, Store};
use weir_testkit::NatsServer;

pub const KEY: &[u8] = b"test signing key";

pub struct Stack {
    pub base: String,
    pub journal: Journal,
    pub store: Store,
    pub db: Db,
    pub alice: String,
    pub bob: String,
    pub http: reqwest::Client,
    stop: watch::Sender<bool>,
    gateway: tokio::task::JoinHandle<std::io::Result<()>>,
    pub dir: tempfile::TempDir,
    // Last: the server outlives everything that talks to it.
    pub nats: NatsServer,
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> Self {
        Self::start_on(None, tune).await
    }

    /// On `store` (default: a local one in the test's directory).
    pub async fn start_on(store: Option<Store>, tune: impl FnOnce(&mut Config)) -> Self {
        let nats = NatsServer::start();
        let dir = tempfile::tempdir().expect("temp dir");
        let journal = Journal::connect(&nats.url(), &StreamSpec::default())
            .await
            .expect("connect to nats");
        let store = match store {
            Some(store) => store,
            None => Store::local(&dir.path().join("objects")).expect("store"),
        };
        let db = Db::connect(&dir.path().join("weir.db").display().to_string())
            .await
            .expect("projections db");
        let work: PathBuf = dir.path().join("work");
        std::fs::create_dir_all(&work).expect("work dir");
        let (stop, stop_rx) = watch::channel(false);
        let ctx = Ctx {
            journal: journal.clone(),
            store: store.clone(),
            work_dir: work.clone(),
            limits: Default::default(),
        };
        tokio::spawn(weir_services::run_all(ctx, stop_rx.clone()));
        {
            let (journal, db, mut rx) = (journal.clone(), db.clone(), stop_rx.clone());
            tokio::spawn(async move {
                let _ = weir_projections::run(&journal, &db, async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await;
            });
        }
        let mut config = Config::new(KEY.to_vec(), work);
        tune(&mut config);
        let state = AppState::new(journal.clone(), store.clone(), db.clone(), config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let mut rx = stop_rx;
        let gateway = tokio::spawn(weir_gateway::serve(listener, state, async move {
            let _ = rx.wait_for(|s| *s).await;
        }));
        let alice = weir_gateway::create_token(&journal, &owner("alice"))
            .await
            .expect("token")
            .token;
        let bob = weir_gateway::create_token(&journal, &owner("bob"))
            .await
            .expect("token")
            .token;
        Self {
            base,
            journal,
            store,
            db,
            alice,
            bob,
            http: reqwest::Client::new(),
            stop,
            gateway,
            dir,
            nats,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_json(
        &self,
        token: &str,
        path: &str,
        body: serde_json::Value,
    ) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    /// Waits for the upload's terminal event in the log, then for the projections to
    /// include it.
    pub async fn settle(&self, upload: UploadId) -> weir_services::producer::Terminal {
        let terminal = tokio::time::timeout(
            Duration::from_secs(60),
            weir_services::producer::wait(&self.journal, upload),
        )
        .await
        .expect("upload finished within 60 s")
        .expect("follow the upload");
        self.catch_up().await;
        terminal
    }

    pub async fn catch_up(&self) {
        weir_projections::catch_up(&self.journal, &self.db)
            .await
            .expect("projections catch up");
    }

    /// The multipart flow as a client does it: init, PUT every part, complete.
    pub async fn upload_multipart(
        &self,
        token: &str,
        filename: &str,
        bytes: &[u8],
        part_size: u64,
        table: Option<&str>,
    ) -> (UploadId, serde_json::Value) {
        let init = self
            .post_json(
                token,
                "/v1/uploads/multipart",
                serde_json::json!({"filename": filename, "size": bytes.len(), "part_size": part_size}),
            )
            .await;
        assert_eq!(init.status(), 201);
        let session: serde_json::Value = init.json().await.expect("json");
        let mut parts = Vec::new();
        for part in session["parts"].as_array().expect("parts") {
            let n = part["number"].as_u64().expect("number") as usize;
            let size = part["size"].as_u64().expect("size") as usize;
            let start = (n - 1) * part_size as usize;
            let chunk = bytes[start..start + size].to_vec();
            let put = self
                .http
                .put(part["url"].as_str().expect("url"))
                .body(chunk)
                .send()
                .await
                .expect("put");
            assert_eq!(put.status(), 200, "{:?}", put.text().await);
            let etag = put
                .headers()
                .get("etag")
                .expect("etag")
                .to_str()
                .expect("ascii")
                .to_owned();
            parts.push(serde_json::json!({"number": n, "etag": etag}));
        }
        let id: UploadId = session["upload_id"]
            .as_str()
            .expect("id")
            .parse()
            .expect("upload id");
        let done = self
            .post_json(
                token,
                &format!("/v1/uploads/{id}/complete"),
                serde_json::json!({"parts": parts, "table_name": table}),
            )
            .await;
        assert_eq!(done.status(), 202);
        (id, done.json().await.expect("json"))
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.gateway).await;
    }
}

pub fn owner(name: &str) -> Owner {
    name.parse().expect("owner")
}

pub fn sample() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../samples/orders.csv"
    ))
    .expect("sample")
}
