//! What the host knows that is not in SQLite, and where container logs come from.

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;
use serde::Serialize;

/// What the host knows that is not in SQLite; the host publishes a new one after each step.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostSnapshot {
    /// Cacheon's version.
    pub version: String,
    pub mode: Mode,
    pub netuid: u16,
    /// The validator's hotkey (ss58, public); `None` in observe mode.
    pub validator_hotkey: Option<String>,
    pub validator_uid: Option<u16>,
    /// Unix seconds.
    pub started_at: i64,
    pub last_scan: Option<ScanReport>,
    /// The last finalized block seen.
    pub chain_block: Option<u64>,
    /// Live progress of open rounds as the pod reported it (`progress.json`), by round id.
    pub progress: BTreeMap<i64, serde_json::Value>,
    pub next_weights_block: Option<u64>,
    /// The last loop error, for operators (never contains secrets; the host guarantees that).
    pub last_error: Option<String>,
}

/// Whether this validator sets weights.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// No wallet: evaluates and shows everything, submits nothing.
    #[default]
    Observe,
    /// Sets weights on chain.
    Active,
    /// Computes and logs weights, submits nothing.
    DryRun,
}

impl Mode {
    /// The snake_case code, as serialised.
    pub fn code(self) -> &'static str {
        match self {
            Self::Observe => "observe",
            Self::Active => "active",
            Self::DryRun => "dry_run",
        }
    }
}

/// The outcome of the host's last chain scan.
#[derive(Debug, Clone, Serialize)]
pub struct ScanReport {
    pub block: u64,
    /// Unix seconds.
    pub at: i64,
    pub commitments: usize,
    pub new_submissions: usize,
    pub error: Option<String>,
}

/// Where container logs come from (the hand-off bucket, in the host).
pub trait LogSource: Send + Sync + 'static {
    /// The log `label` of round `round`: `Ok(None)` when there is none, `Err` when the
    /// source could not be read (the detail is logged, never shown).
    fn round_log(
        &self,
        round: i64,
        label: String,
    ) -> BoxFuture<'static, Result<Option<Vec<u8>>, String>>;
}
