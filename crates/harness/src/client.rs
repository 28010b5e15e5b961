//! One pooled HTTP client per server under test, with its connections opened before any
//! timing starts, so no measured request pays for a TCP handshake.

use std::time::Duration;

use futures_util::future::join_all;

use crate::HarnessError;

/// Tries per warm-up connection.
const WARM_ATTEMPTS: u32 = 3;
/// Longest wait for one warm-up answer, headers and body.
const WARM_READ: Duration = Duration::from_secs(10);
/// Most bytes of a warm-up answer read (a `/health` body is a few bytes).
const WARM_BODY_CAP: usize = 64 << 10;

/// An OpenAI-compatible server: its base URL and the shared client that talks to it.
#[derive(Debug, Clone)]
pub struct Target {
    base: String,
    pub(crate) client: reqwest::Client,
}

impl Target {
    /// `base_url` is `http://host:port` (a trailing `/` or `/v1` is accepted).
    pub fn new(
        base_url: &str,
        pool: usize,
        connect_timeout: Duration,
    ) -> Result<Self, HarnessError> {
        let mut base = base_url.trim_end_matches('/').to_string();
        if let Some(stripped) = base.strip_suffix("/v1") {
            base = stripped.to_string();
        }
        let parsed = reqwest::Url::parse(&base).map_err(|e| HarnessError::BadUrl {
            url: base_url.to_string(),
            reason: e.to_string(),
        })?;
        // Servers under test and the baseline sit next to the validator (a private Docker
        // network, or localhost for `cacheon bench`): TLS is not compiled in.
        if parsed.scheme() != "http" {
            return Err(HarnessError::BadUrl {
                url: base_url.to_string(),
                reason: "only http:// is supported (servers are local; no TLS)".into(),
            });
        }
        let client = reqwest::Client::builder()
            .http1_only()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(pool.max(1))
            .pool_idle_timeout(Duration::from_secs(300))
            .connect_timeout(connect_timeout)
            // A server under test must not steer the validator anywhere else.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| HarnessError::Client(e.to_string()))?;
        Ok(Self { base, client })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Opens `n` connections at once (all requests are in flight together, so none can
    /// reuse another's) and leaves them idle in the pool.
    ///
    /// Real servers close connections they consider idle or used up (llama.cpp's server
    /// closes the health poll's keep-alive connection), so a connection that fails before
    /// an answer is opened again, up to `WARM_ATTEMPTS` times; the server is unreachable
    /// only when every attempt fails. Each answer is read for at most `WARM_READ` and
    /// `WARM_BODY_CAP` bytes: nothing a server sends here can hold or fill the validator.
    pub async fn warm(&self, n: usize) -> Result<(), HarnessError> {
        let url = self.url("/health");
        let results = join_all((0..n.max(1)).map(|_| self.warm_one(&url))).await;
        results
            .into_iter()
            .collect::<Result<Vec<()>, String>>()
            .map_err(|reason| HarnessError::Unreachable {
                url: url.clone(),
                reason,
            })?;
        Ok(())
    }

    async fn warm_one(&self, url: &str) -> Result<(), String> {
        let mut last = String::new();
        for attempt in 1..=WARM_ATTEMPTS {
            match tokio::time::timeout(WARM_READ, self.get_bounded(url, WARM_BODY_CAP)).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => last = e,
                Err(_) => last = format!("no complete answer within {WARM_READ:?}"),
            }
            tracing::debug!(attempt, "warm-up connection failed: {last}");
        }
        Err(format!("{WARM_ATTEMPTS} attempts failed; last: {last}"))
    }

    /// One GET whose body is read and dropped, at most `cap` bytes of it.
    async fn get_bounded(&self, url: &str, cap: usize) -> Result<(), String> {
        let resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| crate::error_chain(&e))?;
        read_bounded(resp, cap).await
    }

    /// Polls `GET /health` every `every` until it answers 200 with a complete body (at most
    /// `WARM_BODY_CAP` bytes); each poll, and the whole wait, is bounded by `within`. A
    /// server that sends the headers and then holds or floods the body is not healthy.
    pub async fn wait_healthy(
        &self,
        within: Duration,
        every: Duration,
    ) -> Result<(), HarnessError> {
        let url = self.url("/health");
        let deadline = tokio::time::Instant::now() + within;
        let mut last = String::from("no answer yet");
        loop {
            let poll = async {
                let resp = self
                    .client
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| crate::error_chain(&e))?;
                let status = resp.status();
                read_bounded(resp, WARM_BODY_CAP).await?;
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!("HTTP {status}"))
                }
            };
            match tokio::time::timeout_at(deadline, poll).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => last = e,
                Err(_) => last = format!("{last}; no complete answer within {within:?}"),
            }
            if tokio::time::Instant::now() + every >= deadline {
                return Err(HarnessError::Unhealthy { url, last });
            }
            tokio::time::sleep(every).await;
        }
    }
}

/// Reads a body to its end and drops it; more than `cap` bytes is an error. The caller
/// bounds the time.
async fn read_bounded(mut resp: reqwest::Response, cap: usize) -> Result<(), String> {
    let mut read = 0usize;
    while let Some(chunk) = resp.chunk().await.map_err(|e| crate::error_chain(&e))? {
        read += chunk.len();
        if read > cap {
            return Err(format!("answer longer than {cap} bytes"));
        }
    }
    Ok(())
}
