//! `weir tail` against a real nats-server: JSON decoding, filters, --until-terminal
//! exit codes, and a clean exit on Ctrl-C.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use weir_events::*;
use weir_journal::{Expect, Journal};
use weir_testkit::{NatsServer, sample};

async fn journal(nats: &NatsServer) -> Journal {
    Journal::connect(&nats.url(), &StreamSpec::default())
        .await
        .unwrap()
}

fn tail(nats: &NatsServer, args: &[&str]) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("tail")
        .args(args)
        .env("NATS_URL", nats.url())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, out)
}

async fn next_json(lines: &mut Lines<BufReader<ChildStdout>>) -> serde_json::Value {
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("tail printed nothing within 20 s")
        .unwrap()
        .expect("tail ended early");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"))
}

/// Appends a registered upload (3 events) and a failed one (2 events).
async fn two_uploads(j: &Journal) -> (UploadId, UploadId) {
    let good = UploadId::new();
    let r = sample::upload_received(good, "good.csv");
    j.append(&r, Expect::Empty).await.unwrap();
    let c = sample::parts_combined(good, r.event_id, 1);
    j.append(&c, Expect::LastSequence(1)).await.unwrap();
    let bad = UploadId::new();
    let rb = sample::upload_received(bad, "bad.csv");
    j.append(&rb, Expect::Empty).await.unwrap();
    j.append(
        &sample::failed(
            bad,
            rb.event_id,
            "bad.csv line 3, column \"qty\": not an int64",
        ),
        Expect::LastSequence(3),
    )
    .await
    .unwrap();
    j.append(
        &sample::dataset_registered(good, c.event_id, "good"),
        Expect::LastSequence(2),
    )
    .await
    .unwrap();
    (good, bad)
}

#[tokio::test]
async fn json_events_of_one_upload_until_registered_exit_0() {
    let nats = NatsServer::start();
    let j = journal(&nats).await;
    let (good, _) = two_uploads(&j).await;
    let id = good.to_string();
    let (mut child, mut lines) = tail(&nats, &["--json", "--upload", &id, "--until-terminal"]);
    let first = next_json(&mut lines).await;
    assert_eq!(first["kind"], "upload_received");
    assert_eq!(first["seq"], 1);
    assert_eq!(first["aggregate"], id.as_str());
    assert_eq!(first["correlation_id"], id.as_str());
    assert_eq!(first["data"]["filename"], "good.csv");
    assert_eq!(first["data"]["owner"], "acme");
    let second = next_json(&mut lines).await;
    assert_eq!(second["kind"], "parts_combined");
    assert_eq!(second["causation_id"], first["event_id"]);
    let third = next_json(&mut lines).await;
    assert_eq!(third["kind"], "dataset_registered");
    assert_eq!(third["seq"], 5);
    assert_eq!(third["data"]["table_name"], "good");
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        lines.next_line().await.unwrap().is_none(),
        "nothing after the terminal event"
    );
}

#[tokio::test]
async fn until_terminal_exits_1_on_failed() {
    let nats = NatsServer::start();
    let j = journal(&nats).await;
    let (_, bad) = two_uploads(&j).await;
    let (mut child, mut lines) = tail(
        &nats,
        &["--json", "--upload", &bad.to_string(), "--until-terminal"],
    );
    assert_eq!(next_json(&mut lines).await["kind"], "upload_received");
    let failed = next_json(&mut lines).await;
    assert_eq!(failed["kind"], "failed");
    assert_eq!(failed["data"]["step"], "infer");
    assert!(
        failed["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("line 3")
    );
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(1));
}

#[tokio::test]
async fn kind_and_from_seq_filters_select_only_matching_events() {
    let nats = NatsServer::start();
    let j = journal(&nats).await;
    two_uploads(&j).await;
    let (_child, mut lines) = tail(
        &nats,
        &["--json", "--kind", "upload_received", "--from-seq", "2"],
    );
    // seq 1 is before --from-seq; seq 3 is the only other upload_received.
    let only = next_json(&mut lines).await;
    assert_eq!(
        (only["kind"].as_str(), only["seq"].as_u64()),
        (Some("upload_received"), Some(3))
    );
    // Live: a new matching event arrives; the non-matching one before it is skipped.
    let up = UploadId::new();
    let r = sample::upload_received(up, "live.csv");
    let other = UploadId::new();
    let ro = sample::upload_received(other, "other.csv");
    j.append(&ro, Expect::Empty).await.unwrap();
    j.append(&sample::failed(other, ro.event_id, "x"), Expect::Any)
        .await
        .unwrap();
    j.append(&r, Expect::Empty).await.unwrap();
    let a = next_json(&mut lines).await;
    assert_eq!(
        (a["kind"].as_str(), a["data"]["filename"].as_str()),
        (Some("upload_received"), Some("other.csv"))
    );
    let b = next_json(&mut lines).await;
    assert_eq!(
        (b["kind"].as_str(), b["data"]["filename"].as_str()),
        (Some("upload_received"), Some("live.csv"))
    );
}

#[tokio::test]
async fn readable_lines_and_a_clean_exit_on_ctrl_c() {
    let nats = NatsServer::start();
    let j = journal(&nats).await;
    let (good, _) = two_uploads(&j).await;
    let (mut child, mut lines) = tail(
        &nats,
        &[
            "--since",
            "1h",
            "--kind",
            "failed",
            "--kind",
            "dataset_registered",
        ],
    );
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        line.contains("#4") && line.contains("failed") && line.contains("reason="),
        "{line}"
    );
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        line.contains("dataset_registered")
            && line.contains(&good.to_string())
            && line.contains("table=good"),
        "{line}"
    );
    let pid = child.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0), "Ctrl-C exits cleanly");
}

#[tokio::test]
async fn a_server_older_than_2_11_is_refused_with_a_clear_message() {
    // Debian's nats-server package is 2.9; use it when this machine has it.
    let old = std::path::Path::new("/usr/sbin/nats-server");
    let Some(version) = weir_journal::server::binary_version(old) else {
        eprintln!(
            "no /usr/sbin/nats-server here; the version parser is unit-tested in weir-journal"
        );
        return;
    };
    assert!(!weir_journal::version_ok(&version), "{version}");
    let port = weir_journal::server::free_port().unwrap();
    let store = tempfile_dir();
    let args: Vec<std::ffi::OsString> = [
        "-a",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-js",
        "-sd",
        &store,
    ]
    .iter()
    .map(Into::into)
    .collect();
    let server = weir_journal::server::LocalServer::spawn(old, &args, port, None).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["tail", "--nats-url", server.url()])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&version) && err.contains("2.11 or newer"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&store);
}

fn tempfile_dir() -> String {
    let dir = std::env::temp_dir().join(format!("weir-old-nats-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.display().to_string()
}
