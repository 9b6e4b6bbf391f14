//! `weir query` as a user runs it against a running `weir up`: the table, `--json`,
//! `--csv` and `--parquet` outputs, the row limit, `@v1` after a second version,
//! another owner's view, and bad SQL.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn weir() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weir"));
    c.env_remove("NATS_URL")
        .env_remove("WEIR_DATA_DIR")
        .env_remove("WEIR_OWNER")
        .kill_on_drop(true);
    c
}

async fn start(args: &[&str]) -> Child {
    let mut child = weir().args(args).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("no ready line within 60 s")
        .unwrap()
        .expect("exited before ready");
    assert!(line.starts_with("ready"), "{line}");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
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

fn text_header() -> Vec<String> {
    let text = std::fs::read_to_string(sample()).unwrap();
    text.lines()
        .next()
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .collect()
}

fn sample() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../samples/orders.csv").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_outputs_limits_versions_and_owners() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let mut up = start(&["up", "--data-dir", data, "--http", "127.0.0.1:0"]).await;
    let (code, out, err) = run(&[
        "upload",
        "--data-dir",
        data,
        &sample(),
        "--label",
        "Sample orders",
        "--wait",
        "--json",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let uploaded: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(uploaded["table_name"], "sample_orders");
    let dataset = uploaded["dataset_id"].as_str().unwrap().to_owned();

    let q = |sql: &str, extra: &[&str]| {
        let mut args = vec!["query", "--data-dir", data, sql];
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let query = |sql: &str, extra: &[&str]| {
        let args = q(sql, extra);
        async move { run(&args.iter().map(String::as_str).collect::<Vec<_>>()).await }
    };

    // The table view.
    let (code, out, err) = query(
        "SELECT city, count(*) AS n FROM sample_orders WHERE city IN ('Austin', 'Boston') GROUP BY city ORDER BY city",
        &[],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(sample()).unwrap();
    let count = |city: &str| {
        text.lines()
            .filter(|l| l.split(',').nth(3) == Some(city))
            .count()
    };
    let (austin, boston) = (count("Austin"), count("Boston"));
    let w = austin.max(boston).to_string().len();
    let want = [
        format!("city   | {:>w$}", "n"),
        format!("-------+-{}", "-".repeat(w)),
        format!("Austin | {austin:>w$}"),
        format!("Boston | {boston:>w$}"),
        "(2 rows)".to_owned(),
    ];
    assert_eq!(out.lines().collect::<Vec<_>>(), want, "{out}");

    // JSON lines, one object per row with nulls.
    let (code, out, err) = query(
        "SELECT order_id, note FROM sample_orders ORDER BY order_id LIMIT 4",
        &["--json"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0], serde_json::json!({"order_id": 1001, "note": null}));
    assert_eq!(
        rows[3],
        serde_json::json!({"order_id": 1004, "note": "gift, wrapped"})
    );

    // CSV.
    let (code, out, err) = query(
        "SELECT order_id, note FROM sample_orders ORDER BY order_id LIMIT 4",
        &["--csv"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "order_id,note\n1001,\n1002,\n1003,\n1004,\"gift, wrapped\"\n"
    );

    // Parquet: every column, the rows the filter keeps.
    let file = dir.path().join("out.parquet");
    let (code, out, err) = query(
        "SELECT * FROM sample_orders WHERE express",
        &["--parquet", file.to_str().unwrap()],
    )
    .await;
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    let express = std::fs::read_to_string(sample())
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| l.split(',').nth(8) == Some("true"))
        .count();
    assert!(express > 0);
    let (code, out, err) = query(
        "SELECT count(*) AS n FROM sample_orders WHERE express",
        &["--json"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), format!("{{\"n\":{express}}}"));
    let (rows, names) = parquet_rows(&file);
    assert_eq!(rows, express as i64);
    let header = text_header();
    assert_eq!(names, header);

    // The row limit: the rows, then the reason on stderr and exit code 1.
    let (code, out, err) = query(
        "SELECT order_id FROM sample_orders",
        &["--json", "--max-rows", "3"],
    )
    .await;
    assert_eq!(code, 1);
    assert_eq!(out.lines().count(), 3);
    assert!(
        err.contains("the result has more than 3 rows; printed the first 3"),
        "{err}"
    );
    let (code, out, _) = query("SELECT order_id FROM sample_orders", &["--max-rows", "0"]).await;
    assert_eq!(code, 0);
    assert!(out.ends_with("(200 rows)\n"), "{out}");

    // A second version: the head is the new one, @v1 the first.
    let small = dir.path().join("small.csv");
    std::fs::write(
        &small,
        text.lines().take(11).collect::<Vec<_>>().join("\n") + "\n",
    )
    .unwrap();
    let (code, _, err) = run(&[
        "upload",
        "--data-dir",
        data,
        small.to_str().unwrap(),
        "--dataset",
        &dataset,
        "--wait",
        "--json",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = query(
        "SELECT (SELECT count(*) FROM sample_orders) AS head, (SELECT count(*) FROM \"sample_orders@v1\") AS first",
        &["--json"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), r#"{"head":10,"first":200}"#);

    // Another owner sees no such table; bad SQL says what is wrong.
    let (code, out, err) = query("SELECT * FROM sample_orders", &["--owner", "mallory"]).await;
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.contains("no such table sample_orders (no datasets are registered for you)"),
        "{err}"
    );
    let (code, _, err) = query("SELECT FROM WHERE", &[]).await;
    assert_eq!(code, 1);
    assert!(err.starts_with("weir: "), "{err}");
    let (code, _, err) = query("SELECT 1", &["--timeout", "0"]).await;
    assert_eq!(code, 2, "{err}");

    let pid = up.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), up.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// Rows and column names of a Parquet file, as the parquet crate reads them.
fn parquet_rows(path: &std::path::Path) -> (i64, Vec<String>) {
    let file = std::fs::File::open(path).unwrap();
    let builder =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let names = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    (builder.metadata().file_metadata().num_rows(), names)
}
