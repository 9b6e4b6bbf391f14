//! Shared test support: a fresh database per test on SQLite or Postgres, a nats-server
//! with a journal, realistic event chains appended to it, and a seeded random source.

#![allow(dead_code)]

/// Runs the test function `$name(kind)` once on SQLite and once on Postgres.
macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(super::Kind::Sqlite).await;
            }
            #[tokio::test]
            async fn postgres() {
                super::$name(super::Kind::Postgres).await;
            }
        }
    };
}

use std::hash::{BuildHasher, Hasher};

use weir_events::{
    Aggregate, BadRows, ColumnStats, Compensated, CompensationAction, Compression, DatasetDeleted,
    DatasetId, DatasetLabelChanged, DatasetRegistered, DatasetRenamed, DatasetRestored, Envelope,
    Event, EventId, Failed, Field, Format, NotificationRead, ObjectKey, Owner, PartManifest,
    PartsCombined, Quality, RowProblem, Schema, SchemaInferred, Sha256, StatValue, Statistics,
    Step, StreamSpec, TableName, TableNameClaimed, Timestamp, TokenCreated, TokenRevoked,
    UploadAborted, UploadId, UploadReceived, UploadStarted,
};
use weir_journal::{AppendOutcome, Expect, Journal};
use weir_projections::Db;
use weir_testkit::NatsServer;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// The Postgres server tests create their databases on (trust auth).
fn postgres_base() -> String {
    std::env::var("WEIR_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// A fresh, migrated database, removed when dropped.
pub struct TestDb {
    pub db: Db,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

impl TestDb {
    pub async fn new(kind: Kind) -> Self {
        match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = dir.path().join("weir.db").display().to_string();
                let db = Db::connect(&url).await.expect("open sqlite");
                Self {
                    db,
                    url,
                    _dir: Some(dir),
                    pg_name: None,
                }
            }
            Kind::Postgres => {
                // Unique per database, not drawn from `rng`: with a fixed WEIR_TEST_SEED
                // every test would draw the same name.
                static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos());
                let name = format!(
                    "weir_t_{}_{}_{nanos:08x}",
                    std::process::id(),
                    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                );
                let admin = Db::open(&format!("{}/postgres", postgres_base()))
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "tests need Postgres at {} (set WEIR_TEST_POSTGRES): {e}",
                            postgres_base()
                        )
                    });
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(admin.pool())
                    .await
                    .expect("create test database");
                admin.close().await;
                let url = format!("{}/{name}", postgres_base());
                let db = Db::connect(&url).await.expect("open postgres");
                Self {
                    db,
                    url,
                    _dir: None,
                    pg_name: Some(name),
                }
            }
        }
    }

    /// Another fresh database of the same kind (e.g. a point-in-time target).
    pub async fn sibling(&self) -> TestDb {
        let kind = if self.pg_name.is_some() {
            Kind::Postgres
        } else {
            Kind::Sqlite
        };
        TestDb::new(kind).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        let pool = self.db.pool().clone();
        // Drop runs inside the test's runtime: do the async cleanup on a thread of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                drop(pool);
                if let Ok(admin) = Db::open(&format!("{}/postgres", postgres_base())).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(admin.pool())
                    .await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

/// xorshift64*, seeded from `WEIR_TEST_SEED` or at random; the seed is printed so a
/// failing run can be repeated.
pub struct Rng(u64);

impl Rng {
    pub fn new(test: &str) -> Self {
        let seed = std::env::var("WEIR_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write(test.as_bytes());
                h.finish() | 1
            });
        eprintln!("{test}: WEIR_TEST_SEED={seed}");
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// A nats-server and a journal on it.
pub struct Log {
    pub journal: Journal,
    _nats: NatsServer,
}

impl Log {
    pub async fn start() -> Self {
        let nats = NatsServer::start();
        let journal = Journal::connect(&nats.url(), &StreamSpec::default())
            .await
            .expect("connect to nats");
        Self {
            journal,
            _nats: nats,
        }
    }

    /// Appends and returns the stream sequence.
    pub async fn append(&self, env: &Envelope) -> u64 {
        match self.journal.append(env, Expect::Any).await.expect("append") {
            AppendOutcome::Appended { seq, .. } => seq,
            AppendOutcome::WrongLastSequence => panic!("unconditional append refused"),
        }
    }

    pub async fn append_all(&self, envs: &[Envelope]) -> u64 {
        let mut last = 0;
        for env in envs {
            last = self.append(env).await;
        }
        last
    }
}

pub fn owner(name: &str) -> Owner {
    name.parse().expect("owner")
}

/// One upload's chain of events, each caused by the one before, as the services
/// append them.
pub struct Chain {
    pub owner: Owner,
    pub upload: UploadId,
    pub dataset: DatasetId,
    pub version: u32,
    pub table: TableName,
    pub label: Option<String>,
    pub filename: String,
    last: Option<EventId>,
    /// The DatasetRegistered event of this chain: the id of its "dataset ready"
    /// notification.
    pub registered_event: Option<EventId>,
    /// The branch its version goes on (`None`: main).
    pub branch: Option<String>,
}

pub fn schema(columns: &[(&str, &str)]) -> Schema {
    Schema {
        fields: columns
            .iter()
            .map(|(name, ty)| Field {
                name: (*name).to_owned(),
                original_name: None,
                data_type: (*ty).to_owned(),
                nullable: true,
            })
            .collect(),
    }
}

pub fn stats(rows: u64, schema: &Schema) -> Statistics {
    Statistics {
        rows,
        columns: schema
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| ColumnStats {
                name: f.name.clone(),
                null_count: i as u64,
                min: Some(StatValue::Int(1)),
                max: Some(StatValue::Float(rows as f64 + 0.5)),
            })
            .collect(),
    }
}

impl Chain {
    /// A new upload creating a new dataset.
    pub fn new(owner_name: &str, filename: &str, label: Option<&str>) -> Self {
        let upload = UploadId::new();
        let label = label.map(str::to_owned);
        let table = TableName::derive(label.as_deref().unwrap_or(filename));
        Self {
            owner: owner(owner_name),
            upload,
            dataset: DatasetId::for_upload(upload),
            version: 1,
            table,
            label,
            filename: filename.to_owned(),
            last: None,
            registered_event: None,
            branch: None,
        }
    }

    /// The same upload, its version going on `branch`.
    pub fn on_branch(mut self, branch: &str) -> Self {
        self.branch = Some(branch.to_owned());
        self
    }

    /// An event on the dataset's own aggregate, as its owner.
    pub fn dataset_event(&self, event: Event) -> Envelope {
        Envelope::new(
            Aggregate::Dataset(self.dataset),
            self.owner.clone(),
            UploadId::from_u128(self.dataset.as_u128()),
            Some(EventId::new()),
            event,
        )
    }

    /// A new upload that becomes version `version` of `of`'s dataset.
    pub fn new_version(of: &Chain, filename: &str, version: u32) -> Self {
        Self {
            owner: of.owner.clone(),
            upload: UploadId::new(),
            dataset: of.dataset,
            version,
            table: of.table.clone(),
            label: of.label.clone(),
            filename: filename.to_owned(),
            last: None,
            registered_event: None,
            branch: None,
        }
    }

    fn next(&mut self, aggregate: Aggregate, event: Event) -> Envelope {
        let env = Envelope::new(aggregate, self.owner.clone(), self.upload, self.last, event);
        self.last = Some(env.event_id);
        env
    }

    fn up(&mut self, event: Event) -> Envelope {
        self.next(Aggregate::Upload(self.upload), event)
    }

    pub fn received(&mut self, size: u64) -> Envelope {
        let dataset = (self.version > 1).then_some(self.dataset);
        let event = Event::UploadReceived(UploadReceived {
            owner: self.owner.clone(),
            filename: self.filename.clone(),
            content_type: Some("text/csv".to_owned()),
            format: Some(Format::Csv),
            label: self.label.clone(),
            table_name: None,
            size,
            parts: vec![
                PartManifest {
                    number: 1,
                    size: size / 2,
                    sha256: Sha256([1; 32]),
                },
                PartManifest {
                    number: 2,
                    size: size - size / 2,
                    sha256: Sha256([2; 32]),
                },
            ],
            dataset,
            parent_version: None,
            branch: None,
            options: Default::default(),
            more_files: Vec::new(),
        });
        self.up(event)
    }

    pub fn combined(&mut self, size: u64, deduplicated: bool) -> Envelope {
        let hash = Sha256([(self.upload.as_u128() % 251) as u8; 32]);
        let event = Event::PartsCombined(PartsCombined {
            blob: ObjectKey::blob(&hash),
            size,
            sha256: hash,
            deduplicated,
            more_blobs: Vec::new(),
        });
        self.up(event)
    }

    pub fn inferred(&mut self, schema: &Schema, rows: u64) -> Envelope {
        let event = Event::SchemaInferred(SchemaInferred {
            format: Format::Csv,
            compression: Compression::Gzip,
            dataset: self.dataset,
            version: self.version,
            parquet: ObjectKey::parquet(self.dataset, self.version),
            parquet_size: rows * 10,
            rewritten: true,
            schema: schema.clone(),
            statistics: stats(rows, schema),
            problems: vec![RowProblem {
                line: 3,
                column: None,
                message: "expected 2 fields, found 1".to_owned(),
            }],
            problem_count: 2,
            quality: Quality {
                encoding: "windows-1252".to_owned(),
                encoding_detected: true,
                bad_rows: Some(BadRows::Reject),
                rows_read: rows + 2,
                rejected: 2,
                rejects: Some(ObjectKey::rejects(self.dataset, self.version)),
                rejects_entries: 2,
                validation: None,
            },
        });
        self.up(event)
    }

    pub fn claimed(&mut self) -> Envelope {
        let event = Event::TableNameClaimed(TableNameClaimed {
            owner: self.owner.clone(),
            table_name: self.table.clone(),
            dataset: self.dataset,
            upload: self.upload,
        });
        self.next(
            Aggregate::Name {
                owner: self.owner.clone(),
                table: self.table.clone(),
            },
            event,
        )
    }

    pub fn registered(&mut self, schema: &Schema, rows: u64) -> Envelope {
        let event = Event::DatasetRegistered(DatasetRegistered {
            dataset: self.dataset,
            version: self.version,
            parent_version: (self.version > 1).then(|| self.version - 1),
            owner: self.owner.clone(),
            table_name: self.table.clone(),
            label: self.label.clone(),
            schema: schema.clone(),
            parquet: ObjectKey::parquet(self.dataset, self.version),
            parquet_size: rows * 10,
            statistics: stats(rows, schema),
            schema_diff: None,
            branch: self.branch.clone(),
        });
        let env = self.up(event);
        self.registered_event = Some(env.event_id);
        env
    }

    pub fn failed(&mut self, step: Step, reason: &str) -> Envelope {
        let event = Event::Failed(Failed {
            step,
            reason: reason.to_owned(),
            attempts: 3,
            retryable: false,
        });
        self.up(event)
    }

    pub fn compensated(&mut self, step: Step) -> Envelope {
        let hash = Sha256([(self.upload.as_u128() % 251) as u8; 32]);
        let event = Event::Compensated(Compensated {
            step,
            action: CompensationAction::BlobRemoved {
                blob: ObjectKey::blob(&hash),
            },
        });
        self.up(event)
    }

    pub fn aborted(&mut self, reason: &str) -> Envelope {
        let event = Event::UploadAborted(UploadAborted {
            reason: reason.to_owned(),
            parts_removed: 1,
        });
        self.up(event)
    }

    /// A multipart upload opened by the gateway.
    pub fn started(&mut self, size: u64) -> Envelope {
        let event = Event::UploadStarted(UploadStarted {
            owner: self.owner.clone(),
            filename: self.filename.clone(),
            size,
            part_size: size / 2 + 1,
            part_count: 2,
            expires_at: Timestamp(1_900_000_000_000_000),
        });
        self.up(event)
    }

    fn ds(&mut self, event: Event) -> Envelope {
        self.next(Aggregate::Dataset(self.dataset), event)
    }

    pub fn label_changed(&mut self, label: Option<&str>) -> Envelope {
        self.ds(Event::DatasetLabelChanged(DatasetLabelChanged {
            label: label.map(str::to_owned),
        }))
    }

    pub fn renamed(&mut self, to: &str) -> Envelope {
        let to: TableName = to.parse().expect("table name");
        let from = std::mem::replace(&mut self.table, to.clone());
        self.ds(Event::DatasetRenamed(DatasetRenamed { from, to }))
    }

    pub fn deleted(&mut self) -> Envelope {
        self.ds(Event::DatasetDeleted(DatasetDeleted {
            reason: Some("no longer needed".to_owned()),
        }))
    }

    pub fn restored(&mut self) -> Envelope {
        self.ds(Event::DatasetRestored(DatasetRestored {}))
    }

    /// The owner reads the notification raised by event `notification`.
    pub fn read(&mut self, notification: EventId) -> Envelope {
        let event = Event::NotificationRead(NotificationRead {
            owner: self.owner.clone(),
            notification,
        });
        self.next(Aggregate::Owner(self.owner.clone()), event)
    }

    /// The owner gives `grantee` `level` access to the dataset.
    pub fn granted(&mut self, grantee: &str, level: weir_events::AccessLevel) -> Envelope {
        self.ds(Event::DatasetAccessGranted(
            weir_events::DatasetAccessGranted {
                grantee: owner(grantee),
                level,
            },
        ))
    }

    pub fn revoked(&mut self, grantee: &str) -> Envelope {
        self.ds(Event::DatasetAccessRevoked(
            weir_events::DatasetAccessRevoked {
                grantee: owner(grantee),
            },
        ))
    }

    pub fn token_created(&mut self, token_id: &str, hash: u8) -> Envelope {
        let event = Event::TokenCreated(TokenCreated {
            owner: self.owner.clone(),
            token_id: token_id.to_owned(),
            sha256: Sha256([hash; 32]),
        });
        self.next(Aggregate::Owner(self.owner.clone()), event)
    }

    pub fn token_revoked(&mut self, token_id: &str) -> Envelope {
        let event = Event::TokenRevoked(TokenRevoked {
            owner: self.owner.clone(),
            token_id: token_id.to_owned(),
        });
        self.next(Aggregate::Owner(self.owner.clone()), event)
    }

    /// The whole happy path: received, combined, inferred, claimed, registered.
    pub fn happy(&mut self, schema: &Schema, rows: u64) -> Vec<Envelope> {
        vec![
            self.received(rows * 40),
            self.combined(rows * 40, false),
            self.inferred(schema, rows),
            self.claimed(),
            self.registered(schema, rows),
        ]
    }
}

/// A mixed workload of about `events` events: happy uploads, new versions of earlier
/// datasets, uploads failing at infer (with compensation) or register, aborted ones.
pub fn workload(rng: &mut Rng, events: usize) -> Vec<Envelope> {
    let owners = ["acme", "globex", "initech"];
    let cols = schema(&[
        ("id", "Int64"),
        ("name", "Utf8"),
        ("at", "Timestamp(µs, \"UTC\")"),
    ]);
    let mut out = Vec::with_capacity(events + 8);
    let mut done: Vec<Chain> = Vec::new();
    let mut n = 0u64;
    while out.len() < events {
        n += 1;
        let owner = owners[(rng.next() % 3) as usize];
        let rows = rng.range(1, 100_000);
        match rng.next() % 10 {
            0 | 1 if !done.is_empty() => {
                let i = (rng.next() as usize) % done.len();
                let version = done[i].version + 1;
                let mut c = Chain::new_version(&done[i], &format!("v{n}.csv"), version);
                out.extend([
                    c.received(rows * 40),
                    c.combined(rows * 40, true),
                    c.inferred(&cols, rows),
                    c.registered(&cols, rows),
                ]);
                done[i] = c;
            }
            2 => {
                let mut c = Chain::new(owner, &format!("bad{n}.csv"), None);
                out.extend([
                    c.received(rows),
                    c.combined(rows, false),
                    c.failed(
                        Step::Infer,
                        &format!("line {n}: column \"id\": not an integer"),
                    ),
                    c.compensated(Step::Infer),
                ]);
            }
            3 => {
                let mut c = Chain::new(owner, &format!("gone{n}.csv"), None);
                out.extend([c.started(rows), c.aborted("abandoned for 7 days")]);
            }
            4 if !done.is_empty() => {
                // Edits of an existing dataset, and its owner reading a notification.
                let i = (rng.next() as usize) % done.len();
                let c = &mut done[i];
                let ready = c.registered_event.expect("a registered chain");
                let grantee = owners[(rng.next() % 3) as usize];
                out.push(match rng.next() % 8 {
                    0 => c.label_changed(Some(&format!("Relabelled {n}"))),
                    1 => c.renamed(&format!("renamed_{n}")),
                    2 => c.deleted(),
                    3 => c.restored(),
                    // Grants (to the owner too: the log allows what the CLI refuses)
                    // and a revoke, granted before or not.
                    5 | 6 => c.granted(
                        grantee,
                        weir_events::AccessLevel::ALL[(rng.next() % 3) as usize],
                    ),
                    7 => c.revoked(grantee),
                    _ => c.read(ready),
                });
            }
            5 => {
                let mut c = Chain::new(owner, &format!("multi{n}.csv"), None);
                out.extend([c.started(rows * 40)]);
                out.extend(c.happy(&cols, rows));
                done.push(c);
            }
            _ => {
                let mut c = Chain::new(
                    owner,
                    &format!("file{n}.csv"),
                    Some(&format!("Data set {n}")),
                );
                out.extend(c.happy(&cols, rows));
                done.push(c);
            }
        }
    }
    // Every seed ends with a grant no revoke in the workload can take back (the
    // grantee is none of the owners), so the grants table is never empty by chance.
    if let Some(c) = done.last_mut() {
        out.push(c.granted("auditor", weir_events::AccessLevel::ALL[0]));
    }
    out
}
