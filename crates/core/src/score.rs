//! The subnet's published score formula (SPEC §1), kept exact.
//!
//! ```text
//! if not correctness_pass: score = 0
//! ttft_imp = max(0, (baseline_ttft - miner_ttft) / baseline_ttft)
//! tps_imp  = max(0, (miner_tps  - baseline_tps)  / baseline_tps)
//! score    = 0.5 * ttft_imp + 0.5 * tps_imp
//! ```

use serde::{Deserialize, Serialize};

/// The two figures the score compares: median TTFT (seconds) and throughput (tokens/s).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Speed {
    pub ttft_s: f64,
    pub tps: f64,
}

/// A baseline measurement that cannot serve as a reference. It is the baseline's (and so
/// our) problem, never the miner's: callers void the round.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("baseline measurement is unusable (ttft {ttft_s} s, {tps} tokens/s)")]
pub struct InvalidBaseline {
    pub ttft_s: f64,
    pub tps: f64,
}

/// A contestant's score against the baseline of the same round.
///
/// A miner figure that is not a finite, non-negative number earns no improvement on that
/// axis (a server cannot score by producing NaN); the result is always finite and in
/// `[0, ∞)`.
pub fn score(
    correctness_pass: bool,
    baseline: Speed,
    miner: Speed,
) -> Result<f64, InvalidBaseline> {
    // An unusable baseline is an error whatever the gate said.
    let (ttft_imp, tps_imp) = improvements(baseline, miner)?;
    if !correctness_pass {
        return Ok(0.0);
    }
    let s = TTFT_WEIGHT * ttft_imp + TPS_WEIGHT * tps_imp;
    Ok(if s.is_finite() { s } else { 0.0 })
}

/// The formula's weights of the two improvements.
pub const TTFT_WEIGHT: f64 = 0.5;
pub const TPS_WEIGHT: f64 = 0.5;

/// The two improvements the score weighs, `(ttft_imp, tps_imp)`, each clamped at 0 as the
/// formula does; a miner figure that is not a finite, non-negative number improves nothing.
/// (An improvement may still overflow to infinity; [`score`] then scores 0.)
pub fn improvements(baseline: Speed, miner: Speed) -> Result<(f64, f64), InvalidBaseline> {
    let usable = |x: f64| x.is_finite() && x > 0.0;
    if !usable(baseline.ttft_s) || !usable(baseline.tps) {
        return Err(InvalidBaseline {
            ttft_s: baseline.ttft_s,
            tps: baseline.tps,
        });
    }
    let sane = |x: f64| x.is_finite() && x >= 0.0;
    let ttft_imp = if sane(miner.ttft_s) {
        ((baseline.ttft_s - miner.ttft_s) / baseline.ttft_s).max(0.0)
    } else {
        0.0
    };
    let tps_imp = if sane(miner.tps) {
        ((miner.tps - baseline.tps) / baseline.tps).max(0.0)
    } else {
        0.0
    };
    Ok((ttft_imp, tps_imp))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Speed = Speed {
        ttft_s: 0.200,
        tps: 1000.0,
    };

    #[test]
    fn formula_by_hand() {
        let miner = Speed {
            ttft_s: 0.150,
            tps: 1300.0,
        };
        // ttft_imp = 0.05/0.2 = 0.25, tps_imp = 300/1000 = 0.3
        let s = score(true, BASE, miner).unwrap();
        assert!((s - 0.275).abs() < 1e-12, "{s}");
    }

    #[test]
    fn slower_axes_are_clamped_not_negative() {
        let miner = Speed {
            ttft_s: 0.400,
            tps: 1100.0,
        };
        let s = score(true, BASE, miner).unwrap();
        assert!((s - 0.05).abs() < 1e-12, "{s}");
    }

    #[test]
    fn failing_gate_scores_zero() {
        let miner = Speed {
            ttft_s: 0.001,
            tps: 1e6,
        };
        assert_eq!(score(false, BASE, miner), Ok(0.0));
    }

    #[test]
    fn non_finite_miner_figures_earn_nothing() {
        for miner in [
            Speed {
                ttft_s: f64::NAN,
                tps: f64::INFINITY,
            },
            Speed {
                ttft_s: -1.0,
                tps: -5.0,
            },
        ] {
            assert_eq!(score(true, BASE, miner), Ok(0.0));
        }
    }

    #[test]
    fn unusable_baseline_is_an_error() {
        for base in [
            Speed {
                ttft_s: 0.0,
                tps: 1.0,
            },
            Speed {
                ttft_s: 1.0,
                tps: f64::NAN,
            },
        ] {
            assert!(score(true, base, BASE).is_err());
        }
    }
}
