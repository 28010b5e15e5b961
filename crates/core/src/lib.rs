//! Cacheon's domain, with no I/O and no async: what a submission is, how a commitment is
//! decoded and validated, the score formula, the king rule, the weight vector and the
//! round's prompts. Every daemon decision that can be a pure function lives here, so it can
//! be tested exhaustively and read in one place.

/// Defines a fieldless enum with stable string codes, `Display` and `FromStr`.
macro_rules! coded_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $code:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];
            pub fn code(self) -> &'static str {
                match self { $($name::$variant => $code,)+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.code())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::submission::UnknownCode;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($code => Ok($name::$variant),)+
                    _ => Err($crate::submission::UnknownCode(s.to_owned())),
                }
            }
        }
    };
}

pub mod calibration;
pub mod commitment;
pub mod confirm;
pub mod content;
pub mod gate;
pub mod king;
pub mod noise;
pub mod prompts;
pub mod reference;
pub mod report;
pub mod score;
pub mod submission;
pub mod tokens;
pub mod weights;

pub use commitment::{decode_commitment, Commitment, CommitmentError};
pub use king::{
    confirmation_record, decide, to_confirm, Contender, CrownCause, CrownDecision, DethroneCause,
    KingRule, KingStanding, SecondPass,
};
pub use reference::{Digest, ImageRef, ReferenceError};
pub use score::{score, InvalidBaseline, Speed};
pub use submission::{
    DisqualifyReason, InfraReason, RejectReason, Role, SubmissionId, SubmissionState,
    WithdrawReason,
};
pub use weights::{king_weights, normalize_max_upscale, WeightVector};
