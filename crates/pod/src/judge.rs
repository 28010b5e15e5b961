//! The baseline and the verdicts (SPEC §6 steps 4–5): one baseline start per round, the
//! same workload for its timings and greedy reference, then every measured contestant
//! teacher-forced through it, gated and scored. Anything wrong with the baseline voids the
//! round: without a trustworthy reference nobody can be judged, and nobody is blamed.

use std::sync::Arc;

use cacheon_containers::{wait_released, Labels};
use cacheon_core::noise::Lead;
use cacheon_core::prompts::PromptSet;
use cacheon_core::reference::{Digest, ImageRef};
use cacheon_core::submission::InfraReason;
use cacheon_core::Role;
use cacheon_handoff::documents::{
    BaselineResult, ContestantResult, ContestantStatus, Job, Measurement, RoundOutcome, RoundPhase,
    StepTimings, Verdict, VerdictKind,
};
use cacheon_handoff::Condition;
use cacheon_harness::{
    contestant_noise, contestant_score, evaluate, lead_interval, measure_baseline, Baseline,
    Reference, Summary, Target, Vocab, WorkloadRun,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::contestant::ms;
use crate::report;
use crate::round::{Context, Interrupt};
use crate::tracker::Tracker;
use crate::verdict;

/// The label the baseline's container and log carry.
pub const BASELINE_LABEL: &str = "baseline";

pub async fn run(
    ctx: &Context<'_>,
    job: &Job,
    prompts: &PromptSet,
    results: &[ContestantResult],
    tracker: &mut Tracker<'_>,
    cancel: &CancellationToken,
) -> Result<RoundOutcome, Interrupt> {
    let started = Instant::now();
    let mut timings = StepTimings::default();
    let void = |detail: String| {
        tracing::error!("baseline failed: {detail}");
        Ok(RoundOutcome::Void {
            reason: InfraReason::BaselineFailed,
            detail,
            cause: None,
        })
    };
    let (image, digest) = match (
        ImageRef::parse(&job.baseline.image),
        Digest::parse(&job.baseline.digest),
    ) {
        (Ok(i), Ok(d)) => (i, d),
        _ => {
            return void(format!(
                "unusable baseline reference {}",
                job.baseline.image
            ))
        }
    };
    let t = Instant::now();
    let policy = baseline_pull(&ctx.cfg.pull);
    let pinned = tokio::select! {
        () = cancel.cancelled() => return Err(Interrupt::Stopped),
        r = ctx.engine.pull(&image, &digest, &policy, &|_| {})
            .instrument(tracing::info_span!("pull", submission = BASELINE_LABEL)) => r,
    };
    timings.pull_ms = ms(t);
    let pinned = match pinned {
        Ok(p) => p,
        Err(e) => return void(format!("pulling {}: {e}", job.baseline.image)),
    };
    wait_released(&ctx.cfg.sandbox.gpus, &ctx.cfg.gpu_probe)
        .await
        .map_err(Interrupt::infra)?;
    let args = baseline_args(&job.baseline.args, ctx.checked.max_model_len);
    let labels = Labels {
        round: job.round_id.to_string(),
        submission: BASELINE_LABEL.into(),
        role: BASELINE_LABEL.into(),
        pod: ctx.cfg.pod_id.clone(),
    };
    let t = Instant::now();
    let running = match ctx
        .engine
        .start(&pinned, &args, &labels, &ctx.cfg.sandbox)
        .await
    {
        Ok(running) => running,
        Err(e) => return void(format!("starting the baseline: {e}")),
    };
    timings.start_ms = ms(t);
    let measured = async {
        let healthy = tokio::select! {
            () = cancel.cancelled() => return Err(Interrupt::Stopped),
            r = running.wait_healthy().instrument(tracing::info_span!("startup", submission = BASELINE_LABEL)) => r,
        };
        timings.startup_ms = ms(t);
        if let Err(e) = healthy {
            return Ok(Err(format!("the baseline did not become healthy: {e}")));
        }
        tracing::info!(step = "baseline", "baseline healthy; running the workload");
        let t = Instant::now();
        let url = running.base_url();
        let outcome = tokio::select! {
            () = cancel.cancelled() => return Err(Interrupt::Stopped),
            r = judge_all(job, prompts, results, &url, ctx.checked.vocab.clone(), tracker) => r,
        };
        timings.workload_ms = ms(t);
        Ok(outcome)
    }
    .await;
    let t = Instant::now();
    let logs = running.teardown().await;
    timings.teardown_ms = ms(t);
    match logs {
        Ok(logs) => ctx.keep_log(job.round_id, BASELINE_LABEL, &logs).await,
        Err(e) => tracing::error!("baseline teardown failed: {e}"),
    }
    timings.total_ms = ms(started);
    match measured? {
        Ok((verdicts, summary, run)) => {
            let doc = BaselineResult {
                round_id: job.round_id,
                pod_id: ctx.cfg.pod_id.clone(),
                hardware: ctx.checked.hardware.clone(),
                image: job.baseline.image.clone(),
                digest: job.baseline.digest.clone(),
                summary,
                run,
                timings,
            };
            ctx.bucket
                .put_doc(
                    &ctx.pass.baseline_key(job.round_id),
                    &doc,
                    Condition::Always,
                )
                .await?;
            Ok(RoundOutcome::Completed { verdicts })
        }
        Err(detail) => void(detail),
    }
}

/// The baseline is the operator's pinned image: no size limit, its registry trusted.
pub(crate) fn baseline_pull(
    policy: &cacheon_containers::PullPolicy,
) -> cacheon_containers::PullPolicy {
    cacheon_containers::PullPolicy {
        size_limit: u64::MAX,
        ..policy.clone()
    }
}

/// `{max_model_len}` in the configured arguments becomes the model's (capped) limit.
pub fn baseline_args(args: &[String], max_model_len: u64) -> Vec<String> {
    args.iter()
        .map(|a| a.replace("{max_model_len}", &max_model_len.to_string()))
        .collect()
}

type Judged = (Vec<Verdict>, Summary, WorkloadRun);

/// Baseline workload, reference, then every contestant's verdict. `Err` is a baseline
/// failure (the round is void).
async fn judge_all(
    job: &Job,
    prompts: &PromptSet,
    results: &[ContestantResult],
    url: &str,
    vocab: Arc<Vocab>,
    tracker: &mut Tracker<'_>,
) -> Result<Judged, String> {
    let target = Target::new(url, job.harness.concurrency, job.harness.connect_timeout)
        .map_err(|e| e.to_string())?;
    let never = cacheon_harness::StopRule::never();
    let run = cacheon_harness::run(
        &target,
        prompts,
        &job.harness,
        &never,
        Instant::now(),
        &|_| {},
    )
    .instrument(tracing::info_span!("workload", submission = BASELINE_LABEL))
    .await
    .map_err(|e| e.to_string())?;
    let faulted = run.scored().filter(|r| r.fault.is_some()).count();
    if faulted > 0 {
        return Err(format!("{faulted} of the baseline's own requests failed"));
    }
    let baseline = Baseline::new(target, &job.harness, vocab).map_err(|e| e.to_string())?;
    let (summary, reference) = measure_baseline(&baseline, prompts, &run)
        .await
        .map_err(|e| format!("reference: {e}"))?;
    tracker.phase(RoundPhase::Judging).await;
    let mut judged = Vec::with_capacity(results.len());
    for r in results {
        let v = judge_one(&baseline, job, prompts, &reference, (&summary, &run), r)
            .instrument(tracing::info_span!("judge", submission = %r.submission_id))
            .await?;
        tracker
            .contestant(&r.submission_id, ContestantStatus::Judged)
            .await;
        judged.push(v);
    }
    let concurrency = job.harness.concurrency;
    Ok((
        with_leads(judged, &summary, prompts, concurrency),
        summary,
        run,
    ))
}

/// Every scored challenger's lead over a scored king, with its interval: the comparison
/// a crown is decided on (`cacheon_core::confirm`).
fn with_leads(
    judged: Vec<(Verdict, Option<Summary>)>,
    baseline: &Summary,
    prompts: &PromptSet,
    concurrency: usize,
) -> Vec<Verdict> {
    let king = judged.iter().find_map(|(v, s)| {
        (v.role == Role::King)
            .then(|| Some((v.outcome.score()?, s.as_ref()?)))
            .flatten()
    });
    judged
        .iter()
        .map(|(v, summary)| {
            let mut v = v.clone();
            if let (Role::Challenger, Some((king_score, king)), Some(score), Some(summary)) =
                (v.role, king, v.outcome.score(), summary)
            {
                v.lead =
                    lead_interval(baseline, king, summary, prompts, concurrency).map(|interval| {
                        Lead {
                            lead: score - king_score,
                            interval,
                        }
                    });
            }
            v
        })
        .collect()
}

async fn judge_one(
    baseline: &Baseline,
    job: &Job,
    prompts: &PromptSet,
    reference: &Reference,
    (base, base_run): (&Summary, &WorkloadRun),
    r: &ContestantResult,
) -> Result<(Verdict, Option<Summary>), String> {
    let run = match &r.measurement {
        Measurement::Failed { reason, detail } => {
            let v = Verdict {
                submission_id: r.submission_id.clone(),
                role: r.role,
                outcome: VerdictKind::Disqualified {
                    reason: *reason,
                    detail: detail.clone(),
                },
                gate: None,
                noise: None,
                lead: None,
                content: r.content.clone(),
                report: Some(report::contestant(r, None)),
            };
            return Ok((v, None));
        }
        Measurement::Measured { run } => run,
    };
    let evaluation = evaluate(baseline, prompts, reference, run, &job.thresholds)
        .await
        .map_err(|e| format!("checking {}: {e}", r.submission_id))?;
    let (outcome, noise) = match verdict::disqualify_reason(&evaluation.verdict) {
        None => {
            let score = contestant_score(&evaluation, base)
                .map_err(|e| format!("the baseline's measurements are unusable: {e}"))?;
            let scored = VerdictKind::Scored {
                score,
                ttft_s: evaluation.summary.ttft_s,
                tps: evaluation.summary.tps,
            };
            (
                scored,
                contestant_noise(&evaluation, base, prompts, job.harness.concurrency),
            )
        }
        Some(reason) => {
            let detail = verdict::summary(&evaluation.verdict);
            (VerdictKind::Disqualified { reason, detail }, None)
        }
    };
    tracing::info!(submission = %r.submission_id, ?outcome, "judged");
    let summary = matches!(outcome, VerdictKind::Scored { .. }).then(|| evaluation.summary.clone());
    let report = report::contestant(
        r,
        Some(&report::Judged {
            evaluation: &evaluation,
            baseline: base,
            baseline_run: base_run,
            prompts,
            thresholds: &job.thresholds,
        }),
    );
    let v = Verdict {
        submission_id: r.submission_id.clone(),
        role: r.role,
        outcome,
        gate: Some(evaluation.verdict),
        noise,
        lead: None,
        content: r.content.clone(),
        report: Some(report),
    };
    Ok((v, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_model_len_is_substituted() {
        let args: Vec<String> = ["--model", "/models", "--max-model-len", "{max_model_len}"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(baseline_args(&args, 32768)[3], "32768");
        assert_eq!(baseline_args(&args, 4096)[..3], args[..3]);
    }
}
