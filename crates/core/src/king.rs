//! The king-of-the-hill rule (SPEC §11) as one pure function of a round's results.
//!
//! The king is re-measured in every round, so its *fresh* score is compared with the
//! challengers' scores from the same hardware and prompts; old scores never compete. What
//! counts as a challenger's measured lead is made robust by `confirm`: a lead within noise
//! is measured again and decided on the lower pass (`KingRule::confirm`; `None` is SPEC §11's
//! one pass as written).

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::confirm::{Comparison, ConfirmRule, Confirmation, ConfirmationRecord, FirstPass};
use crate::submission::SubmissionId;

/// Parameters of the decaying margin a challenger must beat the king by.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KingRule {
    /// Margin right after a crowning (1 %).
    pub base_margin: f64,
    /// Blocks over which the margin decays linearly to 0 (about 7 days of 12 s blocks).
    pub decay_blocks: u64,
    /// Confirmation of leads within noise; `None` decides on one pass.
    #[serde(default)]
    pub confirm: Option<ConfirmRule>,
}

impl Default for KingRule {
    fn default() -> Self {
        Self {
            base_margin: 0.01,
            decay_blocks: 50_400,
            confirm: Some(ConfirmRule::default()),
        }
    }
}

impl KingRule {
    /// `base_margin * max(0, 1 - (now - crowned_at) / decay_blocks)`.
    pub fn margin(&self, now_block: u64, crowned_at_block: u64) -> f64 {
        if self.decay_blocks == 0 {
            return 0.0;
        }
        // A crowning "in the future" (clock skew between scans) counts as just now.
        let age = now_block.saturating_sub(crowned_at_block) as f64;
        self.base_margin * (1.0 - age / self.decay_blocks as f64).max(0.0)
    }
}

/// One contestant's outcome in the round, as the rule needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contender {
    pub submission: SubmissionId,
    pub uid: u16,
    pub commit_block: u64,
    /// Passed the correctness gate (a disqualified contestant has `passed = false`).
    pub passed: bool,
    pub score: f64,
    /// Half-width of the 90 % interval of its lead over the king's fresh score in this
    /// pass (`noise::lead_noise`); `None` when not measured (no king, a failed one).
    #[serde(default)]
    pub lead_noise: Option<f64>,
}

impl Contender {
    fn eligible(&self) -> bool {
        self.passed && self.score.is_finite() && self.score > 0.0
    }

    /// A king's fresh result the rule can compare with (passed, finite, non-negative).
    fn comparable(&self) -> bool {
        self.passed && self.score.is_finite() && self.score >= 0.0
    }
}

/// The reigning king and its fresh result from this round (`None` when it produced none,
/// which counts as failing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KingStanding {
    pub submission: SubmissionId,
    pub uid: u16,
    pub crowned_at_block: u64,
    pub fresh: Option<Contender>,
}

coded_enum! {
    /// Why a challenger was crowned.
    pub enum CrownCause {
        /// There was no king.
        Vacant => "vacant",
        /// The king failed its fresh gate.
        KingFailed => "king_failed",
        /// The challenger beat the king's fresh score by more than the margin.
        BeatKing => "beat_king",
    }
}

coded_enum! {
    /// Why a king lost the crown.
    pub enum DethroneCause {
        /// It failed the gate (or produced no result) in its fresh re-measurement.
        FailedFreshGate => "failed_fresh_gate",
        /// A challenger beat it by more than the margin.
        Beaten => "beaten",
        /// Its hotkey left the netuid.
        Deregistered => "deregistered",
        /// Its own turns voided `KING_VOID_LIMIT` rounds in a row.
        CausedVoids => "caused_voids",
    }
}

impl CrownCause {
    /// What happened to the previous king, if there was one.
    pub fn dethrone_cause(self) -> Option<DethroneCause> {
        match self {
            Self::Vacant => None,
            Self::KingFailed => Some(DethroneCause::FailedFreshGate),
            Self::BeatKing => Some(DethroneCause::Beaten),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum CrownDecision {
    /// The king stays; its recorded score becomes the fresh one.
    Keep { fresh_score: f64 },
    /// `winner` becomes king.
    Crown {
        winner: Contender,
        cause: CrownCause,
        dethroned: Option<SubmissionId>,
    },
    /// The king failed and no challenger qualified: the throne is empty.
    Vacate { dethroned: SubmissionId },
    /// No king before, none after.
    NoKing,
}

/// The confirmation pass of a round, as the rule needs it: the challenger it measured
/// again and that pass's comparison with the king.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecondPass {
    pub challenger: SubmissionId,
    pub comparison: Comparison,
}

/// The best eligible challenger scoring above `threshold`.
fn best(challengers: &[Contender], threshold: f64) -> Option<&Contender> {
    challengers
        .iter()
        .filter(|c| c.eligible() && c.score > threshold)
        .min_by(|a, b| rank(a, b))
}

/// A challenger's first-pass comparison with the king's `fresh` result.
fn comparison(fresh: &Contender, challenger: &Contender) -> Comparison {
    Comparison {
        king: fresh.score,
        challenger: challenger.score,
        noise: challenger.lead_noise,
    }
}

/// The challenger that would take the crown from a king that passed (`fresh`), with its
/// first pass's comparison: the best one above `fresh × (1 + margin)`.
fn leader<'c>(
    margin: f64,
    fresh: &Contender,
    challengers: &'c [Contender],
) -> Option<(&'c Contender, Comparison)> {
    let leader = best(challengers, fresh.score * (1.0 + margin))?;
    Some((leader, comparison(fresh, leader)))
}

/// Whether `second`, a confirmation pass of `challenger`, confirms its `first` lead.
fn confirmed(
    confirm: &ConfirmRule,
    margin: f64,
    challenger: &SubmissionId,
    first: &Comparison,
    second: Option<&SecondPass>,
) -> bool {
    second
        .filter(|s| s.challenger == *challenger)
        .is_some_and(|s| confirm.confirm(margin, first, &s.comparison) == Confirmation::Confirmed)
}

/// The challenger whose lead over the king's `fresh` result is within noise, so the pod
/// must measure it and the king again before the host can decide (`None`: the round
/// decides on one pass). `margin` is the round's (`KingRule::margin` at its seed block).
pub fn to_confirm(
    confirm: &ConfirmRule,
    margin: f64,
    fresh: &Contender,
    challengers: &[Contender],
) -> Option<(SubmissionId, Comparison)> {
    if !fresh.comparable() {
        return None;
    }
    let (leader, first) = leader(margin, fresh, challengers)?;
    (confirm.first_pass(margin, &first) == FirstPass::WithinNoise)
        .then(|| (leader.submission.clone(), first))
}

/// What the round's confirmation pass of `challenger` decided, as the host records it:
/// its first-pass comparison with the king and whether `second` confirmed it (the same
/// test `decide` applies). `None` without the rule or a king whose fresh result counts.
pub fn confirmation_record(
    rule: &KingRule,
    now_block: u64,
    king: &KingStanding,
    challengers: &[Contender],
    challenger: &SubmissionId,
    second: Option<&SecondPass>,
) -> Option<ConfirmationRecord> {
    let confirm = rule.confirm?;
    let fresh = king.fresh.as_ref().filter(|f| f.comparable())?;
    let x = challengers.iter().find(|c| c.submission == *challenger)?;
    let first = comparison(fresh, x);
    let margin = rule.margin(now_block, king.crowned_at_block);
    let outcome = if confirmed(&confirm, margin, challenger, &first, second) {
        Confirmation::Confirmed
    } else {
        Confirmation::NotConfirmed
    };
    Some(ConfirmationRecord {
        king: king.submission.clone(),
        challenger: challenger.clone(),
        first,
        second: second.map(|s| s.comparison),
        outcome,
    })
}

/// Applies SPEC §11 to one round; a lead within noise counts only if `second` (the
/// round's confirmation pass of that challenger) confirms it.
pub fn decide(
    rule: &KingRule,
    now_block: u64,
    king: Option<&KingStanding>,
    challengers: &[Contender],
    second: Option<&SecondPass>,
) -> CrownDecision {
    let best = |threshold: f64| best(challengers, threshold).cloned();
    let Some(king) = king else {
        return match best(0.0) {
            Some(winner) => CrownDecision::Crown {
                winner,
                cause: CrownCause::Vacant,
                dethroned: None,
            },
            None => CrownDecision::NoKing,
        };
    };
    let fresh_ok = king.fresh.as_ref().filter(|f| f.comparable());
    match fresh_ok {
        Some(fresh) => {
            let keep = CrownDecision::Keep {
                fresh_score: fresh.score,
            };
            let margin = rule.margin(now_block, king.crowned_at_block);
            let Some((winner, first)) = leader(margin, fresh, challengers) else {
                return keep;
            };
            let crowned = match rule.confirm {
                None => true,
                Some(confirm) => match confirm.first_pass(margin, &first) {
                    FirstPass::Decisive => true,
                    FirstPass::Below => false,
                    FirstPass::WithinNoise => {
                        confirmed(&confirm, margin, &winner.submission, &first, second)
                    }
                },
            };
            if !crowned {
                return keep;
            }
            CrownDecision::Crown {
                winner: winner.clone(),
                cause: CrownCause::BeatKing,
                dethroned: Some(king.submission.clone()),
            }
        }
        None => match best(0.0) {
            Some(winner) => CrownDecision::Crown {
                winner,
                cause: CrownCause::KingFailed,
                dethroned: Some(king.submission.clone()),
            },
            None => CrownDecision::Vacate {
                dethroned: king.submission.clone(),
            },
        },
    }
}

/// Best first: higher score, then earlier commit block, then id (total order, so the
/// outcome never depends on the order results arrived in).
fn rank(a: &Contender, b: &Contender) -> Ordering {
    b.score
        .total_cmp(&a.score)
        .then(a.commit_block.cmp(&b.commit_block))
        .then_with(|| a.submission.cmp(&b.submission))
}
