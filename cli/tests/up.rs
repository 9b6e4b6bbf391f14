//! `weir up`, `weir serve`, `weir upload` and `weir datasets` as a user runs them: real
//! processes, a real nats-server, a local object store; including a system killed with
//! SIGKILL mid-flight and restarted.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use weir_events::*;
use weir_journal::Journal;
use weir_services::producer::{self, Terminal};
use weir_testkit::NatsServer;

fn weir() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weir"));
    c.env_remove("NATS_URL")
        .env_remove("WEIR_DATA_DIR")
        .kill_on_drop(true);
    c
}

/// Starts a long-running weir command and waits for its `ready` line.
async fn start(args: &[&str]) -> Child {
    start_ready(args).await.0
}

/// As `start`, with the `ready` line.
async fn start_ready(args: &[&str]) -> (Child, String) {
    start_ready_with(weir().args(args)).await
}

/// As `start_ready`, for a command set up by the caller.
async fn start_ready_with(command: &mut Command) -> (Child, String) {
    let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("no ready line within 60 s")
        .unwrap()
        .expect("exited before ready");
    assert!(line.starts_with("ready"), "{line}");
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, line)
}

async fn run(args: &[&str]) -> (i32, String, String) {
    let out = tokio::time::timeout(Duration::from_secs(120), weir().args(args).output())
        .await
        .expect("command took over 120 s")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sample() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../samples/orders.csv").to_owned()
}

/// `weir upload samples/orders.csv --table orders --wait` on the system running on
/// `data`: registered with its 200 rows. Returns the result line.
async fn upload_orders(data: &str) -> serde_json::Value {
    let (code, out, err) = run(&[
        "upload",
        "--data-dir",
        data,
        &sample(),
        "--table",
        "orders",
        "--wait",
        "--json",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let result: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(result["status"], "registered", "{result}");
    assert_eq!(result["table_name"], "orders");
    assert_eq!(result["row_count"], 200);
    assert!(result["failure"].is_null());
    result
}

fn signal(child: &Child, sig: &str) {
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_upload_show_and_a_clean_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    // Its log, at debug level, is kept to check that no secret is ever written to it.
    let up_log = dir.path().join("up.log");
    let (mut up, ready) = start_ready_with(
        weir()
            .args(["up", "--data-dir", data, "--http", "127.0.0.1:0"])
            .env("WEIR_LOG", "debug")
            .stderr(std::fs::File::create(&up_log).unwrap()),
    )
    .await;
    let http = ready
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http="))
        .expect("the ready line names the HTTP address")
        .to_owned();
    assert!(dir.path().join("weir.runtime.json").exists());

    // Other commands find the running system from --data-dir alone.
    let result = upload_orders(data).await;
    let id = result["dataset_id"].as_str().unwrap().to_owned();

    let (code, out, err) = run(&["datasets", "--data-dir", data, "show", &id, "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["id"], id.as_str());
    assert_eq!(shown["table_name"], "orders");
    assert_eq!(shown["row_count"], 200);
    let fields = shown["schema"]["fields"].as_array().unwrap();
    assert_eq!(fields[0]["name"], "order_id");
    assert_eq!(fields[0]["type"], "Int64");
    assert_eq!(fields[2]["name"], "zip");
    assert_eq!(fields[2]["type"], "Utf8");
    let location = shown["location"].as_str().unwrap();
    assert!(
        location.starts_with("file://") && location.contains("/parquet/sha256/"),
        "{location}"
    );
    assert!(Path::new(location.trim_start_matches("file://")).is_file());

    let (code, out, _) = run(&["datasets", "--data-dir", data, "list", "--json"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // A bad file: non-zero exit, the reason in the JSON.
    let bad = dir.path().join("bad.ndjson");
    std::fs::write(&bad, "{\"a\": 1}\n{oops\n").unwrap();
    let (code, out, _) = run(&[
        "upload",
        "--data-dir",
        data,
        bad.to_str().unwrap(),
        "--wait",
        "--json",
    ])
    .await;
    assert_eq!(code, 1);
    let result: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(result["status"], "failed");
    assert_eq!(result["failure"]["step"], "infer");
    assert!(
        result["failure"]["reason"]
            .as_str()
            .unwrap()
            .contains("bad.ndjson"),
        "{result}"
    );

    // A ragged Latin-1 CSV without --table: registered with its bad rows rejected, and
    // the user is told everywhere: upload --json, datasets show, status, notifications.
    let ragged = dir.path().join("ragged.csv");
    std::fs::write(
        &ragged,
        b"id,city\n1,M\xfcnchen\n3\n4,K\xf6ln,6\n5,Z\xfcrich\n",
    )
    .unwrap();
    let (code, out, err) = run(&[
        "upload",
        "--data-dir",
        data,
        ragged.to_str().unwrap(),
        "--wait",
        "--json",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let result: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(result["status"], "registered", "{result}");
    assert_eq!(result["row_count"], 2);
    let problems = &result["problems"];
    assert_eq!(problems["count"], 2, "{result}");
    assert_eq!(problems["rejected"], 2);
    assert_eq!(problems["rows_read"], 4);
    assert_eq!(problems["bad_rows"], "reject");
    assert_eq!(problems["encoding"], "windows-1252");
    assert_eq!(problems["first"][0]["line"], 3);
    let rejects = problems["rejects"].as_str().unwrap().to_owned();
    assert!(rejects.ends_with("/rejects.ndjson"), "{rejects}");
    let id = result["dataset_id"].as_str().unwrap().to_owned();
    let upload = result["upload_id"].as_str().unwrap().to_owned();

    let (code, out, err) = run(&["datasets", "--data-dir", data, "show", &id, "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["quality"]["rejected"], 2);
    assert_eq!(shown["quality"]["rows_registered"], 2);
    let location = shown["rejects_location"].as_str().unwrap();
    let text = std::fs::read_to_string(location.trim_start_matches("file://")).unwrap();
    assert!(
        text.contains("\"raw\":\"3\"") && text.contains("K\u{f6}ln,6"),
        "{text}"
    );
    let (code, out, _) = run(&["datasets", "--data-dir", data, "show", &id]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("2 rejected") && out.contains("line 3"),
        "{out}"
    );
    let (code, out, _) = run(&["status", "--data-dir", data, &upload]).await;
    assert_eq!(code, 0);
    assert!(out.contains("encoding windows-1252 (detected)"), "{out}");
    assert!(out.contains("rejects  "), "{out}");
    let (code, out, _) = run(&["notifications", "--data-dir", data]).await;
    assert_eq!(code, 0);
    assert!(out.contains("registered with 2 rejected rows"), "{out}");

    // The dataset's default policy, then a second version: it pads (the default) and
    // derives from v1; the tree and `show ID@v2` tell it.
    let (code, _, err) = run(&["datasets", "--data-dir", data, "bad-rows", &id, "pad"]).await;
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(&[
        "upload",
        "--data-dir",
        data,
        ragged.to_str().unwrap(),
        "--dataset",
        &id,
        "--wait",
        "--json",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let result: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(result["dataset_id"], id.as_str(), "{result}");
    assert_eq!(result["row_count"], 4, "pad kept every row: {result}");
    assert_eq!(result["problems"]["bad_rows"], "pad");
    let (code, out, err) = run(&["datasets", "--data-dir", data, "versions", &id, "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let versions: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(versions[1]["version"], 2);
    assert_eq!(versions[1]["parent_version"], 1);
    assert_eq!(versions[1]["head"], true);
    let (code, out, _) = run(&["datasets", "--data-dir", data, "versions", &id]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("└─ v2") && out.contains("(head; main)"),
        "{out}"
    );
    let (code, out, err) = run(&[
        "datasets",
        "--data-dir",
        data,
        "show",
        &format!("{id}@v1"),
        "--json",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let v1: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            v1["version"].as_u64(),
            v1["row_count"].as_u64(),
            v1["head"].as_bool()
        ),
        (Some(1), Some(2), Some(false))
    );
    // Freeze the schema: a third version with another column fails at register.
    let (code, _, err) = run(&["datasets", "--data-dir", data, "policy", &id, "freeze"]).await;
    assert_eq!(code, 0, "{err}");
    let wider = dir.path().join("wider.csv");
    std::fs::write(&wider, "id,city,extra\n1,a,b\n").unwrap();
    let (code, out, _) = run(&[
        "upload",
        "--data-dir",
        data,
        wider.to_str().unwrap(),
        "--dataset",
        &id,
        "--wait",
        "--json",
    ])
    .await;
    assert_eq!(code, 1);
    let result: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(result["failure"]["step"], "register", "{result}");
    assert!(
        result["failure"]["reason"]
            .as_str()
            .unwrap()
            .contains("added extra (Utf8)"),
        "{result}"
    );
    // Tags never move; a branch; a rollback of main; each name resolves.
    let (code, out, err) = run(&[
        "datasets",
        "--data-dir",
        data,
        "tag",
        &id,
        "first",
        "v1",
        "--json",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let tagged: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (tagged["tag"].as_str(), tagged["version"].as_u64()),
        (Some("first"), Some(1))
    );
    let (code, _, err) = run(&["datasets", "--data-dir", data, "tag", &id, "first", "v2"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("tag first already points to v1"), "{err}");
    let (code, _, err) = run(&["datasets", "--data-dir", data, "branch", &id, "dev"]).await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&[
        "datasets",
        "--data-dir",
        data,
        "rollback",
        &id,
        "--to",
        "first",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    for (name, version) in [("first", 1), ("main", 1), ("dev", 2), ("v2", 2)] {
        let (code, out, err) = run(&[
            "datasets",
            "--data-dir",
            data,
            "show",
            &format!("{id}@{name}"),
            "--json",
        ])
        .await;
        assert_eq!(code, 0, "{name}: {err}");
        let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(shown["version"], version, "{name}: {shown}");
    }
    let (code, out, _) = run(&["datasets", "--data-dir", data, "versions", &id]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("(head; main, tag first)") && out.contains("(dev)"),
        "{out}"
    );
    let (code, _, err) = run(&["datasets", "--data-dir", data, "show", &format!("{id}@v9")]).await;
    assert_eq!(code, 1);
    assert!(err.contains("has no version v9"), "{err}");

    // A producer in Python (nats-py): a file it put under incoming/, a request on
    // weir-requests.upload, the upload followed on the JSON mirror to registered.
    let runtime: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("weir.runtime.json")).unwrap())
            .unwrap();
    let nats_url = runtime["nats_url"].as_str().unwrap().to_owned();
    // The server has users (nats.conf): nobody gets in without a password; the
    // Python producer connects as `client`, which may only ask and follow.
    assert!(
        weir_journal::Journal::connect(&nats_url, &StreamSpec::default())
            .await
            .is_err(),
        "an anonymous connection was accepted"
    );
    let passwords = std::fs::read_to_string(dir.path().join("nats.passwords")).unwrap();
    let password = |var: &str| {
        passwords
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{var}=")))
            .unwrap_or_else(|| panic!("no {var} in nats.passwords"))
            .to_owned()
    };
    let client_url = nats_url.replace(
        "nats://",
        &format!("nats://client:{}@", password("WEIR_NATS_CLIENT_PASSWORD")),
    );
    let (code, out, err) = run(&["tokens", "--data-dir", data, "create", "local", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let token: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    let incoming = dir.path().join("objects/incoming/py");
    std::fs::create_dir_all(&incoming).unwrap();
    std::fs::copy(sample(), incoming.join("orders-py.csv")).unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = repo.join(".tools/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup",
        python.display()
    );
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(&python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/producer.py"))
            .args([client_url.as_str(), token.as_str(), "py/orders-py.csv"])
            .output(),
    )
    .await
    .expect("the Python producer took over 120 s")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["terminal"]["kind"], "dataset_registered", "{report}");
    let kinds: Vec<&str> = report["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k.as_str())
        .collect();
    for kind in [
        "upload_received",
        "parts_combined",
        "schema_inferred",
        "dataset_registered",
    ] {
        assert!(kinds.contains(&kind), "{kind} not seen: {kinds:?}");
    }
    let registered = &report["terminal"]["envelope"]["event"]["DatasetRegistered"];
    assert_eq!(registered["statistics"]["rows"], 200, "{report}");
    assert_eq!(registered["label"], "From Python");
    assert!(
        report["bad_request"]["error"]
            .as_str()
            .unwrap()
            .starts_with("key:"),
        "{report}"
    );
    assert!(
        !incoming.join("orders-py.csv").exists(),
        "the incoming object was taken"
    );

    // Through the HTTP gateway (`--api`): the read options travel with the upload.
    let (code, out, err) = run(&["tokens", "--data-dir", data, "create", "local", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let api_token: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let (code, out, err) = run(&[
        "upload",
        "--api",
        &http,
        "--token",
        api_token["token"].as_str().unwrap(),
        ragged.to_str().unwrap(),
        "--bad-rows",
        "pad",
        "--table",
        "via_api",
        "--wait",
        "--json",
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let result: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (result["status"].as_str(), result["row_count"].as_u64()),
        (Some("registered"), Some(4)),
        "pad kept every row: {result}"
    );

    // Column type overrides: the producer's types; a value that does not fit fails
    // with its line, column and value under `fail`.
    let typed = dir.path().join("typed.csv");
    std::fs::write(&typed, "id,zip,amount\n1,02115,12.50\n2,10001,7\n").unwrap();
    let (code, out, err) = run(&[
        "upload",
        "--data-dir",
        data,
        typed.to_str().unwrap(),
        "--column",
        "zip=utf8",
        "--column",
        "amount=decimal(12,2)",
        "--wait",
        "--json",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let result: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let typed_id = result["dataset_id"].as_str().unwrap().to_owned();
    let (_, out, _) = run(&["datasets", "--data-dir", data, "show", &typed_id, "--json"]).await;
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    let types: Vec<&str> = shown["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["type"].as_str())
        .collect();
    assert_eq!(types, ["Int64", "Utf8", "Decimal128(12, 2)"]);
    let bad = dir.path().join("bad-typed.csv");
    std::fs::write(&bad, "id,amount\n1,12.50\n2,n/a\n").unwrap();
    let (code, out, _) = run(&[
        "upload",
        "--data-dir",
        data,
        bad.to_str().unwrap(),
        "--column",
        "amount=decimal(12,2)",
        "--bad-rows",
        "fail",
        "--wait",
        "--json",
    ])
    .await;
    assert_eq!(code, 1);
    let result: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let reason = result["failure"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("line 3, column \"amount\": \"n/a\" does not fit"),
        "{reason}"
    );

    // A content validator: statistics in the catalog and the notice; an invalid file
    // fails naming line, field and a hint.
    let chat = dir.path().join("chat.jsonl");
    std::fs::write(
        &chat,
        "{\"conversation_id\": \"c1\", \"turns\": [{\"role\": \"user\", \"content\": \"hello\"}, {\"role\": \"assistant\", \"content\": \"hi\"}]}\n",
    )
    .unwrap();
    let (code, out, err) = run(&[
        "upload",
        "--data-dir",
        data,
        chat.to_str().unwrap(),
        "--validator",
        "conversation-jsonl",
        "--wait",
        "--json",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let result: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let chat_id = result["dataset_id"].as_str().unwrap().to_owned();
    let (_, out, _) = run(&["datasets", "--data-dir", data, "show", &chat_id]).await;
    assert!(out.contains("checked  conversation-jsonl: "), "{out}");
    assert!(
        out.contains("conversations 1") && out.contains("training pairs 1"),
        "{out}"
    );
    let (_, out, _) = run(&["notifications", "--data-dir", data]).await;
    assert!(
        out.contains("ready: 1 rows, 2 columns; conversation-jsonl: "),
        "{out}"
    );
    let bad_chat = dir.path().join("bad-chat.jsonl");
    std::fs::write(&bad_chat, "{\"conversation_id\": \"c1\", \"turns\": []}\n").unwrap();
    let (code, out, _) = run(&[
        "upload",
        "--data-dir",
        data,
        bad_chat.to_str().unwrap(),
        "--validator",
        "conversation-jsonl",
        "--wait",
        "--json",
    ])
    .await;
    assert_eq!(code, 1);
    let result: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let reason = result["failure"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("line 1, field \"turns\": empty (hint:"),
        "{reason}"
    );

    // Standard input: `weir upload -`.
    let mut child = weir()
        .args([
            "upload",
            "--data-dir",
            data,
            "-",
            "--stdin-name",
            "piped.csv",
            "--wait",
            "--json",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"k,v\n1,one\n2,two\n3,three\n")
            .await
            .unwrap();
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success());
    let piped: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            piped["status"].as_str(),
            piped["row_count"].as_u64(),
            piped["table_name"].as_str()
        ),
        (Some("registered"), Some(3), Some("piped")),
        "{piped}"
    );
    assert_eq!(piped["file"], "-");

    // The doctor: every part healthy while the system runs.
    let (code, out, err) = run(&["doctor", "--data-dir", data]).await;
    assert_eq!(code, 0, "{out}{err}");
    for part in [
        "nats-server",
        "stream",
        "consumer weir-inferrer",
        "database migrations",
        "projector",
        "object store",
    ] {
        assert!(out.contains(part), "no {part} line: {out}");
    }
    assert!(out.trim_end().ends_with("healthy"), "{out}");
    // The store under the test's temp dir keeps the digests the combiner trusts.
    assert!(
        out.contains("digests recorded as objects are written"),
        "{out}"
    );
    let (code, out, _) = run(&["doctor", "--data-dir", data, "--json"]).await;
    assert_eq!(code, 0);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["healthy"], true, "{report}");

    signal(&up, "-TERM");
    let status = tokio::time::timeout(Duration::from_secs(30), up.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(!dir.path().join("weir.runtime.json").exists());

    // No secret in any log: not the NATS passwords, the signing key of part URLs or
    // an API token; not in weir's debug log, its ready line or nats-server's log.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for file in ["nats.passwords", "gateway.key"] {
            let mode = std::fs::metadata(dir.path().join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }
    let key = std::fs::read_to_string(dir.path().join("gateway.key")).unwrap();
    let mut secrets: Vec<String> = passwords
        .lines()
        .filter_map(|l| l.split_once('=').map(|(_, p)| p.trim().to_owned()))
        .collect();
    assert_eq!(secrets.len(), 8, "one password per role");
    secrets.push(key.trim().to_owned());
    secrets.push(token.clone());
    secrets.push(api_token["token"].as_str().unwrap().to_owned());
    let up_text = std::fs::read_to_string(&up_log).unwrap();
    assert!(up_text.contains("DEBUG"), "the debug log was captured");
    // Every service's step lines name the upload, the event's sequence and, once it is
    // known, the dataset: the registrar's, for the sample's dataset.
    let registrar_step = up_text
        .lines()
        .find(|l| l.contains("step{service=\"registrar\"") || l.contains("step{service=registrar"))
        .unwrap_or_else(|| panic!("no registrar step line in weir up's debug log"));
    assert!(
        registrar_step.contains(" dataset=data_") && registrar_step.contains(" seq="),
        "{registrar_step}"
    );
    for service in ["combiner", "inferrer"] {
        assert!(
            up_text
                .lines()
                .any(|l| l.contains("step{") && l.contains(service) && l.contains("upload=")),
            "no {service} step line naming its upload"
        );
    }
    let nats_text = std::fs::read_to_string(dir.path().join("nats.log")).unwrap();
    for (name, text) in [
        ("weir up's log", &up_text),
        ("nats.log", &nats_text),
        ("the ready line", &ready),
    ] {
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "a secret is in {name}");
        }
    }

    // With the system stopped: the server check fails, the exit code says so.
    let (code, out, _) = run(&[
        "doctor",
        "--data-dir",
        data,
        "--nats-url",
        "nats://127.0.0.1:9",
    ])
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL  nats-server") && out.contains("unhealthy"),
        "{out}"
    );
}

#[tokio::test]
async fn a_command_without_a_running_system_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let start = std::time::Instant::now();
    let (code, _, err) = run(&[
        "datasets",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "list",
    ])
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("no running weir found"), "{err}");
    assert!(
        start.elapsed() >= Duration::from_secs(29),
        "waits up to 30 s for the system"
    );
}

/// Distinct small CSV files (distinct content, so no two share a blob).
fn files(dir: &Path, n: usize) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let p = dir.join(format!("f{i}.csv"));
            let mut s = String::from("id,name,score\n");
            for r in 0..50 {
                s += &format!("{r},name-{i}-{r},{}.5\n", r * i);
            }
            std::fs::write(&p, s).unwrap();
            p
        })
        .collect()
}

async fn uploads_in_log(journal: &Journal) -> Vec<UploadId> {
    journal
        .read_all(Subject::kind_filter(EventKind::UploadReceived))
        .await
        .unwrap()
        .iter()
        .map(|r| r.envelope.correlation_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_flight_and_restarted_every_upload_registers_exactly_once() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let url = nats.url();
    let inputs = files(dir.path(), 12);
    let up_args = ["up", "--data-dir", data, "--nats-url", &url];
    let mut up = start(&up_args).await;
    let paths: Vec<&str> = inputs.iter().map(|p| p.to_str().unwrap()).collect();
    let mut args = vec!["upload", "--data-dir", data, "--json"];
    args.extend(&paths);
    let (code, _, err) = run(&args).await;
    assert_eq!(code, 0, "{err}");
    // Kill it without warning while it works, three times, at different moments.
    for delay in [5u64, 40, 120] {
        tokio::time::sleep(Duration::from_millis(delay)).await;
        signal(&up, "-KILL");
        let _ = up.wait().await;
        up = start(&up_args).await;
    }
    let journal = Journal::connect(&url, &StreamSpec::default())
        .await
        .unwrap();
    let uploads = uploads_in_log(&journal).await;
    assert_eq!(uploads.len(), 12);
    for u in &uploads {
        let end = tokio::time::timeout(Duration::from_secs(60), producer::wait(&journal, *u))
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(end, Terminal::Registered(_)), "{u}: {end:?}");
        let kinds: Vec<_> = journal
            .history(&Aggregate::Upload(*u))
            .await
            .unwrap()
            .iter()
            .map(|r| r.envelope.kind())
            .collect();
        assert_eq!(
            kinds,
            [
                EventKind::UploadReceived,
                EventKind::PartsCombined,
                EventKind::SchemaInferred,
                EventKind::DatasetRegistered
            ],
            "{u}"
        );
    }
    signal(&up, "-INT");
    assert_eq!(up.wait().await.unwrap().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_service_processes_share_the_work() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = dir.path().join("objects");
    let (data, store) = (data.to_str().unwrap(), store.to_str().unwrap());
    let url = nats.url();
    let mut services = Vec::new();
    for name in ["combiner", "combiner", "inferrer", "inferrer", "registrar"] {
        services.push(
            start(&[
                "serve",
                name,
                "--data-dir",
                data,
                "--nats-url",
                &url,
                "--store",
                store,
            ])
            .await,
        );
    }
    let inputs = files(dir.path(), 8);
    let paths: Vec<&str> = inputs.iter().map(|p| p.to_str().unwrap()).collect();
    let mut args = vec![
        "upload",
        "--data-dir",
        data,
        "--nats-url",
        &url,
        "--store",
        store,
        "--wait",
        "--json",
    ];
    args.extend(&paths);
    let (code, out, err) = run(&args).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().filter(|l| l.contains("\"registered\"")).count(),
        8,
        "{out}"
    );
    let journal = Journal::connect(&url, &StreamSpec::default())
        .await
        .unwrap();
    for u in uploads_in_log(&journal).await {
        assert_eq!(
            journal.history(&Aggregate::Upload(u)).await.unwrap().len(),
            4,
            "{u}"
        );
    }
    for s in &services {
        signal(s, "-TERM");
    }
    for mut s in services {
        assert_eq!(s.wait().await.unwrap().code(), Some(0));
    }
}

/// `weir datasets --as OWNER …` and `weir upload --as OWNER --dataset`: the access
/// each command needs, grants, a second grant changing the level, revoke, and the
/// audit trail in `weir history`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_decide_what_as_owner_may_do() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let mut up = start(&["up", "--data-dir", data, "--http", "127.0.0.1:0"]).await;
    let ok = |(code, out, err): (i32, String, String)| {
        assert_eq!(code, 0, "{err}");
        out
    };
    let refused = |(code, _, err): (i32, String, String), why: &str| {
        assert_eq!(code, 1, "{err}");
        assert!(err.contains(why), "wanted {why:?} in {err}");
    };
    let d = |args: &[&str]| {
        let mut all = vec!["datasets", "--data-dir", data];
        all.extend_from_slice(args);
        all.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let go = |args: Vec<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&refs).await
    };
    let sample = sample();
    let upload = |who: &'static str, dataset: Option<String>| {
        let mut args = vec![
            "upload".to_owned(),
            "--data-dir".into(),
            data.to_owned(),
            sample.clone(),
            "--as".into(),
            who.into(),
            "--wait".into(),
            "--json".into(),
        ];
        if let Some(id) = dataset {
            args.extend(["--dataset".to_owned(), id]);
        }
        go(args)
    };

    let out = ok(upload("alice", None).await);
    let created: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let id = created["dataset_id"].as_str().unwrap().to_owned();

    // No grant: nothing of it exists for bob.
    refused(go(d(&["show", &id, "--as", "bob"])).await, "no dataset");
    refused(
        go(d(&["grant", &id, "bob", "admin", "--as", "bob"])).await,
        "no dataset",
    );
    refused(
        upload("bob", Some(id.clone())).await,
        "owner bob has no access",
    );
    let listed = ok(go(d(&["list", "--as", "bob"])).await);
    assert!(!listed.contains(&id), "{listed}");

    // Read.
    ok(go(d(&["grant", &id, "bob", "read", "--as", "alice"])).await);
    let shown: serde_json::Value =
        serde_json::from_str(&ok(go(d(&["show", &id, "--as", "bob", "--json"])).await)).unwrap();
    assert_eq!(shown["owner"], "alice");
    let listed = ok(go(d(&["list", "--as", "bob"])).await);
    assert!(
        listed.contains(&id) && listed.contains("(shared: read)"),
        "{listed}"
    );
    refused(
        go(d(&["tag", &id, "first", "v1", "--as", "bob"])).await,
        "bob has read access",
    );
    refused(upload("bob", Some(id.clone())).await, "needs write");

    // Write, by a second grant (as the owner, without --as).
    ok(go(d(&["grant", &id, "bob", "write"])).await);
    ok(go(d(&["tag", &id, "first", "v1", "--as", "bob"])).await);
    let out = ok(upload("bob", Some(id.clone())).await);
    let v2: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v2["status"].as_str(), v2["dataset_id"].as_str()),
        (Some("registered"), Some(id.as_str()))
    );
    refused(
        go(d(&["policy", &id, "freeze", "--as", "bob"])).await,
        "needs admin",
    );
    refused(
        go(d(&["grant", &id, "carol", "read", "--as", "bob"])).await,
        "needs admin",
    );
    refused(
        go(d(&["grant", &id, "alice", "read"])).await,
        "owns dataset",
    );
    let grants: serde_json::Value =
        serde_json::from_str(&ok(go(d(&["grants", &id, "--json", "--as", "bob"])).await)).unwrap();
    assert_eq!(grants["grants"][0]["grantee"], "bob");
    assert_eq!(grants["grants"][0]["level"], "write");
    assert_eq!(grants["grants"][0]["granted_by"], "alice");

    // Revoke takes effect at once.
    ok(go(d(&["revoke", &id, "bob", "--as", "alice"])).await);
    refused(go(d(&["show", &id, "--as", "bob"])).await, "no dataset");
    refused(go(d(&["revoke", &id, "bob"])).await, "has no grant");

    // The audit trail: who granted what to whom, when.
    let trail = ok(go(vec![
        "history".into(),
        "--data-dir".into(),
        data.into(),
        id.clone(),
    ])
    .await);
    for line in [
        "alice      granted read access to bob",
        "alice      granted write access to bob",
        "alice      revoked the access of bob",
    ] {
        assert!(trail.contains(line), "{line:?} not in\n{trail}");
    }
    signal(&up, "-TERM");
    let _ = tokio::time::timeout(Duration::from_secs(30), up.wait()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_with_a_three_node_cluster_keeps_the_stream_on_three_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (mut up, ready) = start_ready(&[
        "up",
        "--data-dir",
        data,
        "--http",
        "127.0.0.1:0",
        "--cluster",
        "3",
    ])
    .await;
    // Clients get every node's URL, so they fail over.
    let url = ready
        .split_whitespace()
        .find_map(|w| w.strip_prefix("nats="))
        .unwrap()
        .to_owned();
    assert_eq!(url.split(',').count(), 3, "{ready}");
    for node in 1..=3 {
        assert!(
            dir.path()
                .join(format!("nats-cluster/node-{node}"))
                .is_dir()
        );
    }
    upload_orders(data).await;
    let (code, out, err) = run(&["doctor", "--data-dir", data]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("3 replica(s)"), "{out}");
    // --cluster starts its own servers: it does not go with an external one.
    let other = tempfile::tempdir().unwrap();
    let (code, _, err) = run(&[
        "up",
        "--data-dir",
        other.path().to_str().unwrap(),
        "--nats-url",
        &url,
        "--cluster",
        "3",
    ])
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("--cluster"), "{err}");
    signal(&up, "-TERM");
    let status = tokio::time::timeout(Duration::from_secs(30), up.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// `weir up --json` prints its ready line as one JSON object that names where each part
/// is, and the system it describes answers there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_json_prints_the_ready_line_as_an_object() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let mut child = weir()
        .args(["up", "--json", "--data-dir", data, "--http", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("no ready line within 60 s")
        .unwrap()
        .expect("exited before ready");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let ready: serde_json::Value = serde_json::from_str(&line).expect("one JSON object");
    assert_eq!(ready["ready"], true, "{line}");
    assert!(
        ready["nats"].as_str().unwrap().starts_with("nats://"),
        "{line}"
    );
    assert_eq!(ready["data"], data, "{line}");
    let http = ready["http"].as_str().expect("an HTTP address").to_owned();
    let (code, out, err) = run(&["doctor", "--json", "--data-dir", data]).await;
    assert_eq!(code, 0, "{out}{err}");
    let health = reqwest::get(format!("{http}/healthz")).await.unwrap();
    assert!(health.status().is_success(), "{}", health.status());
    signal(&child, "-TERM");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// A retention period that does not parse stops `weir up` and `weir serve janitor`
/// before anything starts, naming the flag or the variable and what would do.
#[tokio::test]
async fn a_bad_retention_period_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (code, _, err) = run(&["up", "--data-dir", data, "--retention", "forever=1d"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("--retention \"forever=1d\": unknown retention period \"forever\""),
        "{err}"
    );
    assert!(
        !dir.path().join("nats").exists(),
        "no nats-server was started"
    );
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        weir()
            .args(["serve", "janitor", "--data-dir", data])
            .env("WEIR_RETENTION_FAILED", "soon")
            .output(),
    )
    .await
    .expect("weir serve janitor took over 60 s")
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("WEIR_RETENTION_FAILED: retention failed: \"soon\" is not a duration"),
        "{err}"
    );
}

/// `weir upload a.csv b.csv --one-version --wait`: one upload, one version with the
/// rows of both files, shown by `datasets show` and `status`; the same after
/// `weir replay` rebuilt the projections from the log. A file that does not fit fails
/// the upload, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_files_upload_as_one_version_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let mut up = start(&["up", "--data-dir", data, "--http", "127.0.0.1:0"]).await;
    let a = dir.path().join("a.csv");
    let b = dir.path().join("b.csv");
    std::fs::write(&a, "id,city\n1,Oslo\n2,Bergen\n").unwrap();
    std::fs::write(&b, "id,city\n3,Tromsø\n").unwrap();
    let (code, out, err) = run(&[
        "upload",
        "--data-dir",
        data,
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--one-version",
        "--wait",
        "--json",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "one upload: {out}");
    let result: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(result["status"], "registered", "{result}");
    assert_eq!(result["row_count"], 3, "{result}");
    let id = result["dataset_id"].as_str().unwrap().to_owned();
    let upload = result["upload_id"].as_str().unwrap().to_owned();

    let show = |when: &'static str| {
        let (data, id, upload) = (data.to_owned(), id.clone(), upload.clone());
        async move {
            let (code, out, err) =
                run(&["datasets", "--data-dir", &data, "show", &id, "--json"]).await;
            assert_eq!(code, 0, "{when}: {err}");
            let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(shown["row_count"], 3, "{when}: {shown}");
            assert_eq!(shown["version"], 1, "{when}: {shown}");
            let (code, out, err) = run(&["status", "--data-dir", &data, &upload, "--json"]).await;
            assert_eq!(code, 0, "{when}: {err}");
            let status: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(status["filename"], "a.csv, b.csv", "{when}: {status}");
            assert_eq!(status["status"], "registered", "{when}: {status}");
            (shown, status)
        }
    };
    let before = show("live").await;
    let (code, _, err) = run(&["replay", "--data-dir", data]).await;
    assert_eq!(code, 0, "{err}");
    let after = show("after weir replay").await;
    assert_eq!(before, after, "the rebuilt projections show the same");

    // A second version whose second file has another schema: nothing registers.
    let c = dir.path().join("c.csv");
    let d = dir.path().join("d.csv");
    std::fs::write(&c, "id,city\n4,Bodø\n").unwrap();
    std::fs::write(&d, "id,town\n5,Alta\n").unwrap();
    let (code, out, _) = run(&[
        "upload",
        "--data-dir",
        data,
        c.to_str().unwrap(),
        d.to_str().unwrap(),
        "--dataset",
        &id,
        "--one-version",
        "--wait",
    ])
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "c.csv + d.csv: failed at infer: d.csv: its schema differs from that of c.csv"
        ),
        "{out}"
    );
    let (code, out, err) = run(&["datasets", "--data-dir", data, "versions", &id, "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let versions: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(versions.as_array().unwrap().len(), 1, "{versions}");

    // Through the gateway it is refused before anything moves.
    let (code, _, err) = run(&[
        "upload",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--one-version",
        "--api",
        "http://127.0.0.1:9",
        "--token",
        "t",
    ])
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--one-version") && err.contains("--api"),
        "{err}"
    );
    signal(&up, "-TERM");
    let status = tokio::time::timeout(Duration::from_secs(30), up.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
