//! An in-memory subtensor node behind subxt's `MockRpcClient`, for tests and demos
//! (feature `mock`). It answers the legacy JSON-RPC methods subxt uses with real SCALE
//! bytes: runtime metadata from a file (the finney fixture in our tests), storage written
//! with the pallets' real key hashers, and every submitted extrinsic kept for inspection.
//! Faults are injected per method call, so a test can cut a scan off half-way.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use parity_scale_codec::{Compact, Encode};
use serde_json::{json, Value};
use subxt::rpcs::client::mock_rpc_client::MockRpcClient;
use subxt::rpcs::client::RpcClient;
use subxt::utils::AccountId32;

pub use jsonrpsee::server::ServerHandle;

use crate::client::{ConnectFuture, Connector};
use crate::error::ChainError;

/// A storage hasher, as the pallet declares it for a key.
#[derive(Debug, Clone, Copy)]
pub enum Hasher {
    Identity,
    Twox64Concat,
    Blake2_128Concat,
}

/// The full storage key of `pallet.entry(keys...)`, each key SCALE-encoded and hashed.
pub fn storage_key(pallet: &str, entry: &str, keys: &[(Hasher, Vec<u8>)]) -> Vec<u8> {
    let mut key = sp_crypto_hashing::twox_128(pallet.as_bytes()).to_vec();
    key.extend(sp_crypto_hashing::twox_128(entry.as_bytes()));
    for (hasher, encoded) in keys {
        match hasher {
            Hasher::Identity => {}
            Hasher::Twox64Concat => key.extend(sp_crypto_hashing::twox_64(encoded)),
            Hasher::Blake2_128Concat => key.extend(sp_crypto_hashing::blake2_128(encoded)),
        }
        key.extend(encoded);
    }
    key
}

#[derive(Debug, Default)]
struct State {
    storage: BTreeMap<Vec<u8>, Vec<u8>>,
    block_number: u64,
    spec_version: u32,
    metadata: Arc<Vec<u8>>,
    nonces: HashMap<[u8; 32], u32>,
    submitted: Vec<Vec<u8>>,
    calls: HashMap<String, u64>,
    failures: HashMap<String, Vec<u64>>,
    connections: u64,
}

/// A fake subtensor node. Clones share one state.
#[derive(Clone)]
pub struct MockNode {
    state: Arc<Mutex<State>>,
}

/// The genesis hash every mock node reports.
pub const GENESIS: [u8; 32] = [0x47; 32];

impl MockNode {
    /// A node at block 1000 serving `metadata` (SCALE, "meta" prefix) as spec `spec_version`.
    pub fn new(metadata: Vec<u8>, spec_version: u32) -> Self {
        let state = State {
            block_number: 1000,
            spec_version,
            metadata: Arc::new(metadata),
            ..State::default()
        };
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the state from the others.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_block(&self, number: u64) {
        self.lock().block_number = number;
    }

    /// The hash the node reports for block `number` (deterministic, distinct per number).
    pub fn block_hash(number: u64) -> [u8; 32] {
        sp_crypto_hashing::blake2_256(&number.to_le_bytes())
    }

    pub fn put(&self, key: Vec<u8>, value: Vec<u8>) {
        self.lock().storage.insert(key, value);
    }

    pub fn remove(&self, key: &[u8]) {
        self.lock().storage.remove(key);
    }

    pub fn set_nonce(&self, account: &AccountId32, nonce: u32) {
        self.lock().nonces.insert(account.0, nonce);
    }

    /// Makes the `nth` call (1-based, counted over the node's life) of `method` fail as a
    /// dropped connection would.
    pub fn fail_call(&self, method: &str, nth: u64) {
        self.lock()
            .failures
            .entry(method.to_owned())
            .or_default()
            .push(nth);
    }

    pub fn calls(&self, method: &str) -> u64 {
        self.lock().calls.get(method).copied().unwrap_or(0)
    }

    /// How many connections clients opened.
    pub fn connections(&self) -> u64 {
        self.lock().connections
    }

    /// Registers `hotkey` at `uid` (`Keys` and `Uids`).
    pub fn put_neuron(&self, netuid: u16, uid: u16, hotkey: &AccountId32) {
        let n = (Hasher::Identity, netuid.encode());
        self.put(
            storage_key(
                "SubtensorModule",
                "Keys",
                &[n.clone(), (Hasher::Identity, uid.encode())],
            ),
            hotkey.0.to_vec(),
        );
        self.put(
            storage_key(
                "SubtensorModule",
                "Uids",
                &[n, (Hasher::Blake2_128Concat, hotkey.0.to_vec())],
            ),
            uid.encode(),
        );
    }

    /// Writes a per-netuid item (`Identity` hasher), e.g. `SubnetworkN`, `Tempo`.
    pub fn put_subnet_item(&self, entry: &str, netuid: u16, value: impl Encode) {
        self.put(
            storage_key(
                "SubtensorModule",
                entry,
                &[(Hasher::Identity, netuid.encode())],
            ),
            value.encode(),
        );
    }

    /// A hotkey's revealed timelocked commitments: `(plaintext, reveal block)` pairs.
    pub fn put_revealed(&self, netuid: u16, hotkey: &AccountId32, reveals: &[(Vec<u8>, u64)]) {
        self.put(
            storage_key(
                "Commitments",
                "RevealedCommitments",
                &[
                    (Hasher::Identity, netuid.encode()),
                    (Hasher::Twox64Concat, hotkey.0.to_vec()),
                ],
            ),
            reveals.encode(),
        );
    }

    /// A plain commitment: a `Registration` whose fields are `Data::Raw` chunks of at most
    /// 128 bytes each (`Raw{n}` is variant `n + 1`).
    pub fn put_plain_commitment(&self, netuid: u16, hotkey: &AccountId32, block: u32, data: &[u8]) {
        let mut fields = Vec::new();
        let chunks: Vec<&[u8]> = data.chunks(128).collect();
        Compact(chunks.len() as u32).encode_to(&mut fields);
        for chunk in chunks {
            fields.push(chunk.len() as u8 + 1);
            fields.extend_from_slice(chunk);
        }
        let mut registration = 0u64.encode(); // deposit
        registration.extend(block.encode());
        registration.extend(fields);
        self.put(
            storage_key(
                "Commitments",
                "CommitmentOf",
                &[
                    (Hasher::Identity, netuid.encode()),
                    (Hasher::Twox64Concat, hotkey.0.to_vec()),
                ],
            ),
            registration,
        );
    }

    /// Every extrinsic submitted so far, as sent (length-prefixed).
    pub fn submitted(&self) -> Vec<Vec<u8>> {
        self.lock().submitted.clone()
    }

    /// A connector whose every connection talks to this node.
    pub fn connector(&self) -> MockConnector {
        MockConnector { node: self.clone() }
    }

    fn client(&self) -> MockRpcClient {
        let methods = self.clone();
        let subscriptions = self.clone();
        MockRpcClient::builder()
            .method_fallback(move |method, params| {
                let node = methods.clone();
                async move { node.handle(&method, params.as_deref().map(|p| p.get())) }
            })
            .subscription_fallback(move |method, params, _unsub| {
                let node = subscriptions.clone();
                async move {
                    node.subscribe(&method, params.as_deref().map(|p| p.get()))
                        .map(|items| {
                            items
                                .into_iter()
                                .map(subxt::rpcs::client::mock_rpc_client::Json)
                                .collect::<Vec<_>>()
                        })
                }
            })
            .build()
    }

    fn count(&self, method: &str) -> Result<(), subxt::rpcs::Error> {
        let mut state = self.lock();
        let n = state.calls.entry(method.to_owned()).or_default();
        *n += 1;
        let n = *n;
        if state.failures.get(method).is_some_and(|f| f.contains(&n)) {
            return Err(subxt::rpcs::Error::Client(
                format!("connection reset during {method} (injected)").into(),
            ));
        }
        Ok(())
    }

    fn handle(&self, method: &str, params: Option<&str>) -> Result<Value, subxt::rpcs::Error> {
        self.count(method)?;
        let params: Vec<Value> = match params {
            Some(p) => serde_json::from_str(p).map_err(subxt::rpcs::Error::Deserialization)?,
            None => Vec::new(),
        };
        let state = self.lock();
        let number = state.block_number;
        let result = match method {
            "chain_getBlockHash" => match params.first().and_then(Value::as_u64) {
                Some(0) => hex_json(&GENESIS),
                Some(n) if n <= number => hex_json(&Self::block_hash(n)),
                Some(_) => Value::Null,
                None => hex_json(&Self::block_hash(number)),
            },
            "chain_getFinalizedHead" => hex_json(&Self::block_hash(number)),
            "chain_getHeader" => {
                let parent = Self::block_hash(number.saturating_sub(1));
                json!({
                    "parentHash": hex(&parent),
                    "number": format!("0x{number:x}"),
                    "stateRoot": hex(&[0; 32]),
                    "extrinsicsRoot": hex(&[0; 32]),
                    "digest": {"logs": []},
                })
            }
            "state_call" => {
                let name = params.first().and_then(Value::as_str).unwrap_or_default();
                let args = params
                    .get(1)
                    .and_then(Value::as_str)
                    .map(unhex)
                    .unwrap_or_default();
                hex_json(&state.runtime_call(name, &args)?)
            }
            "state_getStorage" => {
                let key = params
                    .first()
                    .and_then(Value::as_str)
                    .map(unhex)
                    .unwrap_or_default();
                state.storage.get(&key).map_or(Value::Null, |v| hex_json(v))
            }
            "state_getKeysPaged" => {
                let prefix = params
                    .first()
                    .and_then(Value::as_str)
                    .map(unhex)
                    .unwrap_or_default();
                let count = params.get(1).and_then(Value::as_u64).unwrap_or(64) as usize;
                let start = params.get(2).and_then(Value::as_str).map(unhex);
                let keys: Vec<Value> = state
                    .storage
                    .keys()
                    .filter(|k| k.starts_with(&prefix))
                    .filter(|k| start.as_ref().is_none_or(|s| *k > s))
                    .take(count)
                    .map(|k| hex_json(k))
                    .collect();
                Value::Array(keys)
            }
            "state_queryStorageAt" => {
                let keys = params
                    .first()
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let changes: Vec<Value> = keys
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|k| {
                        let value = state
                            .storage
                            .get(&unhex(k))
                            .map_or(Value::Null, |v| hex_json(v));
                        json!([k, value])
                    })
                    .collect();
                json!([{"block": hex(&Self::block_hash(number)), "changes": changes}])
            }
            "rpc_methods" => json!({"methods": []}),
            other => {
                return Err(rpc_error(
                    -32601,
                    format!("mock node: method {other} not found"),
                ))
            }
        };
        Ok(result)
    }

    fn subscribe(
        &self,
        method: &str,
        params: Option<&str>,
    ) -> Result<Vec<Value>, subxt::rpcs::Error> {
        self.count(method)?;
        if method != "author_submitAndWatchExtrinsic" {
            return Err(rpc_error(
                -32601,
                format!("mock node: subscription {method} not found"),
            ));
        }
        let params: Vec<Value> = serde_json::from_str(params.unwrap_or("[]"))
            .map_err(subxt::rpcs::Error::Deserialization)?;
        let xt = params
            .first()
            .and_then(Value::as_str)
            .map(unhex)
            .unwrap_or_default();
        let mut state = self.lock();
        state.submitted.push(xt);
        let in_block = Self::block_hash(state.block_number + 1);
        Ok(vec![json!("ready"), json!({"inBlock": hex(&in_block)})])
    }
}

impl State {
    fn runtime_call(&self, name: &str, args: &[u8]) -> Result<Vec<u8>, subxt::rpcs::Error> {
        Ok(match name {
            "Core_version" => (
                "node-subtensor".to_owned(),
                "node-subtensor".to_owned(),
                1u32,
                self.spec_version,
                1u32,
                Vec::<([u8; 8], u32)>::new(),
                1u32,
                1u8,
            )
                .encode(),
            "Metadata_metadata_versions" => vec![14u32, 15, 16].encode(),
            "Metadata_metadata_at_version" => {
                let mut out = vec![1u8];
                Compact(self.metadata.len() as u32).encode_to(&mut out);
                out.extend(self.metadata.iter());
                out
            }
            "AccountNonceApi_account_nonce" => {
                let account: [u8; 32] = args.try_into().unwrap_or([0; 32]);
                self.nonces.get(&account).copied().unwrap_or(0).encode()
            }
            other => {
                return Err(rpc_error(
                    -32000,
                    format!("mock node: runtime call {other} not supported"),
                ))
            }
        })
    }
}

/// Every JSON-RPC method the node answers (subxt's legacy backend uses no others).
const METHODS: [&str; 8] = [
    "chain_getBlockHash",
    "chain_getFinalizedHead",
    "chain_getHeader",
    "state_call",
    "state_getStorage",
    "state_getKeysPaged",
    "state_queryStorageAt",
    "rpc_methods",
];

impl MockNode {
    /// Serves the node over a real websocket on `addr` (port 0 picks one), so another
    /// process (the `cacheon` binary in tests) can talk to it as to a subtensor node.
    pub async fn serve_ws(
        &self,
        addr: std::net::SocketAddr,
    ) -> std::io::Result<(std::net::SocketAddr, ServerHandle)> {
        use jsonrpsee::types::ErrorObjectOwned;
        let to_rpc =
            |e: subxt::rpcs::Error| ErrorObjectOwned::owned(-32000, e.to_string(), None::<()>);
        let mut module = jsonrpsee::RpcModule::new(self.clone());
        for method in METHODS {
            module
                .register_method(method, move |params, node: &MockNode, _| {
                    node.handle(method, params.as_str()).map_err(to_rpc)
                })
                .map_err(std::io::Error::other)?;
        }
        module
            .register_subscription(
                "author_submitAndWatchExtrinsic",
                "author_extrinsicUpdate",
                "author_unwatchExtrinsic",
                move |params, pending, node: Arc<MockNode>, _| async move {
                    let items =
                        match node.subscribe("author_submitAndWatchExtrinsic", params.as_str()) {
                            Ok(items) => items,
                            Err(e) => {
                                pending.reject(to_rpc(e)).await;
                                return Ok(());
                            }
                        };
                    let sink = pending.accept().await?;
                    for item in items {
                        sink.send(serde_json::value::to_raw_value(&item)?).await?;
                    }
                    jsonrpsee::core::SubscriptionResult::Ok(())
                },
            )
            .map_err(std::io::Error::other)?;
        let server = jsonrpsee::server::ServerBuilder::default()
            .build(addr)
            .await?;
        let bound = server.local_addr()?;
        Ok((bound, server.start(module)))
    }
}

/// Opens connections to a [`MockNode`].
pub struct MockConnector {
    node: MockNode,
}

impl Connector for MockConnector {
    fn connect(&self) -> ConnectFuture {
        self.node.lock().connections += 1;
        let client = RpcClient::new(self.node.client());
        Box::pin(async move { Ok::<_, ChainError>(client) })
    }

    fn describe(&self) -> String {
        "mock subtensor node".to_owned()
    }
}

/// A JSON-RPC error answer.
fn rpc_error(code: i32, message: String) -> subxt::rpcs::Error {
    subxt::rpcs::Error::User(subxt::rpcs::UserError {
        code,
        message,
        data: None,
    })
}

fn hex(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

fn hex_json(bytes: &[u8]) -> Value {
    Value::String(hex(bytes))
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.trim_start_matches("0x")).unwrap_or_default()
}
