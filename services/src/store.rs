//! The object store as weir uses it: keys are [`ObjectKey`]s, bytes stream in and out
//! in bounded chunks, and every error says which key it was about and whether a retry
//! can help.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256 as Hasher};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weir_events::{ObjectKey, Sha256, UploadId};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {key} not found in the store")]
    NotFound { key: String },
    #[error("object store {store}, {op} {key}: {source}")]
    Backend {
        op: &'static str,
        /// The store's URL (`file:///…`, `s3://bucket/prefix`).
        store: String,
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("local file {path}: {source}")]
    Local {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open object store {url}: {message}")]
    Open { url: String, message: String },
}

impl StoreError {
    /// Worth retrying: the backend or disk may recover; a missing object will not.
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::NotFound { .. } | Self::Open { .. })
    }
}

/// Size and digest of bytes that went through a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digested {
    pub size: u64,
    pub sha256: Sha256,
}

/// Chunk size for streaming copies and multipart writes.
const CHUNK: usize = 8 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    /// The URL this store was opened from (`file:///…` or `s3://…`).
    url: String,
}

impl Store {
    /// Opens `spec`: a local directory (created if missing), a `file://` URL, or, when
    /// built with the `s3` feature, an `s3://bucket/prefix` URL (credentials from the
    /// usual AWS_* environment variables).
    pub fn open(spec: &str) -> Result<Self, StoreError> {
        Self::open_with(spec, std::env::vars())
    }

    /// [`Store::open`] with the remote store's settings given (`AWS_ENDPOINT`,
    /// `AWS_ACCESS_KEY_ID`, …; names as in the environment, any case) instead of read
    /// from the environment. Local stores ignore them.
    pub fn open_with<K: AsRef<str>, V: Into<String>>(
        spec: &str,
        #[cfg_attr(not(feature = "s3"), allow(unused_variables))] options: impl IntoIterator<
            Item = (K, V),
        >,
    ) -> Result<Self, StoreError> {
        let open_err = |message: String| StoreError::Open {
            url: spec.to_owned(),
            message,
        };
        if let Some(rest) = spec.strip_prefix("file://") {
            return Self::local(Path::new(rest));
        }
        if spec.contains("://") {
            #[cfg(feature = "s3")]
            {
                let url = url::Url::parse(spec).map_err(|e| open_err(e.to_string()))?;
                let (store, prefix) = object_store::parse_url_opts(&url, options)
                    .map_err(|e| open_err(e.to_string()))?;
                let store: Arc<dyn ObjectStore> = if prefix.as_ref().is_empty() {
                    Arc::from(store)
                } else {
                    Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
                };
                return Ok(Self {
                    inner: store,
                    url: spec.trim_end_matches('/').to_owned(),
                });
            }
            #[cfg(not(feature = "s3"))]
            return Err(open_err(
                "this weir was built without remote stores; rebuild with `--features s3`".into(),
            ));
        }
        Self::local(Path::new(spec))
    }

    pub fn local(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Local {
            path: dir.display().to_string(),
            source,
        })?;
        let dir = dir.canonicalize().map_err(|source| StoreError::Local {
            path: dir.display().to_string(),
            source,
        })?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(&dir).map_err(|e| {
            StoreError::Open {
                url: dir.display().to_string(),
                message: e.to_string(),
            }
        })?;
        Ok(Self {
            // No automatic clean-up of empty directories: it races with a concurrent
            // upload creating its parts under the same parent and fails that write.
            inner: Arc::new(fs),
            url: format!("file://{}", dir.display()),
        })
    }

    /// The object store itself, for readers that speak `object_store` (the query
    /// engine reads datasets' Parquet files through it).
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.inner.clone()
    }

    /// The URL the store was opened from; other processes open the same store with it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where `key` lives, as a URL (`file:///data/objects/datasets/…`). Takes the key
    /// as text because read models store it as text (it was built by [`ObjectKey`]).
    pub fn location(&self, key: &str) -> String {
        format!("{}/{}", self.url, key.trim_start_matches('/'))
    }

    fn path(key: &ObjectKey) -> StorePath {
        StorePath::from(key.as_str())
    }

    fn backend(
        &self,
        op: &'static str,
        key: &ObjectKey,
        source: object_store::Error,
    ) -> StoreError {
        match source {
            // A write cannot miss its object: a 404 there is a missing bucket (or
            // prefix), which the source names.
            object_store::Error::NotFound { .. }
                if !matches!(op, "put" | "create" | "write" | "finish") =>
            {
                StoreError::NotFound {
                    key: key.to_string(),
                }
            }
            source => StoreError::Backend {
                op,
                store: self.url.clone(),
                key: key.to_string(),
                source,
            },
        }
    }

    pub async fn put_bytes(&self, key: &ObjectKey, bytes: Bytes) -> Result<(), StoreError> {
        self.inner
            .put(&Self::path(key), PutPayload::from(bytes))
            .await
            .map_err(|e| self.backend("put", key, e))?;
        Ok(())
    }

    /// Whether objects written to this store get their digest recorded
    /// ([`Store::digest_as_written`]): a local store on a file system that keeps user
    /// extended attributes. Without it the combiner reads every one-part upload again
    /// to verify it. `None` for a remote store (objects are read to be verified there).
    pub async fn records_digests(&self) -> Option<bool> {
        let root = self.local_root()?.to_path_buf();
        let probe = tokio::task::spawn_blocking(move || {
            let path = staged_path(&root.join(".digest-probe"));
            let recorded = std::fs::File::create(&path).ok().map(|file| {
                let empty = Digested {
                    size: 0,
                    sha256: Sha256(Hasher::digest(b"").into()),
                };
                record_digest(&file, &empty);
                drop(file);
                recorded_digest(&path) == Some(empty)
            });
            let _ = std::fs::remove_file(&path);
            recorded
        });
        probe.await.ok().flatten()
    }

    /// Writes, reads back and deletes a small object: the store works end to end.
    pub async fn probe(&self) -> Result<(), StoreError> {
        let key = ObjectKey::probe(weir_events::UploadId::new());
        let bytes = Bytes::from_static(b"weir doctor probe");
        self.put_bytes(&key, bytes.clone()).await?;
        let size = self.exists(&key).await?;
        self.delete(&key).await?;
        if size != Some(bytes.len() as u64) {
            return Err(StoreError::Open {
                url: self.url.clone(),
                message: format!(
                    "the probe object {key} read back as {size:?} bytes, not {}",
                    bytes.len()
                ),
            });
        }
        Ok(())
    }

    pub async fn exists(&self, key: &ObjectKey) -> Result<Option<u64>, StoreError> {
        match self.inner.head(&Self::path(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.backend("head", key, e)),
        }
    }

    /// Deletes `key`; deleting what is already gone succeeds (idempotent).
    pub async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        match self.inner.delete(&Self::path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.backend("delete", key, e)),
        }
    }

    /// Moves `from` to `to` (atomic on the local store), replacing `to`.
    pub async fn rename(&self, from: &ObjectKey, to: &ObjectKey) -> Result<(), StoreError> {
        self.inner
            .rename(&Self::path(from), &Self::path(to))
            .await
            .map_err(|e| self.backend("rename", from, e))
    }

    /// Streams the objects in `keys` one after another into a new object at `to`,
    /// hashing as it goes; calls `each` with every source's own size and digest.
    /// Memory holds one chunk at a time whatever the sizes. On a local store the
    /// kernel copies the files and the result is hashed as read back (as in
    /// [`Store::put_file`]).
    pub async fn concat(
        &self,
        keys: &[ObjectKey],
        to: &ObjectKey,
        mut each: impl FnMut(usize, Digested),
    ) -> Result<Digested, StoreError> {
        if let (Some(to_path), Some(sources)) = (
            self.local_file(to),
            keys.iter()
                .map(|k| self.local_file(k))
                .collect::<Option<Vec<_>>>(),
        ) {
            let keys = keys.to_vec();
            let (parts, total) =
                tokio::task::spawn_blocking(move || concat_local(&keys, &sources, &to_path))
                    .await
                    .map_err(|e| StoreError::Local {
                        path: to.to_string(),
                        source: std::io::Error::other(e),
                    })??;
            for (i, part) in parts.into_iter().enumerate() {
                each(i, part);
            }
            return Ok(total);
        }
        let upload = self
            .inner
            .put_multipart(&Self::path(to))
            .await
            .map_err(|e| self.backend("create", to, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, CHUNK);
        let mut total = Hasher::new();
        let mut total_size = 0u64;
        for (i, key) in keys.iter().enumerate() {
            let got = match self.inner.get(&Self::path(key)).await {
                Ok(g) => g,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(self.backend("get", key, e));
                }
            };
            let mut part = Hasher::new();
            let mut size = 0u64;
            let mut stream = got.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = writer.abort().await;
                        return Err(self.backend("read", key, e));
                    }
                };
                part.update(&chunk);
                total.update(&chunk);
                size += chunk.len() as u64;
                writer
                    .wait_for_capacity(2)
                    .await
                    .map_err(|e| self.backend("write", to, e))?;
                writer.put(chunk);
            }
            total_size += size;
            each(
                i,
                Digested {
                    size,
                    sha256: Sha256(part.finalize().into()),
                },
            );
        }
        writer
            .finish()
            .await
            .map_err(|e| self.backend("finish", to, e))?;
        Ok(Digested {
            size: total_size,
            sha256: Sha256(total.finalize().into()),
        })
    }

    /// Streams an object into a local file.
    pub async fn download(&self, key: &ObjectKey, to: &Path) -> Result<u64, StoreError> {
        let local = |source| StoreError::Local {
            path: to.display().to_string(),
            source,
        };
        let got = self
            .inner
            .get(&Self::path(key))
            .await
            .map_err(|e| self.backend("get", key, e))?;
        let mut file = tokio::fs::File::create(to).await.map_err(local)?;
        let mut stream = got.into_stream();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.backend("read", key, e))?;
            size += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(local)?;
        }
        file.flush().await.map_err(local)?;
        Ok(size)
    }

    /// Streams a local file into an object (the whole file: [`Store::put_file`]).
    pub async fn upload_file(&self, from: &Path, key: &ObjectKey) -> Result<Digested, StoreError> {
        let len = tokio::fs::metadata(from)
            .await
            .map_err(|source| StoreError::Local {
                path: from.display().to_string(),
                source,
            })?
            .len();
        self.put_file(from, 0..len, key).await
    }

    /// Where `key` lives on disk, for a local store.
    fn local_file(&self, key: &ObjectKey) -> Option<PathBuf> {
        self.local_root().map(|root| root.join(key.as_str()))
    }

    /// Writes bytes `range` of the local file `from` into a new object at `key`,
    /// hashing them while they are written (one read of the file). Memory holds two
    /// chunks at a time whatever the size. On a local store the object appears whole
    /// or not at all (written beside it, then renamed).
    pub async fn put_file(
        &self,
        from: &Path,
        range: std::ops::Range<u64>,
        key: &ObjectKey,
    ) -> Result<Digested, StoreError> {
        self.put_file_counted(from, range, key, &Arc::default())
            .await
    }

    /// [`Store::put_file`], adding the bytes written so far to `written` as it goes
    /// (for a progress bar while a large part is written).
    pub async fn put_file_counted(
        &self,
        from: &Path,
        range: std::ops::Range<u64>,
        key: &ObjectKey,
        written: &Arc<std::sync::atomic::AtomicU64>,
    ) -> Result<Digested, StoreError> {
        if let Some(to) = self.local_file(key) {
            let source = from.to_path_buf();
            let counter = written.clone();
            return tokio::task::spawn_blocking(move || -> Result<Digested, StoreError> {
                copy_hashing(&source, range, &to, &counter).map_err(local_error(&to))
            })
            .await
            .map_err(|e| StoreError::Local {
                path: from.display().to_string(),
                source: std::io::Error::other(e),
            })?;
        }
        // Remote: stream it up in chunks, hashing as it goes.
        let mut file = tokio::fs::File::open(from)
            .await
            .map_err(local_error(from))?;
        tokio::io::AsyncSeekExt::seek(&mut file, std::io::SeekFrom::Start(range.start))
            .await
            .map_err(local_error(from))?;
        let mut file = file.take(range.end.saturating_sub(range.start));
        let upload = self
            .inner
            .put_multipart(&Self::path(key))
            .await
            .map_err(|e| self.backend("create", key, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, CHUNK);
        let mut hasher = Hasher::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; 1024 * 1024];
        loop {
            let n = file.read(&mut buf).await.map_err(local_error(from))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
            writer
                .wait_for_capacity(2)
                .await
                .map_err(|e| self.backend("write", key, e))?;
            writer.write(&buf[..n]);
            written.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        }
        writer
            .finish()
            .await
            .map_err(|e| self.backend("finish", key, e))?;
        Ok(Digested {
            size,
            sha256: Sha256(hasher.finalize().into()),
        })
    }

    /// Size and sha256 of the object at `key`, read once and nowhere copied.
    pub async fn digest(&self, key: &ObjectKey) -> Result<Digested, StoreError> {
        self.read_digest(key, false).await
    }

    /// [`Store::digest`], and on a local store the digest is recorded on the file as
    /// [`Store::put_file`] records it (when the file's size and modification time did
    /// not change while it was read), so that [`Store::digest_as_written`] need not read
    /// it again. For an object weir did not write itself (a file put in the store by
    /// other means), read once where it is taken in.
    pub async fn digest_and_record(&self, key: &ObjectKey) -> Result<Digested, StoreError> {
        self.read_digest(key, true).await
    }

    /// Reads and hashes the object at `key`; `record`: see [`Store::digest_and_record`].
    async fn read_digest(&self, key: &ObjectKey, record: bool) -> Result<Digested, StoreError> {
        if let Some(path) = self.local_file(key) {
            let shown = key.to_string();
            return tokio::task::spawn_blocking(move || {
                let local = |source| StoreError::Local {
                    path: path.display().to_string(),
                    source,
                };
                let file = open_object(&path, shown)?;
                if !record {
                    return hash_reader(&file).map_err(local);
                }
                let before = file.metadata().map_err(local)?;
                let digested = hash_reader(&file).map_err(local)?;
                let after = file.metadata().map_err(local)?;
                if before.len() == after.len() && before.modified().ok() == after.modified().ok() {
                    record_digest(&file, &digested);
                }
                Ok(digested)
            })
            .await
            .map_err(|e| StoreError::Local {
                path: key.to_string(),
                source: std::io::Error::other(e),
            })?;
        }
        let got = self
            .inner
            .get(&Self::path(key))
            .await
            .map_err(|e| self.backend("get", key, e))?;
        let mut stream = got.into_stream();
        let mut hasher = Hasher::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.backend("read", key, e))?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
        }
        Ok(Digested {
            size,
            sha256: Sha256(hasher.finalize().into()),
        })
    }

    /// Size and sha256 of the object at `key` as weir wrote it: on a local store, the
    /// digest [`Store::put_file`] recorded beside the bytes it hashed while writing them
    /// (an extended attribute of the file), trusted only while the file's size and
    /// modification time are still those it had then; otherwise, and on a remote store,
    /// the object is read and hashed like [`Store::digest`]. A gigabyte checked this way
    /// is not read again. What the recorded digest cannot see is a change that keeps
    /// both the size and the modification time: someone with write access to the store
    /// resetting the time on purpose (who could as well change the object after any
    /// check), or rewriting the file within the file clock's tick of weir's write (a
    /// few ms on kernels without multigrain timestamps; parts are not written twice).
    pub async fn digest_as_written(&self, key: &ObjectKey) -> Result<Digested, StoreError> {
        if let Some(path) = self.local_file(key) {
            let recorded = tokio::task::spawn_blocking(move || recorded_digest(&path))
                .await
                .map_err(|e| StoreError::Local {
                    path: key.to_string(),
                    source: std::io::Error::other(e),
                })?;
            if let Some(digested) = recorded {
                return Ok(digested);
            }
        }
        self.digest(key).await
    }

    /// [`Store::digest_as_written`] of `key`, then, when `accept` takes the digest and
    /// names a key for it, [`Store::link_if_absent`] of the object to that key (whether
    /// it linked is the last field). On a local store both run in one blocking call: a
    /// small upload's combine step costs less than each hand-over would. `Ok(Err(e))`:
    /// `accept` refused the digest and nothing was linked.
    pub async fn digest_then_link<E: Send + 'static>(
        &self,
        key: &ObjectKey,
        accept: impl FnOnce(&Digested) -> Result<ObjectKey, E> + Send + 'static,
    ) -> Result<Result<(Digested, ObjectKey, bool), E>, StoreError> {
        let Some(root) = self.local_root() else {
            let got = self.digest_as_written(key).await?;
            let to = match accept(&got) {
                Ok(to) => to,
                Err(e) => return Ok(Err(e)),
            };
            let linked = self.link_if_absent(key, &to).await?;
            return Ok(Ok((got, to, linked)));
        };
        let shown = key.to_string();
        let path = root.join(key.as_str());
        tokio::task::spawn_blocking(move || {
            let got = match recorded_digest(&path) {
                Some(got) => got,
                None => hash_reader(&open_object(&path, shown)?).map_err(local_error(&path))?,
            };
            let to = match accept(&got) {
                Ok(to) => to,
                Err(e) => return Ok(Err(e)),
            };
            let target = root.join(to.as_str());
            let linked = match std::fs::hard_link(&path, &target) {
                Ok(()) => true,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    ensure_parent(&target).map_err(local_error(&target))?;
                    match std::fs::hard_link(&path, &target) {
                        Ok(()) => true,
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
                        Err(e) => return Err(local_error(&target)(e)),
                    }
                }
                Err(e) => return Err(local_error(&target)(e)),
            };
            Ok(Ok((got, to, linked)))
        })
        .await
        .map_err(|e| StoreError::Local {
            path: key.to_string(),
            source: std::io::Error::other(e),
        })?
    }

    /// Makes the object at `from` also available at `to` unless `to` exists; returns
    /// whether it did. No bytes move on a local store (a hard link: both names share
    /// the immutable file) nor on S3 (a server-side copy).
    pub async fn link_if_absent(
        &self,
        from: &ObjectKey,
        to: &ObjectKey,
    ) -> Result<bool, StoreError> {
        match self
            .inner
            .copy_if_not_exists(&Self::path(from), &Self::path(to))
            .await
        {
            Ok(()) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            // S3 without `AWS_COPY_IF_NOT_EXISTS` answers NotSupported.
            Err(
                object_store::Error::NotImplemented { .. }
                | object_store::Error::NotSupported { .. },
            ) => {
                if self.exists(to).await?.is_some() {
                    return Ok(false);
                }
                self.inner
                    .copy(&Self::path(from), &Self::path(to))
                    .await
                    .map_err(|e| self.backend("copy", from, e))?;
                Ok(true)
            }
            Err(e) => Err(self.backend("copy", from, e)),
        }
    }

    /// A file to write `key`'s bytes into before [`Store::put_moved`], beside where the
    /// object will be on a local store (so the move is a rename in one directory and no
    /// scratch directory is made); `None` for a remote store.
    pub async fn staging_file(&self, key: &ObjectKey) -> Result<Option<PathBuf>, StoreError> {
        let Some(staged) = self.staging_path(key) else {
            return Ok(None);
        };
        tokio::task::spawn_blocking(move || {
            ensure_parent(&staged).map_err(|source| StoreError::Local {
                path: staged.display().to_string(),
                source,
            })?;
            Ok(Some(staged))
        })
        .await
        .map_err(|e| StoreError::Local {
            path: key.to_string(),
            source: std::io::Error::other(e),
        })?
    }

    /// [`Store::staging_file`] without making its folder: for a step that does its file
    /// work in one blocking call (small files pay more for each hand-over to a blocking
    /// thread than for the work), which makes it with [`ensure_parent`] there.
    pub fn staging_path(&self, key: &ObjectKey) -> Option<PathBuf> {
        self.local_file(key).map(|to| staged_path(&to))
    }

    /// Stores the local file `from` (which this call consumes) at `key`: moved into
    /// place when the store is a local directory on the same file system, else
    /// streamed up. Returns its size.
    pub async fn put_moved(&self, from: &Path, key: &ObjectKey) -> Result<u64, StoreError> {
        if self.local_root().is_some() {
            let (store, from_owned, to) = (self.clone(), from.to_path_buf(), key.clone());
            let moved = tokio::task::spawn_blocking(move || store.move_in(&from_owned, &to))
                .await
                .map_err(|e| StoreError::Local {
                    path: from.display().to_string(),
                    source: std::io::Error::other(e),
                })?
                .map_err(|source| StoreError::Local {
                    path: from.display().to_string(),
                    source,
                })?;
            if let Some(size) = moved {
                return Ok(size);
            }
        }
        let written = self.upload_file(from, key).await?;
        let _ = tokio::fs::remove_file(from).await;
        Ok(written.size)
    }

    /// The local half of [`Store::put_moved`], blocking: renames `from` to `key`'s file
    /// and returns its size; `None` when the store is remote or the rename cannot be
    /// done (another file system), where the caller streams it up instead.
    pub fn move_in(&self, from: &Path, key: &ObjectKey) -> std::io::Result<Option<u64>> {
        let Some(to) = self.local_file(key) else {
            return Ok(None);
        };
        let size = std::fs::metadata(from)?.len();
        ensure_parent(&to)?;
        match std::fs::rename(from, &to) {
            Ok(()) => Ok(Some(size)),
            // Another file system (EXDEV) and the like: copy instead.
            Err(_) => Ok(None),
        }
    }

    /// The parts of `upload` that are in the store, in either layout (flat, or in the
    /// upload's folder: see `PartLayout`). Parts lie flat, so this lists all of
    /// `uploads/`: it is for aborts, not for a step's hot path.
    pub async fn list_parts(&self, upload: UploadId) -> Result<Vec<ObjectKey>, StoreError> {
        Ok(self
            .list("uploads/")
            .await?
            .into_iter()
            .map(ObjectKey::from_stored)
            .filter(|k| k.part_number(upload).is_some())
            .collect())
    }

    /// Keys under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .list_modified(prefix)
            .await?
            .into_iter()
            .map(|(key, _)| key)
            .collect())
    }

    /// The keys under `prefix` with the time each was last written.
    pub async fn list_modified(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, weir_events::Timestamp)>, StoreError> {
        let prefix = StorePath::from(prefix);
        let mut out = Vec::new();
        let mut stream = self.inner.list(Some(&prefix));
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(|e| StoreError::Backend {
                op: "list",
                store: self.url.clone(),
                key: prefix.to_string(),
                source: e,
            })?;
            out.push((
                key_of(&meta.location),
                weir_events::Timestamp(meta.last_modified.timestamp_micros()),
            ));
        }
        Ok(out)
    }

    /// The local directory behind a `file://` store.
    pub fn local_root(&self) -> Option<PathBuf> {
        self.url.strip_prefix("file://").map(PathBuf::from)
    }
}

/// The key a listed location stands for. A listing percent-encodes what a path part
/// may not hold as it is (`#` in the name of a write's staging sibling becomes `%23`);
/// [`Store`] builds paths from keys with that encoding, so the key is the decoded form.
fn key_of(location: &StorePath) -> String {
    percent_encoding::percent_decode_str(location.as_ref())
        .decode_utf8_lossy()
        .into_owned()
}

/// Chunk of a local read: bytes are read on one thread and hashed on another, so a
/// large object costs about one pass of whichever is slower.
const LOCAL_CHUNK: usize = 4 * 1024 * 1024;

/// Opens the local file of the object `key`: `NotFound` names the key when it is
/// missing, any other error the file.
fn open_object(path: &Path, key: impl std::fmt::Display) -> Result<std::fs::File, StoreError> {
    std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => StoreError::NotFound {
            key: key.to_string(),
        },
        _ => local_error(path)(e),
    })
}

/// A maker of [`StoreError::Local`] for an I/O error on `path`, for `map_err`.
fn local_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + use<> {
    let path = path.display().to_string();
    move |source| StoreError::Local { path, source }
}

/// A sibling of `to` to write into before the rename: unique (the pid, then a counter
/// of fixed width), never an object key, and left out of listings like the store's
/// own staged files (`#` and digits only).
/// Makes the folder `path` goes in unless it is there (one `stat` when it is).
pub fn ensure_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => std::fs::create_dir_all(dir),
        _ => Ok(()),
    }
}

fn staged_path(to: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = to.as_os_str().to_owned();
    name.push(format!("#{}{n:012}", std::process::id()));
    PathBuf::from(name)
}

/// The extended attribute holding the digest of a local object weir wrote:
/// `<size> <modification time, ns since the epoch> <sha256 hex>`.
#[cfg(target_os = "linux")]
const DIGEST_XATTR: &std::ffi::CStr = c"user.weir.digest";

#[cfg(target_os = "linux")]
fn modified_ns(meta: &std::fs::Metadata) -> Option<u128> {
    let modified = meta.modified().ok()?;
    Some(
        modified
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_nanos(),
    )
}

/// Records `digested`, the digest of everything just written to `file`, on the file
/// with its size and modification time (see [`Store::digest_as_written`]). Where the
/// file system keeps no user extended attributes nothing is recorded, and the object
/// is read again when it is checked.
fn record_digest(file: &std::fs::File, digested: &Digested) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let Ok(meta) = file.metadata() else { return };
        // A file that is not (or no longer) the bytes hashed gets no record.
        let Some(modified) = modified_ns(&meta).filter(|_| meta.len() == digested.size) else {
            return;
        };
        let value = format!("{} {modified} {}", digested.size, digested.sha256);
        // SAFETY: the descriptor is open for the call; name and value are valid for
        // their lengths (the name is NUL-terminated).
        let rc = unsafe {
            libc::fsetxattr(
                file.as_raw_fd(),
                DIGEST_XATTR.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        if rc != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "the object's digest was not recorded; it will be read to be checked"
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, digested);
}

/// The digest [`record_digest`] left on the file at `path`, if the file still has the
/// size and modification time it had then.
fn recorded_digest(path: &Path) -> Option<Digested> {
    recorded_digest_of(&std::fs::File::open(path).ok()?)
}

/// [`recorded_digest`] of a file already open.
fn recorded_digest_of(file: &std::fs::File) -> Option<Digested> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let mut buf = [0u8; 128];
        // SAFETY: the descriptor is open for the call; `buf` is writable for its length.
        let n = unsafe {
            libc::fgetxattr(
                file.as_raw_fd(),
                DIGEST_XATTR.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        let text = std::str::from_utf8(buf.get(..usize::try_from(n).ok()?)?).ok()?;
        let mut fields = text.split(' ');
        let size: u64 = fields.next()?.parse().ok()?;
        let modified: u128 = fields.next()?.parse().ok()?;
        let sha256: Sha256 = fields.next()?.parse().ok()?;
        let meta = file.metadata().ok()?;
        (meta.len() == size && modified_ns(&meta)? == modified).then_some(Digested { size, sha256 })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        None
    }
}

/// Hashes everything `read` yields; with more than one chunk, hashing runs on its own
/// thread while the next chunk is read.
fn hash_reader(mut read: impl std::io::Read) -> std::io::Result<Digested> {
    pipe_hashing(&mut read, |_| Ok(()))
}

/// Copies `range` of `from` into a new file at `to` (through [`write_staged`]),
/// hashing on the way.
///
/// An object of one chunk or less is read into memory, hashed and written here. A
/// larger one is copied by the kernel, a chunk at a time (`std::io::copy` between two
/// files is `copy_file_range` on Linux, and falls back to reading and writing where the
/// file systems do not allow it), while another thread hashes each chunk read back
/// from the new file. The bytes never pass through this process on their way to the
/// store, which on a VM is several times faster than reading and writing them
/// (BENCHMARKS.md, "Pipeline", round 12); reading back from the page cache is cheap,
/// and the digest is of what the object holds even if the source changed meanwhile.
fn copy_hashing(
    from: &Path,
    range: std::ops::Range<u64>,
    to: &Path,
    written: &std::sync::atomic::AtomicU64,
) -> std::io::Result<Digested> {
    use std::io::{Read, Seek, Write};
    let len = range.end.saturating_sub(range.start);
    let mut src = std::fs::File::open(from)?;
    src.seek(std::io::SeekFrom::Start(range.start))?;
    let mut src = src.take(len);
    let ((), digested) = write_staged(to, |dst, staged| {
        let digested = if len <= LOCAL_CHUNK as u64 {
            pipe_hashing(&mut src, |chunk| {
                dst.write_all(chunk)?;
                written.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            })?
        } else {
            let written_back = std::fs::File::open(staged)?;
            copy_then_hash(&mut [src], &[false], dst, written_back, written)?.1
        };
        Ok(((), digested))
    })?;
    Ok(digested)
}

/// Makes a new file at `to` the way every local write does: `write` fills a staged
/// sibling (given the open file and its path) and returns the digest of what it wrote,
/// which is recorded on the file before it is renamed into place. On any error the
/// staged file is removed and `to` is untouched.
fn write_staged<T>(
    to: &Path,
    write: impl FnOnce(&mut std::fs::File, &Path) -> std::io::Result<(T, Digested)>,
) -> std::io::Result<(T, Digested)> {
    let staged = staged_path(to);
    let written = (|| {
        ensure_parent(to)?;
        let mut dst = std::fs::File::create(&staged)?;
        let (out, digested) = write(&mut dst, &staged)?;
        record_digest(&dst, &digested);
        drop(dst);
        std::fs::rename(&staged, to)?;
        Ok((out, digested))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&staged);
    }
    written
}

/// The local store's [`Store::concat`]: the files `sources` (the objects `keys`) one
/// after another into a new file at `to` (written beside it, then renamed), by the
/// kernel where it can; returns each source's size and digest and the whole's. A
/// missing source is `NotFound`, before anything is written.
fn concat_local(
    keys: &[ObjectKey],
    sources: &[PathBuf],
    to: &Path,
) -> Result<(Vec<Digested>, Digested), StoreError> {
    let mut files = keys
        .iter()
        .zip(sources)
        .map(|(key, path)| open_object(path, key))
        .collect::<Result<Vec<_>, _>>()?;
    // A part weir wrote carries the digest it had then (`Store::digest_as_written`):
    // that part is not hashed again, only the whole is. Its record is read again after
    // the copy, from the same open file (the very file copied), so a part changed
    // meanwhile fails the step (to be retried) instead of passing under its old digest.
    let recorded: Vec<Option<Digested>> = files.iter().map(recorded_digest_of).collect();
    let hash_each: Vec<bool> = recorded.iter().map(Option::is_none).collect();
    write_staged(to, |dst, staged| {
        let written_back = std::fs::File::open(staged)?;
        let (copied, whole) = copy_then_hash(
            &mut files,
            &hash_each,
            dst,
            written_back,
            &std::sync::atomic::AtomicU64::new(0),
        )?;
        let mut parts = Vec::with_capacity(copied.len());
        let checked = copied
            .into_iter()
            .zip(&recorded)
            .zip(files.iter().zip(sources));
        for (((size, sha256), record), (file, path)) in checked {
            parts.push(match (sha256, record) {
                (Some(sha256), _) => Digested { size, sha256 },
                (None, Some(record))
                    if record.size == size && recorded_digest_of(file).as_ref() == Some(record) =>
                {
                    *record
                }
                (None, _) => {
                    return Err(std::io::Error::other(format!(
                        "{} changed while it was being concatenated",
                        path.display()
                    )));
                }
            });
        }
        Ok((parts, whole))
    })
    .map_err(local_error(to))
}

/// What the copying thread tells the hashing one.
enum Copied {
    /// This many more bytes of the current source are in the file.
    Chunk(u64),
    /// The current source ended.
    End,
}

/// Copies each of `sources` to its end into `dst`, one after the other, in chunks, each
/// by `std::io::copy` (the kernel, where it can), while another thread reads each chunk
/// back through `written_back` (the same file, opened for reading) and hashes it.
/// Returns each source's size, with its own digest where `hash_each` asks for it (a
/// source not asked for costs no second hash), and the whole's size and digest.
fn copy_then_hash<R: std::io::Read>(
    sources: &mut [R],
    hash_each: &[bool],
    dst: &mut std::fs::File,
    mut written_back: std::fs::File,
    written: &std::sync::atomic::AtomicU64,
) -> std::io::Result<(Vec<(u64, Option<Sha256>)>, Digested)> {
    use std::io::Read;
    std::thread::scope(|scope| {
        // A few chunks may wait to be hashed.
        let (copied_tx, copied_rx) = std::sync::mpsc::sync_channel::<Copied>(4);
        let hasher = scope.spawn(move || -> std::io::Result<_> {
            let (mut whole, mut whole_size) = (Hasher::new(), 0u64);
            let (mut part, mut part_size) = (Hasher::new(), 0u64);
            let mut parts = Vec::with_capacity(hash_each.len());
            let mut buf = vec![0u8; LOCAL_CHUNK];
            for copied in copied_rx {
                let hash_this = hash_each.get(parts.len()).copied().unwrap_or(false);
                match copied {
                    Copied::Chunk(n) => {
                        // A chunk is at most LOCAL_CHUNK bytes (see the copy below).
                        let chunk = &mut buf[..n as usize];
                        written_back.read_exact(chunk)?;
                        whole.update(&*chunk);
                        whole_size += n;
                        part_size += n;
                        if hash_this {
                            part.update(&*chunk);
                        }
                    }
                    Copied::End => {
                        let digest = std::mem::take(&mut part).finalize();
                        let size = std::mem::take(&mut part_size);
                        parts.push((size, hash_this.then(|| Sha256(digest.into()))));
                    }
                }
            }
            let whole = Digested {
                size: whole_size,
                sha256: Sha256(whole.finalize().into()),
            };
            Ok((parts, whole))
        });
        let copied = 'copy: {
            for src in sources.iter_mut() {
                loop {
                    match std::io::copy(&mut src.by_ref().take(LOCAL_CHUNK as u64), dst) {
                        Ok(0) => break,
                        Ok(n) => {
                            written.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                            if copied_tx.send(Copied::Chunk(n)).is_err() {
                                // The hasher stopped on an error, reported below.
                                break 'copy Ok(());
                            }
                        }
                        Err(e) => break 'copy Err(e),
                    }
                }
                if copied_tx.send(Copied::End).is_err() {
                    break 'copy Ok(());
                }
            }
            Ok(())
        };
        drop(copied_tx);
        let digested = hasher
            .join()
            .map_err(|_| std::io::Error::other("the hashing thread panicked"))?;
        copied.and(digested)
    })
}

/// Reads `src` to its end in chunks, giving each to `sink` while another thread
/// hashes it (only when there is more than one chunk: a small object is hashed here,
/// without a thread). Three chunk buffers go round between the two threads.
fn pipe_hashing(
    src: &mut impl std::io::Read,
    mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<Digested> {
    let read_chunk = |src: &mut dyn std::io::Read, buf: &mut Vec<u8>| -> std::io::Result<()> {
        buf.clear();
        std::io::Read::read_to_end(&mut std::io::Read::take(src, LOCAL_CHUNK as u64), buf)?;
        Ok(())
    };
    let mut first = Vec::with_capacity(LOCAL_CHUNK);
    read_chunk(src, &mut first)?;
    if first.len() < LOCAL_CHUNK {
        sink(&first)?;
        return Ok(Digested {
            size: first.len() as u64,
            sha256: Sha256(Hasher::digest(&first).into()),
        });
    }
    std::thread::scope(|scope| {
        let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(3);
        let (free_tx, free_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(3);
        for _ in 0..2 {
            let _ = free_tx.send(Vec::with_capacity(LOCAL_CHUNK));
        }
        let hasher = scope.spawn(move || {
            let mut hasher = Hasher::new();
            let mut size = 0u64;
            for chunk in full_rx {
                hasher.update(&chunk);
                size += chunk.len() as u64;
                let _ = free_tx.send(chunk);
            }
            Digested {
                size,
                sha256: Sha256(hasher.finalize().into()),
            }
        });
        let mut chunk = first;
        let fed = loop {
            if chunk.is_empty() {
                break Ok(());
            }
            if let Err(e) = sink(&chunk) {
                break Err(e);
            }
            if full_tx.send(chunk).is_err() {
                break Err(std::io::Error::other("the hashing thread stopped"));
            }
            chunk = match free_rx.recv() {
                Ok(c) => c,
                Err(_) => break Err(std::io::Error::other("the hashing thread stopped")),
            };
            if let Err(e) = read_chunk(src, &mut chunk) {
                break Err(e);
            }
        };
        drop(full_tx);
        let digested = hasher
            .join()
            .map_err(|_| std::io::Error::other("the hashing thread panicked"))?;
        fed.map(|()| digested)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_listed_location_decodes_to_the_key_it_was_written_under() {
        for key in [
            "datasets/data_1/v1/data.parquet",
            "datasets/data_1/v1/data.parquet#4242000000000001",
            "uploads/u/parts/00001 copy%",
            "uploads/upld_x.00001",
        ] {
            let path = super::StorePath::from(key);
            assert_eq!(super::key_of(&path), key, "{path}");
        }
    }

    use sha2::{Digest, Sha256 as Hasher};
    use weir_events::{ObjectKey, Sha256, UploadId};

    use super::{LOCAL_CHUNK, Store};

    fn sha(bytes: &[u8]) -> Sha256 {
        Sha256(Hasher::digest(bytes).into())
    }

    /// Sizes around the chunk size: one chunk hashed inline, several on a thread.
    fn bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[tokio::test]
    async fn a_file_range_is_stored_with_its_digest_and_reads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(&dir.path().join("objects")).unwrap();
        let upload = UploadId::new();
        // Up to one chunk: read, hashed and written in memory; above: copied by the
        // kernel and hashed as read back, a last chunk of one byte included.
        for (n, len) in [
            0,
            1,
            5_000,
            LOCAL_CHUNK,
            LOCAL_CHUNK + 1,
            2 * LOCAL_CHUNK + 17,
        ]
        .into_iter()
        .enumerate()
        {
            let data = bytes(len + 10);
            let file = dir.path().join(format!("in{n}"));
            std::fs::write(&file, &data).unwrap();
            let key = ObjectKey::part(upload, n as u32 + 1);
            let written = std::sync::Arc::default();
            // Skip the first ten bytes: parts are ranges of the file.
            let got = store
                .put_file_counted(&file, 10..(len as u64 + 10), &key, &written)
                .await
                .unwrap();
            assert_eq!(got.size, len as u64, "{len}");
            assert_eq!(
                written.load(std::sync::atomic::Ordering::Relaxed),
                len as u64,
                "progress counts every byte once: {len}"
            );
            assert_eq!(got.sha256, sha(&data[10..]), "{len}");
            assert_eq!(store.digest(&key).await.unwrap(), got, "{len}");
            let on_disk = std::fs::read(store.local_root().unwrap().join(key.as_str())).unwrap();
            assert_eq!(on_disk, &data[10..], "{len}");
        }
    }

    #[tokio::test]
    async fn concatenated_parts_give_each_digest_and_the_whole_and_a_missing_one_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(&dir.path().join("objects")).unwrap();
        let upload = UploadId::new();
        // An empty part, one over a chunk (two copies of it), a small one.
        let datas = [bytes(0), bytes(LOCAL_CHUNK + 3), bytes(5)];
        let mut keys = Vec::new();
        for (n, data) in datas.iter().enumerate() {
            let key = ObjectKey::part(upload, n as u32 + 1);
            store.put_bytes(&key, data.clone().into()).await.unwrap();
            keys.push(key);
        }
        let to = ObjectKey::part(upload, 9);
        let mut seen = Vec::new();
        let total = store
            .concat(&keys, &to, |i, d| seen.push((i, d)))
            .await
            .unwrap();
        let whole = datas.concat();
        assert_eq!(total.size, whole.len() as u64);
        assert_eq!(total.sha256, sha(&whole));
        assert_eq!(seen.len(), datas.len());
        for ((i, got), data) in seen.iter().zip(&datas) {
            assert_eq!(got.size, data.len() as u64, "part {i}");
            assert_eq!(got.sha256, sha(data), "part {i}");
        }
        let root = store.local_root().unwrap();
        assert_eq!(std::fs::read(root.join(to.as_str())).unwrap(), whole);
        assert_eq!(store.digest(&to).await.unwrap(), total);

        // A part weir wrote carries its digest (where the file system keeps user
        // attributes): reported as recorded, not hashed again; one changed since has
        // lost its record and is hashed. Either way the digests are the bytes'.
        let file = dir.path().join("in");
        std::fs::write(&file, &datas[1]).unwrap();
        let written = ObjectKey::part(upload, 5);
        store
            .put_file(&file, 0..datas[1].len() as u64, &written)
            .await
            .unwrap();
        let changed = bytes(LOCAL_CHUNK + 3)
            .into_iter()
            .rev()
            .collect::<Vec<u8>>();
        for (round, expect) in [&datas[1], &changed].into_iter().enumerate() {
            if round == 1 {
                std::fs::write(root.join(written.as_str()), &changed).unwrap();
            }
            let to = ObjectKey::part(upload, 10 + round as u32);
            let mut seen = Vec::new();
            let total = store
                .concat(&[written.clone(), keys[2].clone()], &to, |_, d| {
                    seen.push(d)
                })
                .await
                .unwrap();
            assert_eq!(seen[0].sha256, sha(expect), "round {round}");
            assert_eq!(seen[0].size, expect.len() as u64, "round {round}");
            assert_eq!(seen[1].sha256, sha(&datas[2]), "round {round}");
            assert_eq!(total.sha256, sha(&[expect.as_slice(), &datas[2]].concat()));
        }

        let missing = ObjectKey::part(upload, 7);
        let to = ObjectKey::part(upload, 8);
        let err = store
            .concat(&[keys[1].clone(), missing.clone()], &to, |_, _| {})
            .await
            .unwrap_err();
        assert!(
            matches!(&err, super::StoreError::NotFound { key } if *key == missing.to_string()),
            "{err}"
        );
        assert!(
            store.exists(&to).await.unwrap().is_none(),
            "nothing written"
        );
        let left: Vec<_> = std::fs::read_dir(root.join(to.as_str()).parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|name| name.to_string_lossy().contains('#'))
            .collect();
        assert!(left.is_empty(), "no staged file left: {left:?}");
    }

    #[tokio::test]
    async fn the_digest_recorded_at_writing_holds_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(&dir.path().join("objects")).unwrap();
        let key = ObjectKey::part(UploadId::new(), 1);
        let data = bytes(2 * LOCAL_CHUNK + 5);
        let file = dir.path().join("in");
        std::fs::write(&file, &data).unwrap();
        let put = store
            .put_file(&file, 0..data.len() as u64, &key)
            .await
            .unwrap();
        let path = store.local_root().unwrap().join(key.as_str());
        // Recorded while written (where the file system keeps user attributes: this
        // one must, or the combiner reads every part again).
        assert_eq!(super::recorded_digest(&path), Some(put));
        assert_eq!(store.digest_as_written(&key).await.unwrap(), put);
        // The same size, other bytes, written in place: the record no longer holds,
        // and the digest is the file's own.
        let mut other = data.clone();
        other[7] ^= 0xff;
        // Past the file clock's tick (a few ms where the kernel has no multigrain
        // timestamps), as any later change would be.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, &other).unwrap();
        assert_eq!(super::recorded_digest(&path), None);
        let now = store.digest_as_written(&key).await.unwrap();
        assert_eq!(now.sha256, sha(&other));
        assert_ne!(now.sha256, put.sha256);
        // An object written without a record (put_bytes) is read.
        let plain = ObjectKey::part(UploadId::new(), 1);
        store
            .put_bytes(&plain, bytes::Bytes::from_static(b"x\n1\n"))
            .await
            .unwrap();
        let plain_path = store.local_root().unwrap().join(plain.as_str());
        assert_eq!(super::recorded_digest(&plain_path), None);
        assert_eq!(
            store.digest_as_written(&plain).await.unwrap().sha256,
            sha(b"x\n1\n")
        );
        // A file weir did not write: digested where it is taken in, recorded then.
        let taken = ObjectKey::part(UploadId::new(), 1);
        let taken_path = store.local_root().unwrap().join(taken.as_str());
        std::fs::write(&taken_path, b"y\n2\n").unwrap();
        assert_eq!(super::recorded_digest(&taken_path), None);
        let d = store.digest_and_record(&taken).await.unwrap();
        assert_eq!(d.sha256, sha(b"y\n2\n"));
        assert_eq!(super::recorded_digest(&taken_path), Some(d));
        // This file system keeps the records, and says so.
        assert_eq!(store.records_digests().await, Some(true));
        // A missing object is still not found.
        for missing in [
            store
                .digest_as_written(&ObjectKey::part(UploadId::new(), 1))
                .await,
            store
                .digest_and_record(&ObjectKey::part(UploadId::new(), 1))
                .await,
        ] {
            assert!(
                matches!(missing, Err(super::StoreError::NotFound { .. })),
                "{missing:?}"
            );
        }
    }

    #[tokio::test]
    async fn digest_then_link_checks_before_it_links_and_links_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(&dir.path().join("objects")).unwrap();
        let root = store.local_root().unwrap();
        let file = dir.path().join("in");
        let data = b"a,b\n1,2\n3,4\n";
        std::fs::write(&file, data).unwrap();
        let to_blob =
            |d: &super::Digested| -> Result<ObjectKey, String> { Ok(ObjectKey::blob(&d.sha256)) };
        // Written with its digest recorded: checked, then linked (the blob's folder is
        // made on the way); the same again finds the blob there.
        let part = ObjectKey::part(UploadId::new(), 1);
        store
            .put_file(&file, 0..data.len() as u64, &part)
            .await
            .unwrap();
        let (got, blob, linked) = store
            .digest_then_link(&part, to_blob)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.sha256, sha(data));
        assert_eq!(got.size, data.len() as u64);
        assert_eq!(blob, ObjectKey::blob(&sha(data)));
        assert!(linked);
        assert_eq!(std::fs::read(root.join(blob.as_str())).unwrap(), data);
        let again = ObjectKey::part(UploadId::new(), 1);
        store
            .put_file(&file, 0..data.len() as u64, &again)
            .await
            .unwrap();
        let (_, _, linked) = store
            .digest_then_link(&again, to_blob)
            .await
            .unwrap()
            .unwrap();
        assert!(!linked, "the blob was there: deduplicated");
        // Without a record (put_bytes) the object is read; a refused digest links
        // nothing and hands the refusal back.
        let other = ObjectKey::part(UploadId::new(), 1);
        store
            .put_bytes(&other, bytes::Bytes::from_static(b"x\n9\n"))
            .await
            .unwrap();
        let refused = store
            .digest_then_link(&other, |d: &super::Digested| -> Result<ObjectKey, String> {
                Err(format!("{} bytes, not what the manifest says", d.size))
            })
            .await
            .unwrap();
        assert_eq!(
            refused,
            Err("4 bytes, not what the manifest says".to_owned())
        );
        assert!(
            !root
                .join(ObjectKey::blob(&sha(b"x\n9\n")).as_str())
                .exists()
        );
        // A missing part is not found, and nothing is linked.
        let missing = store
            .digest_then_link(&ObjectKey::part(UploadId::new(), 1), to_blob)
            .await;
        assert!(
            matches!(missing, Err(super::StoreError::NotFound { .. })),
            "{missing:?}"
        );
    }

    #[tokio::test]
    async fn a_link_is_made_once_and_a_missing_object_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(&dir.path().join("objects")).unwrap();
        let upload = UploadId::new();
        let part = ObjectKey::part(upload, 1);
        store
            .put_bytes(&part, bytes::Bytes::from_static(b"a,b\n1,2\n"))
            .await
            .unwrap();
        let blob = ObjectKey::blob(&sha(b"a,b\n1,2\n"));
        assert!(store.link_if_absent(&part, &blob).await.unwrap());
        assert!(!store.link_if_absent(&part, &blob).await.unwrap());
        // The part's name goes; the blob keeps the bytes.
        store.delete(&part).await.unwrap();
        assert_eq!(
            store.digest(&blob).await.unwrap().sha256,
            sha(b"a,b\n1,2\n")
        );
        assert!(matches!(
            store.digest(&part).await,
            Err(super::StoreError::NotFound { .. })
        ));
    }
}
