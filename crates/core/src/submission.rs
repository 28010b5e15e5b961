//! What a submission is and the states it moves through (SPEC §2, §4).
//!
//! Every state and every reason is an enum with a stable snake_case code: the store persists
//! the code, the status API shows it to miners, and `FromStr` reads it back. Free-form text
//! never decides anything.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::commitment::CommitmentError;

/// `{hotkey_ss58}:{commit_block}`: one revealed commitment of one hotkey.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SubmissionId {
    pub hotkey: String,
    pub commit_block: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("submission id must be `<hotkey>:<commit block>`")]
pub struct BadSubmissionId;

impl SubmissionId {
    pub fn new(hotkey: impl Into<String>, commit_block: u64) -> Self {
        Self {
            hotkey: hotkey.into(),
            commit_block,
        }
    }
}

impl fmt::Display for SubmissionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.hotkey, self.commit_block)
    }
}

impl FromStr for SubmissionId {
    type Err = BadSubmissionId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (hotkey, block) = s.rsplit_once(':').ok_or(BadSubmissionId)?;
        // ss58 is base58: alphanumeric. Anything else is not a hotkey we could have stored.
        if hotkey.is_empty() || !hotkey.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(BadSubmissionId);
        }
        let commit_block = block.parse().map_err(|_| BadSubmissionId)?;
        Ok(Self::new(hotkey, commit_block))
    }
}

impl TryFrom<String> for SubmissionId {
    type Error = BadSubmissionId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<SubmissionId> for String {
    fn from(id: SubmissionId) -> Self {
        id.to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown code `{0}`")]
pub struct UnknownCode(pub String);

coded_enum! {
    /// SPEC §4: `pending -> queued -> scored | disqualified`, `pending -> rejected | withdrawn`,
    /// and `failed_infra` once infrastructure trouble has used up the attempts.
    pub enum SubmissionState {
        Pending => "pending",
        Queued => "queued",
        Scored => "scored",
        Disqualified => "disqualified",
        Rejected => "rejected",
        Withdrawn => "withdrawn",
        FailedInfra => "failed_infra",
    }
}

impl SubmissionState {
    /// States a submission never leaves on its own (only an operator's requeue moves
    /// `failed_infra`).
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::Queued)
    }
}

/// Why a commitment never became a contestant. Shown to the miner.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The payload could not be decoded or validated.
    Malformed(CommitmentError),
    /// The hotkey is not registered on the netuid.
    NotRegistered,
    /// Same digest as an earlier submission of another hotkey.
    DuplicateOf(SubmissionId),
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(e) => write!(f, "malformed:{}", e.code()),
            Self::NotRegistered => f.write_str("not_registered"),
            Self::DuplicateOf(id) => write!(f, "duplicate_of:{id}"),
        }
    }
}

impl FromStr for RejectReason {
    type Err = UnknownCode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || UnknownCode(s.to_owned());
        if s == "not_registered" {
            return Ok(Self::NotRegistered);
        }
        match s.split_once(':') {
            Some(("malformed", code)) => CommitmentError::from_code(code)
                .map(Self::Malformed)
                .ok_or_else(unknown),
            Some(("duplicate_of", id)) => id.parse().map(Self::DuplicateOf).map_err(|_| unknown()),
            _ => Err(unknown()),
        }
    }
}

/// Why a pending or queued submission left the competition without a verdict.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WithdrawReason {
    /// The hotkey was deregistered from the netuid before evaluation.
    Deregistered,
    /// The same hotkey committed again; only its latest commitment competes.
    SupersededBy(SubmissionId),
}

impl fmt::Display for WithdrawReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Deregistered => f.write_str("deregistered"),
            Self::SupersededBy(id) => write!(f, "superseded_by:{id}"),
        }
    }
}

impl FromStr for WithdrawReason {
    type Err = UnknownCode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            None if s == "deregistered" => Ok(Self::Deregistered),
            Some(("superseded_by", id)) => id
                .parse()
                .map(Self::SupersededBy)
                .map_err(|_| UnknownCode(s.to_owned())),
            _ => Err(UnknownCode(s.to_owned())),
        }
    }
}

coded_enum! {
    /// A miner's own fault during a round (SPEC §6). Disqualifies that contestant only.
    pub enum DisqualifyReason {
        ImageNotFound => "image_not_found",
        PullDenied => "pull_denied",
        /// The image's registry failed, stalled, or sent more than the pull's byte budget
        /// or time: the miner chose that registry.
        PullFailed => "pull_failed",
        DigestMismatch => "digest_mismatch",
        ImageTooLarge => "image_too_large",
        /// The engine could not start the image (missing entrypoint, bad image config).
        StartFailed => "start_failed",
        Crashed => "crashed",
        OomKilled => "oom_killed",
        Unhealthy => "unhealthy",
        /// The server answered with a redirect (`/health` or a request): never followed.
        Redirected => "redirected",
        BrokenStream => "broken_stream",
        StreamStalled => "stream_stalled",
        /// Requests ran past their deadline (a dripping server), or failed requests used up
        /// the contestant's time budget.
        RequestDeadline => "request_deadline",
        GateFailed => "gate_failed",
        /// The whole turn (pull wait, start, health, workload) ran past the budget every
        /// contestant gets: a slow but valid server cannot make the round overrun.
        TurnBudgetExceeded => "turn_budget_exceeded",
        /// The image declares a `VOLUME`: Docker would give it writable disk outside the
        /// read-only root and the size limits.
        DeclaredVolume => "declared_volume",
        /// The image's environment sets a variable that steers the NVIDIA container
        /// toolkit (`NVIDIA_MOFED`, `NVIDIA_NVSWITCH`, ...): it could bring in devices
        /// (InfiniBand, NVSwitch) the sandbox does not give.
        ToolkitVariable => "toolkit_variable",
        /// What the contestant's server produced would not fit the hand-off document it is
        /// stored in (a valid but bloated stream).
        ResultTooLarge => "result_too_large",
        /// Its streams sent more events than any answer needs (valid, but bloated with
        /// empty ones the validator would have to keep).
        BloatedStream => "bloated_stream",
    }
}

coded_enum! {
    /// Our own fault (SPEC §4): voids a round and is never charged to a miner.
    pub enum InfraReason {
        PodLost => "pod_lost",
        BaselineFailed => "baseline_failed",
        StorageUnavailable => "storage_unavailable",
        DeadlineExceeded => "deadline_exceeded",
        EngineFailure => "engine_failure",
        PreflightFailed => "preflight_failed",
        CorruptResult => "corrupt_result",
    }
}

coded_enum! {
    /// A contestant's role in a round.
    pub enum Role {
        King => "king",
        Challenger => "challenger",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submission_id_round_trips() {
        let id = SubmissionId::new(
            "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
            4_000_123,
        );
        assert_eq!(id.to_string().parse::<SubmissionId>().unwrap(), id);
        assert!("nohotkey".parse::<SubmissionId>().is_err());
        assert!(":12".parse::<SubmissionId>().is_err());
        assert!("5Grw:-1".parse::<SubmissionId>().is_err());
        assert!("5G w:1".parse::<SubmissionId>().is_err());
    }

    #[test]
    fn every_code_reads_back() {
        for s in SubmissionState::ALL {
            assert_eq!(s.code().parse::<SubmissionState>().unwrap(), *s);
        }
        for r in DisqualifyReason::ALL {
            assert_eq!(r.code().parse::<DisqualifyReason>().unwrap(), *r);
        }
        for r in InfraReason::ALL {
            assert_eq!(r.code().parse::<InfraReason>().unwrap(), *r);
        }
        let id = SubmissionId::new("5Abc", 7);
        let reasons = [
            RejectReason::NotRegistered,
            RejectReason::DuplicateOf(id.clone()),
            RejectReason::Malformed(CommitmentError::NotJson),
        ];
        for r in reasons {
            assert_eq!(r.to_string().parse::<RejectReason>().unwrap(), r);
        }
        for w in [
            WithdrawReason::Deregistered,
            WithdrawReason::SupersededBy(id),
        ] {
            assert_eq!(w.to_string().parse::<WithdrawReason>().unwrap(), w);
        }
        assert!("bogus".parse::<RejectReason>().is_err());
        assert!("malformed:bogus".parse::<RejectReason>().is_err());
    }
}
