//! Crowns under noise, simulated: how often a crown rule crowns a challenger whose true
//! advantage over the king is known, when every pass measures the baseline, the king and the
//! challenger with per-request jitter the way the harness does (SPEC §7's phases, SPEC §1's
//! score). It calibrates the king's margin and the noise multiple of the confirmation rule.
//!
//! A server is a true TTFT and a true time per output token; every request draws both with
//! log-normal jitter. A pass measures the median TTFT of the latency phase and the
//! throughput of the throughput phase (`concurrency` requests in flight, each started as one
//! ends, as the harness runs them), and the noise of the lead with `noise::lead_noise`.

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use serde::Serialize;

use crate::confirm::{Comparison, ConfirmRule, Confirmation, FirstPass};
use crate::noise::{lead_noise, makespan, RunSample};
use crate::score::{score, Speed};

/// A server's true speed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrueServer {
    pub ttft_s: f64,
    /// Seconds per output token.
    pub tpot_s: f64,
}

impl TrueServer {
    /// This server made `advantage` faster on both axes (0.05: 5 % faster).
    pub fn faster(self, advantage: f64) -> Self {
        Self {
            ttft_s: self.ttft_s / (1.0 + advantage),
            tpot_s: self.tpot_s / (1.0 + advantage),
        }
    }
}

/// The workload of one pass and the jitter of one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conditions {
    pub latency: usize,
    pub throughput: usize,
    pub concurrency: usize,
    pub tokens: usize,
    /// Coefficient of variation of every request's TTFT and token time.
    pub jitter: f64,
    /// Bootstrap resamples behind each noise figure.
    pub resamples: usize,
}

impl Default for Conditions {
    fn default() -> Self {
        Self {
            latency: 16,
            throughput: 64,
            concurrency: 32,
            tokens: 256,
            jitter: 0.05,
            resamples: 200,
        }
    }
}

/// How a crown is decided.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum CrownRule {
    /// SPEC §11 as written: one pass, `challenger > king × (1 + margin)`.
    OnePass,
    /// `confirm`: a lead within noise is measured again and decided on the lower pass.
    Confirmed(ConfirmRule),
}

/// What happened in one simulated round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoundSim {
    pub crowned: bool,
    pub confirmed: bool,
    /// The first pass's noise of the lead, relative to the king's score.
    pub noise: f64,
    /// The same in score units.
    pub lead_noise: f64,
}

/// One pass: the scores of king and challenger against the same baseline run, and the
/// noise of the challenger's lead.
fn pass(
    baseline: TrueServer,
    king: TrueServer,
    challenger: TrueServer,
    c: &Conditions,
    rng: &mut ChaCha20Rng,
) -> Comparison {
    let b = run(baseline, c, rng);
    let k = run(king, c, rng);
    let x = run(challenger, c, rng);
    let seed = {
        let mut s = [0u8; 32];
        rng.fill_bytes(&mut s);
        s
    };
    Comparison {
        king: score(true, b.speed(), k.speed()).unwrap_or(0.0),
        challenger: score(true, b.speed(), x.speed()).unwrap_or(0.0),
        noise: lead_noise(&b, &k, &x, seed, c.resamples, 0.9).map(|i| i.half_width()),
    }
}

/// Simulates one round under `rule` with the king's `margin`.
pub fn round(
    baseline: TrueServer,
    king: TrueServer,
    challenger: TrueServer,
    rule: CrownRule,
    margin: f64,
    c: &Conditions,
    rng: &mut ChaCha20Rng,
) -> RoundSim {
    let first = pass(baseline, king, challenger, c, rng);
    let noise = match first.noise {
        Some(n) if first.king > 0.0 => n / first.king,
        _ => f64::INFINITY,
    };
    let (crowned, confirmed) = match rule {
        CrownRule::OnePass => (first.clears_margin(margin), false),
        CrownRule::Confirmed(rule) => match rule.first_pass(margin, &first) {
            FirstPass::Below => (false, false),
            FirstPass::Decisive => (true, false),
            FirstPass::WithinNoise => {
                let second = pass(baseline, king, challenger, c, rng);
                let verdict = rule.confirm(margin, &first, &second);
                (verdict == Confirmation::Confirmed, true)
            }
        },
    };
    RoundSim {
        crowned,
        confirmed,
        noise,
        lead_noise: first.noise.unwrap_or(f64::INFINITY),
    }
}

/// Crown rate, confirmation rate and mean noise over `rounds` simulated rounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rates {
    pub advantage: f64,
    pub margin: f64,
    pub rule: CrownRule,
    pub rounds: usize,
    pub crowned: f64,
    pub confirmed: f64,
    pub mean_noise: f64,
    /// The mean noise of the lead in score units (the 90 % half-width the rule uses).
    pub mean_lead_noise: f64,
}

/// Runs `rounds` rounds of a challenger `advantage` faster than the king.
#[allow(clippy::too_many_arguments)]
pub fn rates(
    baseline: TrueServer,
    king: TrueServer,
    advantage: f64,
    rule: CrownRule,
    margin: f64,
    c: &Conditions,
    rounds: usize,
    seed: [u8; 32],
) -> Rates {
    let mut rng = ChaCha20Rng::from_seed(seed);
    let challenger = king.faster(advantage);
    let (mut crowned, mut confirmed, mut noise, mut lead_noise) = (0usize, 0usize, 0.0, 0.0);
    for _ in 0..rounds {
        let r = round(baseline, king, challenger, rule, margin, c, &mut rng);
        crowned += usize::from(r.crowned);
        confirmed += usize::from(r.confirmed);
        noise += r.noise;
        lead_noise += r.lead_noise;
    }
    let n = rounds.max(1) as f64;
    Rates {
        advantage,
        margin,
        rule,
        rounds,
        crowned: crowned as f64 / n,
        confirmed: confirmed as f64 / n,
        mean_noise: noise / n,
        mean_lead_noise: lead_noise / n,
    }
}

/// The lead a challenger `advantage` faster than the king has without any jitter (score
/// units): what "a true advantage of k noises" is measured against.
pub fn true_lead(baseline: TrueServer, king: TrueServer, advantage: f64, c: &Conditions) -> f64 {
    // Throughput's improvement is a ratio of request times, so one request's speed serves.
    let speed = |s: TrueServer| Speed {
        ttft_s: s.ttft_s,
        tps: 1.0 / (s.ttft_s + c.tokens as f64 * s.tpot_s),
    };
    let of = |s: TrueServer| score(true, speed(baseline), speed(s)).unwrap_or(0.0);
    of(king.faster(advantage)) - of(king)
}

/// The advantage whose true lead is `lead` (bisection; leads grow with the advantage).
pub fn advantage_for_lead(
    baseline: TrueServer,
    king: TrueServer,
    lead: f64,
    c: &Conditions,
) -> f64 {
    let (mut lo, mut hi) = (0.0f64, 10.0f64);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if true_lead(baseline, king, mid, c) < lead {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

/// One run of `server`, as the harness would summarise it.
fn run(server: TrueServer, c: &Conditions, rng: &mut ChaCha20Rng) -> RunSample {
    let mut jitter = || lognormal(c.jitter, rng);
    let latency_ttft_s = (0..c.latency)
        .map(|_| Some(server.ttft_s * jitter()))
        .collect();
    let e2e: Vec<f64> = (0..c.throughput)
        .map(|_| server.ttft_s * jitter() + c.tokens as f64 * server.tpot_s * jitter())
        .collect();
    // The harness's closed loop: in order, each request as soon as a slot is free.
    let wall = makespan(e2e.iter().copied(), c.concurrency);
    RunSample {
        latency_ttft_s,
        throughput_tokens: vec![c.tokens; c.throughput],
        throughput_e2e_s: e2e.into_iter().map(Some).collect(),
        throughput_wall_s: wall,
        concurrency: c.concurrency,
    }
}

/// exp(N(−s²/2, s²)) with `s² = ln(1 + cv²)`: mean 1, coefficient of variation `cv`.
fn lognormal(cv: f64, rng: &mut ChaCha20Rng) -> f64 {
    if cv <= 0.0 {
        return 1.0;
    }
    let s2 = (1.0 + cv * cv).ln();
    (normal(rng) * s2.sqrt() - s2 / 2.0).exp()
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut ChaCha20Rng) -> f64 {
    let unit = |rng: &mut ChaCha20Rng| ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let (u1, u2) = (unit(rng), unit(rng));
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: TrueServer = TrueServer {
        ttft_s: 0.2,
        tpot_s: 0.02,
    };

    fn king() -> TrueServer {
        BASE.faster(0.3)
    }

    fn quick() -> Conditions {
        Conditions {
            resamples: 60,
            ..Conditions::default()
        }
    }

    #[test]
    fn one_pass_at_margin_zero_is_a_coin_flip_between_equals() {
        let r = rates(
            BASE,
            king(),
            0.0,
            CrownRule::OnePass,
            0.0,
            &quick(),
            200,
            [1; 32],
        );
        assert!((0.3..0.7).contains(&r.crowned), "{r:?}");
        assert_eq!(r.confirmed, 0.0);
    }

    #[test]
    fn confirmation_keeps_equals_out_and_lets_a_clear_winner_in() {
        let rule = CrownRule::Confirmed(ConfirmRule::default());
        let equal = rates(BASE, king(), 0.0, rule, 0.0, &quick(), 200, [2; 32]);
        assert!(equal.crowned <= 0.02, "{equal:?}");
        // About half the rounds of equals clear the bare threshold, all within noise.
        assert!((0.3..0.7).contains(&equal.confirmed), "{equal:?}");
        // A true lead of three noises.
        let advantage = advantage_for_lead(BASE, king(), 3.0 * equal.mean_lead_noise, &quick());
        let lead = true_lead(BASE, king(), advantage, &quick());
        assert!((lead - 3.0 * equal.mean_lead_noise).abs() < 1e-9);
        let clear = rates(BASE, king(), advantage, rule, 0.0, &quick(), 200, [3; 32]);
        assert!(clear.crowned >= 0.9, "{clear:?}");
    }

    #[test]
    fn simulations_are_reproducible() {
        let simulate = || {
            rates(
                BASE,
                king(),
                0.01,
                CrownRule::OnePass,
                0.01,
                &quick(),
                20,
                [9; 32],
            )
        };
        assert_eq!(simulate(), simulate());
        let lognormal_mean: f64 = {
            let mut rng = ChaCha20Rng::from_seed([4; 32]);
            (0..20_000).map(|_| lognormal(0.1, &mut rng)).sum::<f64>() / 20_000.0
        };
        assert!((lognormal_mean - 1.0).abs() < 0.01, "{lognormal_mean}");
    }
}
