//! The readable end of `cacheon bench`: both servers side by side, the gate's verdict with
//! its reasons, and the score with its arithmetic shown, so a miner can check it by hand
//! from the printed medians.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use cacheon_core::noise::{Interval, ScoreNoise};
use cacheon_core::prompts::{Phase, PromptSet};
use cacheon_harness::{Distribution, Evaluation, Summary};

use super::{AcrossRuns, RepeatFigures};

/// Failing requests listed in full; the rest are counted.
const LISTED_FAILURES: usize = 8;

pub fn render(
    prompts: &PromptSet,
    base: &Summary,
    miner: &Evaluation,
    score: f64,
    noise: Option<&ScoreNoise>,
) -> String {
    let m = &miner.summary;
    let mut s = String::new();
    let count = |p: Phase| prompts.phase(p).count();
    let _ = writeln!(
        s,
        "\ncacheon bench · seed {} · prompt set {}…\n{} warm-up + {} latency + {} throughput prompts\n",
        prompts.seed_block_hash,
        &prompts.prompt_set_hash[..prompts.prompt_set_hash.len().min(16)],
        count(Phase::Warmup),
        count(Phase::Latency),
        count(Phase::Throughput),
    );
    let _ = writeln!(
        s,
        "{:<26}{:>14}{:>14}{:>13}",
        "", "baseline", "miner", "improvement"
    );
    let ttft_imp = (base.ttft_s - m.ttft_s) / base.ttft_s;
    let tps_imp = (m.tps - base.tps) / base.tps;
    let _ = writeln!(
        s,
        "{:<26}{:>14.6}{:>14.6}{:>12.2}%",
        "TTFT median (s)",
        base.ttft_s,
        m.ttft_s,
        ttft_imp * 100.0
    );
    let _ = writeln!(
        s,
        "{:<26}{:>14.3}{:>14.3}{:>12.2}%",
        "throughput (tokens/s)",
        base.tps,
        m.tps,
        tps_imp * 100.0
    );
    match noise {
        Some(n) => {
            let _ = writeln!(
                s,
                "{:<26}TTFT [{:+.2}%, {:+.2}%], throughput [{:+.2}%, {:+.2}%], score [{:.6}, {:.6}]",
                format!("{:.0}% interval", n.level * 100.0),
                n.ttft_improvement.low * 100.0,
                n.ttft_improvement.high * 100.0,
                n.tps_improvement.low * 100.0,
                n.tps_improvement.high * 100.0,
                n.score.low,
                n.score.high,
            );
            let _ = writeln!(
                s,
                "{:<26}(bootstrap over requests, {} resamples: how far the same servers could land \
                 on another try)",
                "",
                n.resamples
            );
        }
        None => {
            let _ = writeln!(
                s,
                "{:<26}no interval (too few requests to resample)",
                "noise"
            );
        }
    }
    let rows: [(&str, &Distribution, &Distribution); 6] = [
        ("TTFT (ms)", &base.ttft_ms, &m.ttft_ms),
        ("TTFB, headers (ms)", &base.ttfb_ms, &m.ttfb_ms),
        ("first chunk (ms)", &base.first_chunk_ms, &m.first_chunk_ms),
        ("ITL (ms)", &base.itl_ms, &m.itl_ms),
        ("TPOT (ms)", &base.tpot_ms, &m.tpot_ms),
        ("E2E (ms)", &base.e2e_ms, &m.e2e_ms),
    ];
    for (name, b, x) in rows {
        for (label, pick) in [("p50", b.p50), ("p90", b.p90), ("p99", b.p99)] {
            let theirs = match label {
                "p50" => x.p50,
                "p90" => x.p90,
                _ => x.p99,
            };
            let _ = writeln!(
                s,
                "{:<26}{:>14.2}{:>14.2}",
                format!("{name} {label}"),
                pick,
                theirs
            );
        }
    }
    let _ = writeln!(
        s,
        "{:<26}{:>14}{:>14}",
        "output tokens (credited)",
        format!("{}", base.credited_tokens),
        format!("{} ({})", m.output_tokens, m.credited_tokens)
    );
    let _ = writeln!(
        s,
        "{:<26}{:>14.3}{:>14.3}",
        "throughput wall time (s)", base.throughput_wall_s, m.throughput_wall_s
    );
    let _ = writeln!(
        s,
        "{:<26}{:>14}{:>14}",
        "broken streams", base.failed_requests, m.failed_requests
    );

    let v = &miner.verdict;
    let passed = v.requests.iter().filter(|r| r.passed()).count();
    let _ = writeln!(
        s,
        "\ngate: {} — {passed}/{} scored requests passed every check ({:.1}%)",
        if v.passed { "PASS" } else { "FAIL" },
        v.requests.len(),
        v.pass_fraction * 100.0
    );
    let mut by_check: BTreeMap<&str, usize> = BTreeMap::new();
    for f in v.requests.iter().flat_map(|r| &r.failures) {
        *by_check.entry(f.code()).or_default() += 1;
    }
    for (check, n) in &by_check {
        let _ = writeln!(s, "  {check}: {n} request(s)");
    }
    for r in v
        .requests
        .iter()
        .filter(|r| !r.passed())
        .take(LISTED_FAILURES)
    {
        let reasons: Vec<String> = r.failures.iter().map(ToString::to_string).collect();
        let _ = writeln!(s, "  prompt {}: {}", r.prompt_index, reasons.join("; "));
    }
    let failing = v.requests.iter().filter(|r| !r.passed()).count();
    if failing > LISTED_FAILURES {
        let _ = writeln!(
            s,
            "  … and {} more (see --json-out)",
            failing - LISTED_FAILURES
        );
    }

    let _ = writeln!(
        s,
        "\nscore = {} × (0.5 × max(0, {:.6}) + 0.5 × max(0, {:.6})) = {:.6}",
        u8::from(v.passed),
        ttft_imp,
        tps_imp,
        score
    );
    if let Some(n) = noise {
        let _ = writeln!(
            s,
            "noise: the score's {:.0}% interval is [{:.6}, {:.6}] (± {:.6})",
            n.level * 100.0,
            n.score.low,
            n.score.high,
            n.score.half_width()
        );
    }
    s
}

/// `--repeat`: every run's improvements and score, then their means with the 90 %
/// confidence interval across runs next to each.
pub fn render_repeats(repeats: &[RepeatFigures], across: &AcrossRuns) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n{} runs (miner then baseline each, same prompts)\n{:<8}{:>16}{:>16}{:>12}{:>26}",
        across.runs, "run", "TTFT improv.", "tput improv.", "score", "score 90% (bootstrap)"
    );
    for (i, r) in repeats.iter().enumerate() {
        let boot = r.score_interval.map_or_else(
            || "-".to_owned(),
            |i| format!("[{:.6}, {:.6}]", i.low, i.high),
        );
        let _ = writeln!(
            s,
            "{:<8}{:>15.2}%{:>15.2}%{:>12.6}{:>26}{}",
            i + 1,
            r.ttft_improvement * 100.0,
            r.tps_improvement * 100.0,
            r.score,
            boot,
            if r.passed { "" } else { "  (gate FAIL)" }
        );
    }
    let pct = |i: Option<Interval>| {
        i.map_or_else(
            || "-".to_owned(),
            |i| {
                format!(
                    "{:+.2}% [{:+.2}%, {:+.2}%]",
                    (i.low + i.high) * 50.0,
                    i.low * 100.0,
                    i.high * 100.0
                )
            },
        )
    };
    let _ = writeln!(
        s,
        "{:<26}{}\n{:<26}{}",
        "mean TTFT improvement",
        pct(across.ttft_improvement),
        "mean throughput improv.",
        pct(across.tps_improvement)
    );
    let _ = writeln!(
        s,
        "{:<26}{}",
        "mean score",
        across.score.map_or_else(
            || "-".to_owned(),
            |i| format!(
                "{:.6} [{:.6}, {:.6}] (90% confidence interval of the mean, Student's t)",
                (i.low + i.high) / 2.0,
                i.low,
                i.high
            )
        )
    );
    s
}
