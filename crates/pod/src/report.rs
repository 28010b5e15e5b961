//! From what the pod measured to the report a miner reads (`cacheon_core::report`): built
//! beside each verdict, where the runs, the prompts and the gate's findings all are.

use std::collections::BTreeMap;

use cacheon_core::gate::{GateFailure, GateThresholds, GateVerdict, StreamFault};
use cacheon_core::prompts::PromptSet;
use cacheon_core::report::{
    quote, quote_tail, ContestantReport, FailureExample, GateReport, SpeedReport, Timings,
    CONTEXT_CHARS, FIRST_FAILURES, PROMPT_QUOTE_CHARS, TOKEN_CHARS,
};
use cacheon_handoff::documents::{ContestantResult, Measurement, StepTimings};
use cacheon_harness::{Evaluation, Summary, WorkloadRun};

/// What judging a measured contestant had at hand.
pub struct Judged<'a> {
    pub evaluation: &'a Evaluation,
    pub baseline: &'a Summary,
    pub baseline_run: &'a WorkloadRun,
    pub prompts: &'a PromptSet,
    pub thresholds: &'a GateThresholds,
}

/// The report of a contestant: `judged` is `None` when it failed before it could be
/// judged (its pull, start, health or stream ended it).
pub fn contestant(r: &ContestantResult, judged: Option<&Judged<'_>>) -> ContestantReport {
    let timings = timings(&r.timings, r.hardware.gpus.len());
    let Some(j) = judged else {
        // Ended before judging: what the early stop counted, if that is what ended it.
        let early = r.timings.stopped_early.as_ref();
        return ContestantReport {
            stream_faults: tally(early.iter().flat_map(|e| e.faults.iter().copied())),
            stopped_early: match (&r.measurement, early) {
                (Measurement::Failed { detail, .. }, Some(_)) => Some(detail.clone()),
                _ => None,
            },
            timings,
            ..ContestantReport::default()
        };
    };
    let verdict = &j.evaluation.verdict;
    let stream_faults = verdict.requests.iter().flat_map(|r| {
        r.failures.iter().filter_map(|f| match f {
            GateFailure::InvalidStream { fault } => Some(*fault),
            _ => None,
        })
    });
    ContestantReport {
        speed: SpeedReport::new(
            verdict.passed,
            cacheon_core::Speed {
                ttft_s: j.baseline.ttft_s,
                tps: j.baseline.tps,
            },
            j.evaluation.speed(),
        ),
        gate: Some(gate(j, verdict)),
        stream_faults: tally(stream_faults),
        stopped_early: None,
        timings,
    }
}

fn tally(faults: impl Iterator<Item = StreamFault>) -> BTreeMap<StreamFault, usize> {
    let mut counts = BTreeMap::new();
    for f in faults {
        *counts.entry(f).or_default() += 1;
    }
    counts
}

/// The pod's timings in seconds, with the GPU time the turn held.
pub fn timings(t: &StepTimings, gpus: usize) -> Timings {
    let s = |ms: u64| ms as f64 / 1000.0;
    let gpus = u32::try_from(gpus).unwrap_or(u32::MAX);
    Timings {
        pull_s: s(t.pull_ms),
        start_s: s(t.start_ms.min(t.startup_ms)),
        ready_s: s(t.startup_ms.saturating_sub(t.start_ms)),
        workload_s: s(t.workload_ms),
        teardown_s: s(t.teardown_ms),
        total_s: s(t.total_ms),
        gpus,
        gpu_seconds: f64::from(gpus) * s(t.pull_ms.saturating_add(t.total_ms)),
    }
}

fn gate(j: &Judged<'_>, verdict: &GateVerdict) -> GateReport {
    let failed = verdict.failed();
    let first_failures = failed
        .iter()
        .take(FIRST_FAILURES)
        .filter_map(|r| Some(example(j, r.prompt_index, r.failures.first()?)))
        .collect();
    GateReport {
        passed: verdict.passed,
        pass_fraction: verdict.pass_fraction,
        min_pass_fraction: j.thresholds.min_pass_fraction,
        requests: verdict.requests.len(),
        failed: failed.len(),
        by_check: verdict
            .failed_by_check()
            .into_iter()
            .map(|(code, n)| (code.to_owned(), n))
            .collect(),
        first_failures,
    }
}

fn example(j: &Judged<'_>, prompt_index: usize, failure: &GateFailure) -> FailureExample {
    let prompt = j
        .prompts
        .prompts
        .iter()
        .find(|p| p.index == prompt_index)
        .and_then(|p| p.messages.iter().rev().find(|m| m.role == "user"))
        .map(|m| quote(&m.content, PROMPT_QUOTE_CHARS))
        .unwrap_or_default();
    let position = match failure {
        GateFailure::LowAgreement {
            first_disagreement, ..
        } => Some(*first_disagreement),
        GateFailure::OffReference { position, .. } => Some(*position),
        _ => None,
    };
    let tokens_of = |run: &WorkloadRun| {
        run.scored()
            .find(|s| s.prompt_index == prompt_index)
            .and_then(|s| s.logprobs.clone())
    };
    // `position` counts the contestant's output as the baseline tokenises it (the gate's
    // teacher-forced positions): its token there is the forced one. The baseline's greedy
    // output at the same position is what it expected, exact while the contestant's prefix
    // was the baseline's (up to the first disagreement, near ties aside).
    let (mut expected, mut context, mut got) = (None, None, None);
    if let Some(p) = position {
        if let Some(tokens) = tokens_of(j.baseline_run) {
            expected = tokens.get(p).map(|t| quote(&t.token, TOKEN_CHARS));
            let before: String = tokens.iter().take(p).map(|t| t.token.as_str()).collect();
            context = Some(quote_tail(&before, CONTEXT_CHARS));
        }
        got = j
            .evaluation
            .evidence
            .iter()
            .find(|e| e.prompt_index == prompt_index)
            .and_then(|e| e.forced.get(p))
            .map(|f| quote(&f.text, TOKEN_CHARS));
    }
    FailureExample {
        prompt_index,
        prompt,
        check: failure.code().to_owned(),
        detail: failure.to_string(),
        position,
        expected,
        context,
        got,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_split_startup_and_price_the_gpus() {
        let t = StepTimings {
            pull_ms: 1500,
            startup_ms: 4000,
            start_ms: 250,
            workload_ms: 10_000,
            teardown_ms: 500,
            total_ms: 16_000,
            ..StepTimings::default()
        };
        let s = timings(&t, 4);
        assert_eq!((s.start_s, s.ready_s), (0.25, 3.75));
        // The pull wait counts: the GPUs are held, idle, while the round waits for it.
        assert_eq!(s.gpu_seconds, 70.0);
        // An older result without `start_ms`: all of start-up counts as waiting for health.
        let old = StepTimings {
            startup_ms: 4000,
            ..StepTimings::default()
        };
        assert_eq!(timings(&old, 0).ready_s, 4.0);
        assert_eq!(timings(&old, 0).gpu_seconds, 0.0);
    }
}
