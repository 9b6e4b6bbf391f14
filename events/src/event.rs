//! The events: one past-tense enum for the whole stream and the payload of each variant.
//!
//! Variant order and field order ARE the postcard wire format. Append new variants at
//! the end; never reorder, remove or retype a field. A payload that must change gets a
//! new variant (e.g. `UploadReceivedV2`) and the old one stays decodable forever; the
//! golden tests in `tests/golden.rs` fail on any accidental change.

use serde::{Deserialize, Serialize};

use crate::ids::{DatasetId, Owner, UploadId};
use crate::names::{ObjectKey, Sha256, TableName};

/// The file formats weir ingests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Tsv,
    Ndjson,
    Json,
    Parquet,
}

impl Format {
    pub const ALL: [Format; 5] = [
        Self::Csv,
        Self::Tsv,
        Self::Ndjson,
        Self::Json,
        Self::Parquet,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Tsv => "tsv",
            Self::Ndjson => "ndjson",
            Self::Json => "json",
            Self::Parquet => "parquet",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Ok(Self::Csv),
            "tsv" | "tab" => Ok(Self::Tsv),
            "ndjson" | "jsonl" | "jsonlines" => Ok(Self::Ndjson),
            "json" => Ok(Self::Json),
            "parquet" | "pq" => Ok(Self::Parquet),
            other => Err(format!(
                "unknown format {other:?}: use one of csv, tsv, ndjson, json, parquet"
            )),
        }
    }
}

/// Compression wrapped around the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// The pipeline's steps, as named in `Failed` and in status views.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    Upload,
    Combine,
    Infer,
    Register,
}

impl Step {
    /// Every step, in the order an upload goes through them.
    pub const ALL: [Step; 4] = [Step::Upload, Step::Combine, Step::Infer, Step::Register];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upload => "upload",
            Self::Combine => "combine",
            Self::Infer => "infer",
            Self::Register => "register",
        }
    }
}

/// One part of an upload as the producer wrote it to `ObjectKey::part`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartManifest {
    /// 1-based, contiguous.
    pub number: u32,
    pub size: u64,
    pub sha256: Sha256,
}

/// How an upload's rows are read: set by the producer in [`UploadReceived`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadOptions {
    /// The text encoding of a CSV/TSV/JSON file, by WHATWG label (`latin1`,
    /// `windows-1252`, `utf-16le`, …); `None` detects it from the content.
    pub encoding: Option<String>,
    /// What happens to a row weir cannot place; `None` takes the default (see
    /// [`BadRows::default_for`]).
    pub bad_rows: Option<BadRows>,
    /// More bad rows than this fails the upload, whatever the policy.
    pub max_bad_rows: Option<MaxBadRows>,
    /// Column type overrides (CSV/TSV): the producer's types win over the inferred
    /// ones, and a value that does not fit is a bad row.
    #[serde(default)]
    pub columns: Vec<ColumnOverride>,
    /// A content validator by name (`conversation-jsonl`).
    #[serde(default)]
    pub validator: Option<String>,
}

/// One column type override: `amount=decimal(12,2)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnOverride {
    pub name: String,
    /// `utf8`, `int64`, `float64`, `boolean`, `date`, `timestamp`, `timestamptz` or
    /// `decimal(P,S)`; checked when the file is read.
    pub data_type: String,
}

impl std::str::FromStr for ColumnOverride {
    type Err = String;
    /// `NAME=TYPE`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, data_type) = s
            .split_once('=')
            .filter(|(n, t)| !n.trim().is_empty() && !t.trim().is_empty())
            .ok_or_else(|| {
                format!("{s:?} is not a column override: use NAME=TYPE, e.g. amount=decimal(12,2)")
            })?;
        Ok(Self {
            name: name.trim().to_owned(),
            data_type: data_type.trim().to_owned(),
        })
    }
}

/// The bad-row policy: what happens to a row that does not fit the file's shape (a
/// ragged CSV row, a value that does not fit its column's type, a record that is not
/// valid JSON or not valid text in the file's encoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BadRows {
    /// The first bad row fails the upload, naming file, line and what was expected.
    Fail,
    /// Bad rows go to a rejects file with line, raw text and reason; the rest registers.
    Reject,
    /// The table widens to hold every row: short rows padded with nulls, column types
    /// widened; what still cannot be placed (a long row's extra fields, a record that is
    /// not text or JSON) goes to the rejects file.
    Pad,
}

impl BadRows {
    pub const ALL: [BadRows; 3] = [Self::Fail, Self::Reject, Self::Pad];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fail => "fail",
            Self::Reject => "reject",
            Self::Pad => "pad",
        }
    }

    /// The default: `fail` when the producer named the table (a contract), `reject`
    /// otherwise (keep what is good, account for the rest).
    pub fn default_for(named_table: bool) -> Self {
        if named_table {
            Self::Fail
        } else {
            Self::Reject
        }
    }
}

impl std::str::FromStr for BadRows {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown bad-row policy {s:?}: use fail, reject or pad"))
    }
}

/// A limit on bad rows: a count, or a share of the data rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaxBadRows {
    Rows(u64),
    /// Parts per million of the data rows (`1%` is 10,000).
    Ppm(u32),
}

impl MaxBadRows {
    /// True when `bad` of `rows` data rows is over the limit. A count is known to be
    /// exceeded as soon as it is; a share only at the end (`rows` is then final).
    pub fn exceeded(self, bad: u64, rows: u64) -> bool {
        match self {
            Self::Rows(n) => bad > n,
            Self::Ppm(ppm) => {
                u128::from(bad) * 1_000_000 > u128::from(ppm) * u128::from(rows.max(1))
            }
        }
    }
}

impl std::fmt::Display for MaxBadRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rows(n) => write!(f, "{n} rows"),
            Self::Ppm(p) => write!(f, "{}%", f64::from(*p) / 10_000.0),
        }
    }
}

impl std::str::FromStr for MaxBadRows {
    type Err = String;
    /// `100` (rows), `0.5%` or `0.005` (a share below 1).
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = || {
            format!(
                "{s:?} is not a bad-row limit: give a row count (100) or a share (0.5% or 0.005)"
            )
        };
        if let Some(pct) = s.strip_suffix('%') {
            let v: f64 = pct.trim().parse().map_err(|_| bad())?;
            if !(0.0..=100.0).contains(&v) {
                return Err(bad());
            }
            return Ok(Self::Ppm((v * 10_000.0).round() as u32));
        }
        if let Ok(n) = s.parse::<u64>() {
            return Ok(Self::Rows(n));
        }
        let v: f64 = s.parse().map_err(|_| bad())?;
        if !(0.0..1.0).contains(&v) {
            return Err(bad());
        }
        Ok(Self::Ppm((v * 1_000_000.0).round() as u32))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadReceived {
    pub owner: Owner,
    /// The name the producer gave the file (no directories).
    pub filename: String,
    /// The declared content type (e.g. `text/csv`), if any.
    pub content_type: Option<String>,
    /// The declared format; content sniffing has the last word.
    pub format: Option<Format>,
    pub label: Option<String>,
    /// The table name asked for; validated by the registrar, which fails the upload
    /// with the reason when it is not acceptable.
    pub table_name: Option<String>,
    /// Total bytes over all parts.
    pub size: u64,
    pub parts: Vec<PartManifest>,
    /// Set when the upload is a new version of an existing dataset.
    pub dataset: Option<DatasetId>,
    /// The version the new one derives from (`dataset` set); `None`: the head of
    /// `branch`.
    #[serde(default)]
    pub parent_version: Option<u32>,
    /// The branch the new version goes on (`dataset` set); `None`: `main`.
    #[serde(default)]
    pub branch: Option<String>,
    /// Encoding and bad-row policy. (`default` lets the JSON rendering of an event
    /// written before options existed read as this struct; postcard always has it.)
    #[serde(default)]
    pub options: ReadOptions,
    /// Further files of the same version (`weir upload a.csv b.csv --one-version`),
    /// after the one named by `filename`, `size` and `parts`. Their parts continue the
    /// numbering (file 2's first part follows file 1's last). They are converted
    /// together and registered as one version, or the upload fails as a whole.
    #[serde(default)]
    pub more_files: Vec<UploadFile>,
}

/// One more file of an upload (see [`UploadReceived::more_files`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadFile {
    pub filename: String,
    /// Total bytes over the file's parts.
    pub size: u64,
    pub parts: Vec<PartManifest>,
}

impl UploadReceived {
    /// Every file of the upload in order, as (file name, declared size, parts): the
    /// first one, then `more_files`.
    pub fn files(&self) -> impl Iterator<Item = (&str, u64, &[PartManifest])> {
        std::iter::once((self.filename.as_str(), self.size, self.parts.as_slice())).chain(
            self.more_files
                .iter()
                .map(|f| (f.filename.as_str(), f.size, f.parts.as_slice())),
        )
    }

    /// Every part of every file.
    pub fn all_parts(&self) -> impl Iterator<Item = &PartManifest> {
        self.files().flat_map(|(_, _, parts)| parts)
    }

    /// Bytes over every file.
    pub fn total_size(&self) -> u64 {
        self.files().map(|(_, size, _)| size).sum()
    }
}

/// `UploadReceived` as written before several files could make one version (wire
/// variant 15). Decoding upgrades it to [`UploadReceived`] with no more files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadReceivedV2 {
    pub owner: Owner,
    pub filename: String,
    pub content_type: Option<String>,
    pub format: Option<Format>,
    pub label: Option<String>,
    pub table_name: Option<String>,
    pub size: u64,
    pub parts: Vec<PartManifest>,
    pub dataset: Option<DatasetId>,
    #[serde(default)]
    pub parent_version: Option<u32>,
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub options: ReadOptions,
}

impl From<UploadReceivedV2> for UploadReceived {
    fn from(v: UploadReceivedV2) -> Self {
        UploadReceived {
            owner: v.owner,
            filename: v.filename,
            content_type: v.content_type,
            format: v.format,
            label: v.label,
            table_name: v.table_name,
            size: v.size,
            parts: v.parts,
            dataset: v.dataset,
            parent_version: v.parent_version,
            branch: v.branch,
            options: v.options,
            more_files: Vec::new(),
        }
    }
}

/// `UploadReceived` as written before read options existed (wire variant 0). Decoding
/// upgrades it to [`UploadReceived`] with default options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadReceivedV1 {
    pub owner: Owner,
    pub filename: String,
    pub content_type: Option<String>,
    pub format: Option<Format>,
    pub label: Option<String>,
    pub table_name: Option<String>,
    pub size: u64,
    pub parts: Vec<PartManifest>,
    pub dataset: Option<DatasetId>,
}

impl From<UploadReceivedV1> for UploadReceived {
    fn from(v: UploadReceivedV1) -> Self {
        UploadReceived {
            owner: v.owner,
            filename: v.filename,
            content_type: v.content_type,
            format: v.format,
            label: v.label,
            table_name: v.table_name,
            size: v.size,
            parts: v.parts,
            dataset: v.dataset,
            parent_version: None,
            branch: None,
            // The producer chose nothing; an upload received by an older weir and read
            // by this one gets today's defaults.
            options: ReadOptions::default(),
            more_files: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartsCombined {
    pub blob: ObjectKey,
    pub size: u64,
    pub sha256: Sha256,
    /// The blob already existed (identical content uploaded before): stored once.
    pub deduplicated: bool,
    /// The blobs of the upload's further files (`UploadReceived::more_files`), in
    /// their order.
    #[serde(default)]
    pub more_blobs: Vec<CombinedBlob>,
}

/// One more file's content-addressed blob (see [`PartsCombined::more_blobs`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CombinedBlob {
    pub blob: ObjectKey,
    pub size: u64,
    pub sha256: Sha256,
    pub deduplicated: bool,
}

impl PartsCombined {
    /// Every blob of the upload, in file order.
    pub fn blobs(&self) -> impl Iterator<Item = &ObjectKey> {
        std::iter::once(&self.blob).chain(self.more_blobs.iter().map(|b| &b.blob))
    }

    /// Bytes over every blob.
    pub fn total_size(&self) -> u64 {
        self.size + self.more_blobs.iter().map(|b| b.size).sum::<u64>()
    }
}

/// `PartsCombined` as written before several files could make one version (wire
/// variant 1). Decoding upgrades it to [`PartsCombined`] with no more blobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartsCombinedV1 {
    pub blob: ObjectKey,
    pub size: u64,
    pub sha256: Sha256,
    pub deduplicated: bool,
}

impl From<PartsCombinedV1> for PartsCombined {
    fn from(v: PartsCombinedV1) -> Self {
        PartsCombined {
            blob: v.blob,
            size: v.size,
            sha256: v.sha256,
            deduplicated: v.deduplicated,
            more_blobs: Vec::new(),
        }
    }
}

/// One column of an inferred or read schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// The resolved, sanitised column name as written to Parquet.
    pub name: String,
    /// The name in the source when it differs from `name` (sanitised or de-duplicated).
    pub original_name: Option<String>,
    /// The Arrow type name (e.g. `Int64`, `Timestamp(µs, "UTC")`, `List(Utf8)`).
    pub data_type: String,
    pub nullable: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Schema {
    pub fields: Vec<Field>,
}

/// A minimum or maximum, kept for numbers, dates and timestamps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatValue {
    Int(i64),
    Float(f64),
    /// Dates and timestamps in ISO 8601.
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnStats {
    pub name: String,
    pub null_count: u64,
    pub min: Option<StatValue>,
    pub max: Option<StatValue>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Statistics {
    pub rows: u64,
    pub columns: Vec<ColumnStats>,
}

/// A problem with one row that did not stop the conversion (e.g. a ragged line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowProblem {
    /// 1-based line in the source file.
    pub line: u64,
    pub column: Option<String>,
    pub message: String,
}

/// At most this many row problems travel in an event; the count says how many there were.
pub const MAX_ROW_PROBLEMS: usize = 10;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaInferred {
    pub format: Format,
    pub compression: Compression,
    pub dataset: DatasetId,
    pub version: u32,
    pub parquet: ObjectKey,
    pub parquet_size: u64,
    /// The source was Parquet and is served as it is, without a rewrite.
    pub rewritten: bool,
    pub schema: Schema,
    pub statistics: Statistics,
    /// The first [`MAX_ROW_PROBLEMS`] bad rows.
    pub problems: Vec<RowProblem>,
    /// Bad rows in all, whatever became of them (see `quality`).
    pub problem_count: u64,
    /// Encoding, policy and where every row went; all default (unknown) for an event
    /// written before it existed. (`default` lets such an event's JSON rendering read.)
    #[serde(default)]
    pub quality: Quality,
}

/// How an upload's rows were read and where each one went:
/// `rows_read == statistics.rows + rejected`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Quality {
    /// The text encoding read (encoding_rs's name: `UTF-8`, `windows-1252`, `UTF-16LE`,
    /// …); empty for Parquet.
    pub encoding: String,
    /// True when the encoding came from the content, false when the producer named it.
    pub encoding_detected: bool,
    /// The policy applied.
    pub bad_rows: Option<BadRows>,
    /// Data rows in the input (records after the header).
    pub rows_read: u64,
    /// Rows not registered: each one is in the rejects file.
    pub rejected: u64,
    /// The rejects file (`datasets/<id>/v<k>/rejects.ndjson`): one JSON object per
    /// rejected row, or per padded row's extra fields, with its line, raw text and
    /// reason. `None` when there was nothing to put there.
    pub rejects: Option<ObjectKey>,
    /// Entries in the rejects file.
    pub rejects_entries: u64,
    /// The content validator's report (JSON: validator, records, statistics), when
    /// the upload asked for one.
    #[serde(default)]
    pub validation: Option<String>,
}

/// `SchemaInferred` as written before `quality` existed (wire variant 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaInferredV1 {
    pub format: Format,
    pub compression: Compression,
    pub dataset: DatasetId,
    pub version: u32,
    pub parquet: ObjectKey,
    pub parquet_size: u64,
    pub rewritten: bool,
    pub schema: Schema,
    pub statistics: Statistics,
    pub problems: Vec<RowProblem>,
    pub problem_count: u64,
}

impl From<SchemaInferredV1> for SchemaInferred {
    fn from(v: SchemaInferredV1) -> Self {
        // Not recorded then: unknown, not guessed.
        let quality = Quality::default();
        SchemaInferred {
            format: v.format,
            compression: v.compression,
            dataset: v.dataset,
            version: v.version,
            parquet: v.parquet,
            parquet_size: v.parquet_size,
            rewritten: v.rewritten,
            schema: v.schema,
            statistics: v.statistics,
            problems: v.problems,
            problem_count: v.problem_count,
            quality,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetRegistered {
    pub dataset: DatasetId,
    pub version: u32,
    pub parent_version: Option<u32>,
    pub owner: Owner,
    pub table_name: TableName,
    pub label: Option<String>,
    pub schema: Schema,
    pub parquet: ObjectKey,
    pub parquet_size: u64,
    pub statistics: Statistics,
    /// How the schema differs from the parent version's (`None` for a first version).
    #[serde(default)]
    pub schema_diff: Option<SchemaDiff>,
    /// The branch the version is on; `None`: `main`.
    #[serde(default)]
    pub branch: Option<String>,
}

/// `DatasetRegistered` as written before schema diffs (wire variant 3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetRegisteredV1 {
    pub dataset: DatasetId,
    pub version: u32,
    pub parent_version: Option<u32>,
    pub owner: Owner,
    pub table_name: TableName,
    pub label: Option<String>,
    pub schema: Schema,
    pub parquet: ObjectKey,
    pub parquet_size: u64,
    pub statistics: Statistics,
}

impl From<DatasetRegisteredV1> for DatasetRegistered {
    fn from(v: DatasetRegisteredV1) -> Self {
        DatasetRegistered {
            dataset: v.dataset,
            version: v.version,
            parent_version: v.parent_version,
            owner: v.owner,
            table_name: v.table_name,
            label: v.label,
            schema: v.schema,
            parquet: v.parquet,
            parquet_size: v.parquet_size,
            statistics: v.statistics,
            schema_diff: None,
            branch: None,
        }
    }
}

/// How a version's columns differ from its parent's. Columns are matched by name;
/// a renamed column is one removed and one added (renames are not guessed).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SchemaDiff {
    pub added: Vec<Field>,
    pub removed: Vec<Field>,
    pub type_changes: Vec<TypeChange>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeChange {
    pub name: String,
    pub from: String,
    pub to: String,
    pub change: TypeChangeKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TypeChangeKind {
    /// Every old value still fits: Int64→Float64, Date32→Timestamp, anything→Utf8.
    Widened,
    /// The reverse of a widening: old values may not fit.
    Narrowed,
    /// Neither (e.g. Boolean→Int64).
    Changed,
}

impl SchemaDiff {
    /// The difference from `parent` to `new`.
    pub fn between(parent: &Schema, new: &Schema) -> Self {
        let mut diff = SchemaDiff::default();
        for f in &new.fields {
            match parent.fields.iter().find(|p| p.name == f.name) {
                None => diff.added.push(f.clone()),
                Some(p) if p.data_type != f.data_type => diff.type_changes.push(TypeChange {
                    name: f.name.clone(),
                    from: p.data_type.clone(),
                    to: f.data_type.clone(),
                    change: type_change(&p.data_type, &f.data_type),
                }),
                Some(_) => {}
            }
        }
        for p in &parent.fields {
            if !new.fields.iter().any(|f| f.name == p.name) {
                diff.removed.push(p.clone());
            }
        }
        diff
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.type_changes.is_empty()
    }

    /// Added columns and widenings only.
    pub fn is_additive(&self) -> bool {
        self.removed.is_empty()
            && self
                .type_changes
                .iter()
                .all(|c| c.change == TypeChangeKind::Widened)
    }

    /// One line: `added email (Utf8); removed zip (Utf8); widened qty Int64 → Float64`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for f in &self.added {
            parts.push(format!("added {} ({})", f.name, f.data_type));
        }
        for f in &self.removed {
            parts.push(format!("removed {} ({})", f.name, f.data_type));
        }
        for c in &self.type_changes {
            let how = match c.change {
                TypeChangeKind::Widened => "widened",
                TypeChangeKind::Narrowed => "narrowed",
                TypeChangeKind::Changed => "changed",
            };
            parts.push(format!("{how} {} {} → {}", c.name, c.from, c.to));
        }
        if parts.is_empty() {
            "no change".to_owned()
        } else {
            parts.join("; ")
        }
    }
}

fn widens(from: &str, to: &str) -> bool {
    to == "Utf8"
        || (from == "Int64" && to == "Float64")
        || (from == "Date32" && to.starts_with("Timestamp("))
        || (from == "Null")
}

fn type_change(from: &str, to: &str) -> TypeChangeKind {
    if widens(from, to) {
        TypeChangeKind::Widened
    } else if widens(to, from) {
        TypeChangeKind::Narrowed
    } else {
        TypeChangeKind::Changed
    }
}

/// Which schema changes a dataset accepts in a new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemaPolicy {
    /// Any change (the default).
    #[default]
    Evolve,
    /// Added columns and widened types only.
    Additive,
    /// The same schema only.
    Freeze,
}

impl SchemaPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Evolve => "evolve",
            Self::Additive => "additive",
            Self::Freeze => "freeze",
        }
    }

    /// True when `diff` is allowed.
    pub fn allows(self, diff: &SchemaDiff) -> bool {
        match self {
            Self::Evolve => true,
            Self::Additive => diff.is_additive(),
            Self::Freeze => diff.is_empty(),
        }
    }
}

impl std::str::FromStr for SchemaPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [Self::Evolve, Self::Additive, Self::Freeze]
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown schema policy {s:?}: use evolve, additive or freeze"))
    }
}

/// A dataset's schema-evolution policy changed (aggregate `dataset`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetSchemaPolicyChanged {
    pub policy: SchemaPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failed {
    pub step: Step,
    /// What went wrong, naming the file, line/row and field where there is one.
    pub reason: String,
    pub attempts: u32,
    /// A transient fault ran out of attempts (a retry later may succeed), as opposed to
    /// a permanent one such as a malformed file.
    pub retryable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadAborted {
    pub reason: String,
    /// Parts removed from the store while aborting.
    pub parts_removed: u32,
}

/// What a compensation did after a failed step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompensationAction {
    /// The combined blob was removed: no other upload references it.
    BlobRemoved { blob: ObjectKey },
    /// The blob was kept because other uploads reference the same content.
    BlobKept { blob: ObjectKey, referenced_by: u32 },
    /// A Parquet file written for the failed upload was removed.
    ParquetRemoved { parquet: ObjectKey },
    /// Parts left behind by the upload were removed.
    PartsRemoved { count: u32 },
    /// The rejects file written for the failed upload was removed.
    RejectsRemoved { rejects: ObjectKey },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compensated {
    pub step: Step,
    pub action: CompensationAction,
}

/// A claim on a table name within an owner's namespace (aggregate `name`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableNameClaimed {
    pub owner: Owner,
    pub table_name: TableName,
    pub dataset: DatasetId,
    pub upload: UploadId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableNameReleased {
    pub owner: Owner,
    pub table_name: TableName,
    pub dataset: DatasetId,
}

/// A multipart upload was opened (HTTP gateway): parts will arrive at presigned URLs
/// until `UploadReceived` completes it or `UploadAborted` ends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadStarted {
    pub owner: Owner,
    pub filename: String,
    pub size: u64,
    pub part_size: u64,
    pub part_count: u32,
    /// When the presigned part URLs stop working.
    pub expires_at: crate::envelope::Timestamp,
}

/// An owner marked a notification read (aggregate `owner`). The notification is named
/// by the id of the event that raised it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationRead {
    pub owner: Owner,
    pub notification: crate::ids::EventId,
}

/// A dataset's label changed (aggregate `dataset`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetLabelChanged {
    pub label: Option<String>,
}

/// A dataset moved to another table name; the new name was claimed and the old one
/// released on their own subjects first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetRenamed {
    pub from: TableName,
    pub to: TableName,
}

/// A dataset was soft-deleted: hidden from listings, its objects kept until collected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetDeleted {
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetRestored {}

/// A version number of a dataset was taken by an upload that adds a version
/// (aggregate `dataset`), appended by the inferrer conditionally on the dataset's last
/// event, so two uploads never get one number. Version 1 is the dataset's first
/// upload and is never reserved. A reserved version whose upload fails stays a gap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetVersionReserved {
    pub version: u32,
    pub upload: UploadId,
    /// The version it derives from: the one named, else the head when reserved.
    pub parent_version: Option<u32>,
    /// The branch it goes on; `None`: `main`.
    pub branch: Option<String>,
}

/// A branch of a dataset was created at a registered version (aggregate `dataset`).
/// `main` always exists; a branch's head moves with each version registered on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetBranched {
    pub branch: String,
    pub from_version: u32,
}

/// An immutable name for a registered version (aggregate `dataset`); a tag is never
/// moved: tagging again with the same name is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetTagged {
    pub tag: String,
    pub version: u32,
}

/// A branch's head was moved back (or forth) to a registered version: a rollback
/// (aggregate `dataset`). The versions after it stay readable. `branch` `None`: `main`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetHeadMoved {
    pub branch: Option<String>,
    pub to_version: u32,
}

/// A branch or tag name: 1 to 64 of `a-z 0-9 _ - .`, not starting with `v` and a digit
/// (that is a version), not `main` for a new branch.
pub fn valid_ref_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.'));
    let looks_like_version = name
        .strip_prefix('v')
        .unwrap_or(name)
        .chars()
        .all(|c| c.is_ascii_digit());
    if name.is_empty() || name.len() > 64 || !ok_chars || looks_like_version {
        return Err(format!(
            "{name:?} is not a branch or tag name: use 1 to 64 of a-z, 0-9, _, - and ., not a version such as v3"
        ));
    }
    Ok(())
}

/// A dataset's default bad-row policy changed (aggregate `dataset`): what new versions
/// use when their upload names none. `None` restores weir's default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetBadRowsChanged {
    pub bad_rows: Option<BadRows>,
}

/// An API token was issued (aggregate `owner`). Only its hash is ever stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreated {
    pub owner: Owner,
    /// A short public id, shown in listings (the token's first characters).
    pub token_id: String,
    pub sha256: Sha256,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRevoked {
    pub owner: Owner,
    pub token_id: String,
}

/// An owner of a dataset (or an `admin` grantee) gave `grantee` `level` access to it
/// (aggregate `dataset`); granting again replaces the level. Who granted is the
/// envelope's actor. Appended conditionally on the dataset's last event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetAccessGranted {
    pub grantee: Owner,
    pub level: crate::access::AccessLevel,
}

/// `grantee`'s access to the dataset was taken back (aggregate `dataset`); who did it
/// is the envelope's actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetAccessRevoked {
    pub grantee: Owner,
}

/// An object was deleted from the store by the janitor (aggregate `object`): nothing
/// live referenced it and its grace period was over. Appended conditionally on the
/// object's last event, once per life of the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectDeleted {
    pub key: ObjectKey,
    /// Why, in words: which retention rule, since when (`failed upload upld_… ended
    /// 2026-…, retention 90 days`).
    pub reason: String,
    /// The object's size when deleted; `None` when it was already gone (a step's
    /// clean-up removed it without an event, or a crash came between delete and append).
    pub size: Option<u64>,
}

/// A soft-deleted dataset was purged (aggregate `dataset`): it can no longer be
/// restored, and the objects only it referenced are deleted by the janitor, each with
/// its own [`ObjectDeleted`]. Appended conditionally on the dataset's last event, so a
/// restore that came first wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetPurged {
    pub reason: String,
}

/// Every event in the stream. See the module docs before changing anything here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// Legacy encoding; [`Envelope::decode`](crate::Envelope::decode) upgrades it.
    UploadReceivedV1(UploadReceivedV1),
    /// Legacy encoding; [`Envelope::decode`](crate::Envelope::decode) upgrades it.
    PartsCombinedV1(PartsCombinedV1),
    /// Legacy encoding; [`Envelope::decode`](crate::Envelope::decode) upgrades it.
    SchemaInferredV1(SchemaInferredV1),
    /// Legacy encoding; [`Envelope::decode`](crate::Envelope::decode) upgrades it.
    DatasetRegisteredV1(DatasetRegisteredV1),
    Failed(Failed),
    UploadAborted(UploadAborted),
    Compensated(Compensated),
    TableNameClaimed(TableNameClaimed),
    TableNameReleased(TableNameReleased),
    UploadStarted(UploadStarted),
    NotificationRead(NotificationRead),
    DatasetLabelChanged(DatasetLabelChanged),
    DatasetRenamed(DatasetRenamed),
    DatasetDeleted(DatasetDeleted),
    DatasetRestored(DatasetRestored),
    TokenCreated(TokenCreated),
    TokenRevoked(TokenRevoked),
    /// Legacy encoding; [`Envelope::decode`](crate::Envelope::decode) upgrades it.
    UploadReceivedV2(UploadReceivedV2),
    SchemaInferred(SchemaInferred),
    DatasetVersionReserved(DatasetVersionReserved),
    DatasetBadRowsChanged(DatasetBadRowsChanged),
    DatasetRegistered(DatasetRegistered),
    DatasetSchemaPolicyChanged(DatasetSchemaPolicyChanged),
    DatasetBranched(DatasetBranched),
    DatasetTagged(DatasetTagged),
    DatasetHeadMoved(DatasetHeadMoved),
    DatasetAccessGranted(DatasetAccessGranted),
    DatasetAccessRevoked(DatasetAccessRevoked),
    ObjectDeleted(ObjectDeleted),
    DatasetPurged(DatasetPurged),
    UploadReceived(UploadReceived),
    PartsCombined(PartsCombined),
}

/// The kind of an event, as it appears in subjects and in the `Weir-Kind` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    UploadReceived,
    PartsCombined,
    SchemaInferred,
    DatasetRegistered,
    Failed,
    UploadAborted,
    Compensated,
    TableNameClaimed,
    TableNameReleased,
    UploadStarted,
    NotificationRead,
    DatasetLabelChanged,
    DatasetRenamed,
    DatasetDeleted,
    DatasetRestored,
    TokenCreated,
    TokenRevoked,
    DatasetVersionReserved,
    DatasetBadRowsChanged,
    DatasetSchemaPolicyChanged,
    DatasetBranched,
    DatasetTagged,
    DatasetHeadMoved,
    DatasetAccessGranted,
    DatasetAccessRevoked,
    ObjectDeleted,
    DatasetPurged,
}

impl EventKind {
    pub const ALL: [EventKind; 27] = [
        Self::UploadReceived,
        Self::PartsCombined,
        Self::SchemaInferred,
        Self::DatasetRegistered,
        Self::Failed,
        Self::UploadAborted,
        Self::Compensated,
        Self::TableNameClaimed,
        Self::TableNameReleased,
        Self::UploadStarted,
        Self::NotificationRead,
        Self::DatasetLabelChanged,
        Self::DatasetRenamed,
        Self::DatasetDeleted,
        Self::DatasetRestored,
        Self::TokenCreated,
        Self::TokenRevoked,
        Self::DatasetVersionReserved,
        Self::DatasetBadRowsChanged,
        Self::DatasetSchemaPolicyChanged,
        Self::DatasetBranched,
        Self::DatasetTagged,
        Self::DatasetHeadMoved,
        Self::DatasetAccessGranted,
        Self::DatasetAccessRevoked,
        Self::ObjectDeleted,
        Self::DatasetPurged,
    ];

    /// The snake_case token used in subjects and headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UploadReceived => "upload_received",
            Self::PartsCombined => "parts_combined",
            Self::SchemaInferred => "schema_inferred",
            Self::DatasetRegistered => "dataset_registered",
            Self::Failed => "failed",
            Self::UploadAborted => "upload_aborted",
            Self::Compensated => "compensated",
            Self::TableNameClaimed => "table_name_claimed",
            Self::TableNameReleased => "table_name_released",
            Self::UploadStarted => "upload_started",
            Self::NotificationRead => "notification_read",
            Self::DatasetLabelChanged => "dataset_label_changed",
            Self::DatasetRenamed => "dataset_renamed",
            Self::DatasetDeleted => "dataset_deleted",
            Self::DatasetRestored => "dataset_restored",
            Self::TokenCreated => "token_created",
            Self::TokenRevoked => "token_revoked",
            Self::DatasetVersionReserved => "dataset_version_reserved",
            Self::DatasetBadRowsChanged => "dataset_bad_rows_changed",
            Self::DatasetSchemaPolicyChanged => "dataset_schema_policy_changed",
            Self::DatasetBranched => "dataset_branched",
            Self::DatasetTagged => "dataset_tagged",
            Self::DatasetHeadMoved => "dataset_head_moved",
            Self::DatasetAccessGranted => "dataset_access_granted",
            Self::DatasetAccessRevoked => "dataset_access_revoked",
            Self::ObjectDeleted => "object_deleted",
            Self::DatasetPurged => "dataset_purged",
        }
    }

    /// Ends an upload's life: nothing follows it on the upload's subjects but
    /// compensations.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::DatasetRegistered | Self::Failed | Self::UploadAborted
        )
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EventKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let wanted = s.to_ascii_lowercase().replace('-', "_");
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == wanted || format!("{k:?}").to_ascii_lowercase() == wanted)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown event kind {s:?}: use one of {}", names.join(", "))
            })
    }
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self {
            Self::UploadReceived(_) | Self::UploadReceivedV1(_) | Self::UploadReceivedV2(_) => {
                EventKind::UploadReceived
            }
            Self::PartsCombined(_) | Self::PartsCombinedV1(_) => EventKind::PartsCombined,
            Self::SchemaInferred(_) | Self::SchemaInferredV1(_) => EventKind::SchemaInferred,
            Self::DatasetRegistered(_) | Self::DatasetRegisteredV1(_) => {
                EventKind::DatasetRegistered
            }
            Self::Failed(_) => EventKind::Failed,
            Self::UploadAborted(_) => EventKind::UploadAborted,
            Self::Compensated(_) => EventKind::Compensated,
            Self::TableNameClaimed(_) => EventKind::TableNameClaimed,
            Self::TableNameReleased(_) => EventKind::TableNameReleased,
            Self::UploadStarted(_) => EventKind::UploadStarted,
            Self::NotificationRead(_) => EventKind::NotificationRead,
            Self::DatasetLabelChanged(_) => EventKind::DatasetLabelChanged,
            Self::DatasetRenamed(_) => EventKind::DatasetRenamed,
            Self::DatasetDeleted(_) => EventKind::DatasetDeleted,
            Self::DatasetRestored(_) => EventKind::DatasetRestored,
            Self::TokenCreated(_) => EventKind::TokenCreated,
            Self::TokenRevoked(_) => EventKind::TokenRevoked,
            Self::DatasetVersionReserved(_) => EventKind::DatasetVersionReserved,
            Self::DatasetBadRowsChanged(_) => EventKind::DatasetBadRowsChanged,
            Self::DatasetSchemaPolicyChanged(_) => EventKind::DatasetSchemaPolicyChanged,
            Self::DatasetBranched(_) => EventKind::DatasetBranched,
            Self::DatasetTagged(_) => EventKind::DatasetTagged,
            Self::DatasetHeadMoved(_) => EventKind::DatasetHeadMoved,
            Self::DatasetAccessGranted(_) => EventKind::DatasetAccessGranted,
            Self::DatasetAccessRevoked(_) => EventKind::DatasetAccessRevoked,
            Self::ObjectDeleted(_) => EventKind::ObjectDeleted,
            Self::DatasetPurged(_) => EventKind::DatasetPurged,
        }
    }

    /// The dataset the event's payload names, if any. Events on a dataset's own
    /// aggregate name it there instead: [`crate::Envelope::dataset`] looks at both.
    pub fn dataset(&self) -> Option<crate::DatasetId> {
        match self {
            Self::UploadReceived(e) => e.dataset,
            Self::UploadReceivedV1(e) => e.dataset,
            Self::UploadReceivedV2(e) => e.dataset,
            Self::SchemaInferredV1(e) => Some(e.dataset),
            Self::DatasetRegisteredV1(e) => Some(e.dataset),
            Self::SchemaInferred(e) => Some(e.dataset),
            Self::DatasetRegistered(e) => Some(e.dataset),
            Self::TableNameClaimed(e) => Some(e.dataset),
            Self::TableNameReleased(e) => Some(e.dataset),
            Self::PartsCombined(_)
            | Self::PartsCombinedV1(_)
            | Self::Failed(_)
            | Self::UploadAborted(_)
            | Self::Compensated(_)
            | Self::UploadStarted(_)
            | Self::NotificationRead(_)
            | Self::DatasetLabelChanged(_)
            | Self::DatasetRenamed(_)
            | Self::DatasetDeleted(_)
            | Self::DatasetRestored(_)
            | Self::TokenCreated(_)
            | Self::TokenRevoked(_)
            | Self::DatasetVersionReserved(_)
            | Self::DatasetBadRowsChanged(_)
            | Self::DatasetSchemaPolicyChanged(_)
            | Self::DatasetBranched(_)
            | Self::DatasetTagged(_)
            | Self::DatasetHeadMoved(_)
            | Self::DatasetAccessGranted(_)
            | Self::DatasetAccessRevoked(_)
            | Self::ObjectDeleted(_)
            | Self::DatasetPurged(_) => None,
        }
    }
}

impl Event {
    /// The current form of a legacy variant; every other event as it is. Decoding does
    /// this, so the rest of weir only ever sees current variants.
    pub fn upgrade(self) -> Self {
        match self {
            Self::UploadReceivedV1(v) => Self::UploadReceived(v.into()),
            Self::UploadReceivedV2(v) => Self::UploadReceived(v.into()),
            Self::PartsCombinedV1(v) => Self::PartsCombined(v.into()),
            Self::SchemaInferredV1(v) => Self::SchemaInferred(v.into()),
            Self::DatasetRegisteredV1(v) => Self::DatasetRegistered(v.into()),
            other => other,
        }
    }

    /// The key fields on one line, for `weir tail` and audit trails.
    pub fn summary(&self) -> String {
        match self {
            Self::UploadReceivedV1(_)
            | Self::UploadReceivedV2(_)
            | Self::PartsCombinedV1(_)
            | Self::SchemaInferredV1(_)
            | Self::DatasetRegisteredV1(_) => self.clone().upgrade().summary(),
            Self::UploadReceived(e) => format!(
                "owner={} file={:?} size={} parts={}{}{}{}{}",
                e.owner,
                e.filename,
                e.size,
                e.parts.len(),
                e.more_files
                    .iter()
                    .map(|f| format!(
                        " file={:?} size={} parts={}",
                        f.filename,
                        f.size,
                        f.parts.len()
                    ))
                    .collect::<String>(),
                e.format
                    .map(|f| format!(" format={}", f.as_str()))
                    .unwrap_or_default(),
                e.table_name
                    .as_ref()
                    .map(|t| format!(" table={t}"))
                    .unwrap_or_default(),
                options_summary(e),
            ),
            Self::PartsCombined(e) => format!(
                "blob={} size={}{}{}",
                e.blob,
                e.size,
                if e.deduplicated { " deduplicated" } else { "" },
                e.more_blobs
                    .iter()
                    .map(|b| format!(
                        " blob={} size={}{}",
                        b.blob,
                        b.size,
                        if b.deduplicated { " deduplicated" } else { "" }
                    ))
                    .collect::<String>()
            ),
            Self::SchemaInferred(e) => format!(
                "format={} dataset={} v{} rows={} columns={} problems={}{}{}",
                e.format.as_str(),
                e.dataset,
                e.version,
                e.statistics.rows,
                e.schema.fields.len(),
                e.problem_count,
                if e.quality.rejected > 0 {
                    format!(" rejected={}", e.quality.rejected)
                } else {
                    String::new()
                },
                if e.quality.encoding.is_empty() || e.quality.encoding == "UTF-8" {
                    String::new()
                } else {
                    format!(" encoding={}", e.quality.encoding)
                },
            ),
            Self::DatasetRegistered(e) => format!(
                "dataset={} v{}{} table={} rows={}{}",
                e.dataset,
                e.version,
                e.branch
                    .as_ref()
                    .map(|b| format!(" branch={b}"))
                    .unwrap_or_default(),
                e.table_name,
                e.statistics.rows,
                match (&e.schema_diff, e.parent_version) {
                    (Some(d), Some(p)) if !d.is_empty() =>
                        format!(" schema vs v{p}: {}", d.describe()),
                    _ => String::new(),
                }
            ),
            Self::Failed(e) => format!(
                "step={} attempts={}{} reason={:?}",
                e.step.as_str(),
                e.attempts,
                if e.retryable { " retryable" } else { "" },
                e.reason
            ),
            Self::UploadAborted(e) => {
                format!("parts_removed={} reason={:?}", e.parts_removed, e.reason)
            }
            Self::Compensated(e) => format!("step={} {:?}", e.step.as_str(), e.action),
            Self::TableNameClaimed(e) => {
                format!(
                    "table={} owner={} dataset={}",
                    e.table_name, e.owner, e.dataset
                )
            }
            Self::TableNameReleased(e) => {
                format!(
                    "table={} owner={} dataset={}",
                    e.table_name, e.owner, e.dataset
                )
            }
            Self::UploadStarted(e) => format!(
                "owner={} file={:?} size={} parts={} expires={}",
                e.owner, e.filename, e.size, e.part_count, e.expires_at
            ),
            Self::NotificationRead(e) => {
                format!("owner={} notification={}", e.owner, e.notification)
            }
            Self::DatasetLabelChanged(e) => format!("label={:?}", e.label),
            Self::DatasetRenamed(e) => format!("from={} to={}", e.from, e.to),
            Self::DatasetDeleted(e) => format!("reason={:?}", e.reason),
            Self::DatasetRestored(_) => String::new(),
            Self::TokenCreated(e) => format!("owner={} token={}", e.owner, e.token_id),
            Self::TokenRevoked(e) => format!("owner={} token={}", e.owner, e.token_id),
            Self::DatasetVersionReserved(e) => format!(
                "v{} upload={}{}",
                e.version,
                e.upload,
                e.parent_version
                    .map(|p| format!(" parent=v{p}"))
                    .unwrap_or_default()
            ),
            Self::DatasetBadRowsChanged(e) => {
                format!("bad_rows={}", e.bad_rows.map_or("default", BadRows::as_str))
            }
            Self::DatasetSchemaPolicyChanged(e) => format!("schema_policy={}", e.policy.as_str()),
            Self::DatasetBranched(e) => format!("branch={} from=v{}", e.branch, e.from_version),
            Self::DatasetTagged(e) => format!("tag={} version=v{}", e.tag, e.version),
            Self::DatasetHeadMoved(e) => format!(
                "branch={} to=v{}",
                e.branch.as_deref().unwrap_or("main"),
                e.to_version
            ),
            Self::DatasetAccessGranted(e) => format!("granted {} access to {}", e.level, e.grantee),
            Self::DatasetAccessRevoked(e) => format!("revoked the access of {}", e.grantee),
            Self::ObjectDeleted(e) => format!(
                "key={}{} reason={:?}",
                e.key,
                e.size
                    .map_or_else(|| " (already gone)".to_owned(), |n| format!(" size={n}")),
                e.reason
            ),
            Self::DatasetPurged(e) => format!("reason={:?}", e.reason),
        }
    }
}

fn options_summary(e: &UploadReceived) -> String {
    let o = &e.options;
    let mut out = String::new();
    if let Some(d) = e.dataset {
        out.push_str(&format!(" dataset={d}"));
    }
    if let Some(p) = e.parent_version {
        out.push_str(&format!(" parent=v{p}"));
    }
    if let Some(b) = &e.branch {
        out.push_str(&format!(" branch={b}"));
    }
    if let Some(e) = &o.encoding {
        out.push_str(&format!(" encoding={e}"));
    }
    if let Some(p) = o.bad_rows {
        out.push_str(&format!(" bad_rows={}", p.as_str()));
    }
    if let Some(m) = o.max_bad_rows {
        out.push_str(&format!(" max_bad_rows={m}"));
    }
    for c in &o.columns {
        out.push_str(&format!(" column={}={}", c.name, c.data_type));
    }
    if let Some(v) = &o.validator {
        out.push_str(&format!(" validator={v}"));
    }
    out
}
