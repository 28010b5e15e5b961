//! `cacheon bench`: a miner's local rehearsal of a round. The same prompts generator,
//! harness, gate and score as the pod, against any two servers: the miner's and a baseline.
//! The miner runs first, then the baseline, as on the pod.

mod plot;
mod table;
mod trial;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cacheon_core::gate::GateThresholds;
use cacheon_core::noise::{mean_interval, Interval, ScoreNoise};
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
    /// The 90 % bootstrap intervals of the score and its improvements (the last run).
    pub noise: Option<ScoreNoise>,
    /// Every run's figures (`--repeat`), the last one being the run reported above.
    pub repeats: Vec<RepeatFigures>,
    /// The mean of the runs with its 90 % confidence interval, with two runs or more.
    pub across_runs: Option<AcrossRuns>,
}

#[derive(Debug, Serialize)]
pub struct Side<T> {
    pub url: String,
    pub result: T,
    pub run: WorkloadRun,
}

pub async fn run(a: &BenchArgs) -> anyhow::Result<()> {
    let Some(reference) = &a.image else {
        let miner = a.miner.as_deref().context("--miner or --image")?;
        return run_against(a, miner).await;
    };
    let trial = trial::start(a, reference).await?;
    let outcome = run_against(a, &trial.url()).await;
    let image = trial.image().to_string();
    let tail = trial.teardown().await;
    if outcome.is_err() {
        eprintln!("--- the last lines of {image}'s log ---\n{tail}");
    }
    outcome
}

async fn run_against(a: &BenchArgs, miner_url: &str) -> anyhow::Result<()> {
    let file = match &a.workload {
        Some(path) => workload::read_file(path)?,
        None => workload::WorkloadFile::default(),
    };
    let shape = file.shape.unwrap_or_default();
    let cfg = file.harness.unwrap_or_default();
    let thresholds = file.thresholds.unwrap_or_default();
    let (corpus, templates) = workload::load(&a.source)?;
    let prompts = generate(&a.seed, &corpus, &templates, &shape)?;

    let miner = Target::new(miner_url, cfg.concurrency, cfg.connect_timeout)?;
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
    let vocab = Vocab::load(&a.tokenizer).context("--tokenizer")?;
    let baseline = Baseline::new(base.clone(), &cfg, Arc::new(vocab)).context("--tokenizer")?;
    let sides = Sides {
        miner: &miner,
        base: &base,
        baseline: &baseline,
    };
    let repeat = a.repeat.max(1);
    let mut repeats = Vec::with_capacity(repeat as usize);
    let mut last = None;
    for i in 1..=repeat {
        if repeat > 1 {
            eprintln!("run {i} of {repeat}");
        }
        let one = match one_run(a, &sides, &prompts, &cfg, &thresholds, &stop).await? {
            Ok(one) => one,
            Err(failed) => return fail_early(a, &failed),
        };
        repeats.push(repeat_figures(&one));
        last = Some(one);
    }
    let Some(one) = last else {
        anyhow::bail!("no run");
    };
    print!(
        "{}",
        table::render(
            &prompts,
            &one.base_summary,
            &one.evaluation,
            one.score,
            one.noise.as_ref()
        )
    );
    let across = (repeat > 1).then(|| across_runs(&repeats));
    if let Some(across) = &across {
        print!("{}", table::render_repeats(&repeats, across));
    }
    if let Some(path) = &a.plot {
        plot::write(path, &one.base_summary, &one.evaluation.summary)
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
                result: one.base_summary,
                run: one.base_run,
            },
            miner: Side {
                url: miner_url.to_string(),
                result: one.evaluation,
                run: one.miner_run,
            },
            score: one.score,
            noise: one.noise,
            repeats,
            across_runs: across,
        };
        let json = serde_json::to_vec_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
        println!("report: {}", path.display());
    }
    Ok(())
}

/// The two servers and the baseline's oracle over the same connection pool.
struct Sides<'a> {
    miner: &'a Target,
    base: &'a Target,
    baseline: &'a Baseline,
}

/// One measurement of both servers, judged and scored.
struct OneRun {
    miner_run: WorkloadRun,
    base_run: WorkloadRun,
    base_summary: Summary,
    evaluation: Evaluation,
    score: f64,
    noise: Option<ScoreNoise>,
}

/// The miner's run when it stopped early: its verdict is certain without the baseline.
type StoppedEarly = WorkloadRun;

async fn one_run(
    a: &BenchArgs,
    sides: &Sides<'_>,
    prompts: &PromptSet,
    cfg: &HarnessConfig,
    thresholds: &GateThresholds,
    stop: &StopRule,
) -> anyhow::Result<Result<OneRun, StoppedEarly>> {
    let miner_run = measured("miner", sides.miner, prompts, cfg, stop, a.quiet).await?;
    if miner_run.stopped_early.is_some() {
        return Ok(Err(miner_run));
    }
    let never = StopRule::never();
    let base_run = measured("baseline", sides.base, prompts, cfg, &never, a.quiet).await?;
    let spinner = spinner(
        a.quiet,
        "teacher-forcing the miner's outputs through the baseline",
    );
    let (base_summary, reference) = measure_baseline(sides.baseline, prompts, &base_run)
        .await
        .context("the baseline failed; no verdict is possible")?;
    let evaluation = evaluate(sides.baseline, prompts, &reference, &miner_run, thresholds)
        .await
        .context("the baseline failed while checking the miner")?;
    spinner.finish_and_clear();
    let score = contestant_score(&evaluation, &base_summary)
        .context("the baseline's own measurements are unusable")?;
    let noise = contestant_noise(&evaluation, &base_summary, prompts, cfg.concurrency);
    Ok(Ok(OneRun {
        miner_run,
        base_run,
        base_summary,
        evaluation,
        score,
        noise,
    }))
}

/// Prints why the miner stopped early and fails the command.
fn fail_early(a: &BenchArgs, miner_run: &WorkloadRun) -> anyhow::Result<()> {
    let Some(early) = &miner_run.stopped_early else {
        anyhow::bail!("the miner's run did not stop early");
    };
    let reason = cacheon_pod::verdict::for_faults(early.faults.iter().copied());
    println!(
        "miner: stopped early after {:.1} s ({:?}): {} request(s) failed ({} scored) with \
         {:?}, failed requests took {:.1} s in all",
        early.at_ns as f64 / 1e9,
        early.cause,
        early.faults.len(),
        early.failed,
        early.faults,
        early.fault_ms as f64 / 1e3,
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
        let json = serde_json::to_vec_pretty(miner_run)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
        println!("report (the miner's run): {}", path.display());
    }
    anyhow::bail!("the miner was disqualified: {reason}");
}

/// One repeat's figures, for `--repeat`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RepeatFigures {
    pub ttft_improvement: f64,
    pub tps_improvement: f64,
    pub score: f64,
    pub passed: bool,
    /// This run's own 90 % bootstrap interval of the score.
    pub score_interval: Option<Interval>,
}

fn repeat_figures(one: &OneRun) -> RepeatFigures {
    let (b, m) = (&one.base_summary, &one.evaluation.summary);
    RepeatFigures {
        ttft_improvement: (b.ttft_s - m.ttft_s) / b.ttft_s,
        tps_improvement: (m.tps - b.tps) / b.tps,
        score: one.score,
        passed: one.evaluation.verdict.passed,
        score_interval: one.noise.map(|n| n.score),
    }
}

/// The mean over the repeats and its 90 % confidence interval (Student's t), per figure.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct AcrossRuns {
    pub runs: usize,
    pub ttft_improvement: Option<Interval>,
    pub tps_improvement: Option<Interval>,
    pub score: Option<Interval>,
}

fn across_runs(repeats: &[RepeatFigures]) -> AcrossRuns {
    let of =
        |f: fn(&RepeatFigures) -> f64| mean_interval(&repeats.iter().map(f).collect::<Vec<_>>());
    AcrossRuns {
        runs: repeats.len(),
        ttft_improvement: of(|r| r.ttft_improvement),
        tps_improvement: of(|r| r.tps_improvement),
        score: of(|r| r.score),
    }
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
