//! drand quicknet, the beacon commit-reveal v4 is timed by, and the reveal round a weights
//! commit must be encrypted to.
//!
//! The chain reveals a commit in the first block of the epoch `RevealPeriodEpochs` after the
//! commit's epoch, using the drand pulse it has stored by then. Encrypting to an earlier
//! round would let anyone read the weights before the reveal; to a later one, the chain
//! would not have the pulse yet and would drop the commit. So the round is predicted from
//! the block schedule: the time of the first reveal block plus a few blocks of safety,
//! turned into a drand round. Two epoch models exist: older runtimes (e.g. spec 393) count
//! epochs arithmetically from the block number; newer ones keep a per-subnet epoch counter
//! (`SubnetEpochIndex` and friends) that a manual trigger or a tempo change can shift. Both
//! are implemented, matching `bittensor-drand` (v1 in 1.3, v2 in 2.0).

use ark_bls12_381::G2Affine;

use crate::params::WeightSettings;
use crate::tlock::{self, TlockError};

/// Chain constants: the average block time and the safety margin in blocks.
pub const BLOCK_TIME_SECS: f64 = 12.0;
pub const SECURITY_BLOCK_OFFSET: u64 = 3;
/// `MAX_TEMPO`: an epoch runs at the latest after this many blocks.
pub const MAX_TEMPO: u64 = 50_400;

/// drand's quicknet beacon.
#[derive(Debug, Clone)]
pub struct Quicknet {
    pub public_key: G2Affine,
    pub genesis_time: u64,
    pub period_secs: u64,
}

/// quicknet's published public key (G2).
pub const QUICKNET_PUBLIC_KEY: &str = "83cf0f2896adee7eb8b5f01fcad3912212c437e0073e911fb90022d3e760183c8c4b450b6a0a6c3ac6a5776a2d1064510d1fec758c921cc22b0e17e63aaf4bcb5ed66304de9cf809bd274ca73bab4af5a6e9c76a4bc09e76eae8991ef5ece45a";
pub const QUICKNET_GENESIS: u64 = 1_692_803_367;
pub const QUICKNET_PERIOD: u64 = 3;

impl Quicknet {
    pub fn mainnet() -> Result<Self, TlockError> {
        let bytes =
            hex::decode(QUICKNET_PUBLIC_KEY).map_err(|_| TlockError::BadPoint("G2 public key"))?;
        Ok(Self {
            public_key: tlock::public_key(&bytes)?,
            genesis_time: QUICKNET_GENESIS,
            period_secs: QUICKNET_PERIOD,
        })
    }

    /// The round drand publishes at `unix_secs` (fractional), at least 1.
    pub fn round_at(&self, unix_secs: f64) -> u64 {
        let since = (unix_secs - self.genesis_time as f64) / self.period_secs as f64;
        // Non-negative and finite by the max; the cast floors.
        since.max(1.0) as u64
    }
}

/// Wall-clock seconds since 1970 (fractional); `None` for a clock set before 1970.
pub fn unix_now() -> Option<f64> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs_f64())
}

/// The per-subnet epoch counter of newer runtimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct EpochState {
    pub last_epoch_block: u64,
    pub pending_epoch_at: u64,
    pub subnet_epoch_index: u64,
    pub blocks_since_last_step: u64,
}

/// Why no reveal round can be predicted: then nothing is committed (a commit the chain never
/// reveals, or one readable early, is worse than none).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevealError {
    #[error("the subnet's tempo is 0: it runs no epochs, so a commit would never be revealed")]
    TempoIsZero,
    #[error("no epoch boundary found within the simulation bound")]
    BoundExceeded,
    #[error("block arithmetic overflows with these chain values")]
    Overflow,
    #[error("the system clock is before drand's genesis; fix the clock")]
    ClockBeforeGenesis,
}

/// The drand round to encrypt a commit made now (`now_unix`) to. `settings` were read at a
/// finalized block; `head` is the node's best block, after which the commit lands. The
/// stateful epoch counter is advanced from the finalized block to the head first, so an
/// epoch that starts in between is accounted for.
pub fn reveal_round(
    settings: &WeightSettings,
    head: u64,
    now_unix: f64,
    quicknet: &Quicknet,
) -> Result<u64, RevealError> {
    // `is_none_or`-style: NaN compares as None and is refused too.
    if now_unix
        .partial_cmp(&(quicknet.genesis_time as f64))
        .is_none_or(|o| o == std::cmp::Ordering::Less)
    {
        return Err(RevealError::ClockBeforeGenesis);
    }
    let head = head.max(settings.block.number);
    let first_reveal_block = match settings.epoch {
        Some(state) => {
            let state = advance(state, settings.tempo, settings.block.number, head)?;
            first_reveal_block_stateful(state, settings.tempo, head, settings.reveal_period_epochs)?
        }
        None => first_reveal_block_legacy(
            settings.netuid,
            settings.tempo,
            head,
            settings.reveal_period_epochs,
        )
        .ok_or(RevealError::Overflow)?,
    };
    let blocks = first_reveal_block
        .checked_add(SECURITY_BLOCK_OFFSET)
        .ok_or(RevealError::Overflow)?
        .saturating_sub(head);
    Ok(quicknet.round_at(now_unix + blocks as f64 * BLOCK_TIME_SECS))
}

/// Older runtimes: `epoch(b) = (b + netuid + 1) / (tempo + 1)`. `None` on overflow.
pub fn first_reveal_block_legacy(
    netuid: u16,
    tempo: u16,
    current_block: u64,
    period_epochs: u64,
) -> Option<u64> {
    let tp1 = u64::from(tempo) + 1;
    let np1 = u64::from(netuid) + 1;
    let epoch = current_block.checked_add(np1)? / tp1;
    epoch
        .checked_add(period_epochs)?
        .checked_mul(tp1)?
        .checked_sub(np1)
}

fn should_run(s: &EpochState, tempo: u64, block: u64) -> bool {
    (s.pending_epoch_at > 0 && block >= s.pending_epoch_at)
        || s.blocks_since_last_step > MAX_TEMPO
        || block.saturating_sub(s.last_epoch_block) >= tempo
}

/// The chain's per-block step of the epoch counter.
fn step(s: &mut EpochState, tempo: u64, block: u64) {
    s.blocks_since_last_step = s.blocks_since_last_step.saturating_add(1);
    if should_run(s, tempo, block) {
        s.last_epoch_block = block;
        s.pending_epoch_at = 0;
        s.subnet_epoch_index = s.subnet_epoch_index.saturating_add(1);
        s.blocks_since_last_step = 0;
    }
}

/// The epoch state at `to`, from the state read at `from` (blocks `from+1..=to` stepped).
pub fn advance(
    state: EpochState,
    tempo: u16,
    from: u64,
    to: u64,
) -> Result<EpochState, RevealError> {
    if tempo == 0 {
        return Err(RevealError::TempoIsZero);
    }
    if to.saturating_sub(from) > MAX_TEMPO {
        return Err(RevealError::BoundExceeded);
    }
    let mut s = state;
    for block in from.saturating_add(1)..=to {
        step(&mut s, u64::from(tempo), block);
    }
    Ok(s)
}

/// Newer runtimes: simulate the chain's epoch schedule block by block from the next block
/// (where the commit lands) until the counter reaches the commit's epoch plus the period.
pub fn first_reveal_block_stateful(
    state: EpochState,
    tempo: u16,
    current_block: u64,
    period_epochs: u64,
) -> Result<u64, RevealError> {
    if tempo == 0 {
        return Err(RevealError::TempoIsZero);
    }
    let tempo = u64::from(tempo);
    let epoch_at = |s: &EpochState, block: u64| {
        s.subnet_epoch_index
            .saturating_add(u64::from(should_run(s, tempo, block)))
    };
    let first = current_block.checked_add(1).ok_or(RevealError::Overflow)?;
    let target = epoch_at(&state, first)
        .checked_add(period_epochs)
        .ok_or(RevealError::Overflow)?;
    let limit = period_epochs
        .checked_mul(MAX_TEMPO)
        .and_then(|b| b.checked_add(MAX_TEMPO))
        .and_then(|b| b.checked_add(first))
        .ok_or(RevealError::Overflow)?;
    let mut s = state;
    for block in first..=limit {
        if epoch_at(&s, block) == target {
            return Ok(block);
        }
        step(&mut s, tempo, block);
    }
    Err(RevealError::BoundExceeded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stateful_schedule_matches_the_reference_vectors() {
        let s = |last, pending, index| EpochState {
            last_epoch_block: last,
            pending_epoch_at: pending,
            subnet_epoch_index: index,
            blocks_since_last_step: 0,
        };
        assert_eq!(first_reveal_block_stateful(s(10, 0, 0), 50, 10, 1), Ok(60));
        assert_eq!(first_reveal_block_stateful(s(80, 95, 0), 20, 91, 1), Ok(95));
        assert_eq!(
            first_reveal_block_stateful(s(10, 0, 0), 0, 10, 1),
            Err(RevealError::TempoIsZero)
        );
        assert_eq!(
            first_reveal_block_stateful(s(10, 0, 0), 50, u64::MAX, 1),
            Err(RevealError::Overflow)
        );
        // Advancing to the head: an epoch at block 60 moves the counter, so a prediction from
        // the head targets the epoch after it.
        let at_head = advance(s(10, 0, 0), 50, 10, 62).expect("advance");
        assert_eq!(
            (at_head.subnet_epoch_index, at_head.last_epoch_block),
            (1, 60)
        );
        assert_eq!(first_reveal_block_stateful(at_head, 50, 62, 1), Ok(110));
    }

    #[test]
    fn legacy_schedule_reveals_at_the_next_epochs_first_block() {
        // netuid 14, tempo 360: epochs start where (b + 15) % 361 == 0.
        let b = first_reveal_block_legacy(14, 360, 1000, 1).expect("block");
        assert_eq!((b + 15) % 361, 0);
        assert!(b > 1000 && b <= 1000 + 361, "{b}");
        assert_eq!(first_reveal_block_legacy(14, 360, 1000, 2), Some(b + 361));
        assert_eq!(first_reveal_block_legacy(14, 360, u64::MAX, 1), None);
    }
}
