//! The chain crate's error type. `is_transient` is what the retry loop keys on: transport
//! trouble is retried on a fresh connection, everything else is reported at once.

/// Why a chain operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The node could not be reached, the connection dropped, or an RPC call failed.
    #[error("RPC to the subtensor node failed: {0}")]
    Rpc(String),
    /// An RPC call (or a whole operation) took longer than its timeout.
    #[error("RPC to the subtensor node timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The node answered, but with data this runtime's metadata cannot explain.
    #[error("cannot decode {what}: {detail}")]
    Decode { what: &'static str, detail: String },
    /// The runtime has no such pallet, storage item or call (an incompatible runtime).
    #[error("the runtime has no {0}")]
    Missing(String),
    /// The node refused a transaction.
    #[error("the node refused the extrinsic: {0}")]
    Rejected(String),
    /// The hotkey holds no uid on the subnet.
    #[error("hotkey {hotkey} is not registered on netuid {netuid}")]
    NotRegistered { hotkey: String, netuid: u16 },
    /// The chain would refuse weights now (rate limit).
    #[error(transparent)]
    RateLimited(#[from] crate::params::RateLimited),
    /// No safe drand round to encrypt weights to.
    #[error(transparent)]
    Reveal(#[from] crate::drand::RevealError),
    /// The commitment could not be built.
    #[error(transparent)]
    Commit(#[from] crate::commit::CommitError),
    /// Still failing after every retry.
    #[error("gave up after {attempts} attempts: {last}")]
    Exhausted {
        attempts: u32,
        last: Box<ChainError>,
    },
}

impl ChainError {
    /// Worth another try on a new connection.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Rpc(_) | Self::Timeout(_))
    }

    pub(crate) fn decode(what: &'static str, detail: impl std::fmt::Display) -> Self {
        Self::Decode {
            what,
            detail: detail.to_string(),
        }
    }
}

/// Classifies a storage error: transport trouble is transient, a runtime without the item
/// is `Missing`, and the rest (keys or values the metadata cannot explain) is `Decode`.
pub(crate) fn storage(what: &'static str, err: subxt::error::StorageError) -> ChainError {
    use subxt::error::StorageError as E;
    match err {
        E::CannotFetchValue(e) | E::CannotIterateValues(e) | E::StreamFailure(e) => {
            ChainError::Rpc(format!("{what}: {e}"))
        }
        E::PalletNameNotFound(_) | E::StorageEntryNotFound { .. } => {
            ChainError::Missing(format!("{what} ({err})"))
        }
        other => ChainError::decode(what, other),
    }
}
