//! Setting weights (SPEC §11): `set_weights` when commit-reveal is off, and
//! `commit_timelocked_mechanism_weights` (commit-reveal v4) when it is on, where the chain
//! decrypts the commitment itself once drand publishes the reveal round's signature.
//!
//! Signing and submitting are [`crate::extrinsic`]'s.

use cacheon_core::WeightVector;
use parity_scale_codec::Encode;
use subxt::utils::AccountId32;

use crate::client::{BlockRef, Chain};
use crate::drand::{self, Quicknet};
use crate::error::ChainError;
use crate::extrinsic::{DynamicCall, SignedExtrinsic};
use crate::params::WeightSettings;
use crate::tlock;
use crate::wallet::Hotkey;

/// The main mechanism: Cacheon has one.
pub const MAIN_MECHANISM: u8 = 0;

/// A weights extrinsic, before signing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum WeightsCall {
    /// `SubtensorModule.set_weights(netuid, dests, weights, version_key)`.
    SetWeights {
        netuid: u16,
        dests: Vec<u16>,
        weights: Vec<u16>,
        version_key: u64,
    },
    /// `SubtensorModule.commit_timelocked_mechanism_weights(netuid, mecid, commit,
    /// reveal_round, commit_reveal_version)`.
    CommitTimelockedMechanismWeights {
        netuid: u16,
        mecid: u8,
        #[serde(serialize_with = "crate::serde_fmt::hex")]
        commit: Vec<u8>,
        reveal_round: u64,
        commit_reveal_version: u16,
    },
}

impl WeightsCall {
    pub fn name(&self) -> &'static str {
        match self {
            Self::SetWeights { .. } => "set_weights",
            Self::CommitTimelockedMechanismWeights { .. } => "commit_timelocked_mechanism_weights",
        }
    }

    fn payload(&self) -> DynamicCall {
        use subxt::ext::scale_value::{Composite, Value};
        let u16s =
            |xs: &[u16]| Value::unnamed_composite(xs.iter().map(|x| Value::u128(u128::from(*x))));
        let fields = match self {
            Self::SetWeights {
                netuid,
                dests,
                weights,
                version_key,
            } => vec![
                Value::u128(u128::from(*netuid)),
                u16s(dests),
                u16s(weights),
                Value::u128(u128::from(*version_key)),
            ],
            Self::CommitTimelockedMechanismWeights {
                netuid,
                mecid,
                commit,
                reveal_round,
                commit_reveal_version,
            } => vec![
                Value::u128(u128::from(*netuid)),
                Value::u128(u128::from(*mecid)),
                Value::from_bytes(commit),
                Value::u128(u128::from(*reveal_round)),
                Value::u128(u128::from(*commit_reveal_version)),
            ],
        };
        subxt::dynamic::tx("SubtensorModule", self.name(), Composite::unnamed(fields))
    }
}

/// The plaintext of a commit-reveal v4 commitment, which the chain decodes at reveal time:
/// SCALE `{hotkey: Vec<u8>, uids: Vec<u16>, values: Vec<u16>, version_key: u64}`.
#[derive(Debug, Clone, PartialEq, Eq, Encode, parity_scale_codec::Decode)]
pub struct CommitPayload {
    pub hotkey: Vec<u8>,
    pub uids: Vec<u16>,
    pub values: Vec<u16>,
    pub version_key: u64,
}

/// Chooses the call the chain's settings require for `weights`, encrypting them to the
/// right drand round when commit-reveal is on. `head` is the node's best block and
/// `now_unix` wall-clock seconds.
pub fn weights_call(
    settings: &WeightSettings,
    hotkey: &AccountId32,
    weights: &WeightVector,
    head: u64,
    now_unix: f64,
    quicknet: &Quicknet,
) -> Result<WeightsCall, ChainError> {
    if !settings.commit_reveal {
        return Ok(WeightsCall::SetWeights {
            netuid: settings.netuid,
            dests: weights.uids.clone(),
            weights: weights.weights.clone(),
            version_key: settings.version_key,
        });
    }
    let reveal_round = drand::reveal_round(settings, head, now_unix, quicknet)?;
    let payload = CommitPayload {
        hotkey: hotkey.0.to_vec(),
        uids: weights.uids.clone(),
        values: weights.weights.clone(),
        version_key: settings.version_key,
    };
    let commit = tlock::encrypt(
        &quicknet.public_key,
        reveal_round,
        &payload.encode(),
        &mut rand_core::OsRng,
    )
    .map_err(|e| ChainError::decode("timelock encryption", e))?;
    Ok(WeightsCall::CommitTimelockedMechanismWeights {
        netuid: settings.netuid,
        mecid: MAIN_MECHANISM,
        commit,
        reveal_round,
        commit_reveal_version: settings.commit_reveal_version,
    })
}

/// A signed weights extrinsic.
pub type SignedWeights = SignedExtrinsic<WeightsCall>;

impl Chain {
    /// Signs `call` with `hotkey` at `block` (the account's nonce comes from the node).
    pub async fn sign_weights(
        &self,
        hotkey: &Hotkey,
        call: WeightsCall,
        block: BlockRef,
    ) -> Result<SignedWeights, ChainError> {
        let (payload, what) = (call.payload(), call.name());
        self.sign_call(hotkey, call, &payload, what, block).await
    }
}

/// Whether to send the signed extrinsic or only build and log it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submit {
    Yes,
    DryRun,
}

/// What [`Chain::set_weights`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WeightsOutcome {
    pub uid: u16,
    /// The subnet's `WeightsVersionKey` the weights were set with.
    pub version_key: u64,
    pub signed: SignedWeights,
    /// The extrinsic hash the node accepted; `None` in a dry run.
    #[serde(serialize_with = "crate::serde_fmt::hex_opt")]
    pub submitted: Option<[u8; 32]>,
}

impl Chain {
    /// Sets `weights` on `netuid` as the chain currently requires: checks registration and
    /// the rate limit at the finalized block, picks `set_weights` or a timelocked commit,
    /// signs, logs, and submits unless `submit` is [`Submit::DryRun`].
    pub async fn set_weights(
        &self,
        hotkey: &Hotkey,
        netuid: u16,
        weights: &WeightVector,
        quicknet: &Quicknet,
        submit: Submit,
    ) -> Result<WeightsOutcome, ChainError> {
        let block = self.finalized().await?;
        let account = hotkey.account_id();
        let uid = self.registered_uid(netuid, &account, block).await?;
        let settings = self.weight_settings(netuid, block).await?;
        settings.check_rate_limit(uid, block.number)?;
        // A clock before 1970 reads as 0, which reveal_round refuses.
        let now = drand::unix_now().unwrap_or_default();
        let head = self.best_number().await?;
        let call = weights_call(&settings, &account, weights, head, now, quicknet)?;
        let signed = self.sign_weights(hotkey, call, block).await?;
        tracing::info!(
            netuid,
            uid,
            call = signed.call.name(),
            block = block.number,
            nonce = signed.nonce,
            dry_run = submit == Submit::DryRun,
            extrinsic = %format!("0x{}", hex::encode(&signed.extrinsic)),
            "weights extrinsic built"
        );
        let submitted = match submit {
            Submit::DryRun => None,
            Submit::Yes => Some(self.submit(&signed).await?),
        };
        Ok(WeightsOutcome {
            uid,
            version_key: settings.version_key,
            signed,
            submitted,
        })
    }
}
