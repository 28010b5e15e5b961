//! Reading miners' commitments (SPEC §3): every revealed timelocked commitment of a netuid
//! (`Commitments.RevealedCommitments`, one prefix iteration) and every plain one
//! (`Commitments.CommitmentOf`, its `Raw`/`BigRaw` fields), as raw bytes with the block
//! they count from. Decoding the bytes into a commitment is core's job
//! ([`cacheon_core::decode_commitment`]); this module only gets them off the chain.

use std::collections::BTreeMap;

use cacheon_core::{decode_commitment, Commitment, CommitmentError, SubmissionId};
use subxt::ext::scale_value::{Composite, Primitive, Value, ValueDef};
use subxt::utils::AccountId32;

use crate::client::{self, BlockRef, Chain};
use crate::error::ChainError;
use crate::storage;

/// Where a commitment was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitmentSource {
    /// A plain commitment (`CommitmentOf`), public from the block it was made.
    Plain,
    /// A timelocked commitment the chain revealed (`RevealedCommitments`).
    Revealed,
}

/// One commitment as found on chain, not yet decoded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ObservedCommitment {
    #[serde(serialize_with = "crate::serde_fmt::ss58")]
    pub hotkey: AccountId32,
    /// The commit block of a plain commitment, the reveal block of a revealed one.
    pub block: u64,
    pub source: CommitmentSource,
    /// The committed bytes exactly as stored (a revealed plaintext still has its SCALE prefix).
    #[serde(serialize_with = "crate::serde_fmt::hex")]
    pub raw: Vec<u8>,
}

impl ObservedCommitment {
    /// `{hotkey_ss58}:{block}` (SPEC §2).
    pub fn submission_id(&self) -> SubmissionId {
        SubmissionId::new(self.hotkey.to_string(), self.block)
    }

    /// Lenient decoding, strict validation (core's rules).
    pub fn decode(&self) -> Result<Commitment, CommitmentError> {
        decode_commitment(&self.raw)
    }
}

/// The latest commitment of each hotkey (SPEC §3: latest wins), ordered by hotkey. At equal
/// blocks a revealed commitment wins over a plain one, so the choice never depends on order.
pub fn latest_per_hotkey(observed: &[ObservedCommitment]) -> Vec<&ObservedCommitment> {
    let mut latest: BTreeMap<&[u8; 32], &ObservedCommitment> = BTreeMap::new();
    for c in observed {
        let slot = latest.entry(&c.hotkey.0).or_insert(c);
        if (c.block, c.source, &c.raw) > (slot.block, slot.source, &slot.raw) {
            *slot = c;
        }
    }
    latest.into_values().collect()
}

impl Chain {
    /// Every commitment of `netuid` at `block`, revealed and plain. All or nothing: a scan
    /// that fails part-way is retried from the start and never returns a partial list.
    pub async fn commitments(
        &self,
        netuid: u16,
        block: BlockRef,
    ) -> Result<Vec<ObservedCommitment>, ChainError> {
        self.run("commitment scan", |client| async move {
            let at = client::at(&client, block).await?;
            let mut observed = revealed(&at, netuid).await?;
            observed.extend(plain(&at, netuid).await?);
            Ok(observed)
        })
        .await
    }
}

/// One revealed plaintext and the block it was revealed at, as the pallet stores it.
type Reveal = (Vec<u8>, u64);

async fn revealed(
    at: &client::AtBlock,
    netuid: u16,
) -> Result<Vec<ObservedCommitment>, ChainError> {
    let hotkeys: Vec<(AccountId32, Vec<Reveal>)> =
        storage::entries(at, "Commitments", "RevealedCommitments", netuid).await?;
    Ok(hotkeys
        .into_iter()
        .flat_map(|(hotkey, reveals)| {
            reveals
                .into_iter()
                .map(move |(raw, block)| ObservedCommitment {
                    hotkey,
                    block,
                    source: CommitmentSource::Revealed,
                    raw,
                })
        })
        .collect())
}

async fn plain(at: &client::AtBlock, netuid: u16) -> Result<Vec<ObservedCommitment>, ChainError> {
    const ENTRY: &str = "CommitmentOf";
    let registrations: Vec<(AccountId32, Value)> =
        storage::entries(at, "Commitments", ENTRY, netuid).await?;
    let mut out = Vec::new();
    for (hotkey, registration) in registrations {
        let (block, raw) = registration_fields(&registration).ok_or_else(|| {
            ChainError::decode(ENTRY, "no `block` or `info.fields` in the registration")
        })?;
        // A registration that holds only hashes or timelocked data has nothing plain to read.
        if let Some(raw) = raw {
            out.push(ObservedCommitment {
                hotkey,
                block,
                source: CommitmentSource::Plain,
                raw,
            });
        }
    }
    Ok(out)
}

/// `(block, concatenated Raw/BigRaw bytes)` of a `Registration`. Several raw fields are
/// joined in order: tools split long commitments over fields.
fn registration_fields(registration: &Value) -> Option<(u64, Option<Vec<u8>>)> {
    let block = as_u64(field(registration, "block")?)?;
    let fields = field(field(registration, "info")?, "fields")?;
    let mut raw: Option<Vec<u8>> = None;
    for data in composite_values(fields)? {
        let ValueDef::Variant(variant) = &data.value else {
            continue;
        };
        if variant.name.starts_with("Raw") || variant.name == "BigRaw" {
            let bytes = bytes_of(&variant.values)?;
            raw.get_or_insert_with(Vec::new).extend(bytes);
        }
    }
    Some((block, raw))
}

fn field<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    match &value.value {
        ValueDef::Composite(Composite::Named(fields)) => {
            fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
        }
        // Newtype wrappers (`BoundedVec(..)`) decode as one unnamed field.
        ValueDef::Composite(Composite::Unnamed(fields)) if fields.len() == 1 => {
            field(&fields[0], name)
        }
        _ => None,
    }
}

/// The items of a sequence, seeing through single-field wrappers such as `BoundedVec`.
fn composite_values(value: &Value) -> Option<Vec<&Value>> {
    match &value.value {
        ValueDef::Composite(c) => {
            let values: Vec<&Value> = c.values().collect();
            match values.as_slice() {
                [inner] if matches!(inner.value, ValueDef::Composite(_)) => composite_values(inner),
                _ => Some(values),
            }
        }
        _ => None,
    }
}

/// Flattens a byte array (possibly wrapped) into bytes; `None` if any item is not a u8.
fn bytes_of(composite: &Composite<()>) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for v in composite.values() {
        match &v.value {
            ValueDef::Primitive(Primitive::U128(b)) => out.push(u8::try_from(*b).ok()?),
            ValueDef::Composite(inner) => out.extend(bytes_of(inner)?),
            _ => return None,
        }
    }
    Some(out)
}

fn as_u64(value: &Value) -> Option<u64> {
    match &value.value {
        ValueDef::Primitive(Primitive::U128(n)) => u64::try_from(*n).ok(),
        ValueDef::Composite(c) => match c.values().collect::<Vec<_>>().as_slice() {
            [inner] => as_u64(inner),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(key: u8, block: u64, source: CommitmentSource) -> ObservedCommitment {
        ObservedCommitment {
            hotkey: AccountId32([key; 32]),
            block,
            source,
            raw: vec![key, block as u8],
        }
    }

    #[test]
    fn latest_commitment_per_hotkey_wins_whatever_the_order() {
        let all = vec![
            obs(1, 10, CommitmentSource::Revealed),
            obs(2, 7, CommitmentSource::Plain),
            obs(1, 30, CommitmentSource::Plain),
            obs(1, 20, CommitmentSource::Revealed),
            obs(2, 7, CommitmentSource::Revealed),
        ];
        let mut reversed = all.clone();
        reversed.reverse();
        for list in [all, reversed] {
            let latest = latest_per_hotkey(&list);
            let got: Vec<(u8, u64, CommitmentSource)> = latest
                .iter()
                .map(|c| (c.hotkey.0[0], c.block, c.source))
                .collect();
            assert_eq!(
                got,
                [
                    (1, 30, CommitmentSource::Plain),
                    (2, 7, CommitmentSource::Revealed)
                ]
            );
        }
    }
}
