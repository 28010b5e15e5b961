//! `cacheon calibrate-gate`: the gate's thresholds set by measurement. Every seed is one
//! simulated round: the baseline runs the round's prompts once, then every candidate (honest
//! servers and known cheats) runs them and is judged exactly as on the pod. The table says
//! how often honest servers were disqualified (must be never), how often each cheat was
//! caught (must be always), and, per threshold, the worst value honest servers reached, so
//! the margin between what honest engines do and where the line is drawn is on record.

use std::sync::Arc;

use anyhow::Context;
use cacheon_core::gate::{GateThresholds, Measured};
use cacheon_core::prompts::{generate, BlockHash};
use cacheon_harness::{
    evaluate, measure_baseline, Baseline, HarnessConfig, StopRule, Target, Vocab,
};
use serde::Serialize;

use crate::args::CalibrateGateArgs;
use crate::commands::bench::measured;
use crate::workload;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Honest,
    Cheat,
}

/// One candidate's judged run on one seed.
#[derive(Debug, Serialize)]
struct Trial {
    candidate: String,
    kind: Kind,
    seed: u32,
    passed: bool,
    pass_fraction: f64,
    failed_checks: Vec<&'static str>,
    requests: Vec<Measured>,
}

pub async fn run(a: &CalibrateGateArgs) -> anyhow::Result<()> {
    let file = match &a.workload {
        Some(path) => workload::read_file(path)?,
        None => workload::WorkloadFile::default(),
    };
    let shape = file.shape.unwrap_or_default();
    let cfg: HarnessConfig = file.harness.unwrap_or_default();
    let thresholds = file.thresholds.unwrap_or_default();
    let (corpus, templates) = workload::load(&a.source)?;
    let vocab = Arc::new(Vocab::load(&a.tokenizer).context("--tokenizer")?);
    let base = Target::new(&a.baseline, cfg.concurrency, cfg.connect_timeout)?;
    let baseline = Baseline::new(base.clone(), &cfg, vocab).context("--tokenizer")?;
    let candidates: Vec<(Kind, &str, Target)> = a
        .honest
        .iter()
        .map(|c| (Kind::Honest, c))
        .chain(a.cheat.iter().map(|c| (Kind::Cheat, c)))
        .map(|(kind, (name, url))| {
            Target::new(url, cfg.concurrency, cfg.connect_timeout)
                .map(|t| (kind, name.as_str(), t))
                .with_context(|| name.clone())
        })
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(
        !candidates.is_empty(),
        "name at least one --honest or --cheat"
    );

    let started = std::time::Instant::now();
    let mut trials = Vec::new();
    let last = a.first_seed.saturating_add(a.seeds - 1);
    for seed in a.first_seed..=last {
        let hash: BlockHash = format!("0x{seed:064x}").parse()?;
        let prompts = generate(&hash, &corpus, &templates, &shape)?;
        let base_run =
            measured("baseline", &base, &prompts, &cfg, &StopRule::never(), true).await?;
        let (_, reference) = measure_baseline(&baseline, &prompts, &base_run)
            .await
            .context("the baseline failed")?;
        for (kind, name, target) in &candidates {
            let run = measured(name, target, &prompts, &cfg, &StopRule::never(), true).await?;
            let e = evaluate(&baseline, &prompts, &reference, &run, &thresholds)
                .await
                .with_context(|| format!("the baseline failed while checking {name}"))?;
            let mut failed_checks: Vec<&'static str> = e
                .verdict
                .requests
                .iter()
                .flat_map(|r| r.failures.iter().map(|f| f.code()))
                .collect();
            failed_checks.sort_unstable();
            failed_checks.dedup();
            eprintln!(
                "seed {seed} (last {last}): {name}: {} ({:.1}% of requests passed; failed checks: {}) [{:.0}s]",
                if e.verdict.passed { "pass" } else { "FAIL" },
                e.verdict.pass_fraction * 100.0,
                if failed_checks.is_empty() { "none".to_string() } else { failed_checks.join(", ") },
                started.elapsed().as_secs_f64()
            );
            trials.push(Trial {
                candidate: name.to_string(),
                kind: *kind,
                seed,
                passed: e.verdict.passed,
                pass_fraction: e.verdict.pass_fraction,
                failed_checks,
                requests: e
                    .verdict
                    .requests
                    .iter()
                    .map(|r| r.measured.clone())
                    .collect(),
            });
        }
        // After every seed, so a long run stopped early keeps what it measured.
        if let Some(path) = &a.json_out {
            std::fs::write(path, serde_json::to_vec_pretty(&trials)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    print!("{}", render(&trials, &candidates, &thresholds, a.seeds));
    if let Some(path) = &a.json_out {
        println!("report: {}", path.display());
    }
    Ok(())
}

fn render(
    trials: &[Trial],
    candidates: &[(Kind, &str, Target)],
    t: &GateThresholds,
    seeds: u32,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<22} {:<7} {:>13} {:>14}  failing checks",
        "candidate", "kind", "disqualified", "requests fail"
    );
    for (kind, name, _) in candidates {
        let mine: Vec<&Trial> = trials.iter().filter(|x| x.candidate == *name).collect();
        let dq = mine.iter().filter(|x| !x.passed).count();
        let requests: usize = mine.iter().map(|x| x.requests.len()).sum();
        let failed: usize = mine
            .iter()
            .map(|x| ((1.0 - x.pass_fraction) * x.requests.len() as f64).round() as usize)
            .sum();
        let mut checks: Vec<&str> = mine.iter().flat_map(|x| x.failed_checks.clone()).collect();
        checks.sort_unstable();
        checks.dedup();
        let _ = writeln!(
            out,
            "{name:<22} {:<7} {:>5}/{:<3} {:>3.0}% {:>7}/{:<6}  {}",
            if *kind == Kind::Honest {
                "honest"
            } else {
                "cheat"
            },
            dq,
            mine.len(),
            100.0 * dq as f64 / mine.len().max(1) as f64,
            failed,
            requests,
            if checks.is_empty() {
                "-".to_string()
            } else {
                checks.join(", ")
            }
        );
    }
    let honest: Vec<&Measured> = trials
        .iter()
        .filter(|x| x.kind == Kind::Honest)
        .flat_map(|x| x.requests.iter())
        .collect();
    let honest_runs: Vec<&Trial> = trials.iter().filter(|x| x.kind == Kind::Honest).collect();
    let runs = honest_runs.len();
    let false_dq = honest_runs.iter().filter(|x| !x.passed).count();
    let caught: usize = trials
        .iter()
        .filter(|x| x.kind == Kind::Cheat && !x.passed)
        .count();
    let cheats = trials.iter().filter(|x| x.kind == Kind::Cheat).count();
    let _ = writeln!(
        out,
        "\nfalse disqualifications: {false_dq}/{runs} honest runs; cheats caught: {caught}/{cheats} runs ({seeds} seeds)"
    );
    if honest.is_empty() {
        return out;
    }
    let min = |f: &dyn Fn(&Measured) -> Option<f64>| {
        honest
            .iter()
            .filter_map(|m| f(m))
            .fold(f64::INFINITY, f64::min)
    };
    let max = |f: &dyn Fn(&Measured) -> Option<f64>| {
        honest
            .iter()
            .filter_map(|m| f(m))
            .fold(f64::NEG_INFINITY, f64::max)
    };
    let slack = honest
        .iter()
        .map(|m| m.allowed_disagreements as i64 - m.disagreements as i64)
        .min()
        .unwrap_or(0);
    let disagreeing = honest.iter().filter(|m| m.disagreements > 0).count();
    let min_pass = honest_runs
        .iter()
        .map(|x| x.pass_fraction)
        .fold(f64::INFINITY, f64::min);
    let _ = writeln!(
        out,
        "\nhonest servers against every threshold ({} requests):",
        honest.len()
    );
    let _ = writeln!(
        out,
        "  min_agreement       {:>6}   worst agreement {:.4}; {} request(s) with any disagreement; least spare disagreements {slack}",
        t.min_agreement,
        min(&|m| (m.tokens > 0).then(|| 1.0 - m.disagreements as f64 / m.tokens as f64)),
        disagreeing
    );
    let _ = writeln!(
        out,
        "  logprob_tolerance   {:>6}   worst mean |Δ logprob| {:.2e}",
        t.logprob_tolerance,
        max(&|m| m.mean_abs_logprob_diff)
    );
    let _ = writeln!(
        out,
        "  min_logprob_coverage {:>5}   worst coverage {:.4}",
        t.min_logprob_coverage,
        min(&|m| (m.tokens > 0).then_some(m.logprob_coverage))
    );
    let _ = writeln!(
        out,
        "  min_length_ratio    {:>6}   shortest / longest output vs the baseline's: {:.3} / {:.3}",
        t.min_length_ratio,
        min(&|m| m.length_ratio),
        max(&|m| m.length_ratio)
    );
    let _ = writeln!(
        out,
        "  min_pass_fraction   {:>6}   worst pass fraction {:.4}",
        t.min_pass_fraction, min_pass
    );
    out
}
