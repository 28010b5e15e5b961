//! One claimed round, start to finish (SPEC §6 steps 2–5): derive the prompts, measure
//! each contestant king first (reusing results an earlier pod already wrote), then the
//! baseline, judge, and write `done.json`. The lease keeper runs alongside; when it says
//! stop (lease lost, deadline, shutdown), the round stops at the next await, its container
//! is removed and, on shutdown, the lease is released so another pod can take over at once.

use std::collections::VecDeque;

use cacheon_containers::{ContainerError, Engine};
use cacheon_core::prompts::{generate, BlockHash, PromptSet};
use cacheon_core::reference::{Digest, ImageRef};
use cacheon_core::submission::{DisqualifyReason, InfraReason};
use cacheon_handoff::documents::{
    ConfirmationPass, ContestantResult, ContestantStatus, Done, Job, JobContestant, Measurement,
    RoundOutcome, RoundPhase, Verdict,
};
use cacheon_handoff::envelope::MAX_DOCUMENT_BYTES;
use cacheon_handoff::{layout, Bucket, Condition, EnvelopeError, HandoffError, Lease, Put};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::confirm::{self, Pass};
use crate::contestant::{self, ms, PullOutcome, Pulled};
use crate::keeper::{Keeper, StopCause};
use crate::preflight::Checked;
use crate::tracker::Tracker;
use crate::{judge, PodConfig, PodError, PromptSource};

/// What the pod shares with every step of a round.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub cfg: &'a PodConfig,
    pub bucket: &'a Bucket,
    pub engine: &'a Engine,
    pub checked: &'a Checked,
    pub prompts: &'a PromptSource,
    /// The pass the steps belong to (where their documents and logs go).
    pub pass: Pass,
}

impl Context<'_> {
    /// Keeps the last `log_cap` bytes of a container's output in S3 (best effort).
    pub async fn keep_log(&self, round: i64, label: &str, logs: &[u8]) {
        let key = layout::log(round, &self.pass.log_label(label));
        if let Err(e) = self.bucket.put_log(&key, logs, self.cfg.log_cap).await {
            tracing::warn!(%key, "container log not kept: {e}");
        }
    }
}

/// Why a round's work stopped before `done.json`.
#[derive(Debug)]
pub enum Interrupt {
    /// The keeper or a shutdown said stop.
    Stopped,
    /// Our own failure (engine, S3): the round is left for another attempt.
    Infra(PodError),
    /// The engine failed during this contestant's turn, and the machine was shown sound
    /// right after (`machine::sound`): the round is void, and only `by` is charged.
    Caused { by: String, error: PodError },
}

impl Interrupt {
    pub fn infra(e: impl Into<PodError>) -> Self {
        Self::Infra(e.into())
    }
}

impl From<HandoffError> for Interrupt {
    fn from(e: HandoffError) -> Self {
        Self::Infra(PodError::Handoff(e))
    }
}

/// How a round ended on this pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoundEnd {
    /// `done.json` is written (a verdict list or a void).
    Done,
    /// Stopped before the end; the lease was released or lost.
    Stopped(StopCause),
    /// Our own side failed and `done.json` could not even record a void (S3 down): the
    /// lease was released for another attempt.
    Failed,
}

impl PodError {
    /// The reason a round is void when this interrupts it.
    fn void_reason(&self) -> InfraReason {
        match self {
            PodError::Handoff(_) => InfraReason::StorageUnavailable,
            PodError::Preflight(_) | PodError::Unfit(_) => InfraReason::PreflightFailed,
            PodError::Engine(_) => InfraReason::EngineFailure,
        }
    }
}

/// Runs a claimed round. A failure of the pod's own side (engine, S3, GPUs) voids the round
/// with its reason — it never becomes a contestant's verdict — and the pod goes on.
pub async fn run(
    ctx: &Context<'_>,
    job: &Job,
    lease: Lease,
    shutdown: &CancellationToken,
) -> RoundEnd {
    let span = tracing::info_span!("round", round = job.round_id, pod = %ctx.cfg.pod_id);
    let keeper = Keeper::start(
        ctx.bucket.clone(),
        lease,
        ctx.cfg.lease_renew,
        job.deadline_at,
        shutdown,
    );
    let mut outcome = work(ctx, job, &keeper.cancel)
        .instrument(span.clone())
        .await;
    let failed = match &outcome {
        Err(Interrupt::Infra(e)) => Some((e, None)),
        Err(Interrupt::Caused { by, error }) => Some((error, Some(by.clone()))),
        _ => None,
    };
    if let Some((e, cause)) = failed {
        let (reason, detail) = (e.void_reason(), e.to_string());
        match &cause {
            None => tracing::error!(%reason, "our side failed; voiding the round: {detail}"),
            Some(by) => {
                tracing::error!(%reason, cause = %by, "voiding the round; charged to the contestant whose turn it was: {detail}")
            }
        }
        let mut tracker = Tracker::new(ctx.bucket, job, &ctx.cfg.pod_id);
        let void = RoundOutcome::Void {
            reason,
            detail,
            cause,
        };
        if finish(ctx, job, &mut tracker, void, None)
            .instrument(span)
            .await
            .is_ok()
        {
            outcome = Ok(());
        }
    }
    // Leave nothing of this round running, whatever happened above.
    if let Err(e) = ctx.engine.reap(&ctx.cfg.pod_id).await {
        tracing::error!("reaping after the round failed: {e}");
    }
    let lease = keeper.lease.lock().await.clone();
    let cause = keeper.cause();
    drop(keeper);
    match outcome {
        Ok(()) => {
            release(ctx.bucket, &lease).await;
            RoundEnd::Done
        }
        Err(Interrupt::Stopped) => {
            if cause == StopCause::Shutdown {
                // Hand the round over now rather than after the lease's TTL.
                release(ctx.bucket, &lease).await;
            }
            RoundEnd::Stopped(cause)
        }
        Err(Interrupt::Infra(e) | Interrupt::Caused { error: e, .. }) => {
            tracing::error!("the round's void could not be recorded: {e}");
            release(ctx.bucket, &lease).await;
            RoundEnd::Failed
        }
    }
}

async fn release(bucket: &Bucket, lease: &Lease) {
    if let Err(e) = bucket.release(lease, crate::now_unix()).await {
        tracing::warn!("could not release the lease (it will expire): {e}");
    }
}

async fn work(ctx: &Context<'_>, job: &Job, cancel: &CancellationToken) -> Result<(), Interrupt> {
    let mut tracker = Tracker::new(ctx.bucket, job, &ctx.cfg.pod_id);
    tracker.phase(RoundPhase::Preparing).await;
    let prompts = match derive_prompts(ctx, job) {
        Ok(p) => p,
        Err(detail) => {
            tracing::error!("{detail}");
            return finish(
                ctx,
                job,
                &mut tracker,
                void(InfraReason::PreflightFailed, detail),
                None,
            )
            .await;
        }
    };

    tracker.phase(RoundPhase::Contestants).await;
    let everyone: Vec<&JobContestant> = job.contestants.iter().collect();
    let results = contestants(ctx, job, &everyone, &prompts, &mut tracker, cancel).await?;

    tracker.phase(RoundPhase::Baseline).await;
    let outcome = judge::run(ctx, job, &prompts, &results, &mut tracker, cancel).await?;
    let (outcome, confirmation) = confirm::run(ctx, job, outcome, &mut tracker, cancel).await?;
    finish(ctx, job, &mut tracker, outcome, confirmation).await
}

fn void(reason: InfraReason, detail: String) -> RoundOutcome {
    RoundOutcome::Void {
        reason,
        detail,
        cause: None,
    }
}

/// The round's prompts; they must be the ones the host derived (same corpus).
fn derive_prompts(ctx: &Context<'_>, job: &Job) -> Result<PromptSet, String> {
    let seed: BlockHash = job
        .seed_hash
        .parse()
        .map_err(|e| format!("job seed hash: {e}"))?;
    let prompts = generate(
        &seed,
        &ctx.prompts.corpus,
        &ctx.prompts.templates,
        &job.workload,
    )
    .map_err(|e| format!("cannot derive the round's prompts: {e}"))?;
    if prompts.prompt_set_hash != job.prompt_set_hash {
        return Err(format!(
            "prompt set {} differs from the host's {} (different corpus or templates)",
            prompts.prompt_set_hash, job.prompt_set_hash
        ));
    }
    Ok(prompts)
}

async fn finish(
    ctx: &Context<'_>,
    job: &Job,
    tracker: &mut Tracker<'_>,
    outcome: RoundOutcome,
    confirmation: Option<ConfirmationPass>,
) -> Result<(), Interrupt> {
    let done = Done {
        round_id: job.round_id,
        pod_id: ctx.cfg.pod_id.clone(),
        hardware: ctx.checked.hardware.clone(),
        prompt_set_hash: job.prompt_set_hash.clone(),
        outcome,
        finished_at: crate::now_unix(),
        confirmation,
    };
    let done = readable(done);
    match ctx
        .bucket
        .put_doc(&layout::done(job.round_id), &done, Condition::IfNoneMatch)
        .await?
    {
        Put::Written { .. } => {
            let bytes = cacheon_handoff::seal(&done, None).map_or(0, |b| b.len());
            tracing::info!(bytes, "done.json written");
        }
        Put::PreconditionFailed => tracing::warn!("done.json already written by another pod"),
    }
    tracker.phase(RoundPhase::Done).await;
    Ok(())
}

/// `done` as the host will be able to read it. JSON has no NaN or infinity (serde writes
/// `null`, which then fails to read as a number), a document has a size cap, and a refused
/// `done.json` voids the round for everyone in it: so if a diagnostic figure somewhere is
/// not finite or the whole is too large, the diagnostics (reports, then the gate's
/// per-request findings) are dropped and the verdicts kept. (Verdicts are a few hundred
/// bytes per contestant; what a server streamed is capped per request and per result.)
fn readable(mut done: Done) -> Done {
    // Sealed and opened exactly as the host will (MAC aside: it adds a fixed few bytes).
    let reads_back = |d: &Done| {
        cacheon_handoff::seal(d, None)
            .ok()
            .filter(|b| b.len() + 1024 <= MAX_DOCUMENT_BYTES)
            .and_then(|b| cacheon_handoff::open::<Done>(&b, None).ok())
            .is_some()
    };
    if reads_back(&done) {
        return done;
    }
    tracing::error!(
        "done.json would not read back (a figure is not finite, or it is too large); \
         dropping the reports"
    );
    for_each_verdict(&mut done, |v| v.report = None);
    if reads_back(&done) {
        return done;
    }
    tracing::error!("done.json would still not read back; dropping the gate's findings");
    for_each_verdict(&mut done, |v| v.gate = None);
    done
}

fn for_each_verdict(done: &mut Done, f: impl Fn(&mut Verdict)) {
    if let RoundOutcome::Completed { verdicts } = &mut done.outcome {
        verdicts.iter_mut().for_each(&f);
    }
    if let Some(pass) = &mut done.confirmation {
        pass.verdicts.iter_mut().for_each(&f);
    }
}

/// The results of `list` in that order of measurement, returned in the job's order (king
/// first): read back when an earlier pod wrote them in this pass, measured otherwise. The
/// next image is pulled while the current one runs.
pub async fn contestants(
    ctx: &Context<'_>,
    job: &Job,
    list: &[&JobContestant],
    prompts: &PromptSet,
    tracker: &mut Tracker<'_>,
    cancel: &CancellationToken,
) -> Result<Vec<ContestantResult>, Interrupt> {
    let mut results = Vec::with_capacity(list.len());
    let mut todo: VecDeque<&JobContestant> = VecDeque::new();
    for &c in list {
        match existing(ctx, job, c).await? {
            Some(r) => {
                tracing::info!(submission = %c.submission_id, "reusing the result an earlier pod wrote");
                tracker.contestant(&c.submission_id, status_of(&r)).await;
                results.push(r);
            }
            None => todo.push_back(c),
        }
    }
    let mut prefetch: Option<JoinHandle<Result<String, ContainerError>>> = None;
    while let Some(c) = todo.pop_front() {
        let span = tracing::info_span!("contestant", submission = %c.submission_id, role = %c.role);
        let result = async {
            tracker
                .contestant(&c.submission_id, ContestantStatus::Pulling)
                .await;
            tracing::info!(step = "pulling", image = %c.image, "pulling");
            // Room for a whole image must be there before the pull, so running out of disk
            // during it is the image's doing (it grew past its budget), never a guess.
            crate::preflight::check_disk(
                &ctx.cfg.requirements.docker_root,
                ctx.cfg.requirements.min_free_disk_bytes,
            )
            .map_err(Interrupt::infra)?;
            crate::machine::gpus_present(ctx)
                .await
                .map_err(Interrupt::infra)?;
            // The turn starts now: whatever the pull still needs counts against it.
            let t = Instant::now();
            let turn_ends = t + job.turn_budget();
            let out_of_turn = tokio::time::sleep_until(turn_ends);
            let pinned = match prefetch.take() {
                Some(mut handle) => tokio::select! {
                    () = cancel.cancelled() => { handle.abort(); return Err(Interrupt::Stopped) }
                    () = out_of_turn => { handle.abort(); Err(PullOutcome::OutOfTurn) }
                    r = &mut handle => r.unwrap_or_else(|e| Err(ContainerError::Engine(format!("pull task: {e}")))).map_err(PullOutcome::Failed),
                },
                None => tokio::select! {
                    () = cancel.cancelled() => return Err(Interrupt::Stopped),
                    () = out_of_turn => Err(PullOutcome::OutOfTurn),
                    r = pull(ctx, c).instrument(tracing::info_span!("pull")) => r.map_err(PullOutcome::Failed),
                },
            };
            let pulled = Pulled {
                pinned,
                wait_ms: ms(t),
                turn_ends,
            };
            // Pull the next image while this one is measured, if there is room for a whole
            // one (else it is pulled in its own turn, after the check before every pull).
            let room = crate::preflight::check_disk(
                &ctx.cfg.requirements.docker_root,
                ctx.cfg.requirements.min_free_disk_bytes,
            );
            if let Err(e) = &room {
                tracing::warn!("not prefetching the next image: {e}");
            }
            prefetch = todo
                .front()
                .filter(|_| room.is_ok())
                .map(|next| start_prefetch(ctx, next));
            let result =
                contestant::measure(ctx, job, c, prompts, pulled, tracker, cancel).await?;
            let result = store_result(ctx, result).await?;
            tracker.contestant(&c.submission_id, status_of(&result)).await;
            Ok(result)
        }
        .instrument(span)
        .await;
        let result = match result {
            // Only the engine's own errors can be the image's doing; a mirror, the
            // sandbox network, busy GPUs or a full disk are ours whatever the machine says.
            Err(Interrupt::Infra(error @ PodError::Engine(ContainerError::Engine(_)))) => {
                Err(blame_turn(ctx, c, error).await)
            }
            other => other,
        };
        match result {
            Ok(r) => results.push(r),
            Err(e) => {
                if let Some(h) = prefetch.take() {
                    h.abort();
                }
                return Err(e);
            }
        }
    }
    // Results in the job's order (king first) whatever order they were gathered in.
    results.sort_by_key(|r| {
        job.contestants
            .iter()
            .position(|c| c.submission_id == r.submission_id)
    });
    Ok(results)
}

/// The engine failed during `c`'s turn: its doing when the machine is sound right after
/// (it is charged for the void), ours otherwise.
async fn blame_turn(ctx: &Context<'_>, c: &JobContestant, error: PodError) -> Interrupt {
    match crate::machine::sound(ctx).await {
        Ok(()) => Interrupt::Caused {
            by: c.submission_id.clone(),
            error,
        },
        Err(machine) => {
            tracing::error!("the machine is not sound after the failure: {machine}");
            Interrupt::Infra(error)
        }
    }
}

fn status_of(r: &ContestantResult) -> ContestantStatus {
    match &r.measurement {
        Measurement::Measured { .. } => ContestantStatus::Measured,
        Measurement::Failed { reason, .. } => ContestantStatus::Failed { reason: *reason },
    }
}

/// A result an earlier pod wrote for this contestant, if it is readable and ours.
async fn existing(
    ctx: &Context<'_>,
    job: &Job,
    c: &JobContestant,
) -> Result<Option<ContestantResult>, Interrupt> {
    match ctx
        .bucket
        .get_doc::<ContestantResult>(&ctx.pass.result_key(job.round_id, &c.submission_id))
        .await
    {
        Ok(Some((r, _))) if r.round_id == job.round_id && r.submission_id == c.submission_id => {
            Ok(Some(r))
        }
        Ok(Some(_)) => {
            tracing::error!(submission = %c.submission_id, "a result names another round or submission; measuring again");
            Ok(None)
        }
        Ok(None) => Ok(None),
        Err(HandoffError::Refused { key, source }) => {
            tracing::error!(%key, "refusing a stored result ({source}); measuring again");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Writes a result once; a refused (corrupt) earlier copy is replaced. A result too large
/// for any reader (a valid but bloated stream under every per-request cap) is the
/// contestant's: it becomes `result_too_large`, and that is what is stored and judged.
async fn store_result(
    ctx: &Context<'_>,
    mut r: ContestantResult,
) -> Result<ContestantResult, Interrupt> {
    let (bucket, key) = (
        ctx.bucket,
        ctx.pass.result_key(r.round_id, &r.submission_id),
    );
    let written = match bucket.put_doc(&key, &r, Condition::IfNoneMatch).await {
        Err(HandoffError::Refused {
            source: EnvelopeError::TooLarge,
            ..
        }) => {
            tracing::warn!(reason = %DisqualifyReason::ResultTooLarge, "the contestant's result does not fit a document");
            r.measurement = Measurement::Failed {
                reason: DisqualifyReason::ResultTooLarge,
                detail: format!(
                    "the measured run does not fit the {} MiB a result document may take",
                    MAX_DOCUMENT_BYTES >> 20
                ),
            };
            bucket.put_doc(&key, &r, Condition::IfNoneMatch).await?
        }
        other => other?,
    };
    if let Put::PreconditionFailed = written {
        if matches!(
            bucket.get_doc::<ContestantResult>(&key).await,
            Err(HandoffError::Refused { .. })
        ) {
            bucket.put_doc(&key, &r, Condition::Always).await?;
        }
    }
    Ok(r)
}

pub(crate) fn parse_image(c: &JobContestant) -> Result<(ImageRef, Digest), ContainerError> {
    let image = ImageRef::parse(&c.image).map_err(|e| ContainerError::ImageNotFound {
        image: format!("{} ({e})", c.image),
    })?;
    let digest = Digest::parse(&c.digest).map_err(|e| ContainerError::DigestMismatch {
        image: c.image.clone(),
        expected: c.digest.clone(),
        found: e.to_string(),
    })?;
    Ok((image, digest))
}

async fn pull(ctx: &Context<'_>, c: &JobContestant) -> Result<String, ContainerError> {
    let (image, digest) = parse_image(c)?;
    ctx.engine
        .pull(&image, &digest, &ctx.cfg.pull, &|p| {
            tracing::debug!(status = %p.status, layer = ?p.layer, "pull");
        })
        .await
}

fn start_prefetch(
    ctx: &Context<'_>,
    c: &JobContestant,
) -> JoinHandle<Result<String, ContainerError>> {
    match parse_image(c) {
        Ok((image, digest)) => ctx.engine.prefetch(image, digest, ctx.cfg.pull.clone()),
        Err(e) => tokio::spawn(async move { Err(e) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cacheon_core::report::ContestantReport;
    use cacheon_core::Role;
    use cacheon_handoff::documents::{Hardware, VerdictKind};

    #[test]
    fn a_non_finite_diagnostic_never_refuses_the_round() {
        let mut report = ContestantReport::default();
        report.timings.gpu_seconds = f64::NAN;
        let verdict = Verdict {
            submission_id: "5Abc:1".into(),
            role: Role::Challenger,
            outcome: VerdictKind::Scored {
                score: 0.5,
                ttft_s: 0.1,
                tps: 10.0,
            },
            gate: None,
            noise: None,
            lead: None,
            content: None,
            report: Some(report),
        };
        let done = Done {
            round_id: 1,
            pod_id: "p".into(),
            hardware: Hardware::default(),
            prompt_set_hash: "h".into(),
            outcome: RoundOutcome::Completed {
                verdicts: vec![verdict.clone()],
            },
            finished_at: 0,
            confirmation: None,
        };
        let fixed = readable(done.clone());
        let bytes = serde_json::to_vec(&fixed).unwrap();
        let back: Done = serde_json::from_slice(&bytes).unwrap();
        let RoundOutcome::Completed { verdicts } = back.outcome else {
            panic!("completed")
        };
        assert_eq!(verdicts[0].outcome, verdict.outcome);
        assert_eq!(verdicts[0].report, None);
        // A document that reads back is left alone.
        let mut fine = done;
        for_each_verdict(&mut fine, |v| v.report = Some(ContestantReport::default()));
        assert_eq!(readable(fine.clone()), fine);
    }
}
