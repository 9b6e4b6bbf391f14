//! inferrer: `PartsCombined` → `SchemaInferred`.
//!
//! Sniffs the format, infers the schema, validates rows and converts the blob (the
//! blobs, for an upload of several files) to Parquet, stored by the hash of its content
//! at `parquet/sha256/<hash>` (a Parquet upload that needs no rewrite is served from
//! its blob); rejects go to `datasets/<dataset>/v<k>/rejects.ndjson`. A local store's
//! blob is converted where it lies and the Parquet is moved into place, so the bytes
//! are read once, by the conversion. The conversion itself lives in `weir-schemas` and
//! runs on a blocking thread with bounded memory.

use std::path::PathBuf;
use std::sync::Arc;

use weir_events::{
    Aggregate, BadRows, DatasetId, DatasetVersionReserved, Envelope, Event, EventKind, ObjectKey,
    Quality, SchemaInferred, Step, UploadId, UploadReceived,
};
use weir_journal::{AppendOutcome, Expect, Recorded};

use crate::dataset::DatasetFacts;
use weir_schemas::{ConvertOptions, convert_many};

use crate::runtime::{Ctx, Service, StepError};
use crate::state::UploadState;

pub struct Inferrer;

/// Takes the next version number of dataset `d` for `upload` (or finds the one it
/// took before a redelivery), appended conditionally on the dataset's last event.
async fn reserve_version(
    ctx: &Ctx,
    input: &Recorded,
    upload: UploadId,
    received: &UploadReceived,
    d: DatasetId,
) -> Result<(u32, DatasetFacts), StepError> {
    for _ in 0..8 {
        let facts = DatasetFacts::read(&ctx.journal, d).await?;
        facts
            .allow(&received.owner, weir_events::DatasetAction::Upload)
            .map_err(StepError::Permanent)?;
        if let Some((version, _)) = facts.reserved_by(upload) {
            return Ok((version, facts));
        }
        if facts.deleted {
            return Err(StepError::Permanent(format!(
                "dataset {d} is deleted; restore it before adding a version"
            )));
        }
        let branch = received.branch.as_deref().filter(|b| *b != "main");
        if !facts.has_branch(branch) {
            let known: Vec<&str> = facts.branches.keys().map(String::as_str).collect();
            return Err(StepError::Permanent(format!(
                "dataset {d} has no branch {:?} (branches: main{}{}); create it with weir datasets branch {d} NAME",
                branch.unwrap_or_default(),
                if known.is_empty() { "" } else { ", " },
                known.join(", ")
            )));
        }
        let parent = match received.parent_version {
            Some(p) if facts.registered(&ctx.journal, p).await? => p,
            Some(p) => {
                let known: Vec<String> = facts.versions.keys().map(|v| format!("v{v}")).collect();
                return Err(StepError::Permanent(format!(
                    "dataset {d} has no registered version {p} to derive from (versions taken: {})",
                    known.join(", ")
                )));
            }
            None => facts.branch_head(&ctx.journal, branch, upload).await?,
        };
        let version = facts.next_version();
        let env = Envelope::new(
            Aggregate::Dataset(d),
            received.owner.clone(),
            upload,
            Some(input.envelope.event_id),
            Event::DatasetVersionReserved(DatasetVersionReserved {
                version,
                upload,
                parent_version: Some(parent),
                branch: branch.map(str::to_owned),
            }),
        );
        let expect = if facts.last_seq == 0 {
            Expect::Empty
        } else {
            Expect::LastSequence(facts.last_seq)
        };
        match ctx.journal.append(&env, expect).await? {
            AppendOutcome::Appended { .. } => return Ok((version, facts)),
            // Another event on the dataset came first: read again.
            AppendOutcome::WrongLastSequence => {}
        }
    }
    Err(StepError::Transient(format!(
        "dataset {d}: reserving a version kept racing with other changes; retrying"
    )))
}

/// Inputs at least this large are converted at most [`HEAVY`] at a time; smaller ones
/// take a moment each and run as they come (the runtime's concurrency bounds them).
pub const HEAVY_BYTES: u64 = 32 << 20;

/// Slots for big conversions in this process: two, one per core of a small machine.
pub static HEAVY: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// What the blocking half of the step hands back: the conversion, the Parquet's key
/// and, when it was moved into a local store, its size; the rejects' size when moved.
struct Converting {
    converted: weir_schemas::Converted,
    parquet: Option<(ObjectKey, Option<u64>)>,
    rejects_moved: Option<u64>,
}

/// Scratch files of one step, removed however the step ends (a file already moved
/// into the store is simply not there any more).
struct Scratch(Vec<PathBuf>);

impl Drop for Scratch {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Service for Inferrer {
    const NAME: &'static str = "inferrer";
    const STEP: Step = Step::Infer;
    const INPUT: EventKind = EventKind::PartsCombined;

    async fn handle(
        self: Arc<Self>,
        ctx: Ctx,
        input: Recorded,
        state: UploadState,
    ) -> Result<Vec<Event>, StepError> {
        let upload = input.envelope.correlation_id;
        let (Some((_, received)), Some(combined)) = (&state.received, &state.combined) else {
            return Err(StepError::Permanent(
                "upload has no UploadReceived/PartsCombined before inference".into(),
            ));
        };
        let (dataset, version, dataset_policy) = match received.dataset {
            None => (DatasetId::for_upload(upload), 1, None),
            Some(d) => {
                let (version, facts) = reserve_version(&ctx, &input, upload, received, d).await?;
                (d, version, facts.bad_rows)
            }
        };

        // Staged in the folder of converted Parquet (see `ObjectKey::converting`): the
        // Parquet is stored by its hash, and the rejects are moved to their version's
        // folder only when there are some, so nothing is made under `datasets/` for a
        // version without rejects. Whatever is left is removed however the step ends.
        let staging = ObjectKey::converting();
        let output_path = ctx
            .store
            .staging_path(&staging)
            .unwrap_or_else(|| ctx.work_dir.join(format!("{upload}.parquet")));
        let rejects_key = ObjectKey::rejects(dataset, version);
        let rejects_path = ctx
            .store
            .staging_path(&staging)
            .unwrap_or_else(|| ctx.work_dir.join(format!("{upload}.rejects.ndjson")));
        let mut scratch = Scratch(vec![output_path.clone(), rejects_path.clone()]);
        // A local store's blob is read in place; anything else is streamed down first.
        // An upload of several files (`--one-version`) has a blob for each.
        if combined.more_blobs.len() != received.more_files.len() {
            return Err(StepError::Permanent(format!(
                "{}: the upload has {} files but {} blobs were combined",
                received.filename,
                1 + received.more_files.len(),
                1 + combined.more_blobs.len()
            )));
        }
        let names = received.files().map(|(name, _, _)| name.to_owned());
        let mut inputs = Vec::with_capacity(1 + combined.more_blobs.len());
        for (i, (blob, name)) in combined.blobs().zip(names).enumerate() {
            let path = match ctx.store.local_root() {
                Some(root) => root.join(blob.as_str()),
                None => {
                    let path = ctx.work_dir.join(format!("{upload}.{}.input", i + 1));
                    scratch.0.push(path.clone());
                    ctx.store.download(blob, &path).await?;
                    path
                }
            };
            inputs.push((path, name));
        }
        // The producer's choice, else the dataset's default (a new version), else the
        // default for a named table (`fail`) or not (`reject`).
        let policy = received
            .options
            .bad_rows
            .or(dataset_policy)
            .unwrap_or_else(|| BadRows::default_for(received.table_name.is_some()));
        let options = ConvertOptions {
            filename: received.filename.clone(),
            declared: received.format,
            content_type: received.content_type.clone(),
            encoding: received.options.encoding.clone(),
            bad_rows: policy,
            max_bad_rows: received.options.max_bad_rows,
            rejects: Some(rejects_path.clone()),
            columns: received
                .options
                .columns
                .iter()
                .map(|c| (c.name.clone(), c.data_type.clone()))
                .collect(),
            validator: received.options.validator.clone(),
            limits: ctx.limits,
            ..ConvertOptions::default()
        };
        // Big conversions use every core already; more than two at once only share them.
        let _heavy = if combined.total_size() >= HEAVY_BYTES {
            Some(
                HEAVY
                    .acquire()
                    .await
                    .map_err(|e| StepError::Transient(format!("conversion slots closed: {e}")))?,
            )
        } else {
            None
        };
        // The file work of the step in one blocking call: the staging folder, the
        // conversion, the Parquet's hash and, on a local store, the moves into place. A
        // small file's step costs less than each hand-over to a blocking thread would.
        let (store, out, rejects_out) =
            (ctx.store.clone(), output_path.clone(), rejects_path.clone());
        let rejects_at = rejects_key.clone();
        let done = tokio::task::spawn_blocking(move || -> Result<Converting, StepError> {
            let local = |what: &str, path: &std::path::Path, e: std::io::Error| {
                StepError::Transient(format!("{what} {}: {e}", path.display()))
            };
            for path in [&out, &rejects_out] {
                crate::store::ensure_parent(path)
                    .map_err(|e| local("making the folder of", path, e))?;
            }
            let converted = convert_many(&inputs, &out, &options, &mut |_| {}).map_err(|e| {
                if e.is_permanent() {
                    StepError::Permanent(e.to_string())
                } else {
                    StepError::Transient(e.to_string())
                }
            })?;
            // Content-addressed: identical input and options give identical bytes, which
            // are stored once; the object references say who holds them. Moved even
            // when the key exists (the same bytes, a rename on a local store): a copy
            // the janitor removed a moment ago is back before this upload's events
            // reference it. The digest is the one taken as the conversion wrote the
            // file (there is one exactly when it wrote a Parquet): no second read.
            let parquet = if let Some(digest) = converted.parquet_sha256 {
                let key = ObjectKey::converted(&digest);
                let moved = store
                    .move_in(&out, &key)
                    .map_err(|e| local("storing the Parquet file", &out, e))?;
                Some((key, moved))
            } else {
                None
            };
            let rejects_moved = if converted.rejects_entries > 0 {
                store
                    .move_in(&rejects_out, &rejects_at)
                    .map_err(|e| local("storing the rejects", &rejects_out, e))?
            } else {
                None
            };
            Ok(Converting {
                converted,
                parquet,
                rejects_moved,
            })
        })
        .await
        .map_err(|e| StepError::Permanent(format!("conversion crashed: {e}")))??;
        let Converting {
            converted,
            parquet,
            rejects_moved,
        } = done;

        let (parquet, parquet_size) = match parquet {
            Some((key, Some(size))) => (key, size),
            // A remote store (or another file system): streamed up.
            Some((key, None)) => {
                let size = ctx.store.put_moved(&output_path, &key).await?;
                (key, size)
            }
            None => (combined.blob.clone(), combined.size),
        };
        let rejects = if converted.rejects_entries > 0 {
            if rejects_moved.is_none() {
                ctx.store.put_moved(&rejects_path, &rejects_key).await?;
            }
            Some(rejects_key)
        } else {
            None
        };
        // Whatever was moved into the store is no longer scratch.
        scratch.0.retain(|p| {
            !((p == &output_path && converted.rewritten)
                || (p == &rejects_path && converted.rejects_entries > 0))
        });
        Ok(vec![Event::SchemaInferred(SchemaInferred {
            format: converted.format,
            compression: converted.compression,
            dataset,
            version,
            parquet,
            parquet_size,
            rewritten: converted.rewritten,
            schema: converted.schema,
            statistics: converted.statistics,
            problems: converted.problems,
            problem_count: converted.problem_count,
            quality: Quality {
                encoding: converted.encoding,
                encoding_detected: converted.encoding_detected,
                bad_rows: Some(policy),
                rows_read: converted.rows_read,
                rejected: converted.rejected,
                rejects,
                rejects_entries: converted.rejects_entries,
                validation: converted.validation,
            },
        })])
    }

    // No compensation: the blob stays where it is. Which uploads and datasets still
    // reference it is the object references projection's to say, and deleting it once
    // nothing live does (after the failed upload's retention) is the janitor's job.
}
