//! Flags of the two daemons, `cacheon host` and `cacheon pod`, and of what they share (the
//! hand-off bucket). Every one has a `CACHEON_*` variable; secrets never show their values
//! in `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::{NodeArgs, WalletArgs, WorkloadSource};

/// Production's baseline command line (`{max_model_len}` is filled in by the pod).
pub const DEFAULT_BASELINE_ARGS: &str = "--model /models --served-model-name Qwen2.5-72B-Instruct --tensor-parallel-size 4 --max-model-len {max_model_len} --generation-config vllm --port 8000";

/// The S3 bucket the host and pods exchange rounds through.
#[derive(Debug, Clone, Args)]
pub struct HandoffArgs {
    /// S3 endpoint URL; leave unset for AWS itself.
    #[arg(long, env = "CACHEON_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    #[arg(long, env = "CACHEON_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    #[arg(long, env = "CACHEON_S3_BUCKET", default_value = "cacheon")]
    pub s3_bucket: String,
    /// Key prefix inside the bucket; give each host its own.
    #[arg(long, env = "CACHEON_S3_PREFIX", default_value = "cacheon")]
    pub s3_prefix: String,
    #[arg(long, env = "CACHEON_S3_ACCESS_KEY_ID", hide_env_values = true)]
    pub s3_access_key_id: Option<String>,
    #[arg(long, env = "CACHEON_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,
    /// Path-style addressing (needed by most self-hosted S3 servers).
    #[arg(long, env = "CACHEON_S3_PATH_STYLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub s3_path_style: bool,
    /// Attempts per S3 operation before it counts as unavailable.
    #[arg(long, env = "CACHEON_S3_ATTEMPTS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub s3_attempts: u32,
    /// Shared secret: job and result documents carry an HMAC-SHA256 with it, and documents
    /// without a valid one are refused. Set the same value on the host and every pod.
    /// Required unless `--insecure-no-handoff-mac` says otherwise.
    #[arg(long, env = "CACHEON_HANDOFF_SECRET", hide_env_values = true)]
    pub handoff_secret: Option<String>,
    /// Run without the hand-off MAC: anyone who can write to the bucket can then forge jobs
    /// and results. For throwaway local setups only.
    #[arg(long, env = "CACHEON_INSECURE_NO_HANDOFF_MAC")]
    pub insecure_no_handoff_mac: bool,
}

#[derive(Debug, Args)]
pub struct HostArgs {
    #[command(subcommand)]
    pub command: HostCommand,
}

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Run the host daemon until SIGINT/SIGTERM.
    Run(Box<HostRunArgs>),
    /// Give a `failed_infra` submission a fresh set of attempts.
    Requeue(RequeueArgs),
}

#[derive(Debug, Args)]
pub struct RequeueArgs {
    /// Submission id, `{hotkey}:{commit_block}`.
    pub submission: String,
    #[arg(long, env = "CACHEON_DATABASE", default_value = "cacheon.db")]
    pub database: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProvisionerKind {
    /// Pods are started by the operator and poll the bucket.
    Static,
    /// The host runs `--pod-start-command` (and `--pod-stop-command`) per round.
    Command,
}

#[derive(Debug, Args)]
pub struct HostRunArgs {
    #[arg(long, env = "CACHEON_DATABASE", default_value = "cacheon.db")]
    pub database: PathBuf,
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub handoff: HandoffArgs,
    #[command(flatten)]
    pub source: WorkloadSource,
    #[arg(long, env = "CACHEON_NETUID", default_value_t = 14)]
    pub netuid: u16,
    /// Where weight goes while there is no king.
    #[arg(long, env = "CACHEON_BURN_UID", default_value_t = 0)]
    pub burn_uid: u16,
    #[command(flatten)]
    pub wallet: WalletArgs,
    /// Build and log weights extrinsics but never submit them.
    #[arg(long, env = "CACHEON_DRY_RUN")]
    pub dry_run: bool,
    /// Seconds between two passes of the host loop.
    #[arg(long, env = "CACHEON_TICK_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub tick_secs: u64,
    #[arg(long, env = "CACHEON_MAX_PARALLEL_ROUNDS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_parallel_rounds: u32,
    #[arg(long, env = "CACHEON_MAX_CHALLENGERS_PER_ROUND", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_challengers_per_round: u32,
    #[arg(long, env = "CACHEON_MAX_INFRA_ATTEMPTS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_infra_attempts: u32,
    /// Round deadline: this many seconds (the baseline's turn and judging) plus
    /// `--turn-budget-secs` for each contestant.
    #[arg(long, env = "CACHEON_ROUND_DEADLINE_BASE_SECS", default_value_t = 1200)]
    pub round_deadline_base_secs: u64,
    /// What one contestant's whole turn may take on the pod (pull wait, start, health,
    /// workload, teardown); past it, that contestant ends with `turn_budget_exceeded` and
    /// the round goes on.
    #[arg(long, env = "CACHEON_TURN_BUDGET_SECS", default_value_t = 1800, value_parser = clap::value_parser!(u64).range(1..))]
    pub turn_budget_secs: u64,
    #[arg(long, env = "CACHEON_WEIGHTS_INTERVAL_BLOCKS", default_value_t = 360)]
    pub weights_interval_blocks: u64,
    /// The margin a challenger must beat the king's fresh score by, right after a crowning
    /// (SPEC §11: 0.01); it decays linearly to 0 over `--king-margin-decay-blocks`.
    #[arg(long, env = "CACHEON_KING_MARGIN", default_value_t = 0.01)]
    pub king_margin: f64,
    #[arg(
        long,
        env = "CACHEON_KING_MARGIN_DECAY_BLOCKS",
        default_value_t = 50_400
    )]
    pub king_margin_decay_blocks: u64,
    /// A challenger whose lead over the king is above the margin but within this many
    /// noises (the 90 % half-width of the lead) is measured again with the king, and
    /// crowned only if the lower of the two passes clears `--confirm-multiple` noises.
    /// 0 decides every round on one pass (SPEC §11 as written).
    #[arg(long, env = "CACHEON_CONFIRM_WITHIN", default_value_t = 3.0)]
    pub confirm_within: f64,
    /// How many noises both passes' leads must clear (see `cacheon calibrate-crown`).
    #[arg(long, env = "CACHEON_CONFIRM_MULTIPLE", default_value_t = 1.25)]
    pub confirm_multiple: f64,
    /// The reference server image (pulled by digest).
    #[arg(
        long,
        env = "CACHEON_BASELINE_IMAGE",
        default_value = "vllm/vllm-openai"
    )]
    pub baseline_image: String,
    /// The baseline's pinned digest, `sha256:...`.
    #[arg(long, env = "CACHEON_BASELINE_DIGEST")]
    pub baseline_digest: String,
    /// The baseline's arguments (whitespace-separated; `{max_model_len}` is filled in by
    /// the pod from the model's config.json).
    #[arg(
        long,
        env = "CACHEON_BASELINE_ARGS",
        default_value = DEFAULT_BASELINE_ARGS,
        allow_hyphen_values = true
    )]
    pub baseline_args: String,
    /// JSON file overriding the workload, harness limits and gate thresholds:
    /// `{"shape": {...}, "harness": {...}, "thresholds": {...}}`.
    #[arg(long, env = "CACHEON_WORKLOAD")]
    pub workload: Option<PathBuf>,
    /// Address of the read-only status API.
    #[arg(long, env = "CACHEON_STATUS_ADDR", default_value = "127.0.0.1:8080")]
    pub status_addr: SocketAddr,
    #[arg(long, env = "CACHEON_PROVISIONER", value_enum, default_value_t = ProvisionerKind::Static)]
    pub provisioner: ProvisionerKind,
    /// Shell command starting a pod for the round in `$CACHEON_ROUND_ID`.
    #[arg(long, env = "CACHEON_POD_START_COMMAND")]
    pub pod_start_command: Option<String>,
    /// Shell command stopping the pod of the round in `$CACHEON_ROUND_ID`.
    #[arg(long, env = "CACHEON_POD_STOP_COMMAND")]
    pub pod_stop_command: Option<String>,
}

#[derive(Debug, Args)]
pub struct PodArgs {
    #[command(flatten)]
    pub handoff: HandoffArgs,
    #[command(flatten)]
    pub source: WorkloadSource,
    /// This pod's name in leases and results (default: hostname-pid-random, unique per
    /// process: two pods on one engine never share one).
    #[arg(long, env = "CACHEON_POD_ID")]
    pub pod_id: Option<String>,
    /// GPUs the machine must have; 0 skips the GPU checks (machines without GPUs).
    #[arg(long, env = "CACHEON_GPU_COUNT", default_value_t = 4)]
    pub gpu_count: u32,
    /// Every GPU's name must contain this.
    #[arg(long, env = "CACHEON_GPU_NAME", default_value = "H200")]
    pub gpu_name: String,
    #[arg(long, env = "CACHEON_GPU_MIN_MEMORY_MIB", default_value_t = 140_000)]
    pub gpu_min_memory_mib: u64,
    /// The GPU inventory tool (`nvidia-smi`, or a stand-in printing the same CSV).
    #[arg(long, env = "CACHEON_NVIDIA_SMI", default_value = "nvidia-smi")]
    pub nvidia_smi: PathBuf,
    /// GPUs given to containers: `all`, `none`, or a comma-separated list of indices.
    #[arg(long, env = "CACHEON_GPUS", default_value = "all")]
    pub gpus: String,
    /// Model weights, mounted read-only at /models in every container.
    #[arg(
        long,
        env = "CACHEON_MODELS_DIR",
        default_value = "/workspace/models/Qwen2.5-72B-Instruct"
    )]
    pub models_dir: PathBuf,
    /// Docker's data root, checked for free space.
    #[arg(long, env = "CACHEON_DOCKER_ROOT", default_value = "/var/lib/docker")]
    pub docker_root: PathBuf,
    #[arg(long, env = "CACHEON_MIN_FREE_DISK_GB", default_value_t = 60)]
    pub min_free_disk_gb: u64,
    /// The internal (no egress) Docker network containers run on.
    #[arg(
        long,
        env = "CACHEON_SANDBOX_NETWORK",
        default_value = "cacheon-sandbox"
    )]
    pub sandbox_network: String,
    /// The Linux bridge the sandbox network is created on; the host's firewall rule
    /// (scripts/gpu_setup/setup.sh) names it. `auto` lets Docker pick (tests only).
    #[arg(long, env = "CACHEON_SANDBOX_BRIDGE", default_value = "cacheon0")]
    pub sandbox_bridge: String,
    /// `uid:gid` every miner's server runs as (never root).
    #[arg(long, env = "CACHEON_CONTAINER_USER", default_value = "10001:10001")]
    pub container_user: String,
    /// Size of the tmpfs at /tmp, a container's only writable place besides /dev/shm.
    #[arg(long, env = "CACHEON_CONTAINER_SCRATCH_GB", default_value_t = 32)]
    pub container_scratch_gb: i64,
    #[arg(long, env = "CACHEON_CONTAINER_MEMORY_GB", default_value_t = 512)]
    pub container_memory_gb: i64,
    #[arg(long, env = "CACHEON_CONTAINER_SHM_GB", default_value_t = 16)]
    pub container_shm_gb: i64,
    /// Processes and threads per container (torch runs a thread per core in each worker).
    #[arg(long, env = "CACHEON_CONTAINER_PIDS", default_value_t = 32768)]
    pub container_pids: i64,
    /// Open files per process in a container (vLLM wants 65,535). At most the Docker
    /// engine's own hard limit (`LimitNOFILE` of docker.service): runc refuses more.
    #[arg(long, env = "CACHEON_CONTAINER_OPEN_FILES", default_value_t = 65_536)]
    pub container_open_files: i64,
    /// Locked memory per container, MiB; unset: unlimited (CUDA pinned memory, NCCL). At
    /// most the engine's `LimitMEMLOCK` (setup.sh raises it to infinity).
    #[arg(long, env = "CACHEON_CONTAINER_LOCKED_MEMORY_MB")]
    pub container_locked_memory_mb: Option<i64>,
    /// Seconds a server may take to answer `/health`.
    #[arg(long, env = "CACHEON_STARTUP_TIMEOUT_SECS", default_value_t = 900)]
    pub startup_timeout_secs: u64,
    #[arg(long, env = "CACHEON_STOP_GRACE_SECS", default_value_t = 30)]
    pub stop_grace_secs: u64,
    #[arg(long, env = "CACHEON_IMAGE_SIZE_LIMIT_GB", default_value_t = 20)]
    pub image_size_limit_gb: u64,
    /// Oldest Docker engine accepted (26.0.0 closes CVE-2024-29018).
    #[arg(long, env = "CACHEON_MIN_DOCKER_VERSION", default_value = "26.0.0")]
    pub min_docker_version: String,
    /// runc's floor in each release line (comma-separated); a line older than all of
    /// them is refused. Distributions that backport fixes under an old version number
    /// (Debian's 1.1.5+ds1-1+deb12u1) need the operator to lower it knowingly.
    #[arg(
        long,
        env = "CACHEON_MIN_RUNC_VERSIONS",
        value_delimiter = ',',
        default_value = "1.2.8,1.3.3,1.4.0"
    )]
    pub min_runc_versions: Vec<String>,
    /// containerd's floor in each release line (comma-separated).
    #[arg(
        long,
        env = "CACHEON_MIN_CONTAINERD_VERSIONS",
        value_delimiter = ',',
        default_value = "1.6.38,1.7.27,2.0.4"
    )]
    pub min_containerd_versions: Vec<String>,
    /// Accept an engine where neither AppArmor nor SELinux confines containers (seccomp is
    /// required regardless).
    #[arg(long, env = "CACHEON_ALLOW_NO_LSM")]
    pub allow_no_lsm: bool,
    /// Oldest NVIDIA container toolkit accepted (1.17.8 closes CVE-2025-23266).
    #[arg(long, env = "CACHEON_MIN_TOOLKIT_VERSION", default_value = "1.17.8")]
    pub min_toolkit_version: String,
    /// Oldest NVIDIA driver accepted.
    #[arg(long, env = "CACHEON_MIN_DRIVER_VERSION", default_value = "550.0")]
    pub min_driver_version: String,
    /// The toolkit's CLI, asked for its version.
    #[arg(long, env = "CACHEON_NVIDIA_CTK", default_value = "nvidia-ctk")]
    pub nvidia_ctk: PathBuf,
    /// The image of the sandbox self-test's probe (`cacheon probe-sandbox`): the pod's own
    /// image, pinned. Required unless --skip-sandbox-self-test.
    #[arg(long, env = "CACHEON_PROBE_IMAGE")]
    pub probe_image: Option<String>,
    /// Skip the sandbox self-test (only where the operator has checked the network).
    #[arg(long, env = "CACHEON_SKIP_SANDBOX_SELF_TEST")]
    pub skip_sandbox_self_test: bool,
    /// Run the preflight (versions and the sandbox self-test) and, with --canary-image,
    /// the baseline canary; print it and exit: 0 when the machine is fit to run miners, 1
    /// otherwise. `setup.sh --check` runs this.
    #[arg(long)]
    pub check_only: bool,
    /// With --check-only: the baseline the canary starts in the sandbox and asks one greedy
    /// question (the host's pinned baseline: the same variables). A serving pod runs the
    /// canary on each round's own baseline before its first claim, whatever this says.
    #[arg(long, env = "CACHEON_BASELINE_IMAGE")]
    pub canary_image: Option<String>,
    #[arg(long, env = "CACHEON_BASELINE_DIGEST")]
    pub canary_digest: Option<String>,
    #[arg(
        long,
        env = "CACHEON_BASELINE_ARGS",
        default_value = DEFAULT_BASELINE_ARGS,
        allow_hyphen_values = true
    )]
    pub canary_args: String,
    /// The served model name the canary asks for.
    #[arg(long, default_value = "Qwen2.5-72B-Instruct")]
    pub canary_model: String,
    /// Seconds one image pull may take in all.
    #[arg(long, env = "CACHEON_PULL_TIMEOUT_SECS", default_value_t = 1800)]
    pub pull_timeout_secs: u64,
    /// Seconds a pull may go without progress.
    #[arg(long, env = "CACHEON_PULL_STALL_SECS", default_value_t = 300)]
    pub pull_stall_secs: u64,
    /// Registries allowed although they are loopback, private or IP literals (a local
    /// mirror), comma-separated `host` or `host:port`.
    #[arg(long, env = "CACHEON_ALLOW_REGISTRIES", value_delimiter = ',')]
    pub allow_registries: Vec<String>,
    /// Registries this operator runs (a mirror), comma-separated `host` or `host:port`:
    /// their failures void the round instead of disqualifying the miner.
    #[arg(long, env = "CACHEON_OPERATOR_REGISTRIES", value_delimiter = ',')]
    pub operator_registries: Vec<String>,
    /// The registry host the credentials below are for (`ghcr.io`, `docker.io`); they are
    /// sent nowhere else.
    #[arg(long, env = "CACHEON_REGISTRY_HOST", requires = "registry_username")]
    pub registry_host: Option<String>,
    #[arg(long, env = "CACHEON_REGISTRY_USERNAME", requires = "registry_host")]
    pub registry_username: Option<String>,
    #[arg(long, env = "CACHEON_REGISTRY_PASSWORD", hide_env_values = true)]
    pub registry_password: Option<String>,
    #[arg(long, env = "CACHEON_LEASE_TTL_SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(2..))]
    pub lease_ttl_secs: u64,
    #[arg(long, env = "CACHEON_LEASE_RENEW_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub lease_renew_secs: u64,
    /// Seconds between looks for work.
    #[arg(long, env = "CACHEON_POLL_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub poll_secs: u64,
    /// Exit after this many seconds without work.
    #[arg(long, env = "CACHEON_IDLE_EXIT_SECS", default_value_t = 600)]
    pub idle_exit_secs: u64,
}
