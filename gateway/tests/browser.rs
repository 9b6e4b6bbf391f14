//! The dashboard in a real browser: Debian's headless Chromium, driven by Selenium
//! (`tests/browser.py`, from `.tools/venv`), uploads a CSV through the page against a
//! running weir and sees it registered and notified. The screenshot is kept at
//! `target/artefacts/dashboard.png`. `scripts/setup` installs Chromium and Selenium.

mod common;

use std::path::{Path, PathBuf};

use common::{Stack, sample};
use weir_events::Aggregate;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_uploads_a_csv_and_shows_it_registered() {
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: run scripts/setup"
        );
    }
    let python = repo().join(".tools/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup",
        python.display()
    );
    let s = Stack::start().await;
    let csv = s.dir.path().join("browser_orders.csv");
    std::fs::write(&csv, sample()).unwrap();
    let artefacts = repo().join("target/artefacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    let screenshot = artefacts.join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser.py");
    let (base, token) = (s.base.clone(), s.alice.clone());
    let ragged = s.dir.path().join("ragged.csv");
    std::fs::write(&ragged, "id,v\n1,2\n3\n4,5,6\n5,6\n").unwrap();
    let wider = s.dir.path().join("wider.csv");
    std::fs::write(&wider, "id,v,extra\n7,8,x\n").unwrap();
    let (csv_arg, shot_arg) = (csv.clone(), screenshot.clone());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .args([base.as_str(), token.as_str()])
            .arg(csv_arg)
            .arg("browser_orders")
            .arg(shot_arg)
            .arg(ragged)
            .arg(wider)
            .output()
    })
    .await
    .unwrap()
    .expect("run the browser script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser test failed\n{stdout}\n{stderr}"
    );

    // The page's upload is a real one: in the log, registered, under Alice.
    let page = weir_projections::list_datasets(
        &s.db,
        &weir_projections::DatasetFilter {
            owner: Some(common::owner("alice")),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(page.datasets.len(), 2);
    let ragged = page
        .datasets
        .iter()
        .find(|d| d.table_name == "ragged")
        .expect("the ragged upload is registered");
    // Its second version, from the page: the head's own figures, no bad rows.
    assert_eq!(ragged.current_version, 2);
    assert_eq!(ragged.row_count, 1);
    let orders = page
        .datasets
        .iter()
        .find(|d| d.table_name == "browser_orders")
        .expect("the CSV is registered");
    assert_eq!(orders.row_count, 200);
    let id: weir_events::DatasetId = orders.id.parse().unwrap();
    let upload = weir_events::UploadId::from_u128(id.as_u128());
    let kinds: Vec<_> = s
        .journal
        .history(&Aggregate::Upload(upload))
        .await
        .unwrap()
        .iter()
        .map(|r| r.envelope.kind().as_str())
        .collect();
    assert_eq!(
        kinds[..2],
        ["upload_started", "upload_received"],
        "{kinds:?}"
    );
    let png = std::fs::read(&screenshot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");
    assert!(png.len() > 10_000, "screenshot suspiciously small");
    s.stop().await;
}
