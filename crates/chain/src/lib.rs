//! Everything the validator does on the subtensor chain (SPEC §3, §11): read the metagraph
//! and the miners' commitments at a finalized block, read the weight-setting parameters,
//! load the operator's hotkey, and set weights, directly or as a commit-reveal v4 timelocked
//! commitment encrypted to a drand quicknet round; and, for miners, publish a commitment.
//!
//! All chain access goes through subxt's dynamic API with metadata fetched from the node, so
//! a runtime upgrade changes nothing here unless it changes the items themselves.

pub mod client;
pub mod commit;
pub mod commitments;
pub mod drand;
mod error;
pub mod extrinsic;
pub mod metagraph;
pub mod params;
mod serde_fmt;
mod storage;
pub mod tlock;
pub mod wallet;
pub mod weights;

pub use client::{BlockRef, Chain, Connector, FnConnector, RetryPolicy, WsConnector};
pub use commit::{CommitOutcome, CommitmentCall, Reveal, SignedCommitment};
pub use commitments::{latest_per_hotkey, CommitmentSource, ObservedCommitment};
pub use drand::Quicknet;
pub use error::ChainError;
pub use extrinsic::SignedExtrinsic;
pub use metagraph::{Metagraph, Neuron};
pub use params::{RateLimited, WeightSettings};
pub use subxt::utils::AccountId32;
pub use wallet::{hotkey_path, Hotkey, WalletError};
pub use weights::{
    weights_call, CommitPayload, SignedWeights, Submit, WeightsCall, WeightsOutcome,
};
#[cfg(feature = "mock")]
pub mod mock;
