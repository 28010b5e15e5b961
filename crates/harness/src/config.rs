//! What the harness sends and how long it waits: the knobs of SPEC §7.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Per-run settings. Defaults are SPEC §7's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HarnessConfig {
    /// `model` in every request.
    pub model: String,
    pub max_tokens: u32,
    pub top_logprobs: u8,
    /// Requests in flight during the throughput phase.
    pub concurrency: usize,
    /// Total time one request may take, headers to `[DONE]`.
    #[serde(with = "millis")]
    pub deadline: Duration,
    /// Longest silence between two events before the stream counts as stalled.
    #[serde(with = "millis")]
    pub stall_timeout: Duration,
    /// Most bytes one response may send.
    pub byte_cap: u64,
    /// Time to connect (not part of any measurement: connections are opened beforehand).
    #[serde(with = "millis")]
    pub connect_timeout: Duration,
    /// Total time one server's whole workload may take; requests not sent by then are
    /// recorded as past their deadline, so a slow server cannot hold a round hostage.
    #[serde(with = "millis")]
    pub run_budget: Duration,
    /// Slowest generation a request may show, in output tokens per second after the first
    /// `stall_timeout`: each request's deadline is `stall_timeout + max_tokens /
    /// min_token_rate` (never past `deadline`), so a server that drips one token just
    /// inside every stall timeout fails in about a minute, not `deadline`. 0 disables it.
    pub min_token_rate: f64,
    /// Total wall time a contestant's failed requests may take before its run stops (see
    /// `stop::StopRule`): bounds how long a stalling or dripping server holds the pod.
    #[serde(with = "millis")]
    pub fault_budget: Duration,
    /// Time one baseline request (tokenise, teacher-force) may take.
    #[serde(with = "millis")]
    pub baseline_timeout: Duration,
    /// Token texts that end a sequence (the model's EOS), to find how far end-of-sequence
    /// trails the baseline's top-1 after a contestant stopped.
    pub stop_tokens: Vec<String>,
}

impl HarnessConfig {
    /// The most output tokens (baseline tokenisation) a request may have: `max_tokens` plus
    /// slack for a server whose own tokenisation differs a little from the baseline's.
    pub fn output_limit(&self) -> usize {
        let n = self.max_tokens as usize;
        n + n / 8 + 4
    }

    /// The most server-sent events one request may send: vLLM sends one per token plus a
    /// role chunk, a usage chunk and `[DONE]`; four times the output limit leaves room for
    /// servers that split tokens or send empty keep-alive events, and lets an output that
    /// ignores `max_tokens` be judged `too_long`. Every event is kept until the stream
    /// ends, so this, with `byte_cap`, bounds what one request can cost.
    pub fn max_events(&self) -> usize {
        4 * self.output_limit() + 64
    }

    /// The total time one request may take (see `min_token_rate`).
    pub fn request_deadline(&self) -> Duration {
        if self.min_token_rate > 0.0 && self.min_token_rate.is_finite() {
            let generation =
                Duration::from_secs_f64(f64::from(self.max_tokens) / self.min_token_rate);
            self.deadline.min(self.stall_timeout + generation)
        } else {
            self.deadline
        }
    }
}

impl Default for HarnessConfig {
    fn default() -> Self {
        Self {
            model: "Qwen2.5-72B-Instruct".to_string(),
            max_tokens: 256,
            top_logprobs: 5,
            concurrency: 32,
            deadline: Duration::from_secs(300),
            stall_timeout: Duration::from_secs(30),
            byte_cap: 4 << 20,
            connect_timeout: Duration::from_secs(10),
            run_budget: Duration::from_secs(30 * 60),
            min_token_rate: 4.0,
            fault_budget: Duration::from_secs(90),
            baseline_timeout: Duration::from_secs(120),
            stop_tokens: vec!["<|im_end|>".into(), "<|endoftext|>".into()],
        }
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}
