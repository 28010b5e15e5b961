//! The correctness gate (SPEC §10) as a pure function of the evidence the pod collects.
//!
//! For every scored request the pod gathers: the contestant's stream (validity, and the
//! logprobs it claimed), the contestant's text re-tokenised with the baseline's tokenizer and
//! teacher-forced through the baseline (per position: the baseline's top-k and the logprob
//! of the contestant's token), and the baseline's own greedy output for the same prompt.
//! From that alone this module decides, per request and overall, and names every failure.
//! Timed and checked requests are the same requests: the server cannot tell them apart.

use serde::{Deserialize, Serialize};

/// Token id in the baseline's vocabulary.
pub type TokenId = u32;

/// How many of the baseline's candidates a position is checked against (`top_logprobs: 5`).
pub const TOP_K: usize = 5;

/// Gate thresholds (SPEC §10 defaults; the reasoning is in ARCHITECTURE.md).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GateThresholds {
    /// A position agrees when the contestant's token is within this many nats of top-1.
    pub tie_gap: f64,
    /// Minimum share of agreeing positions per request.
    pub min_agreement: f64,
    /// Maximum mean |streamed logprob − teacher-forced logprob| per request.
    pub logprob_tolerance: f64,
    /// Minimum output length relative to the baseline's, unless stopped on a legitimate EOS.
    pub min_length_ratio: f64,
    /// Share of scored requests that must pass every check.
    pub min_pass_fraction: f64,
    /// Share of output tokens whose streamed logprob must line up (same byte offset, same
    /// text) with a teacher-forced one for check 3 to be judged at all.
    pub min_logprob_coverage: f64,
}

impl GateThresholds {
    /// How many of `n` positions must agree. The allowance for disagreements,
    /// `(1 - min_agreement) × n`, is rounded up, so a short answer may disagree as often per
    /// token as a long one: at 97% a 20-token answer may disagree once, not never.
    pub fn agreeing_needed(&self, n: usize) -> usize {
        let allowed = ((1.0 - self.min_agreement).max(0.0) * n as f64 - 1e-9).ceil();
        n.saturating_sub(allowed.max(0.0) as usize)
    }
}

impl Default for GateThresholds {
    fn default() -> Self {
        Self {
            tie_gap: 0.5,
            min_agreement: 0.97,
            logprob_tolerance: 0.15,
            min_length_ratio: 0.9,
            min_pass_fraction: 0.95,
            min_logprob_coverage: 0.95,
        }
    }
}

/// The baseline's view of one position of the contestant's output (teacher forcing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForcedPosition {
    /// The contestant's token at this position.
    pub token: TokenId,
    /// Its text, to align with the logprobs the contestant streamed.
    pub text: String,
    /// The baseline's logprob of that token.
    pub logprob: f64,
    /// The baseline's top candidates here, in any order (extra entries are ignored).
    pub top: Vec<(TokenId, f64)>,
    /// The logprob the contestant streamed for this very token, when one of its entries is
    /// this token (`cacheon_core::tokens` pairs them).
    #[serde(default)]
    pub streamed: Option<f64>,
}

/// What was wrong with a stream, as the harness found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamFault {
    /// Connection refused, reset or closed before the stream ended.
    Transport,
    HttpStatus,
    MalformedSse,
    InvalidJson,
    InvalidUtf8,
    ErrorEvent,
    MissingFinishReason,
    MissingDone,
    ByteCapExceeded,
    DeadlineExceeded,
    Stalled,
    /// A 3xx answer; never followed.
    Redirected,
    /// More server-sent events than the request could need (a valid stream bloated with
    /// empty events, each of which the validator would have to keep).
    TooManyEvents,
}

/// Everything the gate looks at for one scored request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestEvidence {
    pub prompt_index: usize,
    pub stream_fault: Option<StreamFault>,
    /// One entry per output token of the contestant: the tokens it generated, as far as its
    /// stream tells them (see `cacheon_core::tokens`).
    pub forced: Vec<ForcedPosition>,
    /// False when the contestant streamed text without any logprobs although asked to.
    pub logprobs_streamed: bool,
    /// The baseline's own greedy output for this prompt.
    pub reference: Vec<TokenId>,
    /// The contestant finished with `finish_reason: "stop"`.
    pub stopped: bool,
    /// After the contestant's last token: how many nats end-of-sequence trails the
    /// baseline's top-1 (0 when it is the top-1); `None` when it is not in the top-k.
    pub stop_gap: Option<f64>,
    /// Set instead of `forced` when the output was longer than the request allowed
    /// (`max_tokens` plus tokenizer slack): it was not teacher-forced at all.
    pub overlong: Option<Overlong>,
}

/// An output longer than the request allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overlong {
    pub tokens: usize,
    pub limit: usize,
}

/// Why a request failed; every failed check is reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "check", rename_all = "snake_case")]
pub enum GateFailure {
    /// Check 5: the stream itself was invalid.
    InvalidStream { fault: StreamFault },
    /// Check 1: too few positions agree with the baseline.
    LowAgreement {
        rate: f64,
        first_disagreement: usize,
    },
    /// Check 2: at the first divergence from the greedy reference, the contestant's token
    /// is not in the baseline's top-k.
    OffReference { position: usize, token: TokenId },
    /// Check 3: the streamed logprobs are absent.
    LogprobsMissing,
    /// Check 3: too few output tokens have a streamed logprob entry of their own.
    LogprobsMisaligned { matched: usize, tokens: usize },
    /// Check 3: streamed logprobs differ from the baseline's.
    DishonestLogprobs { mean_abs_diff: f64 },
    /// Check 4: too short without a legitimate end of sequence.
    TooShort {
        tokens: usize,
        baseline_tokens: usize,
    },
    /// Check 4: longer than `max_tokens` allows.
    TooLong { tokens: usize, limit: usize },
}

impl GateFailure {
    /// Stable snake_case name of the check that failed.
    pub fn code(&self) -> &'static str {
        match self {
            GateFailure::InvalidStream { .. } => "invalid_stream",
            GateFailure::LowAgreement { .. } => "low_agreement",
            GateFailure::OffReference { .. } => "off_reference",
            GateFailure::LogprobsMissing => "logprobs_missing",
            GateFailure::LogprobsMisaligned { .. } => "logprobs_misaligned",
            GateFailure::DishonestLogprobs { .. } => "dishonest_logprobs",
            GateFailure::TooShort { .. } => "too_short",
            GateFailure::TooLong { .. } => "too_long",
        }
    }
}

impl std::fmt::Display for GateFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GateFailure::InvalidStream { fault } => write!(f, "invalid stream ({fault:?})"),
            GateFailure::LowAgreement {
                rate,
                first_disagreement,
            } => write!(
                f,
                "agreement {:.1}% with the baseline, first disagreement at token {first_disagreement}",
                rate * 100.0
            ),
            GateFailure::OffReference { position, token } => write!(
                f,
                "token {token} at position {position} is outside the baseline's top-{TOP_K}"
            ),
            GateFailure::LogprobsMissing => f.write_str("no logprobs streamed"),
            GateFailure::LogprobsMisaligned { matched, tokens } => write!(
                f,
                "only {matched} of {tokens} streamed logprobs line up with the output tokens"
            ),
            GateFailure::DishonestLogprobs { mean_abs_diff } => write!(
                f,
                "streamed logprobs differ from the baseline's by {mean_abs_diff:.3} nats on average"
            ),
            GateFailure::TooShort {
                tokens,
                baseline_tokens,
            } => write!(
                f,
                "{tokens} tokens where the baseline wrote {baseline_tokens}, without a legitimate stop"
            ),
            GateFailure::TooLong { tokens, limit } => {
                write!(f, "{tokens} tokens where the request allowed {limit}")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestVerdict {
    pub prompt_index: usize,
    pub agreement: f64,
    /// What each check measured, whether it passed or not: what a miner reads to see how
    /// close it came, and what calibration reads to see how far honest servers stay from
    /// every threshold.
    #[serde(default)]
    pub measured: Measured,
    pub failures: Vec<GateFailure>,
}

/// The figures behind one request's verdict.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// Output tokens judged (the tokens the server generated, as its stream tells them).
    pub tokens: usize,
    /// Positions whose token was neither the baseline's top-1 nor within `tie_gap` of it,
    /// and how many the agreement rule allows at this length.
    pub disagreements: usize,
    pub allowed_disagreements: usize,
    /// Share of output tokens with a streamed logprob entry of their own.
    pub logprob_coverage: f64,
    /// Mean |streamed − baseline| logprob over those tokens.
    pub mean_abs_logprob_diff: Option<f64>,
    /// Output tokens over the baseline's own.
    pub length_ratio: Option<f64>,
}

impl RequestVerdict {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The contestant's overall gate verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateVerdict {
    pub passed: bool,
    pub pass_fraction: f64,
    pub requests: Vec<RequestVerdict>,
}

impl GateVerdict {
    /// The requests that failed, in prompt order.
    pub fn failed(&self) -> Vec<&RequestVerdict> {
        let mut failed: Vec<_> = self.requests.iter().filter(|r| !r.passed()).collect();
        failed.sort_by_key(|r| r.prompt_index);
        failed
    }

    /// How many requests failed each check (`GateFailure::code`); a request that failed
    /// several checks counts once under each.
    pub fn failed_by_check(&self) -> std::collections::BTreeMap<&'static str, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for r in &self.requests {
            let codes: std::collections::BTreeSet<&'static str> =
                r.failures.iter().map(GateFailure::code).collect();
            for code in codes {
                *counts.entry(code).or_default() += 1;
            }
        }
        counts
    }
}

/// The largest logprob difference one token contributes, in nats: far above any tolerance.
pub const MAX_LOGPROB_DIFF: f64 = 1000.0;

/// Checks one request.
pub fn check_request(t: &GateThresholds, e: &RequestEvidence) -> RequestVerdict {
    let mut failures = Vec::new();
    if let Some(fault) = e.stream_fault {
        failures.push(GateFailure::InvalidStream { fault });
    }
    if let Some(Overlong { tokens, limit }) = e.overlong {
        // Nothing was teacher-forced: there is nothing else to judge.
        failures.push(GateFailure::TooLong { tokens, limit });
        return RequestVerdict {
            prompt_index: e.prompt_index,
            agreement: 0.0,
            measured: Measured {
                tokens,
                ..Measured::default()
            },
            failures,
        };
    }
    let mut measured = Measured {
        tokens: e.forced.len(),
        length_ratio: (!e.reference.is_empty())
            .then(|| e.forced.len() as f64 / e.reference.len() as f64),
        ..Measured::default()
    };

    // The baseline's candidates ranked by logprob. vLLM's `prompt_logprobs` lists the
    // sampled token first and may add it as a (k+1)-th entry, so the given order and length
    // are not trusted.
    let ranked: Vec<Vec<(TokenId, f64)>> = e
        .forced
        .iter()
        .map(|p| {
            let mut top = p.top.clone();
            top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            top.truncate(TOP_K);
            top
        })
        .collect();

    // 1. Agreement with the baseline's top-1, near-ties forgiven.
    let agrees = |(p, top): (&ForcedPosition, &Vec<(TokenId, f64)>)| match top.first() {
        Some(&(best, best_lp)) => {
            p.token == best || (p.logprob.is_finite() && best_lp - p.logprob <= t.tie_gap)
        }
        None => false,
    };
    let agreeing = e.forced.iter().zip(&ranked).filter(|&x| agrees(x)).count();
    let agreement = if e.forced.is_empty() {
        1.0
    } else {
        agreeing as f64 / e.forced.len() as f64
    };
    measured.disagreements = e.forced.len() - agreeing;
    measured.allowed_disagreements = e.forced.len() - t.agreeing_needed(e.forced.len());
    if agreeing < t.agreeing_needed(e.forced.len()) {
        let first_disagreement = e
            .forced
            .iter()
            .zip(&ranked)
            .position(|x| !agrees(x))
            .unwrap_or(0);
        failures.push(GateFailure::LowAgreement {
            rate: agreement,
            first_disagreement,
        });
    }

    // 2. At the first divergence from the greedy reference (running past its end counts),
    // stay inside the top-k.
    let divergence = e
        .forced
        .iter()
        .zip(&e.reference)
        .position(|(p, r)| p.token != *r)
        .or((e.forced.len() > e.reference.len()).then_some(e.reference.len()));
    if let Some(position) = divergence {
        let token = e.forced[position].token;
        if !ranked[position].iter().any(|(tok, _)| *tok == token) {
            failures.push(GateFailure::OffReference { position, token });
        }
    }

    // 3. Honest logprobs: every token the stream names exactly is compared with the
    // baseline's logprob of that token.
    if !e.logprobs_streamed && !e.forced.is_empty() {
        failures.push(GateFailure::LogprobsMissing);
    } else {
        let pairs: Vec<(f64, f64)> = e
            .forced
            .iter()
            .filter_map(|f| f.streamed.map(|s| (s, f.logprob)))
            .collect();
        let coverage = if e.forced.is_empty() {
            1.0
        } else {
            pairs.len() as f64 / e.forced.len() as f64
        };
        measured.logprob_coverage = coverage;
        if !pairs.is_empty() {
            // Each difference is capped (NaN counts as the cap), so a server streaming
            // absurd logprobs gets a finite mean that fails, never an infinity: verdicts
            // travel as JSON, which has no infinities, and a refused `done.json` would void
            // the round for everyone in it.
            let total: f64 = pairs
                .iter()
                .map(|(s, f)| (s - f).abs().min(MAX_LOGPROB_DIFF))
                .sum();
            measured.mean_abs_logprob_diff = Some(total / pairs.len() as f64);
        }
        if coverage < t.min_logprob_coverage {
            failures.push(GateFailure::LogprobsMisaligned {
                matched: pairs.len(),
                tokens: e.forced.len(),
            });
        } else if let Some(mean_abs_diff) = measured.mean_abs_logprob_diff {
            // NaN never passes: it is not "within" the tolerance.
            let within = mean_abs_diff.is_finite() && mean_abs_diff <= t.logprob_tolerance;
            if !within {
                failures.push(GateFailure::DishonestLogprobs { mean_abs_diff });
            }
        }
    }

    // 4. Length: a legitimate early stop is fine, a truncation is not.
    let tokens = e.forced.len();
    let baseline_tokens = e.reference.len();
    let long_enough = tokens as f64 >= t.min_length_ratio * baseline_tokens as f64;
    // Ending at a near-tie with end-of-sequence is as legitimate as any other near-tie.
    let legitimate_stop = e.stopped && e.stop_gap.is_some_and(|g| g <= t.tie_gap);
    if !(long_enough || legitimate_stop) {
        failures.push(GateFailure::TooShort {
            tokens,
            baseline_tokens,
        });
    }

    RequestVerdict {
        prompt_index: e.prompt_index,
        agreement,
        measured,
        failures,
    }
}

/// Checks every scored request of a contestant and applies `min_pass_fraction`.
pub fn judge(t: &GateThresholds, evidence: &[RequestEvidence]) -> GateVerdict {
    let requests: Vec<RequestVerdict> = evidence.iter().map(|e| check_request(t, e)).collect();
    let passed_n = requests.iter().filter(|r| r.passed()).count();
    // No evidence at all is no proof of correctness.
    let pass_fraction = if requests.is_empty() {
        0.0
    } else {
        passed_n as f64 / requests.len() as f64
    };
    GateVerdict {
        passed: !requests.is_empty() && pass_fraction >= t.min_pass_fraction,
        pass_fraction,
        requests,
    }
}
