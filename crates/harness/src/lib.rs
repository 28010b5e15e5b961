//! The measuring instrument: runs the SPEC §7 workload against an OpenAI-compatible
//! streaming server and gathers the SPEC §10 gate's evidence from a vLLM-compatible baseline.
//!
//! It measures the server, not itself: one pooled client per server with its connections
//! opened before timing, a monotonic stamp per SSE event taken before any parsing, one task
//! per in-flight request, and every raw event kept so any metric can be recomputed.
//! Judging is core's (`cacheon_core::gate`); this crate only collects.

pub mod baseline;
pub mod client;
pub mod config;
pub mod evaluate;
pub mod metrics;
mod send_stamp;
pub mod stop;
pub mod stream;
pub mod vocab;
mod wire;
pub mod workload;

pub use baseline::{Baseline, BaselineError, Reference};
pub use client::Target;
pub use config::HarnessConfig;
pub use evaluate::{
    contestant_noise, contestant_score, evaluate, lead_interval, measure_baseline, Evaluation,
};
pub use metrics::{Distribution, Summary};
pub use stop::{EarlyStop, StopCause, StopRule};
pub use stream::{greedy, stream_chat, RawEvent, StreamRecord};
pub use vocab::{Vocab, VocabError};
pub use wire::Usage;
pub use workload::{run, Progress, WorkloadRun};

/// Failures that stop a run before any request is measured.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("`{url}` is not a usable server URL: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url} did not answer 200 in time (last: {last})")]
    Unhealthy { url: String, last: String },
    #[error("internal error: {0}")]
    Internal(String),
}

/// An error with its causes, `a: b: c` (reqwest hides the useful part in `source()`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
