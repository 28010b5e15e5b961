//! The pod daemon (SPEC §6, §9): an ephemeral process on a GPU machine. It checks the
//! machine, then polls the hand-off bucket for rounds, claims one with a lease, measures
//! every contestant and then the baseline, judges, writes the results back, and exits once
//! it has been idle for `idle_exit`.
//!
//! It owns no durable state: everything it learns goes to S3 as soon as it is known, so a
//! pod killed at any instant costs at most the contestant it was measuring, and the next
//! pod to claim the round (after the lease expires) picks up from the results already
//! written.

pub mod canary;
mod confirm;
mod contestant;
mod judge;
mod keeper;
mod machine;
mod orphans;
pub mod preflight;
mod report;
mod round;
pub mod runtime;
pub mod safety;
mod tracker;
pub mod verdict;

use std::collections::HashSet;
use std::time::Duration;

use cacheon_containers::{ContainerError, Engine, GpuProbe, PullPolicy, SandboxConfig};
use cacheon_core::prompts::{Corpus, Templates};
use cacheon_handoff::documents::{BaselineImage, Job};
use cacheon_handoff::{layout, Bucket, Claim, HandoffError};
use tokio_util::sync::CancellationToken;

pub use preflight::{PreflightError, Requirements};
pub use round::RoundEnd;

/// Everything a pod is configured with.
#[derive(Debug, Clone)]
pub struct PodConfig {
    /// Names this pod in leases and results.
    pub pod_id: String,
    pub requirements: Requirements,
    pub sandbox: SandboxConfig,
    pub gpu_probe: GpuProbe,
    /// Size limit (SPEC §8: 20 GB), deadlines and registry trust of every pull.
    pub pull: PullPolicy,
    pub lease_ttl: Duration,
    pub lease_renew: Duration,
    /// How often to look for work.
    pub poll: Duration,
    /// Exit after this long without work.
    pub idle_exit: Duration,
    /// Bytes of each container's log kept in S3.
    pub log_cap: usize,
}

impl PodConfig {
    pub fn new(pod_id: String) -> Self {
        Self {
            pod_id,
            requirements: Requirements::default(),
            sandbox: SandboxConfig::default(),
            gpu_probe: GpuProbe::default(),
            pull: PullPolicy::default(),
            lease_ttl: Duration::from_secs(120),
            lease_renew: Duration::from_secs(30),
            poll: Duration::from_secs(10),
            idle_exit: Duration::from_secs(600),
            log_cap: 2 << 20,
        }
    }
}

/// The corpus and templates prompts are cut from (the same as the host's).
#[derive(Debug, Clone)]
pub struct PromptSource {
    pub corpus: Corpus,
    pub templates: Templates,
}

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("preflight failed: {0}")]
    Preflight(#[from] PreflightError),
    #[error("hand-off: {0}")]
    Handoff(#[from] HandoffError),
    #[error("container engine: {0}")]
    Engine(#[from] ContainerError),
    #[error("{0}")]
    Unfit(#[from] canary::Unfit),
}

/// How the pod stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodExit {
    /// No work for `idle_exit`.
    Idle,
    /// Asked to stop (SIGTERM).
    Shutdown,
}

/// Runs the pod until it is idle or `shutdown` is cancelled. Containers an earlier run of
/// this pod left on the engine are removed first, and any of ours on the way out; other
/// pods' containers are never touched.
pub async fn run(
    cfg: &PodConfig,
    bucket: &Bucket,
    prompts: &PromptSource,
    shutdown: CancellationToken,
) -> Result<PodExit, PodError> {
    let (engine, checked) = check_machine(cfg).await?;
    let reaped = orphans::reap(&engine, bucket, &cfg.pod_id).await?;
    if reaped > 0 {
        tracing::warn!(reaped, "removed containers left by an earlier pod");
    }
    let result = serve(cfg, bucket, prompts, &engine, &checked, &shutdown).await;
    // Whatever happened, nothing of ours keeps running next to the GPUs.
    if let Err(e) = engine.reap(&cfg.pod_id).await {
        tracing::error!("could not reap containers on exit: {e}");
    }
    result
}

/// Everything checked before the first claim: the hardware and model (preflight), the
/// engine's version and the sandbox self-test.
pub async fn check_machine(cfg: &PodConfig) -> Result<(Engine, preflight::Checked), PodError> {
    let checked = preflight::run(&cfg.requirements).await?;
    tracing::info!(pod = %cfg.pod_id, gpus = checked.hardware.gpus.len(), driver = ?checked.hardware.driver, "preflight passed");
    let engine = Engine::connect().await?;
    let safety = &cfg.requirements.safety;
    let rt = runtime::check_engine(engine.docker(), safety)
        .await
        .map_err(PreflightError::from)?;
    tracing::info!(runc = ?rt.runc, containerd = ?rt.containerd, security = ?rt.security_options, "container runtime passed its floors");
    match &safety.probe_image {
        Some(image) => {
            let report = safety::self_test(&engine, &cfg.sandbox, image, &cfg.pod_id)
                .await
                .map_err(PreflightError::from)?;
            tracing::info!(targets = ?report.targets, "sandbox self-test passed: nothing reachable");
        }
        None => tracing::warn!("sandbox self-test skipped by configuration"),
    }
    Ok((engine, checked))
}

async fn serve(
    cfg: &PodConfig,
    bucket: &Bucket,
    prompts: &PromptSource,
    engine: &Engine,
    checked: &preflight::Checked,
    shutdown: &CancellationToken,
) -> Result<PodExit, PodError> {
    let mut finished: HashSet<i64> = HashSet::new();
    let mut canaried: HashSet<BaselineImage> = HashSet::new();
    let mut idle_since = tokio::time::Instant::now();
    loop {
        if shutdown.is_cancelled() {
            return Ok(PodExit::Shutdown);
        }
        let proven = Proven {
            engine,
            checked,
            canaried: &mut canaried,
        };
        match next_round(cfg, bucket, &mut finished, proven).await {
            Ok(Some((job, lease))) => {
                // A pod that died holding this round left its container running; now that
                // the lease is ours, it is provably an orphan.
                match orphans::reap(engine, bucket, &cfg.pod_id).await {
                    Ok(0) => {}
                    Ok(reaped) => {
                        tracing::warn!(reaped, "removed containers left by an earlier pod");
                    }
                    Err(e) => tracing::warn!("reaping orphans failed: {e}"),
                }
                let ctx = round::Context {
                    cfg,
                    bucket,
                    engine,
                    checked,
                    prompts,
                    pass: confirm::Pass::First,
                };
                let end = round::run(&ctx, &job, lease, shutdown).await;
                tracing::info!(round = job.round_id, ?end, "round finished on this pod");
                match end {
                    RoundEnd::Done => {
                        finished.insert(job.round_id);
                    }
                    RoundEnd::Stopped(_) => {}
                    // Our side failed: keep serving only while the engine still answers;
                    // a pod that cannot run containers must not claim (and void) more.
                    RoundEnd::Failed => engine.ping().await?,
                }
                idle_since = tokio::time::Instant::now();
                continue;
            }
            Ok(None) => {}
            // A machine that cannot run the baseline claims nothing, ever.
            Err(PodError::Unfit(unfit)) => {
                tracing::error!(
                    image = %unfit.image,
                    detail = %unfit.detail,
                    log_tail = %unfit.log_tail,
                    "this machine is unfit: the baseline canary failed; claiming nothing"
                );
                return Err(PodError::Unfit(unfit));
            }
            // The sandbox failed its check before a claim: an unsafe machine claims nothing.
            Err(e @ PodError::Preflight(_)) => {
                tracing::error!("the machine failed its check before a claim: {e}");
                return Err(e);
            }
            // S3 trouble while looking for work is not fatal: look again later.
            Err(e) => tracing::warn!("looking for rounds failed: {e}"),
        }
        if idle_since.elapsed() >= cfg.idle_exit {
            tracing::info!(idle = ?cfg.idle_exit, "no work; exiting");
            return Ok(PodExit::Idle);
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(PodExit::Shutdown),
            () = tokio::time::sleep(cfg.poll) => {}
        }
    }
}

/// What a claim needs first: the machine shown able to run the round's baseline (the
/// canary), once per baseline.
struct Proven<'a> {
    engine: &'a Engine,
    checked: &'a preflight::Checked,
    canaried: &'a mut HashSet<BaselineImage>,
}

impl Proven<'_> {
    async fn ensure(&mut self, cfg: &PodConfig, job: &Job) -> Result<(), canary::Unfit> {
        if self.canaried.contains(&job.baseline) {
            return Ok(());
        }
        tracing::info!(image = %job.baseline.image, "canary: starting the baseline before the first claim");
        let passed = canary::run(
            self.engine,
            cfg,
            &job.baseline,
            &job.harness.model,
            self.checked.max_model_len,
        )
        .await?;
        tracing::info!(
            healthy_after_s = passed.healthy_after.as_secs_f64(),
            answer = %passed.answer,
            "canary passed: this machine runs the baseline"
        );
        self.canaried.insert(job.baseline.clone());
        Ok(())
    }
}

/// The oldest round this pod can claim: a readable job, before its deadline, not done,
/// and no live lease held by another pod.
async fn next_round(
    cfg: &PodConfig,
    bucket: &Bucket,
    finished: &mut HashSet<i64>,
    mut proven: Proven<'_>,
) -> Result<Option<(Job, cacheon_handoff::Lease)>, PodError> {
    for round in bucket.round_ids().await? {
        if finished.contains(&round) {
            continue;
        }
        let job = match bucket.get_doc::<Job>(&layout::job(round)).await {
            Ok(Some((job, _))) => job,
            // The host writes job.json right after creating the round's directory.
            Ok(None) => continue,
            Err(HandoffError::Refused { key, source }) => {
                tracing::error!(%key, "refusing a job document: {source}");
                finished.insert(round);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if job.round_id != round {
            tracing::error!(round, job = job.round_id, "job.json names another round");
            finished.insert(round);
            continue;
        }
        let now = now_unix();
        if now >= job.deadline_at {
            finished.insert(round);
            continue;
        }
        if !bucket.claimable(round, now).await? {
            continue;
        }
        proven.ensure(cfg, &job).await?;
        // The sandbox is checked again before every claim (one probe container, seconds):
        // a firewall rule lost since the last round is found here, not by a miner.
        if let Some(image) = &cfg.requirements.safety.probe_image {
            safety::self_test(proven.engine, &cfg.sandbox, image, &cfg.pod_id)
                .await
                .map_err(PreflightError::from)?;
        }
        let now = now_unix();
        match bucket.claim(round, &cfg.pod_id, cfg.lease_ttl, now).await? {
            Claim::Won(lease) => {
                tracing::info!(round, pod = %cfg.pod_id, "claimed round");
                return Ok(Some((job, lease)));
            }
            Claim::Held { by, expires_at } => {
                tracing::debug!(round, %by, expires_at, "round is leased by another pod");
            }
            Claim::Done => {
                finished.insert(round);
            }
        }
    }
    Ok(None)
}

pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
