//! Cacheon's domain, with no I/O and no async: what a submission is, how a commitment is
//! decoded and validated, the score formula, the king rule, the weight vector and the
//! round's prompts. Every daemon decision that can be a pure function lives here, so it can
//! be tested exhaustively and read in one place.

pub mod commitment;
pub mod king;
pub mod prompts;
pub mod reference;
pub mod score;
pub mod submission;
pub mod weights;

pub use commitment::{decode_commitment, Commitment, CommitmentError};
pub use king::{decide, Contender, CrownCause, CrownDecision, KingRule, KingStanding};
pub use reference::{Digest, ImageRef, ReferenceError};
pub use score::{score, InvalidBaseline, Speed};
pub use submission::{
    DisqualifyReason, InfraReason, RejectReason, Role, SubmissionId, SubmissionState,
    WithdrawReason,
};
pub use weights::{king_weights, normalize_max_upscale, WeightVector};
