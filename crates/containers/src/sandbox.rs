//! One untrusted server in its sandbox (SPEC §8): created with every restriction, watched
//! until healthy or dead, and always torn down — by `teardown`, or by `Drop` when the caller
//! is cancelled, so no path leaves a container running next to the GPUs.
//!
//! Every limit is one the engine enforces, not one the miner is asked to respect: a
//! read-only root filesystem with a size-limited tmpfs for scratch, a fixed non-root user,
//! logs capped on disk by the log driver, pids and memory limits, the NVIDIA toolkit's
//! environment set by us (an image's own `NVIDIA_*` cannot widen what it gets).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, DeviceRequest, HostConfig, HostConfigLogConfig, ResourcesUlimits,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, StopContainerOptionsBuilder,
};
use futures_util::StreamExt;
use tokio::time::Instant;

use crate::engine::Engine;
use crate::error::{engine as engine_error, ContainerError};

pub const LABEL_ROUND: &str = "cacheon.round";
pub const LABEL_SUBMISSION: &str = "cacheon.submission";
pub const LABEL_ROLE: &str = "cacheon.role";
/// The pod that started a container: `reap` removes only its own.
pub const LABEL_POD: &str = "cacheon.pod";
/// Where the tmpfs is mounted, and `HOME`.
pub const SCRATCH: &str = "/tmp";
/// The port every server listens on (the miner API contract).
pub const PORT: u16 = 8000;
/// The user name a server sees (`USER`, `LOGNAME`): the uid has no passwd entry, and
/// Python's `getpass.getuser()` (torch, Triton) raises without one of these.
pub const USER_NAME: &str = "cacheon";

/// The scratch tmpfs's mount options. `exec`: inference engines compile kernels at start-up
/// (torch inductor's C++ `.so`, Triton's launchers, FlashInfer's JIT) into their cache
/// under `HOME` and `dlopen` them; Docker mounts a tmpfs `noexec` unless told otherwise,
/// and a real vLLM then dies with "failed to map segment from shared object". `noexec`
/// would buy nothing: the image itself is the miner's code. `nosuid`/`nodev` stay.
pub fn scratch_options(bytes: i64) -> String {
    format!("rw,nosuid,nodev,exec,size={bytes},mode=1777")
}

/// Resource limits beyond the cgroup's: open files and locked memory as configured (see
/// `SandboxConfig`), no core dumps (a crashing 72B server would write hundreds of GB, and
/// the root is read-only anyway). A container cannot get more than the Docker engine's own
/// hard limits: runc refuses to start it, which the pod's canary reports.
pub fn ulimits(cfg: &SandboxConfig) -> Vec<ResourcesUlimits> {
    let limit = |name: &str, value: i64| ResourcesUlimits {
        name: Some(name.to_string()),
        soft: Some(value),
        hard: Some(value),
    };
    vec![
        limit("nofile", cfg.open_files),
        limit("memlock", cfg.locked_memory.unwrap_or(-1)),
        limit("core", 0),
    ]
}

/// Which GPUs a container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gpus {
    All,
    Ids(Vec<String>),
    /// Tests and CPU-only machines.
    None,
}

/// The sandbox's knobs; defaults are SPEC §8's.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The internal network (no egress) containers join.
    pub network: String,
    /// The Linux bridge the network is created on (`None`: Docker picks `br-<id>`, for
    /// tests that run several networks side by side).
    pub bridge: Option<String>,
    /// `uid:gid` the server runs as; never root.
    pub user: String,
    /// Size of the tmpfs at `/tmp`, the only writable place besides `/dev/shm`.
    pub scratch_bytes: i64,
    /// Host directory mounted read-only at `/models`.
    pub models_dir: PathBuf,
    pub gpus: Gpus,
    pub shm_bytes: i64,
    pub pids_limit: i64,
    pub memory_bytes: i64,
    pub startup_timeout: Duration,
    pub health_poll: Duration,
    pub stop_grace: Duration,
    /// Logs kept per container (the last bytes).
    pub log_cap: usize,
    /// Open files per process: vLLM raises its soft limit to 65,535 and warns below; a
    /// socket per connection and a descriptor per shared-memory segment add up.
    pub open_files: i64,
    /// Locked memory in bytes, `None` for unlimited: CUDA's pinned host buffers, NCCL and
    /// GPUDirect register memory with `mlock` (NVIDIA's containers ask for unlimited); the
    /// memory cgroup still bounds the total.
    pub locked_memory: Option<i64>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            network: "cacheon-sandbox".into(),
            bridge: Some("cacheon0".into()),
            user: "10001:10001".into(),
            scratch_bytes: 32 << 30,
            models_dir: PathBuf::from("/workspace/models/Qwen2.5-72B-Instruct"),
            gpus: Gpus::All,
            shm_bytes: 16 << 30,
            // Threads count: torch starts one OpenMP thread per core in every worker,
            // and inductor a compile pool; 200 cores x a dozen processes passes 4096.
            pids_limit: 32768,
            memory_bytes: 512 << 30,
            startup_timeout: Duration::from_secs(900),
            health_poll: Duration::from_secs(2),
            stop_grace: Duration::from_secs(30),
            log_cap: 2 << 20,
            open_files: 65_536,
            locked_memory: None,
        }
    }
}

/// Variables that make the NVIDIA container toolkit inject more than the GPUs asked for
/// (InfiniBand and RDMA devices, NVSwitch, GPUDirect Storage and RDMA copies) when its
/// config leaves the feature unset; the toolkit enables one only for the value `enabled`.
/// Set to `disabled` by us in every container; an image that sets them is refused
/// (`Engine::verify`).
pub const TOOLKIT_VARIABLES: &[&str] = &[
    "NVIDIA_MOFED",
    "NVIDIA_NVSWITCH",
    "NVIDIA_GDS",
    "NVIDIA_GDRCOPY",
];

/// Most bytes of a `/health` answer read (vLLM's is empty).
const HEALTH_BODY_CAP: usize = 64 << 10;

/// Whether the body ends, error-free, within `cap` bytes.
async fn body_within(r: &mut reqwest::Response, cap: usize) -> bool {
    let mut read = 0usize;
    loop {
        match r.chunk().await {
            Ok(Some(chunk)) => {
                read += chunk.len();
                if read > cap {
                    return false;
                }
            }
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

/// What a container is, written on it as labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels {
    pub round: String,
    pub submission: String,
    /// `king`, `challenger` or `baseline`.
    pub role: String,
    /// The pod's id.
    pub pod: String,
}

/// A started container. Dropping it without `teardown` still removes it (in the background).
#[derive(Debug)]
pub struct Running {
    engine: Engine,
    pub id: String,
    pub ip: String,
    cfg: SandboxConfig,
    removed: bool,
}

/// The engine's request for a sandboxed container.
pub fn container_body(
    image: &str,
    args: &[String],
    labels: &Labels,
    cfg: &SandboxConfig,
) -> ContainerCreateBody {
    let device_requests = match &cfg.gpus {
        Gpus::None => None,
        Gpus::All => Some(vec![DeviceRequest {
            driver: Some("nvidia".into()),
            count: Some(-1),
            capabilities: Some(vec![vec!["gpu".into()]]),
            ..Default::default()
        }]),
        Gpus::Ids(ids) => Some(vec![DeviceRequest {
            driver: Some("nvidia".into()),
            device_ids: Some(ids.clone()),
            capabilities: Some(vec![vec!["gpu".into()]]),
            ..Default::default()
        }]),
    };
    let visible = match &cfg.gpus {
        Gpus::All => "all".to_string(),
        Gpus::Ids(ids) => ids.join(","),
        Gpus::None => "void".to_string(),
    };
    let env: Vec<String> = [
        format!("NVIDIA_VISIBLE_DEVICES={visible}"),
        "NVIDIA_DRIVER_CAPABILITIES=compute,utility".to_string(),
        format!("HOME={SCRATCH}"),
        format!("XDG_CACHE_HOME={SCRATCH}/.cache"),
        format!("XDG_CONFIG_HOME={SCRATCH}/.config"),
        format!("TMPDIR={SCRATCH}"),
        format!("USER={USER_NAME}"),
        format!("LOGNAME={USER_NAME}"),
    ]
    .into_iter()
    // Ours, whatever the image says (it is refused at pull time for carrying them too).
    .chain(TOOLKIT_VARIABLES.iter().map(|k| format!("{k}=disabled")))
    .collect();
    let host_config = HostConfig {
        init: Some(true),
        readonly_rootfs: Some(true),
        tmpfs: Some(HashMap::from([(
            SCRATCH.to_string(),
            scratch_options(cfg.scratch_bytes),
        )])),
        ulimits: Some(ulimits(cfg)),
        // Bounded on disk by the engine: one file of at most `log_cap` bytes.
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(HashMap::from([
                ("max-size".to_string(), cfg.log_cap.max(4096).to_string()),
                ("max-file".to_string(), "1".to_string()),
            ])),
        }),
        binds: Some(vec![format!("{}:/models:ro", cfg.models_dir.display())]),
        device_requests,
        shm_size: Some(cfg.shm_bytes),
        pids_limit: Some(cfg.pids_limit),
        memory: Some(cfg.memory_bytes),
        // No swap beyond the memory limit.
        memory_swap: Some(cfg.memory_bytes),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges:true".into()]),
        privileged: Some(false),
        network_mode: Some(cfg.network.clone()),
        ipc_mode: Some("private".into()),
        pid_mode: Some(String::new()),
        userns_mode: Some(String::new()),
        publish_all_ports: Some(false),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: (!args.is_empty()).then(|| args.to_vec()),
        user: Some(cfg.user.clone()),
        env: Some(env),
        labels: Some(HashMap::from([
            (LABEL_POD.to_string(), labels.pod.clone()),
            (LABEL_ROUND.to_string(), labels.round.clone()),
            (LABEL_SUBMISSION.to_string(), labels.submission.clone()),
            (LABEL_ROLE.to_string(), labels.role.clone()),
        ])),
        host_config: Some(host_config),
        ..Default::default()
    }
}

impl Engine {
    /// Creates and starts a sandboxed container from a pulled image.
    pub async fn start(
        &self,
        image: &str,
        args: &[String],
        labels: &Labels,
        cfg: &SandboxConfig,
    ) -> Result<Running, ContainerError> {
        self.ensure_network(&cfg.network, cfg.bridge.as_deref())
            .await?;
        let body = container_body(image, args, labels, cfg);
        let options = CreateContainerOptionsBuilder::new().build();
        let created = match self.docker.create_container(Some(options), body).await {
            Ok(created) => created,
            Err(e) => return Err(self.start_error(e).await),
        };
        let mut running = Running {
            engine: self.clone(),
            id: created.id,
            ip: String::new(),
            cfg: cfg.clone(),
            removed: false,
        };
        // From here on, `running` removes the container on any early return.
        if let Err(e) = self
            .docker
            .start_container(
                &running.id,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
        {
            // Removed now, not by `Drop` in the background: a short-lived process (the
            // canary of `pod --check-only`) would exit first and leave it behind.
            let error = self.start_error(e).await;
            if remove(self, &running.id).await.is_ok() {
                running.removed = true;
            }
            return Err(error);
        }
        let inspect = self
            .docker
            .inspect_container(
                &running.id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(engine_error)?;
        running.ip = inspect
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|n| n.get(&cfg.network).and_then(|e| e.ip_address.clone()))
            .filter(|ip| !ip.is_empty())
            .unwrap_or_default();
        Ok(running)
    }
}

impl Engine {
    /// Whose fault a failed create or start is: the image's (a missing entrypoint, a bad
    /// config) when the engine itself still answers, ours when it does not.
    async fn start_error(&self, e: bollard::errors::Error) -> ContainerError {
        let classified = engine_error(e);
        // An image cannot remove its own container: if it vanished, something on our
        // side did.
        if matches!(classified, ContainerError::DiskFull(_))
            || classified.to_string().contains("No such container")
        {
            return classified;
        }
        match self.docker.ping().await {
            Ok(_) => ContainerError::StartFailed(classified.to_string()),
            Err(_) => classified,
        }
    }
}

impl Running {
    pub fn base_url(&self) -> String {
        format!("http://{}:{PORT}", self.ip)
    }

    /// Polls `GET /health` until 200; fails fast when the container exits (exit code, OOM)
    /// and at the startup deadline.
    pub async fn wait_healthy(&self) -> Result<(), ContainerError> {
        let deadline = Instant::now() + self.cfg.startup_timeout;
        let http = reqwest::Client::builder()
            .timeout(self.cfg.health_poll.max(Duration::from_millis(500)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| ContainerError::Engine(e.to_string()))?;
        let url = format!("{}/health", self.base_url());
        loop {
            let state = self
                .engine
                .docker
                .inspect_container(
                    &self.id,
                    None::<bollard::query_parameters::InspectContainerOptions>,
                )
                .await
                .map_err(engine_error)?
                .state
                .unwrap_or_default();
            if state.oom_killed == Some(true) {
                return Err(ContainerError::OomKilled);
            }
            if state.running != Some(true) {
                return Err(ContainerError::Crashed {
                    exit_code: state.exit_code.unwrap_or(-1),
                });
            }
            if !self.ip.is_empty() {
                if let Ok(mut r) = http.get(&url).send().await {
                    // Healthy is a whole 200 answer: the client's timeout bounds the body's
                    // time, and at most `HEALTH_BODY_CAP` bytes of it are read.
                    if r.status().is_success() && body_within(&mut r, HEALTH_BODY_CAP).await {
                        return Ok(());
                    }
                    if r.status().is_redirection() {
                        let location = r
                            .headers()
                            .get(reqwest::header::LOCATION)
                            .map(|v| {
                                String::from_utf8_lossy(v.as_bytes())
                                    .chars()
                                    .take(200)
                                    .collect()
                            })
                            .unwrap_or_default();
                        return Err(ContainerError::Redirected {
                            status: r.status().as_u16(),
                            location,
                        });
                    }
                }
            }
            if Instant::now() + self.cfg.health_poll >= deadline {
                return Err(ContainerError::NeverHealthy(self.cfg.startup_timeout));
            }
            tokio::time::sleep(self.cfg.health_poll).await;
        }
    }

    /// Waits for the container to exit (at most `timeout`); returns its exit code.
    pub async fn wait_exit(&self, timeout: Duration) -> Result<i64, ContainerError> {
        let mut waits = self.engine.docker.wait_container(
            &self.id,
            None::<bollard::query_parameters::WaitContainerOptions>,
        );
        match tokio::time::timeout(timeout, waits.next()).await {
            Err(_) => Err(ContainerError::Engine(format!(
                "the container did not exit within {timeout:?}"
            ))),
            Ok(Some(Ok(r))) => Ok(r.status_code),
            Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. }))) => {
                Ok(code)
            }
            Ok(Some(Err(e))) => Err(engine_error(e)),
            Ok(None) => Err(ContainerError::Engine("no exit status".into())),
        }
    }

    /// The last `log_cap` bytes of the container's stdout and stderr, read for at most
    /// `LOG_READ_DEADLINE` (the log driver already caps the file at `log_cap`).
    pub async fn logs(&self) -> Vec<u8> {
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail("all")
            .build();
        let mut stream = self.engine.docker.logs(&self.id, Some(options));
        let mut kept: std::collections::VecDeque<u8> = std::collections::VecDeque::new();
        let deadline = Instant::now() + LOG_READ_DEADLINE;
        while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, stream.next()).await {
            kept.extend(chunk.into_bytes().iter());
            let excess = kept.len().saturating_sub(self.cfg.log_cap);
            kept.drain(..excess);
        }
        kept.into()
    }

    /// Stops (SIGTERM, then SIGKILL after the grace period), reads the last logs of the
    /// stopped container (nothing more can be written), and removes it.
    pub async fn teardown(mut self) -> Result<Vec<u8>, ContainerError> {
        let grace = i32::try_from(self.cfg.stop_grace.as_secs()).unwrap_or(30);
        let stop = StopContainerOptionsBuilder::new().t(grace).build();
        // Already stopped is fine; removal below is what must succeed.
        let _ = self
            .engine
            .docker
            .stop_container(&self.id, Some(stop))
            .await;
        let logs = self.logs().await;
        remove(&self.engine, &self.id).await?;
        self.removed = true;
        Ok(logs)
    }
}

/// The last `n` lines of a container's log, lossily decoded (for people: an error
/// message, a report).
pub fn log_tail(logs: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(logs);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Longest time spent reading one container's logs.
const LOG_READ_DEADLINE: Duration = Duration::from_secs(15);

async fn remove(engine: &Engine, id: &str) -> Result<(), ContainerError> {
    engine.remove_container(id).await
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        // Cancelled or errored before teardown: remove in the background. If there is no
        // runtime any more, the next pod's reaping removes it (it is labelled).
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let engine = self.engine.clone();
            let id = std::mem::take(&mut self.id);
            handle.spawn(async move {
                if let Err(e) = remove(&engine, &id).await {
                    tracing::warn!(container = %id, "could not remove container: {e}");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::log_tail;

    #[test]
    fn the_tail_keeps_the_last_lines() {
        assert_eq!(log_tail(b"a\nb\nc\n", 2), "b\nc");
        assert_eq!(log_tail(b"", 2), "");
        assert_eq!(log_tail(b"only", 5), "only");
    }
}
