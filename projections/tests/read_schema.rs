//! The versioned read schema (`docs/read-schema.md`): every example query of the
//! document runs on SQLite and Postgres over a realistic log and returns rows, the views
//! hold what the log says, and they survive a replay's swap.

#[macro_use]
mod common;

use common::{Chain, Kind, Log, TestDb, schema};
use sqlx::Row;
use weir_events::Step;
use weir_projections::{Db, catch_up, replay};

on_both!(documented_queries_run_on_both_databases);

/// The ```sql blocks of the document, in order.
fn documented_queries() -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/read-schema.md"
    ))
    .expect("docs/read-schema.md");
    let mut out = Vec::new();
    let mut rest = doc.as_str();
    while let Some(start) = rest.find("```sql\n") {
        let body = &rest[start + 7..];
        let end = body.find("```").expect("a closed sql block");
        out.push(body[..end].trim().to_owned());
        rest = &body[end + 3..];
    }
    out
}

async fn rows_of(db: &Db, query: &str) -> i64 {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) AS n FROM ({query}) q"
    )))
    .fetch_one(db.pool())
    .await
    .unwrap_or_else(|e| panic!("{query}: {e}"))
    .get::<i64, _>("n")
}

async fn check_views(db: &Db, queries: &[String]) {
    for q in queries {
        assert!(rows_of(db, q).await > 0, "no rows: {q}");
    }
    let failed: (String, i64) = {
        let r = sqlx::query(
            "SELECT failed_step, COUNT(*) AS n FROM v1_uploads WHERE status = 'failed' GROUP BY failed_step",
        )
        .fetch_one(db.pool())
        .await
        .unwrap();
        (r.get("failed_step"), r.get("n"))
    };
    assert_eq!(failed, ("infer".to_owned(), 1));
    let versions: Vec<(i64, Option<i64>)> =
        sqlx::query("SELECT version, parent_version FROM v1_dataset_versions ORDER BY version")
            .fetch_all(db.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get("version"), r.get("parent_version")))
            .collect();
    assert_eq!(versions.first(), Some(&(1, None)));
    let unread: i64 = sqlx::query("SELECT COUNT(*) AS n FROM v1_notifications WHERE is_read = 0")
        .fetch_one(db.pool())
        .await
        .unwrap()
        .get("n");
    assert!(unread >= 2, "ready and failed notices: {unread}");
}

async fn documented_queries_run_on_both_databases(kind: Kind) {
    let queries = documented_queries();
    assert!(queries.len() >= 6, "the document's examples: {queries:?}");
    let log = Log::start().await;
    let t = TestDb::new(kind).await;
    let cols = schema(&[("id", "Int64"), ("city", "Utf8")]);
    let mut a = Chain::new("acme", "sales.csv", Some("Sales"));
    let mut b = Chain::new("acme", "broken.csv", None);
    log.append_all(&[
        a.received(4000),
        b.received(10),
        a.combined(4000, false),
        b.combined(10, false),
        a.inferred(&cols, 100),
        b.failed(Step::Infer, "line 7: column \"id\": \"x\" is not an Int64"),
        a.claimed(),
        a.registered(&cols, 100),
    ])
    .await;
    let mut d = Chain::new_version(&a, "sales fixed.csv", 2);
    log.append_all(&[
        d.received(3000),
        d.combined(3000, true),
        d.inferred(&cols, 120),
        d.registered(&cols, 120),
        a.granted("globex", weir_events::AccessLevel::Read),
    ])
    .await;
    catch_up(&log.journal, &t.db).await.unwrap();
    check_views(&t.db, &queries).await;
    if kind == Kind::Postgres {
        check_grafana(&t.db).await;
    }
    // A replay drops and renames the tables under the views: they are there after it.
    replay(&log.journal, &t.db).await.unwrap();
    check_views(&t.db, &queries).await;
}

/// `docs/grafana/weir.json`: valid JSON, a panel per figure, and every panel's query
/// runs on Postgres over the views and returns rows.
async fn check_grafana(db: &Db) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/grafana/weir.json"
    ))
    .expect("docs/grafana/weir.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for want in [
        "Uploads per hour",
        "Failures by step",
        "Step latency p50 / p99 (ms)",
        "Bytes ingested per hour",
    ] {
        assert!(titles.contains(&want), "no panel {want:?} in {titles:?}");
    }
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let sql = target["rawSql"].as_str().expect("rawSql");
            assert!(rows_of(db, sql).await > 0, "{}: no rows", panel["title"]);
        }
    }
}
