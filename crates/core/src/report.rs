//! What a miner reads about one verdict: its speed next to the baseline's with the score's
//! arithmetic, what the gate found (pass fraction, failures per check, the first few
//! failures with what the baseline wrote), its stream faults and where its time went.
//!
//! The pod builds a [`ContestantReport`] from what it measured; the host stores it with
//! the round and serves it. Everything in it is about the contestant's own run on the
//! round's prompts, which are public once the round is closed: nothing in it helps a later
//! contestant more than reading its own log would.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::gate::StreamFault;
use crate::score::{improvements, Speed, TPS_WEIGHT, TTFT_WEIGHT};

/// How many failed requests a report shows in full.
pub const FIRST_FAILURES: usize = 5;
/// How much of a prompt a report quotes, in characters.
pub const PROMPT_QUOTE_CHARS: usize = 160;
/// How much of the baseline's output before a failure a report quotes, in characters.
pub const CONTEXT_CHARS: usize = 80;
/// How much of one token a report quotes, in characters (a hostile stream's "token" can be
/// a megabyte, and every byte of a report travels in `done.json`).
pub const TOKEN_CHARS: usize = 40;

/// One contestant's verdict, explained.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContestantReport {
    /// Its speed next to the baseline's, when its workload ran to the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<SpeedReport>,
    /// The gate's findings, when it was judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateReport>,
    /// Requests whose stream was invalid, by fault (when the run stopped early, every
    /// failed request it counted, warm-ups included).
    #[serde(default)]
    pub stream_faults: BTreeMap<StreamFault, usize>,
    /// Why the workload stopped before its end, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<String>,
    pub timings: Timings,
}

/// TTFT and throughput next to the baseline's of the same round, and the score they make.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SpeedReport {
    pub contestant: Speed,
    pub baseline: Speed,
    /// `max(0, (baseline − contestant) / baseline)` of the median TTFT.
    pub ttft_improvement: f64,
    /// `max(0, (contestant − baseline) / baseline)` of the throughput.
    pub tps_improvement: f64,
    /// Whether the gate passed: a failed gate scores 0 whatever the speed.
    pub gate_passed: bool,
    pub score: f64,
}

impl SpeedReport {
    /// `None` when the baseline's figures cannot serve as a reference (the round is void)
    /// or the contestant's are not finite (no request of a phase counted, say): reports
    /// travel as JSON, which has no infinities.
    pub fn new(gate_passed: bool, baseline: Speed, contestant: Speed) -> Option<Self> {
        let (ttft_improvement, tps_improvement) = improvements(baseline, contestant).ok()?;
        let score = crate::score::score(gate_passed, baseline, contestant).ok()?;
        let all = [
            contestant.ttft_s,
            contestant.tps,
            ttft_improvement,
            tps_improvement,
            score,
        ];
        if !all.iter().all(|x| x.is_finite()) {
            return None;
        }
        Some(Self {
            contestant,
            baseline,
            ttft_improvement,
            tps_improvement,
            gate_passed,
            score,
        })
    }

    /// The score's arithmetic as a person checks it.
    pub fn arithmetic(&self) -> String {
        if !self.gate_passed {
            return format!(
                "0 (the gate failed; it would have been {TTFT_WEIGHT} × {:.2}% + {TPS_WEIGHT} × \
                 {:.2}%)",
                self.ttft_improvement * 100.0,
                self.tps_improvement * 100.0
            );
        }
        format!(
            "{TTFT_WEIGHT} × {:.2}% + {TPS_WEIGHT} × {:.2}% = {:.4}",
            self.ttft_improvement * 100.0,
            self.tps_improvement * 100.0,
            self.score
        )
    }
}

/// The gate's verdict in numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateReport {
    pub passed: bool,
    pub pass_fraction: f64,
    /// The pass fraction the gate requires.
    pub min_pass_fraction: f64,
    /// Scored requests judged, and how many failed.
    pub requests: usize,
    pub failed: usize,
    /// Failed requests per check (`GateFailure::code`); a request can fail several.
    pub by_check: BTreeMap<String, usize>,
    /// The first failed requests in prompt order, at most [`FIRST_FAILURES`].
    pub first_failures: Vec<FailureExample>,
}

/// One failed request, as a miner reproduces it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureExample {
    pub prompt_index: usize,
    /// The start of the prompt's last user message.
    pub prompt: String,
    /// The first check it failed (`GateFailure::code`) and what that check measured.
    pub check: String,
    pub detail: String,
    /// The output token where it went wrong, when the check names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
    /// The baseline's token at `position`, and its output just before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// The contestant's token at `position`, as its stream named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub got: Option<String>,
}

/// Where the contestant's turn went, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Waiting for its image (pulled ahead while the previous contestant ran).
    pub pull_s: f64,
    /// Creating and starting the container.
    pub start_s: f64,
    /// From started to answering `/health`.
    pub ready_s: f64,
    pub workload_s: f64,
    pub teardown_s: f64,
    /// From its image pulled to its result written (the pull wait is `pull_s`).
    pub total_s: f64,
    /// GPUs the pod holds, and `gpus × (pull_s + total_s)`: what the turn cost in rented
    /// GPU time (the pod's GPUs are held, busy or idle, while the round waits for the image
    /// and while the contestant runs).
    pub gpus: u32,
    pub gpu_seconds: f64,
}

/// The first `max` characters of `s`, with `…` when it was cut.
pub fn quote(s: &str, max: usize) -> String {
    let mut chars = s.chars();
    let head: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

/// The last `max` characters of `s`, with `…` when it was cut.
pub fn quote_tail(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_owned();
    }
    let tail: String = s.chars().skip(n - max).collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Speed = Speed {
        ttft_s: 0.2,
        tps: 1000.0,
    };

    #[test]
    fn arithmetic_adds_up_to_the_score() {
        let fast = Speed {
            ttft_s: 0.15,
            tps: 1300.0,
        };
        let r = SpeedReport::new(true, BASE, fast).unwrap();
        assert!((r.ttft_improvement - 0.25).abs() < 1e-12);
        assert!((r.tps_improvement - 0.3).abs() < 1e-12);
        assert!((r.score - 0.275).abs() < 1e-12);
        assert_eq!(r.arithmetic(), "0.5 × 25.00% + 0.5 × 30.00% = 0.2750");

        let failed = SpeedReport::new(false, BASE, fast).unwrap();
        assert_eq!(failed.score, 0.0);
        assert!(failed.arithmetic().starts_with("0 (the gate failed"));

        let slow = Speed {
            ttft_s: 0.4,
            tps: 500.0,
        };
        let r = SpeedReport::new(true, BASE, slow).unwrap();
        assert_eq!(
            (r.ttft_improvement, r.tps_improvement, r.score),
            (0.0, 0.0, 0.0)
        );

        let bad = Speed {
            ttft_s: 0.0,
            tps: 1.0,
        };
        assert!(SpeedReport::new(true, bad, fast).is_none());
        // No latency request counted: an infinite median has no place in a JSON document.
        let uncounted = Speed {
            ttft_s: f64::INFINITY,
            tps: 10.0,
        };
        assert!(SpeedReport::new(false, BASE, uncounted).is_none());
    }

    #[test]
    fn quotes_cut_on_characters() {
        assert_eq!(quote("héllo", 10), "héllo");
        assert_eq!(quote("héllo", 2), "hé…");
        assert_eq!(quote_tail("héllo", 3), "…llo");
        assert_eq!(quote_tail("hé", 3), "hé");
    }

    #[test]
    fn a_report_round_trips_and_old_documents_read() {
        let mut r = ContestantReport::default();
        r.stream_faults.insert(StreamFault::Stalled, 2);
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""stalled":2"#), "{json}");
        assert_eq!(serde_json::from_str::<ContestantReport>(&json).unwrap(), r);
        let minimal: ContestantReport = serde_json::from_str(
            r#"{"timings":{"pull_s":1,"start_s":0,"ready_s":0,"workload_s":0,
               "teardown_s":0,"total_s":1,"gpus":0,"gpu_seconds":0}}"#,
        )
        .unwrap();
        assert_eq!(minimal.timings.pull_s, 1.0);
    }
}
