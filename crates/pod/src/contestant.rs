//! One contestant's turn (SPEC §6 step 3): start its pulled image in the sandbox, wait for
//! health, run the workload (stopping as soon as the verdict is certain), tear it down,
//! keep its logs, remove its image. What goes wrong is blamed by phase: anything the
//! image or its server does (pull, size, create, start, health, stream) becomes that
//! contestant's `Measurement::Failed` with a reason code; only our own side (the engine not
//! answering, S3, the GPUs) interrupts the round, and it is never charged to the miner.

use std::time::Duration;

use cacheon_containers::{wait_released, Blame, ContainerError, Labels, Running};
use cacheon_core::prompts::PromptSet;
use cacheon_core::submission::DisqualifyReason;
use cacheon_handoff::documents::{
    ContestantResult, ContestantStatus, Job, JobContestant, Measurement, StepTimings,
};
use cacheon_harness::{HarnessConfig, StopRule, Target, WorkloadRun};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::round::{Context, Interrupt};
use crate::tracker::Tracker;

/// Room kept at the end of a turn for tearing the container down (stop, logs, remove):
/// a tenth of the turn, at most a minute.
fn teardown_reserve(budget: Duration) -> Duration {
    (budget / 10).min(Duration::from_secs(60))
}

/// A pull's outcome, how long the round waited for it, and when the turn must end.
pub struct Pulled {
    pub pinned: Result<String, PullOutcome>,
    pub wait_ms: u64,
    pub turn_ends: Instant,
}

/// Why there is no pulled image.
#[derive(Debug)]
pub enum PullOutcome {
    Failed(ContainerError),
    /// The turn budget ran out while the round waited for the pull.
    OutOfTurn,
}

pub async fn measure(
    ctx: &Context<'_>,
    job: &Job,
    c: &JobContestant,
    prompts: &PromptSet,
    pulled: Pulled,
    tracker: &mut Tracker<'_>,
    cancel: &CancellationToken,
) -> Result<ContestantResult, Interrupt> {
    let started_at = Instant::now();
    let mut timings = StepTimings {
        pull_ms: pulled.wait_ms,
        ..StepTimings::default()
    };
    let mut content = None;
    let budget = job.turn_budget();
    let measurement = match pulled.pinned {
        // The pod checked for room for a whole image before the pull.
        Err(PullOutcome::Failed(ContainerError::DiskFull(detail))) => Measurement::Failed {
            reason: DisqualifyReason::ImageTooLarge,
            detail: format!("unpacking the image filled the disk: {detail}"),
        },
        Err(PullOutcome::Failed(e)) => miner_or_infra(e)?,
        Err(PullOutcome::OutOfTurn) => {
            // The abandoned pull may have left layers behind.
            if let Ok((image, digest)) = crate::round::parse_image(c) {
                ctx.engine.remove_image(&image.pinned(&digest)).await;
            }
            out_of_turn(budget, "while its image was still being pulled")
        }
        Ok(pinned) => {
            let what = ctx.engine.content(&pinned).await;
            content = Some(what.map_err(Interrupt::infra)?.id());
            wait_released(&ctx.cfg.sandbox.gpus, &ctx.cfg.gpu_probe)
                .await
                .map_err(Interrupt::infra)?;
            tracker
                .contestant(&c.submission_id, ContestantStatus::Starting)
                .await;
            let labels = Labels {
                round: job.round_id.to_string(),
                submission: c.submission_id.clone(),
                role: c.role.code().to_string(),
                pod: ctx.cfg.pod_id.clone(),
            };
            let t = Instant::now();
            let started = ctx
                .engine
                .start(&pinned, &[], &labels, &ctx.cfg.sandbox)
                .instrument(tracing::info_span!("start"))
                .await;
            timings.start_ms = ms(t);
            let running = match started {
                Ok(running) => running,
                Err(e) => {
                    ctx.engine.remove_image(&pinned).await;
                    timings.startup_ms = ms(t);
                    timings.total_ms = ms(started_at);
                    // The image's only if the machine starts a known-good one right after.
                    if let ContainerError::StartFailed(_) = e {
                        if let Err(machine) = crate::machine::sound(ctx).await {
                            tracing::error!("start failed and the machine is not sound: {machine}");
                            return Err(Interrupt::infra(e));
                        }
                    }
                    let failed = miner_or_infra(e)?;
                    return Ok(result(ctx, job, c, failed, timings, content));
                }
            };
            let stop = StopRule::for_contestant(
                job.thresholds.min_pass_fraction,
                prompts.scored_count(),
                job.harness.fault_budget,
            );
            // Health and workload get what is left of the turn, less the teardown's room.
            let serving = tokio::time::timeout_at(
                pulled
                    .turn_ends
                    .checked_sub(teardown_reserve(budget))
                    .unwrap_or(pulled.turn_ends),
                serve(
                    &running,
                    &job.harness,
                    &stop,
                    prompts,
                    &mut timings,
                    t,
                    tracker,
                    &c.submission_id,
                    cancel,
                ),
            )
            .await;
            let outcome = match serving {
                Ok(outcome) => outcome,
                Err(_) if timings.startup_ms == 0 => {
                    timings.startup_ms = ms(t);
                    Ok(out_of_turn(budget, "before its server was healthy"))
                }
                Err(_) => Ok(out_of_turn(budget, "during its workload")),
            };
            let t = Instant::now();
            let logs = running
                .teardown()
                .instrument(tracing::info_span!("teardown"))
                .await;
            timings.teardown_ms = ms(t);
            match logs {
                Ok(logs) => ctx.keep_log(job.round_id, &c.submission_id, &logs).await,
                Err(e) => tracing::error!("teardown failed: {e}"),
            }
            // Its disk goes back before the next contestant (re-pulled if it comes again).
            ctx.engine.remove_image(&pinned).await;
            outcome?
        }
    };
    timings.total_ms = ms(started_at);
    Ok(result(ctx, job, c, measurement, timings, content))
}

fn result(
    ctx: &Context<'_>,
    job: &Job,
    c: &JobContestant,
    measurement: Measurement,
    timings: StepTimings,
    content: Option<String>,
) -> ContestantResult {
    ContestantResult {
        round_id: job.round_id,
        submission_id: c.submission_id.clone(),
        role: c.role,
        pod_id: ctx.cfg.pod_id.clone(),
        hardware: ctx.checked.hardware.clone(),
        measurement,
        timings,
        finished_at: crate::now_unix(),
        content,
    }
}

/// Health, then the workload; cancellable at every await.
#[allow(clippy::too_many_arguments)]
async fn serve(
    running: &Running,
    harness: &HarnessConfig,
    stop: &StopRule,
    prompts: &PromptSet,
    timings: &mut StepTimings,
    started: Instant,
    tracker: &mut Tracker<'_>,
    submission_id: &str,
    cancel: &CancellationToken,
) -> Result<Measurement, Interrupt> {
    let healthy = tokio::select! {
        () = cancel.cancelled() => return Err(Interrupt::Stopped),
        r = running.wait_healthy().instrument(tracing::info_span!("startup")) => r,
    };
    timings.startup_ms = ms(started);
    if let Err(e) = healthy {
        return miner_or_infra(e);
    }
    tracker
        .contestant(submission_id, ContestantStatus::Measuring)
        .await;
    tracing::info!(step = "measuring", "server healthy; running the workload");
    let t = Instant::now();
    let run = tokio::select! {
        () = cancel.cancelled() => return Err(Interrupt::Stopped),
        r = workload(running, harness, stop, prompts).instrument(tracing::info_span!("workload")) => r,
    };
    timings.workload_ms = ms(t);
    Ok(match run {
        Ok(run) => {
            timings.failed_requests_ms = run.failed_requests_ns / 1_000_000;
            match run.stopped_early.clone() {
                None => Measurement::Measured { run: Box::new(run) },
                // The verdict is certain without the baseline: name it now.
                Some(early) => {
                    let reason = crate::verdict::for_faults(early.faults.iter().copied());
                    tracing::warn!(%reason, ?early, "stopped early");
                    timings.stopped_early = Some(early.clone());
                    Measurement::Failed {
                        reason,
                        detail: format!(
                            "stopped after {:.1} s: {} scored request(s) failed ({:?}), \
                             failed requests took {} ms",
                            early.at_ns as f64 / 1e9,
                            early.failed,
                            early.cause,
                            early.fault_ms
                        ),
                    }
                }
            }
        }
        // The server answered /health but then could not be talked to at all.
        Err(detail) => Measurement::Failed {
            reason: DisqualifyReason::BrokenStream,
            detail,
        },
    })
}

async fn workload(
    running: &Running,
    harness: &HarnessConfig,
    stop: &StopRule,
    prompts: &PromptSet,
) -> Result<WorkloadRun, String> {
    let target = Target::new(
        &running.base_url(),
        harness.concurrency,
        harness.connect_timeout,
    )
    .map_err(|e| e.to_string())?;
    cacheon_harness::run(&target, prompts, harness, stop, Instant::now(), &|_| {})
        .await
        .map_err(|e| e.to_string())
}

fn out_of_turn(budget: Duration, when: &str) -> Measurement {
    let reason = DisqualifyReason::TurnBudgetExceeded;
    tracing::warn!(%reason, "the turn budget of {budget:?} ran out {when}");
    Measurement::Failed {
        reason,
        detail: format!("the turn budget of {} s ran out {when}", budget.as_secs()),
    }
}

/// A container failure: the miner's becomes its measurement, ours interrupts the round.
fn miner_or_infra(e: ContainerError) -> Result<Measurement, Interrupt> {
    match e.blame() {
        Blame::Miner(reason) => {
            tracing::warn!(%reason, "contestant failed: {e}");
            Ok(Measurement::Failed {
                reason,
                detail: e.to_string(),
            })
        }
        Blame::Infra(_) => Err(Interrupt::infra(e)),
    }
}

pub fn ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}
