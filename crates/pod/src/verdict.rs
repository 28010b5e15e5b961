//! From a gate verdict to the reason a miner reads: a contestant whose failed requests are
//! all broken or stalled streams is told so, rather than the generic `gate_failed`.

use cacheon_core::gate::{GateFailure, GateVerdict, StreamFault};
use cacheon_core::submission::DisqualifyReason;

/// The reason a failed verdict disqualifies with (`None` when it passed).
pub fn disqualify_reason(verdict: &GateVerdict) -> Option<DisqualifyReason> {
    if verdict.passed {
        return None;
    }
    let failed: Vec<_> = verdict.requests.iter().filter(|r| !r.passed()).collect();
    let fault_of = |failures: &[GateFailure]| {
        failures.iter().find_map(|f| match f {
            GateFailure::InvalidStream { fault } => Some(*fault),
            _ => None,
        })
    };
    let faults: Vec<Option<StreamFault>> = failed.iter().map(|r| fault_of(&r.failures)).collect();
    if faults.is_empty() || faults.iter().any(Option::is_none) {
        return Some(DisqualifyReason::GateFailed);
    }
    Some(for_faults(faults.into_iter().flatten()))
}

/// The reason for requests that all failed on their stream: stalls, deadlines and
/// redirects name themselves when they are all there is; anything else is a broken stream.
pub fn for_faults(faults: impl IntoIterator<Item = StreamFault>) -> DisqualifyReason {
    let faults: Vec<StreamFault> = faults.into_iter().collect();
    let all = |f: &dyn Fn(&StreamFault) -> bool| !faults.is_empty() && faults.iter().all(f);
    if all(&|f| *f == StreamFault::Stalled) {
        DisqualifyReason::StreamStalled
    } else if all(&|f| matches!(f, StreamFault::Stalled | StreamFault::DeadlineExceeded)) {
        DisqualifyReason::RequestDeadline
    } else if all(&|f| *f == StreamFault::Redirected) {
        DisqualifyReason::Redirected
    } else if all(&|f| *f == StreamFault::TooManyEvents) {
        DisqualifyReason::BloatedStream
    } else {
        DisqualifyReason::BrokenStream
    }
}

/// A short account of a failed verdict for the miner: how many requests failed which check.
pub fn summary(verdict: &GateVerdict) -> String {
    let checks: Vec<String> = verdict
        .failed_by_check()
        .iter()
        .map(|(c, n)| format!("{c}: {n}"))
        .collect();
    format!(
        "{} of {} scored requests failed ({}); pass fraction {:.3}",
        verdict.failed().len(),
        verdict.requests.len(),
        checks.join(", "),
        verdict.pass_fraction
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use cacheon_core::gate::RequestVerdict;

    fn verdict(failures: Vec<Vec<GateFailure>>) -> GateVerdict {
        GateVerdict {
            passed: failures.iter().all(Vec::is_empty),
            pass_fraction: 0.0,
            requests: failures
                .into_iter()
                .enumerate()
                .map(|(i, failures)| RequestVerdict {
                    prompt_index: i,
                    agreement: 1.0,
                    measured: Default::default(),
                    failures,
                })
                .collect(),
        }
    }

    #[test]
    fn stream_faults_name_themselves() {
        let stall = GateFailure::InvalidStream {
            fault: StreamFault::Stalled,
        };
        let broken = GateFailure::InvalidStream {
            fault: StreamFault::MalformedSse,
        };
        assert_eq!(disqualify_reason(&verdict(vec![vec![]])), None);
        assert_eq!(
            disqualify_reason(&verdict(vec![vec![stall.clone()], vec![]])),
            Some(DisqualifyReason::StreamStalled)
        );
        let late = GateFailure::InvalidStream {
            fault: StreamFault::DeadlineExceeded,
        };
        assert_eq!(
            disqualify_reason(&verdict(vec![vec![stall.clone()], vec![late]])),
            Some(DisqualifyReason::RequestDeadline)
        );
        assert_eq!(
            for_faults([StreamFault::Redirected]),
            DisqualifyReason::Redirected
        );
        assert_eq!(
            for_faults([StreamFault::TooManyEvents, StreamFault::TooManyEvents]),
            DisqualifyReason::BloatedStream
        );
        assert_eq!(
            disqualify_reason(&verdict(vec![vec![stall], vec![broken.clone()]])),
            Some(DisqualifyReason::BrokenStream)
        );
        let v = verdict(vec![
            vec![broken],
            vec![GateFailure::LowAgreement {
                rate: 0.5,
                first_disagreement: 3,
            }],
        ]);
        assert_eq!(disqualify_reason(&v), Some(DisqualifyReason::GateFailed));
        assert!(summary(&v).starts_with("2 of 2 scored requests failed"));
    }
}
