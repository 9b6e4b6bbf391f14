//! The gateway's API against a running weir: real nats-server, real services, a
//! projector, the gateway on a port; requests over HTTP.

mod common;

use common::{KEY, Stack, owner, sample};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use weir_events::{Aggregate, DatasetPurged, Envelope, Event, EventKind, ObjectKey, UploadId};
use weir_gateway::presign::Grant;
use weir_journal::{AppendOutcome, Expect};
use weir_services::producer::Terminal;

fn kinds(history: &[weir_journal::Recorded]) -> Vec<EventKind> {
    history.iter().map(|r| r.envelope.kind()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_flow_registers_and_owners_see_only_their_own() {
    let s = Stack::start().await;
    let csv = sample();
    let (upload, accepted) = s
        .upload_multipart(&s.alice, "orders.csv", &csv, 4096, None)
        .await;
    assert_eq!(accepted["status"], "received");
    assert_eq!(accepted["part_count"], 4);

    let Terminal::Registered(reg) = s.settle(upload).await else {
        panic!("upload did not register");
    };
    // The manifest in UploadReceived names every part with its size and sha256.
    let history = s.journal.history(&Aggregate::Upload(upload)).await.unwrap();
    assert_eq!(
        kinds(&history)[..2],
        [EventKind::UploadStarted, EventKind::UploadReceived]
    );
    let Event::UploadReceived(received) = &history[1].envelope.event else {
        panic!("second event is not UploadReceived");
    };
    assert_eq!(received.size, csv.len() as u64);
    for (i, part) in received.parts.iter().enumerate() {
        let chunk = &csv[i * 4096..(i * 4096 + part.size as usize)];
        assert_eq!(part.sha256.to_string(), hex::encode(Sha256::digest(chunk)));
    }

    let status: serde_json::Value = s
        .get(&s.alice, &format!("/v1/uploads/{upload}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "registered");
    assert_eq!(status["dataset_id"], reg.dataset.to_string());
    let steps: Vec<_> = status["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap().to_owned())
        .collect();
    assert!(steps.len() >= 3, "step log {steps:?}");

    let list: serde_json::Value = s
        .get(&s.alice, "/v1/datasets?search=ORDERS")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 1);
    assert_eq!(list["datasets"][0]["id"], reg.dataset.to_string());
    assert_eq!(list["datasets"][0]["status"], "registered");
    let ds: serde_json::Value = s
        .get(&s.alice, &format!("/v1/datasets/{}", reg.dataset))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ds["row_count"], reg.statistics.rows);
    assert_eq!(ds["fields"][0]["name"], "order_id");
    assert!(
        ds["location"]
            .as_str()
            .unwrap()
            .contains("/parquet/sha256/"),
        "{ds}"
    );
    assert_eq!(ds["versions"].as_array().unwrap().len(), 1);
    let preview: serde_json::Value = s
        .get(
            &s.alice,
            &format!("/v1/datasets/{}/preview?limit=3", reg.dataset),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        preview["rows"].as_array().map(Vec::len),
        Some(3),
        "{preview}"
    );
    assert_eq!(preview["rows"][0]["order_id"], 1001);
    assert_eq!(preview["rows"][0]["city"], "Austin");

    let feed: serde_json::Value = s
        .get(&s.alice, "/v1/notifications")
        .await
        .json()
        .await
        .unwrap();
    let note = &feed["notifications"][0];
    assert_eq!(note["kind"], "dataset_ready");
    assert_eq!(note["upload_id"], upload.to_string());

    // Bob sees none of it: another owner's ids answer 404.
    for path in [
        format!("/v1/uploads/{upload}"),
        format!("/v1/datasets/{}", reg.dataset),
        format!("/v1/datasets/{}/preview", reg.dataset),
    ] {
        assert_eq!(s.get(&s.bob, &path).await.status(), 404, "{path}");
    }
    let bobs: serde_json::Value = s.get(&s.bob, "/v1/datasets").await.json().await.unwrap();
    assert_eq!(bobs["total"], 0);
    let bob_feed: serde_json::Value = s
        .get(&s.bob, "/v1/notifications")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(bob_feed["notifications"].as_array().unwrap().len(), 0);
    let id = note["id"].as_str().unwrap();
    let r = s
        .post_json(
            &s.bob,
            &format!("/v1/notifications/{id}/read"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(r.status(), 404);
    let r = s
        .http
        .delete(s.url(&format!("/v1/datasets/{}", reg.dataset)))
        .bearer_auth(&s.bob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Alice marks it read: a NotificationRead event on her owner aggregate, once.
    for _ in 0..2 {
        let r = s
            .post_json(
                &s.alice,
                &format!("/v1/notifications/{id}/read"),
                serde_json::json!({}),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    let owner_log = s
        .journal
        .history(&Aggregate::Owner(owner("alice")))
        .await
        .unwrap();
    let reads: Vec<_> = owner_log.iter().filter(|r| matches!(&r.envelope.event, Event::NotificationRead(n) if n.notification.to_string() == id)).collect();
    assert_eq!(reads.len(), 1);
    s.catch_up().await;
    let feed: serde_json::Value = s
        .get(&s.alice, "/v1/notifications")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(feed["notifications"][0]["read"], true);
    assert_eq!(feed["unread"], 0);

    // No token, a wrong token: 401.
    assert_eq!(
        s.http
            .get(s.url("/v1/datasets"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(s.get("wt_nope", "/v1/datasets").await.status(), 401);
    s.stop().await;
}

async fn init(s: &Stack, size: usize, part_size: u64) -> serde_json::Value {
    let r = s
        .post_json(
            &s.alice,
            "/v1/uploads/multipart",
            serde_json::json!({"filename": "a.csv", "size": size, "part_size": part_size}),
        )
        .await;
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

fn upload_of(session: &serde_json::Value) -> UploadId {
    session["upload_id"].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misused_part_urls_get_403_and_store_nothing() {
    let s = Stack::start().await;
    let body = b"a,b\n1,2\n3,4\n5,6\n".to_vec(); // 16 bytes, parts of 6: 6, 6, 4
    let session = init(&s, body.len(), 6).await;
    let upload = upload_of(&session);
    let url1 = session["parts"][0]["url"].as_str().unwrap().to_owned();
    let url2 = session["parts"][1]["url"].as_str().unwrap().to_owned();
    let part = |n: u32| ObjectKey::part(upload, n);
    let put = |url: String, bytes: Vec<u8>, token: Option<String>| {
        let mut req = s.http.put(url).body(bytes);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.unwrap() }
    };
    let chunk1 = body[..6].to_vec();

    // Tampered: signature, expiry, owner, upload id.
    let sig_pos = url1.find("signature=").unwrap() + "signature=".len();
    let mut bad_sig = url1.clone();
    let flipped = if &bad_sig[sig_pos..sig_pos + 1] == "0" {
        "1"
    } else {
        "0"
    };
    bad_sig.replace_range(sig_pos..sig_pos + 1, flipped);
    let exp: i64 = url1
        .split("expires=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let later = url1.replace(
        &format!("expires={exp}"),
        &format!("expires={}", exp + 3600),
    );
    let as_bob = url1.replace("owner=alice", "owner=bob");
    let other_upload = url1.replace(&upload.to_string(), &UploadId::new().to_string());
    let no_sig = url1.split('?').next().unwrap().to_owned();
    // Other part: part 1's signature on part 2's path.
    let other_part = url1.replace("/parts/1?", "/parts/2?");
    for url in [bad_sig, later, as_bob, other_upload, no_sig, other_part] {
        let r = put(url.clone(), chunk1.clone(), None).await;
        assert_eq!(r.status(), 403, "{url}");
    }
    // Other owner: Bob's token with Alice's URL.
    assert_eq!(
        put(url1.clone(), chunk1.clone(), Some(s.bob.clone()))
            .await
            .status(),
        403
    );
    // Expired: correctly signed, but its time is over.
    let past = time::OffsetDateTime::now_utc().unix_timestamp() - 1;
    let alice = owner("alice");
    let sig = Grant {
        method: "PUT",
        upload,
        part: 1,
        owner: &alice,
        expires: past,
    }
    .sign(KEY);
    let expired = format!(
        "{}/v1/uploads/{upload}/parts/1?owner=alice&expires={past}&signature={sig}",
        s.base
    );
    assert_eq!(put(expired, chunk1.clone(), None).await.status(), 403);
    for n in 1..=3 {
        assert_eq!(
            s.store.exists(&part(n)).await.unwrap(),
            None,
            "part {n} stored"
        );
    }

    // Wrong sizes: refused, nothing stored.
    assert_eq!(
        put(url1.clone(), body[..5].to_vec(), None).await.status(),
        400
    );
    assert_eq!(
        put(url1.clone(), body[..7].to_vec(), None).await.status(),
        413
    );
    assert_eq!(s.store.exists(&part(1)).await.unwrap(), None);

    // The real thing works once (with or without the owner's own token)…
    let ok = put(url1.clone(), chunk1.clone(), Some(s.alice.clone())).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(
        ok.headers()["etag"].to_str().unwrap(),
        format!("\"{}\"", hex::encode(Sha256::digest(&chunk1)))
    );
    // …and a replay, even with other bytes, is refused and changes nothing.
    assert_eq!(
        put(url1.clone(), b"zzzzzz".to_vec(), None).await.status(),
        403
    );
    assert_eq!(s.store.exists(&part(1)).await.unwrap(), Some(6));
    let stored = s.dir.path().join("objects").join(part(1).as_str());
    assert_eq!(std::fs::read(stored).unwrap(), chunk1);

    // Abort: parts removed, UploadAborted, and the URLs stop working.
    let r = s
        .http
        .delete(s.url(&format!("/v1/uploads/{upload}")))
        .bearer_auth(&s.bob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "Bob cannot abort Alice's upload");
    let r = s
        .http
        .delete(s.url(&format!("/v1/uploads/{upload}")))
        .bearer_auth(&s.alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let view: serde_json::Value = r.json().await.unwrap();
    assert_eq!(view["status"], "aborted");
    assert_eq!(s.store.exists(&part(1)).await.unwrap(), None);
    let history = s.journal.history(&Aggregate::Upload(upload)).await.unwrap();
    assert_eq!(
        kinds(&history),
        [EventKind::UploadStarted, EventKind::UploadAborted]
    );
    let Event::UploadAborted(a) = &history[1].envelope.event else {
        unreachable!()
    };
    assert_eq!(a.parts_removed, 1);
    assert_eq!(put(url2, body[6..12].to_vec(), None).await.status(), 403);
    assert_eq!(s.store.exists(&part(2)).await.unwrap(), None);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parts_lists_get_400_and_register_nothing() {
    let s = Stack::start().await;
    let body = b"x,y\n1,2\n3,4\n5,6\n".to_vec();
    let session = init(&s, body.len(), 6).await;
    let upload = upload_of(&session);
    let mut etags = Vec::new();
    for (i, p) in session["parts"].as_array().unwrap().iter().enumerate() {
        let chunk = body[i * 6..(i * 6 + p["size"].as_u64().unwrap() as usize)].to_vec();
        let r = s
            .http
            .put(p["url"].as_str().unwrap())
            .body(chunk)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        etags.push(r.headers()["etag"].to_str().unwrap().to_owned());
    }
    let part = |n: usize| serde_json::json!({"number": n, "etag": etags[n - 1]});
    let complete = format!("/v1/uploads/{upload}/complete");
    let bad = [
        serde_json::json!({}),
        serde_json::json!({"parts": []}),
        serde_json::json!({"parts": [part(1), part(2)]}),
        serde_json::json!({"parts": [part(2), part(1), part(3)]}),
        serde_json::json!({"parts": [part(1), part(1), part(3)]}),
        serde_json::json!({"parts": [part(1), part(2), {"number": 3, "etag": etags[0]}]}),
        serde_json::json!({"parts": [part(1), part(2), {"number": 3, "etag": "nonsense"}]}),
        serde_json::json!({"parts": [part(1), part(2), part(3), {"number": 4, "etag": etags[0]}]}),
    ];
    for body in bad {
        let r = s.post_json(&s.alice, &complete, body.clone()).await;
        assert_eq!(r.status(), 400, "{body}");
        let e: serde_json::Value = r.json().await.unwrap();
        assert!(e["error"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let not_json = s
        .http
        .post(s.url(&complete))
        .bearer_auth(&s.alice)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    // Bob may not complete it; a missing part (store side) is 400 too.
    assert_eq!(
        s.post_json(
            &s.bob,
            &complete,
            serde_json::json!({"parts": [part(1), part(2), part(3)]})
        )
        .await
        .status(),
        404
    );
    let history = s.journal.history(&Aggregate::Upload(upload)).await.unwrap();
    assert_eq!(
        kinds(&history),
        [EventKind::UploadStarted],
        "nothing registered"
    );
    let view: serde_json::Value = s
        .get(&s.alice, &format!("/v1/uploads/{upload}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["status"], "receiving");

    // A part never uploaded.
    let other = init(&s, 12, 6).await;
    let other_id = upload_of(&other);
    let p1 = s
        .http
        .put(other["parts"][0]["url"].as_str().unwrap())
        .body(body[..6].to_vec())
        .send()
        .await
        .unwrap();
    let e1 = p1.headers()["etag"].to_str().unwrap().to_owned();
    let r = s
        .post_json(
            &s.alice,
            &format!("/v1/uploads/{other_id}/complete"),
            serde_json::json!({"parts": [{"number": 1, "etag": e1}, {"number": 2, "etag": e1}]}),
        )
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        kinds(
            &s.journal
                .history(&Aggregate::Upload(other_id))
                .await
                .unwrap()
        ),
        [EventKind::UploadStarted]
    );

    // The right list goes through, once.
    let good = serde_json::json!({"parts": [part(1), part(2), part(3)], "label": "xy"});
    assert_eq!(
        s.post_json(&s.alice, &complete, good.clone())
            .await
            .status(),
        202
    );
    assert_eq!(s.post_json(&s.alice, &complete, good).await.status(), 409);
    assert!(matches!(s.settle(upload).await, Terminal::Registered(_)));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_shot_uploads_and_the_size_limit() {
    let s = Stack::start_with(|c| c.max_upload_bytes = 100).await;
    let body = b"k,v\n1,one\n2,two\n".to_vec();
    let r = s
        .http
        .post(s.url("/v1/uploads?filename=kv.csv&table_name=kv"))
        .bearer_auth(&s.alice)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let view: serde_json::Value = r.json().await.unwrap();
    let upload: UploadId = view["id"].as_str().unwrap().parse().unwrap();
    let Terminal::Registered(reg) = s.settle(upload).await else {
        panic!("not registered")
    };
    assert_eq!(reg.table_name.as_str(), "kv");
    assert_eq!(reg.statistics.rows, 2);

    // A second version of it, ragged, rows rejected by policy; then the read options
    // and the version target are checked, each refusal naming its field.
    let v2 = b"k,v\n3,three\n4\n".to_vec();
    let r = s
        .http
        .post(s.url(&format!(
            "/v1/uploads?filename=kv2.csv&dataset={}&bad_rows=reject",
            reg.dataset
        )))
        .bearer_auth(&s.alice)
        .body(v2)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let view: serde_json::Value = r.json().await.unwrap();
    let upload: UploadId = view["id"].as_str().unwrap().parse().unwrap();
    let Terminal::Registered(reg2) = s.settle(upload).await else {
        panic!("v2 not registered")
    };
    assert_eq!(
        (reg2.dataset, reg2.version, reg2.parent_version),
        (reg.dataset, 2, Some(1))
    );
    assert_eq!(reg2.table_name.as_str(), "kv");
    assert_eq!(reg2.statistics.rows, 1);
    let shown: serde_json::Value = s
        .http
        .get(s.url(&format!("/v1/datasets/{}", reg.dataset)))
        .bearer_auth(&s.alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["current_version"], 2, "{shown}");
    assert_eq!(shown["quality"]["rejected"], 1, "{shown}");
    assert!(
        shown["quality"]["rejects_location"]
            .as_str()
            .is_some_and(|l| l.ends_with("/v2/rejects.ndjson")),
        "{shown}"
    );
    for (query, field) in [
        ("bad_rows=maybe", "bad_rows"),
        ("max_bad_rows=lots", "max_bad_rows"),
        ("encoding=klingon", "encoding"),
        ("dataset=nope", "dataset"),
        ("parent_version=1", "parent_version"),
    ] {
        let r = s
            .http
            .post(s.url(&format!("/v1/uploads?filename=x.csv&{query}")))
            .bearer_auth(&s.alice)
            .body(b"a\n1\n".to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{query}");
        let e: serde_json::Value = r.json().await.unwrap();
        assert!(
            e["error"].as_str().unwrap().starts_with(field),
            "{query}: {e}"
        );
    }

    // A file name with a control character, or over 255 bytes, is a 400 naming the
    // field (as `weir upload` refuses it), for the single shot and the multipart init.
    let long = "n".repeat(1024);
    for name in [
        "nul%00.csv",
        "two%0Alines.csv",
        "esc%1B%5B2J.csv",
        long.as_str(),
    ] {
        let r = s
            .http
            .post(s.url(&format!("/v1/uploads?filename={name}")))
            .bearer_auth(&s.alice)
            .body(b"a\n1\n".to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{name}");
        let e: serde_json::Value = r.json().await.unwrap();
        let msg = e["error"].as_str().unwrap();
        assert!(msg.starts_with("filename "), "{name}: {e}");
        assert!(!msg.chars().any(char::is_control), "{name}: {msg:?}");
    }
    let r = s
        .post_json(
            &s.alice,
            "/v1/uploads/multipart",
            serde_json::json!({"filename": "a\u{0}b.csv", "size": 10}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let e: serde_json::Value = r.json().await.unwrap();
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .starts_with("filename \"a\\0b.csv\""),
        "{e}"
    );

    let big = vec![b'a'; 101];
    let r = s
        .http
        .post(s.url("/v1/uploads?filename=big.csv"))
        .bearer_auth(&s.alice)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let e: serde_json::Value = r.json().await.unwrap();
    assert!(e["error"].as_str().unwrap().contains("100 bytes"), "{e}");
    // Streamed without a length: refused when it passes the limit.
    let chunks = futures::stream::iter((0..5).map(|_| Ok::<_, std::io::Error>(vec![b'b'; 30])));
    let r = s
        .http
        .post(s.url("/v1/uploads"))
        .bearer_auth(&s.alice)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = s
        .post_json(
            &s.alice,
            "/v1/uploads/multipart",
            serde_json::json!({"filename": "big.csv", "size": 101}),
        )
        .await;
    assert_eq!(r.status(), 413);
    assert!(r.text().await.unwrap().contains("100 bytes"));
    assert!(
        s.store.list("uploads/").await.unwrap().is_empty(),
        "a refused upload stored something"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datasets_rename_delete_restore_and_live_events() {
    let s = Stack::start().await;
    // Bob's events never reach Alice's stream.
    let bob_upload = s
        .upload_multipart(&s.bob, "b.csv", b"q\n1\n", 1024, Some("bobs"))
        .await
        .0;
    s.settle(bob_upload).await;
    let seq_before = s.journal.last_sequence().await.unwrap();

    let events = s
        .http
        .get(s.url("/v1/events"))
        .bearer_auth(&s.alice)
        .header("Last-Event-ID", seq_before.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    assert!(
        events.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let (upload, _) = s
        .upload_multipart(&s.alice, "orders.csv", &sample(), 1 << 20, Some("orders"))
        .await;
    let mut body = events.bytes_stream();
    let mut text = String::new();
    let mut seen = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(chunk) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            while let Some(end) = text.find("\n\n") {
                let frame: String = text.drain(..end + 2).collect();
                let id = frame
                    .lines()
                    .find_map(|l| l.strip_prefix("id: "))
                    .map(|i| i.parse::<u64>().unwrap());
                let data = frame.lines().find_map(|l| l.strip_prefix("data: "));
                if let (Some(id), Some(data)) = (id, data) {
                    let v: serde_json::Value = serde_json::from_str(data).unwrap();
                    assert_eq!(v["seq"], id);
                    seen.push((
                        id,
                        v["kind"].as_str().unwrap().to_owned(),
                        v["correlation_id"].as_str().unwrap().to_owned(),
                    ));
                    if v["kind"] == "dataset_registered" {
                        return;
                    }
                }
            }
        }
    })
    .await
    .expect("dataset_registered arrived over SSE");
    assert!(
        seen.iter()
            .all(|(id, _, c)| *id > seq_before && *c == upload.to_string()),
        "{seen:?}"
    );
    let sse_kinds: Vec<_> = seen.iter().map(|(_, k, _)| k.as_str()).collect();
    assert!(
        sse_kinds.starts_with(&["upload_started", "upload_received", "parts_combined"]),
        "{sse_kinds:?}"
    );

    let Terminal::Registered(reg) = s.settle(upload).await else {
        panic!("not registered")
    };
    let path = format!("/v1/datasets/{}", reg.dataset);
    let patch = |body: serde_json::Value| {
        s.http
            .patch(s.url(&path))
            .bearer_auth(&s.alice)
            .json(&body)
            .send()
    };
    // Bob's "bobs" is in Bob's namespace, not Alice's: free for her.
    let r = patch(serde_json::json!({"table_name": "bobs", "label": "Orders 2026"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let change: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        change["appended"],
        serde_json::json!([
            "dataset_label_changed",
            "table_name_claimed",
            "table_name_released",
            "dataset_renamed"
        ])
    );
    assert_eq!(change["table_name"], "bobs");
    let claimed = s
        .journal
        .last_on(&Aggregate::Name {
            owner: owner("alice"),
            table: "bobs".parse().unwrap(),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.envelope.kind(), EventKind::TableNameClaimed);
    let released = s
        .journal
        .last_on(&Aggregate::Name {
            owner: owner("alice"),
            table: "orders".parse().unwrap(),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(released.envelope.kind(), EventKind::TableNameReleased);
    // Back to the released name works (claimed after its release); a taken one does not.
    let (second, _) = s
        .upload_multipart(&s.alice, "t.csv", b"t\n1\n", 1024, Some("taken"))
        .await;
    s.settle(second).await;
    assert_eq!(
        patch(serde_json::json!({"table_name": "taken"}))
            .await
            .unwrap()
            .status(),
        409
    );
    assert_eq!(
        patch(serde_json::json!({"table_name": "Not A Name!"}))
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        patch(serde_json::json!({"table_name": "orders"}))
            .await
            .unwrap()
            .status(),
        200
    );

    let del = || s.http.delete(s.url(&path)).bearer_auth(&s.alice).send();
    assert_eq!(del().await.unwrap().status(), 200);
    assert_eq!(del().await.unwrap().status(), 409);
    s.catch_up().await;
    let sr = &s;
    let listed = |q: &'static str| async move {
        let v: serde_json::Value = sr
            .get(&sr.alice, &format!("/v1/datasets{q}"))
            .await
            .json()
            .await
            .unwrap();
        v["datasets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert!(!listed("").await.contains(&reg.dataset.to_string()));
    assert_eq!(listed("?status=deleted").await, [reg.dataset.to_string()]);
    assert_eq!(
        s.get(&s.alice, "/v1/datasets?status=bogus").await.status(),
        400
    );
    assert_eq!(s.get(&s.alice, "/v1/datasets?limit=0").await.status(), 400);
    let restore_path = format!("{path}/restore");
    let restore = || s.post_json(&s.alice, &restore_path, serde_json::json!({}));
    assert_eq!(restore().await.status(), 200);
    assert_eq!(restore().await.status(), 409);
    let dataset_log = s
        .journal
        .history(&Aggregate::Dataset(reg.dataset))
        .await
        .unwrap();
    assert_eq!(
        kinds(&dataset_log),
        [
            EventKind::DatasetLabelChanged,
            EventKind::DatasetRenamed,
            EventKind::DatasetRenamed,
            EventKind::DatasetDeleted,
            EventKind::DatasetRestored
        ]
    );

    // Metrics and the OpenAPI document.
    let metrics = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "weir_service_events_handled_total{service=\"registrar\"} 3",
        "weir_step_duration_seconds_count{step=\"infer\"} 3",
        "weir_projector_lag_events",
        "weir_consumer_pending_events{consumer=\"weir-inferrer\"} 0",
        "weir_object_store_bytes_total{kind=\"parquet\"}",
        "weir_rows_total{outcome=\"registered\"}",
    ] {
        assert!(metrics.contains(line), "{line} missing in\n{metrics}");
    }
    let api: serde_json::Value = s
        .http
        .get(s.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(api["paths"]["/v1/uploads/{id}/complete"]["post"].is_object());
    assert_eq!(
        s.http.get(s.url("/healthz")).send().await.unwrap().status(),
        200
    );

    // Deleted again and purged by the janitor: restore is refused for good.
    assert_eq!(del().await.unwrap().status(), 200);
    let last = s
        .journal
        .last_on(&Aggregate::Dataset(reg.dataset))
        .await
        .unwrap()
        .unwrap();
    let purged = Envelope::new(
        Aggregate::Dataset(reg.dataset),
        "alice".parse().unwrap(),
        UploadId::from_u128(reg.dataset.as_u128()),
        Some(last.envelope.event_id),
        Event::DatasetPurged(DatasetPurged {
            reason: "deleted; not restored within 30d".into(),
        }),
    );
    assert!(matches!(
        s.journal
            .append(&purged, Expect::LastSequence(last.seq))
            .await
            .unwrap(),
        AppendOutcome::Appended { .. }
    ));
    let refused = restore().await;
    assert_eq!(refused.status(), 409);
    let body = refused.text().await.unwrap();
    assert!(
        body.contains("was purged") && body.contains("can no longer be restored"),
        "{body}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_stored_hashed_and_revocation_takes_effect() {
    let s = Stack::start().await;
    // A token made after the gateway started works on its first request.
    let carol = weir_gateway::create_token(&s.journal, &owner("carol"))
        .await
        .unwrap();
    assert_eq!(s.get(&carol.token, "/v1/datasets").await.status(), 200);
    // weir's own actor (the janitor's deletions of what no event names) gets none.
    let refused = weir_gateway::create_token(&s.journal, &weir_events::Owner::system())
        .await
        .expect_err("no token for a name beginning with _");
    assert!(refused.to_string().contains("weir's own"), "{refused}");
    // The log holds its sha256, never the token.
    let log = s
        .journal
        .history(&Aggregate::Owner(owner("carol")))
        .await
        .unwrap();
    let Event::TokenCreated(created) = &log[0].envelope.event else {
        panic!("no TokenCreated");
    };
    assert_eq!(created.sha256, weir_gateway::tokens::hash(&carol.token));
    let raw = s
        .journal
        .read_all(weir_events::Subject::all())
        .await
        .unwrap();
    assert!(
        raw.iter()
            .all(|r| !format!("{:?}", r.envelope).contains(&carol.token))
    );
    // Revoked: the watcher applies it and the token stops working.
    let revoke = weir_events::Envelope::new(
        Aggregate::Owner(owner("carol")),
        owner("carol"),
        weir_gateway::tokens::NO_UPLOAD,
        Some(weir_events::EventId::new()),
        Event::TokenRevoked(weir_events::TokenRevoked {
            owner: owner("carol"),
            token_id: carol.token_id.clone(),
        }),
    );
    s.journal
        .append(&revoke, weir_journal::Expect::Any)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let status = s.get(&carol.token, "/v1/datasets").await.status();
        if status == 401 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "revoked token still accepted"
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(s.get(&s.alice, "/v1/datasets").await.status(), 200);
    s.stop().await;
}

/// Inline datasets: `POST /v1/datasets` with the data as the body (at most 1 MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_datasets_register_and_the_limit_is_one_mib() {
    let s = Stack::start().await;
    let r = s
        .http
        .post(s.url("/v1/datasets?filename=tiny.csv&table_name=tiny"))
        .bearer_auth(&s.alice)
        .body(b"a,b\n1,x\n2,y\n".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let view: serde_json::Value = r.json().await.unwrap();
    let upload: UploadId = view["id"].as_str().unwrap().parse().unwrap();
    let Terminal::Registered(reg) = s.settle(upload).await else {
        panic!("not registered")
    };
    assert_eq!((reg.table_name.as_str(), reg.statistics.rows), ("tiny", 2));
    let r = s
        .http
        .post(s.url("/v1/datasets?filename=big.csv"))
        .bearer_auth(&s.alice)
        .body(vec![b'a'; (1 << 20) + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    s.stop().await;
}
