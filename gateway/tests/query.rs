//! `POST /v1/query` on a whole weir in-process: JSON rows and CSV, the caller's tables
//! only, the row limit, a bad query and a timeout as 400 and 408, and the route in
//! `/openapi.json`.

mod common;

use common::{Stack, sample};
use weir_events::UploadId;
use weir_services::producer::Terminal;

async fn upload(s: &Stack, token: &str, table: &str, body: Vec<u8>) {
    let r = s
        .http
        .post(s.url(&format!(
            "/v1/uploads?filename={table}.csv&table_name={table}"
        )))
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let view: serde_json::Value = r.json().await.unwrap();
    let upload: UploadId = view["id"].as_str().unwrap().parse().unwrap();
    let Terminal::Registered(_) = s.settle(upload).await else {
        panic!("{table} did not register")
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_over_the_callers_datasets() {
    let s = Stack::start().await;
    upload(&s, &s.alice, "orders", sample()).await;

    let r = s
        .post_json(
            &s.alice,
            "/v1/query",
            serde_json::json!({"sql": "SELECT city, count(*) AS n, sum(quantity) AS qty FROM orders \
                                      WHERE city IN ('Austin', 'Boston') GROUP BY city ORDER BY city"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["columns"][0],
        serde_json::json!({"name": "city", "type": "Utf8", "nullable": true})
    );
    assert_eq!(body["columns"][1]["type"], "Int64");
    assert_eq!(body["row_count"], 2);
    assert_eq!(body["truncated"], false);
    let rows = body["rows"].as_array().unwrap();
    assert_eq!(rows[0]["city"], "Austin");
    assert_eq!(rows[1]["city"], "Boston");
    // The same figures as reading the sample's CSV by hand.
    let text = String::from_utf8(sample()).unwrap();
    for row in rows {
        let city = row["city"].as_str().unwrap();
        let lines: Vec<&str> = text
            .lines()
            .skip(1)
            .filter(|l| l.split(',').nth(3) == Some(city))
            .collect();
        assert_eq!(row["n"], lines.len() as u64, "{city}");
        let qty: u64 = lines
            .iter()
            .map(|l| l.split(',').nth(7).unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(row["qty"], qty, "{city}");
    }

    // CSV when asked, with the header first.
    let r = s
        .http
        .post(s.url("/v1/query"))
        .bearer_auth(&s.alice)
        .header("accept", "text/csv")
        .json(&serde_json::json!({"sql": "SELECT order_id, city FROM orders ORDER BY order_id", "max_rows": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(r.headers()["weir-truncated"], "true");
    assert_eq!(
        r.text().await.unwrap(),
        "order_id,city\n1001,Austin\n1002,Hartford\n"
    );

    // The row limit.
    let r = s
        .post_json(
            &s.alice,
            "/v1/query",
            serde_json::json!({"sql": "SELECT * FROM orders", "max_rows": 5}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (body["row_count"].as_u64(), body["truncated"].as_bool()),
        (Some(5), Some(true))
    );
    assert_eq!(body["rows"].as_array().unwrap().len(), 5);

    // Bob has no table called orders; Alice's stays hers.
    let r = s
        .post_json(
            &s.bob,
            "/v1/query",
            serde_json::json!({"sql": "SELECT * FROM orders"}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["error"],
        "no such table orders (no datasets are registered for you)"
    );
    let r = s
        .post_json(
            &s.bob,
            "/v1/query",
            serde_json::json!({"sql": "SELECT * FROM alice.orders"}),
        )
        .await;
    assert_eq!(r.status(), 400);

    // Bad SQL, a statement that is not a query, bad limits: 400 naming the problem.
    for (sql, needle) in [
        ("SELEC 1", "SELEC"),
        ("SELECT nope FROM orders", "nope"),
        ("CREATE TABLE t AS SELECT 1", "only queries"),
    ] {
        let r = s
            .post_json(&s.alice, "/v1/query", serde_json::json!({"sql": sql}))
            .await;
        assert_eq!(r.status(), 400, "{sql}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains(needle),
            "{sql}: {body}"
        );
    }
    for (body, field) in [
        (
            serde_json::json!({"sql": "SELECT 1", "max_rows": 0}),
            "max_rows",
        ),
        (
            serde_json::json!({"sql": "SELECT 1", "timeout_secs": 0}),
            "timeout_secs",
        ),
        (serde_json::json!({"query": "SELECT 1"}), "sql"),
    ] {
        let r = s.post_json(&s.alice, "/v1/query", body).await;
        assert_eq!(r.status(), 400, "{field}");
        let text = r.text().await.unwrap();
        assert!(text.contains(field), "{field}: {text}");
    }

    // A query past its time limit: 408.
    let r = s
        .post_json(
            &s.alice,
            "/v1/query",
            serde_json::json!({"sql": "SELECT count(*) FROM orders a, orders b, orders c, orders d \
                                      WHERE a.amount + b.amount + c.amount + d.amount > 0",
                               "timeout_secs": 0.3}),
        )
        .await;
    assert_eq!(r.status(), 408);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["error"],
        "the query did not finish within its time limit of 0.3 s"
    );

    // No token, no query.
    let r = s
        .http
        .post(s.url("/v1/query"))
        .json(&serde_json::json!({"sql": "SELECT 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // The route is in the API description.
    let doc: serde_json::Value = s
        .http
        .get(s.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["paths"]["/v1/query"]["post"].is_object(),
        "{}",
        doc["paths"]
    );
    s.stop().await;
}
