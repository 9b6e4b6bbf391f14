//! The event log on a real nats-server: de-duplication, conditional appends, reading
//! back, the version check.

use async_nats::HeaderMap;
use weir_events::*;
use weir_journal::{AppendOutcome, Expect, Journal};
use weir_testkit::{NatsServer, sample};

fn received(upload: UploadId) -> Envelope {
    sample::upload_received(upload, "a.csv")
}

fn combined(upload: UploadId, cause: EventId, tag: u8) -> Envelope {
    sample::parts_combined(upload, cause, tag)
}

async fn journal(nats: &NatsServer) -> Journal {
    Journal::connect(&nats.url(), &StreamSpec::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_duplicate_msg_id_is_stored_once() {
    let nats = NatsServer::start();
    let j = journal(&nats).await;
    let up = UploadId::new();
    let event = received(up);
    let first = j.append(&event, Expect::Empty).await.unwrap();
    // The same append again (a retry after a lost ack) is stored once.
    let second = j.append(&event, Expect::Any).await.unwrap();
    // So is a reaction re-built by a re-run of its step: new event id, same causation.
    let c = sample::parts_combined(up, event.event_id, 1);
    let mut rebuilt = c.clone();
    rebuilt.event_id = EventId::new();
    let third = j.append(&c, Expect::Any).await.unwrap();
    let fourth = j.append(&rebuilt, Expect::Any).await.unwrap();
    assert_eq!(
        third,
        AppendOutcome::Appended {
            seq: 2,
            duplicate: false
        }
    );
    assert_eq!(
        fourth,
        AppendOutcome::Appended {
            seq: 2,
            duplicate: true
        }
    );
    assert_eq!(
        first,
        AppendOutcome::Appended {
            seq: 1,
            duplicate: false
        }
    );
    assert_eq!(
        second,
        AppendOutcome::Appended {
            seq: 1,
            duplicate: true
        }
    );
    assert_eq!(j.last_sequence().await.unwrap(), 2);
    let history = j.history(&Aggregate::Upload(up)).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].envelope, event);
}

#[tokio::test]
async fn of_two_concurrent_conditional_appends_exactly_one_wins() {
    let nats = NatsServer::start();
    let j = journal(&nats).await;
    for round in 0..20u8 {
        let up = UploadId::new();
        let r = received(up);
        let AppendOutcome::Appended { seq, .. } = j.append(&r, Expect::Empty).await.unwrap() else {
            panic!("first append lost")
        };
        // Two services react to the same event at the same time with different results.
        let a = combined(up, r.event_id, 2 * round);
        let mut b = combined(up, EventId::new(), 2 * round + 1);
        b.causation_id = Some(EventId::new()); // a different msg id: not a duplicate
        let (ra, rb) = tokio::join!(
            j.append(&a, Expect::LastSequence(seq)),
            j.append(&b, Expect::LastSequence(seq))
        );
        let outcomes = [ra.unwrap(), rb.unwrap()];
        let wins = outcomes
            .iter()
            .filter(|o| {
                matches!(
                    o,
                    AppendOutcome::Appended {
                        duplicate: false,
                        ..
                    }
                )
            })
            .count();
        let losses = outcomes
            .iter()
            .filter(|o| **o == AppendOutcome::WrongLastSequence)
            .count();
        assert_eq!((wins, losses), (1, 1), "round {round}: {outcomes:?}");
        assert_eq!(j.history(&Aggregate::Upload(up)).await.unwrap().len(), 2);
    }
}

#[tokio::test]
async fn the_expectation_covers_the_whole_aggregate_not_one_subject() {
    let nats = NatsServer::start();
    let j = journal(&nats).await;
    let up = UploadId::new();
    let r = received(up);
    j.append(&r, Expect::Empty).await.unwrap();
    // The aggregate has an event (on another subject than parts_combined): a writer
    // that believes it is empty must lose.
    let c = combined(up, r.event_id, 1);
    assert_eq!(
        j.append(&c, Expect::Empty).await.unwrap(),
        AppendOutcome::WrongLastSequence
    );
    // Other aggregates are unaffected.
    let other = received(UploadId::new());
    assert!(matches!(
        j.append(&other, Expect::Empty).await.unwrap(),
        AppendOutcome::Appended { seq: 2, .. }
    ));
    let last = j.last_on(&Aggregate::Upload(up)).await.unwrap().unwrap();
    assert_eq!(last.seq, 1);
    assert!(
        j.last_on(&Aggregate::Upload(UploadId::new()))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn the_log_cannot_be_purged_or_have_messages_deleted() {
    let nats = NatsServer::start();
    let j = journal(&nats).await;
    j.append(&received(UploadId::new()), Expect::Empty)
        .await
        .unwrap();
    let stream = j.jetstream().get_stream("WEIR").await.unwrap();
    assert!(stream.delete_message(1).await.is_err());
    assert!(stream.purge().await.is_err());
    assert_eq!(j.last_sequence().await.unwrap(), 1);
}

#[tokio::test]
async fn events_carry_a_kind_header_for_tools_that_do_not_decode() {
    let nats = NatsServer::start();
    let j = journal(&nats).await;
    let up = UploadId::new();
    let r = received(up);
    let event_id = r.event_id;
    j.append(&r, Expect::Empty).await.unwrap();
    let stream = j.jetstream().get_stream("WEIR").await.unwrap();
    let m = stream.get_raw_message(1).await.unwrap();
    let headers: &HeaderMap = &m.headers;
    assert_eq!(
        headers.get(KIND_HEADER).map(|v| v.as_str()),
        Some("upload_received")
    );
    assert_eq!(
        headers.get("Nats-Msg-Id").map(|v| v.as_str()),
        Some(format!("weir.upload.{up}.upload_received#{event_id}").as_str())
    );
}

#[tokio::test]
async fn an_event_over_the_servers_max_payload_is_refused_before_sending() {
    let nats = NatsServer::start_with_config("max_payload: 4096");
    let j = journal(&nats).await;
    assert_eq!(j.max_payload(), 4096);
    let mut big = received(UploadId::new());
    if let Event::UploadReceived(u) = &mut big.event {
        u.parts = (1..=200)
            .map(|n| PartManifest {
                number: n,
                size: 1,
                sha256: Sha256([1; 32]),
            })
            .collect();
    }
    let err = j.append(&big, Expect::Empty).await.unwrap_err();
    assert!(
        matches!(
            err,
            weir_journal::AppendError::Encode(EncodeError::TooLarge { max: 4096, .. })
        ),
        "{err}"
    );
    assert_eq!(j.last_sequence().await.unwrap(), 0);
}

/// An event appended again under the expectation it was first appended with (a caller
/// retrying after its ack was lost) is reported as stored, with its sequence, on one
/// node and on an R3 stream alike. The server checks the expectation before the message
/// id and refuses the repeat (without `append`'s look at the subject's last message
/// this test fails on both). Another event under the same stale expectation still
/// loses the race.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_conditional_append_is_a_duplicate_on_one_node_and_on_r3() {
    async fn check(j: &Journal, shape: &str) {
        let up = UploadId::new();
        let first = received(up);
        let stored = j.append(&first, Expect::Empty).await.unwrap();
        let AppendOutcome::Appended {
            seq,
            duplicate: false,
        } = stored
        else {
            panic!("{shape}: first append: {stored:?}");
        };
        let again = j.append(&first, Expect::Empty).await.unwrap();
        assert_eq!(
            again,
            AppendOutcome::Appended {
                seq,
                duplicate: true
            },
            "{shape}: the same event again"
        );
        let c = combined(up, first.event_id, 1);
        let next = j.append(&c, Expect::LastSequence(seq)).await.unwrap();
        let AppendOutcome::Appended { seq: c_seq, .. } = next else {
            panic!("{shape}: {next:?}");
        };
        assert_eq!(
            j.append(&c, Expect::LastSequence(seq)).await.unwrap(),
            AppendOutcome::Appended {
                seq: c_seq,
                duplicate: true
            },
            "{shape}: the same reaction again under its stale expectation"
        );
        // Another event under that stale expectation loses, as it must.
        let other = sample::failed(up, first.event_id, "too late");
        assert_eq!(
            j.append(&other, Expect::LastSequence(seq)).await.unwrap(),
            AppendOutcome::WrongLastSequence,
            "{shape}: another event under a stale expectation"
        );
    }
    let one = NatsServer::start();
    check(&journal(&one).await, "one node").await;

    let cluster = weir_testkit::NatsCluster::start(3);
    let spec = StreamSpec {
        replicas: 3,
        ..StreamSpec::default()
    };
    let r3 = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        loop {
            match Journal::connect(&cluster.url(), &spec).await {
                Ok(j) => break j,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
            }
        }
    })
    .await
    .expect("the R3 stream is created within 60 s");
    check(&r3, "R3").await;
}
