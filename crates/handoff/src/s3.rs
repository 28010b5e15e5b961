//! The S3 bucket the host and the pods share (SPEC §5): raw objects, sealed documents and
//! bounded logs, with conditional writes for leases and write-once results, and retries so
//! that a short S3 outage is a delay rather than a failed round.
//!
//! Every call goes through one retry loop: each attempt has its own timeout, transient
//! failures (network, timeout, 5xx, throttling) are retried with a doubling backoff, and
//! anything S3 says on purpose (403, no such bucket, 412) is returned at once. The SDK's own
//! retries are off so that this loop alone decides, and a caller can bound a call's total
//! time through [`Retry`].

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::envelope::{self, EnvelopeError, HandoffSecret, MAX_DOCUMENT_BYTES};
use crate::HandoffError;

/// Where the hand-off bucket is and how to sign requests to it.
#[derive(Clone)]
pub struct S3Config {
    /// `None`: the AWS endpoint for the region. Set for MinIO, moto, R2 and the like.
    pub endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    /// Everything of ours lives under `{prefix}/`; may be empty; no leading/trailing '/'.
    pub prefix: String,
    /// Both keys or neither; neither means the standard `AWS_ACCESS_KEY_ID` /
    /// `AWS_SECRET_ACCESS_KEY` (/ `AWS_SESSION_TOKEN`) environment variables.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Path-style URLs (`endpoint/bucket/key`), which moto and MinIO need.
    pub force_path_style: bool,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: "us-east-1".into(),
            bucket: String::new(),
            prefix: String::new(),
            access_key_id: None,
            secret_access_key: None,
            force_path_style: false,
        }
    }
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("force_path_style", &self.force_path_style)
            .finish()
    }
}

/// How hard one call tries before it reports [`HandoffError::Unavailable`].
#[derive(Debug, Clone)]
pub struct Retry {
    /// Attempts in all (at least one is always made).
    pub attempts: u32,
    /// The pause after the first failed attempt; it doubles after each further one.
    pub initial: Duration,
    pub max_delay: Duration,
    /// The limit on one attempt, reading the whole response body included.
    pub op_timeout: Duration,
}

impl Default for Retry {
    /// Ten attempts with pauses of 0.25, 0.5, 1, 2, 4, then 8 s: about 40 s of pauses
    /// alone, so a 30-second outage is outlasted even when every attempt fails fast
    /// (connection refused), and one where S3 hangs is covered by the 20 s per attempt.
    fn default() -> Self {
        Self {
            attempts: 10,
            initial: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            op_timeout: Duration::from_secs(20),
        }
    }
}

/// The precondition of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Always,
    /// `If-None-Match: *`: only if no object has that key.
    IfNoneMatch,
    /// `If-Match: etag`: only if the object is still the one we read.
    IfMatch(String),
}

/// The outcome of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Put {
    Written {
        etag: String,
    },
    /// The condition did not hold: someone else's object is there (or, for `IfMatch`, is
    /// gone). Nothing was written.
    PreconditionFailed,
}

/// The hand-off bucket. Cheap to clone: the clones share one HTTP client.
#[derive(Clone)]
pub struct Bucket {
    inner: Arc<Inner>,
    retry: Retry,
}

struct Inner {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    region: String,
    secret: Option<HandoffSecret>,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket")
            .field("bucket", &self.inner.bucket)
            .field("prefix", &self.inner.prefix)
            .field("authenticated", &self.inner.secret.is_some())
            .field("retry", &self.retry)
            .finish()
    }
}

/// Why one attempt failed, which decides whether the loop tries again.
enum Failure {
    /// Worth another attempt: no answer, a connection error, 5xx, throttling.
    Transient(String),
    /// S3 answered and meant it (403, no such bucket, a malformed request).
    Fatal(String),
    /// The object itself is unacceptable (too large).
    Refused(EnvelopeError),
}

impl Bucket {
    /// Checks the configuration and builds the client. No I/O: a bucket that does not exist
    /// or refuses us shows up on the first call.
    pub fn new(
        cfg: &S3Config,
        secret: Option<HandoffSecret>,
        retry: Retry,
    ) -> Result<Self, HandoffError> {
        let bad = |what: String| Err(HandoffError::Config(what));
        if cfg.bucket.is_empty() {
            return bad("the S3 bucket name is empty".into());
        }
        if cfg.bucket.contains('/') || cfg.bucket.chars().any(char::is_whitespace) {
            return bad(format!("{:?} is not an S3 bucket name", cfg.bucket));
        }
        if cfg.region.trim().is_empty() {
            return bad("the S3 region is empty".into());
        }
        let prefix_ok = cfg
            .prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'));
        if !prefix_ok
            || cfg.prefix.starts_with('/')
            || cfg.prefix.ends_with('/')
            || cfg.prefix.contains("//")
        {
            return bad(format!(
                "S3 prefix {:?}: use [A-Za-z0-9._/-], without a leading or trailing '/'",
                cfg.prefix
            ));
        }
        if let Some(endpoint) = &cfg.endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return bad(format!(
                    "S3 endpoint {endpoint:?} must start with http:// or https://"
                ));
            }
        }
        let credentials = match (&cfg.access_key_id, &cfg.secret_access_key) {
            (Some(id), Some(key)) => Credentials::new(id, key, None, None, "cacheon"),
            (None, None) => {
                let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
                match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
                    (Some(id), Some(key)) => {
                        Credentials::new(id, key, var("AWS_SESSION_TOKEN"), None, "cacheon-env")
                    }
                    _ => {
                        return bad("no S3 credentials: set the access key id and secret access key (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)".into());
                    }
                }
            }
            _ => return bad("set both the S3 access key id and the secret access key".into()),
        };
        // rustls on ring, which the workspace builds anyway; this connector also speaks
        // plain http for a local endpoint.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .force_path_style(cfg.force_path_style)
            .credentials_provider(credentials)
            .http_client(http)
            // Our loop retries, with our timeouts; SDK retries inside it would multiply them.
            .retry_config(RetryConfig::disabled());
        if let Some(endpoint) = &cfg.endpoint {
            builder = builder.endpoint_url(endpoint.trim_end_matches('/'));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                client: aws_sdk_s3::Client::from_conf(builder.build()),
                bucket: cfg.bucket.clone(),
                prefix: cfg.prefix.clone(),
                region: cfg.region.clone(),
                secret,
            }),
            retry,
        })
    }

    /// The same bucket with another retry policy (e.g. a short one for a status probe).
    pub fn with_retry(&self, retry: Retry) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            retry,
        }
    }

    /// Creates the bucket unless it exists already. Looks first, so an operator whose
    /// credentials may not create buckets can still use an existing one.
    pub async fn ensure_bucket(&self) -> Result<(), HandoffError> {
        let client = &self.inner.client;
        let name = &self.inner.bucket;
        let exists = self
            .retrying("head-bucket", "", || {
                let req = client.head_bucket().bucket(name);
                async move {
                    match req.send().await {
                        Ok(_) => Ok(true),
                        Err(e) if status(&e) == Some(404) => Ok(false),
                        Err(e) => Err(classify(&e)),
                    }
                }
            })
            .await?
            .0;
        if exists {
            return Ok(());
        }
        // us-east-1 is the one region that must not be named as a location constraint.
        let location = (self.inner.region != "us-east-1").then(|| {
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(self.inner.region.as_str()))
                .build()
        });
        self.retrying("create-bucket", "", || {
            let req = client
                .create_bucket()
                .bucket(name)
                .set_create_bucket_configuration(location.clone());
            async move {
                match req.send().await {
                    Ok(_) => Ok(()),
                    // Ours already (another process made it, or a retried create landed).
                    Err(e) if code(&e) == Some("BucketAlreadyOwnedByYou") => Ok(()),
                    Err(e) => Err(classify(&e)),
                }
            }
        })
        .await
        .map(|_| ())
    }

    /// The object's bytes and ETag, or `None` when there is no such object. An object over
    /// [`MAX_DOCUMENT_BYTES`] is refused without being read in full.
    pub async fn get_raw(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, HandoffError> {
        let full = self.full_key(key)?;
        let client = &self.inner.client;
        let name = &self.inner.bucket;
        let (found, _) = self
            .retrying("get", key, || {
                let req = client.get_object().bucket(name).key(&full);
                async move {
                    let out = match req.send().await {
                        Ok(out) => out,
                        Err(e) if is_no_such_key(&e) => return Ok(None),
                        Err(e) => return Err(classify(&e)),
                    };
                    if out
                        .content_length()
                        .is_some_and(|len| len > MAX_DOCUMENT_BYTES as i64)
                    {
                        return Err(Failure::Refused(EnvelopeError::TooLarge));
                    }
                    let etag = out.e_tag().unwrap_or_default().to_owned();
                    let mut body = out.body;
                    let mut bytes = Vec::new();
                    // Capped while reading too: the length header is the server's word.
                    while let Some(chunk) = body.next().await {
                        let chunk = chunk.map_err(|e| {
                            Failure::Transient(format!(
                                "reading the body: {}",
                                DisplayErrorContext(&e)
                            ))
                        })?;
                        if bytes.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                            return Err(Failure::Refused(EnvelopeError::TooLarge));
                        }
                        bytes.extend_from_slice(&chunk);
                    }
                    Ok(Some((bytes, etag)))
                }
            })
            .await?;
        Ok(found)
    }

    /// Writes the object if `cond` holds.
    ///
    /// A conditional write is never blindly retried into a wrong answer: if an attempt got
    /// no answer (timeout, dropped connection, 5xx), it may still have landed, and then
    /// the next attempt fails its precondition against our own object. So when a retried
    /// conditional write ends in a failed precondition, the object is read back, and if it
    /// holds exactly our bytes the write is reported as ours (`Written` with its ETag).
    /// Identical bytes written by someone else would be reported as ours too, which is
    /// harmless: the bucket holds what we meant to write.
    pub async fn put_raw(
        &self,
        key: &str,
        body: Vec<u8>,
        cond: Condition,
    ) -> Result<Put, HandoffError> {
        self.put_object(key, body, cond, None).await
    }

    async fn put_object(
        &self,
        key: &str,
        body: Vec<u8>,
        cond: Condition,
        content_type: Option<&'static str>,
    ) -> Result<Put, HandoffError> {
        let full = self.full_key(key)?;
        let client = &self.inner.client;
        let name = &self.inner.bucket;
        let (put, attempts) = self
            .retrying("put", key, || {
                let mut req = client
                    .put_object()
                    .bucket(name)
                    .key(&full)
                    .set_content_type(content_type.map(str::to_owned))
                    .body(ByteStream::from(body.clone()));
                req = match &cond {
                    Condition::Always => req,
                    Condition::IfNoneMatch => req.if_none_match("*"),
                    Condition::IfMatch(etag) => req.if_match(etag),
                };
                let if_match = matches!(cond, Condition::IfMatch(_));
                async move {
                    match req.send().await {
                        // A missing ETag would only make a later If-Match fail (a lost
                        // lease), never let a stale write through.
                        Ok(out) => Ok(Put::Written {
                            etag: out.e_tag().unwrap_or_default().to_owned(),
                        }),
                        Err(e) if status(&e) == Some(412) => Ok(Put::PreconditionFailed),
                        // A concurrent conditional write to the same key won the race.
                        Err(e) if code(&e) == Some("ConditionalRequestConflict") => {
                            Ok(Put::PreconditionFailed)
                        }
                        // If-Match on an object that is gone: S3 says 404 NoSuchKey.
                        Err(e) if if_match && is_no_such_key(&e) => Ok(Put::PreconditionFailed),
                        Err(e) => Err(classify(&e)),
                    }
                }
            })
            .await?;
        if put == Put::PreconditionFailed && attempts > 1 && cond != Condition::Always {
            match self.get_raw(key).await {
                Ok(Some((stored, etag))) if stored == body => {
                    tracing::info!(
                        key,
                        "a retried conditional write had landed on its first try"
                    );
                    return Ok(Put::Written { etag });
                }
                // Too large to be ours.
                Ok(_) | Err(HandoffError::Refused { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(put)
    }

    /// Deletes the object; an absent object is not an error.
    pub async fn delete_raw(&self, key: &str) -> Result<(), HandoffError> {
        let full = self.full_key(key)?;
        let client = &self.inner.client;
        let name = &self.inner.bucket;
        self.retrying("delete", key, || {
            let req = client.delete_object().bucket(name).key(&full);
            async move {
                match req.send().await {
                    Ok(_) => Ok(()),
                    Err(e) if is_no_such_key(&e) => Ok(()),
                    Err(e) => Err(classify(&e)),
                }
            }
        })
        .await
        .map(|_| ())
    }

    /// Whether an object exists (HEAD: its body is not fetched).
    pub async fn exists(&self, key: &str) -> Result<bool, HandoffError> {
        let full = self.full_key(key)?;
        let client = &self.inner.client;
        let name = &self.inner.bucket;
        self.retrying("head", key, || {
            let req = client.head_object().bucket(name).key(&full);
            async move {
                match req.send().await {
                    Ok(_) => Ok(true),
                    Err(e) if status(&e) == Some(404) => Ok(false),
                    Err(e) => Err(classify(&e)),
                }
            }
        })
        .await
        .map(|(found, _)| found)
    }

    /// Every key under `under` (relative to the bucket prefix, like the keys returned),
    /// all pages of them.
    pub async fn list_keys(&self, under: &str) -> Result<Vec<String>, HandoffError> {
        let (keys, _) = self.list(under, false).await?;
        Ok(keys)
    }

    /// The "directories" directly under `under` (which should end in '/'), relative to the
    /// bucket prefix and ending in '/'.
    pub(crate) async fn list_dirs(&self, under: &str) -> Result<Vec<String>, HandoffError> {
        let (_, dirs) = self.list(under, true).await?;
        Ok(dirs)
    }

    async fn list(
        &self,
        under: &str,
        delimited: bool,
    ) -> Result<(Vec<String>, Vec<String>), HandoffError> {
        let full = self.full_prefix(under);
        let client = &self.inner.client;
        let name = &self.inner.bucket;
        let root = self.full_prefix("");
        let relative = |k: &str| k.strip_prefix(root.as_str()).map(str::to_owned);
        let mut keys = Vec::new();
        let mut dirs = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let (page, _) = self
                .retrying("list", under, || {
                    let req = client
                        .list_objects_v2()
                        .bucket(name)
                        .prefix(&full)
                        .set_delimiter(delimited.then(|| "/".to_owned()))
                        .set_continuation_token(token.clone());
                    async move { req.send().await.map_err(|e| classify(&e)) }
                })
                .await?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key())
                    .filter_map(relative),
            );
            dirs.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix())
                    .filter_map(relative),
            );
            token = page
                .next_continuation_token()
                .filter(|_| page.is_truncated() == Some(true))
                .map(str::to_owned);
            if token.is_none() {
                return Ok((keys, dirs));
            }
        }
    }

    /// Seals `doc` (schema version, and a MAC given the bucket's secret) and writes it.
    pub async fn put_doc<T: Serialize>(
        &self,
        key: &str,
        doc: &T,
        cond: Condition,
    ) -> Result<Put, HandoffError> {
        let bytes = envelope::seal(doc, self.inner.secret.as_ref()).map_err(|source| {
            HandoffError::Refused {
                key: key.to_owned(),
                source,
            }
        })?;
        self.put_object(key, bytes, cond, Some("application/json"))
            .await
    }

    /// Reads and opens a document: `None` when absent, [`HandoffError::Refused`] when it is
    /// corrupt, of an unknown major version, unauthenticated or of the wrong shape.
    pub async fn get_doc<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(T, String)>, HandoffError> {
        let Some((bytes, etag)) = self.get_raw(key).await? else {
            return Ok(None);
        };
        let doc = envelope::open(&bytes, self.inner.secret.as_ref()).map_err(|source| {
            HandoffError::Refused {
                key: key.to_owned(),
                source,
            }
        })?;
        Ok(Some((doc, etag)))
    }

    /// Overwrites a log object with the last `cap` bytes of `bytes` (fewer when that cut
    /// would split a UTF-8 character: the start moves to the next character boundary).
    /// The tail is what explains a failure; the bucket must not grow with a noisy miner.
    pub async fn put_log(&self, key: &str, bytes: &[u8], cap: usize) -> Result<(), HandoffError> {
        let mut start = bytes.len().saturating_sub(cap);
        // Skip UTF-8 continuation bytes (10xxxxxx), at most three, so valid text stays valid.
        let mut skipped = 0;
        while start > 0 && skipped < 3 && bytes.get(start).is_some_and(|b| b & 0xC0 == 0x80) {
            start += 1;
            skipped += 1;
        }
        let tail = bytes.get(start..).unwrap_or_default().to_vec();
        self.put_object(
            key,
            tail,
            Condition::Always,
            Some("text/plain; charset=utf-8"),
        )
        .await
        .map(|_| ())
    }

    /// `{prefix}/{key}`, or `key` alone without a prefix.
    fn full_key(&self, key: &str) -> Result<String, HandoffError> {
        if key.is_empty() || key.starts_with('/') {
            return Err(HandoffError::Config(format!(
                "{key:?} is not a relative object key"
            )));
        }
        Ok(self.full_prefix(key))
    }

    fn full_prefix(&self, under: &str) -> String {
        if self.inner.prefix.is_empty() {
            under.to_owned()
        } else {
            format!("{}/{under}", self.inner.prefix)
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the attempts run out; returns
    /// the value and how many attempts it took.
    async fn retrying<T, F, Fut>(
        &self,
        op: &'static str,
        key: &str,
        mut attempt: F,
    ) -> Result<(T, u32), HandoffError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let attempts = self.retry.attempts.max(1);
        let mut delay = self.retry.initial;
        let mut last = String::new();
        for n in 1..=attempts {
            match tokio::time::timeout(self.retry.op_timeout, attempt()).await {
                Ok(Ok(value)) => return Ok((value, n)),
                Ok(Err(Failure::Fatal(detail))) => {
                    return Err(HandoffError::S3 {
                        op,
                        key: key.to_owned(),
                        detail,
                    })
                }
                Ok(Err(Failure::Refused(source))) => {
                    return Err(HandoffError::Refused {
                        key: key.to_owned(),
                        source,
                    })
                }
                Ok(Err(Failure::Transient(detail))) => last = detail,
                Err(_) => last = format!("no answer within {:?}", self.retry.op_timeout),
            }
            if n < attempts {
                tracing::debug!(op, key, attempt = n, error = %last, "S3 call failed; retrying");
                tokio::time::sleep(jitter(delay)).await;
                delay = delay.saturating_mul(2).min(self.retry.max_delay);
            }
        }
        Err(HandoffError::Unavailable {
            op,
            key: key.to_owned(),
            detail: format!("{last} (after {attempts} attempts)"),
        })
    }
}

/// Up to a quarter longer, at random, so pods that failed together do not retry in step.
/// Only ever longer: the default schedule's total is what outlasts an outage.
fn jitter(delay: Duration) -> Duration {
    let random = RandomState::new().build_hasher().finish();
    let extra = delay.as_millis() as u64 / 4;
    if extra == 0 {
        return delay;
    }
    delay + Duration::from_millis(random % extra)
}

fn status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

fn code<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Option<&str> {
    match err {
        SdkError::ServiceError(ctx) => ctx.err().code(),
        _ => None,
    }
}

/// 404 for the object, as opposed to 404 for the whole bucket (which is a configuration
/// error that must not read as "no document yet").
fn is_no_such_key<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    status(err) == Some(404) && code(err) != Some("NoSuchBucket")
}

fn classify<E>(err: &SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let detail = DisplayErrorContext(err).to_string();
    match err {
        SdkError::ServiceError(_) => {
            let transient_code = matches!(
                code(err),
                Some(
                    "SlowDown"
                        | "Throttling"
                        | "ThrottlingException"
                        | "RequestTimeout"
                        | "InternalError"
                        | "ServiceUnavailable"
                )
            );
            match status(err) {
                Some(s) if s >= 500 || s == 429 => Failure::Transient(detail),
                _ if transient_code => Failure::Transient(detail),
                _ => Failure::Fatal(detail),
            }
        }
        // The request could not even be built: retrying builds it the same way.
        SdkError::ConstructionFailure(_) => Failure::Fatal(detail),
        // Timeouts, connection failures, unreadable responses.
        _ => Failure::Transient(detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> S3Config {
        S3Config {
            endpoint: Some("http://127.0.0.1:9".into()),
            bucket: "handoff".into(),
            prefix: "cacheon/main".into(),
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some("wJalrXUtnFEMI-very-secret".into()),
            force_path_style: true,
            ..S3Config::default()
        }
    }

    fn config_error(cfg: &S3Config) -> bool {
        matches!(
            Bucket::new(cfg, None, Retry::default()),
            Err(HandoffError::Config(_))
        )
    }

    #[test]
    fn configuration_is_checked_without_io() {
        assert_eq!(S3Config::default().region, "us-east-1");
        let bucket = Bucket::new(&cfg(), None, Retry::default()).expect("valid");
        assert_eq!(bucket.full_prefix("rounds/1/"), "cacheon/main/rounds/1/");
        let unprefixed = Bucket::new(
            &S3Config {
                prefix: String::new(),
                ..cfg()
            },
            None,
            Retry::default(),
        )
        .expect("an empty prefix is allowed");
        assert_eq!(unprefixed.full_prefix("rounds/1/"), "rounds/1/");
        assert!(bucket.full_key("").is_err());
        assert!(bucket.full_key("/abs").is_err());

        for prefix in ["/cacheon", "cacheon/", "a//b", "a b", "ключ", "a?b"] {
            let bad = S3Config {
                prefix: prefix.into(),
                ..cfg()
            };
            assert!(config_error(&bad), "prefix {prefix:?}");
        }
        for bucket in ["", "a/b"] {
            let bad = S3Config {
                bucket: bucket.into(),
                ..cfg()
            };
            assert!(config_error(&bad), "bucket {bucket:?}");
        }
        let bad = S3Config {
            endpoint: Some("127.0.0.1:9000".into()),
            ..cfg()
        };
        assert!(config_error(&bad), "endpoint without a scheme");
        let bad = S3Config {
            secret_access_key: None,
            ..cfg()
        };
        assert!(config_error(&bad), "half the credentials");
    }

    #[test]
    fn debug_hides_the_secret_key() {
        let shown = format!("{:?}", cfg());
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(shown.contains("AKIDEXAMPLE"), "{shown}");
    }

    #[test]
    fn the_default_retry_outlasts_a_thirty_second_outage() {
        let retry = Retry::default();
        let mut delay = retry.initial;
        let mut pauses = Duration::ZERO;
        for _ in 1..retry.attempts {
            pauses += delay;
            delay = (delay * 2).min(retry.max_delay);
        }
        assert!(pauses >= Duration::from_secs(30), "{pauses:?}");
        for _ in 0..100 {
            let d = jitter(Duration::from_secs(1));
            assert!(d >= Duration::from_secs(1) && d < Duration::from_millis(1250));
        }
    }
}
