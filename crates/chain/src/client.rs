//! One connection to a subtensor node, and the retry loop every read goes through.
//!
//! subxt's jsonrpsee client never reconnects, so reconnection lives here: an operation that
//! fails with a transport error drops the connection, waits (capped exponential backoff) and
//! runs again from the start on a new one. Operations are whole reads (a scan, a metagraph),
//! so a half-finished one is thrown away, never merged with the retry. Every RPC call has a
//! timeout of its own ([`TimeoutRpc`]), so a node that stops answering is a transport error
//! like any other.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use subxt::backend::LegacyBackend;
use subxt::rpcs::client::{RawRpcFuture, RawRpcSubscription, RpcClient, RpcClientT};
use subxt::{OnlineClient, SubstrateConfig};
use tokio::sync::Mutex;

use crate::error::ChainError;

/// The subxt client type this crate uses: subtensor's accounts, addresses and signatures
/// are Substrate's defaults.
pub type Client = OnlineClient<SubstrateConfig>;
/// A client pinned to one block.
pub type AtBlock = subxt::client::OnlineClientAtBlock<SubstrateConfig>;

/// How hard to try before an operation fails.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Total attempts, including the first.
    pub attempts: u32,
    /// Wait before the second attempt; doubled each time up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Deadline for any single RPC call.
    pub rpc_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 6,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            rpc_timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32
            .checked_shl(failures.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// A future that opens a new RPC connection.
pub type ConnectFuture = Pin<Box<dyn Future<Output = Result<RpcClient, ChainError>> + Send>>;

/// Opens RPC connections: a websocket to a node in production, a mock in tests. The same
/// [`Chain`] code runs over both.
pub trait Connector: Send + Sync + 'static {
    fn connect(&self) -> ConnectFuture;
    /// Where it connects, for logs and errors: never credentials (see [`redact_url`]).
    fn describe(&self) -> String;
}

/// Connects to a node's websocket endpoint (`ws://` or `wss://`).
pub struct WsConnector {
    url: String,
    timeout: Duration,
}

impl WsConnector {
    pub fn new(url: impl Into<String>, timeout: Duration) -> Self {
        Self {
            url: url.into(),
            timeout,
        }
    }
}

impl Connector for WsConnector {
    fn connect(&self) -> ConnectFuture {
        let url = self.url.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let ws = jsonrpsee::ws_client::WsClientBuilder::default()
                .connection_timeout(timeout)
                .request_timeout(timeout)
                .build(&url)
                .await
                .map_err(|e| ChainError::Rpc(format!("connecting to {}: {e}", redact_url(&url))))?;
            Ok(RpcClient::new(ws))
        })
    }

    fn describe(&self) -> String {
        redact_url(&self.url)
    }
}

/// `scheme://host[:port]` of a node URL. Hosted endpoints carry API keys in the user info,
/// path or query; none of that may reach a log line or an error.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if scheme.is_empty() {
        host.to_owned()
    } else {
        format!("{scheme}://{host}")
    }
}

/// Builds connections from a closure; what tests hand a mock RPC client through.
pub struct FnConnector<F>(pub F);

impl<F> Connector for FnConnector<F>
where
    F: Fn() -> Result<RpcClient, ChainError> + Send + Sync + 'static,
{
    fn connect(&self) -> ConnectFuture {
        let made = (self.0)();
        Box::pin(async move { made })
    }

    fn describe(&self) -> String {
        "in-process RPC client".to_owned()
    }
}

/// Puts a deadline on every call of an inner RPC client.
pub struct TimeoutRpc {
    inner: RpcClient,
    timeout: Duration,
}

impl RpcClientT for TimeoutRpc {
    fn request_raw<'a>(
        &'a self,
        method: &'a str,
        params: Option<Box<serde_json::value::RawValue>>,
    ) -> RawRpcFuture<'a, Box<serde_json::value::RawValue>> {
        Box::pin(async move {
            tokio::time::timeout(self.timeout, self.inner.request_raw(method, params))
                .await
                .map_err(|_| {
                    subxt::rpcs::Error::Client(
                        format!("{method} timed out after {:?}", self.timeout).into(),
                    )
                })?
        })
    }

    fn subscribe_raw<'a>(
        &'a self,
        sub: &'a str,
        params: Option<Box<serde_json::value::RawValue>>,
        unsub: &'a str,
    ) -> RawRpcFuture<'a, RawRpcSubscription> {
        Box::pin(async move {
            tokio::time::timeout(self.timeout, self.inner.subscribe_raw(sub, params, unsub))
                .await
                .map_err(|_| {
                    subxt::rpcs::Error::Client(
                        format!("{sub} timed out after {:?}", self.timeout).into(),
                    )
                })?
        })
    }
}

/// A finalized block: what every read is pinned to, so one scan sees one state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BlockRef {
    pub number: u64,
    #[serde(serialize_with = "crate::serde_fmt::hex")]
    pub hash: [u8; 32],
}

/// A handle on the chain that survives disconnects. Cheap to clone.
#[derive(Clone)]
pub struct Chain {
    inner: Arc<Inner>,
}

struct Inner {
    connector: Box<dyn Connector>,
    config: SubstrateConfig,
    policy: RetryPolicy,
    client: Mutex<Option<(Client, RpcClient)>>,
}

impl Chain {
    /// A chain handle; nothing is opened until the first operation.
    pub fn new(connector: impl Connector, policy: RetryPolicy) -> Self {
        Self::with_config(connector, policy, SubstrateConfig::new())
    }

    /// As [`Chain::new`], with a subxt config (tests pin a genesis hash through it).
    pub fn with_config(
        connector: impl Connector,
        policy: RetryPolicy,
        config: SubstrateConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                connector: Box::new(connector),
                config,
                policy,
                client: Mutex::new(None),
            }),
        }
    }

    /// A websocket connection to `url` with the default retry policy.
    pub fn ws(url: &str, policy: RetryPolicy) -> Self {
        let timeout = policy.rpc_timeout;
        Self::new(WsConnector::new(url, timeout), policy)
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.inner.policy
    }

    /// Runs `op` on a connected client, retrying transport failures on a new connection.
    /// Each attempt starts from scratch: nothing from a failed attempt survives into the result.
    pub async fn run<T, F, Fut>(&self, what: &'static str, op: F) -> Result<T, ChainError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, ChainError>>,
    {
        let policy = &self.inner.policy;
        let attempts = policy.attempts.max(1);
        let mut last = None;
        for attempt in 1..=attempts {
            if attempt > 1 {
                let wait = policy.backoff(attempt - 1);
                tracing::warn!(what, attempt, ?wait, error = %last.as_ref().map(ToString::to_string).unwrap_or_default(), "chain operation failed; reconnecting");
                tokio::time::sleep(wait).await;
            }
            let client = match self.client().await {
                Ok(client) => client,
                Err(e) if e.is_transient() => {
                    last = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            match op(client).await {
                Ok(value) => return Ok(value),
                Err(e) if e.is_transient() => {
                    // The connection may be the problem: open a new one next time.
                    *self.inner.client.lock().await = None;
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(ChainError::Exhausted {
            attempts,
            last: Box::new(last.unwrap_or_else(|| ChainError::Rpc("no attempt made".into()))),
        })
    }

    /// Drops the connection so the next operation opens a new one.
    pub(crate) async fn reset(&self) {
        *self.inner.client.lock().await = None;
    }

    /// The current connection, opened if needed (also for calls that must not be retried).
    pub(crate) async fn client(&self) -> Result<Client, ChainError> {
        self.connection().await.map(|(client, _)| client)
    }

    async fn connection(&self) -> Result<(Client, RpcClient), ChainError> {
        let mut slot = self.inner.client.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let rpc = self.inner.connector.connect().await?;
        let rpc = RpcClient::new(TimeoutRpc {
            inner: rpc,
            timeout: self.inner.policy.rpc_timeout,
        });
        let backend = LegacyBackend::<SubstrateConfig>::builder().build(rpc.clone());
        let client = Client::from_backend_with_config(self.inner.config.clone(), Arc::new(backend))
            .await
            .map_err(|e| {
                ChainError::Rpc(format!("opening {}: {e}", self.inner.connector.describe()))
            })?;
        tracing::debug!(node = %self.inner.connector.describe(), "connected to subtensor");
        *slot = Some((client.clone(), rpc.clone()));
        Ok((client, rpc))
    }

    /// The number of the node's best (not yet finalized) block: where a transaction sent
    /// now lands next. The reveal round is predicted from it.
    pub async fn best_number(&self) -> Result<u64, ChainError> {
        self.run("best block", |_| async move {
            let (_, rpc) = self.connection().await?;
            let header: serde_json::Value = rpc
                .request("chain_getHeader", subxt::rpcs::rpc_params![])
                .await
                .map_err(|e| ChainError::Rpc(format!("best block: {e}")))?;
            let number = header
                .get("number")
                .ok_or_else(|| ChainError::decode("best header", "no number"))?;
            let parsed = match number {
                serde_json::Value::String(hex) => {
                    u64::from_str_radix(hex.trim_start_matches("0x"), 16).ok()
                }
                other => other.as_u64(),
            };
            parsed.ok_or_else(|| ChainError::decode("best header", format!("number {number}")))
        })
        .await
    }

    /// The latest finalized block.
    pub async fn finalized(&self) -> Result<BlockRef, ChainError> {
        self.run("finalized block", |client| async move {
            let at = client
                .at_current_block()
                .await
                .map_err(|e| ChainError::Rpc(format!("finalized block: {e}")))?;
            Ok(block_ref(&at))
        })
        .await
    }
}

/// Pins `client` to `block` (its metadata and runtime version come from the node).
pub(crate) async fn at(client: &Client, block: BlockRef) -> Result<AtBlock, ChainError> {
    client
        .at_block_hash_and_number(subxt::utils::H256(block.hash), block.number)
        .await
        .map_err(|e| ChainError::Rpc(format!("block {}: {e}", block.number)))
}

pub(crate) fn block_ref(at: &AtBlock) -> BlockRef {
    BlockRef {
        number: at.block_number(),
        hash: at.block_hash().0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_url("wss://user:pw@node.example.com:443/ws/KEY123?apikey=s3cret"),
            "wss://node.example.com:443"
        );
        assert_eq!(redact_url("ws://127.0.0.1:9944"), "ws://127.0.0.1:9944");
        assert_eq!(redact_url("node.example.com/abc"), "node.example.com");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(700),
            rpc_timeout: Duration::from_secs(1),
        };
        let waits: Vec<u128> = (1..=6).map(|n| policy.backoff(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 700, 700, 700]);
        assert_eq!(policy.backoff(200), Duration::from_millis(700));
    }
}
