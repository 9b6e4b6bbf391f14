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
use weir_events::{ObjectKey, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {key} not found in the store")]
    NotFound { key: String },
    #[error("object store, {op} {key}: {source}")]
    Backend {
        op: &'static str,
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
                let (store, prefix) = object_store::parse_url_opts(&url, std::env::vars())
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

    fn backend(op: &'static str, key: &ObjectKey, source: object_store::Error) -> StoreError {
        match source {
            object_store::Error::NotFound { .. } => StoreError::NotFound {
                key: key.to_string(),
            },
            source => StoreError::Backend {
                op,
                key: key.to_string(),
                source,
            },
        }
    }

    pub async fn put_bytes(&self, key: &ObjectKey, bytes: Bytes) -> Result<(), StoreError> {
        self.inner
            .put(&Self::path(key), PutPayload::from(bytes))
            .await
            .map_err(|e| Self::backend("put", key, e))?;
        Ok(())
    }

    pub async fn exists(&self, key: &ObjectKey) -> Result<Option<u64>, StoreError> {
        match self.inner.head(&Self::path(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Self::backend("head", key, e)),
        }
    }

    /// Deletes `key`; deleting what is already gone succeeds (idempotent).
    pub async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        match self.inner.delete(&Self::path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Self::backend("delete", key, e)),
        }
    }

    /// Moves `from` to `to` (atomic on the local store), replacing `to`.
    pub async fn rename(&self, from: &ObjectKey, to: &ObjectKey) -> Result<(), StoreError> {
        self.inner
            .rename(&Self::path(from), &Self::path(to))
            .await
            .map_err(|e| Self::backend("rename", from, e))
    }

    /// Streams the objects in `keys` one after another into a new object at `to`,
    /// hashing as it goes; calls `each` with every source's own size and digest.
    /// Memory holds one chunk at a time whatever the sizes.
    pub async fn concat(
        &self,
        keys: &[ObjectKey],
        to: &ObjectKey,
        mut each: impl FnMut(usize, Digested),
    ) -> Result<Digested, StoreError> {
        let upload = self
            .inner
            .put_multipart(&Self::path(to))
            .await
            .map_err(|e| Self::backend("create", to, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, CHUNK);
        let mut total = Hasher::new();
        let mut total_size = 0u64;
        for (i, key) in keys.iter().enumerate() {
            let got = match self.inner.get(&Self::path(key)).await {
                Ok(g) => g,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(Self::backend("get", key, e));
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
                        return Err(Self::backend("read", key, e));
                    }
                };
                part.update(&chunk);
                total.update(&chunk);
                size += chunk.len() as u64;
                writer
                    .wait_for_capacity(2)
                    .await
                    .map_err(|e| Self::backend("write", to, e))?;
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
            .map_err(|e| Self::backend("finish", to, e))?;
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
            .map_err(|e| Self::backend("get", key, e))?;
        let mut file = tokio::fs::File::create(to).await.map_err(local)?;
        let mut stream = got.into_stream();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Self::backend("read", key, e))?;
            size += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(local)?;
        }
        file.flush().await.map_err(local)?;
        Ok(size)
    }

    /// Streams a local file into an object.
    pub async fn upload_file(&self, from: &Path, key: &ObjectKey) -> Result<Digested, StoreError> {
        let local = |source| StoreError::Local {
            path: from.display().to_string(),
            source,
        };
        let mut file = tokio::fs::File::open(from).await.map_err(local)?;
        let upload = self
            .inner
            .put_multipart(&Self::path(key))
            .await
            .map_err(|e| Self::backend("create", key, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, CHUNK);
        let mut hasher = Hasher::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; 1024 * 1024];
        loop {
            let n = file.read(&mut buf).await.map_err(local)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
            writer
                .wait_for_capacity(2)
                .await
                .map_err(|e| Self::backend("write", key, e))?;
            writer.write(&buf[..n]);
        }
        writer
            .finish()
            .await
            .map_err(|e| Self::backend("finish", key, e))?;
        Ok(Digested {
            size,
            sha256: Sha256(hasher.finalize().into()),
        })
    }

    /// Keys under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let prefix = StorePath::from(prefix);
        let mut out = Vec::new();
        let mut stream = self.inner.list(Some(&prefix));
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(|e| StoreError::Backend {
                op: "list",
                key: prefix.to_string(),
                source: e,
            })?;
            out.push(meta.location.to_string());
        }
        Ok(out)
    }

    /// The local directory behind a `file://` store.
    pub fn local_root(&self) -> Option<PathBuf> {
        self.url.strip_prefix("file://").map(PathBuf::from)
    }
}
