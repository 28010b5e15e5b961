//! The subnet's weight-setting rules, read from chain (SPEC §11): which version key to
//! send, whether commit-reveal is on (and which version the chain expects), the rate limit
//! and when this validator last set weights, plus the epoch facts the reveal round depends on.

use crate::client::{self, BlockRef, Chain};
use crate::drand::EpochState;
use crate::error::ChainError;
use crate::storage;

/// What the chain requires of a weights extrinsic for one subnet, at one block.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WeightSettings {
    pub netuid: u16,
    pub block: BlockRef,
    /// `WeightsVersionKey`: sent with every weights call; a mismatch is refused.
    pub version_key: u64,
    /// `CommitRevealWeightsEnabled`: when on, weights must be committed timelocked.
    pub commit_reveal: bool,
    /// `CommitRevealWeightsVersion`: the version a timelocked commit must declare.
    pub commit_reveal_version: u16,
    /// `WeightsSetRateLimit`, in blocks.
    pub rate_limit: u64,
    /// `Tempo`: blocks per epoch.
    pub tempo: u16,
    /// `RevealPeriodEpochs`: epochs between a commit and its reveal.
    pub reveal_period_epochs: u64,
    /// `LastUpdate`, indexed by uid: the block each uid last set weights.
    pub last_update: Vec<u64>,
    /// The stateful epoch counter, on runtimes that have one (absent at spec 393).
    pub epoch: Option<EpochState>,
}

/// Why weights cannot be set now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateLimited {
    #[error("rate limited: uid {uid} set weights at block {last}, next allowed at block {next}")]
    TooSoon { uid: u16, last: u64, next: u64 },
}

impl WeightSettings {
    /// The chain's rule: a uid may set weights when `now - last_update >= rate_limit` (or it
    /// never has).
    pub fn check_rate_limit(&self, uid: u16, now: u64) -> Result<(), RateLimited> {
        let last = self.last_update.get(usize::from(uid)).copied().unwrap_or(0);
        if last == 0 || now.saturating_sub(last) >= self.rate_limit {
            return Ok(());
        }
        Err(RateLimited::TooSoon {
            uid,
            last,
            next: last.saturating_add(self.rate_limit),
        })
    }
}

impl Chain {
    pub async fn weight_settings(
        &self,
        netuid: u16,
        block: BlockRef,
    ) -> Result<WeightSettings, ChainError> {
        self.run("weight settings", |client| async move {
            let at = client::at(&client, block).await?;
            const M: &str = "SubtensorModule";
            Ok(WeightSettings {
                netuid,
                block,
                version_key: storage::value(&at, M, "WeightsVersionKey", (netuid,)).await?,
                commit_reveal: storage::value(&at, M, "CommitRevealWeightsEnabled", (netuid,))
                    .await?,
                commit_reveal_version: storage::value(&at, M, "CommitRevealWeightsVersion", ())
                    .await?,
                rate_limit: storage::value(&at, M, "WeightsSetRateLimit", (netuid,)).await?,
                tempo: storage::value(&at, M, "Tempo", (netuid,)).await?,
                reveal_period_epochs: storage::value(&at, M, "RevealPeriodEpochs", (netuid,))
                    .await?,
                last_update: storage::value(&at, M, "LastUpdate", (netuid,)).await?,
                epoch: epoch_state(&at, netuid).await?,
            })
        })
        .await
    }
}

/// The stateful epoch items, if this runtime has them (all or nothing).
async fn epoch_state(at: &client::AtBlock, netuid: u16) -> Result<Option<EpochState>, ChainError> {
    const M: &str = "SubtensorModule";
    let index: Option<u64> =
        storage::value_if_present(at, M, "SubnetEpochIndex", (netuid,)).await?;
    let Some(subnet_epoch_index) = index else {
        return Ok(None);
    };
    Ok(Some(EpochState {
        last_epoch_block: storage::value(at, M, "LastEpochBlock", (netuid,)).await?,
        pending_epoch_at: storage::value(at, M, "PendingEpochAt", (netuid,)).await?,
        subnet_epoch_index,
        blocks_since_last_step: storage::value(at, M, "BlocksSinceLastStep", (netuid,)).await?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_follows_the_chain_rule() {
        let settings = WeightSettings {
            netuid: 1,
            block: BlockRef {
                number: 0,
                hash: [0; 32],
            },
            version_key: 0,
            commit_reveal: false,
            commit_reveal_version: 4,
            rate_limit: 100,
            tempo: 360,
            reveal_period_epochs: 1,
            last_update: vec![0, 1000],
            epoch: None,
        };
        assert_eq!(settings.check_rate_limit(0, 5), Ok(()), "never set");
        assert_eq!(
            settings.check_rate_limit(7, 5),
            Ok(()),
            "unknown uid counts as never"
        );
        assert_eq!(settings.check_rate_limit(1, 1100), Ok(()));
        assert_eq!(
            settings.check_rate_limit(1, 1099),
            Err(RateLimited::TooSoon {
                uid: 1,
                last: 1000,
                next: 1100
            })
        );
    }
}
