//! The views on a realistic sequence of events, published to a real nats-server and
//! projected into SQLite and Postgres; and the projector's lag and error handling.

#[macro_use]
mod common;

use common::{Chain, Kind, Log, TestDb, owner, schema};
use weir_events::{Access, AccessLevel, DatasetAction, Denied, Sha256, Step};
use weir_projections::{
    DatasetFilter, DatasetStatus, EntityId, Projector, Tables, access, catch_up, dataset,
    dataset_for, grants, history, lag, list_datasets, notifications, snapshot, token_owner,
    upload_status,
};

on_both!(realistic_uploads_project_into_every_view);
on_both!(grants_give_regrant_revoke_and_list_shared);
on_both!(undecodable_event_stops_the_projector);

async fn realistic_uploads_project_into_every_view(kind: Kind) {
    let log = Log::start().await;
    let t = TestDb::new(kind).await;
    let db = &t.db;

    let cols = schema(&[
        ("id", "Int64"),
        ("city", "Utf8"),
        ("at", "Timestamp(µs, \"UTC\")"),
    ]);
    let cols2 = schema(&[("id", "Int64"), ("city", "Utf8")]);

    // Upload A: the happy path; D: a second version of A's dataset.
    let mut a = Chain::new("acme", "sales q3.csv", Some("Sales Q3"));
    let mut b = Chain::new("acme", "broken.csv", None);
    let mut c = Chain::new("globex", "left.csv", Some("Left behind"));
    log.append_all(&[a.received(4000), b.received(10), c.started(99)])
        .await;
    assert_eq!(lag(&log.journal, db).await.unwrap(), 3);
    assert_eq!(catch_up(&log.journal, db).await.unwrap(), 3);
    assert_eq!(lag(&log.journal, db).await.unwrap(), 0);
    let s = upload_status(db, c.upload)
        .await
        .unwrap()
        .expect("C is known");
    assert_eq!(
        (s.status.as_str(), s.phase.as_str()),
        ("receiving", "receiving")
    );
    assert_eq!(s.steps[0].step, "upload");

    let s = upload_status(db, a.upload)
        .await
        .unwrap()
        .expect("A is known");
    assert_eq!(
        (s.status.as_str(), s.phase.as_str()),
        ("received", "combining")
    );
    assert_eq!(s.steps.len(), 1);
    assert_eq!(s.steps[0].step, "combine");
    assert_eq!(s.steps[0].outcome, None);

    log.append_all(&[
        a.combined(4000, false),
        b.combined(10, false),
        a.inferred(&cols, 100),
        b.failed(Step::Infer, "line 7: column \"id\": \"x\" is not an Int64"),
        b.compensated(Step::Infer),
        a.claimed(),
    ])
    .await;
    catch_up(&log.journal, db).await.unwrap();
    let s = upload_status(db, a.upload).await.unwrap().unwrap();
    assert_eq!(
        (s.status.as_str(), s.phase.as_str()),
        ("inferred", "registering")
    );
    assert_eq!(s.dataset_id, Some(a.dataset.to_string()));
    let q = s.quality.expect("an inferred upload has its quality");
    assert_eq!(
        (q.rows_read, q.rejected, q.problem_count),
        (q.rows_registered + 2, 2, 2)
    );
    assert_eq!(q.encoding, "windows-1252");
    assert_eq!(q.problems[0].line, 3);
    assert!(q.rejects.is_some());

    let reg_a = a.registered(&cols, 100);
    let registered_seq = log.append(&reg_a).await;
    let mut d = Chain::new_version(&a, "sales q3 fixed.csv", 2);
    log.append_all(&[
        c.aborted("abandoned for 7 days"),
        d.received(3000),
        d.combined(3000, true),
        d.inferred(&cols2, 120),
        d.registered(&cols2, 120),
    ])
    .await;
    let last = catch_up(&log.journal, db).await.unwrap();
    assert_eq!(last, 15);
    assert_eq!(lag(&log.journal, db).await.unwrap(), 0);

    // Upload status and step log.
    let s = upload_status(db, a.upload).await.unwrap().unwrap();
    assert_eq!(s.status, "registered");
    assert_eq!(s.phase, "registered");
    assert_eq!(s.owner, "acme");
    assert_eq!(s.filename, "sales q3.csv");
    assert_eq!(s.label.as_deref(), Some("Sales Q3"));
    assert_eq!(s.size_bytes, 4000);
    assert_eq!(s.part_count, 2);
    assert_eq!(s.table_name.as_deref(), Some("sales_q3"));
    assert_eq!(s.version, Some(1));
    assert_eq!(s.failure, None);
    assert!(s.finished_at.is_some());
    assert_eq!(s.last_seq, registered_seq);
    let steps: Vec<_> = s
        .steps
        .iter()
        .map(|st| (st.step.as_str(), st.outcome.as_deref()))
        .collect();
    assert_eq!(
        steps,
        [
            ("combine", Some("ok")),
            ("infer", Some("ok")),
            ("register", Some("ok"))
        ]
    );
    for w in s.steps.windows(2) {
        assert_eq!(
            w[0].ended_at,
            Some(w[1].started_at),
            "a step starts when the previous ends"
        );
    }

    let s = upload_status(db, b.upload).await.unwrap().unwrap();
    assert_eq!(s.status, "failed");
    let f = s.failure.expect("failure recorded");
    assert_eq!(f.step, "infer");
    assert!(f.reason.contains("line 7"), "{}", f.reason);
    assert_eq!(f.attempts, 3);
    let steps: Vec<_> = s
        .steps
        .iter()
        .map(|st| (st.step.as_str(), st.outcome.as_deref()))
        .collect();
    assert_eq!(steps, [("combine", Some("ok")), ("infer", Some("failed"))]);

    let s = upload_status(db, c.upload).await.unwrap().unwrap();
    assert_eq!(s.status, "aborted");
    assert_eq!(s.abort_reason.as_deref(), Some("abandoned for 7 days"));
    assert_eq!(s.steps.len(), 1);
    assert_eq!(
        (s.steps[0].step.as_str(), s.steps[0].outcome.as_deref()),
        ("upload", Some("aborted"))
    );
    assert!(
        upload_status(db, weir_events::UploadId::new())
            .await
            .unwrap()
            .is_none()
    );

    // Catalog: A's dataset at version 2 with D's schema, both versions kept.
    let ds = dataset(db, a.dataset)
        .await
        .unwrap()
        .expect("dataset registered");
    assert_eq!(ds.table_name, "sales_q3");
    assert_eq!(ds.current_version, 2);
    assert_eq!(ds.row_count, 120);
    assert_eq!(ds.size_bytes, 1200);
    assert_eq!(
        ds.parquet_key,
        format!("datasets/{}/v2/data.parquet", a.dataset)
    );
    assert_eq!(ds.versions.len(), 2);
    assert_eq!(ds.versions[0].upload_id, a.upload.to_string());
    assert_eq!(ds.versions[1].parent_version, Some(1));
    assert_eq!(ds.versions[0].schema.fields.len(), 3);
    assert_eq!(ds.versions[1].statistics["rows"], 120);
    assert!(ds.created_at < ds.updated_at);
    let json = serde_json::to_value(&ds).unwrap();
    assert_eq!(json["id"], a.dataset.to_string());
    assert_eq!(json["table_name"], "sales_q3");
    assert_eq!(json["row_count"], 120);
    assert_eq!(
        json["schema"]["fields"],
        serde_json::json!([
            {"name": "id", "type": "Int64", "nullable": true},
            {"name": "city", "type": "Utf8", "nullable": true},
        ])
    );
    assert_eq!(
        json["parquet_key"],
        format!("datasets/{}/v2/data.parquet", a.dataset)
    );
    assert!(
        json["created_at"].as_str().unwrap().ends_with('Z'),
        "RFC 3339 times"
    );

    // Listing: owner, search (case-insensitive, `_` literal), paging.
    let all = list_datasets(db, &DatasetFilter::default()).await.unwrap();
    assert_eq!(all.total, 1);
    let acme = DatasetFilter {
        owner: Some(owner("acme")),
        ..Default::default()
    };
    assert_eq!(
        list_datasets(db, &acme).await.unwrap().datasets[0].id,
        a.dataset.to_string()
    );
    for (search, hits) in [("SALES", 1), ("s_q", 1), ("sq", 0), ("Q3", 1), ("%", 0)] {
        let f = DatasetFilter {
            search: Some(search.to_owned()),
            ..Default::default()
        };
        assert_eq!(
            list_datasets(db, &f).await.unwrap().total,
            hits,
            "search {search:?}"
        );
    }
    let globex = DatasetFilter {
        owner: Some(owner("globex")),
        ..Default::default()
    };
    assert_eq!(list_datasets(db, &globex).await.unwrap().total, 0);
    let deleted = DatasetFilter {
        status: DatasetStatus::Deleted,
        ..Default::default()
    };
    assert_eq!(list_datasets(db, &deleted).await.unwrap().total, 0);
    let page2 = DatasetFilter {
        offset: 1,
        ..Default::default()
    };
    let p = list_datasets(db, &page2).await.unwrap();
    assert_eq!((p.total, p.datasets.len()), (1, 0));

    // Notifications: two ready, one failed for acme, none for globex (abort is silent).
    let feed = notifications(db, &owner("acme"), false).await.unwrap();
    let kinds: Vec<_> = feed.iter().map(|n| n.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["dataset_ready", "dataset_ready", "upload_failed"],
        "newest first"
    );
    assert!(feed[2].message.contains("broken.csv") && feed[2].message.contains("line 7"));
    assert!(feed[0].message.contains("sales_q3 v2"));
    // The test log's SchemaInferred rejected 2 rows: the ready notice says so and where.
    assert!(
        feed[0]
            .message
            .contains("registered with 2 rejected rows (rejects: datasets/"),
        "{}",
        feed[0].message
    );
    assert!(feed.iter().all(|n| !n.read));
    assert_eq!(
        notifications(db, &owner("acme"), true).await.unwrap().len(),
        3
    );
    assert!(
        notifications(db, &owner("globex"), false)
            .await
            .unwrap()
            .is_empty()
    );

    // Audit: an upload's chain, and a dataset's history spanning both its uploads.
    let h = history(db, EntityId::Upload(b.upload)).await.unwrap();
    let kinds: Vec<_> = h.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["upload_received", "parts_combined", "failed", "compensated"]
    );
    assert_eq!(h[1].causation_id.as_deref(), Some(h[0].event_id.as_str()));
    assert!(
        h.iter()
            .all(|e| e.correlation_id == b.upload.to_string() && e.actor == "acme")
    );
    assert!(h[3].summary.contains("BlobRemoved"), "{}", h[3].summary);
    let h = history(db, EntityId::Dataset(a.dataset)).await.unwrap();
    let kinds: Vec<_> = h.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "upload_received",
            "parts_combined",
            "schema_inferred",
            "table_name_claimed",
            "dataset_registered",
            "upload_received",
            "parts_combined",
            "schema_inferred",
            "dataset_registered",
        ],
        "A's chain (with its name claim) and D's, nothing of B or C"
    );
    assert!(h.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(h.iter().any(|e| e.aggregate == "name:sales_q3@acme"));
    assert!(h.iter().all(|e| !e.summary.contains('\n')));

    // Reading a notification is an event; another owner's read changes nothing.
    let mut g = Chain::new("globex", "x.csv", None);
    log.append_all(&[g.read(reg_a.event_id), a.read(reg_a.event_id)])
        .await;
    catch_up(&log.journal, db).await.unwrap();
    let feed = notifications(db, &owner("acme"), false).await.unwrap();
    let read: Vec<_> = feed.iter().map(|n| (n.id.clone(), n.read)).collect();
    assert_eq!(
        read,
        [
            (feed[0].id.clone(), false),
            (reg_a.event_id.to_string(), true),
            (feed[2].id.clone(), false),
        ]
    );
    assert!(feed[1].read_at.is_some());
    let unread = notifications(db, &owner("acme"), true).await.unwrap();
    assert_eq!(unread.len(), 2);
    assert!(unread.iter().all(|n| n.id != reg_a.event_id.to_string()));

    // Dataset edits: label, rename, soft delete and restore.
    log.append_all(&[
        d.label_changed(Some("Sales, final")),
        d.renamed("sales_final"),
        d.deleted(),
    ])
    .await;
    catch_up(&log.journal, db).await.unwrap();
    let ds = dataset(db, a.dataset).await.unwrap().unwrap();
    assert_eq!(ds.label.as_deref(), Some("Sales, final"));
    assert_eq!(ds.table_name, "sales_final");
    assert!(ds.deleted_at.is_some());
    assert_eq!(
        list_datasets(db, &DatasetFilter::default())
            .await
            .unwrap()
            .total,
        0
    );
    assert_eq!(list_datasets(db, &deleted).await.unwrap().total, 1);
    log.append(&d.restored()).await;
    catch_up(&log.journal, db).await.unwrap();
    let ds = dataset(db, a.dataset).await.unwrap().unwrap();
    assert!(ds.deleted_at.is_none());
    let f = DatasetFilter {
        search: Some("final".to_owned()),
        ..Default::default()
    };
    assert_eq!(list_datasets(db, &f).await.unwrap().total, 1);
    let h = history(db, EntityId::Dataset(a.dataset)).await.unwrap();
    assert_eq!(
        h.iter()
            .rev()
            .take(4)
            .map(|e| e.kind.as_str())
            .collect::<Vec<_>>(),
        [
            "dataset_restored",
            "dataset_deleted",
            "dataset_renamed",
            "dataset_label_changed"
        ]
    );

    // API tokens: only live ones name an owner.
    log.append_all(&[
        a.token_created("tok1", 7),
        g.token_created("tok2", 8),
        a.token_revoked("tok1"),
    ])
    .await;
    catch_up(&log.journal, db).await.unwrap();
    assert_eq!(token_owner(db, &Sha256([7; 32])).await.unwrap(), None);
    assert_eq!(
        token_owner(db, &Sha256([8; 32])).await.unwrap().as_deref(),
        Some("globex")
    );
    assert_eq!(token_owner(db, &Sha256([9; 32])).await.unwrap(), None);

    // Table names claimed.
    let names = snapshot(db, Tables::Live).await.unwrap();
    let claims = names.rows("table_names");
    assert_eq!(claims.len(), 1);
    assert!(claims[0].contains("\"sales_q3\"") && claims[0].contains(&a.dataset.to_string()));
}

/// An event this build cannot decode is never skipped: the projector stops with an
/// error naming its sequence, and nothing after it is applied.
async fn undecodable_event_stops_the_projector(kind: Kind) {
    let log = Log::start().await;
    let t = TestDb::new(kind).await;
    let mut a = Chain::new("acme", "a.csv", None);
    log.append(&a.received(10)).await;
    // A newer weir's envelope: schema version 2 (postcard varint 2).
    log.journal
        .jetstream()
        .publish("weir.upload.x.upload_received", vec![2u8, 0, 0].into())
        .await
        .unwrap()
        .await
        .unwrap();
    log.append(&a.combined(10, false)).await;
    let err = catch_up(&log.journal, &t.db).await.expect_err("must stop");
    assert!(err.to_string().contains("sequence 2"), "{err}");
    assert!(!err.is_transient());
    let p = Projector::new(t.db.clone());
    assert_eq!(
        p.checkpoint().await.unwrap(),
        1,
        "the event before it is applied"
    );
}

/// Grants as the catalog serves them: a grant gives access, a second grant changes the
/// level, a revoke takes it away; shared datasets are listed (marked) for the grantee
/// only; the audit trail says who granted what; a rebuild gives the same rows.
async fn grants_give_regrant_revoke_and_list_shared(kind: Kind) {
    let log = Log::start().await;
    let t = TestDb::new(kind).await;
    let db = &t.db;
    let cols = schema(&[("id", "Int64")]);
    let mut a = Chain::new("acme", "a.csv", Some("Shared"));
    let mut mine = Chain::new("globex", "g.csv", Some("Globex own"));
    log.append_all(&a.happy(&cols, 5)).await;
    log.append_all(&mine.happy(&cols, 7)).await;
    let globex = owner("globex");
    let initech = owner("initech");

    catch_up(&log.journal, db).await.unwrap();
    let d = dataset(db, a.dataset).await.unwrap().unwrap();
    assert_eq!(access(db, &owner("acme"), &d).await.unwrap(), Access::Owner);
    assert_eq!(access(db, &globex, &d).await.unwrap(), Access::None);
    assert_eq!(
        dataset_for(db, &globex, a.dataset, DatasetAction::Read)
            .await
            .unwrap()
            .err(),
        Some(Denied::NotFound)
    );

    log.append(&a.granted("globex", AccessLevel::Read)).await;
    catch_up(&log.journal, db).await.unwrap();
    assert_eq!(access(db, &globex, &d).await.unwrap(), Access::Read);
    assert!(
        dataset_for(db, &globex, a.dataset, DatasetAction::Read)
            .await
            .unwrap()
            .is_ok()
    );
    assert!(matches!(
        dataset_for(db, &globex, a.dataset, DatasetAction::Upload)
            .await
            .unwrap(),
        Err(Denied::TooWeak {
            has: Access::Read,
            needs: Access::Write,
            ..
        })
    ));
    assert_eq!(access(db, &initech, &d).await.unwrap(), Access::None);

    // Listing as globex: its own and the shared one (marked); as acme: only its own.
    let shared = DatasetFilter {
        owner: Some(globex.clone()),
        with_shared: true,
        ..Default::default()
    };
    let page = list_datasets(db, &shared).await.unwrap();
    let mut listed: Vec<(String, Option<String>)> = page
        .datasets
        .iter()
        .map(|d| (d.id.clone(), d.shared.clone()))
        .collect();
    listed.sort();
    let mut want = vec![
        (a.dataset.to_string(), Some("read".to_owned())),
        (mine.dataset.to_string(), None),
    ];
    want.sort();
    assert_eq!((page.total, listed), (2, want));
    let own_only = DatasetFilter {
        owner: Some(globex.clone()),
        ..Default::default()
    };
    assert_eq!(list_datasets(db, &own_only).await.unwrap().total, 1);
    let acme_shared = DatasetFilter {
        owner: Some(owner("acme")),
        with_shared: true,
        ..Default::default()
    };
    let page = list_datasets(db, &acme_shared).await.unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(page.datasets[0].shared, None, "acme's own is not shared");

    // A second grant changes the level; a grant to another owner stands beside it.
    log.append_all(&[
        a.granted("globex", AccessLevel::Admin),
        a.granted("initech", AccessLevel::Write),
    ])
    .await;
    catch_up(&log.journal, db).await.unwrap();
    assert_eq!(access(db, &globex, &d).await.unwrap(), Access::Admin);
    assert_eq!(access(db, &initech, &d).await.unwrap(), Access::Write);
    let list = grants(db, a.dataset).await.unwrap();
    let rows: Vec<_> = list
        .iter()
        .map(|g| (g.grantee.as_str(), g.level.as_str(), g.granted_by.as_str()))
        .collect();
    assert_eq!(
        rows,
        vec![("globex", "admin", "acme"), ("initech", "write", "acme")]
    );

    // A revoke takes effect; the other grant stays.
    log.append(&a.revoked("globex")).await;
    catch_up(&log.journal, db).await.unwrap();
    assert_eq!(access(db, &globex, &d).await.unwrap(), Access::None);
    assert_eq!(access(db, &initech, &d).await.unwrap(), Access::Write);
    assert_eq!(list_datasets(db, &shared).await.unwrap().total, 1);

    // The audit trail: who granted what to whom.
    let trail = history(db, EntityId::Dataset(a.dataset)).await.unwrap();
    let lines: Vec<String> = trail
        .iter()
        .filter(|e| e.kind.starts_with("dataset_access"))
        .map(|e| format!("{} {} {}", e.kind, e.actor, e.summary))
        .collect();
    assert_eq!(
        lines,
        vec![
            "dataset_access_granted acme granted read access to globex",
            "dataset_access_granted acme granted admin access to globex",
            "dataset_access_granted acme granted write access to initech",
            "dataset_access_revoked acme revoked the access of globex",
        ]
    );

    // A rebuild from the log, in one batch, holds the same rows.
    let fresh = t.sibling().await;
    catch_up(&log.journal, &fresh.db).await.unwrap();
    assert_eq!(
        snapshot(&fresh.db, Tables::Live).await.unwrap(),
        snapshot(db, Tables::Live).await.unwrap()
    );
    assert_eq!(
        snapshot(db, Tables::Live)
            .await
            .unwrap()
            .rows("dataset_grants")
            .len(),
        1
    );
}
