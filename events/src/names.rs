//! Names built in one place: object keys in the store, table names in the catalog, and
//! content hashes. Call sites never assemble these strings themselves.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::{DatasetId, UploadId};

/// A SHA-256 digest: 32 bytes on the wire, lowercase hex in text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256(pub [u8; 32]);

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{self}")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a sha256 digest: expected 64 hex characters")]
pub struct Sha256Error(pub String);

impl FromStr for Sha256 {
    type Err = Sha256Error;
    fn from_str(s: &str) -> Result<Self, Sha256Error> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| Sha256Error(s.to_owned()))?;
        Ok(Self(out))
    }
}

impl Serialize for Sha256 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Sha256 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            String::deserialize(d)?
                .parse()
                .map_err(serde::de::Error::custom)
        } else {
            Ok(Self(<[u8; 32]>::deserialize(d)?))
        }
    }
}

/// The longest file name an upload may carry, in bytes (what most file systems allow).
pub const MAX_FILENAME_BYTES: usize = 255;

/// The file name an upload records, from what a producer gave: its last path
/// component (`../../x` is `x`), trimmed; `upload` when nothing is left. A name with a
/// control character (NUL, newline, ESC, …) or longer than [`MAX_FILENAME_BYTES`] is
/// refused, with the reason naming it escaped, so every log line, terminal and message
/// that shows a name shows it as it was meant. The name is a label: no object key or
/// path is ever built from it (keys come from ids and hashes).
pub fn upload_filename(given: Option<&str>) -> Result<String, String> {
    let given = given.unwrap_or("");
    if let Some(c) = given.chars().find(|c| c.is_control()) {
        return Err(format!(
            "filename {given:?} contains the control character {c:?}: rename the file"
        ));
    }
    let base = given.rsplit(['/', '\\']).next().unwrap_or("").trim();
    if base.len() > MAX_FILENAME_BYTES {
        return Err(format!(
            "filename is {} bytes long, over the limit of {MAX_FILENAME_BYTES}: {:?}…",
            base.len(),
            base.chars().take(40).collect::<String>()
        ));
    }
    Ok(if base.is_empty() || base == "." || base == ".." {
        "upload".to_owned()
    } else {
        base.to_owned()
    })
}

/// A key in the object store, relative to the configured root. Only the constructors
/// below make one, so every key weir writes has one of these shapes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// `uploads/<upload>.<n>`: one part as the producer wrote it. Parts lie flat under
    /// `uploads/`: on a local store a folder per upload is two more inodes to allocate
    /// on the small-file path (`mkdir` was 8 % of its CPU) and two empty folders left
    /// behind for good once the parts are removed.
    pub fn part(upload: UploadId, number: u32) -> Self {
        Self(format!("uploads/{upload}.{number:05}"))
    }

    /// The part number of this key when it is one of `upload`'s parts, in either
    /// [`PartLayout`].
    pub fn part_number(&self, upload: UploadId) -> Option<u32> {
        let rest = self.0.strip_prefix("uploads/")?;
        let id = upload.to_string();
        let rest = rest.strip_prefix(id.as_str())?;
        let number = rest
            .strip_prefix('.')
            .or_else(|| rest.strip_prefix("/parts/"))?;
        // Digits only: `parse` would also take a sign.
        number
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| number.parse().ok())
            .flatten()
    }

    /// The upload a part or staging object under `uploads/` was written for, in either
    /// layout.
    pub fn staged_for(&self) -> Option<UploadId> {
        let rest = self.0.strip_prefix("uploads/")?;
        let end = rest.find(['.', '/']).unwrap_or(rest.len());
        rest[..end].parse().ok()
    }

    /// `uploads/<upload>.combined`: where parts are concatenated before the content
    /// hash, and so the blob's key, is known.
    pub fn staging(upload: UploadId) -> Self {
        Self(format!("uploads/{upload}.combined"))
    }

    /// Where the parts of an upload's file number `file` (1-based; 1 is
    /// [`ObjectKey::staging`]) are concatenated before the result is moved to its
    /// content address.
    pub fn staging_of(upload: UploadId, file: usize) -> Self {
        if file <= 1 {
            Self::staging(upload)
        } else {
            Self(format!("uploads/{upload}.combined-{file}"))
        }
    }

    /// `parquet/sha256/converting`: a name no content hash takes. A conversion writes
    /// its Parquet and rejects into staged siblings of it (`…#<pid><n>`), in the folder
    /// converted Parquet lives in, so no folder is made per upload and the finished
    /// file is moved to its content address by a rename; one a crash left is an
    /// object no event names, which the janitor removes once `orphan` has passed.
    pub fn converting() -> Self {
        Self("parquet/sha256/converting".to_owned())
    }

    /// `blobs/sha256/<hash>`: combined content, stored once per distinct content.
    pub fn blob(hash: &Sha256) -> Self {
        Self(format!("blobs/sha256/{hash}"))
    }

    /// `parquet/sha256/<hash>.parquet`: a converted Parquet file by its content, stored
    /// once however many versions and datasets it is the data of (identical input and
    /// options convert to identical bytes). The suffix is for readers that select
    /// Parquet files by name (DataFusion's listing tables).
    pub fn converted(hash: &Sha256) -> Self {
        Self(format!("parquet/sha256/{hash}.parquet"))
    }

    /// `datasets/<dataset>/v<version>/data.parquet`: where a version's Parquet was
    /// written before conversions were content-addressed (events of older logs name
    /// it), and where the inferrer stages one on a local store.
    pub fn parquet(dataset: DatasetId, version: u32) -> Self {
        Self(format!("datasets/{dataset}/v{version}/data.parquet"))
    }

    /// `datasets/<dataset>/v<version>/rejects.ndjson`: the rows of that version's
    /// upload that were not registered, and the extra fields of padded ones.
    pub fn rejects(dataset: DatasetId, version: u32) -> Self {
        Self(format!("datasets/{dataset}/v{version}/rejects.ndjson"))
    }

    /// `incoming/<name>`: where a producer that is not weir puts a file before asking
    /// for its upload (`weir-requests.upload`). `name` is one or more path segments of
    /// `A-Za-z0-9._-`, none of them `.` or `..`.
    pub fn incoming(name: &str) -> Result<Self, String> {
        let name = name.strip_prefix("incoming/").unwrap_or(name);
        let ok = !name.is_empty()
            && name.len() <= 512
            && name.split('/').all(|seg| {
                !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            });
        if !ok {
            return Err(format!(
                "{name:?} is not a key under incoming/: use segments of A-Za-z0-9._- (no . or ..)"
            ));
        }
        Ok(Self(format!("incoming/{name}")))
    }

    /// A key weir wrote earlier, read back from where it was recorded (a projection
    /// row, a store listing): not built from input.
    pub fn from_stored(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// `health/probe-<id>`: the object `weir doctor` writes, reads and deletes.
    pub fn probe(id: UploadId) -> Self {
        Self(format!("health/probe-{id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key as one subject token (`weir.object.<token>.<kind>`): `%` and `.` (and
    /// anything else a NATS token cannot hold) percent-escaped, so `data.parquet` is
    /// `data%2Eparquet`; keys are ASCII without spaces, `*` or `>` by construction.
    pub fn subject_token(&self) -> String {
        let mut out = String::with_capacity(self.0.len() + 8);
        for c in self.0.chars() {
            match c {
                '.' | '%' | '*' | '>' => out.push_str(&format!("%{:02X}", c as u32)),
                c if c.is_ascii_graphic() => out.push(c),
                c => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("%{b:02X}"));
                    }
                }
            }
        }
        out
    }
}

/// Where an upload's parts and staging objects lie, told by the schema version of the
/// event that names them: an event's meaning stays what it was when it was appended,
/// so a log recorded before parts were flat still projects to the keys its parts had.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PartLayout {
    /// `uploads/<upload>/parts/<n>`, `uploads/<upload>/combined[-<file>]` (schema
    /// version 1).
    Folder,
    /// `uploads/<upload>.<n>`, `uploads/<upload>.combined[-<file>]` (schema version 2
    /// on): no folder per upload.
    #[default]
    Flat,
}

impl PartLayout {
    /// The first schema version whose events name flat parts.
    pub const FLAT_SINCE: u16 = 2;

    /// The layout of the parts an event of `schema_version` names.
    pub fn of(schema_version: u16) -> Self {
        if schema_version < Self::FLAT_SINCE {
            Self::Folder
        } else {
            Self::Flat
        }
    }

    /// Part `number` of `upload`.
    pub fn part(self, upload: UploadId, number: u32) -> ObjectKey {
        match self {
            Self::Folder => ObjectKey(format!("uploads/{upload}/parts/{number:05}")),
            Self::Flat => ObjectKey::part(upload, number),
        }
    }

    /// Where the parts of `upload`'s file number `file` (1-based) are concatenated.
    pub fn staging_of(self, upload: UploadId, file: usize) -> ObjectKey {
        match (self, file <= 1) {
            (Self::Folder, true) => ObjectKey(format!("uploads/{upload}/combined")),
            (Self::Folder, false) => ObjectKey(format!("uploads/{upload}/combined-{file}")),
            (Self::Flat, _) => ObjectKey::staging_of(upload, file),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectKey({})", self.0)
    }
}

/// A table name in the catalog: starts with a letter or `_`, then `[a-z0-9_]`, at most
/// 128 characters, and not an SQL reserved word.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TableName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableNameError {
    #[error("table name is empty")]
    Empty,
    #[error("table name {0:?} is longer than 128 characters")]
    TooLong(String),
    #[error("table name {0:?} must start with a lowercase letter or `_`")]
    BadStart(String),
    #[error("table name {name:?} has {ch:?} at position {pos}: only a-z, 0-9 and `_` are allowed")]
    BadChar { name: String, ch: char, pos: usize },
    #[error("table name {0:?} is an SQL reserved word")]
    Reserved(String),
}

pub const MAX_TABLE_NAME: usize = 128;

/// SQL:2016 reserved words plus those of SQLite, Postgres and DuckDB that would need
/// quoting; a table named like one of these breaks hand-written queries.
const RESERVED: &[&str] = &[
    "all",
    "alter",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "between",
    "binary",
    "both",
    "by",
    "case",
    "cast",
    "check",
    "collate",
    "column",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "delete",
    "desc",
    "distinct",
    "do",
    "drop",
    "else",
    "end",
    "except",
    "exists",
    "false",
    "fetch",
    "for",
    "foreign",
    "from",
    "full",
    "grant",
    "group",
    "having",
    "in",
    "index",
    "initially",
    "inner",
    "insert",
    "intersect",
    "into",
    "is",
    "join",
    "lateral",
    "leading",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "natural",
    "not",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "outer",
    "over",
    "overlaps",
    "placing",
    "primary",
    "references",
    "returning",
    "right",
    "select",
    "session_user",
    "similar",
    "some",
    "symmetric",
    "table",
    "tablesample",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "update",
    "user",
    "using",
    "values",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
];

impl TableName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Turns free text (a label or file name) into a valid table name: lowercased,
    /// other characters folded to `_`, a leading digit prefixed with `t_`, reserved words
    /// suffixed with `_data`, cut to 128 characters.
    pub fn derive(text: &str) -> Self {
        let mut out = String::with_capacity(text.len());
        for c in text.chars().flat_map(char::to_lowercase) {
            let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            };
            if !(c == '_' && out.ends_with('_')) {
                out.push(c);
            }
        }
        let mut out = out.trim_matches('_').to_owned();
        if out.is_empty() {
            out = "dataset".to_owned();
        }
        if out.as_bytes()[0].is_ascii_digit() {
            out.insert_str(0, "t_");
        }
        out.truncate(MAX_TABLE_NAME - "_data".len());
        if RESERVED.contains(&out.as_str()) {
            out.push_str("_data");
        }
        Self(out)
    }

    /// `name` with a numeric suffix, still valid (used to propose an alternative).
    pub fn with_suffix(&self, n: u32) -> Self {
        let suffix = format!("_{n}");
        let mut base = self.0.clone();
        base.truncate(MAX_TABLE_NAME - suffix.len());
        Self(base + &suffix)
    }
}

impl FromStr for TableName {
    type Err = TableNameError;
    fn from_str(s: &str) -> Result<Self, TableNameError> {
        let first = s.chars().next().ok_or(TableNameError::Empty)?;
        if s.len() > MAX_TABLE_NAME {
            return Err(TableNameError::TooLong(s.to_owned()));
        }
        if !(first.is_ascii_lowercase() || first == '_') {
            return Err(TableNameError::BadStart(s.to_owned()));
        }
        if let Some((pos, ch)) = s
            .chars()
            .enumerate()
            .find(|(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
        {
            return Err(TableNameError::BadChar {
                name: s.to_owned(),
                ch,
                pos,
            });
        }
        if RESERVED.contains(&s) {
            return Err(TableNameError::Reserved(s.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }
}

impl<'de> Deserialize<'de> for TableName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TableName({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_validated() {
        assert!("orders_2024".parse::<TableName>().is_ok());
        assert!("_tmp".parse::<TableName>().is_ok());
        assert_eq!("".parse::<TableName>(), Err(TableNameError::Empty));
        assert!(matches!(
            "1abc".parse::<TableName>(),
            Err(TableNameError::BadStart(_))
        ));
        assert!(matches!(
            "Orders".parse::<TableName>(),
            Err(TableNameError::BadStart(_))
        ));
        assert!(matches!(
            "a-b".parse::<TableName>(),
            Err(TableNameError::BadChar {
                ch: '-',
                pos: 1,
                ..
            })
        ));
        assert!(matches!(
            "select".parse::<TableName>(),
            Err(TableNameError::Reserved(_))
        ));
        assert!("a".repeat(128).parse::<TableName>().is_ok());
        assert!(matches!(
            "a".repeat(129).parse::<TableName>(),
            Err(TableNameError::TooLong(_))
        ));
    }

    #[test]
    fn derived_names_are_always_valid() {
        for (text, want) in [
            ("Sales Q3 (final).csv", "sales_q3_final_csv"),
            ("2024 orders", "t_2024_orders"),
            ("select", "select_data"),
            ("!!!", "dataset"),
            ("Ünïcode name", "n_code_name"),
        ] {
            let got = TableName::derive(text);
            assert_eq!(got.as_str(), want, "derive({text:?})");
            assert_eq!(got.as_str().parse::<TableName>().as_ref(), Ok(&got));
        }
        let long = TableName::derive(&"x".repeat(300));
        assert!(long.as_str().parse::<TableName>().is_ok());
        assert!(long.with_suffix(12).as_str().parse::<TableName>().is_ok());
    }

    #[test]
    fn keys_have_their_documented_shapes() {
        let up = UploadId::from_u128(1);
        assert_eq!(
            ObjectKey::part(up, 3).as_str(),
            "uploads/upld_00000000000000000000000001.00003"
        );
        assert_eq!(
            PartLayout::Folder.part(up, 3).as_str(),
            "uploads/upld_00000000000000000000000001/parts/00003"
        );
        let other = UploadId::from_u128(2);
        for key in [ObjectKey::part(up, 3), PartLayout::Folder.part(up, 3)] {
            assert_eq!(key.part_number(up), Some(3), "{key}");
            assert_eq!(key.part_number(other), None, "{key}");
            assert_eq!(key.staged_for(), Some(up), "{key}");
        }
        for key in [ObjectKey::staging(up), ObjectKey::staging_of(up, 2)] {
            assert_eq!(key.part_number(up), None, "{key}");
            assert_eq!(key.staged_for(), Some(up), "{key}");
        }
        assert_eq!(
            ObjectKey::staging_of(up, 2).as_str(),
            "uploads/upld_00000000000000000000000001.combined-2"
        );
        assert_eq!(PartLayout::of(1), PartLayout::Folder);
        assert_eq!(PartLayout::of(2), PartLayout::Flat);
        assert_eq!(
            PartLayout::Folder.staging_of(up, 1).as_str(),
            "uploads/upld_00000000000000000000000001/combined"
        );
        assert_eq!(
            PartLayout::Folder.staging_of(up, 2).as_str(),
            "uploads/upld_00000000000000000000000001/combined-2"
        );
        assert_eq!(PartLayout::Flat.part(up, 3), ObjectKey::part(up, 3));
        for key in [
            PartLayout::Folder.staging_of(up, 1),
            PartLayout::Folder.staging_of(up, 2),
        ] {
            assert_eq!(key.staged_for(), Some(up), "{key}");
        }
        let h = Sha256([0xab; 32]);
        assert_eq!(
            ObjectKey::blob(&h).as_str(),
            format!("blobs/sha256/{}", "ab".repeat(32))
        );
        assert_eq!(
            ObjectKey::parquet(DatasetId::from_u128(1), 2).as_str(),
            "datasets/data_00000000000000000000000001/v2/data.parquet"
        );
    }

    #[test]
    fn upload_filenames_are_labels_without_paths_or_control_characters() {
        let ok = |given: &str, want: &str| {
            assert_eq!(
                upload_filename(Some(given)).as_deref(),
                Ok(want),
                "{given:?}"
            )
        };
        ok("../../x", "x");
        ok("..\\..\\x.csv", "x.csv");
        ok("/etc/passwd", "passwd");
        ok("  sales.csv ", "sales.csv");
        ok("..", "upload");
        ok("dir/", "upload");
        ok("données été.csv", "données été.csv");
        assert_eq!(upload_filename(None).as_deref(), Ok("upload"));
        ok(&"é".repeat(127), &"é".repeat(127));
        for bad in [
            "a\0b.csv",
            "a\nb.csv",
            "x\r",
            "\u{1b}[31mred.csv",
            "c1\u{9b}.csv",
        ] {
            let e = upload_filename(Some(bad)).unwrap_err();
            assert!(
                e.starts_with("filename ") && e.contains("control character"),
                "{e}"
            );
            assert!(
                !e.chars().any(char::is_control),
                "the reason is escaped: {e:?}"
            );
        }
        let e = upload_filename(Some(&"n".repeat(1024))).unwrap_err();
        assert!(e.contains("1024 bytes long, over the limit of 255"), "{e}");
        // The limit counts bytes, not characters.
        assert!(upload_filename(Some(&"é".repeat(128))).is_err());
    }
}
