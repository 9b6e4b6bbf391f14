//! Golden encodings: every variant, built from fixed values, must encode to the bytes
//! stored in `tests/golden/<kind>.hex`. A changed encoding fails here; regenerate only
//! for a deliberate, versioned change with `UPDATE_GOLDEN=1 cargo test -p weir-events`.

use std::path::PathBuf;

use weir_events::*;

fn owner() -> Owner {
    "acme".parse().unwrap()
}

const UPLOAD: UploadId = UploadId::from_u128(0x0193_5c1e_7a00_7000_8000_0000_0000_0001);
const DATASET: DatasetId = DatasetId::for_upload(UPLOAD);

fn hash(b: u8) -> Sha256 {
    Sha256([b; 32])
}

fn schema() -> Schema {
    Schema {
        fields: vec![
            Field {
                name: "id".into(),
                original_name: Some("ID".into()),
                data_type: "Int64".into(),
                nullable: false,
            },
            Field {
                name: "zip".into(),
                original_name: None,
                data_type: "Utf8".into(),
                nullable: true,
            },
        ],
    }
}

fn stats() -> Statistics {
    Statistics {
        rows: 3,
        columns: vec![
            ColumnStats {
                name: "id".into(),
                null_count: 0,
                min: Some(StatValue::Int(1)),
                max: Some(StatValue::Int(3)),
            },
            ColumnStats {
                name: "zip".into(),
                null_count: 1,
                min: None,
                max: Some(StatValue::Text("2024-01-01".into())),
            },
        ],
    }
}

/// One fixed example of every variant, in declaration order.
fn examples() -> Vec<Event> {
    let table: TableName = "orders".parse().unwrap();
    vec![
        Event::UploadReceivedV1(UploadReceivedV1 {
            owner: owner(),
            filename: "orders.csv".into(),
            content_type: Some("text/csv".into()),
            format: Some(Format::Csv),
            label: Some("Orders".into()),
            table_name: Some("orders".into()),
            size: 300,
            parts: vec![
                PartManifest {
                    number: 1,
                    size: 200,
                    sha256: hash(1),
                },
                PartManifest {
                    number: 2,
                    size: 100,
                    sha256: hash(2),
                },
            ],
            dataset: None,
        }),
        Event::PartsCombinedV1(PartsCombinedV1 {
            blob: ObjectKey::blob(&hash(3)),
            size: 300,
            sha256: hash(3),
            deduplicated: false,
        }),
        Event::SchemaInferredV1(SchemaInferredV1 {
            format: Format::Csv,
            compression: Compression::Gzip,
            dataset: DATASET,
            version: 1,
            parquet: ObjectKey::parquet(DATASET, 1),
            parquet_size: 1234,
            rewritten: true,
            schema: schema(),
            statistics: stats(),
            problems: vec![RowProblem {
                line: 7,
                column: Some("zip".into()),
                message: "ragged row".into(),
            }],
            problem_count: 1,
        }),
        Event::DatasetRegisteredV1(DatasetRegisteredV1 {
            dataset: DATASET,
            version: 1,
            parent_version: None,
            owner: owner(),
            table_name: table.clone(),
            label: Some("Orders".into()),
            schema: schema(),
            parquet: ObjectKey::parquet(DATASET, 1),
            parquet_size: 1234,
            statistics: stats(),
        }),
        Event::Failed(Failed {
            step: Step::Infer,
            reason: "orders.csv line 7, column \"qty\": \"x\" is not an int64".into(),
            attempts: 1,
            retryable: false,
        }),
        Event::UploadAborted(UploadAborted {
            reason: "aborted by owner".into(),
            parts_removed: 2,
        }),
        Event::Compensated(Compensated {
            step: Step::Register,
            action: CompensationAction::ParquetRemoved {
                parquet: ObjectKey::parquet(DATASET, 1),
            },
        }),
        Event::TableNameClaimed(TableNameClaimed {
            owner: owner(),
            table_name: table.clone(),
            dataset: DATASET,
            upload: UPLOAD,
        }),
        Event::TableNameReleased(TableNameReleased {
            owner: owner(),
            table_name: table.clone(),
            dataset: DATASET,
        }),
        Event::UploadStarted(UploadStarted {
            owner: owner(),
            filename: "big.csv".into(),
            size: 20 << 20,
            part_size: 8 << 20,
            part_count: 3,
            expires_at: "2026-11-22T08:15:00Z".parse().unwrap(),
        }),
        Event::NotificationRead(NotificationRead {
            owner: owner(),
            notification: EventId(uuid::Uuid::from_u128(0xcc)),
        }),
        Event::DatasetLabelChanged(DatasetLabelChanged {
            label: Some("Orders 2026".into()),
        }),
        Event::DatasetRenamed(DatasetRenamed {
            from: table,
            to: "orders_2026".parse().unwrap(),
        }),
        Event::DatasetDeleted(DatasetDeleted {
            reason: Some("superseded".into()),
        }),
        Event::DatasetRestored(DatasetRestored {}),
        Event::TokenCreated(TokenCreated {
            owner: owner(),
            token_id: "wt_ab12".into(),
            sha256: hash(4),
        }),
        Event::TokenRevoked(TokenRevoked {
            owner: owner(),
            token_id: "wt_ab12".into(),
        }),
        Event::UploadReceivedV2(UploadReceivedV2 {
            owner: owner(),
            filename: "orders.csv".into(),
            content_type: Some("text/csv".into()),
            format: Some(Format::Csv),
            label: None,
            table_name: Some("orders".into()),
            size: 300,
            parts: vec![PartManifest {
                number: 1,
                size: 300,
                sha256: hash(1),
            }],
            dataset: Some(DATASET),
            parent_version: Some(1),
            branch: Some("dev".into()),
            options: ReadOptions {
                encoding: Some("latin1".into()),
                bad_rows: Some(BadRows::Reject),
                max_bad_rows: Some(MaxBadRows::Ppm(10_000)),
                columns: vec![ColumnOverride {
                    name: "amount".into(),
                    data_type: "decimal(12,2)".into(),
                }],
                validator: None,
            },
        }),
        Event::SchemaInferred(SchemaInferred {
            format: Format::Csv,
            compression: Compression::None,
            dataset: DATASET,
            version: 1,
            parquet: ObjectKey::parquet(DATASET, 1),
            parquet_size: 1234,
            rewritten: true,
            schema: schema(),
            statistics: stats(),
            problems: vec![RowProblem {
                line: 7,
                column: None,
                message: "expected 2 fields, found 3".into(),
            }],
            problem_count: 1,
            quality: Quality {
                encoding: "windows-1252".into(),
                encoding_detected: true,
                bad_rows: Some(BadRows::Reject),
                rows_read: 4,
                rejected: 1,
                rejects: Some(ObjectKey::rejects(DATASET, 1)),
                rejects_entries: 1,
                validation: None,
            },
        }),
        Event::DatasetVersionReserved(DatasetVersionReserved {
            version: 2,
            upload: UPLOAD,
            parent_version: Some(1),
            branch: Some("dev".into()),
        }),
        Event::DatasetBadRowsChanged(DatasetBadRowsChanged {
            bad_rows: Some(BadRows::Pad),
        }),
        Event::DatasetRegistered(DatasetRegistered {
            dataset: DATASET,
            version: 2,
            parent_version: Some(1),
            owner: owner(),
            table_name: "orders".parse().unwrap(),
            label: None,
            schema: schema(),
            parquet: ObjectKey::parquet(DATASET, 2),
            parquet_size: 1234,
            statistics: stats(),
            schema_diff: Some(SchemaDiff {
                added: vec![schema().fields[1].clone()],
                removed: vec![],
                type_changes: vec![TypeChange {
                    name: "id".into(),
                    from: "Int64".into(),
                    to: "Float64".into(),
                    change: TypeChangeKind::Widened,
                }],
            }),
            branch: Some("dev".into()),
        }),
        Event::DatasetSchemaPolicyChanged(DatasetSchemaPolicyChanged {
            policy: SchemaPolicy::Additive,
        }),
        Event::DatasetBranched(DatasetBranched {
            branch: "dev".into(),
            from_version: 1,
        }),
        Event::DatasetTagged(DatasetTagged {
            tag: "q3-final".into(),
            version: 2,
        }),
        Event::DatasetHeadMoved(DatasetHeadMoved {
            branch: None,
            to_version: 1,
        }),
        Event::DatasetAccessGranted(DatasetAccessGranted {
            grantee: "globex".parse().unwrap(),
            level: AccessLevel::Write,
        }),
        Event::DatasetAccessRevoked(DatasetAccessRevoked {
            grantee: "globex".parse().unwrap(),
        }),
        Event::ObjectDeleted(ObjectDeleted {
            key: ObjectKey::blob(&hash(3)),
            reason: "failed upload ended 2026-08-24T08:00:00Z; retention 90 days".into(),
            size: Some(300),
        }),
        Event::DatasetPurged(DatasetPurged {
            reason: "deleted 2026-10-23T08:00:00Z; retention 30 days".into(),
        }),
        Event::UploadReceived(UploadReceived {
            owner: owner(),
            filename: "orders.csv".into(),
            content_type: Some("text/csv".into()),
            format: Some(Format::Csv),
            label: None,
            table_name: Some("orders".into()),
            size: 300,
            parts: vec![PartManifest {
                number: 1,
                size: 300,
                sha256: hash(1),
            }],
            dataset: Some(DATASET),
            parent_version: Some(1),
            branch: Some("dev".into()),
            options: ReadOptions {
                encoding: Some("latin1".into()),
                bad_rows: Some(BadRows::Reject),
                max_bad_rows: Some(MaxBadRows::Ppm(10_000)),
                columns: vec![ColumnOverride {
                    name: "amount".into(),
                    data_type: "decimal(12,2)".into(),
                }],
                validator: None,
            },
            more_files: vec![UploadFile {
                filename: "orders-2.csv".into(),
                size: 120,
                parts: vec![PartManifest {
                    number: 2,
                    size: 120,
                    sha256: hash(4),
                }],
            }],
        }),
        Event::PartsCombined(PartsCombined {
            blob: ObjectKey::blob(&hash(3)),
            size: 300,
            sha256: hash(3),
            deduplicated: false,
            more_blobs: vec![CombinedBlob {
                blob: ObjectKey::blob(&hash(5)),
                size: 120,
                sha256: hash(5),
                deduplicated: true,
            }],
        }),
    ]
}

/// The golden file's name: the kind, with the wire version for a variant that
/// replaced an earlier one (the legacy variant keeps the plain name).
fn golden_name(event: &Event) -> String {
    match event {
        Event::UploadReceivedV2(_)
        | Event::SchemaInferred(_)
        | Event::DatasetRegistered(_)
        | Event::PartsCombined(_) => format!("{}.v2", event.kind()),
        Event::UploadReceived(_) => format!("{}.v3", event.kind()),
        other => other.kind().to_string(),
    }
}

fn envelope(event: Event) -> Envelope {
    Envelope {
        // The golden files were written at version 1. Version 2 changed where the parts
        // an event names lie, not one byte of any event, so they stay what they were.
        schema_version: 1,
        event_id: EventId(uuid::Uuid::from_u128(
            0x0193_5c1e_7a00_7000_8000_0000_0000_00aa,
        )),
        aggregate: Aggregate::Upload(UPLOAD),
        occurred_at: "2026-11-22T08:00:00.123456Z".parse().unwrap(),
        actor: owner(),
        causation_id: Some(EventId(uuid::Uuid::from_u128(0xbb))),
        correlation_id: UPLOAD,
        event,
    }
}

fn golden_path(event: &Event) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{}.hex", golden_name(event)))
}

#[test]
fn examples_cover_every_kind_in_order() {
    // Wire order: the first 17 kinds, the two variants that replaced legacy ones, then
    // the kinds added after them, then the variants that replaced `UploadReceived`
    // (v2) and `PartsCombined` (v1) for uploads of several files.
    let kinds: Vec<_> = examples().iter().map(Event::kind).collect();
    assert_eq!(kinds[..17], EventKind::ALL[..17]);
    assert_eq!(
        kinds[17..19],
        [EventKind::UploadReceived, EventKind::SchemaInferred]
    );
    assert_eq!(kinds[19..21], EventKind::ALL[17..19]);
    assert_eq!(
        kinds[21..23],
        [
            EventKind::DatasetRegistered,
            EventKind::DatasetSchemaPolicyChanged
        ]
    );
    assert_eq!(kinds[23..kinds.len() - 2], EventKind::ALL[20..]);
    assert_eq!(
        kinds[kinds.len() - 2..],
        [EventKind::UploadReceived, EventKind::PartsCombined]
    );
}

#[test]
fn legacy_variants_decode_as_their_successors() {
    for event in examples() {
        let legacy = matches!(
            event,
            Event::UploadReceivedV1(_)
                | Event::UploadReceivedV2(_)
                | Event::PartsCombinedV1(_)
                | Event::SchemaInferredV1(_)
                | Event::DatasetRegisteredV1(_)
        );
        let bytes = envelope(event.clone()).encode(DEFAULT_MAX_PAYLOAD).unwrap();
        let decoded = Envelope::decode(&bytes).unwrap().event;
        assert_eq!(decoded.kind(), event.kind());
        if legacy {
            assert!(matches!(
                decoded,
                Event::UploadReceived(_)
                    | Event::PartsCombined(_)
                    | Event::SchemaInferred(_)
                    | Event::DatasetRegistered(_)
            ));
            assert_eq!(decoded.summary(), event.summary());
        } else {
            assert_eq!(decoded, event);
        }
    }
}

#[test]
fn every_variant_matches_its_golden_bytes() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for event in examples() {
        let kind = event.kind();
        let path = golden_path(&event);
        let bytes = envelope(event).encode(DEFAULT_MAX_PAYLOAD).unwrap();
        if update {
            std::fs::write(&path, hex::encode(&bytes) + "\n").unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; a new variant needs UPDATE_GOLDEN=1 once",
                path.display()
            )
        });
        assert_eq!(
            hex::encode(&bytes),
            want.trim(),
            "{kind}: the postcard encoding changed; old events would no longer decode"
        );
    }
}

#[test]
fn golden_bytes_decode_to_the_examples() {
    for event in examples() {
        let text = std::fs::read_to_string(golden_path(&event)).unwrap();
        let want = envelope(event.upgrade());
        let bytes = hex::decode(text.trim()).unwrap();
        assert_eq!(Envelope::decode(&bytes).unwrap(), want);
    }
}

#[test]
fn every_variant_round_trips_through_json() {
    for event in examples() {
        let env = envelope(event);
        let json = serde_json::to_string(&env).unwrap();
        let back: Envelope = serde_json::from_str(&json).unwrap();
        assert_eq!(back, env);
        assert!(json.contains("\"upld_"), "ids are text in JSON: {json}");
    }
}

#[test]
fn an_event_over_max_payload_is_refused_when_built() {
    let mut env = envelope(examples().remove(0));
    if let Event::UploadReceivedV1(u) = &mut env.event {
        u.parts = (1..=40_000)
            .map(|n| PartManifest {
                number: n,
                size: 1,
                sha256: hash(9),
            })
            .collect();
    }
    let err = env.encode(DEFAULT_MAX_PAYLOAD).unwrap_err();
    assert!(matches!(err, EncodeError::TooLarge { size, .. } if size > DEFAULT_MAX_PAYLOAD));
    assert!(err.to_string().contains("max payload"));
}

#[test]
fn a_newer_schema_version_is_refused_with_a_clear_error() {
    let mut env = envelope(examples().remove(4));
    env.schema_version = SCHEMA_VERSION + 1;
    let bytes = postcard::to_stdvec(&env).unwrap();
    let err = Envelope::decode(&bytes).unwrap_err();
    assert!(matches!(err, DecodeError::NewerSchema(v) if v == SCHEMA_VERSION + 1));
}

#[test]
fn the_current_version_differs_from_the_goldens_only_in_its_version() {
    for event in examples() {
        let old = envelope(event);
        let new = Envelope {
            schema_version: SCHEMA_VERSION,
            ..old.clone()
        };
        let (a, b) = (
            postcard::to_stdvec(&old).unwrap(),
            postcard::to_stdvec(&new).unwrap(),
        );
        // A u16 under 128 is one byte in postcard.
        assert_eq!((a[0], b[0]), (1, SCHEMA_VERSION as u8));
        assert_eq!(a[1..], b[1..], "{}", golden_name(&old.event));
        let upgraded = Envelope {
            event: new.event.clone().upgrade(),
            ..new
        };
        assert_eq!(Envelope::decode(&b).unwrap(), upgraded);
    }
}

#[test]
fn msg_ids_are_deterministic_per_logical_append() {
    let a = envelope(examples().remove(1));
    let mut b = a.clone();
    b.event_id = EventId::new();
    b.occurred_at = Timestamp::now();
    assert_eq!(a.msg_id(), b.msg_id());
    let mut c = a.clone();
    c.causation_id = Some(EventId::new());
    assert_ne!(a.msg_id(), c.msg_id());
}
