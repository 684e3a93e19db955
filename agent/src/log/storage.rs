//! Opening the object store an URL names, and checking at start that it
//! can be written, so a missing bucket, a wrong endpoint or bad
//! credentials stop start-up instead of failing the first flush.
//!
//! - `file:///path`: a local folder (objects fsynced on write, see `folder`).
//! - `s3://BUCKET/PREFIX`: any S3-compatible store; `--s3-endpoint` for
//!   one that is not AWS (path-style addressing; plain http only when the
//!   endpoint says `http://`). Credentials come from the standard `AWS_*`
//!   environment variables. Each PUT carries a checksum of its body that
//!   the store verifies (`--s3-checksum`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::BoxStream;
use futures::StreamExt;

use object_store::aws::{AmazonS3Builder, Checksum};
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    ClientOptions, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, RetryConfig,
};

use crate::config::{S3Checksum, S3Options};
use crate::error::AgentError;
use crate::metrics::Metrics;

/// Whether the environment names credentials the S3 client can use
/// without asking the instance metadata service.
fn env_credentials() -> bool {
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    (set("AWS_ACCESS_KEY_ID") && set("AWS_SECRET_ACCESS_KEY"))
        || set("AWS_WEB_IDENTITY_TOKEN_FILE")
        || set("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        || set("AWS_CONTAINER_CREDENTIALS_FULL_URI")
}

fn bad(reason: String) -> AgentError {
    AgentError::Config { key: "--object-store", reason }
}

/// Opens the store `url` names.
pub fn open(url: &str, s3: &S3Options) -> Result<Arc<dyn ObjectStore>, AgentError> {
    if let Some(path) = url.strip_prefix("file://") {
        if path.is_empty() {
            return Err(bad(format!("{url:?} names no folder")));
        }
        std::fs::create_dir_all(path).map_err(|source| AgentError::DataDir { path: path.into(), source })?;
        return super::folder::open(std::path::Path::new(path))
            .map_err(|source| AgentError::ObjectStore { url: url.into(), source });
    }
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad(format!("{url:?} names no bucket (s3://BUCKET/PREFIX)")));
        }
        // Without credentials the S3 client would ask the instance metadata
        // service; only do that when told to.
        if !env_credentials() && !s3.instance_credentials {
            return Err(bad(format!(
                "{url}: no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
                 (or pass --s3-instance-credentials to use the EC2/ECS instance's role)"
            )));
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_region(s3.region.clone().unwrap_or_else(|| "us-east-1".into()))
            // The flusher retries on its own schedule; a single request
            // should fail fast enough to be retried, not hang.
            .with_retry(RetryConfig { max_retries: 3, retry_timeout: Duration::from_secs(10), ..Default::default() })
            .with_client_options(
                ClientOptions::new().with_connect_timeout(Duration::from_secs(5)).with_timeout(Duration::from_secs(30)),
            );
        // The store checks each PUT's bytes either way; a CRC-64 costs a
        // fraction of the SHA-256 a signed payload needs (a quarter of the
        // agent's CPU at full rate against SeaweedFS).
        builder = match s3.checksum {
            S3Checksum::Crc64Nvme => builder.with_unsigned_payload(true).with_checksum_algorithm(Checksum::CRC64NVME),
            S3Checksum::Sha256 => builder.with_unsigned_payload(false),
        };
        if let Some(endpoint) = &s3.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        let store = builder.build().map_err(|source| AgentError::ObjectStore { url: url.into(), source })?;
        let prefix = prefix.trim_matches('/');
        return Ok(if prefix.is_empty() { Arc::new(store) } else { Arc::new(PrefixStore::new(store, prefix)) });
    }
    Err(bad(format!("{url:?}: expected file:///path or s3://BUCKET/PREFIX")))
}

/// Writes, reads back and deletes a small object: proves the bucket
/// exists, the endpoint answers and the credentials may write.
pub async fn check(
    store: &dyn ObjectStore,
    url: &str,
    endpoint: Option<&str>,
    agent_id: &str,
) -> Result<(), AgentError> {
    let path = Path::from(format!("_silt/probe-{agent_id}-{:016x}", rand::random::<u64>()));
    let fail = |source: object_store::Error| {
        let at = endpoint.map(|e| format!(" at {e}")).unwrap_or_default();
        AgentError::StorageCheck { url: url.to_string(), at, source }
    };
    let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
    store.put_opts(&path, PutPayload::from_static(b"silt"), opts).await.map_err(fail)?;
    let back = store.get(&path).await.map_err(fail)?.bytes().await.map_err(fail)?;
    if &back[..] != b"silt" {
        return Err(AgentError::Config {
            key: "--object-store",
            reason: format!("{url}: a probe object read back wrong"),
        });
    }
    // Object keys are never overwritten: the store must refuse a second create.
    let again = PutOptions { mode: PutMode::Create, ..Default::default() };
    match store.put_opts(&path, PutPayload::from_static(b"again"), again).await {
        Err(object_store::Error::AlreadyExists { .. }) => {}
        Ok(_) => {
            return Err(AgentError::Config {
                key: "--object-store",
                reason: format!(
                    "{url}: the store overwrote an object on a conditional create (If-None-Match is not honoured)"
                ),
            })
        }
        Err(e) => return Err(fail(e)),
    }
    store.delete(&path).await.map_err(fail)?;
    Ok(())
}

/// An object store that times its requests and counts their errors into
/// the agent's metrics. Answers a caller expects (an object not found, a
/// conditional write refused) are not errors.
#[derive(Debug)]
pub struct Metered {
    inner: Arc<dyn ObjectStore>,
    metrics: Arc<Metrics>,
}

impl Metered {
    pub fn wrap(inner: Arc<dyn ObjectStore>, metrics: Arc<Metrics>) -> Arc<dyn ObjectStore> {
        Arc::new(Metered { inner, metrics })
    }

    fn observe<T>(&self, op: &'static str, started: Instant, result: &object_store::Result<T>) {
        let ok = match result {
            Ok(_) => true,
            Err(e) => expected(e),
        };
        self.metrics.object_request(op, started.elapsed(), ok);
    }

    fn count<T>(&self, op: &'static str, result: &object_store::Result<T>) {
        if matches!(result, Err(e) if !expected(e)) {
            self.metrics.object_error(op);
        }
    }
}

fn expected(e: &object_store::Error) -> bool {
    use object_store::Error as E;
    matches!(e, E::NotFound { .. } | E::AlreadyExists { .. } | E::Precondition { .. } | E::NotModified { .. })
}

impl std::fmt::Display for Metered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Metered({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for Metered {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let started = Instant::now();
        let result = self.inner.put_opts(location, payload, opts).await;
        self.observe("put", started, &result);
        result
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let result = self.inner.put_multipart_opts(location, opts).await;
        self.count("put", &result);
        result
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        let started = Instant::now();
        let result = self.inner.get_opts(location, options).await;
        self.observe("get", started, &result);
        result
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let metrics = self.metrics.clone();
        self.inner
            .delete_stream(locations)
            .inspect(move |r| {
                if matches!(r, Err(e) if !expected(e)) {
                    metrics.object_error("delete");
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let metrics = self.metrics.clone();
        self.inner
            .list(prefix)
            .inspect(move |r| {
                if r.is_err() {
                    metrics.object_error("list");
                }
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let result = self.inner.list_with_delimiter(prefix).await;
        self.count("list", &result);
        result
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
