//! Grants through the API against a running weir (real nats-server, services,
//! projector, gateway): no access answers 404, a grant too weak 403; read, write and
//! admin allow what the README's matrix says; a second grant changes the level, a
//! revoke takes effect at once, and the inferrer refuses a version from an owner whose
//! grant is gone even when the gateway is bypassed.

mod common;

use common::{Stack, owner};
use weir_events::{DatasetId, UploadId};
use weir_services::producer::Terminal;

async fn send(
    s: &Stack,
    method: reqwest::Method,
    token: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut request = s.http.request(method, s.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or_default())
}

async fn get(s: &Stack, token: &str, path: &str) -> u16 {
    send(s, reqwest::Method::GET, token, path, None).await.0
}

async fn put_grant(s: &Stack, token: &str, d: DatasetId, who: &str, level: &str) -> u16 {
    let (status, body) = send(
        s,
        reqwest::Method::PUT,
        token,
        &format!("/v1/datasets/{d}/grants/{who}"),
        Some(serde_json::json!({ "level": level })),
    )
    .await;
    if status == 200 {
        assert_eq!(body["level"], level, "{body}");
    }
    status
}

async fn revoke(s: &Stack, token: &str, d: DatasetId, who: &str) -> u16 {
    send(
        s,
        reqwest::Method::DELETE,
        token,
        &format!("/v1/datasets/{d}/grants/{who}"),
        None,
    )
    .await
    .0
}

/// A single-shot upload (a new version when `dataset` is given): the status, and the
/// upload id when accepted.
async fn upload(
    s: &Stack,
    token: &str,
    dataset: Option<DatasetId>,
    body: &[u8],
) -> (u16, Option<UploadId>) {
    let target = dataset.map(|d| format!("&dataset={d}")).unwrap_or_default();
    let (status, view) = send_bytes(
        s,
        token,
        &format!("/v1/uploads?filename=kv.csv{target}"),
        body,
    )
    .await;
    let id = view["id"].as_str().and_then(|i| i.parse().ok());
    (status, id)
}

async fn send_bytes(s: &Stack, token: &str, path: &str, body: &[u8]) -> (u16, serde_json::Value) {
    let r = s
        .http
        .post(s.url(path))
        .bearer_auth(token)
        .body(body.to_vec())
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

async fn patch_label(s: &Stack, token: &str, d: DatasetId, label: &str) -> u16 {
    send(
        s,
        reqwest::Method::PATCH,
        token,
        &format!("/v1/datasets/{d}"),
        Some(serde_json::json!({ "label": label })),
    )
    .await
    .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_are_enforced_404_without_403_too_weak() {
    let s = Stack::start().await;
    let carol = weir_gateway::create_token(&s.journal, &owner("carol"))
        .await
        .expect("token")
        .token;
    let (status, id) = upload(&s, &s.alice, None, b"k,v\n1,one\n2,two\n").await;
    assert_eq!(status, 202);
    let Terminal::Registered(reg) = s.settle(id.unwrap()).await else {
        panic!("not registered")
    };
    let d = reg.dataset;
    let path = format!("/v1/datasets/{d}");
    let v2 = b"k,v\n3,three\n";

    // No grant: the dataset does not exist for Bob, whatever he tries.
    assert_eq!(get(&s, &s.bob, &path).await, 404);
    assert_eq!(get(&s, &s.bob, &format!("{path}/grants")).await, 404);
    assert_eq!(get(&s, &s.bob, &format!("{path}/preview")).await, 404);
    assert_eq!(upload(&s, &s.bob, Some(d), v2).await.0, 404);
    assert_eq!(put_grant(&s, &s.bob, d, "bob", "admin").await, 404);
    let (_, list) = send(&s, reqwest::Method::GET, &s.bob, "/v1/datasets", None).await;
    assert_eq!(list["total"], 0);

    // Read: Bob sees it (listed as shared), cannot change it (403).
    assert_eq!(put_grant(&s, &s.alice, d, "bob", "read").await, 200);
    s.catch_up().await;
    let (status, view) = send(&s, reqwest::Method::GET, &s.bob, &path, None).await;
    assert_eq!((status, view["access"].as_str()), (200, Some("read")));
    assert_eq!(view["owner"], "alice");
    assert_eq!(get(&s, &s.bob, &format!("{path}/preview")).await, 200);
    let (_, list) = send(&s, reqwest::Method::GET, &s.bob, "/v1/datasets", None).await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["datasets"][0]["shared"], "read");
    assert_eq!(list["datasets"][0]["owner"], "alice");
    let (_, alices) = send(&s, reqwest::Method::GET, &s.alice, "/v1/datasets", None).await;
    assert!(alices["datasets"][0].get("shared").is_none(), "{alices}");
    assert_eq!(upload(&s, &s.bob, Some(d), v2).await.0, 403);
    assert_eq!(patch_label(&s, &s.bob, d, "Bob's").await, 403);
    assert_eq!(
        send(&s, reqwest::Method::DELETE, &s.bob, &path, None)
            .await
            .0,
        403
    );
    assert_eq!(put_grant(&s, &s.bob, d, "carol", "read").await, 403);
    let (status, body) = send(
        &s,
        reqwest::Method::POST,
        &s.bob,
        &format!("/v1/uploads?filename=x.csv&dataset={d}"),
        None,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("bob has read access"),
        "{body}"
    );
    // The same through a NATS upload request.
    let reply = s
        .journal
        .client()
        .request(
            weir_gateway::requests::UPLOAD_SUBJECT,
            serde_json::json!({"token": s.bob, "inline": "k,v\n3,three\n", "filename": "v2.csv",
                "dataset": d.to_string()})
            .to_string()
            .into(),
        )
        .await
        .unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert!(
        reply["error"]
            .as_str()
            .unwrap_or_default()
            .contains("bob has read access"),
        "{reply}"
    );
    // Granting the same level again appends nothing.
    let (status, same) = send(
        &s,
        reqwest::Method::PUT,
        &s.alice,
        &format!("{path}/grants/bob"),
        Some(serde_json::json!({"level": "read"})),
    )
    .await;
    assert_eq!(
        (status, same["appended"].as_array().unwrap().len()),
        (200, 0)
    );

    // Write (a second grant changes the level): Bob adds a version, still cannot
    // relabel or grant.
    assert_eq!(put_grant(&s, &s.alice, d, "bob", "write").await, 200);
    s.catch_up().await;
    let (status, id) = upload(&s, &s.bob, Some(d), v2).await;
    assert_eq!(status, 202);
    let Terminal::Registered(bobs) = s.settle(id.unwrap()).await else {
        panic!("Bob's version was not registered")
    };
    assert_eq!((bobs.dataset, bobs.version), (d, 2));
    assert_eq!(bobs.owner, owner("alice"), "the dataset stays Alice's");
    assert_eq!(patch_label(&s, &s.bob, d, "Bob's").await, 403);
    assert_eq!(put_grant(&s, &s.bob, d, "carol", "read").await, 403);

    // Admin: Bob grants Carol, relabels, revokes Carol.
    assert_eq!(put_grant(&s, &s.alice, d, "bob", "admin").await, 200);
    s.catch_up().await;
    assert_eq!(get(&s, &carol, &path).await, 404);
    assert_eq!(put_grant(&s, &s.bob, d, "carol", "read").await, 200);
    s.catch_up().await;
    assert_eq!(get(&s, &carol, &path).await, 200);
    assert_eq!(patch_label(&s, &s.bob, d, "Bob's").await, 200);
    let (status, grants) = send(
        &s,
        reqwest::Method::GET,
        &carol,
        &format!("{path}/grants"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(grants["owner"], "alice");
    let rows: Vec<(String, String, String)> = grants["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["grantee"].as_str().unwrap().to_owned(),
                g["level"].as_str().unwrap().to_owned(),
                g["granted_by"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [("bob", "admin", "alice"), ("carol", "read", "bob")].map(|(a, b, c)| (
            a.to_owned(),
            b.to_owned(),
            c.to_owned()
        ))
    );
    assert_eq!(revoke(&s, &s.bob, d, "carol").await, 200);
    s.catch_up().await;
    assert_eq!(get(&s, &carol, &path).await, 404);
    assert_eq!(revoke(&s, &s.bob, d, "carol").await, 404, "no grant left");

    // Refused: a grant to the owner, a level that is not one, a bad owner name.
    assert_eq!(put_grant(&s, &s.alice, d, "alice", "read").await, 400);
    assert_eq!(put_grant(&s, &s.alice, d, "carol", "owner").await, 400);
    assert_eq!(
        put_grant(&s, &s.alice, d, "Not An Owner", "read").await,
        400
    );

    // Revoked: Bob loses everything at once.
    assert_eq!(revoke(&s, &s.alice, d, "bob").await, 200);
    s.catch_up().await;
    assert_eq!(get(&s, &s.bob, &path).await, 404);
    assert_eq!(upload(&s, &s.bob, Some(d), v2).await.0, 404);

    // Bypassing the gateway (straight to the store and the log), Bob's version is
    // refused by the inferrer, which reads the grants from the dataset's events.
    let file = s.dir.path().join("v3.csv");
    std::fs::write(&file, b"k,v\n9,nine\n").unwrap();
    let request = weir_services::producer::UploadRequest {
        owner: owner("bob"),
        filename: "v3.csv".into(),
        label: None,
        table_name: None,
        format: None,
        content_type: None,
        part_size: 1 << 20,
        options: Default::default(),
        dataset: Some(d),
        parent_version: None,
        branch: None,
    };
    let id = weir_services::producer::upload_file(&s.journal, &s.store, &file, &request, |_| {})
        .await
        .unwrap();
    let Terminal::Failed(failed) = s.settle(id).await else {
        panic!("a revoked owner's version registered")
    };
    assert!(
        failed.reason.contains("owner bob has no access to dataset"),
        "{}",
        failed.reason
    );

    // The audit trail: who granted what to whom, in order.
    let trail = weir_projections::history(&s.db, weir_projections::EntityId::Dataset(d))
        .await
        .unwrap();
    let lines: Vec<String> = trail
        .iter()
        .filter(|e| e.kind.starts_with("dataset_access"))
        .map(|e| format!("{}: {}", e.actor, e.summary))
        .collect();
    assert_eq!(
        lines,
        [
            "alice: granted read access to bob",
            "alice: granted write access to bob",
            "alice: granted admin access to bob",
            "bob: granted read access to carol",
            "bob: revoked the access of carol",
            "alice: revoked the access of bob",
        ]
    );

    // The projections rebuilt from the log equal the live ones.
    let fresh = weir_projections::Db::connect(&s.dir.path().join("again.db").display().to_string())
        .await
        .unwrap();
    weir_projections::catch_up(&s.journal, &fresh)
        .await
        .unwrap();
    s.catch_up().await;
    let live = weir_projections::snapshot(&s.db, weir_projections::Tables::Live)
        .await
        .unwrap();
    let again = weir_projections::snapshot(&fresh, weir_projections::Tables::Live)
        .await
        .unwrap();
    assert_eq!(live, again);
    assert!(
        live.rows("dataset_grants").is_empty(),
        "every grant revoked"
    );
    s.stop().await;
}
