//! Every flag of every subcommand. Only this module parses the command line; every setting
//! an operator configures can also come from the `CACHEON_*` variable named in its help
//! (per-invocation arguments such as `--seed` are flags only).

use std::path::PathBuf;

use cacheon_core::prompts::BlockHash;
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "cacheon",
    version,
    about = "Cacheon validator (Bittensor subnet 14)"
)]
pub struct Cli {
    /// Log output format.
    #[arg(long, env = "CACHEON_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,
    /// Log filter, in tracing's EnvFilter syntax (e.g. `info,cacheon_store=debug`).
    #[arg(long, env = "CACHEON_LOG", default_value = "info", global = true)]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the prompts of the round seeded by a block hash.
    Prompts(PromptsArgs),
    /// Manage the validator's SQLite store.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Serve the deterministic mock miner (an OpenAI/vLLM-compatible toy model) for tests,
    /// demos and practice with `cacheon bench`.
    MockMiner(MockMinerArgs),
    /// Measure a server against a baseline with the validator's own workload, gate and score.
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct MockMinerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub host: std::net::IpAddr,
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Time from a request to its first token.
    #[arg(long, default_value_t = 50)]
    pub ttft_ms: u64,
    /// Time between tokens.
    #[arg(long, default_value_t = 10)]
    pub itl_ms: u64,
    /// Tokens per streamed chunk.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub tokens_per_chunk: u16,
    /// Requests generated at once; more wait their turn.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrency: u32,
    /// Misbehave: wrong-after:N, flip-ties:RATE, jitter:SIGMA, fake-logprobs, no-logprobs,
    /// truncate:N, burst, stall:MS, endless, overlong, lone-space, oversized-chunk:BYTES,
    /// invalid-utf8,
    /// malformed-json, error-mid-stream, no-done, no-finish-reason, http-500, garbage-sse,
    /// slow-health:MS, failing-health.
    #[arg(long)]
    pub fault: Option<cacheon_mockminer::Fault>,
    /// Send `: keep-alive` comment lines between chunks.
    #[arg(long)]
    pub keepalive: bool,
    /// End SSE lines with CRLF.
    #[arg(long)]
    pub crlf: bool,
    /// Served model name.
    #[arg(long, default_value = cacheon_mockminer::MODEL_NAME)]
    pub model: String,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Base URL of the baseline (a vLLM-compatible server with `/tokenize` and
    /// `prompt_logprobs`), e.g. http://127.0.0.1:8001.
    #[arg(long)]
    pub baseline: String,
    /// Base URL of the server under test.
    #[arg(long)]
    pub miner: String,
    /// JSON file overriding parts of the workload: `{"shape": {...}, "harness": {...},
    /// "thresholds": {...}}` (see MINERS.md).
    #[arg(long)]
    pub workload: Option<PathBuf>,
    /// Seed block hash for the prompts (validators use the round's seed block).
    #[arg(
        long,
        default_value = "0x0000000000000000000000000000000000000000000000000000000000000000"
    )]
    pub seed: BlockHash,
    /// Write the full report (summaries, verdict, every raw event) here.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// Write an SVG plot of TTFT and inter-token distributions here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// How long to wait for both servers' `/health`, seconds.
    #[arg(long, default_value_t = 60)]
    pub health_timeout_s: u64,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub source: WorkloadSource,
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create the store, or upgrade it to the current schema.
    Migrate(DbArgs),
}

#[derive(Debug, Args)]
pub struct DbArgs {
    /// Path of the SQLite file.
    #[arg(long, env = "CACHEON_DATABASE", default_value = "cacheon.db")]
    pub database: PathBuf,
}

/// Where prompts come from: the bundled corpus and templates unless overridden.
#[derive(Debug, Args)]
pub struct WorkloadSource {
    /// Directory of `*.txt` corpus documents (searched recursively) replacing the bundled
    /// corpus. Every validator must use the same corpus to derive the same prompts.
    #[arg(long, env = "CACHEON_CORPUS_DIR")]
    pub corpus_dir: Option<PathBuf>,
    /// Chat templates JSON replacing the bundled `prompts/templates.json`.
    #[arg(long, env = "CACHEON_TEMPLATES")]
    pub templates: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PromptsArgs {
    /// Hash of the seed block, `0x` + 64 hex digits.
    #[arg(long)]
    pub seed: BlockHash,
    /// Print the prompt set as JSON.
    #[arg(long, conflicts_with = "stats")]
    pub json: bool,
    /// Print only the token-length distribution.
    #[arg(long)]
    pub stats: bool,
    #[command(flatten)]
    pub source: WorkloadSource,
}
