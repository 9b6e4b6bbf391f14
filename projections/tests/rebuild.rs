//! Rebuilding projections: replay is deterministic and equals the live tables, SQLite
//! and Postgres hold the same rows, a replay swaps in under a running projector, a
//! projector killed mid-batch twenty times ends where an uninterrupted one does, and
//! point-in-time builds show the catalog as it was.

#[macro_use]
mod common;

use std::time::Instant;

use common::{Chain, Kind, Log, Rng, TestDb, schema, workload};
use weir_events::{AccessLevel, DatasetBranched, DatasetHeadMoved, DatasetTagged, Event};
use weir_projections::{
    DatasetFilter, Error, Projector, Tables, Until, build_until, catch_up, dataset, list_datasets,
    replay, snapshot,
};

on_both!(replay_twice_gives_identical_rows_equal_to_live);
on_both!(replay_swaps_in_under_a_running_projector);
on_both!(projector_killed_mid_batch_20_times_ends_like_an_uninterrupted_one);
on_both!(until_seq_and_until_time_show_the_catalog_as_it_was);
on_both!(branches_tags_and_rollback_rebuild_at_every_sequence);

async fn replay_twice_gives_identical_rows_equal_to_live(kind: Kind) {
    let mut rng = Rng::new("replay_twice");
    let log = Log::start().await;
    let live = TestDb::new(kind).await;
    let events = workload(&mut rng, 400);

    // Live: projected piecemeal as the events arrive, in small and odd batches.
    let projector = Projector::new(live.db.clone()).with_batch_size(7);
    for chunk in events.chunks(53) {
        log.append_all(chunk).await;
        projector.catch_up(&log.journal).await.unwrap();
    }
    let last = log.journal.last_sequence().await.unwrap();
    let before = snapshot(&live.db, Tables::Live).await.unwrap();
    assert_eq!(before.rows("audit").len() as u64, last);
    assert!(
        before.rows("datasets").len() > 10,
        "the workload registers datasets"
    );
    assert!(
        !before.rows("dataset_grants").is_empty(),
        "the workload grants access"
    );

    // A rebuild from scratch in another database equals the live tables.
    let fresh = live.sibling().await;
    assert_eq!(catch_up(&log.journal, &fresh.db).await.unwrap(), last);
    let rebuilt = snapshot(&fresh.db, Tables::Live).await.unwrap();
    assert_eq!(rebuilt, before, "rebuild equals live");

    // Replay in place, twice: same rows each time, shadow tables gone afterwards.
    let r1 = replay(&log.journal, &live.db).await.unwrap();
    assert_eq!(r1.seq, last);
    let after1 = snapshot(&live.db, Tables::Live).await.unwrap();
    let r2 = replay(&log.journal, &live.db).await.unwrap();
    assert_eq!(r2.seq, last);
    let after2 = snapshot(&live.db, Tables::Live).await.unwrap();
    assert_eq!(after1, before);
    assert_eq!(after2, after1);
    eprintln!(
        "{kind:?}: {last} events, {} rows, digest {} (live, rebuilt, replayed twice)",
        before.row_count(),
        before.digest()
    );
    assert!(
        snapshot(&live.db, Tables::Shadow).await.is_err(),
        "shadow tables are dropped after a replay"
    );
    // The swap renamed the shadow tables into place and built the indexes under their
    // live names: after two replays the live tables have exactly the indexes a fresh
    // migration gives them, and no index keeps a shadow name.
    assert_eq!(
        index_names(&live.db, kind).await,
        index_names(&fresh.db, kind).await
    );
    let names = index_names(&live.db, kind).await;
    assert!(
        names.iter().any(|n| n == "audit_correlation_idx"),
        "{names:?}"
    );
    assert!(names.iter().all(|n| !n.contains("_new")), "{names:?}");
}

/// Every index on the projection tables, by name (primary keys included).
async fn index_names(db: &weir_projections::Db, kind: Kind) -> Vec<String> {
    use sqlx::Row;
    let sql = match kind {
        Kind::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'index' \
             AND tbl_name NOT LIKE '\\_%' ESCAPE '\\' ORDER BY name"
        }
        Kind::Postgres => {
            "SELECT indexname::text AS name FROM pg_indexes WHERE schemaname = 'public' \
             AND tablename NOT LIKE '\\_%' ESCAPE '\\' ORDER BY indexname"
        }
    };
    sqlx::query(sql)
        .fetch_all(db.pool())
        .await
        .expect("list indexes")
        .iter()
        .map(|r| r.get::<String, _>("name"))
        .collect()
}

/// SQLite and Postgres, fed the same log, hold the same rows.
#[tokio::test]
async fn sqlite_rows_equal_postgres_rows() {
    let mut rng = Rng::new("sqlite_equals_postgres");
    let log = Log::start().await;
    log.append_all(&workload(&mut rng, 300)).await;
    // Grants, a second grant changing the level, a revoke.
    let mut shared = Chain::new("acme", "shared.csv", Some("Shared"));
    let mut envs = shared.happy(&schema(&[("id", "Int64")]), 3);
    envs.extend([
        shared.granted("globex", AccessLevel::Read),
        shared.granted("initech", AccessLevel::Read),
        shared.granted("globex", AccessLevel::Admin),
        shared.revoked("initech"),
    ]);
    log.append_all(&envs).await;
    let lite = TestDb::new(Kind::Sqlite).await;
    let pg = TestDb::new(Kind::Postgres).await;
    catch_up(&log.journal, &lite.db).await.unwrap();
    catch_up(&log.journal, &pg.db).await.unwrap();
    let a = snapshot(&lite.db, Tables::Live).await.unwrap();
    let b = snapshot(&pg.db, Tables::Live).await.unwrap();
    let grant = format!("[\"{}\",\"globex\",\"admin\"", shared.dataset);
    assert!(
        a.rows("dataset_grants")
            .iter()
            .any(|r| r.starts_with(&grant)),
        "globex's admin grant: {:?}",
        a.rows("dataset_grants")
    );
    for (x, y) in a.tables.iter().zip(&b.tables) {
        assert_eq!(
            x, y,
            "table {} differs between SQLite and Postgres",
            x.table
        );
    }
    assert_eq!(a.digest(), b.digest());
    eprintln!("{} rows, digest {} on both", a.row_count(), a.digest());
}

async fn replay_swaps_in_under_a_running_projector(kind: Kind) {
    let mut rng = Rng::new("replay_under_load");
    let log = Log::start().await;
    let t = TestDb::new(kind).await;
    let events = workload(&mut rng, 600);
    let (first, rest) = events.split_at(300);
    log.append_all(first).await;

    // The live projector, as a service runs it.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let projector = Projector::new(t.db.clone()).with_batch_size(5);
    let mut progress = projector.progress();
    let journal = log.journal.clone();
    let live = tokio::spawn(async move {
        projector
            .run(&journal, async {
                let _ = stopped.await;
            })
            .await
    });
    // Readers keep reading through the replay.
    let reader_db = t.db.clone();
    let (done_reading, mut reading) = tokio::sync::watch::channel(false);
    let reader = tokio::spawn(async move {
        let mut reads = 0u32;
        while !*reading.borrow_and_update() {
            list_datasets(&reader_db, &DatasetFilter::default())
                .await
                .expect("reads go on during a replay");
            reads += 1;
            // Pacing, not synchronisation: a reader every few milliseconds.
            tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        }
        reads
    });

    // More events arrive while the replay runs.
    let writer_log = log.journal.clone();
    let rest = rest.to_vec();
    let writer = tokio::spawn(async move {
        for env in &rest {
            writer_log
                .append(env, weir_journal::Expect::Any)
                .await
                .expect("append");
        }
    });
    let report = replay(&log.journal, &t.db).await.unwrap();
    writer.await.unwrap();
    let last = log.journal.last_sequence().await.unwrap();
    progress
        .wait_for(|p| p.checkpoint >= last)
        .await
        .expect("projector alive");
    let _ = stop.send(());
    live.await.unwrap().unwrap();
    let _ = done_reading.send(true);
    let reads = reader.await.unwrap();

    let fresh = t.sibling().await;
    catch_up(&log.journal, &fresh.db).await.unwrap();
    let want = snapshot(&fresh.db, Tables::Live).await.unwrap();
    let got = snapshot(&t.db, Tables::Live).await.unwrap();
    assert_eq!(
        got, want,
        "live after a replay under load equals a clean build"
    );
    eprintln!(
        "{kind:?}: replay swapped in at seq {} after {} attempt(s) while the stream grew to {last}; {reads} reads during it",
        report.seq, report.attempts
    );
    assert!(report.seq >= 300);
    assert!(reads > 0);
}

async fn projector_killed_mid_batch_20_times_ends_like_an_uninterrupted_one(kind: Kind) {
    let mut rng = Rng::new("kill_test");
    let log = Log::start().await;
    let started = Instant::now();
    log.append_all(&workload(&mut rng, 10_000)).await;
    let last = log.journal.last_sequence().await.unwrap();
    let appended = started.elapsed();

    let reference = TestDb::new(kind).await;
    let started = Instant::now();
    assert_eq!(catch_up(&log.journal, &reference.db).await.unwrap(), last);
    let clean = started.elapsed();
    let want = snapshot(&reference.db, Tables::Live).await.unwrap();

    let t = reference.sibling().await;
    let started = Instant::now();
    let (mut kills, mut rolled_back) = (0u32, 0u32);
    for i in 0..20u64 {
        let checkpoint = Projector::new(t.db.clone()).checkpoint().await.unwrap();
        // Somewhere ahead, spreading the kills over what is left.
        let span = ((last - checkpoint) / (21 - i)).max(1) * 2;
        let point = (checkpoint + rng.range(1, span)).min(last);
        let projector = Projector::new(t.db.clone()).with_batch_size(rng.range(20, 700) as usize);
        let mut progress = projector.progress();
        let journal = log.journal.clone();
        let task = tokio::spawn(async move { projector.catch_up(&journal).await });
        // The test runs on one thread: the projector is stopped at its next await
        // after applying `point`, inside the open batch transaction.
        let reached = progress
            .wait_for(|p| p.applying.is_some_and(|s| s >= point))
            .await
            .is_ok();
        if !reached {
            // The projector ended before the kill point: say how.
            panic!(
                "projector ended before the kill point {point} (checkpoint {checkpoint}, last {last}): {:?}",
                task.await
            );
        }
        task.abort();
        match task.await {
            Err(e) if e.is_cancelled() => kills += 1,
            other => panic!("projector was not killed: {other:?}"),
        }
        let after = Projector::new(t.db.clone()).checkpoint().await.unwrap();
        assert!(after >= checkpoint);
        if after < point {
            rolled_back += 1;
        }
    }
    assert_eq!(catch_up(&log.journal, &t.db).await.unwrap(), last);
    let interrupted = started.elapsed();
    let got = snapshot(&t.db, Tables::Live).await.unwrap();
    assert_eq!(got.digest(), want.digest());
    assert_eq!(got, want);
    eprintln!(
        "{kind:?}: {last} events appended in {appended:?}; clean build {clean:?}; \
         {kills} kills ({rolled_back} with a batch rolled back) and finish {interrupted:?}; \
         {} rows, digest {}",
        want.row_count(),
        want.digest()
    );
    assert_eq!(kills, 20);
    assert!(
        rolled_back >= 10,
        "most kills land inside an open batch ({rolled_back} of 20 did)"
    );
}

/// Branches, tags and a rollback: after every event, the live catalog; built again
/// from the log up to each sequence (`replay --until-seq`), the same catalog.
async fn branches_tags_and_rollback_rebuild_at_every_sequence(kind: Kind) {
    let log = Log::start().await;
    let live = TestDb::new(kind).await;
    let cols = schema(&[("id", "Int64")]);
    let cols2 = schema(&[("id", "Int64"), ("note", "Utf8")]);
    let mut a = Chain::new("acme", "a.csv", Some("Orders"));
    let mut dev = Chain::new_version(&a, "dev.csv", 2).on_branch("dev");
    let mut v3 = Chain::new_version(&a, "a3.csv", 3);
    let mut envs = a.happy(&cols, 10);
    envs.push(a.dataset_event(Event::DatasetBranched(DatasetBranched {
        branch: "dev".into(),
        from_version: 1,
    })));
    envs.extend([
        dev.received(100),
        dev.combined(100, false),
        dev.inferred(&cols2, 20),
        dev.registered(&cols2, 20),
    ]);
    envs.push(a.dataset_event(Event::DatasetTagged(DatasetTagged {
        tag: "first".into(),
        version: 1,
    })));
    envs.extend([
        v3.received(100),
        v3.combined(100, false),
        v3.inferred(&cols, 30),
        v3.registered(&cols, 30),
    ]);
    envs.push(a.dataset_event(Event::DatasetHeadMoved(DatasetHeadMoved {
        branch: None,
        to_version: 1,
    })));
    let mut moments = Vec::new();
    for env in &envs {
        let seq = log.append(env).await;
        catch_up(&log.journal, &live.db).await.unwrap();
        moments.push((
            seq,
            snapshot(&live.db, Tables::Live).await.unwrap().digest(),
        ));
    }
    for (seq, want) in &moments {
        let past = live.sibling().await;
        build_until(&log.journal, &past.db, Until::Sequence(*seq))
            .await
            .unwrap();
        let got = snapshot(&past.db, Tables::Live).await.unwrap().digest();
        assert_eq!(
            &got, want,
            "the catalog built up to seq {seq} differs from live then"
        );
    }
    // The end: main rolled back to v1, dev at v2, the tag on v1, v3 still readable.
    let d = dataset(&live.db, a.dataset).await.unwrap().unwrap();
    assert_eq!(d.current_version, 1);
    assert_eq!(
        (d.row_count, d.schema.fields.len()),
        (10, 1),
        "the head's own figures"
    );
    assert_eq!(d.refs.branches.get("dev"), Some(&2));
    assert_eq!(d.refs.tags.get("first"), Some(&1));
    assert_eq!(d.resolve("dev").map(|v| v.row_count), Some(20));
    assert_eq!(d.resolve("first").map(|v| v.version), Some(1));
    assert_eq!(d.resolve("v3").map(|v| v.row_count), Some(30));
    assert_eq!(d.resolve("main").map(|v| v.version), Some(1));
    let page = list_datasets(&live.db, &DatasetFilter::default())
        .await
        .unwrap();
    assert_eq!(
        page.datasets[0].row_count, 10,
        "the listing shows the head's rows"
    );
}

async fn until_seq_and_until_time_show_the_catalog_as_it_was(kind: Kind) {
    let log = Log::start().await;
    let live = TestDb::new(kind).await;
    let cols = schema(&[("id", "Int64")]);
    let cols2 = schema(&[("id", "Int64"), ("note", "Utf8")]);
    let mut a = Chain::new("acme", "a.csv", Some("Orders"));
    log.append_all(&a.happy(&cols, 10)).await;
    let v1_seq = log.journal.last_sequence().await.unwrap();
    let mut b = Chain::new_version(&a, "a2.csv", 2);
    log.append_all(&[
        b.received(100),
        b.combined(100, false),
        b.inferred(&cols2, 20),
    ])
    .await;
    let v2_seq = log.append(&b.registered(&cols2, 20)).await;
    log.append(&Chain::new("acme", "later.csv", None).received(5))
        .await;
    catch_up(&log.journal, &live.db).await.unwrap();
    let live_before = snapshot(&live.db, Tables::Live).await.unwrap();

    // Just before v2's registration: version 1.
    let past = live.sibling().await;
    let reached = build_until(&log.journal, &past.db, Until::Sequence(v2_seq - 1))
        .await
        .unwrap();
    assert_eq!(reached, v2_seq - 1);
    let ds = dataset(&past.db, a.dataset).await.unwrap().unwrap();
    assert_eq!(
        (ds.current_version, ds.row_count, ds.versions.len()),
        (1, 10, 1)
    );
    assert_eq!(ds.schema.fields.len(), 1);

    // At v2's registration: version 2.
    let at = live.sibling().await;
    build_until(&log.journal, &at.db, Until::Sequence(v2_seq))
        .await
        .unwrap();
    let ds = dataset(&at.db, a.dataset).await.unwrap().unwrap();
    assert_eq!(
        (ds.current_version, ds.row_count, ds.versions.len()),
        (2, 20, 2)
    );

    // By time: the store time of v1's registration shows version 1 only.
    let v1_time = weir_projections::history(&live.db, weir_projections::EntityId::Upload(a.upload))
        .await
        .unwrap()
        .iter()
        .find(|e| e.seq == v1_seq)
        .unwrap()
        .stored_at;
    let then = live.sibling().await;
    let reached = build_until(&log.journal, &then.db, Until::Time(v1_time))
        .await
        .unwrap();
    assert!(reached >= v1_seq && reached < v2_seq, "{reached}");
    let ds = dataset(&then.db, a.dataset).await.unwrap().unwrap();
    assert_eq!(ds.current_version, 1);

    // A target that already holds projections is refused; the live one is untouched.
    match build_until(&log.journal, &then.db, Until::Sequence(1)).await {
        Err(Error::TargetNotEmpty(n)) => assert_eq!(n, reached),
        other => panic!("expected TargetNotEmpty, got {other:?}"),
    }
    assert_eq!(snapshot(&live.db, Tables::Live).await.unwrap(), live_before);
    let ds = dataset(&live.db, a.dataset).await.unwrap().unwrap();
    assert_eq!(ds.current_version, 2);
}
