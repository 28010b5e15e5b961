//! One contestant against the baseline, end to end: the pieces the pod and `cacheon bench`
//! share, so a miner testing locally runs exactly what validators run.
//!
//! The order follows SPEC §6: contestants are measured first, then the baseline runs the
//! same prompts once for its timings and greedy reference, then every contestant's output
//! is teacher-forced through it and judged.

use std::collections::HashMap;

use cacheon_core::gate::{judge, GateThresholds, GateVerdict, RequestEvidence};
use cacheon_core::noise::{lead_noise, score_noise, Interval, RunSample, ScoreNoise};
use cacheon_core::prompts::{Phase, Prompt, PromptSet};
use cacheon_core::score::{score, InvalidBaseline, Speed};
use serde::{Deserialize, Serialize};

use crate::baseline::{self, Baseline, BaselineError, Reference};
use crate::metrics::{summarize, Accounting, Summary};
use crate::workload::WorkloadRun;

/// A contestant's measurements and gate verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub summary: Summary,
    pub verdict: GateVerdict,
    /// What the gate judged, request by request (the contestant's tokens as the baseline
    /// tokenises them): where a report reads the token a failure names. Not serialised.
    #[serde(skip)]
    pub evidence: Vec<RequestEvidence>,
}

impl Evaluation {
    pub fn speed(&self) -> Speed {
        Speed {
            ttft_s: self.summary.ttft_s,
            tps: self.summary.tps,
        }
    }
}

fn by_index(prompts: &PromptSet) -> HashMap<usize, Prompt> {
    prompts
        .prompts
        .iter()
        .map(|p| (p.index, p.clone()))
        .collect()
}

/// The baseline's own timings and its greedy reference for every scored prompt.
pub async fn measure_baseline(
    baseline: &Baseline,
    prompts: &PromptSet,
    run: &WorkloadRun,
) -> Result<(Summary, Reference), BaselineError> {
    let scored: Vec<_> = run.scored().collect();
    let reference = baseline::reference(baseline, &by_index(prompts), &scored).await?;
    let accounting = Accounting {
        counts: reference.counts(),
        ..Accounting::default()
    };
    Ok((summarize(run, &accounting), reference))
}

/// Gathers the gate's evidence for a contestant's run and judges it.
pub async fn evaluate(
    baseline: &Baseline,
    prompts: &PromptSet,
    reference: &Reference,
    run: &WorkloadRun,
    thresholds: &GateThresholds,
) -> Result<Evaluation, BaselineError> {
    let scored: Vec<_> = run.scored().collect();
    let (evidence, mut accounting) =
        baseline::evidence(baseline, &by_index(prompts), reference, &scored).await?;
    let verdict = judge(thresholds, &evidence);
    accounting.failed = verdict
        .requests
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.prompt_index)
        .collect();
    let summary = summarize(run, &accounting);
    Ok(Evaluation {
        summary,
        verdict,
        evidence,
    })
}

/// SPEC §1's score of a judged contestant against the baseline's summary.
pub fn contestant_score(
    contestant: &Evaluation,
    baseline: &Summary,
) -> Result<f64, InvalidBaseline> {
    let baseline = Speed {
        ttft_s: baseline.ttft_s,
        tps: baseline.tps,
    };
    score(contestant.verdict.passed, baseline, contestant.speed())
}

/// What a summarised run contributes to the score, prompt by prompt in the prompt set's
/// order (core's `noise`; two servers' samples of the same prompts line up).
pub fn run_sample(summary: &Summary, prompts: &PromptSet, concurrency: usize) -> RunSample {
    let by_index: HashMap<usize, &crate::metrics::RequestMetrics> = summary
        .requests
        .iter()
        .map(|r| (r.prompt_index, r))
        .collect();
    let of = |phase: Phase| {
        prompts
            .phase(phase)
            .map(|p| by_index.get(&p.index).copied())
    };
    RunSample {
        latency_ttft_s: of(Phase::Latency)
            .map(|r| {
                r.filter(|r| !r.failed)
                    .and_then(|r| r.ttft_ms.map(|ms| ms / 1e3))
            })
            .collect(),
        throughput_tokens: of(Phase::Throughput)
            .map(|r| r.map_or(0, |r| r.credited_tokens))
            .collect(),
        throughput_e2e_s: of(Phase::Throughput)
            .map(|r| r.and_then(|r| r.e2e_ms).map(|ms| ms / 1e3))
            .collect(),
        throughput_wall_s: summary.throughput_wall_s,
        concurrency,
    }
}

/// Bootstrap resamples behind every noise figure, and the intervals' coverage.
const RESAMPLES: usize = 1000;
const LEVEL: f64 = 0.9;

/// The seed of a round's bootstrap: the prompt set's hash, so every validator that measured
/// the same thing resamples the same way.
fn noise_seed(prompts: &PromptSet) -> [u8; 32] {
    let mut seed = [0u8; 32];
    let hash = &prompts.prompt_set_hash;
    if let Ok(bytes) = hex::decode(hash.strip_prefix("sha256:").unwrap_or(hash)) {
        let n = bytes.len().min(32);
        seed[..n].copy_from_slice(&bytes[..n]);
    }
    seed
}

/// The 90 % bootstrap intervals of a judged contestant's score and improvements against
/// the baseline, seeded by the prompt set (every validator gets the same).
pub fn contestant_noise(
    contestant: &Evaluation,
    baseline: &Summary,
    prompts: &PromptSet,
    concurrency: usize,
) -> Option<ScoreNoise> {
    score_noise(
        &run_sample(baseline, prompts, concurrency),
        &run_sample(&contestant.summary, prompts, concurrency),
        contestant.verdict.passed,
        noise_seed(prompts),
        RESAMPLES,
        LEVEL,
    )
}

/// The 90 % interval of a challenger's lead over the king (score minus score), the three
/// runs resampled together: the noise `cacheon_core::confirm` decides a crown against.
pub fn lead_interval(
    baseline: &Summary,
    king: &Summary,
    challenger: &Summary,
    prompts: &PromptSet,
    concurrency: usize,
) -> Option<Interval> {
    lead_noise(
        &run_sample(baseline, prompts, concurrency),
        &run_sample(king, prompts, concurrency),
        &run_sample(challenger, prompts, concurrency),
        noise_seed(prompts),
        RESAMPLES,
        LEVEL,
    )
}
