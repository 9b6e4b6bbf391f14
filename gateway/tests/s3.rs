//! The gateway on a real S3-protocol server (moto, started per test by the testkit):
//! the presigned multipart flow's part URLs point at the gateway, which writes each
//! part into the bucket; the upload registers, its Parquet is in the bucket under the
//! prefix, and the preview reads it from there. Built only with `--features s3`.

mod common;

use common::{Stack, sample};
use weir_services::Store;
use weir_services::producer::Terminal;
use weir_testkit::S3Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_through_presigned_gateway_urls_lands_in_s3_and_registers() {
    let Some(s3) = S3Server::start() else { return };
    s3.create_bucket("weir");
    let store = Store::open_with("s3://weir/gw", s3.options()).expect("open the s3 store");
    let s = Stack::start_on(Some(store), |_| {}).await;

    // The part URLs a client gets point at the gateway, not at the bucket.
    let csv = sample();
    let init: serde_json::Value = s
        .post_json(
            &s.alice,
            "/v1/uploads/multipart",
            serde_json::json!({"filename": "probe.csv", "size": csv.len(), "part_size": 4096}),
        )
        .await
        .json()
        .await
        .unwrap();
    for part in init["parts"].as_array().unwrap() {
        let url = part["url"].as_str().unwrap();
        assert!(url.starts_with(&format!("{}/v1/uploads/", s.base)), "{url}");
    }

    let (upload, accepted) = s
        .upload_multipart(&s.alice, "orders.csv", &csv, 4096, None)
        .await;
    assert_eq!(accepted["part_count"], 4);
    let Terminal::Registered(reg) = s.settle(upload).await else {
        panic!("upload did not register");
    };

    let root = Store::open_with("s3://weir", s3.options()).unwrap();
    let keys = root.list("").await.unwrap();
    let parquet = format!("gw/{}", reg.parquet);
    assert!(keys.contains(&parquet), "{parquet} not in {keys:?}");
    assert!(keys.iter().all(|k| k.starts_with("gw/")), "{keys:?}");
    assert!(
        !keys.iter().any(|k| k.contains(&upload.to_string())),
        "the parts are gone once combined: {keys:?}"
    );

    let ds: serde_json::Value = s
        .get(&s.alice, &format!("/v1/datasets/{}", reg.dataset))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        ds["location"].as_str(),
        Some(format!("s3://weir/gw/{}", reg.parquet).as_str())
    );
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
    s.stop().await;
}
