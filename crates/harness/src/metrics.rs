//! Metrics from raw records, with vLLM's benchmark definitions:
//!
//! - TTFT: first event carrying a generated token, minus send time;
//! - TTFB: response headers; first chunk: the first event of any kind;
//! - ITL: gaps between consecutive token-carrying events;
//! - TPOT: (E2E − TTFT) / (output tokens − 1);
//! - E2E: the last event, minus send time.
//!
//! The two numbers the score uses (SPEC §7): `ttft_s`, the median TTFT of the latency phase,
//! and `tps`, output tokens of the throughput phase over the wall time from its first send
//! to its last token. Output tokens are the validator's count with the baseline's tokenizer,
//! credited per request only up to the baseline's count for that prompt.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::stream::StreamRecord;
use crate::workload::WorkloadRun;

/// Validator-side token counts by prompt index.
pub type TokenCounts = HashMap<usize, usize>;

/// What the validator knows about each request beyond its timings.
#[derive(Debug, Clone, Default)]
pub struct Accounting {
    /// Output tokens by the baseline's tokenizer.
    pub counts: TokenCounts,
    /// The baseline's counts, the most a request is credited (`None` for the baseline).
    pub caps: Option<TokenCounts>,
    /// Requests that failed the gate: no credit, and no TTFT (infinitely slow), so a server
    /// gains nothing from answering a few prompts with fast garbage.
    pub failed: HashSet<usize>,
    /// Bytes of the first output token (baseline tokenisation): TTFT is the arrival of the
    /// event that completes it, so a server cannot start the clock with a lone space.
    pub first_token_bytes: HashMap<usize, usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestMetrics {
    pub prompt_index: usize,
    pub ttfb_ms: Option<f64>,
    pub first_chunk_ms: Option<f64>,
    pub ttft_ms: Option<f64>,
    pub e2e_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
    pub itl_ms: Vec<f64>,
    pub output_tokens: usize,
    pub credited_tokens: usize,
    /// Failed the gate: no credit, no TTFT in the score's median.
    pub failed: bool,
}

/// Percentiles by linear interpolation (numpy's default, as vLLM reports them).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    pub n: usize,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

impl Distribution {
    pub fn of(values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let mean = if v.is_empty() {
            f64::NAN
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        };
        Self {
            n: v.len(),
            mean,
            p50: percentile(&v, 50.0),
            p90: percentile(&v, 90.0),
            p99: percentile(&v, 99.0),
        }
    }
}

/// `q`-th percentile of sorted values by linear interpolation; NaN when empty.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let rank = q / 100.0 * (n - 1) as f64;
            let lo = rank.floor() as usize;
            let hi = rank.ceil() as usize;
            sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
        }
    }
}

/// Median with missing values counted as infinitely slow (a request that never produced a
/// token must not make a server look faster).
pub fn median_or_inf(values: &[Option<f64>]) -> f64 {
    let mut v: Vec<f64> = values.iter().map(|x| x.unwrap_or(f64::INFINITY)).collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::INFINITY,
        n if n % 2 == 1 => v[n / 2],
        n => {
            let (a, b) = (v[n / 2 - 1], v[n / 2]);
            if a.is_infinite() || b.is_infinite() {
                b
            } else {
                (a + b) / 2.0
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Median TTFT of the latency phase, seconds (the score's `ttft`).
    pub ttft_s: f64,
    /// Credited output tokens per second of the throughput phase (the score's `tps`).
    pub tps: f64,
    pub ttft_ms: Distribution,
    pub ttfb_ms: Distribution,
    pub first_chunk_ms: Distribution,
    pub itl_ms: Distribution,
    pub tpot_ms: Distribution,
    pub e2e_ms: Distribution,
    pub throughput_wall_s: f64,
    pub output_tokens: usize,
    pub credited_tokens: usize,
    /// Requests whose stream was broken.
    pub failed_requests: usize,
    pub requests: Vec<RequestMetrics>,
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

pub fn request_metrics(r: &StreamRecord, acc: &Accounting) -> RequestMetrics {
    let i = r.prompt_index;
    let tokens = acc.counts.get(&i).copied().unwrap_or(0);
    let failed = acc.failed.contains(&i);
    let first_bytes = acc.first_token_bytes.get(&i).copied().unwrap_or(1).max(1);
    let mut seen = 0usize;
    let ttft = r
        .events
        .iter()
        .find(|e| {
            seen += e.text.len();
            seen >= first_bytes
        })
        .map(|e| e.at_ns);
    let e2e = r.events.last().map(|e| e.at_ns);
    let token_events: Vec<u64> = r
        .events
        .iter()
        .filter(|e| e.has_token())
        .map(|e| e.at_ns)
        .collect();
    let itl_ms = token_events
        .windows(2)
        .map(|w| ms(w[1].saturating_sub(w[0])))
        .collect();
    let tpot_ms = match (ttft, e2e) {
        (Some(t), Some(e)) if tokens > 1 => Some(ms(e.saturating_sub(t)) / (tokens - 1) as f64),
        _ => None,
    };
    let credited = match (&acc.caps, failed) {
        (_, true) => 0,
        (Some(caps), false) => tokens.min(caps.get(&i).copied().unwrap_or(0)),
        (None, false) => tokens,
    };
    RequestMetrics {
        prompt_index: i,
        ttfb_ms: r.headers_ns.map(ms),
        first_chunk_ms: r.events.first().map(|e| ms(e.at_ns)),
        ttft_ms: ttft.map(ms),
        e2e_ms: e2e.map(ms),
        tpot_ms,
        itl_ms,
        output_tokens: tokens,
        credited_tokens: credited,
        failed,
    }
}

/// Summarises a run.
pub fn summarize(run: &WorkloadRun, acc: &Accounting) -> Summary {
    let latency: Vec<RequestMetrics> = run
        .latency
        .iter()
        .map(|r| request_metrics(r, acc))
        .collect();
    let throughput: Vec<RequestMetrics> = run
        .throughput
        .iter()
        .map(|r| request_metrics(r, acc))
        .collect();

    let ttft_s = median_or_inf(
        &latency
            .iter()
            .map(|m| {
                if m.failed {
                    None
                } else {
                    m.ttft_ms.map(|x| x / 1e3)
                }
            })
            .collect::<Vec<_>>(),
    );
    let first_send = run.throughput.iter().map(|r| r.sent_ns).min();
    let last_token = run
        .throughput
        .iter()
        .filter_map(|r| r.last_token_ns().map(|t| r.sent_ns + t))
        .max();
    let wall_s = match (first_send, last_token) {
        (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9,
        _ => 0.0,
    };
    let credited: usize = throughput.iter().map(|m| m.credited_tokens).sum();
    let tps = if wall_s > 0.0 {
        credited as f64 / wall_s
    } else {
        0.0
    };

    let all: Vec<&RequestMetrics> = latency.iter().chain(&throughput).collect();
    let collect = |f: &dyn Fn(&RequestMetrics) -> Option<f64>| -> Vec<f64> {
        all.iter().filter_map(|m| f(m)).collect()
    };
    let itl: Vec<f64> = all.iter().flat_map(|m| m.itl_ms.iter().copied()).collect();
    Summary {
        ttft_s,
        tps,
        ttft_ms: Distribution::of(&collect(&|m| m.ttft_ms)),
        ttfb_ms: Distribution::of(&collect(&|m| m.ttfb_ms)),
        first_chunk_ms: Distribution::of(&collect(&|m| m.first_chunk_ms)),
        itl_ms: Distribution::of(&itl),
        tpot_ms: Distribution::of(&collect(&|m| m.tpot_ms)),
        e2e_ms: Distribution::of(&collect(&|m| m.e2e_ms)),
        throughput_wall_s: wall_s,
        output_tokens: throughput.iter().map(|m| m.output_tokens).sum(),
        credited_tokens: credited,
        failed_requests: run.scored().filter(|r| r.fault.is_some()).count(),
        requests: latency.into_iter().chain(throughput).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 50.0), 2.5);
        assert!((percentile(&v, 90.0) - 3.7).abs() < 1e-12);
        assert!((percentile(&v, 99.0) - 3.97).abs() < 1e-12);
        assert!(percentile(&[], 50.0).is_nan());
        assert_eq!(Distribution::of(&[5.0, f64::NAN]).n, 1);
    }

    #[test]
    fn missing_ttfts_count_as_infinitely_slow() {
        assert_eq!(median_or_inf(&[Some(1.0), Some(3.0)]), 2.0);
        assert_eq!(median_or_inf(&[Some(1.0), None, None]), f64::INFINITY);
        assert_eq!(median_or_inf(&[Some(1.0), Some(2.0), None]), 2.0);
        assert_eq!(median_or_inf(&[]), f64::INFINITY);
    }
}
