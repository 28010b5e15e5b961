//! `cacheon bench`: a miner's local rehearsal of a round. The same prompts generator,
//! harness, gate and score as the pod, against any two servers: the miner's and a baseline.
//! The miner runs first, then the baseline, as on the pod.

mod plot;
mod table;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cacheon_core::gate::GateThresholds;
use cacheon_core::prompts::{generate, Phase, PromptSet};
use cacheon_harness::{
    contestant_noise, contestant_score, evaluate, measure_baseline, run as run_workload, Baseline,
    Evaluation, HarnessConfig, Progress, StopRule, Summary, Target, Vocab, WorkloadRun,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tokio::time::Instant;

use crate::args::BenchArgs;
use crate::workload;

/// Everything `--json-out` writes.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub seed_block_hash: String,
    pub prompt_set_hash: String,
    pub harness: HarnessConfig,
    pub thresholds: GateThresholds,
    pub baseline: Side<Summary>,
    pub miner: Side<Evaluation>,
    pub score: f64,
    /// The 90 % bootstrap intervals of the score and its improvements.
    pub noise: Option<cacheon_core::noise::ScoreNoise>,
}

#[derive(Debug, Serialize)]
pub struct Side<T> {
    pub url: String,
    pub result: T,
    pub run: WorkloadRun,
}

pub async fn run(a: &BenchArgs) -> anyhow::Result<()> {
    let file = match &a.workload {
        Some(path) => workload::read_file(path)?,
        None => workload::WorkloadFile::default(),
    };
    let shape = file.shape.unwrap_or_default();
    let cfg = file.harness.unwrap_or_default();
    let thresholds = file.thresholds.unwrap_or_default();
    let (corpus, templates) = workload::load(&a.source)?;
    let prompts = generate(&a.seed, &corpus, &templates, &shape)?;

    let miner = Target::new(&a.miner, cfg.concurrency, cfg.connect_timeout)?;
    let base = Target::new(&a.baseline, cfg.concurrency, cfg.connect_timeout)?;
    let health = Duration::from_secs(a.health_timeout_s);
    let poll = Duration::from_millis(500);
    miner.wait_healthy(health, poll).await.context("miner")?;
    base.wait_healthy(health, poll).await.context("baseline")?;

    // The miner is held to the pod's fail-fast rule: a run whose verdict is certain stops
    // at once, and the baseline is not needed to say so.
    let stop = StopRule::for_contestant(
        thresholds.min_pass_fraction,
        prompts.scored_count(),
        cfg.fault_budget,
    );
    let started = Instant::now();
    let miner_run = measured("miner", &miner, &prompts, &cfg, &stop, a.quiet).await?;
    if let Some(early) = &miner_run.stopped_early {
        let reason = cacheon_pod::verdict::for_faults(early.faults.iter().copied());
        println!(
            "miner: stopped early after {:.1} s ({:?}): {} request(s) failed ({} scored) with \
             {:?}, failed requests took {:.1} s in all; the miner's run took {:.1} s",
            early.at_ns as f64 / 1e9,
            early.cause,
            early.faults.len(),
            early.failed,
            early.faults,
            early.fault_ms as f64 / 1e3,
            started.elapsed().as_secs_f64()
        );
        for r in miner_run.scored().filter(|r| r.fault.is_some()).take(5) {
            println!(
                "  request {}: {:?}: {}",
                r.prompt_index,
                r.fault,
                r.detail.as_deref().unwrap_or("")
            );
        }
        println!("verdict: FAIL ({reason})");
        if let Some(path) = &a.json_out {
            let json = serde_json::to_vec_pretty(&miner_run)?;
            std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
            println!("report (the miner's run): {}", path.display());
        }
        anyhow::bail!("the miner was disqualified: {reason}");
    }
    let base_run = measured(
        "baseline",
        &base,
        &prompts,
        &cfg,
        &StopRule::never(),
        a.quiet,
    )
    .await?;

    let vocab = Vocab::load(&a.tokenizer).context("--tokenizer")?;
    let baseline = Baseline::new(base, &cfg, Arc::new(vocab)).context("--tokenizer")?;
    let spinner = spinner(
        a.quiet,
        "teacher-forcing the miner's outputs through the baseline",
    );
    let (base_summary, reference) = measure_baseline(&baseline, &prompts, &base_run)
        .await
        .context("the baseline failed; no verdict is possible")?;
    let evaluation = evaluate(&baseline, &prompts, &reference, &miner_run, &thresholds)
        .await
        .context("the baseline failed while checking the miner")?;
    spinner.finish_and_clear();
    let score = contestant_score(&evaluation, &base_summary)
        .context("the baseline's own measurements are unusable")?;

    let noise = contestant_noise(&evaluation, &base_summary, &prompts);
    print!(
        "{}",
        table::render(&prompts, &base_summary, &evaluation, score, noise.as_ref())
    );
    if let Some(path) = &a.plot {
        plot::write(path, &base_summary, &evaluation.summary)
            .with_context(|| format!("writing plot {}", path.display()))?;
        println!("plot: {}", path.display());
    }
    if let Some(path) = &a.json_out {
        let report = BenchReport {
            seed_block_hash: prompts.seed_block_hash.to_string(),
            prompt_set_hash: prompts.prompt_set_hash.clone(),
            harness: cfg,
            thresholds,
            baseline: Side {
                url: a.baseline.clone(),
                result: base_summary,
                run: base_run,
            },
            miner: Side {
                url: a.miner.clone(),
                result: evaluation,
                run: miner_run,
            },
            score,
            noise,
        };
        let json = serde_json::to_vec_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
        println!("report: {}", path.display());
    }
    Ok(())
}

/// Runs the workload against one server with a progress bar.
pub(crate) async fn measured(
    name: &str,
    target: &Target,
    prompts: &PromptSet,
    cfg: &HarnessConfig,
    stop: &StopRule,
    quiet: bool,
) -> anyhow::Result<WorkloadRun> {
    let total = prompts.prompts.len() as u64;
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
    };
    bar.set_style(
        ProgressStyle::with_template("{prefix:>9} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(name.to_string());
    let before = |phase: Phase| match phase {
        Phase::Warmup => 0,
        Phase::Latency => prompts.phase(Phase::Warmup).count(),
        Phase::Throughput => {
            prompts.phase(Phase::Warmup).count() + prompts.phase(Phase::Latency).count()
        }
    };
    let progress = |p: Progress| {
        bar.set_position((before(p.phase) + p.done) as u64);
        bar.set_message(format!("{:?}", p.phase).to_lowercase());
    };
    let run = run_workload(target, prompts, cfg, stop, Instant::now(), &progress)
        .await
        .with_context(|| format!("running the workload against the {name}"))?;
    bar.finish_and_clear();
    let failed = run.scored().filter(|r| r.fault.is_some()).count();
    if failed > 0 {
        tracing::warn!("{name}: {failed} scored request(s) failed");
    }
    Ok(run)
}

fn spinner(quiet: bool, message: &str) -> ProgressBar {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    bar.set_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
