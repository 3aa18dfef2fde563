//! Content-addressed artifact storage (`sha256/<hex>`) over the `object_store` crate: a local
//! directory by default, any S3-compatible service by URL.
//!
//! Uploads stream into a staging object under `uploads/` while being hashed and counted, in
//! bounded memory whatever their size. Only when the stream is complete, within the size limit
//! and (when the caller knows it) equal to the expected digest is the object moved to its
//! content address, so a half-written or wrong blob is never visible there.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{GetOptions, GetRange, ObjectStore, WriteMultipart};
use secrecy::ExposeSecret;
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use crate::config::S3Settings;

/// Size of the parts an upload is cut into; also the unit of memory an upload holds.
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts in flight at once per upload; memory per upload is about `PART_SIZE * (this + 1)`.
const PARTS_IN_FLIGHT: usize = 2;
/// Chunks queued for the hashing thread (each a few KiB to 64 KiB as they come off the socket):
/// how far hashing may fall behind receiving.
const HASH_QUEUE: usize = 64;

/// A sha256 digest, the address of a blob.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// Parses exactly 64 lowercase hex characters; anything else (including `../x`) is refused.
    pub fn parse_hex(s: &str) -> Option<Self> {
        if s.len() != 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return None;
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    fn location(&self) -> ObjectPath {
        ObjectPath::from(format!("sha256/{}", self.to_hex()))
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.to_hex())
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.to_hex())
    }
}

/// A stored blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobInfo {
    /// Its address.
    pub digest: Sha256Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The upload exceeded the size limit; nothing was stored.
    #[error("upload exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The bytes do not hash to what the caller said; nothing was stored.
    #[error("content digest is {actual}, expected {expected}")]
    DigestMismatch {
        /// What the caller declared.
        expected: Sha256Digest,
        /// What the bytes hash to.
        actual: Sha256Digest,
    },
    /// The caller's stream failed (client disconnected, timeout); nothing was stored.
    #[error("upload interrupted: {0}")]
    Interrupted(String),
    /// No such blob.
    #[error("blob {0} not found")]
    NotFound(Sha256Digest),
    /// The backing store failed.
    #[error("blob store error")]
    Store(#[from] object_store::Error),
}

/// A byte range and the stream of its bytes.
pub struct BlobRead {
    /// Total size of the blob.
    pub size: u64,
    /// The range being returned.
    pub range: Range<u64>,
    /// The bytes.
    pub stream: futures_util::stream::BoxStream<'static, Result<Bytes, object_store::Error>>,
}

/// Artifact storage.
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<dyn ObjectStore>,
    description: String,
}

impl fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobStore({})", self.description)
    }
}

impl BlobStore {
    /// Opens the store named by `url` (`s3://bucket/prefix`, `file:///dir` or a plain path), or
    /// `<data_dir>/blobs` when there is none.
    pub fn open(url: Option<&str>, data_dir: &Path, s3: &S3Settings) -> anyhow::Result<Self> {
        match url {
            Some(u) if u.starts_with("s3://") => Self::s3(u, s3),
            Some(u) if u.contains("://") && !u.starts_with("file://") => {
                anyhow::bail!("unsupported blob URL `{u}`: use a directory, file:///dir or s3://bucket/prefix")
            }
            Some(u) => Self::local(Path::new(u.trim_start_matches("file://"))),
            None => Self::local(&data_dir.join("blobs")),
        }
    }

    /// A store in a local directory (created if missing).
    pub fn local(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create blob directory {}: {e}", dir.display()))?;
        let fs = LocalFileSystem::new_with_prefix(dir)?;
        Ok(Self {
            inner: Arc::new(fs),
            description: format!("file://{}", dir.display()),
        })
    }

    /// A store in an S3-compatible bucket. Settings not given fall back to the `AWS_*`
    /// environment variables (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, ...).
    pub fn s3(url: &str, s3: &S3Settings) -> anyhow::Result<Self> {
        let rest = url.trim_start_matches("s3://");
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            anyhow::bail!("blob URL `{url}` names no bucket");
        }
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(endpoint) = &s3.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &s3.region {
            builder = builder.with_region(region);
        }
        if let Some(id) = &s3.access_key_id {
            builder = builder.with_access_key_id(id);
        }
        if let Some(secret) = &s3.secret_access_key {
            builder = builder.with_secret_access_key(secret.expose_secret());
        }
        if s3.allow_http {
            builder = builder.with_allow_http(true);
        }
        let store = builder.build()?;
        let prefix = prefix.trim_matches('/');
        let inner: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(store)
        } else {
            Arc::new(PrefixStore::new(store, prefix))
        };
        Ok(Self {
            inner,
            description: url.to_owned(),
        })
    }

    /// Where the blobs live, for logs.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// Streams `body` into the store. Fails without a trace when the stream errors, grows past
    /// `limit` bytes, or (with `expected`) hashes to anything else.
    pub async fn put_stream<S, E>(
        &self,
        body: S,
        limit: u64,
        expected: Option<Sha256Digest>,
    ) -> Result<BlobInfo, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: fmt::Display,
    {
        let staging = ObjectPath::from(format!("uploads/{}", uuid::Uuid::new_v4()));
        let upload = self.inner.put_multipart(&staging).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        match Self::copy_hashing(body, &mut writer, limit).await {
            Ok((digest, size)) => {
                if let Some(expected) = expected.filter(|e| *e != digest) {
                    writer.abort().await.ok();
                    return Err(BlobError::DigestMismatch {
                        expected,
                        actual: digest,
                    });
                }
                writer.finish().await?;
                let finished = self.inner.rename(&staging, &digest.location()).await;
                if let Err(e) = finished {
                    self.inner.delete(&staging).await.ok();
                    return Err(e.into());
                }
                Ok(BlobInfo { digest, size })
            }
            Err(e) => {
                writer.abort().await.ok();
                Err(e)
            }
        }
    }

    /// Copies `body` into `writer` and hashes it. The hash runs on a thread of its own, fed
    /// the same chunks (reference-counted, not copied) through a short queue, so receiving the
    /// body, hashing it and writing it proceed on different cores instead of taking turns on
    /// the request's worker (1 GiB: 0.52–0.57 of `openssl dgst -sha256`'s speed hashing on the
    /// worker, 0.75–0.79 on a thread; docs/benchmarks.md).
    async fn copy_hashing<S, E>(
        mut body: S,
        writer: &mut WriteMultipart,
        limit: u64,
    ) -> Result<(Sha256Digest, u64), BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: fmt::Display,
    {
        let (chunks, mut queue) = tokio::sync::mpsc::channel::<Bytes>(HASH_QUEUE);
        let hashing = tokio::task::spawn_blocking(move || {
            let mut hasher = Sha256::new();
            while let Some(chunk) = queue.blocking_recv() {
                hasher.update(&chunk);
            }
            Sha256Digest(hasher.finalize().into())
        });
        let mut size: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| BlobError::Interrupted(e.to_string()))?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(BlobError::TooLarge { limit });
            }
            chunks
                .send(chunk.clone())
                .await
                .map_err(|_| BlobError::Interrupted("the hashing thread stopped".into()))?;
            writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
            writer.put(chunk);
        }
        drop(chunks);
        let digest = hashing
            .await
            .map_err(|e| BlobError::Interrupted(format!("hashing failed: {e}")))?;
        Ok((digest, size))
    }

    /// Size of a blob, or `None` when absent.
    pub async fn size(&self, digest: &Sha256Digest) -> Result<Option<u64>, BlobError> {
        match self.inner.head(&digest.location()).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads a blob, or the byte range `range` of it.
    pub async fn read(
        &self,
        digest: &Sha256Digest,
        range: Option<Range<u64>>,
    ) -> Result<BlobRead, BlobError> {
        let opts = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let result = match self.inner.get_opts(&digest.location(), opts).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Err(BlobError::NotFound(*digest)),
            Err(e) => return Err(e.into()),
        };
        Ok(BlobRead {
            size: result.meta.size,
            range: result.range.clone(),
            stream: result.into_stream(),
        })
    }

    /// Reads a whole blob into memory (for small blobs such as signature bundles).
    pub async fn read_all(&self, digest: &Sha256Digest) -> Result<Bytes, BlobError> {
        match self.inner.get(&digest.location()).await {
            Ok(r) => Ok(r.bytes().await?),
            Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound(*digest)),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a blob (absent blobs are fine).
    pub async fn delete(&self, digest: &Sha256Digest) -> Result<(), BlobError> {
        match self.inner.delete(&digest.location()).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Number of staging objects left by uploads that never finished (crashes). Tests use it to
    /// show that an interrupted upload leaves nothing behind.
    pub async fn staging_count(&self) -> Result<usize, BlobError> {
        let prefix = ObjectPath::from("uploads");
        let listed: Vec<_> = self.inner.list(Some(&prefix)).collect().await;
        Ok(listed.into_iter().filter(|m| m.is_ok()).count())
    }

    /// Digests of all stored blobs.
    pub async fn list(&self) -> Result<Vec<Sha256Digest>, BlobError> {
        let prefix = ObjectPath::from("sha256");
        let mut out = Vec::new();
        let mut listing = self.inner.list(Some(&prefix));
        while let Some(meta) = listing.next().await {
            let meta = meta?;
            if let Some(d) = meta.location.filename().and_then(Sha256Digest::parse_hex) {
                out.push(d);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn digests_parse_only_from_64_lowercase_hex() {
        let ok = "a".repeat(64);
        assert!(Sha256Digest::parse_hex(&ok).is_some());
        assert!(Sha256Digest::parse_hex(&"A".repeat(64)).is_none());
        assert!(Sha256Digest::parse_hex(&"a".repeat(63)).is_none());
        assert!(Sha256Digest::parse_hex("../x").is_none());
        assert!(Sha256Digest::parse_hex(&format!("../{}", "a".repeat(61))).is_none());
    }
}
