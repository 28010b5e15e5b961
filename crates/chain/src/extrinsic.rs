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

/// A signed extrinsic with the call it carries, ready to submit or to print in a dry run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SignedExtrinsic<C> {
    pub call: C,
    pub signer: String,
    pub nonce: u64,
    /// The block its mortality counts from.
    pub block: BlockRef,
    /// The SCALE extrinsic, length prefix included, exactly as it would be sent.
    #[serde(serialize_with = "crate::serde_fmt::hex")]
    pub extrinsic: Vec<u8>,
    #[serde(serialize_with = "crate::serde_fmt::hex")]
    pub hash: Vec<u8>,
}

impl Chain {
    /// Signs `payload` (the dynamic form of `call`) with `hotkey`, mortal from `block`, with
    /// the account's nonce from the node. `what` names the call in errors.
    pub(crate) async fn sign_call<C>(
        &self,
        hotkey: &Hotkey,
        call: C,
        payload: &DynamicCall,
        what: &'static str,
        block: BlockRef,
    ) -> Result<SignedExtrinsic<C>, ChainError> {
        let account = &hotkey.account_id();
        let (nonce, extrinsic, hash) = self
            .run("sign extrinsic", |client| async move {
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
                Ok((nonce, signed.encoded().to_vec(), signed.hash().0.to_vec()))
            })
            .await?;
        Ok(SignedExtrinsic {
            call,
            signer: account.to_string(),
            nonce,
            block,
            extrinsic,
            hash,
        })
    }

    /// Submits `signed`; see [`Chain::submit_extrinsic`].
    pub async fn submit<C>(&self, signed: &SignedExtrinsic<C>) -> Result<[u8; 32], ChainError> {
        self.submit_extrinsic(signed.block, &signed.extrinsic).await
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
