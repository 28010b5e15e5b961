//! How much of a score is noise: a percentile bootstrap over the requests of one run.
//!
//! A score compares two medians and two rates measured once. Resampling the prompts (with
//! replacement) and scoring every resample shows how far the score would move if the same
//! servers answered another draw of such prompts: the interval is the spread of those
//! scores. It is the noise figure `cacheon bench` prints next to every improvement. The
//! resampling is paired: a drawn prompt brings both servers' answers to it, so the prompts'
//! own differences (a long answer next to a short one) cancel and only the servers' do not.
//! Throughput is one wall time per run, which no resampling can vary directly: each
//! server's resampled throughput is its measured one scaled by how the makespan of its
//! drawn request times compares with their mean over all draws, the requests scheduled as
//! the harness runs them (in order, `concurrency` at a time). The phase ends with its slowest requests, so its
//! noise is in that tail; a mean of request times would miss it (`cacheon calibrate-crown`
//! measured a bootstrap without it at 0.4 to 0.6 of the true spread at concurrency 32).
//!
//! Deterministic: the resamples come from ChaCha20 keyed with the caller's seed (the
//! round's prompt-set hash), so every validator computes the same interval from the same
//! measurements.

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::score::{score, Speed};

/// What one server's run contributes to the score, prompt by prompt, in the prompt set's
/// order (so that two servers' samples line up).
#[derive(Debug, Clone, PartialEq)]
pub struct RunSample {
    /// TTFT (seconds) of every latency-phase prompt; `None` when it does not count for the
    /// median (failed, no token).
    pub latency_ttft_s: Vec<Option<f64>>,
    /// Credited tokens of every throughput-phase prompt.
    pub throughput_tokens: Vec<usize>,
    /// Send-to-last-event time (seconds) of every throughput-phase prompt, when it had one.
    pub throughput_e2e_s: Vec<Option<f64>>,
    /// The throughput phase's wall time (first send to last token), seconds.
    pub throughput_wall_s: f64,
    /// Requests in flight at once in the throughput phase: the harness starts them in
    /// prompt order, each as soon as a slot is free.
    pub concurrency: usize,
}

impl RunSample {
    /// The score's two figures over every prompt: the measured ones.
    pub fn speed(&self) -> Speed {
        self.speed_of(
            &(0..self.latency_ttft_s.len()).collect::<Vec<_>>(),
            &(0..self.throughput_tokens.len()).collect::<Vec<_>>(),
        )
    }

    /// The score's two figures over the drawn prompts.
    fn speed_of(&self, latency: &[usize], throughput: &[usize]) -> Speed {
        let ttfts: Vec<f64> = latency
            .iter()
            .filter_map(|&i| self.latency_ttft_s[i])
            .collect();
        let tokens: usize = throughput.iter().map(|&i| self.throughput_tokens[i]).sum();
        Speed {
            ttft_s: median(&ttfts),
            tps: tokens as f64 / self.throughput_wall_s,
        }
    }
}

/// A two-sided interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

impl Interval {
    /// Half its width: the noise figure.
    pub fn half_width(&self) -> f64 {
        (self.high - self.low) / 2.0
    }

    pub fn contains(&self, x: f64) -> bool {
        self.low <= x && x <= self.high
    }
}

/// A challenger's lead over the king in one pass (score − score) and its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Lead {
    pub lead: f64,
    pub interval: Interval,
}

/// The intervals of the score and of its two components (improvements as fractions,
/// `(baseline - miner) / baseline` for TTFT and `(miner - baseline) / baseline` for
/// throughput, unclamped so the interval shows how far below zero they may be).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoreNoise {
    /// Coverage of the intervals (0.9: the 5th to the 95th percentile).
    pub level: f64,
    pub resamples: usize,
    pub ttft_improvement: Interval,
    pub tps_improvement: Interval,
    pub score: Interval,
}

/// Bootstraps the score of `miner` against `baseline`. `None` when either run has no
/// latency or throughput request to resample, or the baseline's own figures are unusable.
pub fn score_noise(
    baseline: &RunSample,
    miner: &RunSample,
    passed: bool,
    seed: [u8; 32],
    resamples: usize,
    level: f64,
) -> Option<ScoreNoise> {
    let usable = |r: &RunSample| {
        !r.latency_ttft_s.is_empty() && !r.throughput_tokens.is_empty() && r.throughput_wall_s > 0.0
    };
    let paired = baseline.latency_ttft_s.len() == miner.latency_ttft_s.len()
        && baseline.throughput_tokens.len() == miner.throughput_tokens.len();
    if !usable(baseline)
        || !usable(miner)
        || !paired
        || resamples == 0
        || !(0.0..1.0).contains(&level)
    {
        return None;
    }
    score(passed, baseline.speed(), miner.speed()).ok()?;
    let mut rng = ChaCha20Rng::from_seed(seed);
    let mut ttft = Vec::with_capacity(resamples);
    let mut tps = Vec::with_capacity(resamples);
    let mut scores = Vec::with_capacity(resamples);
    let draws = Draws::new(baseline, resamples, &mut rng);
    let (fb, fm) = (baseline.tail_factors(&draws), miner.tail_factors(&draws));
    for (i, (latency, throughput)) in draws.iter().enumerate() {
        let (b, m) = drawn_speeds(baseline, miner, latency, throughput, (fb[i], fm[i]));
        ttft.push((b.ttft_s - m.ttft_s) / b.ttft_s);
        tps.push((m.tps - b.tps) / b.tps);
        // A resampled baseline is as usable as the measured one (same positive values).
        scores.push(score(passed, b, m).unwrap_or(0.0));
    }
    let tail = (1.0 - level) / 2.0;
    // Only finite bounds: these figures go into JSON documents, where a NaN would be null
    // and refuse the whole document.
    let interval = |mut v: Vec<f64>| {
        v.retain(|x| x.is_finite());
        v.sort_by(f64::total_cmp);
        let i = Interval {
            low: quantile(&v, tail),
            high: quantile(&v, 1.0 - tail),
        };
        (i.low.is_finite() && i.high.is_finite()).then_some(i)
    };
    Some(ScoreNoise {
        level,
        resamples,
        ttft_improvement: interval(ttft)?,
        tps_improvement: interval(tps)?,
        score: interval(scores)?,
    })
}

/// The interval of the challenger's lead over the king (`challenger − king`, their scores
/// against the same baseline run), with the three runs resampled together on the same drawn
/// prompts: the noise of the comparison a crown decides on (`confirm`). The baseline's own
/// noise moves both scores alike and mostly cancels here, which the two contestants'
/// separate intervals cannot show.
pub fn lead_noise(
    baseline: &RunSample,
    king: &RunSample,
    challenger: &RunSample,
    seed: [u8; 32],
    resamples: usize,
    level: f64,
) -> Option<Interval> {
    let lens = |r: &RunSample| (r.latency_ttft_s.len(), r.throughput_tokens.len());
    if lens(baseline) != lens(king)
        || lens(baseline) != lens(challenger)
        || baseline.latency_ttft_s.is_empty()
        || baseline.throughput_tokens.is_empty()
        || [baseline, king, challenger]
            .iter()
            .any(|r| r.throughput_wall_s <= 0.0)
        || resamples == 0
        || !(0.0..1.0).contains(&level)
    {
        return None;
    }
    let mut rng = ChaCha20Rng::from_seed(seed);
    let mut leads = Vec::with_capacity(resamples);
    let draws = Draws::new(baseline, resamples, &mut rng);
    let fb = baseline.tail_factors(&draws);
    let (fk, fx) = (king.tail_factors(&draws), challenger.tail_factors(&draws));
    for (i, (latency, throughput)) in draws.iter().enumerate() {
        let (b, k) = drawn_speeds(baseline, king, latency, throughput, (fb[i], fk[i]));
        let (_, x) = drawn_speeds(baseline, challenger, latency, throughput, (fb[i], fx[i]));
        let k = score(true, b, k).ok()?;
        let x = score(true, b, x).ok()?;
        leads.push(x - k);
    }
    leads.retain(|r| r.is_finite());
    if leads.is_empty() {
        return None;
    }
    leads.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    Some(Interval {
        low: quantile(&leads, tail),
        high: quantile(&leads, 1.0 - tail),
    })
}

/// The prompts of every resample, drawn once so each server's throughput can be centred on
/// the mean over all of them (`RunSample::tail_factors`).
struct Draws {
    latency: Vec<Vec<usize>>,
    throughput: Vec<Vec<usize>>,
}

impl Draws {
    fn new(shape: &RunSample, resamples: usize, rng: &mut ChaCha20Rng) -> Self {
        let (mut latency, mut throughput) = (Vec::new(), Vec::new());
        for _ in 0..resamples {
            latency.push(draw(shape.latency_ttft_s.len(), rng));
            throughput.push(draw(shape.throughput_tokens.len(), rng));
        }
        Self {
            latency,
            throughput,
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&[usize], &[usize])> {
        self.latency
            .iter()
            .zip(&self.throughput)
            .map(|(l, t)| (l.as_slice(), t.as_slice()))
    }
}

/// The baseline's and a contestant's figures over the drawn prompts, their throughputs
/// scaled by their `tail_factors`.
fn drawn_speeds(
    baseline: &RunSample,
    miner: &RunSample,
    latency: &[usize],
    throughput: &[usize],
    (tail_b, tail_m): (f64, f64),
) -> (Speed, Speed) {
    let mut b = baseline.speed_of(latency, throughput);
    let mut m = miner.speed_of(latency, throughput);
    b.tps *= tail_b;
    m.tps *= tail_m;
    (b, m)
}

impl RunSample {
    /// A run's throughput has one wall time, which no draw can vary directly: it is scaled,
    /// per resample, by how the makespan of this server's drawn request times (scheduled as
    /// the harness runs them: in order, `concurrency` at a time) compares with the mean
    /// makespan over all resamples. The phase ends with its slowest requests, so its noise is
    /// in that tail; centring on the mean rather than on the measured order keeps a resample
    /// that misses the slowest request (about a third of them) from biasing the interval
    /// upwards. 1 where a makespan is 0.
    fn tail_factors(&self, draws: &Draws) -> Vec<f64> {
        let duration = |i: usize| {
            self.throughput_e2e_s
                .get(i)
                .copied()
                .flatten()
                .unwrap_or(0.0)
        };
        let spans: Vec<f64> = draws
            .throughput
            .iter()
            .map(|drawn| makespan(drawn.iter().map(|&i| duration(i)), self.concurrency))
            .collect();
        let positive: Vec<f64> = spans.iter().copied().filter(|s| *s > 0.0).collect();
        let mean = positive.iter().sum::<f64>() / positive.len().max(1) as f64;
        spans
            .iter()
            .map(|&s| if s > 0.0 && mean > 0.0 { mean / s } else { 1.0 })
            .collect()
    }
}

/// When the last of `durations` ends if each starts, in order, as soon as one of
/// `concurrency` slots is free: the throughput phase's closed loop.
pub fn makespan(durations: impl Iterator<Item = f64>, concurrency: usize) -> f64 {
    let mut free_at = vec![0.0f64; concurrency.max(1)];
    let mut end = 0.0f64;
    for d in durations {
        let (slot, start) = free_at
            .iter()
            .copied()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or((0, 0.0));
        let done = start + d.max(0.0);
        if let Some(s) = free_at.get_mut(slot) {
            *s = done;
        }
        end = end.max(done);
    }
    end
}

/// The 90 % confidence interval of the mean of `values` (independent runs), Student's t:
/// `mean ± t(0.95, n−1) × sd / √n`. `None` for fewer than two finite values.
pub fn mean_interval(values: &[f64]) -> Option<Interval> {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let n = v.len();
    if n < 2 {
        return None;
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    // The 95th percentile of Student's t by degrees of freedom (1..=10), then the normal's
    // 1.645 approached from above.
    const T95: [f64; 10] = [
        6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833, 1.812,
    ];
    let t = match T95.get(n - 2) {
        Some(t) => *t,
        None if n <= 31 => 1.697,
        None => 1.645,
    };
    let half = t * (var / n as f64).sqrt();
    Some(Interval {
        low: mean - half,
        high: mean + half,
    })
}

/// `n` indices below `n`, with replacement.
fn draw(n: usize, rng: &mut ChaCha20Rng) -> Vec<usize> {
    let m = n as u64;
    // A modulo bias of at most n / 2^64 is immaterial here.
    (0..n).map(|_| (rng.next_u64() % m) as usize).collect()
}

fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return f64::INFINITY;
    }
    s.sort_by(f64::total_cmp);
    let mid = s.len() / 2;
    if s.len() % 2 == 1 {
        s[mid]
    } else {
        (s[mid - 1] + s[mid]) / 2.0
    }
}

/// Linear interpolation between order statistics of a sorted slice.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic spread around `ttft` and `tokens`; servers with another `phase`
    /// vary differently from prompt to prompt.
    fn run(ttft: f64, spread: f64, tokens: usize, wall_s: f64, n: usize) -> RunSample {
        let phase = wall_s; // distinct per server in these tests
        RunSample {
            latency_ttft_s: (0..n)
                .map(|i| Some(ttft * (1.0 + spread * ((i as f64 * 0.7 + phase).sin()))))
                .collect(),
            throughput_tokens: (0..4 * n)
                .map(|i| {
                    let wobble = spread * tokens as f64 * ((i as f64 + phase).cos());
                    (tokens as f64 + wobble) as usize
                })
                .collect(),
            throughput_e2e_s: (0..4 * n)
                .map(|i| Some(wall_s / 8.0 * (1.0 + spread * ((i as f64 * 1.3 + phase).sin()))))
                .collect(),
            throughput_wall_s: wall_s,
            concurrency: 4,
        }
    }

    #[test]
    fn the_interval_holds_the_measured_score_and_is_reproducible() {
        let base = run(0.2, 0.1, 250, 10.0, 16);
        let miner = run(0.15, 0.1, 250, 8.0, 16);
        let a = score_noise(&base, &miner, true, [7; 32], 1000, 0.9).unwrap();
        let b = score_noise(&base, &miner, true, [7; 32], 1000, 0.9).unwrap();
        assert_eq!(a, b);
        let measured = score(true, base.speed(), miner.speed()).unwrap();
        assert!(a.score.contains(measured), "{a:?} vs {measured}");
        assert!(a.score.half_width() > 0.0);
        assert!(a.ttft_improvement.low < a.ttft_improvement.high);
        // Another seed: another interval, about as wide.
        let c = score_noise(&base, &miner, true, [8; 32], 1000, 0.9).unwrap();
        assert_ne!(a, c);
        let ratio = a.score.half_width() / c.score.half_width();
        assert!((0.7..1.4).contains(&ratio), "{ratio}");
    }

    #[test]
    fn the_prompts_own_differences_cancel() {
        // Both servers answer long and short prompts alike, the miner 20 % faster on each:
        // however the prompts are drawn, throughput improves by the same 25 %.
        let lengths: Vec<usize> = (0..64)
            .map(|i| if i % 2 == 0 { 32 } else { 1024 })
            .collect();
        let sample = |wall: f64| RunSample {
            latency_ttft_s: vec![Some(0.1); 16],
            throughput_tokens: lengths.clone(),
            throughput_e2e_s: lengths
                .iter()
                .map(|&l| Some(wall * l as f64 / 1e4))
                .collect(),
            throughput_wall_s: wall,
            concurrency: 8,
        };
        let n = score_noise(&sample(10.0), &sample(8.0), true, [3; 32], 500, 0.9).unwrap();
        assert!((n.tps_improvement.low - 0.25).abs() < 1e-9, "{n:?}");
        assert!((n.tps_improvement.high - 0.25).abs() < 1e-9, "{n:?}");
    }

    #[test]
    fn no_spread_no_noise_and_more_requests_less_noise() {
        let flat = run(0.2, 0.0, 250, 10.0, 16);
        let n = score_noise(&flat, &run(0.1, 0.0, 250, 5.0, 16), true, [1; 32], 200, 0.9).unwrap();
        assert_eq!(n.score.half_width(), 0.0);
        let few = score_noise(
            &run(0.2, 0.2, 250, 10.0, 8),
            &run(0.15, 0.2, 250, 8.0, 8),
            true,
            [2; 32],
            1000,
            0.9,
        )
        .unwrap();
        let many = score_noise(
            &run(0.2, 0.2, 250, 10.0, 128),
            &run(0.15, 0.2, 250, 8.0, 128),
            true,
            [2; 32],
            1000,
            0.9,
        )
        .unwrap();
        assert!(
            many.score.half_width() < few.score.half_width(),
            "{many:?} {few:?}"
        );
    }

    #[test]
    fn unusable_runs_have_no_interval() {
        let ok = run(0.2, 0.1, 250, 10.0, 16);
        let empty = RunSample {
            latency_ttft_s: vec![],
            throughput_tokens: vec![1],
            throughput_e2e_s: vec![Some(1.0)],
            throughput_wall_s: 1.0,
            concurrency: 1,
        };
        assert!(score_noise(&empty, &ok, true, [0; 32], 10, 0.9).is_none());
        // Samples of different prompt sets cannot be paired.
        let other = run(0.2, 0.1, 250, 10.0, 17);
        assert!(score_noise(&ok, &other, true, [0; 32], 10, 0.9).is_none());
        assert!(score_noise(&ok, &ok, true, [0; 32], 0, 0.9).is_none());
        // A failed gate scores 0 in every resample.
        let failed = score_noise(&ok, &ok, false, [0; 32], 50, 0.9).unwrap();
        assert_eq!((failed.score.low, failed.score.high), (0.0, 0.0));
    }

    #[test]
    fn a_lead_interval_holds_the_measured_lead_and_shrinks_with_more_prompts() {
        let base = run(0.2, 0.1, 250, 10.0, 16);
        let king = run(0.15, 0.1, 250, 8.0, 16);
        let challenger = run(0.14, 0.1, 250, 7.5, 16);
        let lead = score(true, base.speed(), challenger.speed()).unwrap()
            - score(true, base.speed(), king.speed()).unwrap();
        let i = lead_noise(&base, &king, &challenger, [5; 32], 1000, 0.9).unwrap();
        assert!(i.contains(lead), "{i:?} vs {lead}");
        assert_eq!(
            lead_noise(&base, &king, &challenger, [5; 32], 1000, 0.9),
            Some(i)
        );
        let many = lead_noise(
            &run(0.2, 0.1, 250, 10.0, 128),
            &run(0.15, 0.1, 250, 8.0, 128),
            &run(0.14, 0.1, 250, 7.5, 128),
            [5; 32],
            1000,
            0.9,
        )
        .unwrap();
        assert!(many.half_width() < i.half_width(), "{many:?} {i:?}");
        // A king at 0 still has a lead interval (a ratio would not).
        let slow_king = run(0.3, 0.1, 250, 20.0, 16);
        assert!(lead_noise(&base, &slow_king, &challenger, [5; 32], 200, 0.9).is_some());
    }

    #[test]
    fn the_mean_of_runs_has_a_student_interval() {
        // 1, 2, 3: mean 2, sd 1, t(0.95, 2) = 2.920: 2 ± 2.920 / √3.
        let i = mean_interval(&[1.0, 2.0, 3.0]).unwrap();
        let half = 2.920 / 3f64.sqrt();
        assert!((i.low - (2.0 - half)).abs() < 1e-12, "{i:?}");
        assert!((i.high - (2.0 + half)).abs() < 1e-12, "{i:?}");
        assert_eq!(mean_interval(&[5.0, 5.0]).unwrap().half_width(), 0.0);
        assert!(mean_interval(&[1.0]).is_none());
        assert!(mean_interval(&[1.0, f64::NAN]).is_none());
    }
}
