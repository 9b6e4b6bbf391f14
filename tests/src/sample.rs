//! Small, valid events for tests that need a log to read: each builds the envelope a
//! real service would append, with fixed, recognisable payloads.

use weir_events::*;

pub fn owner() -> Owner {
    "acme".parse().expect("valid owner")
}

fn envelope(upload: UploadId, cause: Option<EventId>, event: Event) -> Envelope {
    Envelope::new(Aggregate::Upload(upload), owner(), upload, cause, event)
}

pub fn upload_received(upload: UploadId, filename: &str) -> Envelope {
    envelope(
        upload,
        None,
        Event::UploadReceived(UploadReceived {
            owner: owner(),
            filename: filename.into(),
            content_type: None,
            format: None,
            label: None,
            table_name: None,
            size: 1,
            parts: vec![PartManifest {
                number: 1,
                size: 1,
                sha256: Sha256([0; 32]),
            }],
            dataset: None,
            parent_version: None,
            branch: None,
            options: Default::default(),
            more_files: Vec::new(),
        }),
    )
}

pub fn parts_combined(upload: UploadId, cause: EventId, tag: u8) -> Envelope {
    envelope(
        upload,
        Some(cause),
        Event::PartsCombined(PartsCombined {
            blob: ObjectKey::blob(&Sha256([tag; 32])),
            size: 1,
            sha256: Sha256([tag; 32]),
            deduplicated: false,
            more_blobs: Vec::new(),
        }),
    )
}

pub fn failed(upload: UploadId, cause: EventId, reason: &str) -> Envelope {
    envelope(
        upload,
        Some(cause),
        Event::Failed(Failed {
            step: Step::Infer,
            reason: reason.into(),
            attempts: 1,
            retryable: false,
        }),
    )
}

pub fn dataset_registered(upload: UploadId, cause: EventId, table: &str) -> Envelope {
    let dataset = DatasetId::for_upload(upload);
    envelope(
        upload,
        Some(cause),
        Event::DatasetRegistered(DatasetRegistered {
            dataset,
            version: 1,
            parent_version: None,
            owner: owner(),
            table_name: table.parse().expect("valid table name"),
            label: None,
            schema: Schema::default(),
            parquet: ObjectKey::parquet(dataset, 1),
            parquet_size: 1,
            statistics: Statistics::default(),
            schema_diff: None,
            branch: None,
        }),
    )
}
