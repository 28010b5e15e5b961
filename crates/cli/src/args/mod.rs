//! Every flag of every subcommand. Only this module parses the command line; every setting
//! an operator configures can also come from the `CACHEON_*` variable named in its help
//! (per-invocation arguments such as `--seed` are flags only).

pub mod daemons;

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
    /// Serve an in-memory subtensor node (runtime metadata from a file, a subnet, revealed
    /// and plain commitments, a block every `--block-secs`) for demos and tests.
    MockChain(MockChainArgs),
    /// Measure a server against a baseline with the validator's own workload, gate and score.
    Bench(BenchArgs),
    /// Set the gate's thresholds by measurement: run honest servers and known cheats over
    /// many seeds against one baseline and print the false-disqualification rate, the catch
    /// rate per cheat, and how far every threshold is from what was measured.
    CalibrateGate(CalibrateGateArgs),
    /// Simulate many rounds of servers whose true speeds differ by known amounts, with
    /// per-request jitter, and print how often each crown rule crowns the challenger: the
    /// calibration of the king's margin and of the confirmation rule's noise multiple.
    CalibrateCrown(CalibrateCrownArgs),
    /// Inspect the chain as the validator sees it: metagraph, commitments, weight settings.
    Chain(ChainArgs),
    /// For miners: publish your server's image and digest on chain, checked with the
    /// validators' own rules first and timelocked until the reveal by default.
    Commit(CommitArgs),
    /// The always-on validator daemon, and operator actions on its store.
    Host(HostArgs),
    /// The GPU pod daemon: claims rounds from the hand-off bucket and measures them.
    Pod(Box<PodArgs>),
    /// Run inside the sandbox by the pod's self-test: try to reach each address and resolve
    /// each name; exit 0 when everything was blocked, 3 when anything was reached.
    #[command(hide = true)]
    ProbeSandbox(ProbeSandboxArgs),
}

#[derive(Debug, Args)]
pub struct CalibrateCrownArgs {
    /// Simulated rounds per row.
    #[arg(long, default_value_t = 1000)]
    pub rounds: usize,
    /// Coefficient of variation of every request's TTFT and token time.
    #[arg(long, default_value_t = 0.05)]
    pub jitter: f64,
    /// A lead within this many noises is measured again (the host's `--confirm-within`).
    #[arg(long, default_value_t = 3.0)]
    pub within: f64,
    /// Both passes' leads must clear this many noises (the host's `--confirm-multiple`).
    #[arg(long, default_value_t = 1.25)]
    pub multiple: f64,
    /// True advantages to simulate, in percent.
    #[arg(long, value_delimiter = ',', default_value = "0,0.5,1,2,5")]
    pub advantages: Vec<f64>,
    /// Bootstrap resamples behind each noise figure.
    #[arg(long, default_value_t = 200)]
    pub resamples: usize,
    #[arg(long, default_value_t = 14)]
    pub seed: u8,
}

#[derive(Debug, Args)]
pub struct ProbeSandboxArgs {
    /// `ip:port` to open a TCP connection to (repeatable).
    #[arg(long)]
    pub connect: Vec<std::net::SocketAddr>,
    /// A name to resolve (repeatable).
    #[arg(long)]
    pub resolve: Vec<String>,
    /// Try to make new user and mount namespaces (the sandbox must refuse).
    #[arg(long)]
    pub unshare: bool,
    /// Seconds per attempt.
    #[arg(long, default_value_t = 3)]
    pub timeout_secs: u64,
}

#[derive(Debug, Args)]
pub struct ChainArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(subcommand)]
    pub command: ChainCommand,
}

/// Where the subtensor node is and how patiently to talk to it.
#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// Subtensor node websocket endpoint.
    #[arg(
        long = "subtensor-url",
        env = "CACHEON_SUBTENSOR_URL",
        default_value = "wss://entrypoint-finney.opentensor.ai:443"
    )]
    pub url: String,
    /// Deadline for each RPC call, in seconds.
    #[arg(long, env = "CACHEON_RPC_TIMEOUT_SECS", default_value_t = 30)]
    pub rpc_timeout_secs: u64,
    /// Attempts per chain operation (reconnecting between them) before giving up.
    #[arg(long, env = "CACHEON_RPC_ATTEMPTS", default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..))]
    pub rpc_attempts: u32,
}

#[derive(Debug, Subcommand)]
pub enum ChainCommand {
    /// Every uid of the subnet: hotkey and validator permit.
    Metagraph(ChainQuery),
    /// Every commitment on the subnet (revealed and plain), decoded and validated as the
    /// host would: the latest per hotkey, or all with `--all`.
    Commitments(CommitmentsArgs),
    /// The subnet's weight-setting rules (version key, commit-reveal, rate limit, epochs).
    Weights(ChainQuery),
    /// Sign weights for one uid with the validator's hotkey, as the host would; with
    /// `--dry-run`, print the extrinsic instead of submitting it.
    SetWeights(SetWeightsArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ChainQuery {
    #[arg(long, env = "CACHEON_NETUID", default_value_t = 14)]
    pub netuid: u16,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CommitmentsArgs {
    #[command(flatten)]
    pub query: ChainQuery,
    /// Show every stored commitment, not only each hotkey's latest.
    #[arg(long)]
    pub all: bool,
}

/// The validator's hotkey in a btcli wallet directory.
#[derive(Debug, Clone, Args)]
pub struct WalletArgs {
    #[arg(
        long,
        env = "CACHEON_WALLET_PATH",
        default_value = "~/.bittensor/wallets"
    )]
    pub wallet_path: String,
    /// btcli wallet name (`chain set-weights` and `commit` use `default` when unset; `host
    /// run` without one runs in observe mode and submits nothing).
    #[arg(long, env = "CACHEON_WALLET_NAME")]
    pub wallet_name: Option<String>,
    #[arg(long, env = "CACHEON_WALLET_HOTKEY", default_value = "default")]
    pub wallet_hotkey: String,
    /// Password of an encrypted ($NACL) hotkey file; btcli's BT_PW_ variable also works.
    #[arg(
        long = "wallet-password",
        env = "CACHEON_WALLET_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
}

#[derive(Debug, Args)]
pub struct SetWeightsArgs {
    #[arg(long, env = "CACHEON_NETUID", default_value_t = 14)]
    pub netuid: u16,
    #[command(flatten)]
    pub wallet: WalletArgs,
    /// The uid to give all weight to (the king's); omit for the burn uid.
    #[arg(long)]
    pub uid: Option<u16>,
    /// Where weight goes when there is no king.
    #[arg(long, env = "CACHEON_BURN_UID", default_value_t = 0)]
    pub burn_uid: u16,
    /// Build, sign and print the extrinsic, but do not submit it.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct CommitArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    #[arg(long, env = "CACHEON_NETUID", default_value_t = 14)]
    pub netuid: u16,
    /// The miner's hotkey, registered on the netuid.
    #[command(flatten)]
    pub wallet: WalletArgs,
    /// The image reference, without a digest (e.g. `ghcr.io/you/server:v3`).
    #[arg(long)]
    pub image: String,
    /// The image's manifest digest, `sha256:` and 64 hex digits, exactly as the registry
    /// reports it (`docker buildx imagetools inspect <image>`).
    #[arg(long)]
    pub digest: String,
    /// Blocks (12 s each) until the chain reveals the commitment; until then nobody can
    /// read or copy it. The submission's id takes the reveal block.
    #[arg(long, default_value_t = 360, value_parser = clap::value_parser!(u64).range(1..=50_400))]
    pub reveal_blocks: u64,
    /// Commit in plain text, public (and copyable) from the block it lands in.
    #[arg(long, conflicts_with = "reveal_blocks")]
    pub plain: bool,
    /// Build, sign and print the extrinsic, but do not submit it.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct MockChainArgs {
    /// Websocket address to listen on (port 0 picks one; the address is printed).
    #[arg(long, default_value = "127.0.0.1:9944")]
    pub listen: std::net::SocketAddr,
    /// Runtime metadata to serve: SCALE with the "meta" prefix, e.g.
    /// `crates/chain/tests/fixtures/finney-spec393.scale`.
    #[arg(long)]
    pub metadata: std::path::PathBuf,
    /// The spec version the node reports for that metadata.
    #[arg(long, default_value_t = 393)]
    pub spec_version: u32,
    #[arg(long, default_value_t = 14)]
    pub netuid: u16,
    /// Registered uids (0..N), each with a fixed hotkey (listed at start).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=156))]
    pub uids: u16,
    #[arg(long, default_value_t = 1000)]
    pub start_block: u64,
    /// Seconds per block; 0 keeps the chain at `--start-block`.
    #[arg(long, default_value_t = 12)]
    pub block_secs: u64,
    /// A revealed (timelocked) commitment `UID=TEXT`; repeatable, revealed a block apart
    /// just before the start block, in the order given.
    #[arg(long = "revealed", value_parser = uid_text)]
    pub revealed: Vec<(u16, String)>,
    /// A plain commitment `UID=TEXT`; repeatable, like `--revealed`.
    #[arg(long = "plain", value_parser = uid_text)]
    pub plain: Vec<(u16, String)>,
}

fn uid_text(s: &str) -> Result<(u16, String), String> {
    let (uid, text) = s
        .split_once('=')
        .ok_or_else(|| format!("expected UID=TEXT, got {s:?}"))?;
    let uid = uid.parse().map_err(|_| format!("{uid:?} is not a uid"))?;
    Ok((uid, text.to_owned()))
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
    /// Coefficient of variation of every request's TTFT and time between tokens (0.2: a
    /// spread of about 20 %), reproducible from the request's number.
    #[arg(long, default_value_t = 0.0)]
    pub speed_jitter: f64,
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
    /// Like vLLM: a last chunk with empty content carrying the end-of-sequence logprob.
    #[arg(long)]
    pub eos_entry: bool,
    /// Like vLLM's --return-tokens-as-token-ids: logprob entries name `token_id:N`.
    #[arg(long)]
    pub token_ids: bool,
    /// Served model name.
    #[arg(long, default_value = cacheon_mockminer::MODEL_NAME)]
    pub model: String,
    /// Write the toy model's tokenizer.json here and exit (for `cacheon bench --tokenizer`
    /// and a pod's model directory).
    #[arg(long, value_name = "PATH")]
    pub write_tokenizer: Option<PathBuf>,
    /// Instead of the toy model, stand in front of this real server (a base URL) and bend
    /// its answers with `--cheat`.
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
    /// With `--upstream`: none, wrong-after:N, fake-logprobs, truncate:N, junk-after,
    /// swap-first.
    #[arg(long, requires = "upstream", default_value = "none")]
    pub cheat: cacheon_mockminer::proxy::Cheat,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Base URL of the baseline (a vLLM-compatible server with `/tokenize` and
    /// `prompt_logprobs`), e.g. http://127.0.0.1:8001.
    #[arg(long)]
    pub baseline: String,
    /// Base URL of the server under test.
    #[arg(long, required_unless_present = "image", conflicts_with = "image")]
    pub miner: Option<String>,
    /// Your image, `REF@sha256:DIGEST` as you would commit it, instead of --miner: pulled
    /// and run in the pod's sandbox exactly as a round runs it, benched the moment it is
    /// healthy, then removed. Needs a Docker engine and --models.
    #[arg(long, value_name = "REF@DIGEST")]
    pub image: Option<String>,
    /// With --image: the model directory, mounted read-only at /models.
    #[arg(long, value_name = "DIR")]
    pub models: Option<PathBuf>,
    /// With --image: the GPUs the container gets (`all`, `none`, or ids `0,1`).
    #[arg(long, default_value = "all")]
    pub gpus: String,
    /// With --image: seconds the server may take to answer /health (the pod's default).
    #[arg(long, default_value_t = 900)]
    pub startup_timeout_s: u64,
    /// With --image: the container's memory limit, GiB.
    #[arg(long, default_value_t = 512)]
    pub container_memory_gb: i64,
    /// With --image: /dev/shm, GiB.
    #[arg(long, default_value_t = 16)]
    pub container_shm_gb: i64,
    /// With --image: the scratch tmpfs at /tmp, GiB.
    #[arg(long, default_value_t = 32)]
    pub container_scratch_gb: i64,
    /// With --image: open files per process (at most your Docker engine's hard limit).
    #[arg(long, default_value_t = 65_536)]
    pub container_open_files: i64,
    /// With --image: locked memory, MiB; unset: unlimited (at most your engine's limit).
    #[arg(long)]
    pub container_locked_memory_mb: Option<i64>,
    /// The baseline model's tokenizer.json (in the model directory); the gate reads the
    /// miner's streamed tokens against it. For the mock: `cacheon mock-miner
    /// --write-tokenizer PATH`.
    #[arg(long, env = "CACHEON_TOKENIZER", value_name = "PATH")]
    pub tokenizer: PathBuf,
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
    /// Measure both servers this many times (miner then baseline each time, same prompts)
    /// and print every run's improvements with the mean's 90 % confidence interval.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: u32,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub source: WorkloadSource,
}

#[derive(Debug, Args)]
pub struct CalibrateGateArgs {
    /// Base URL of the baseline.
    #[arg(long)]
    pub baseline: String,
    /// The baseline model's tokenizer.json.
    #[arg(long, env = "CACHEON_TOKENIZER", value_name = "PATH")]
    pub tokenizer: PathBuf,
    /// An honest server, `NAME=URL` (repeatable): every disqualification is a false one.
    #[arg(long, value_name = "NAME=URL", value_parser = parse_named_url)]
    pub honest: Vec<(String, String)>,
    /// A cheating server, `NAME=URL` (repeatable): every pass is a miss.
    #[arg(long, value_name = "NAME=URL", value_parser = parse_named_url)]
    pub cheat: Vec<(String, String)>,
    /// Rounds to simulate, each with its own prompts (seed block hashes `--first-seed`,
    /// the next, ...).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub seeds: u32,
    #[arg(long, default_value_t = 1)]
    pub first_seed: u32,
    /// The workload file, as for `cacheon bench`.
    #[arg(long)]
    pub workload: Option<PathBuf>,
    /// Write every request's measured figures here.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    #[command(flatten)]
    pub source: WorkloadSource,
}

fn parse_named_url(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, url)) if !name.is_empty() && !url.is_empty() => {
            Ok((name.to_string(), url.to_string()))
        }
        _ => Err(format!("`{s}` is not NAME=URL")),
    }
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
#[derive(Debug, Clone, Args)]
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

pub use daemons::{HandoffArgs, HostArgs, HostCommand, HostRunArgs, PodArgs, RequeueArgs};
