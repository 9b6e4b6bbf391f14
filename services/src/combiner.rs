//! combiner: `UploadReceived` → `PartsCombined`.
//!
//! Checks each part's size and sha256 against the manifest and gives the whole file its
//! content address (`blobs/sha256/<hash>`); identical content is stored once. A single
//! part is verified by the digest weir recorded when it wrote the part, while the file
//! is unchanged since (`Store::digest_as_written`; otherwise it is read once), and then
//! linked to its address (no copy); several
//! parts are streamed, in order, into one object that is then moved there. An upload
//! of several files (`--one-version`) gets one blob per file, in one `PartsCombined`.
//! Parts are removed once `PartsCombined` is in the log.

use std::sync::Arc;

use weir_events::{
    CombinedBlob, CompensationAction, Event, EventKind, ObjectKey, PartLayout, PartManifest,
    PartsCombined, Step,
};
use weir_journal::Recorded;

use crate::runtime::{Ctx, Service, StepError};
use crate::state::UploadState;
use crate::store::Digested;

pub struct Combiner;

impl Service for Combiner {
    const NAME: &'static str = "combiner";
    const STEP: Step = Step::Combine;
    const INPUT: EventKind = EventKind::UploadReceived;

    /// `UploadReceived` carries everything this step reads, and only `UploadStarted`
    /// (which changes no state) can come before it: the event alone is the state.
    fn state_from_input(input: &Recorded) -> Option<UploadState> {
        let mut state = UploadState::default();
        state.apply(input);
        Some(state)
    }

    async fn handle(
        self: Arc<Self>,
        ctx: Ctx,
        input: Recorded,
        _state: UploadState,
    ) -> Result<Vec<Event>, StepError> {
        let upload = input.envelope.correlation_id;
        let Event::UploadReceived(received) = &input.envelope.event else {
            return Err(StepError::Permanent(
                "combiner got an event that is not UploadReceived".into(),
            ));
        };
        // Parts lie where they did when `UploadReceived` was appended.
        let layout = PartLayout::of(input.envelope.schema_version);
        // Parts are numbered 1, 2, 3 … across all the files of the upload.
        let mut next = 1u32;
        let mut blobs = Vec::with_capacity(1 + received.more_files.len());
        for (index, (file, size, parts)) in received.files().enumerate() {
            if let Some((i, p)) = parts
                .iter()
                .enumerate()
                .find(|(i, p)| p.number != next + *i as u32)
            {
                return Err(StepError::Permanent(format!(
                    "{file}: parts must be numbered {next}, {} …; entry {} is part {}",
                    next + 1,
                    i + 1,
                    p.number
                )));
            }
            next += parts.len() as u32;
            let staging = layout.staging_of(upload, index + 1);
            blobs.push(combine_file(&ctx, upload, layout, file, size, parts, &staging).await?);
        }
        let mut blobs = blobs.into_iter();
        let first = blobs.next().expect("an upload has at least one file");
        Ok(vec![Event::PartsCombined(PartsCombined {
            blob: first.blob,
            size: first.size,
            sha256: first.sha256,
            deduplicated: first.deduplicated,
            more_blobs: blobs.collect(),
        })])
    }

    async fn after(self: Arc<Self>, ctx: Ctx, state: UploadState) -> Result<(), StepError> {
        remove_parts(&ctx, &state).await.map(|_| ())
    }

    async fn compensate(
        self: Arc<Self>,
        ctx: Ctx,
        state: UploadState,
    ) -> Result<Vec<CompensationAction>, StepError> {
        let count = remove_parts(&ctx, &state).await?;
        if let (Some(upload), Some((_, received))) = (state.upload, state.received.as_ref()) {
            for file in 1..=received.files().count() {
                ctx.store
                    .delete(&state.parts.staging_of(upload, file))
                    .await?;
            }
        }
        Ok(vec![CompensationAction::PartsRemoved { count }])
    }
}

/// Deletes the upload's parts (idempotent); returns how many the manifest lists. A
/// flat part's folder twin (see `combine_file`) is left to the janitor, which removes
/// objects under `uploads/` that no event names.
pub async fn remove_parts(ctx: &Ctx, state: &UploadState) -> Result<u32, StepError> {
    let (Some(upload), Some((_, received))) = (state.upload, state.received.as_ref()) else {
        return Ok(0);
    };
    let mut count = 0;
    for part in received.all_parts() {
        ctx.store
            .delete(&state.parts.part(upload, part.number))
            .await?;
        count += 1;
    }
    Ok(count)
}

/// The folder key of part `number` when a flat-layout event names the part but only
/// that key holds it: written by a producer or gateway from before parts were flat,
/// named by an event from after.
async fn folder_twin(
    ctx: &Ctx,
    upload: weir_events::UploadId,
    layout: PartLayout,
    number: u32,
) -> Result<Option<ObjectKey>, StepError> {
    if layout != PartLayout::Flat {
        return Ok(None);
    }
    let twin = PartLayout::Folder.part(upload, number);
    Ok(ctx.store.exists(&twin).await?.map(|_| twin))
}

fn missing(file: &str, e: crate::store::StoreError) -> StepError {
    match e {
        crate::store::StoreError::NotFound { key } => StepError::Permanent(format!(
            "{file}: part {key} is missing from the object store (was it uploaded?)"
        )),
        other => other.into(),
    }
}

fn mismatch(file: &str, part: &PartManifest, got: &Digested) -> StepError {
    StepError::Permanent(format!(
        "{file}: part {} does not match its manifest: expected {} bytes with sha256 {}, found {} bytes with sha256 {}",
        part.number, part.size, part.sha256, got.size, got.sha256
    ))
}

fn declared(file: &str, declared_size: u64, total: &Digested) -> StepError {
    StepError::Permanent(format!(
        "{file}: parts add up to {} bytes but the upload declared {declared_size}",
        total.size
    ))
}

/// Verifies one file's parts against their manifest and gives the file its content
/// address: a single part by a link (no copy), several by concatenating them into
/// `staging` and moving the result.
async fn combine_file(
    ctx: &Ctx,
    upload: weir_events::UploadId,
    layout: PartLayout,
    file: &str,
    declared_size: u64,
    parts: &[PartManifest],
    staging: &ObjectKey,
) -> Result<CombinedBlob, StepError> {
    let keys: Vec<ObjectKey> = parts
        .iter()
        .map(|p| layout.part(upload, p.number))
        .collect();
    if let [part] = parts {
        // One part is the whole file: verify it where it is (by the digest recorded
        // when it was written, or one read) and give it its content address by a link,
        // not a copy. The part's name goes in `after`. The checks against the manifest
        // run between the digest and the link, inside the store's one call.
        let check = {
            let (part, file) = (part.clone(), file.to_owned());
            move |got: &Digested| -> Result<ObjectKey, StepError> {
                if part.size != got.size || part.sha256 != got.sha256 {
                    return Err(mismatch(&file, &part, got));
                }
                if got.size != declared_size {
                    return Err(declared(&file, declared_size, got));
                }
                Ok(ObjectKey::blob(&got.sha256))
            }
        };
        let (got, blob, linked) = match ctx.store.digest_then_link(&keys[0], check.clone()).await {
            Err(crate::store::StoreError::NotFound { key }) => {
                match folder_twin(ctx, upload, layout, part.number).await? {
                    Some(twin) => ctx
                        .store
                        .digest_then_link(&twin, check)
                        .await
                        .map_err(|e| missing(file, e))??,
                    None => return Err(missing(file, crate::store::StoreError::NotFound { key })),
                }
            }
            got => got.map_err(|e| missing(file, e))??,
        };
        return Ok(CombinedBlob {
            blob,
            size: got.size,
            sha256: got.sha256,
            deduplicated: !linked,
        });
    }
    let mut keys = keys;
    for (key, part) in keys.iter_mut().zip(parts) {
        if ctx.store.exists(key).await?.is_none()
            && let Some(twin) = folder_twin(ctx, upload, layout, part.number).await?
        {
            *key = twin;
        }
    }
    let mut seen: Vec<Digested> = Vec::with_capacity(keys.len());
    let total = ctx
        .store
        .concat(&keys, staging, |_, d| seen.push(d))
        .await
        .map_err(|e| missing(file, e))?;
    for (part, got) in parts.iter().zip(&seen) {
        if part.size != got.size || part.sha256 != got.sha256 {
            let _ = ctx.store.delete(staging).await;
            return Err(mismatch(file, part, got));
        }
    }
    if total.size != declared_size {
        let _ = ctx.store.delete(staging).await;
        return Err(declared(file, declared_size, &total));
    }
    let blob = ObjectKey::blob(&total.sha256);
    let deduplicated = ctx.store.exists(&blob).await?.is_some();
    if deduplicated {
        ctx.store.delete(staging).await?;
    } else {
        ctx.store.rename(staging, &blob).await?;
    }
    Ok(CombinedBlob {
        blob,
        size: total.size,
        sha256: total.sha256,
        deduplicated,
    })
}
