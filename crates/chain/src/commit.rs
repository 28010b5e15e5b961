//! Publishing a miner's commitment (SPEC §3 seen from the miner's side):
//! `Commitments.set_commitment` with the `{"image", "digest"}` JSON either timelock-encrypted
//! to a future drand round, which the chain decrypts and moves to `RevealedCommitments` once
//! that round's pulse arrives, or plain (`CommitmentOf`, public at once).
//!
//! Timelocked is the default because a plain commitment shows the digest to everyone from
//! the block it lands in, and the copy rule only protects the earlier commit block: hiding
//! the image until the reveal leaves a copier nothing to copy. The commitment is checked
//! with the validator's own decoder before anything is signed, so what a miner sends is
//! exactly what every validator accepts.

use cacheon_core::{decode_commitment, Commitment, CommitmentError};
use parity_scale_codec::Encode;
use rand_core::{CryptoRng, RngCore};
use subxt::ext::scale_value::{Composite, Value};

use crate::client::{BlockRef, Chain};
use crate::drand::{self, Quicknet, BLOCK_TIME_SECS};
use crate::error::ChainError;
use crate::extrinsic::{DynamicCall, SignedExtrinsic};
use crate::tlock;
use crate::wallet::Hotkey;
use crate::weights::Submit;

/// `Data::Raw0..=Raw128` hold at most this many bytes; longer plain data is `BigRaw`.
pub const MAX_RAW_BYTES: usize = 128;
/// The pallet's bound on a timelocked ciphertext.
pub const MAX_TIMELOCK_BYTES: usize = 1024;

/// When the commitment becomes public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reveal {
    /// Timelocked, revealed by the chain about this many blocks from now.
    AfterBlocks(u64),
    /// Plain: public from the block it lands in.
    Now,
}

/// A `Commitments.set_commitment` call, before signing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CommitmentCall {
    /// One `Data::TimelockEncrypted { encrypted, reveal_round }` field.
    TimelockEncrypted {
        netuid: u16,
        #[serde(serialize_with = "crate::serde_fmt::hex")]
        encrypted: Vec<u8>,
        reveal_round: u64,
    },
    /// One `Data::Raw{n}` field (n <= 128) or `Data::BigRaw`.
    Raw {
        netuid: u16,
        #[serde(serialize_with = "crate::serde_fmt::hex")]
        data: Vec<u8>,
    },
}

/// Why a commitment was not built.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The validators would reject it; nothing is signed.
    #[error("validators would reject this commitment ({}): {}", .0.code(), .0)]
    Invalid(#[from] CommitmentError),
    #[error("timelock encryption failed: {0}")]
    Encrypt(#[from] tlock::TlockError),
    /// A round computed from a clock before 1970 would never be revealed.
    #[error("the system clock reads before 1970")]
    Clock,
    #[error("the ciphertext is {0} bytes, over the chain's {MAX_TIMELOCK_BYTES}")]
    TooLarge(usize),
}

/// The exact bytes committed: compact JSON with the two fields validators read.
pub fn commitment_json(commitment: &Commitment) -> String {
    serde_json::json!({
        "image": commitment.image.to_string(),
        "digest": commitment.digest.to_string(),
    })
    .to_string()
}

/// Checks `image` and `digest` with the validators' own decoder (SPEC §3).
pub fn validate(image: &str, digest: &str) -> Result<Commitment, CommitmentError> {
    let json = serde_json::json!({ "image": image, "digest": digest }).to_string();
    decode_commitment(json.as_bytes())
}

impl CommitmentCall {
    /// The timelocked call: the JSON as a SCALE string (what the reveal stores, and what
    /// bittensor's own tools encrypt), encrypted to `reveal_round`.
    pub fn timelocked(
        netuid: u16,
        commitment: &Commitment,
        reveal_round: u64,
        quicknet: &Quicknet,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Self, CommitError> {
        let plaintext = commitment_json(commitment).encode();
        let encrypted = tlock::encrypt(&quicknet.public_key, reveal_round, &plaintext, rng)?;
        if encrypted.len() > MAX_TIMELOCK_BYTES {
            return Err(CommitError::TooLarge(encrypted.len()));
        }
        Ok(Self::TimelockEncrypted {
            netuid,
            encrypted,
            reveal_round,
        })
    }

    /// The plain call: the JSON bytes as they are.
    pub fn plain(netuid: u16, commitment: &Commitment) -> Self {
        Self::Raw {
            netuid,
            data: commitment_json(commitment).into_bytes(),
        }
    }

    pub fn netuid(&self) -> u16 {
        match self {
            Self::TimelockEncrypted { netuid, .. } | Self::Raw { netuid, .. } => *netuid,
        }
    }

    fn payload(&self) -> DynamicCall {
        let data = match self {
            Self::TimelockEncrypted {
                encrypted,
                reveal_round,
                ..
            } => Value::named_variant(
                "TimelockEncrypted",
                [
                    ("encrypted", Value::from_bytes(encrypted)),
                    ("reveal_round", Value::u128(u128::from(*reveal_round))),
                ],
            ),
            Self::Raw { data, .. } if data.len() <= MAX_RAW_BYTES => {
                Value::unnamed_variant(format!("Raw{}", data.len()), [Value::from_bytes(data)])
            }
            Self::Raw { data, .. } => Value::unnamed_variant("BigRaw", [Value::from_bytes(data)]),
        };
        let info = Value::named_composite([("fields", Value::unnamed_composite([data]))]);
        subxt::dynamic::tx(
            "Commitments",
            "set_commitment",
            Composite::unnamed([Value::u128(u128::from(self.netuid())), info]),
        )
    }
}

/// A signed commitment extrinsic.
pub type SignedCommitment = SignedExtrinsic<CommitmentCall>;

/// What [`Chain::commit`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CommitOutcome {
    pub uid: u16,
    /// What was committed, in clear.
    pub commitment: String,
    /// The block the chain should reveal it at (its submission id's block); `None` for a
    /// plain commitment, whose id takes the block it lands in.
    pub expected_reveal_block: Option<u64>,
    pub signed: SignedCommitment,
    /// The extrinsic hash the node accepted; `None` in a dry run.
    #[serde(serialize_with = "crate::serde_fmt::hex_opt")]
    pub submitted: Option<[u8; 32]>,
}

/// The drand round to encrypt to so the chain reveals the commitment about `blocks` blocks
/// after `now_unix`: the round drand publishes then (bittensor's `get_encrypted_commitment`
/// computes the same).
pub fn reveal_round(quicknet: &Quicknet, now_unix: f64, blocks: u64) -> u64 {
    quicknet.round_at(now_unix + blocks as f64 * BLOCK_TIME_SECS)
}

impl Chain {
    /// Signs `call` with `hotkey` at `block` (the account's nonce comes from the node).
    pub async fn sign_commitment(
        &self,
        hotkey: &Hotkey,
        call: CommitmentCall,
        block: BlockRef,
    ) -> Result<SignedCommitment, ChainError> {
        let payload = call.payload();
        self.sign_call(hotkey, call, &payload, "set_commitment", block)
            .await
    }

    /// Commits `commitment` for `hotkey` on `netuid`: checks the hotkey is registered,
    /// builds the call (`reveal` decides timelocked or plain), signs it at the finalized
    /// block and submits it unless `submit` is [`Submit::DryRun`].
    pub async fn commit(
        &self,
        hotkey: &Hotkey,
        netuid: u16,
        commitment: &Commitment,
        reveal: Reveal,
        quicknet: &Quicknet,
        submit: Submit,
    ) -> Result<CommitOutcome, ChainError> {
        let block = self.finalized().await?;
        let uid = self
            .registered_uid(netuid, &hotkey.account_id(), block)
            .await?;
        let (call, expected_reveal_block) = match reveal {
            Reveal::Now => (CommitmentCall::plain(netuid, commitment), None),
            Reveal::AfterBlocks(blocks) => {
                let head = self.best_number().await?;
                let now = drand::unix_now().ok_or(CommitError::Clock)?;
                let round = reveal_round(quicknet, now, blocks);
                let call = CommitmentCall::timelocked(
                    netuid,
                    commitment,
                    round,
                    quicknet,
                    &mut rand_core::OsRng,
                )?;
                (call, Some(head.saturating_add(blocks)))
            }
        };
        let signed = self.sign_commitment(hotkey, call, block).await?;
        tracing::info!(
            netuid,
            uid,
            block = block.number,
            nonce = signed.nonce,
            dry_run = submit == Submit::DryRun,
            "commitment extrinsic built"
        );
        let submitted = match submit {
            Submit::DryRun => None,
            Submit::Yes => Some(self.submit(&signed).await?),
        };
        Ok(CommitOutcome {
            uid,
            commitment: commitment_json(commitment),
            expected_reveal_block,
            signed,
            submitted,
        })
    }
}
