//! Confirmation instead of coin flips: when a challenger's lead over the king is within the
//! measured noise, one pass cannot tell a faster server from a lucky one, so the pod
//! measures the two again and the crown is decided on the lower of the two passes.
//!
//! SPEC §11's threshold (`score > king_fresh × (1 + margin)`) is unchanged: a challenger
//! below it is never crowned. What changes is which measurement counts. With `lead =
//! challenger − king` (scores of the same pass, against the same baseline run) and `noise`
//! the half-width of the lead's 90 % interval (`noise::lead_noise`):
//!
//! - a lead above `max(margin × king, within × noise)` is *decisive*: crowned on one pass;
//! - a lead that clears the margin but not that is *within noise*: the pod runs one
//!   confirmation pass, and the challenger is crowned only if in **both** passes its lead
//!   is above `max(margin × king, multiple × noise)` (the larger of the two noises).
//!
//! Leads, not ratios, so that a king whose score is 0 (no faster than the baseline) can still
//! be compared: the bar is `1 + max(margin, multiple × noise / king)` in ratio terms.
//! `cacheon calibrate-crown` shows the rates the defaults give (equal servers crowned in
//! well under 1 % of rounds, a lead of three noises in nearly all).

use serde::{Deserialize, Serialize};

use crate::submission::SubmissionId;

/// The two multiples of the measured noise.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConfirmRule {
    /// A lead over `within × noise` needs no confirmation.
    pub within: f64,
    /// Both passes' leads must be over `multiple × noise`.
    pub multiple: f64,
}

impl Default for ConfirmRule {
    fn default() -> Self {
        Self {
            within: 3.0,
            multiple: 1.25,
        }
    }
}

/// One pass's comparison of a challenger with the king.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub king: f64,
    pub challenger: f64,
    /// Half-width of the 90 % interval of `challenger − king`; `None` when it could not be
    /// measured, which counts as unbounded noise (never decisive, never confirmed).
    pub noise: Option<f64>,
}

impl Comparison {
    pub fn lead(&self) -> f64 {
        self.challenger - self.king
    }

    fn noise(&self) -> f64 {
        self.noise
            .filter(|n| n.is_finite() && *n >= 0.0)
            .unwrap_or(f64::INFINITY)
    }

    /// SPEC §11's threshold: the challenger beats the king by more than the margin.
    pub fn clears_margin(&self, margin: f64) -> bool {
        self.challenger > self.king * (1.0 + margin)
    }
}

coded_enum! {
    /// What a challenger's first pass means for the crown.
    pub enum FirstPass {
        /// Not above the king's threshold: not crowned, nothing to confirm.
        Below => "below",
        /// Above it by more than `within` noises: crowned on this pass.
        Decisive => "decisive",
        /// Above it, but within noise: measure again.
        WithinNoise => "within_noise",
    }
}

coded_enum! {
    /// What a confirmation pass decided.
    pub enum Confirmation {
        /// Both passes cleared the bar: crowned.
        Confirmed => "confirmed",
        /// The lower pass did not: the king stays.
        NotConfirmed => "not_confirmed",
    }
}

/// What a round's confirmation pass showed, as the host records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfirmationRecord {
    pub king: SubmissionId,
    pub challenger: SubmissionId,
    pub first: Comparison,
    /// `None` when either of the two was disqualified in the confirmation pass.
    pub second: Option<Comparison>,
    pub outcome: Confirmation,
}

impl ConfirmRule {
    /// Whether a (non-negative, finite) rule is usable.
    pub fn is_valid(&self) -> bool {
        [self.within, self.multiple]
            .iter()
            .all(|x| x.is_finite() && *x >= 0.0)
    }

    pub fn first_pass(&self, margin: f64, first: &Comparison) -> FirstPass {
        if !first.clears_margin(margin) {
            FirstPass::Below
        } else if first.lead() > (margin * first.king).max(self.within * first.noise()) {
            FirstPass::Decisive
        } else {
            FirstPass::WithinNoise
        }
    }

    /// The lower of the two passes against the bar set by the larger noise.
    pub fn confirm(&self, margin: f64, first: &Comparison, second: &Comparison) -> Confirmation {
        let noise = first.noise().max(second.noise());
        let clears = |c: &Comparison| c.lead() > (margin * c.king).max(self.multiple * noise);
        if clears(first) && clears(second) {
            Confirmation::Confirmed
        } else {
            Confirmation::NotConfirmed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(king: f64, challenger: f64, noise: f64) -> Comparison {
        Comparison {
            king,
            challenger,
            noise: Some(noise),
        }
    }

    #[test]
    fn the_first_pass_sorts_leads_by_margin_and_noise() {
        let rule = ConfirmRule::default();
        // Margin 1 %: 0.300 × 1.01 = 0.303.
        assert_eq!(
            rule.first_pass(0.01, &cmp(0.3, 0.303, 0.0)),
            FirstPass::Below
        );
        assert_eq!(
            rule.first_pass(0.01, &cmp(0.3, 0.31, 0.01)),
            FirstPass::WithinNoise
        );
        assert_eq!(
            rule.first_pass(0.01, &cmp(0.3, 0.331, 0.01)),
            FirstPass::Decisive
        );
        // No noise figure: never decisive, however large the lead.
        let unknown = Comparison {
            noise: None,
            ..cmp(0.3, 0.9, 0.0)
        };
        assert_eq!(rule.first_pass(0.0, &unknown), FirstPass::WithinNoise);
        // A king at 0 is beaten by any clear lead, not by an infinite ratio.
        assert_eq!(
            rule.first_pass(0.0, &cmp(0.0, 0.2, 0.01)),
            FirstPass::Decisive
        );
        assert_eq!(
            rule.first_pass(0.0, &cmp(0.0, 0.02, 0.01)),
            FirstPass::WithinNoise
        );
    }

    #[test]
    fn the_lower_pass_decides_against_the_larger_noise() {
        let rule = ConfirmRule::default();
        let first = cmp(0.3, 0.32, 0.01); // lead 0.02 > 1.25 × 0.01
        assert_eq!(
            rule.confirm(0.0, &first, &cmp(0.3, 0.319, 0.01)),
            Confirmation::Confirmed
        );
        // The second pass shows no lead: not confirmed.
        assert_eq!(
            rule.confirm(0.0, &first, &cmp(0.3, 0.3, 0.01)),
            Confirmation::NotConfirmed
        );
        // The second pass was noisier: its noise sets the bar for both.
        assert_eq!(
            rule.confirm(0.0, &first, &cmp(0.3, 0.33, 0.02)),
            Confirmation::NotConfirmed
        );
        // The margin still applies to each pass.
        assert_eq!(
            rule.confirm(0.1, &first, &cmp(0.3, 0.34, 0.0)),
            Confirmation::NotConfirmed
        );
        let unknown = Comparison {
            noise: None,
            ..first
        };
        assert_eq!(
            rule.confirm(0.0, &unknown, &first),
            Confirmation::NotConfirmed
        );
    }

    #[test]
    fn codes_round_trip() {
        for f in FirstPass::ALL {
            assert_eq!(f.code().parse::<FirstPass>().ok(), Some(*f));
        }
        for c in Confirmation::ALL {
            assert_eq!(c.code().parse::<Confirmation>().ok(), Some(*c));
        }
        assert!(ConfirmRule::default().is_valid());
        assert!(!ConfirmRule {
            within: f64::NAN,
            multiple: 1.0
        }
        .is_valid());
    }
}
