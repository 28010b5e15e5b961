//! Shared by the chain tests: the finney metadata fixture and a mock node serving it.
#![allow(dead_code)]

pub mod extrinsic;

use std::time::Duration;

use cacheon_chain::mock::MockNode;
use cacheon_chain::{AccountId32, Chain, Hotkey, RetryPolicy};
use sha2::Digest;

pub const NETUID: u16 = 14;
pub const SPEC: u32 = 393;

pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn finney_metadata() -> Vec<u8> {
    let bytes = std::fs::read(fixture("finney-spec393.scale")).expect("metadata fixture");
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&bytes)),
        "27decab52d3bb92188347a95e010e270ad3978e3bba0d8f325279e96fff421df",
        "the metadata fixture is not the published finney spec-393 file"
    );
    bytes
}

pub fn node() -> MockNode {
    MockNode::new(finney_metadata(), SPEC)
}

/// Quick retries: tests must not wait out production backoffs.
pub fn policy() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        rpc_timeout: Duration::from_secs(10),
    }
}

/// The test validator's (or miner's) btcli seed, and its hotkey.
pub const SEED: &str = "0x4ed8d4b17698ddeaa1f1559f152f87b5d472f725ca86d341bd0276f1b61197e2";

pub fn hotkey() -> Hotkey {
    Hotkey::from_keyfile(
        std::path::Path::new("hotkey"),
        format!(r#"{{"secretSeed":"{SEED}"}}"#).as_bytes(),
        None,
    )
    .expect("hotkey")
}

pub fn chain(node: &MockNode) -> Chain {
    Chain::new(node.connector(), policy())
}

/// A distinct, deterministic account per index.
pub fn account(i: u32) -> AccountId32 {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&i.to_be_bytes());
    bytes[31] = 0xA5;
    AccountId32(bytes)
}
