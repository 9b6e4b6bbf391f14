//! The object references projection (`object_refs`): who holds each object, live or
//! since when not and why, and its deletion, folded from a log with a shared blob, a
//! purge, a failure, an abort, a registration under another Parquet than the inferred
//! one and the janitor's deletions. The rows do not depend on
//! where batches begin and end (batches of 1 to 1,000 events give the same tables),
//! and SQLite and Postgres hold the same rows.

#[macro_use]
mod common;

use common::{Chain, Kind, Log, TestDb, schema};
use weir_events::{
    Aggregate, DatasetPurged, Envelope, Event, ObjectDeleted, ObjectKey, PartsCombined, Sha256,
    Step,
};
use weir_projections::retention::{self, ObjectRef};
use weir_projections::{Projector, Tables, snapshot};

on_both!(references_fold_the_same_whatever_the_batches);

/// `env` rebuilt with `event` in place of its own (same aggregate, actor, chain).
fn with_event(env: &Envelope, event: Event) -> Envelope {
    let mut e = env.clone();
    e.event = event;
    e
}

fn janitor_event(aggregate: Aggregate, of: &Chain, event: Event) -> Envelope {
    Envelope::new(aggregate, of.owner.clone(), of.upload, None, event)
}

fn row<'a>(rows: &'a [ObjectRef], holder: &str) -> &'a ObjectRef {
    rows.iter()
        .find(|r| r.holder == holder)
        .unwrap_or_else(|| panic!("no reference of {holder} in {rows:?}"))
}

async fn references_fold_the_same_whatever_the_batches(kind: Kind) {
    let log = Log::start().await;
    let cols = schema(&[("id", "Int64"), ("name", "Utf8")]);
    let mut events = Vec::new();

    // Two datasets from the same content: the second upload's blob is the first's.
    let mut a = Chain::new("acme", "a.csv", None);
    events.extend(a.happy(&cols, 10));
    let shared = match &events[1].event {
        Event::PartsCombined(p) => p.clone(),
        other => panic!("{other:?}"),
    };
    let mut b = Chain::new("acme", "b.csv", None);
    let mut chain_b = b.happy(&cols, 10);
    chain_b[1] = with_event(
        &chain_b[1],
        Event::PartsCombined(PartsCombined {
            deduplicated: true,
            ..shared.clone()
        }),
    );
    events.extend(chain_b);
    // Failed at inference, no compensation: its blob waits for the janitor.
    let mut c = Chain::new("acme", "c.csv", None);
    events.push(c.received(100));
    events.push(c.combined(100, false));
    events.push(c.failed(Step::Infer, "c.csv line 3: bad"));
    let c_blob = ObjectKey::blob(&Sha256([(c.upload.as_u128() % 251) as u8; 32]));
    // A multipart upload aborted with its parts removed.
    let mut d = Chain::new("acme", "d.csv", None);
    events.push(d.started(100));
    events.push(d.aborted("aborted by the owner"));
    // The first dataset deleted and purged; the janitor deletes its Parquet and the
    // failed upload's blob.
    events.push(a.deleted());
    events.push(janitor_event(
        Aggregate::Dataset(a.dataset),
        &a,
        Event::DatasetPurged(DatasetPurged {
            reason: "deleted; not restored within 30d".into(),
        }),
    ));
    let a_parquet = ObjectKey::parquet(a.dataset, 1);
    for (key, of) in [(&a_parquet, &a), (&c_blob, &c)] {
        events.push(janitor_event(
            Aggregate::Object(key.clone()),
            of,
            Event::ObjectDeleted(ObjectDeleted {
                key: key.clone(),
                reason: "no live reference".into(),
                size: Some(1),
            }),
        ));
    }
    // Registered under another Parquet than the one inferred (say, converted again): the
    // inferred file is not the dataset's and stays the upload's, ended at registration.
    let mut e = Chain::new("acme", "e.csv", None);
    let mut chain_e = e.happy(&cols, 10);
    let e_registered = match &chain_e[4].event {
        Event::DatasetRegistered(r) => r.clone(),
        other => panic!("{other:?}"),
    };
    let e_parquet = ObjectKey::parquet(e.dataset, 2);
    chain_e[4] = with_event(
        &chain_e[4],
        Event::DatasetRegistered(weir_events::DatasetRegistered {
            parquet: e_parquet.clone(),
            ..e_registered
        }),
    );
    events.extend(chain_e);
    let last = log.append_all(&events).await;

    let first = TestDb::new(kind).await;
    Projector::new(first.db.clone())
        .with_batch_size(1)
        .catch_up(&log.journal)
        .await
        .unwrap();
    let want = snapshot(&first.db, Tables::Live).await.unwrap();
    for size in [2, 3, 5, 1000] {
        let other = first.sibling().await;
        let at = Projector::new(other.db.clone())
            .with_batch_size(size)
            .catch_up(&log.journal)
            .await
            .unwrap();
        assert_eq!(at, last);
        let got = snapshot(&other.db, Tables::Live).await.unwrap();
        assert_eq!(
            got.rows("object_refs"),
            want.rows("object_refs"),
            "batches of {size}"
        );
        assert_eq!(got, want, "batches of {size}");
    }

    let db = &first.db;
    let (ha, hb) = (
        format!("upload:{}", a.upload),
        format!("upload:{}", b.upload),
    );
    let (da, db_) = (
        format!("dataset:{}", a.dataset),
        format!("dataset:{}", b.dataset),
    );
    // The shared blob: held live by the second dataset, the first's reference purged;
    // the uploads handed theirs over at registration.
    let blob = retention::refs_of(db, shared.blob.as_str()).await.unwrap();
    assert_eq!(blob.len(), 2, "{blob:?}");
    assert!(!blob.iter().any(|r| r.holder == ha || r.holder == hb));
    assert_eq!(row(&blob, &da).ended_by.as_deref(), Some("purged"));
    assert!(row(&blob, &db_).live && row(&blob, &db_).ended_at.is_none());
    assert!(blob.iter().all(|r| r.deleted_at.is_none()));
    // What an upload keeps after registration: its parts and staging object, ended
    // when combined; no blob or Parquet.
    for held in [&ha, &hb] {
        let left = retention::refs_held_by(db, held).await.unwrap();
        assert!(left.iter().any(|r| r.role == "part"), "{left:?}");
        assert!(
            left.iter()
                .all(|r| (r.role == "part" || r.role == "staging")
                    && r.ended_by.as_deref() == Some("combined")),
            "{left:?}"
        );
    }
    let he = format!("upload:{}", e.upload);
    let inferred = ObjectKey::parquet(e.dataset, 1);
    let kept = retention::refs_of(db, inferred.as_str()).await.unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].holder, he);
    assert_eq!(kept[0].ended_by.as_deref(), Some("registered"));
    let registered = retention::refs_of(db, e_parquet.as_str()).await.unwrap();
    assert_eq!(registered.len(), 1, "{registered:?}");
    assert_eq!(registered[0].holder, format!("dataset:{}", e.dataset));
    assert!(registered[0].live);
    // The purged dataset's Parquet: deleted on every reference.
    let parquet = retention::refs_of(db, a_parquet.as_str()).await.unwrap();
    assert_eq!(parquet.len(), 1, "{parquet:?}");
    assert_eq!(parquet[0].holder, da);
    assert!(parquet.iter().all(|r| !r.live && r.deleted_at.is_some()));
    // Its rejects: purged, not yet deleted: the janitor's to do.
    let rejects = ObjectKey::rejects(a.dataset, 1);
    let pending = retention::pending(db).await.unwrap();
    assert!(
        pending
            .iter()
            .any(|r| r.object_key == rejects.as_str() && r.holder == da)
    );
    // The shared blob is pending too, with the live reference that keeps it.
    assert!(
        pending
            .iter()
            .any(|r| r.object_key == shared.blob.as_str() && r.live),
        "{pending:?}"
    );
    // The failed upload's blob: failed, then deleted; its parts ended when combined.
    let cb = retention::refs_of(db, c_blob.as_str()).await.unwrap();
    assert_eq!(cb.len(), 1);
    assert_eq!(cb[0].ended_by.as_deref(), Some("failed"));
    assert!(cb[0].deleted_at.is_some());
    let c_parts = retention::refs_held_by(db, &format!("upload:{}", c.upload))
        .await
        .unwrap();
    assert_eq!(
        c_parts
            .iter()
            .filter(|r| r.role == "part" && r.ended_by.as_deref() == Some("combined"))
            .count(),
        2,
        "{c_parts:?}"
    );
    assert!(!pending.iter().any(|r| r.object_key == c_blob.as_str()));
    // The aborted upload's parts: ended by the abort, removed with it.
    let d_refs = retention::refs_held_by(db, &format!("upload:{}", d.upload))
        .await
        .unwrap();
    assert_eq!(d_refs.len(), 2, "{d_refs:?}");
    assert!(d_refs.iter().all(|r| r.role == "part"
        && r.ended_by.as_deref() == Some("aborted")
        && r.deleted_at.is_some()));
}
