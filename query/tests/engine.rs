//! The query engine over datasets the real pipeline registered (a nats-server per
//! test, the services, the projections on SQLite or Postgres, a local object store):
//! ten queries give DuckDB's results over the same Parquet files; an owner sees only
//! their own tables; `@vN` reads an older version; row limit, time limit, refused
//! statements and bad SQL fail with clear errors.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use weir_events::{
    AccessLevel, Aggregate, DatasetAccessGranted, DatasetAccessRevoked, DatasetId,
    DatasetRegistered, Envelope, Event, EventId, Owner, StreamSpec, UploadId,
};
use weir_journal::{Expect, Journal};
use weir_projections::Db;
use weir_query::{Engine, Limits, QueryError};
use weir_services::producer::{self, Terminal, UploadRequest};
use weir_services::{Ctx, Store};
use weir_testkit::NatsServer;

/// The whole pipeline in-process, and an engine over what it registers.
struct Stack {
    journal: Journal,
    store: Store,
    db: Db,
    engine: Engine,
    dir: tempfile::TempDir,
    _stop: tokio::sync::watch::Sender<bool>,
    postgres: Option<String>,
    // Last: the server outlives everything that talks to it.
    _nats: NatsServer,
}

fn postgres_base() -> String {
    std::env::var("WEIR_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

impl Stack {
    async fn start(postgres: bool) -> Self {
        let nats = NatsServer::start();
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::connect(&nats.url(), &StreamSpec::default())
            .await
            .unwrap();
        let store = Store::local(&dir.path().join("objects")).unwrap();
        let (db, pg_name) = if postgres {
            let id = weir_events::UploadId::new().to_string();
            let name = format!("weir_q_{}", id.trim_start_matches("upld_").to_lowercase());
            let admin = Db::open(&format!("{}/postgres", postgres_base()))
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "tests need Postgres at {} (set WEIR_TEST_POSTGRES): {e}",
                        postgres_base()
                    )
                });
            sqlx_create(&admin, &name).await;
            let db = Db::connect(&format!("{}/{name}", postgres_base()))
                .await
                .unwrap();
            (db, Some(name))
        } else {
            let db = Db::connect(&dir.path().join("weir.db").display().to_string())
                .await
                .unwrap();
            (db, None)
        };
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(weir_services::run_all(
            Ctx {
                journal: journal.clone(),
                store: store.clone(),
                work_dir: work,
                limits: Default::default(),
            },
            stop_rx,
        ));
        let engine = Engine::new(db.clone(), store.object_store()).unwrap();
        Self {
            journal,
            store,
            db,
            engine,
            dir,
            _stop: stop,
            postgres: pg_name,
            _nats: nats,
        }
    }

    /// Uploads `body` as `owner`'s table `table` (or as a new version of `dataset`)
    /// and waits until it is registered and projected.
    async fn upload(
        &self,
        owner: &str,
        table: &str,
        body: &[u8],
        dataset: Option<DatasetId>,
    ) -> DatasetRegistered {
        let path = self
            .dir
            .path()
            .join(format!("{owner}-{table}-{}.csv", dataset.is_some()));
        std::fs::write(&path, body).unwrap();
        let request = UploadRequest {
            owner: owner.parse().unwrap(),
            filename: format!("{table}.csv"),
            label: None,
            table_name: dataset.is_none().then(|| table.to_owned()),
            format: None,
            content_type: None,
            part_size: 1 << 20,
            options: Default::default(),
            dataset,
            parent_version: None,
            branch: None,
        };
        let id = producer::upload_file(&self.journal, &self.store, &path, &request, |_| {})
            .await
            .unwrap();
        let terminal =
            tokio::time::timeout(Duration::from_secs(60), producer::wait(&self.journal, id))
                .await
                .expect("registered within 60 s")
                .unwrap();
        let Terminal::Registered(r) = terminal else {
            panic!("{table}: {terminal:?}");
        };
        weir_projections::catch_up(&self.journal, &self.db)
            .await
            .unwrap();
        r
    }

    /// Appends `event` on dataset `d` as its owner `by` (conditionally on the dataset's
    /// last event, as the CLI does) and waits until it is projected.
    async fn append_dataset(&self, d: DatasetId, by: &str, event: Event) {
        let last = self.journal.last_on(&Aggregate::Dataset(d)).await.unwrap();
        let env = Envelope::new(
            Aggregate::Dataset(d),
            by.parse().unwrap(),
            UploadId::from_u128(d.as_u128()),
            Some(EventId::new()),
            event,
        );
        let expect = last.map_or(Expect::Empty, |r| Expect::LastSequence(r.seq));
        assert!(matches!(
            self.journal.append(&env, expect).await.unwrap(),
            weir_journal::AppendOutcome::Appended { .. }
        ));
        weir_projections::catch_up(&self.journal, &self.db)
            .await
            .unwrap();
    }

    fn parquet(&self, r: &DatasetRegistered) -> PathBuf {
        self.store.local_root().unwrap().join(r.parquet.as_str())
    }

    async fn run(
        &self,
        owner: &str,
        sql: &str,
        limits: Limits,
    ) -> Result<Vec<Vec<String>>, QueryError> {
        let owner: Owner = owner.parse().unwrap();
        let mut rows = self.engine.query(&owner, sql, limits).await?;
        let names: Vec<String> = rows
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let mut out = Vec::new();
        while let Some(batch) = rows.next_batch().await? {
            let mut writer = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow::json::writer::JsonArray>(Vec::new());
            writer.write(&batch).unwrap();
            writer.finish().unwrap();
            let objects: Vec<serde_json::Map<String, serde_json::Value>> =
                serde_json::from_slice(&writer.into_inner()).unwrap();
            for object in objects {
                out.push(names.iter().map(|n| canonical(&object[n])).collect());
            }
        }
        Ok(out)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let Some(name) = self.postgres.take() else {
            return;
        };
        let pool = self.db.pool().clone();
        // Drop runs inside the test's runtime: clean up on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                pool.close().await;
                if let Ok(admin) = Db::open(&format!("{}/postgres", postgres_base())).await {
                    sqlx_drop(&admin, &name).await;
                }
            });
        })
        .join();
    }
}

async fn sqlx_create(admin: &Db, name: &str) {
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(admin.pool())
        .await
        .expect("create test database");
    admin.close().await;
}

async fn sqlx_drop(admin: &Db, name: &str) {
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(admin.pool())
    .await;
    admin.close().await;
}

/// A value as both engines' results are compared: numbers to 9 significant digits
/// (integers exactly), times as `YYYY-MM-DDTHH:MM:SS[.f]` in UTC, null as `NULL`.
fn canonical(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "NULL".into(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) => number(n.as_f64().unwrap()),
        serde_json::Value::String(s) => time(s).unwrap_or_else(|| s.clone()),
        other => other.to_string(),
    }
}

fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x:.8e}")
    }
}

/// `2026-01-06 22:39:00+00:00`, `2026-01-06T22:39:00Z`, `2026-01-06T22:39:00` → one form.
fn time(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let shape = b.len() >= 19
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b'T' || b[10] == b' ')
        && b[13] == b':'
        && b[16] == b':';
    if !shape {
        return None;
    }
    let mut rest = &s[19..];
    let mut fraction = "";
    if let Some(f) = rest.strip_prefix('.') {
        let digits = f.bytes().take_while(u8::is_ascii_digit).count();
        fraction = f[..digits].trim_end_matches('0');
        rest = &f[digits..];
    }
    if !matches!(rest, "" | "Z" | "+00:00" | "+00") {
        return None;
    }
    let dot = if fraction.is_empty() { "" } else { "." };
    Some(format!("{}T{}{dot}{fraction}", &s[..10], &s[11..19]))
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("WEIR_PYTHON") {
        return p.into();
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup (it installs duckdb)",
        p.display()
    );
    p
}

/// DuckDB's results of `queries` over `tables` (name → Parquet file), canonical.
fn duckdb(tables: &[(&str, &Path)], queries: &[&str]) -> Vec<(Vec<String>, Vec<Vec<String>>)> {
    let job = serde_json::json!({
        "tables": tables.iter().map(|(n, p)| (n.to_string(), serde_json::Value::from(p.display().to_string()))).collect::<serde_json::Map<_, _>>(),
        "queries": queries,
    });
    let mut child = std::process::Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/duckdb_query.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), job.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    results
        .iter()
        .map(|r| {
            let columns = r["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_owned())
                .collect();
            let rows = r["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|row| row.as_array().unwrap().iter().map(canonical).collect())
                .collect();
            (columns, rows)
        })
        .collect()
}

/// 40 customers in three segments; some have no orders in the sample, one has no
/// credit limit.
fn customers_csv() -> String {
    let mut out = String::from("customer_id,name,segment,signed_up,credit_limit\n");
    for i in 1..=40 {
        let segment = ["retail", "wholesale", "online"][i % 3];
        let limit = if i == 7 {
            String::new()
        } else {
            format!("{}.5", 1000 + i * 37)
        };
        out.push_str(&format!(
            "cust-{i:03},Customer {i},{segment},2025-{:02}-{:02},{limit}\n",
            i % 12 + 1,
            i % 28 + 1
        ));
    }
    out
}

fn sample_orders() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/orders.csv")).unwrap()
}

/// Ten queries: filters, group by, a join of two datasets, windows, date functions.
const QUERIES: [&str; 10] = [
    // 1. filters
    "SELECT order_id, city, amount FROM orders \
     WHERE amount > 300 AND city IN ('Austin', 'Boston', 'Denver') AND NOT express",
    // 2. nulls and patterns
    "SELECT order_id, zip, note FROM orders WHERE note IS NOT NULL OR zip LIKE '0%'",
    // 3. group by with aggregates over numbers, dates and timestamps
    "SELECT city, count(*) AS n, sum(quantity) AS qty, avg(amount) AS mean, \
     min(ordered_on) AS first_day, max(shipped_at) AS last_shipped \
     FROM orders GROUP BY city",
    // 4. group by with having
    "SELECT customer, count(*) AS n, sum(amount) AS total FROM orders \
     GROUP BY customer HAVING count(*) >= 3",
    // 5. join of two datasets
    "SELECT c.segment, count(*) AS n, sum(o.amount) AS total, max(c.credit_limit) AS top_limit \
     FROM orders o JOIN customers c ON o.customer = c.customer_id GROUP BY c.segment",
    // 6. left join: customers without orders count 0
    "SELECT c.customer_id, c.credit_limit, count(o.order_id) AS n \
     FROM customers c LEFT JOIN orders o ON o.customer = c.customer_id \
     GROUP BY c.customer_id, c.credit_limit",
    // 7. window: rank within a partition
    "SELECT order_id, customer, amount, \
     row_number() OVER (PARTITION BY customer ORDER BY amount DESC, order_id) AS nth \
     FROM orders",
    // 8. window: running total and the previous row
    "SELECT order_id, amount, \
     sum(amount) OVER (ORDER BY order_id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running, \
     lag(quantity) OVER (ORDER BY order_id) AS previous_quantity FROM orders",
    // 9. date parts
    "SELECT extract(year FROM ordered_on) AS y, extract(month FROM ordered_on) AS m, \
     date_part('dow', ordered_on) AS dow, count(*) AS n FROM orders GROUP BY 1, 2, 3",
    // 10. date truncation, date arithmetic and casts
    "SELECT date_trunc('day', shipped_at) AS shipped_day, count(*) AS n \
     FROM orders WHERE shipped_at >= CAST(ordered_on AS TIMESTAMP) + INTERVAL '1 day' \
     AND ordered_on BETWEEN DATE '2026-01-01' AND DATE '2026-03-31' GROUP BY 1",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_queries_give_duckdbs_results() {
    let stack = Stack::start(false).await;
    let orders = stack
        .upload("alice", "orders", &sample_orders(), None)
        .await;
    let customers = stack
        .upload("alice", "customers", customers_csv().as_bytes(), None)
        .await;
    let (orders_file, customers_file) = (stack.parquet(&orders), stack.parquet(&customers));
    let expected = duckdb(
        &[("orders", &orders_file), ("customers", &customers_file)],
        &QUERIES,
    );
    for (sql, (columns, mut want)) in QUERIES.iter().zip(expected) {
        let owner: Owner = "alice".parse().unwrap();
        let rows = stack
            .engine
            .query(
                &owner,
                sql,
                Limits {
                    max_rows: None,
                    timeout: Duration::from_secs(60),
                },
            )
            .await
            .unwrap();
        let names: Vec<String> = rows
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        drop(rows);
        assert_eq!(names, columns, "{sql}");
        let mut got = stack
            .run(
                "alice",
                sql,
                Limits {
                    max_rows: None,
                    timeout: Duration::from_secs(60),
                },
            )
            .await
            .unwrap();
        assert!(
            !got.is_empty(),
            "{sql}: no rows, a comparison that proves little"
        );
        got.sort();
        want.sort();
        assert_eq!(got, want, "{sql}");
    }
}

async fn isolation_versions_and_limits(postgres: bool) {
    let stack = Stack::start(postgres).await;
    let v1 = stack
        .upload("alice", "orders", &sample_orders(), None)
        .await;
    // A second version with the header and the first 50 rows.
    let text = String::from_utf8(sample_orders()).unwrap();
    let fifty: String = text.lines().take(51).map(|l| format!("{l}\n")).collect();
    let v2 = stack
        .upload("alice", "orders", fifty.as_bytes(), Some(v1.dataset))
        .await;
    assert_eq!((v2.dataset, v2.version), (v1.dataset, 2));
    stack
        .upload("bob", "bobs_orders", fifty.as_bytes(), None)
        .await;
    let limits = Limits {
        max_rows: None,
        timeout: Duration::from_secs(60),
    };
    let count = |sql: &'static str, owner: &'static str| {
        let stack = &stack;
        async move {
            stack
                .run(owner, sql, limits)
                .await
                .map(|rows| rows[0][0].clone())
        }
    };

    // The head, and versions by name.
    assert_eq!(
        count("SELECT count(*) FROM orders", "alice").await.unwrap(),
        "50"
    );
    assert_eq!(
        count("SELECT count(*) FROM \"orders@v1\"", "alice")
            .await
            .unwrap(),
        "200"
    );
    assert_eq!(
        count("SELECT count(*) FROM \"orders@1\"", "alice")
            .await
            .unwrap(),
        "200"
    );
    assert_eq!(
        count("SELECT count(*) FROM \"orders@v2\"", "alice")
            .await
            .unwrap(),
        "50"
    );
    assert_eq!(
        count("SELECT count(*) FROM \"orders@main\"", "alice")
            .await
            .unwrap(),
        "50"
    );
    assert_eq!(
        count("SELECT count(*) FROM alice.orders", "alice")
            .await
            .unwrap(),
        "50"
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM \"orders@v1\" a JOIN orders b ON a.order_id = b.order_id",
            "alice"
        )
        .await
        .unwrap(),
        "50"
    );
    let err = count("SELECT count(*) FROM \"orders@v9\"", "alice")
        .await
        .unwrap_err();
    assert!(matches!(err, QueryError::NoSuchVersion { .. }), "{err}");
    assert!(
        err.to_string().contains("no version, branch or tag \"v9\""),
        "{err}"
    );

    // Owners see only their own tables.
    let err = count("SELECT count(*) FROM orders", "bob")
        .await
        .unwrap_err();
    assert!(matches!(err, QueryError::NoSuchTable { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "no such table orders (your tables: bobs_orders)"
    );
    let err = count("SELECT count(*) FROM alice.orders", "bob")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no such table alice.orders (alice has not shared it with you)"
    );
    // Shared by a read grant: bob reads it as alice.orders, at any version; a revoke
    // hides it again.
    let bob: Owner = "bob".parse().unwrap();
    stack
        .append_dataset(
            v1.dataset,
            "alice",
            Event::DatasetAccessGranted(DatasetAccessGranted {
                grantee: bob.clone(),
                level: AccessLevel::Read,
            }),
        )
        .await;
    assert_eq!(
        count("SELECT count(*) FROM alice.orders", "bob")
            .await
            .unwrap(),
        "50"
    );
    assert_eq!(
        count("SELECT count(*) FROM alice.\"orders@v1\"", "bob")
            .await
            .unwrap(),
        "200"
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM alice.orders a JOIN bobs_orders b ON a.order_id = b.order_id",
            "bob"
        )
        .await
        .unwrap(),
        "50"
    );
    let err = count("SELECT count(*) FROM orders", "bob")
        .await
        .unwrap_err();
    assert!(
        matches!(err, QueryError::NoSuchTable { .. }),
        "a shared table is named with its owner: {err}"
    );
    stack
        .append_dataset(
            v1.dataset,
            "alice",
            Event::DatasetAccessRevoked(DatasetAccessRevoked { grantee: bob }),
        )
        .await;
    let err = count("SELECT count(*) FROM alice.orders", "bob")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no such table alice.orders (alice has not shared it with you)"
    );
    let err = count("SELECT count(*) FROM \"orders@v1\"", "bob")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("orders@v1"), "{err}");
    assert!(matches!(err, QueryError::NoSuchTable { .. }), "{err}");
    let err = count("SELECT count(*) FROM bobs_orders", "carol")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no such table bobs_orders (no datasets are registered for you)"
    );
    assert_eq!(
        count("SELECT count(*) FROM bobs_orders", "bob")
            .await
            .unwrap(),
        "50"
    );

    // Only queries: no table over a file, no copy out, no settings.
    let path = stack.parquet(&v1).display().to_string();
    for sql in [
        format!("CREATE EXTERNAL TABLE stolen STORED AS PARQUET LOCATION '{path}'"),
        format!(
            "COPY (SELECT 1) TO '{}/out.parquet'",
            stack.dir.path().display()
        ),
        "SET datafusion.execution.batch_size = 1".to_owned(),
        "CREATE TABLE t AS SELECT 1".to_owned(),
    ] {
        let err = stack.run("bob", &sql, limits).await.unwrap_err();
        assert!(
            matches!(err, QueryError::NotAQuery(_) | QueryError::Sql(_)),
            "{sql}: {err}"
        );
        assert!(err.is_caller_error(), "{sql}: {err}");
    }
    assert!(!stack.dir.path().join("out.parquet").exists());

    // Bad SQL names what is wrong.
    let err = stack.run("alice", "SELEC 1", limits).await.unwrap_err();
    assert!(matches!(err, QueryError::Sql(_)), "{err}");
    assert!(err.to_string().contains("SELEC"), "{err}");
    let err = stack
        .run("alice", "SELECT no_such_column FROM orders", limits)
        .await
        .unwrap_err();
    assert!(matches!(err, QueryError::Sql(_)), "{err}");
    assert!(err.to_string().contains("no_such_column"), "{err}");

    // The row limit: the first rows, and whether there were more.
    let owner: Owner = "alice".parse().unwrap();
    for (max, want_rows, want_cut) in [(10, 10, true), (50, 50, false), (49, 49, true)] {
        let mut rows = stack
            .engine
            .query(
                &owner,
                "SELECT * FROM orders",
                Limits {
                    max_rows: Some(max),
                    timeout: Duration::from_secs(60),
                },
            )
            .await
            .unwrap();
        let mut n = 0;
        while let Some(b) = rows.next_batch().await.unwrap() {
            n += b.num_rows();
        }
        assert_eq!(
            (n, rows.returned(), rows.truncated()),
            (want_rows, want_rows as u64, want_cut),
            "max {max}"
        );
    }

    // The time limit stops a query that would run for minutes.
    let started = Instant::now();
    let err = stack
        .run(
            "alice",
            "SELECT count(*) FROM \"orders@v1\" a, \"orders@v1\" b, \"orders@v1\" c, \"orders@v1\" d \
             WHERE a.amount + b.amount + c.amount + d.amount > 0",
            Limits { max_rows: None, timeout: Duration::from_millis(300) },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, QueryError::Timeout(_)), "{err}");
    assert_eq!(
        err.to_string(),
        "the query did not finish within its time limit of 0.3 s"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_versions_and_limits_on_sqlite() {
    isolation_versions_and_limits(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_versions_and_limits_on_postgres() {
    isolation_versions_and_limits(true).await;
}
