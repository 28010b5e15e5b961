//! The documents of one round (SPEC §5), as the host and the pods read and write them.
//! Only their shapes live here; `Bucket` seals, stores and checks them.
//!
//! Who writes what, and when:
//! - `Job` (host, once, when the round opens): everything a pod needs, so two pods given
//!   the same job measure the same thing.
//! - `Progress` (pod, overwritten): for people watching the status API; never trusted for
//!   a decision.
//! - `ContestantResult` (pod, once per contestant, as soon as it is measured): the raw
//!   measurements. A pod that takes over an expired lease reuses them instead of running
//!   the contestant again.
//! - `BaselineResult` and `Done` (pod, once each, last): the verdicts the host applies.

use std::time::Duration;

use cacheon_core::confirm::ConfirmRule;
use cacheon_core::gate::{GateThresholds, GateVerdict};
use cacheon_core::noise::{Lead, ScoreNoise};
use cacheon_core::prompts::WorkloadShape;
use cacheon_core::report::ContestantReport;
use cacheon_core::submission::{DisqualifyReason, InfraReason, Role};
use cacheon_harness::{HarnessConfig, Summary, WorkloadRun};
use serde::{Deserialize, Serialize};

/// `job.json`: the round as the host opened it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub round_id: i64,
    pub netuid: u16,
    /// The block the round is seeded by (SPEC §2): its hash seeds the prompts.
    pub seed_block: u64,
    /// `0x` + 64 hex digits.
    pub seed_hash: String,
    /// The prompt set the host derived from the seed; a pod that derives another one
    /// (a different corpus) refuses the round instead of measuring different prompts.
    pub prompt_set_hash: String,
    /// King first, then challengers oldest commit first.
    pub contestants: Vec<JobContestant>,
    pub baseline: BaselineImage,
    pub workload: WorkloadShape,
    pub harness: HarnessConfig,
    pub thresholds: GateThresholds,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; past it the host voids the round and pods stop working on it.
    pub deadline_at: i64,
    /// What a challenger must beat the king by, fixed when the round opened: the pod needs
    /// it to know whether a lead is within noise and must be confirmed. `None` (no king, or
    /// a job from before confirmation existed): no confirmation pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crown: Option<CrownTerms>,
    /// Seconds one contestant's whole turn may take (pull wait, start, health, workload,
    /// teardown). The host derives `deadline_at` from it, so no contestant can make the
    /// round overrun. `None` in jobs written before turn budgets: `DEFAULT_TURN_BUDGET`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_budget_secs: Option<u64>,
}

/// The turn budget of a job that does not name one (and the host's default).
pub const DEFAULT_TURN_BUDGET: Duration = Duration::from_secs(30 * 60);

impl Job {
    /// What one contestant's turn may take in this round.
    pub fn turn_budget(&self) -> Duration {
        self.turn_budget_secs
            .map_or(DEFAULT_TURN_BUDGET, Duration::from_secs)
    }
}

/// The king's threshold of one round.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CrownTerms {
    /// The decayed margin at the round's seed block.
    pub margin: f64,
    pub confirm: ConfirmRule,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobContestant {
    pub submission_id: String,
    pub role: Role,
    pub uid: u16,
    pub commit_block: u64,
    pub image: String,
    pub digest: String,
}

/// The pinned reference server every contestant is compared with.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BaselineImage {
    pub image: String,
    pub digest: String,
    /// Its command line; `{max_model_len}` is replaced by the pod with the value read from
    /// the model's `config.json` (capped at 32768).
    pub args: Vec<String>,
}

/// The GPUs a pod measured on, recorded in every result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hardware {
    pub gpus: Vec<Gpu>,
    pub driver: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gpu {
    pub index: u32,
    pub name: String,
    pub memory_mib: u64,
}

/// `progress.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub round_id: i64,
    pub pod_id: String,
    pub phase: RoundPhase,
    pub contestants: Vec<ContestantProgress>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoundPhase {
    Preparing,
    Contestants,
    Baseline,
    Judging,
    /// The king and the leading challenger measured again (with their own baseline run).
    Confirming,
    Done,
    Abandoned,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContestantProgress {
    pub submission_id: String,
    pub status: ContestantStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ContestantStatus {
    Waiting,
    Pulling,
    Starting,
    Measuring,
    Measured,
    Failed { reason: DisqualifyReason },
    Judged,
}

/// `results/{submission_id}.json`: one contestant's raw measurements, written once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContestantResult {
    pub round_id: i64,
    pub submission_id: String,
    pub role: Role,
    pub pod_id: String,
    pub hardware: Hardware,
    pub measurement: Measurement,
    pub timings: StepTimings,
    pub finished_at: i64,
    /// What the pulled image is (`cacheon_core::content::ImageContent::id`), when it was
    /// pulled: the host rejects a later submission of another hotkey with the same content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Measurement {
    /// The workload ran; the gate has not judged it yet.
    Measured { run: Box<WorkloadRun> },
    /// The contestant could not be measured, by its own fault.
    Failed {
        reason: DisqualifyReason,
        detail: String,
    },
}

/// Where a contestant's wall time went, in milliseconds, for the validator's own overhead
/// and for the bound on how long one server can hold the pod.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepTimings {
    pub pull_ms: u64,
    /// From creating the container to healthy; `start_ms` of it went to creating and
    /// starting the container, the rest to waiting for `/health`.
    pub startup_ms: u64,
    #[serde(default)]
    pub start_ms: u64,
    pub workload_ms: u64,
    pub teardown_ms: u64,
    /// Everything from the contestant's turn starting to its result being written.
    pub total_ms: u64,
    /// Wall time of the requests that failed, together.
    #[serde(default)]
    pub failed_requests_ms: u64,
    /// Set when the workload stopped early because the verdict was already certain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<cacheon_harness::EarlyStop>,
}

/// `baseline.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineResult {
    pub round_id: i64,
    pub pod_id: String,
    pub hardware: Hardware,
    pub image: String,
    pub digest: String,
    pub summary: Summary,
    pub run: WorkloadRun,
    pub timings: StepTimings,
}

/// `done.json`: the round's outcome, the last document a pod writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Done {
    pub round_id: i64,
    pub pod_id: String,
    pub hardware: Hardware,
    pub prompt_set_hash: String,
    pub outcome: RoundOutcome,
    pub finished_at: i64,
    /// The round's confirmation pass, when a challenger's lead was within noise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<ConfirmationPass>,
}

/// A second measurement of the king and one challenger (`cacheon_core::confirm`): fresh
/// prompts from the round's seed, the challenger first then the king, a baseline run of
/// their own, every request gated as in the first pass. A contestant that fails here is
/// disqualified in the round's verdicts with this pass's reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfirmationPass {
    pub king: String,
    pub challenger: String,
    /// The hash of the fresh prompt set.
    pub prompt_set_hash: String,
    /// This pass's verdicts of the two (the challenger's `lead` is this pass's).
    pub verdicts: Vec<Verdict>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RoundOutcome {
    Completed {
        verdicts: Vec<Verdict>,
    },
    /// The pod could not produce comparable results (the baseline failed, say).
    Void {
        reason: InfraReason,
        detail: String,
        /// The contestant during whose turn the round ended, when the machine was shown
        /// sound right after (an engine failure on its image, say): only it is charged.
        /// `None`: our side failed, nobody's fault among the miners.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cause: Option<String>,
    },
}

/// One contestant's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub submission_id: String,
    pub role: Role,
    pub outcome: VerdictKind,
    /// The gate's per-request findings, when the contestant was measured.
    pub gate: Option<GateVerdict>,
    /// 90 % intervals of its score and improvements against the baseline (bootstrap over
    /// the prompts), when it was scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<ScoreNoise>,
    /// A challenger's lead over the king (score − score) with its 90 % interval, when both
    /// were scored: the noise a crown is decided against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead: Option<Lead>,
    /// The image's content id, from its result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// The verdict explained for the miner: speed next to the baseline's, the gate's
    /// findings, stream faults and timings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<ContestantReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VerdictKind {
    Scored {
        score: f64,
        ttft_s: f64,
        tps: f64,
    },
    Disqualified {
        reason: DisqualifyReason,
        detail: String,
    },
}

impl VerdictKind {
    /// The score, when the contestant was scored.
    pub fn score(&self) -> Option<f64> {
        match self {
            Self::Scored { score, .. } => Some(*score),
            Self::Disqualified { .. } => None,
        }
    }
}
