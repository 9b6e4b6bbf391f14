//! The users and permissions of the repository's `nats.conf`, against a real
//! nats-server: each role may append the event kinds it produces and nothing else, the
//! projector appends nothing, no role can delete or purge the stream, a service cannot
//! pull another service's deliveries, and nobody connects without a password.
//!
//! A denial is proven by the server's own answer: the `Permissions Violation for
//! Publish to "<subject>"` error it sends the client, and the log unchanged afterwards.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use weir_events::*;
use weir_journal::{AppendOutcome, Credentials, Expect, Journal, Role, StreamSetup};
use weir_testkit::{NatsServer, sample};

const STREAM: &str = "WEIR";

/// A raw client of one role that reports the server's errors (permission violations).
struct Raw {
    client: async_nats::Client,
    errors: mpsc::UnboundedReceiver<String>,
}

async fn raw(nats: &NatsServer, role: Role) -> Raw {
    let creds = nats.passwords().unwrap().credentials(role);
    let (tx, errors) = mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::new()
        .user_and_password(creds.user().to_owned(), creds.password().to_owned())
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    let _ = tx.send(e.to_string());
                }
            }
        })
        .connect(nats.url())
        .await
        .unwrap_or_else(|e| panic!("{} cannot connect: {e}", role.user()));
    Raw { client, errors }
}

impl Raw {
    /// Publishes to `subject` (as a request, like a JetStream append or API call) and
    /// asserts that the server refuses it for lack of permission and sends no reply.
    async fn assert_denied(&mut self, role: Role, subject: &str) {
        let inbox = self.client.new_inbox();
        let mut replies = self.client.subscribe(inbox.clone()).await.unwrap();
        self.client
            .publish_with_reply(subject.to_owned(), inbox, Bytes::from_static(b"{}"))
            .await
            .unwrap();
        self.client.flush().await.unwrap();
        let wanted = format!("Permissions Violation for Publish to \"{subject}\"");
        let seen = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(e) = self.errors.recv().await {
                if e.contains(&wanted) {
                    return e;
                }
            }
            String::new()
        })
        .await
        .unwrap_or_else(|_| panic!("{}: no permission violation for {subject}", role.user()));
        assert!(seen.contains(&wanted), "{seen}");
        // Nothing answered either (no JetStream API reply, no PubAck).
        let reply = tokio::time::timeout(
            Duration::from_millis(100),
            futures::StreamExt::next(&mut replies),
        )
        .await;
        assert!(reply.is_err(), "{}: {subject} was answered", role.user());
    }
}

async fn journal_as(nats: &NatsServer, role: Role) -> Journal {
    let creds = nats.passwords().unwrap().credentials(role);
    Journal::connect_as(
        &nats.url(),
        Some(&creds),
        &StreamSpec::default(),
        StreamSetup::CreateIfMissing,
    )
    .await
    .unwrap_or_else(|e| panic!("{} cannot connect: {e}", role.user()))
}

fn appended(outcome: AppendOutcome) -> u64 {
    match outcome {
        AppendOutcome::Appended { seq, .. } => seq,
        other => panic!("not appended: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_may_append_only_its_own_events_and_nobody_deletes_the_log() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let nats = NatsServer::start_with_users();
        let passwords = nats.passwords().unwrap().clone();

        // Nobody gets in without a password, nor with a wrong one.
        assert!(async_nats::connect(nats.url()).await.is_err());
        let wrong = async_nats::ConnectOptions::new()
            .user_and_password("admin".into(), "not-the-password".into())
            .connect(nats.url())
            .await;
        assert!(wrong.is_err());

        // The admin sets the stream up; a service only finds it.
        let admin = Journal::connect_as(
            &nats.url(),
            Some(&passwords.credentials(Role::Admin)),
            &StreamSpec::default(),
            StreamSetup::Update,
        )
        .await
        .unwrap();
        assert_eq!(admin.stream_health().await.unwrap().messages, 0);

        // What each role produces goes in.
        let gateway = journal_as(&nats, Role::Gateway).await;
        let combiner = journal_as(&nats, Role::Combiner).await;
        let registrar = journal_as(&nats, Role::Registrar).await;
        let projector = journal_as(&nats, Role::Projector).await;
        let up = UploadId::new();
        let received = sample::upload_received(up, "a.csv");
        let s1 = appended(gateway.append(&received, Expect::Empty).await.unwrap());
        let combined = sample::parts_combined(up, received.event_id, 1);
        let s2 = appended(
            combiner
                .append(&combined, Expect::LastSequence(s1))
                .await
                .unwrap(),
        );
        let registered = sample::dataset_registered(up, combined.event_id, "orders");
        let s3 = appended(
            registrar
                .append(&registered, Expect::LastSequence(s2))
                .await
                .unwrap(),
        );
        // The projector reads everything (an ordered consumer and message gets).
        let history = projector.history(&Aggregate::Upload(up)).await.unwrap();
        assert_eq!(
            history.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [s1, s2, s3]
        );
        let all = projector.read_all(Subject::all()).await.unwrap();
        assert_eq!(all.len(), 3);

        // The gateway cannot register a dataset, nor do a service's step.
        let other = UploadId::new();
        let subject = |kind| Subject::new(&Aggregate::Upload(other), kind).to_string();
        let mut gw = raw(&nats, Role::Gateway).await;
        for kind in [
            EventKind::DatasetRegistered,
            EventKind::PartsCombined,
            EventKind::SchemaInferred,
            EventKind::Failed,
            EventKind::Compensated,
        ] {
            gw.assert_denied(Role::Gateway, &subject(kind)).await;
        }
        // The combiner cannot skip ahead, nor receive uploads.
        let mut cb = raw(&nats, Role::Combiner).await;
        for kind in [
            EventKind::SchemaInferred,
            EventKind::DatasetRegistered,
            EventKind::UploadReceived,
        ] {
            cb.assert_denied(Role::Combiner, &subject(kind)).await;
        }
        // The registrar cannot infer, nor receive uploads.
        let mut rg = raw(&nats, Role::Registrar).await;
        for kind in [EventKind::SchemaInferred, EventKind::UploadReceived] {
            rg.assert_denied(Role::Registrar, &subject(kind)).await;
        }
        // The projector publishes nothing under the log's subjects: every kind, every
        // aggregate.
        let mut pj = raw(&nats, Role::Projector).await;
        for kind in EventKind::ALL {
            pj.assert_denied(Role::Projector, &subject(kind)).await;
        }
        for s in [
            "weir.dataset.data_x.dataset_deleted",
            "weir.name.orders@acme.table_name_claimed",
            "weir.owner.acme.token_created",
        ] {
            pj.assert_denied(Role::Projector, s).await;
        }
        // An outside client may ask for uploads, nothing else.
        let mut cl = raw(&nats, Role::Client).await;
        cl.assert_denied(Role::Client, &subject(EventKind::UploadReceived))
            .await;
        cl.assert_denied(Role::Client, &format!("$JS.API.STREAM.INFO.{STREAM}"))
            .await;

        // A service cannot take another service's deliveries.
        cb.assert_denied(
            Role::Combiner,
            &format!("$JS.API.CONSUMER.MSG.NEXT.{STREAM}.weir-inferrer"),
        )
        .await;
        pj.assert_denied(
            Role::Projector,
            &format!("$JS.API.CONSUMER.MSG.NEXT.{STREAM}.weir-combiner"),
        )
        .await;

        // No role deletes or purges the stream or deletes a message, the admin included.
        for role in Role::ALL {
            let mut r = raw(&nats, role).await;
            for api in ["STREAM.DELETE", "STREAM.PURGE", "STREAM.MSG.DELETE"] {
                r.assert_denied(role, &format!("$JS.API.{api}.{STREAM}"))
                    .await;
            }
        }
        // The admin's own client library call fails too, and the log is intact.
        let deleted = tokio::time::timeout(
            Duration::from_secs(2),
            admin.jetstream().delete_stream(STREAM),
        )
        .await;
        assert!(
            !matches!(deleted, Ok(Ok(_))),
            "the admin deleted the stream"
        );
        let health = admin.stream_health().await.unwrap();
        assert_eq!((health.messages, health.last_sequence), (3, s3));
        assert_eq!(
            projector
                .history(&Aggregate::Upload(other))
                .await
                .unwrap()
                .len(),
            0,
            "a denied append reached the log"
        );

        // The janitor records deletions and purges, and does no service's step; the
        // gateway cannot record a deletion or a purge.
        let janitor = journal_as(&nats, Role::Janitor).await;
        let key = ObjectKey::blob(&Sha256([7; 32]));
        let deleted = Envelope::new(
            Aggregate::Object(key.clone()),
            sample::owner(),
            up,
            None,
            Event::ObjectDeleted(ObjectDeleted {
                key: key.clone(),
                reason: "no live reference".into(),
                size: None,
            }),
        );
        let s4 = appended(janitor.append(&deleted, Expect::Empty).await.unwrap());
        assert_eq!(s4, s3 + 1);
        // It reads what it decides from: an upload's history, an aggregate's last event.
        assert_eq!(
            janitor.history(&Aggregate::Upload(up)).await.unwrap().len(),
            3
        );
        assert_eq!(
            janitor
                .last_on(&Aggregate::Object(key.clone()))
                .await
                .unwrap()
                .map(|r| r.seq),
            Some(s4)
        );
        // And the rest of what it appends: a purge, a lost compensation, an abort.
        let dataset = DatasetId::for_upload(up);
        let purged = Envelope::new(
            Aggregate::Dataset(dataset),
            sample::owner(),
            up,
            None,
            Event::DatasetPurged(DatasetPurged {
                reason: "deleted; not restored within 30d".into(),
            }),
        );
        appended(janitor.append(&purged, Expect::Empty).await.unwrap());
        let compensated = Envelope::new(
            Aggregate::Upload(up),
            sample::owner(),
            up,
            None,
            Event::Compensated(Compensated {
                step: Step::Combine,
                action: CompensationAction::PartsRemoved { count: 1 },
            }),
        );
        appended(janitor.append(&compensated, Expect::Any).await.unwrap());
        let stale = UploadId::new();
        let aborted = Envelope::new(
            Aggregate::Upload(stale),
            sample::owner(),
            stale,
            None,
            Event::UploadAborted(UploadAborted {
                reason: "no UploadReceived 7d after the multipart upload was opened".into(),
                parts_removed: 0,
            }),
        );
        appended(janitor.append(&aborted, Expect::Empty).await.unwrap());
        let mut jn = raw(&nats, Role::Janitor).await;
        for kind in [
            EventKind::DatasetRegistered,
            EventKind::PartsCombined,
            EventKind::UploadReceived,
            EventKind::Failed,
        ] {
            jn.assert_denied(Role::Janitor, &subject(kind)).await;
        }
        jn.assert_denied(Role::Janitor, "weir.dataset.data_x.dataset_deleted")
            .await;
        jn.assert_denied(
            Role::Janitor,
            &format!("$JS.API.CONSUMER.MSG.NEXT.{STREAM}.weir-combiner"),
        )
        .await;
        gw.assert_denied(
            Role::Gateway,
            &Subject::new(&Aggregate::Object(key), EventKind::ObjectDeleted).to_string(),
        )
        .await;
        gw.assert_denied(Role::Gateway, "weir.dataset.data_x.dataset_purged")
            .await;
        assert_eq!(admin.stream_health().await.unwrap().messages, 7);

        // Credentials never print their password.
        let creds: Credentials = passwords.credentials(Role::Gateway);
        assert_eq!(format!("{creds:?}"), "gateway:***");
    })
    .await
    .expect("the permissions test took over 60 s");
}

/// Every event kind is on some role's publish list in `nats.conf`: a new kind added to
/// the events without a producer role would be refused by the server in `weir up`.
#[test]
fn every_event_kind_has_a_role_that_may_publish_it() {
    let conf = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../nats.conf"))
        .expect("nats.conf at the repository's top");
    let missing: Vec<&str> = EventKind::ALL
        .iter()
        .map(|k| k.as_str())
        .filter(|k| !conf.contains(&format!(".*.{k}\"")))
        .collect();
    assert!(
        missing.is_empty(),
        "no role in nats.conf may publish {missing:?}"
    );
}
