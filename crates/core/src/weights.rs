//! The weight vector the validator sets (SPEC §11) and the chain's u16 encoding of it.
//!
//! Subtensor takes weights as `u16` and normalises them itself; the convention (shared
//! with the Python SDK) is to upscale so the largest weight is `u16::MAX`, which keeps the
//! most precision. Zero entries are dropped: they carry nothing and cost extrinsic bytes.

use serde::{Deserialize, Serialize};

/// Parallel `uids`/`weights` arrays, sorted by uid, as the extrinsic takes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightVector {
    pub uids: Vec<u16>,
    pub weights: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeightError {
    #[error("no uid has a positive, finite weight")]
    NothingToWeigh,
    #[error("uid {0} appears more than once")]
    DuplicateUid(u16),
}

/// All weight to the king, or to `burn_uid` when there is none.
pub fn king_weights(king_uid: Option<u16>, burn_uid: u16) -> WeightVector {
    let uid = king_uid.unwrap_or(burn_uid);
    WeightVector {
        uids: vec![uid],
        weights: vec![u16::MAX],
    }
}

/// Scales `(uid, weight)` pairs so the largest becomes `u16::MAX`, rounding to nearest.
pub fn normalize_max_upscale(pairs: &[(u16, f64)]) -> Result<WeightVector, WeightError> {
    let mut sorted: Vec<(u16, f64)> = pairs
        .iter()
        .copied()
        .filter(|(_, w)| w.is_finite() && *w > 0.0)
        .collect();
    sorted.sort_by_key(|(uid, _)| *uid);
    if let Some(w) = sorted.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(WeightError::DuplicateUid(w[0].0));
    }
    let max = sorted.iter().map(|(_, w)| *w).fold(0.0_f64, f64::max);
    if max <= 0.0 {
        return Err(WeightError::NothingToWeigh);
    }
    let (uids, weights) = sorted
        .into_iter()
        // In [0, 65535] by construction, so the cast neither wraps nor saturates.
        .map(|(uid, w)| (uid, (w / max * f64::from(u16::MAX)).round() as u16))
        .filter(|(_, w)| *w > 0)
        .unzip();
    Ok(WeightVector { uids, weights })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn king_takes_everything_and_burn_without_king() {
        assert_eq!(
            king_weights(Some(17), 0),
            WeightVector {
                uids: vec![17],
                weights: vec![65535]
            }
        );
        assert_eq!(
            king_weights(None, 0),
            WeightVector {
                uids: vec![0],
                weights: vec![65535]
            }
        );
    }

    #[test]
    fn max_becomes_u16_max_and_the_rest_scale() {
        let v = normalize_max_upscale(&[(9, 0.25), (3, 1.0), (5, 0.5), (7, 0.0)]).unwrap();
        assert_eq!(v.uids, vec![3, 5, 9]);
        assert_eq!(v.weights, vec![65535, 32768, 16384]);
    }

    #[test]
    fn tiny_weights_that_round_to_zero_are_dropped() {
        let v = normalize_max_upscale(&[(1, 1.0), (2, 1e-9)]).unwrap();
        assert_eq!(v.uids, vec![1]);
    }

    #[test]
    fn scale_invariant() {
        let a = normalize_max_upscale(&[(1, 2.0), (2, 3.0)]).unwrap();
        let b = normalize_max_upscale(&[(1, 2e6), (2, 3e6)]).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn refuses_garbage() {
        assert_eq!(
            normalize_max_upscale(&[(1, f64::NAN), (2, -1.0), (3, f64::INFINITY)]),
            Err(WeightError::NothingToWeigh)
        );
        assert_eq!(normalize_max_upscale(&[]), Err(WeightError::NothingToWeigh));
        assert_eq!(
            normalize_max_upscale(&[(4, 1.0), (4, 2.0)]),
            Err(WeightError::DuplicateUid(4))
        );
    }
}
