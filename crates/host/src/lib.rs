//! The host daemon (SPEC §3, §4, §5, §9, §11): one loop that scans the chain into the
//! store, opens rounds and hands them to pods through the bucket, ingests what the pods
//! wrote, crowns the king and sets weights; the status API reads what it leaves behind.
//!
//! Every step starts from durable state (SQLite, S3, the chain) rather than from memory,
//! so a host killed at any instant and restarted carries on where it was: an open round
//! whose `job.json` never got written gets it now, a `done.json` that was not yet applied
//! is applied now (and one already applied changes nothing).

mod ingest;
pub mod observe;
mod provision;
mod rounds;
mod scan;
mod weights;

use std::time::Duration;

use cacheon_chain::{Chain, Hotkey, Quicknet};
use cacheon_core::gate::GateThresholds;
use cacheon_core::prompts::{Corpus, Templates, WorkloadShape};
use cacheon_core::KingRule;
use cacheon_handoff::documents::BaselineImage;
use cacheon_handoff::Bucket;
use cacheon_harness::HarnessConfig;
use cacheon_status::{HostSnapshot, Mode};
use cacheon_store::Store;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use provision::{CommandProvisioner, Provisioner, StaticProvisioner};

/// What the host is configured with; defaults are the SPEC's.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub netuid: u16,
    /// Gets all weight while there is no king.
    pub burn_uid: u16,
    /// Time between two passes of the loop.
    pub tick: Duration,
    pub max_parallel_rounds: u32,
    pub max_challengers_per_round: u32,
    pub max_infra_attempts: u32,
    /// A round's deadline: `base + turn_budget * contestants` (`rounds::deadline`). The
    /// base covers the baseline's turn and judging; each contestant's turn is held to
    /// `turn_budget` by the pod.
    pub round_deadline_base: Duration,
    pub turn_budget: Duration,
    pub weights_interval_blocks: u64,
    /// After a failed weights attempt, wait this many blocks before the next.
    pub weights_retry_blocks: u64,
    pub king_rule: KingRule,
    pub baseline: BaselineImage,
    pub workload: WorkloadShape,
    pub harness: HarnessConfig,
    pub thresholds: GateThresholds,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            netuid: 14,
            burn_uid: 0,
            tick: Duration::from_secs(60),
            max_parallel_rounds: 1,
            max_challengers_per_round: 8,
            max_infra_attempts: 3,
            round_deadline_base: Duration::from_secs(20 * 60),
            turn_budget: cacheon_handoff::documents::DEFAULT_TURN_BUDGET,
            weights_interval_blocks: 360,
            weights_retry_blocks: 10,
            king_rule: KingRule::default(),
            baseline: BaselineImage {
                image: "vllm/vllm-openai".into(),
                digest: String::new(),
                args: Vec::new(),
            },
            workload: WorkloadShape::default(),
            harness: HarnessConfig::default(),
            thresholds: GateThresholds::default(),
        }
    }
}

/// How weights leave the host.
#[derive(Debug)]
pub enum Signer {
    /// No wallet: compute and record, submit nothing.
    Observe,
    /// Build and sign with the hotkey, log, submit nothing.
    DryRun(Hotkey),
    Active(Hotkey),
}

impl Signer {
    pub fn mode(&self) -> Mode {
        match self {
            Self::Observe => Mode::Observe,
            Self::DryRun(_) => Mode::DryRun,
            Self::Active(_) => Mode::Active,
        }
    }

    fn hotkey(&self) -> Option<&Hotkey> {
        match self {
            Self::Observe => None,
            Self::DryRun(h) | Self::Active(h) => Some(h),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("chain: {0}")]
    Chain(#[from] cacheon_chain::ChainError),
    #[error("store: {0}")]
    Store(#[from] cacheon_store::StoreError),
    #[error("hand-off: {0}")]
    Handoff(#[from] cacheon_handoff::HandoffError),
    #[error("{0}")]
    Config(String),
}

/// The daemon's parts.
pub struct Host {
    pub cfg: HostConfig,
    pub store: Store,
    pub chain: Chain,
    pub bucket: Bucket,
    pub signer: Signer,
    pub quicknet: Quicknet,
    pub provisioner: Box<dyn Provisioner>,
    pub corpus: Corpus,
    pub templates: Templates,
    snapshot: watch::Sender<HostSnapshot>,
    state: rounds::Memory,
}

impl Host {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: HostConfig,
        store: Store,
        chain: Chain,
        bucket: Bucket,
        signer: Signer,
        provisioner: Box<dyn Provisioner>,
        corpus: Corpus,
        templates: Templates,
    ) -> Result<Self, HostError> {
        let quicknet = Quicknet::mainnet().map_err(|e| HostError::Config(e.to_string()))?;
        let snapshot = HostSnapshot {
            version: env!("CARGO_PKG_VERSION").to_string(),
            mode: signer.mode(),
            netuid: cfg.netuid,
            validator_hotkey: signer.hotkey().map(|h| h.account_id().to_string()),
            started_at: now_unix(),
            ..HostSnapshot::default()
        };
        let (snapshot, _) = watch::channel(snapshot);
        Ok(Self {
            cfg,
            store,
            chain,
            bucket,
            signer,
            quicknet,
            provisioner,
            corpus,
            templates,
            snapshot,
            state: rounds::Memory::default(),
        })
    }

    /// The snapshot the status API serves.
    pub fn snapshot(&self) -> watch::Receiver<HostSnapshot> {
        self.snapshot.subscribe()
    }

    /// Runs the loop until `shutdown`. A step that fails is logged and retried on the next
    /// pass; nothing is half-applied, because each step commits in one transaction.
    pub async fn run(&mut self, shutdown: CancellationToken) {
        match self.signer.mode() {
            Mode::Observe => tracing::warn!(
                "observe mode: no wallet configured. The host scans, queues, evaluates and \
                 computes weights, and submits nothing."
            ),
            Mode::DryRun => tracing::info!("dry run: weights are built and logged, never sent"),
            Mode::Active => tracing::info!("active: weights are set on chain"),
        }
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.tick() => {}
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(self.cfg.tick) => {}
            }
        }
        tracing::info!("host stopping");
    }

    /// One pass: scan, ingest, open, provision, weights. Each step's error is reported and
    /// the later steps still run when they can.
    pub async fn tick(&mut self) {
        let mut errors = Vec::new();
        let head = match scan::run(self).await {
            Ok(head) => Some(head),
            Err(e) => {
                errors.push(format!("scan: {e}"));
                None
            }
        };
        if let Some(head) = head {
            if let Err(e) = ingest::run(self, head).await {
                errors.push(format!("ingest: {e}"));
            }
            if let Err(e) = rounds::open(self, head).await {
                errors.push(format!("rounds: {e}"));
            }
            if let Err(e) = weights::run(self, head).await {
                errors.push(format!("weights: {e}"));
            }
        }
        if let Err(e) = rounds::hand_off(self).await {
            errors.push(format!("hand-off: {e}"));
        }
        for e in &errors {
            tracing::error!("{e}");
        }
        self.snapshot.send_modify(|s| {
            s.last_error = errors.last().cloned();
        });
    }
}

pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
