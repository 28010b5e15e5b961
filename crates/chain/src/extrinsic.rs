//! Signing and submitting the extrinsics this crate builds (weights for the validator, a
//! commitment for a miner). Signing is split from submitting so a dry run builds and prints
//! the very bytes that would be sent.

use subxt::config::SubstrateExtrinsicParamsBuilder;
use subxt::ext::scale_value::Composite;
use subxt::transactions::DynamicPayload;
use subxt::utils::H256;
use subxt::SubstrateConfig;

use crate::client::{self, BlockRef, Chain};
use crate::error::ChainError;
use crate::wallet::Hotkey;

/// Signed extrinsics live this many blocks past the block they were built at.
pub const MORTALITY_BLOCKS: u64 = 64;

/// A call built with subxt's dynamic API against the node's own metadata.
pub type DynamicCall = DynamicPayload<Composite<()>>;

/// What signing produced.
#[derive(Debug, Clone)]
pub(crate) struct Signed {
    pub nonce: u64,
    /// The SCALE extrinsic, length prefix included.
    pub extrinsic: Vec<u8>,
    pub hash: Vec<u8>,
}

impl Chain {
    /// Signs `payload` with `hotkey`, mortal from `block`, with the account's nonce from the
    /// node. `what` names the call in errors.
    pub(crate) async fn sign_payload(
        &self,
        hotkey: &Hotkey,
        payload: &DynamicCall,
        what: &'static str,
        block: BlockRef,
    ) -> Result<Signed, ChainError> {
        let account = &hotkey.account_id();
        self.run("sign extrinsic", |client| async move {
            let at = client::at(&client, block).await?;
            let tx = at.tx();
            let nonce = tx
                .account_nonce(account)
                .await
                .map_err(|e| ChainError::Rpc(format!("account nonce: {e}")))?;
            let params = SubstrateExtrinsicParamsBuilder::<SubstrateConfig>::new()
                .nonce(nonce)
                .mortal_from_unchecked(MORTALITY_BLOCKS, block.number, H256(block.hash))
                .build();
            let mut signable = tx.create_signable_offline(payload, params).map_err(|e| {
                ChainError::Missing(format!("{what} as this runtime defines it: {e}"))
            })?;
            let signed = signable
                .sign(hotkey)
                .map_err(|e| ChainError::Missing(format!("signing {what}: {e}")))?;
            Ok(Signed {
                nonce,
                extrinsic: signed.encoded().to_vec(),
                hash: signed.hash().0.to_vec(),
            })
        })
        .await
    }

    /// Submits a signed extrinsic and waits (at most one RPC timeout) until the node accepts
    /// it into its pool. Not retried: resending is the caller's decision (same bytes, same
    /// nonce, so harmless). A transport failure is `Rpc`/`Timeout` (transient; the
    /// connection is dropped), a refusal by the node is `Rejected`.
    pub async fn submit_extrinsic(
        &self,
        block: BlockRef,
        extrinsic: &[u8],
    ) -> Result<[u8; 32], ChainError> {
        let timeout = self.policy().rpc_timeout;
        let client = self.client().await?;
        let at = client::at(&client, block).await?;
        let tx = at.tx().from_bytes(extrinsic.to_vec());
        let result = tokio::time::timeout(timeout, tx.submit()).await;
        let outcome = match result {
            Err(_) => Err(ChainError::Timeout(timeout)),
            Ok(Ok(hash)) => Ok(hash.0),
            Ok(Err(e)) => {
                let text = e.to_string();
                // The node's verdicts on the transaction itself; anything else is transport.
                let refused = [
                    "Invalid", "invalid", "Dropped", "dropped", "Usurped", "Error",
                ]
                .iter()
                .any(|word| text.contains(word));
                Err(if refused {
                    ChainError::Rejected(text)
                } else {
                    ChainError::Rpc(text)
                })
            }
        };
        if outcome.as_ref().is_err_and(ChainError::is_transient) {
            self.reset().await;
        }
        outcome
    }
}
