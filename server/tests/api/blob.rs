//! The blob store suite, run on a local directory and on a real S3-compatible server (moto's
//! server mode, started on loopback by the test).

use bytes::Bytes;
use flotilla_server::blob::{BlobError, BlobStore, Sha256Digest};
use flotilla_server::config::S3Settings;
use futures_util::{stream, StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use std::process::{Child, Command, Stdio};

/// A moto S3 server on a free loopback port, killed on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_moto() -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let python = std::env::var("FLOTILLA_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let child = Command::new(&python)
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start moto ({python} -m moto.server): {e}; pip install 'moto[server]'")
        });
    let moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    // Wait (bounded) for the server to accept connections, then create the bucket.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match client
            .put(format!("{}/flotilla-test", moto.endpoint))
            .send()
            .await
        {
            Ok(res) if res.status().is_success() => break,
            Ok(res) => panic!("moto refused to create the bucket: {}", res.status()),
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            Err(e) => panic!("moto did not start within 60s (is `moto[server]` installed?): {e}"),
        }
    }
    moto
}

fn s3_store(moto: &Moto) -> BlobStore {
    let settings = S3Settings {
        endpoint: Some(moto.endpoint.clone()),
        region: Some("us-east-1".into()),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".to_owned().into()),
        allow_http: true,
    };
    BlobStore::s3("s3://flotilla-test/some/prefix", &settings).unwrap()
}

fn chunks(
    data: &[u8],
    size: usize,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
    stream::iter(
        data.chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    )
}

fn digest_of(data: &[u8]) -> Sha256Digest {
    Sha256Digest(Sha256::digest(data).into())
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

async fn read_all(
    store: &BlobStore,
    d: &Sha256Digest,
    range: Option<std::ops::Range<u64>>,
) -> Vec<u8> {
    let read = store.read(d, range).await.unwrap();
    let parts: Vec<Bytes> = read.stream.try_collect().await.unwrap();
    parts.concat()
}

async fn stores_by_content_and_reads_ranges(store: BlobStore) {
    // 20 MiB spans several multipart parts.
    let data = pseudo_random(20 * 1024 * 1024 + 17, 1);
    let info = store
        .put_stream(chunks(&data, 64 * 1024), u64::MAX, None)
        .await
        .unwrap();
    assert_eq!(info.digest, digest_of(&data));
    assert_eq!(info.size, data.len() as u64);
    assert_eq!(
        store.size(&info.digest).await.unwrap(),
        Some(data.len() as u64)
    );
    assert_eq!(read_all(&store, &info.digest, None).await, data);
    let range = 9_000_000u64..9_000_100;
    let read = store.read(&info.digest, Some(range.clone())).await.unwrap();
    assert_eq!(read.size, data.len() as u64);
    assert_eq!(read.range, range);
    assert_eq!(
        read_all(&store, &info.digest, Some(range.clone())).await,
        data[9_000_000..9_000_100]
    );
    // Same content again: same address, still one blob.
    let again = store
        .put_stream(chunks(&data, 1 << 20), u64::MAX, Some(info.digest))
        .await
        .unwrap();
    assert_eq!(again, info);
    assert_eq!(store.list().await.unwrap(), vec![info.digest]);
    assert_eq!(store.staging_count().await.unwrap(), 0);
    store.delete(&info.digest).await.unwrap();
    assert_eq!(store.size(&info.digest).await.unwrap(), None);
    assert!(matches!(
        store.read(&info.digest, None).await,
        Err(BlobError::NotFound(_))
    ));
}

async fn wrong_digest_leaves_nothing(store: BlobStore) {
    let data = pseudo_random(100_000, 2);
    let wrong = digest_of(b"something else");
    let err = store
        .put_stream(chunks(&data, 4096), u64::MAX, Some(wrong))
        .await
        .unwrap_err();
    assert!(matches!(err, BlobError::DigestMismatch { .. }), "{err:?}");
    assert!(store.list().await.unwrap().is_empty());
    assert_eq!(store.size(&digest_of(&data)).await.unwrap(), None);
    assert_eq!(store.staging_count().await.unwrap(), 0);
}

async fn oversized_upload_leaves_nothing(store: BlobStore) {
    let data = pseudo_random(10 * 1024 * 1024, 3);
    let err = store
        .put_stream(chunks(&data, 65536), 1024 * 1024, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, BlobError::TooLarge { limit: 1048576 }),
        "{err:?}"
    );
    assert!(store.list().await.unwrap().is_empty());
    assert_eq!(store.staging_count().await.unwrap(), 0);
}

async fn interrupted_upload_leaves_nothing(store: BlobStore) {
    let data = pseudo_random(9 * 1024 * 1024, 4);
    let good = chunks(&data, 1 << 20);
    let broken = good.chain(stream::iter(vec![Err(std::io::Error::other(
        "client went away",
    ))]));
    let err = store
        .put_stream(Box::pin(broken), u64::MAX, None)
        .await
        .unwrap_err();
    assert!(matches!(err, BlobError::Interrupted(_)), "{err:?}");
    assert!(store.list().await.unwrap().is_empty());
    assert_eq!(store.staging_count().await.unwrap(), 0);
}

macro_rules! blob_suite {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn local() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$name(flotilla_server::blob::BlobStore::local(dir.path()).unwrap()).await
                }
                #[tokio::test]
                async fn s3() {
                    let moto = super::start_moto().await;
                    super::$name(super::s3_store(&moto)).await
                }
            }
        )+
    };
}

blob_suite!(
    stores_by_content_and_reads_ranges,
    wrong_digest_leaves_nothing,
    oversized_upload_leaves_nothing,
    interrupted_upload_leaves_nothing,
);
