//! The subnet's metagraph (SPEC §3): which hotkey holds which uid, and who may validate.

use subxt::utils::AccountId32;

use crate::client::{self, BlockRef, Chain};
use crate::error::ChainError;
use crate::storage;

/// One registered neuron.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Neuron {
    pub uid: u16,
    #[serde(serialize_with = "crate::serde_fmt::ss58")]
    pub hotkey: AccountId32,
    pub validator_permit: bool,
}

/// Every uid of a subnet at one block; `neurons[uid].uid == uid`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Metagraph {
    pub netuid: u16,
    pub block: BlockRef,
    pub neurons: Vec<Neuron>,
}

impl Metagraph {
    pub fn uid_of(&self, hotkey: &AccountId32) -> Option<u16> {
        self.neurons
            .iter()
            .find(|n| &n.hotkey == hotkey)
            .map(|n| n.uid)
    }

    pub fn neuron(&self, uid: u16) -> Option<&Neuron> {
        self.neurons.get(usize::from(uid))
    }
}

impl Chain {
    /// `Keys(netuid, uid)` for `uid < SubnetworkN(netuid)` (one prefix iteration) and the
    /// validator permits, all at `block`.
    pub async fn metagraph(&self, netuid: u16, block: BlockRef) -> Result<Metagraph, ChainError> {
        self.run("metagraph", |client| async move {
            let at = client::at(&client, block).await?;
            let n: u16 = storage::value(&at, "SubtensorModule", "SubnetworkN", (netuid,)).await?;
            let permits: Vec<bool> =
                storage::value(&at, "SubtensorModule", "ValidatorPermit", (netuid,)).await?;
            let mut hotkeys: Vec<Option<AccountId32>> = vec![None; usize::from(n)];
            let keys: Vec<(u16, AccountId32)> =
                storage::entries(&at, "SubtensorModule", "Keys", netuid).await?;
            for (uid, hotkey) in keys {
                // Keys beyond SubnetworkN are stale leftovers of a shrunk subnet.
                if let Some(slot) = hotkeys.get_mut(usize::from(uid)) {
                    *slot = Some(hotkey);
                }
            }
            let neurons = hotkeys
                .into_iter()
                .enumerate()
                .map(|(i, hotkey)| {
                    let uid = u16::try_from(i).unwrap_or(u16::MAX);
                    let hotkey = hotkey.ok_or_else(|| {
                        ChainError::decode(
                            "metagraph",
                            format!("uid {uid} < SubnetworkN {n} has no hotkey"),
                        )
                    })?;
                    let validator_permit = permits.get(i).copied().unwrap_or(false);
                    Ok(Neuron {
                        uid,
                        hotkey,
                        validator_permit,
                    })
                })
                .collect::<Result<_, ChainError>>()?;
            Ok(Metagraph {
                netuid,
                block,
                neurons,
            })
        })
        .await
    }

    /// Checks the validator's own hotkey at start: registered (else an error) and, with a
    /// warning if not, holding a validator permit (without one the chain ignores its weights).
    pub async fn check_validator(
        &self,
        netuid: u16,
        hotkey: &AccountId32,
    ) -> Result<(u16, bool), ChainError> {
        let block = self.finalized().await?;
        let uid = self.registered_uid(netuid, hotkey, block).await?;
        let permits: Vec<bool> = self
            .run("validator permit", |client| async move {
                let at = client::at(&client, block).await?;
                storage::value(&at, "SubtensorModule", "ValidatorPermit", (netuid,)).await
            })
            .await?;
        let permit = permits.get(usize::from(uid)).copied().unwrap_or(false);
        if !permit {
            tracing::warn!(netuid, uid, hotkey = %hotkey, "the hotkey has no validator permit: the chain will ignore its weights until it earns one");
        }
        Ok((uid, permit))
    }

    /// The uid `hotkey` holds on `netuid`; `NotRegistered` if it holds none.
    pub async fn registered_uid(
        &self,
        netuid: u16,
        hotkey: &AccountId32,
        block: BlockRef,
    ) -> Result<u16, ChainError> {
        self.uid_of(netuid, hotkey, block)
            .await?
            .ok_or_else(|| ChainError::NotRegistered {
                hotkey: hotkey.to_string(),
                netuid,
            })
    }

    /// The uid `hotkey` holds on `netuid`, if it is registered.
    pub async fn uid_of(
        &self,
        netuid: u16,
        hotkey: &AccountId32,
        block: BlockRef,
    ) -> Result<Option<u16>, ChainError> {
        self.run("uid lookup", |client| async move {
            let at = client::at(&client, block).await?;
            storage::optional(&at, "SubtensorModule", "Uids", (netuid, *hotkey)).await
        })
        .await
    }
}
