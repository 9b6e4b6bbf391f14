//! The meaning of every event for the catalog, upload status, notifications, audit,
//! table names and tokens, as a fold over row images in memory.
//!
//! A batch of events is applied in three moves: [`needs`] lists the rows the events
//! start from, [`Batch::load`] reads them (one query per table), [`Batch::apply`] folds
//! each event into the images in order, and [`Batch::write`] writes every changed
//! image once, set-based (`rows.rs`). An upload's four lifecycle events in one batch
//! become one row write instead of four updates; that is where replay speed comes from.
//!
//! [`Batch::apply`] is deterministic and does no I/O: everything it writes comes from
//! the recorded event (its stream sequence, the server's `stored_at`, the envelope) and
//! from rows earlier events wrote. No clock, no network, no randomness, so a replay
//! writes the same rows whatever the batch boundaries. Nothing here commits: the
//! projector runs it inside the transaction that also moves the checkpoint.

use std::collections::BTreeSet;

use serde::Serialize;
use weir_events::{Aggregate, Envelope, Event, EventId, Schema, Step, UploadId};
use weir_journal::Recorded;

use crate::Error;
use crate::db::Conn;
use crate::fresh::Written;
use crate::rows::{
    AuditRow, DatasetRow, GrantRow, Keyed, NotificationRow, RowImage, Sql, StepCells, TableNameRow,
    TokenRow, UploadRow, VersionRow,
};

/// Counts and sizes are `u64` in events and BIGINT in SQL; nothing real comes near
/// the limit, so saturate rather than fail.
pub(crate) fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn flag(b: bool) -> i64 {
    i64::from(b)
}

/// The upload an event belongs to: its aggregate when that is an upload, otherwise the
/// upload the chain started from.
fn upload_of(env: &Envelope) -> UploadId {
    match &env.aggregate {
        Aggregate::Upload(id) => *id,
        _ => env.correlation_id,
    }
}

/// An aggregate as the audit names it: `upload:upld_…`, `dataset:data_…` or
/// `name:orders@acme`.
struct AggregateText<'a>(&'a Aggregate);

impl std::fmt::Display for AggregateText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Aggregate::Upload(id) => write!(f, "upload:{id}"),
            Aggregate::Dataset(id) => write!(f, "dataset:{id}"),
            Aggregate::Name { owner, table } => write!(f, "name:{table}@{owner}"),
            Aggregate::Owner(owner) => write!(f, "owner:{owner}"),
            Aggregate::Object(key) => write!(f, "object:{key}"),
        }
    }
}

/// Free text from an event made fit for a one-line summary.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A schema as stored in `schema_json`: `{"fields": [{"name", "type", …}]}`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SchemaView {
    pub fields: Vec<FieldView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct FieldView {
    pub name: String,
    /// The Arrow type name, e.g. `Int64` or `Timestamp(µs, "UTC")`.
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
    /// The column's name in the source file when it was sanitised or de-duplicated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_name: Option<String>,
}

impl From<&Schema> for SchemaView {
    fn from(schema: &Schema) -> Self {
        Self {
            fields: schema
                .fields
                .iter()
                .map(|f| FieldView {
                    name: f.name.clone(),
                    data_type: f.data_type.clone(),
                    nullable: f.nullable,
                    original_name: f.original_name.clone(),
                })
                .collect(),
        }
    }
}

/// How an upload's rows were read and where every row went, as stored in
/// `quality_json` (uploads, dataset_versions, datasets) and served by the CLI and the
/// API: `rows_read == rows_registered + rejected`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct QualityView {
    /// The text encoding read (`UTF-8`, `windows-1252`, …); empty for Parquet.
    pub encoding: String,
    /// True when weir detected it, false when the producer named it.
    pub encoding_detected: bool,
    /// The bad-row policy applied: `fail`, `reject` or `pad`.
    pub bad_rows: Option<String>,
    pub rows_read: u64,
    pub rows_registered: u64,
    pub rejected: u64,
    /// Bad rows in all (rejected, or padded/widened under `pad`).
    pub problem_count: u64,
    /// The first bad rows: line, column, what was wrong.
    pub problems: Vec<ProblemView>,
    /// The rejects file's object key, when there is one.
    pub rejects: Option<String>,
    pub rejects_entries: u64,
    /// The content validator's report, as JSON text (`{"validator", "records",
    /// "statistics"}`), when the upload asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ProblemView {
    pub line: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub message: String,
}

impl From<&weir_events::SchemaInferred> for QualityView {
    fn from(e: &weir_events::SchemaInferred) -> Self {
        let q = &e.quality;
        QualityView {
            encoding: q.encoding.clone(),
            encoding_detected: q.encoding_detected,
            bad_rows: q.bad_rows.map(|p| p.as_str().to_owned()),
            rows_read: q.rows_read,
            rows_registered: e.statistics.rows,
            rejected: q.rejected,
            problem_count: e.problem_count,
            problems: e
                .problems
                .iter()
                .map(|p| ProblemView {
                    line: p.line,
                    column: p.column.clone(),
                    message: p.message.clone(),
                })
                .collect(),
            rejects: q.rejects.as_ref().map(ToString::to_string),
            rejects_entries: q.rejects_entries,
            validation: q.validation.clone(),
        }
    }
}

/// [`SchemaView`]'s JSON written straight from the event's schema, without copying
/// its strings first: the same fields, names and order.
#[derive(Serialize)]
struct SchemaJson<'a> {
    fields: Vec<FieldJson<'a>>,
}

#[derive(Serialize)]
struct FieldJson<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    data_type: &'a str,
    nullable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    original_name: Option<&'a str>,
}

impl<'a> From<&'a Schema> for SchemaJson<'a> {
    fn from(schema: &'a Schema) -> Self {
        Self {
            fields: schema
                .fields
                .iter()
                .map(|f| FieldJson {
                    name: &f.name,
                    data_type: &f.data_type,
                    nullable: f.nullable,
                    original_name: f.original_name.as_deref(),
                })
                .collect(),
        }
    }
}

impl QualityView {
    /// "conversation-jsonl: 120 conversations, 340 training pairs, ~12000 tokens" from
    /// the validator's statistics, when there are any.
    pub fn validation_summary(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(self.validation.as_deref()?).ok()?;
        let stats = v["statistics"].as_object()?;
        let figures: Vec<String> = stats
            .iter()
            .filter(|(_, value)| value.is_number())
            .map(|(k, value)| format!("{} {value}", k.replace('_', " ")))
            .collect();
        Some(format!(
            "{}: {}",
            v["validator"].as_str().unwrap_or("validator"),
            figures.join(", ")
        ))
    }

    /// The clause the ready notification adds, e.g. "registered with 2 rejected rows
    /// (rejects: datasets/…/rejects.ndjson)"; empty when every row went in as it was.
    pub fn notice(&self) -> String {
        let plural = |n: u64, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        let mut parts = Vec::new();
        if self.rejected > 0 {
            parts.push(format!(
                "registered with {}",
                plural(self.rejected, "rejected row")
            ));
        }
        let kept = self.problem_count.saturating_sub(self.rejected);
        if kept > 0 {
            parts.push(format!("{} padded or widened", plural(kept, "bad row")));
        }
        let mut out = parts.join(", ");
        if let Some(key) = self.rejects.as_ref().filter(|_| !parts.is_empty()) {
            out.push_str(&format!(" (rejects: {key})"));
        }
        if let Some(v) = self.validation_summary() {
            if !out.is_empty() {
                out.push_str("; ");
            }
            out.push_str(&v);
        }
        out
    }
}

/// A dataset's branches (other than `main`) and tags, as stored in `refs_json`:
/// `{"branches": {"dev": 3}, "tags": {"q3-final": 2}}`, names in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Refs {
    pub branches: std::collections::BTreeMap<String, u32>,
    pub tags: std::collections::BTreeMap<String, u32>,
}

impl Refs {
    fn of(row: &DatasetRow) -> Self {
        row.refs_json
            .as_deref()
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_default()
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<String, Error> {
    serde_json::to_string(value).map_err(Error::Json)
}

/// The rows a batch of events starts from, by table.
#[derive(Debug, Default)]
pub(crate) struct Needs {
    /// Upload ids: their `uploads` row, step log included.
    uploads: BTreeSet<String>,
    datasets: BTreeSet<String>,
    notifications: BTreeSet<String>,
    table_names: BTreeSet<(String, String)>,
    tokens: BTreeSet<(String, String)>,
    /// (dataset id, grantee).
    grants: BTreeSet<(String, String)>,
    /// Object references, by holder and by key (`refs.rs`).
    refs: crate::refs::RefNeeds,
}

/// Adds to `needs` the rows `rec` reads or changes.
pub(crate) fn needs(needs: &mut Needs, rec: &Recorded) {
    crate::refs::needs(&mut needs.refs, rec);
    let env = &rec.envelope;
    match &env.event {
        Event::UploadStarted(_)
        | Event::UploadReceived(_)
        | Event::UploadReceivedV1(_)
        | Event::UploadReceivedV2(_)
        | Event::PartsCombinedV1(_)
        | Event::SchemaInferredV1(_)
        | Event::DatasetRegisteredV1(_)
        | Event::PartsCombined(_)
        | Event::SchemaInferred(_)
        | Event::Failed(_)
        | Event::UploadAborted(_) => {
            needs.uploads.insert(upload_of(env).to_string());
        }
        Event::DatasetRegistered(e) => {
            needs.uploads.insert(upload_of(env).to_string());
            needs.datasets.insert(e.dataset.to_string());
        }
        Event::Compensated(_) => {}
        Event::TableNameClaimed(e) => {
            needs
                .table_names
                .insert((e.owner.to_string(), e.table_name.to_string()));
        }
        Event::TableNameReleased(e) => {
            needs
                .table_names
                .insert((e.owner.to_string(), e.table_name.to_string()));
        }
        Event::NotificationRead(e) => {
            needs.notifications.insert(e.notification.to_string());
        }
        // A reservation changes no row: it is in the audit trail, and the version's row
        // comes with its registration.
        Event::DatasetVersionReserved(_) | Event::DatasetSchemaPolicyChanged(_) => {}
        Event::DatasetLabelChanged(_)
        | Event::DatasetRenamed(_)
        | Event::DatasetDeleted(_)
        | Event::DatasetRestored(_)
        | Event::DatasetBadRowsChanged(_)
        | Event::DatasetBranched(_)
        | Event::DatasetTagged(_)
        | Event::DatasetHeadMoved(_) => {
            if let Aggregate::Dataset(id) = &env.aggregate {
                needs.datasets.insert(id.to_string());
            }
        }
        Event::TokenCreated(e) => {
            needs
                .tokens
                .insert((e.owner.to_string(), e.token_id.clone()));
        }
        Event::TokenRevoked(e) => {
            needs
                .tokens
                .insert((e.owner.to_string(), e.token_id.clone()));
        }
        Event::DatasetAccessGranted(weir_events::DatasetAccessGranted { grantee, .. })
        | Event::DatasetAccessRevoked(weir_events::DatasetAccessRevoked { grantee }) => {
            if let Aggregate::Dataset(id) = &env.aggregate {
                needs.grants.insert((id.to_string(), grantee.to_string()));
            }
        }
        // Only the object references change (`refs.rs`), and the audit trail.
        Event::ObjectDeleted(_) | Event::DatasetPurged(_) => {}
    }
}

/// The images of every row a batch touches, as the batch leaves them.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// Each upload's row, its step log included.
    uploads: Keyed<String, UploadRow>,
    datasets: Keyed<String, DatasetRow>,
    versions: Keyed<(String, i64), VersionRow>,
    notifications: Keyed<String, NotificationRow>,
    audit: Vec<AuditRow>,
    table_names: Keyed<(String, String), TableNameRow>,
    tokens: Keyed<(String, String), TokenRow>,
    grants: Keyed<(String, String), GrantRow>,
    refs: crate::refs::ObjectRefs,
}

impl Batch {
    /// The rows `needs` names as they stand before the batch: from `after`, the
    /// images the previous batch left, when it touched them, otherwise from the
    /// database. `after` is what lets a batch be prepared while the previous one is
    /// still being written: a row that batch did not touch reads the same from the
    /// database before and after its commit.
    ///
    /// `fresh`, for a build that started on empty tables, names the keys it has
    /// written so far: any other key is not in the database and is not read.
    pub(crate) async fn load(
        sql: &Sql,
        conn: &mut Conn<'_>,
        needs: Needs,
        after: Option<&Batch>,
        fresh: Option<&Written>,
    ) -> Result<Self, Error> {
        let mut batch = Batch::default();
        let uploads = from_cache(
            &mut batch.uploads,
            &needs.uploads,
            after.map(|a| &a.uploads),
            fresh,
        );
        for row in sql.load::<UploadRow, _>(conn, &["id"], &uploads).await? {
            batch.uploads.loaded(row.id.clone(), Some(row));
        }
        let datasets = from_cache(
            &mut batch.datasets,
            &needs.datasets,
            after.map(|a| &a.datasets),
            fresh,
        );
        for row in sql.load::<DatasetRow, _>(conn, &["id"], &datasets).await? {
            batch.datasets.loaded(row.id.clone(), Some(row));
        }
        let notifications = from_cache(
            &mut batch.notifications,
            &needs.notifications,
            after.map(|a| &a.notifications),
            fresh,
        );
        for row in sql
            .load::<NotificationRow, _>(conn, &["id"], &notifications)
            .await?
        {
            batch.notifications.loaded(row.id.clone(), Some(row));
        }
        let names = from_cache(
            &mut batch.table_names,
            &needs.table_names,
            after.map(|a| &a.table_names),
            fresh,
        );
        for row in sql
            .load::<TableNameRow, _>(conn, &["owner", "table_name"], &names)
            .await?
        {
            batch
                .table_names
                .loaded((row.owner.clone(), row.table_name.clone()), Some(row));
        }
        let tokens = from_cache(
            &mut batch.tokens,
            &needs.tokens,
            after.map(|a| &a.tokens),
            fresh,
        );
        for row in sql
            .load::<TokenRow, _>(conn, &["owner", "token_id"], &tokens)
            .await?
        {
            batch
                .tokens
                .loaded((row.owner.clone(), row.token_id.clone()), Some(row));
        }
        batch.refs =
            crate::refs::ObjectRefs::load(sql, conn, needs.refs, after.map(|a| &a.refs), fresh)
                .await?;
        let grants = from_cache(
            &mut batch.grants,
            &needs.grants,
            after.map(|a| &a.grants),
            fresh,
        );
        for row in sql
            .load::<GrantRow, _>(conn, &["dataset_id", "grantee"], &grants)
            .await?
        {
            batch
                .grants
                .loaded((row.dataset_id.clone(), row.grantee.clone()), Some(row));
        }
        Ok(batch)
    }

    /// Adds to `fresh` the key of every row this batch writes or deletes, before a
    /// later batch is loaded.
    pub(crate) fn record(&self, fresh: &mut Written) {
        fn keys<K: Eq + std::hash::Hash + Clone, R: RowImage>(t: &Keyed<K, R>, w: &mut Written) {
            for key in t.written_keys() {
                w.insert(R::TABLE, key);
            }
        }
        keys(&self.uploads, fresh);
        // Version rows are never read back (a registration writes its version whole),
        // so they need no record.
        keys(&self.datasets, fresh);
        keys(&self.notifications, fresh);
        keys(&self.table_names, fresh);
        keys(&self.tokens, fresh);
        keys(&self.grants, fresh);
        self.refs.record(fresh);
    }

    /// Writes every row the batch changed, one statement per table (two where rows
    /// were deleted).
    pub(crate) async fn write(&self, sql: &Sql, conn: &mut Conn<'_>) -> Result<(), Error> {
        let audit: Vec<&AuditRow> = self.audit.iter().collect();
        sql.append(conn, &audit).await?;

        let (put, _) = self.uploads.changed();
        sql.write(conn, &put).await?;

        let (put, _) = self.datasets.changed();
        sql.write(conn, &put).await?;
        let (put, _) = self.versions.changed();
        sql.write(conn, &put).await?;
        let (put, _) = self.notifications.changed();
        sql.write(conn, &put).await?;

        let (put, gone) = self.table_names.changed();
        sql.delete_keys::<TableNameRow, _>(conn, &gone).await?;
        sql.write(conn, &put).await?;

        let (put, _) = self.tokens.changed();
        sql.write(conn, &put).await?;

        let (put, gone) = self.grants.changed();
        sql.delete_keys::<GrantRow, _>(conn, &gone).await?;
        sql.write(conn, &put).await?;

        self.refs.write(sql, conn).await?;
        Ok(())
    }

    /// Folds one event into the images. Every row it reads was named by [`needs`] for
    /// this event and loaded, or was made by an earlier event of the batch.
    pub(crate) fn apply(&mut self, rec: &Recorded) -> Result<(), Error> {
        if matches!(
            rec.envelope.event,
            Event::UploadReceivedV1(_)
                | Event::UploadReceivedV2(_)
                | Event::PartsCombinedV1(_)
                | Event::SchemaInferredV1(_)
                | Event::DatasetRegisteredV1(_)
        ) {
            // Decoding upgrades legacy variants; one built by hand is folded the same.
            let mut upgraded = rec.clone();
            upgraded.envelope.event = upgraded.envelope.event.upgrade();
            return self.apply(&upgraded);
        }
        let env = &rec.envelope;
        let seq = int(rec.seq);
        let at = rec.stored_at.0;
        let upload = upload_of(env).to_string();

        self.audit.push(
            AuditRow::new(seq, at, env.occurred_at.0)
                .text(env.event_id)
                .text(env.kind().as_str())
                .text(&env.actor)
                .opt(env.causation_id)
                .text(env.correlation_id)
                .text(AggregateText(&env.aggregate))
                .opt(env.dataset())
                .text(env.event.summary()),
        );
        self.refs.apply(rec, at, seq);

        match &env.event {
            Event::UploadReceivedV1(_)
            | Event::UploadReceivedV2(_)
            | Event::PartsCombinedV1(_)
            | Event::SchemaInferredV1(_)
            | Event::DatasetRegisteredV1(_) => {}
            Event::UploadStarted(e) => {
                if self.uploads.get(&upload).is_none() {
                    let mut row = UploadRow::empty(&upload, at, seq);
                    row.owner = e.owner.to_string();
                    row.filename = e.filename.clone();
                    row.size_bytes = int(e.size);
                    row.part_count = i64::from(e.part_count);
                    row.status = "receiving".to_owned();
                    self.uploads.put(upload.clone(), row);
                }
                self.start_step(&upload, Step::Upload, at);
            }
            Event::UploadReceived(e) => {
                // A multipart upload already has its row from UploadStarted; the
                // received manifest is the truth about its parts and size.
                let target = e.dataset.map(|d| d.to_string());
                let row = match self.uploads.get_mut(&upload) {
                    Some(row) => row,
                    None => {
                        self.uploads
                            .put(upload.clone(), UploadRow::empty(&upload, at, seq));
                        self.uploads.get_mut(&upload).expect("the row was just put")
                    }
                };
                row.owner = e.owner.to_string();
                // Several files of one version: every name, in order.
                row.filename = e
                    .files()
                    .map(|(name, _, _)| name)
                    .collect::<Vec<_>>()
                    .join(", ");
                row.label = e.label.clone();
                row.requested_table = e.table_name.clone();
                row.content_type = e.content_type.clone();
                row.declared_format = e.format.map(|f| f.as_str().to_owned());
                row.size_bytes = int(e.total_size());
                row.part_count = int(e.all_parts().count() as u64);
                row.target_dataset = target.clone();
                row.status = "received".to_owned();
                row.dataset_id = target;
                row.updated_at = at;
                row.last_seq = seq;
                self.end_step(&upload, Step::Upload, "ok", at);
                self.start_step(&upload, Step::Combine, at);
            }
            Event::PartsCombined(e) => {
                if let Some(row) = self.uploads.get_mut(&upload) {
                    row.status = "combined".to_owned();
                    row.blob_key = Some(e.blob.to_string());
                    row.deduplicated = Some(flag(e.deduplicated));
                    row.updated_at = at;
                    row.last_seq = seq;
                }
                self.end_step(&upload, Step::Combine, "ok", at);
                self.start_step(&upload, Step::Infer, at);
            }
            Event::SchemaInferred(e) => {
                if let Some(row) = self.uploads.get_mut(&upload) {
                    row.status = "inferred".to_owned();
                    row.dataset_id = Some(e.dataset.to_string());
                    row.version = Some(i64::from(e.version));
                    row.format = Some(e.format.as_str().to_owned());
                    row.compression = Some(compression_text(e.compression).to_owned());
                    row.problem_count = Some(int(e.problem_count));
                    // An event from before quality was recorded has none to show.
                    row.quality_json = if e.quality == weir_events::Quality::default() {
                        None
                    } else {
                        Some(to_json(&QualityView::from(e))?)
                    };
                    row.updated_at = at;
                    row.last_seq = seq;
                }
                self.end_step(&upload, Step::Infer, "ok", at);
                self.start_step(&upload, Step::Register, at);
            }
            Event::DatasetRegistered(e) => {
                let dataset = e.dataset.to_string();
                let schema = to_json(&SchemaJson::from(&e.schema))?;
                let statistics = to_json(&e.statistics)?;
                let quality_json = self
                    .uploads
                    .get(&upload)
                    .and_then(|row| row.quality_json.clone());
                if let Some(row) = self.uploads.get_mut(&upload) {
                    row.status = "registered".to_owned();
                    row.dataset_id = Some(dataset.clone());
                    row.version = Some(i64::from(e.version));
                    row.table_name = Some(e.table_name.to_string());
                    row.updated_at = at;
                    row.finished_at = Some(at);
                    row.last_seq = seq;
                }
                self.end_step(&upload, Step::Register, "ok", at);
                // A version on a branch moves that branch's head, not the dataset's.
                let branch_row = match &e.branch {
                    Some(branch) => self.datasets.get_mut(&dataset).map(|row| (branch, row)),
                    None => None,
                };
                if let Some((branch, row)) = branch_row {
                    let mut refs = Refs::of(row);
                    refs.branches.insert(branch.clone(), e.version);
                    row.refs_json = Some(to_json(&refs)?);
                    row.updated_at = at;
                    row.last_seq = seq;
                } else {
                    let (created_at, deleted_at, bad_rows_default, refs_json) =
                        match self.datasets.get(&dataset) {
                            Some(old) => (
                                old.created_at,
                                old.deleted_at,
                                old.bad_rows_default.clone(),
                                old.refs_json.clone(),
                            ),
                            None => (at, None, None, None),
                        };
                    self.datasets.put(
                        dataset.clone(),
                        DatasetRow {
                            id: dataset.clone(),
                            owner: e.owner.to_string(),
                            label: e.label.clone(),
                            table_name: e.table_name.to_string(),
                            current_version: i64::from(e.version),
                            schema_json: schema.clone(),
                            row_count: int(e.statistics.rows),
                            size_bytes: int(e.parquet_size),
                            parquet_key: e.parquet.to_string(),
                            created_at,
                            updated_at: at,
                            deleted_at,
                            last_seq: seq,
                            quality_json: quality_json.clone(),
                            bad_rows_default,
                            refs_json,
                        },
                    );
                }
                self.versions.put(
                    (dataset.clone(), i64::from(e.version)),
                    VersionRow {
                        dataset_id: dataset.clone(),
                        version: i64::from(e.version),
                        parent_version: e.parent_version.map(i64::from),
                        schema_json: schema,
                        statistics_json: statistics,
                        upload_id: upload.clone(),
                        parquet_key: e.parquet.to_string(),
                        size_bytes: int(e.parquet_size),
                        row_count: int(e.statistics.rows),
                        registered_at: at,
                        seq,
                        quality_json: quality_json.clone(),
                        schema_diff_json: e.schema_diff.as_ref().map(to_json).transpose()?,
                    },
                );
                // Read back only when there is something to say: bad rows (the upload
                // row counts them) or a validator's report (the only optional key).
                let bad_rows = self
                    .uploads
                    .get(&upload)
                    .and_then(|r| r.problem_count)
                    .is_some_and(|n| n > 0);
                let notice = quality_json
                    .as_deref()
                    .filter(|q| bad_rows || q.contains("\"validation\":"))
                    .and_then(|q| serde_json::from_str::<QualityView>(q).ok())
                    .map(|q| q.notice())
                    .unwrap_or_default();
                let message = format!(
                    "dataset {} v{} is ready: {} rows, {} columns{}",
                    e.table_name,
                    e.version,
                    e.statistics.rows,
                    e.schema.fields.len(),
                    if notice.is_empty() {
                        String::new()
                    } else {
                        format!("; {notice}")
                    }
                );
                self.notify(Notice {
                    id: env.event_id,
                    owner: e.owner.to_string(),
                    kind: "dataset_ready",
                    upload: &upload,
                    dataset: Some(dataset.clone()),
                    message,
                    at,
                    seq,
                });
                if let (Some(diff), Some(parent)) = (&e.schema_diff, e.parent_version)
                    && !diff.is_empty()
                {
                    // A second notice of the same event: its id derived from the event's.
                    self.notify(Notice {
                        id: env.event_id.derived(1),
                        owner: e.owner.to_string(),
                        kind: "schema_changed",
                        upload: &upload,
                        dataset: Some(dataset),
                        message: format!(
                            "dataset {} v{}: the schema changed from v{parent}: {}",
                            e.table_name,
                            e.version,
                            diff.describe()
                        ),
                        at,
                        seq,
                    });
                }
            }
            Event::Failed(e) => {
                if let Some(row) = self.uploads.get_mut(&upload) {
                    row.status = "failed".to_owned();
                    row.failed_step = Some(e.step.as_str().to_owned());
                    row.failure_reason = Some(e.reason.clone());
                    row.failure_attempts = Some(i64::from(e.attempts));
                    row.failure_retryable = Some(flag(e.retryable));
                    row.updated_at = at;
                    row.finished_at = Some(at);
                    row.last_seq = seq;
                }
                self.close_open_steps(&upload, "failed", at);
                // A step that had no start (the upload step itself) still gets its log.
                self.start_step(&upload, e.step, at);
                self.end_step(&upload, e.step, "failed", at);
                let (owner, filename, dataset) = match self.uploads.get(&upload) {
                    Some(row) => (
                        row.owner.clone(),
                        row.filename.clone(),
                        row.dataset_id.clone(),
                    ),
                    None => (env.actor.to_string(), upload.clone(), None),
                };
                let message = format!(
                    "upload {filename:?} failed at {}: {}",
                    e.step.as_str(),
                    one_line(&e.reason)
                );
                self.notify(Notice {
                    id: env.event_id,
                    owner,
                    kind: "upload_failed",
                    upload: &upload,
                    dataset,
                    message,
                    at,
                    seq,
                });
            }
            Event::UploadAborted(e) => {
                if let Some(row) = self.uploads.get_mut(&upload) {
                    row.status = "aborted".to_owned();
                    row.failure_reason = Some(e.reason.clone());
                    row.updated_at = at;
                    row.finished_at = Some(at);
                    row.last_seq = seq;
                }
                self.close_open_steps(&upload, "aborted", at);
            }
            // Compensations are facts about cleanup: the audit row is their whole view.
            Event::Compensated(_) => {}
            Event::TableNameClaimed(e) => {
                let key = (e.owner.to_string(), e.table_name.to_string());
                self.table_names.put(
                    key.clone(),
                    TableNameRow {
                        owner: key.0,
                        table_name: key.1,
                        dataset_id: e.dataset.to_string(),
                        upload_id: e.upload.to_string(),
                        claimed_at: at,
                        claim_seq: seq,
                    },
                );
            }
            Event::TableNameReleased(e) => {
                let key = (e.owner.to_string(), e.table_name.to_string());
                let dataset = e.dataset.to_string();
                if self
                    .table_names
                    .get(&key)
                    .is_some_and(|row| row.dataset_id == dataset)
                {
                    self.table_names.remove(&key);
                }
            }
            Event::NotificationRead(e) => {
                let owner = e.owner.to_string();
                let key = e.notification.to_string();
                // First read wins; a notification of another owner is left alone.
                if self
                    .notifications
                    .get(&key)
                    .is_some_and(|n| n.owner == owner && n.read_seq.is_none())
                    && let Some(n) = self.notifications.get_mut(&key)
                {
                    n.read_at = Some(at);
                    n.read_seq = Some(seq);
                }
            }
            Event::DatasetVersionReserved(_) => {}
            Event::DatasetSchemaPolicyChanged(_) => {}
            Event::DatasetBranched(e) => {
                if let Some(row) = self.dataset_row(env) {
                    let mut refs = Refs::of(row);
                    refs.branches.insert(e.branch.clone(), e.from_version);
                    row.refs_json = Some(to_json(&refs)?);
                    row.updated_at = at;
                    row.last_seq = seq;
                }
            }
            Event::DatasetTagged(e) => {
                if let Some(row) = self.dataset_row(env) {
                    let mut refs = Refs::of(row);
                    refs.tags.insert(e.tag.clone(), e.version);
                    row.refs_json = Some(to_json(&refs)?);
                    row.updated_at = at;
                    row.last_seq = seq;
                }
            }
            Event::DatasetHeadMoved(e) => {
                if let Some(row) = self.dataset_row(env) {
                    match &e.branch {
                        // The main head: the version's own figures are read from its
                        // version row by the queries (`query::dataset`).
                        None => row.current_version = i64::from(e.to_version),
                        Some(b) => {
                            let mut refs = Refs::of(row);
                            refs.branches.insert(b.clone(), e.to_version);
                            row.refs_json = Some(to_json(&refs)?);
                        }
                    }
                    row.updated_at = at;
                    row.last_seq = seq;
                }
            }
            Event::DatasetBadRowsChanged(e) => {
                if let Some(row) = self.dataset_row(env) {
                    row.bad_rows_default = e.bad_rows.map(|p| p.as_str().to_owned());
                    row.updated_at = at;
                    row.last_seq = seq;
                }
            }
            Event::DatasetLabelChanged(e) => {
                if let Some(row) = self.dataset_row(env) {
                    row.label = e.label.clone();
                    row.updated_at = at;
                    row.last_seq = seq;
                }
            }
            Event::DatasetRenamed(e) => {
                if let Some(row) = self.dataset_row(env) {
                    row.table_name = e.to.to_string();
                    row.updated_at = at;
                    row.last_seq = seq;
                }
            }
            Event::DatasetDeleted(_) => {
                if let Some(row) = self.dataset_row(env) {
                    row.deleted_at = Some(at);
                    row.updated_at = at;
                    row.last_seq = seq;
                }
            }
            Event::DatasetRestored(_) => {
                if let Some(row) = self.dataset_row(env) {
                    row.deleted_at = None;
                    row.updated_at = at;
                    row.last_seq = seq;
                }
            }
            Event::TokenCreated(e) => {
                let key = (e.owner.to_string(), e.token_id.clone());
                self.tokens.put(
                    key.clone(),
                    TokenRow {
                        owner: key.0,
                        token_id: key.1,
                        sha256: e.sha256.to_string(),
                        created_at: at,
                        revoked_at: None,
                        seq,
                    },
                );
            }
            Event::TokenRevoked(e) => {
                let key = (e.owner.to_string(), e.token_id.clone());
                if self
                    .tokens
                    .get(&key)
                    .is_some_and(|t| t.revoked_at.is_none())
                    && let Some(t) = self.tokens.get_mut(&key)
                {
                    t.revoked_at = Some(at);
                }
            }
            Event::DatasetAccessGranted(e) => {
                if let Aggregate::Dataset(id) = &env.aggregate {
                    let key = (id.to_string(), e.grantee.to_string());
                    self.grants.put(
                        key.clone(),
                        GrantRow {
                            dataset_id: key.0,
                            grantee: key.1,
                            level: e.level.as_str().to_owned(),
                            granted_by: env.actor.to_string(),
                            granted_at: at,
                            seq,
                        },
                    );
                }
            }
            Event::DatasetAccessRevoked(e) => {
                if let Aggregate::Dataset(id) = &env.aggregate {
                    self.grants.remove(&(id.to_string(), e.grantee.to_string()));
                }
            }
            // Their meaning is in the object references (`refs.rs`, folded above).
            Event::ObjectDeleted(_) | Event::DatasetPurged(_) => {}
        }
        Ok(())
    }

    fn dataset_row(&mut self, env: &Envelope) -> Option<&mut DatasetRow> {
        match &env.aggregate {
            Aggregate::Dataset(id) => self.datasets.get_mut(&id.to_string()),
            _ => None,
        }
    }

    /// Starts `step` in the upload's step log, unless it started before. The log is
    /// part of the upload's row: an upload with no row has none.
    fn start_step(&mut self, upload: &str, step: Step, at: i64) {
        if let Some(row) = self.uploads.get_mut(upload) {
            let cells = row.step(step);
            if cells.started_at.is_none() {
                *cells.started_at = Some(at);
            }
        }
    }

    /// Ends `step` with `outcome`, if it started and is still running.
    fn end_step(&mut self, upload: &str, step: Step, outcome: &str, at: i64) {
        if let Some(row) = self.uploads.get_mut(upload) {
            end_cells(row.step(step), outcome, at);
        }
    }

    /// Ends every step still running (a failure or an abort).
    fn close_open_steps(&mut self, upload: &str, outcome: &str, at: i64) {
        if let Some(row) = self.uploads.get_mut(upload) {
            for step in Step::ALL {
                end_cells(row.step(step), outcome, at);
            }
        }
    }

    fn notify(&mut self, n: Notice<'_>) {
        let id = n.id.to_string();
        self.notifications.put(
            id.clone(),
            NotificationRow {
                id,
                owner: n.owner,
                kind: n.kind.to_owned(),
                upload_id: n.upload.to_owned(),
                dataset_id: n.dataset,
                message: n.message,
                created_at: n.at,
                seq: n.seq,
                read_at: None,
                read_seq: None,
            },
        );
    }
}

fn end_cells(cells: StepCells<'_>, outcome: &str, at: i64) {
    if cells.started_at.is_some() && cells.ended_at.is_none() {
        *cells.ended_at = Some(at);
        *cells.outcome = Some(outcome.to_owned());
    }
}

/// Fills `into` with the images `after` holds for `keys` (marked as absent first), and
/// returns the keys left to read from the database: those `fresh` does not rule out.
fn from_cache<'k, K: Eq + std::hash::Hash + Clone, R: RowImage>(
    into: &mut Keyed<K, R>,
    keys: &'k BTreeSet<K>,
    after: Option<&Keyed<K, R>>,
    fresh: Option<&Written>,
) -> Vec<&'k K> {
    let mut missing = Vec::new();
    for key in keys {
        match after.and_then(|a| a.image(key)) {
            Some(row) => into.loaded(key.clone(), row.clone()),
            None => {
                into.loaded(key.clone(), None);
                if fresh.is_none_or(|w| w.may_hold(R::TABLE, key)) {
                    missing.push(key);
                }
            }
        }
    }
    missing
}

impl UploadRow {
    /// A new upload's row before its first event fills it in.
    fn empty(id: &str, at: i64, seq: i64) -> Self {
        Self {
            id: id.to_owned(),
            owner: String::new(),
            filename: String::new(),
            label: None,
            requested_table: None,
            content_type: None,
            declared_format: None,
            size_bytes: 0,
            part_count: 0,
            target_dataset: None,
            status: String::new(),
            dataset_id: None,
            version: None,
            table_name: None,
            blob_key: None,
            deduplicated: None,
            format: None,
            compression: None,
            problem_count: None,
            failed_step: None,
            failure_reason: None,
            failure_attempts: None,
            failure_retryable: None,
            received_at: at,
            updated_at: at,
            finished_at: None,
            last_seq: seq,
            quality_json: None,
            upload_started_at: None,
            upload_ended_at: None,
            upload_outcome: None,
            combine_started_at: None,
            combine_ended_at: None,
            combine_outcome: None,
            infer_started_at: None,
            infer_ended_at: None,
            infer_outcome: None,
            register_started_at: None,
            register_ended_at: None,
            register_outcome: None,
        }
    }
}

fn compression_text(c: weir_events::Compression) -> &'static str {
    match c {
        weir_events::Compression::None => "none",
        weir_events::Compression::Gzip => "gzip",
        weir_events::Compression::Zstd => "zstd",
    }
}

struct Notice<'a> {
    /// The event that raised it: the notification's id.
    id: EventId,
    owner: String,
    kind: &'static str,
    upload: &'a str,
    dataset: Option<String>,
    message: String,
    at: i64,
    seq: i64,
}
