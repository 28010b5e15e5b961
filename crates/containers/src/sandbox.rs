//! One untrusted server in its sandbox (SPEC §8): created with every restriction, watched
//! until healthy or dead, and always torn down — by `teardown`, or by `Drop` when the caller
//! is cancelled, so no path leaves a container running next to the GPUs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, DeviceRequest, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use futures_util::StreamExt;
use tokio::time::Instant;

use crate::engine::Engine;
use crate::error::{engine as engine_error, ContainerError};

pub const LABEL_ROUND: &str = "cacheon.round";
pub const LABEL_SUBMISSION: &str = "cacheon.submission";
pub const LABEL_ROLE: &str = "cacheon.role";
/// The port every server listens on (the miner API contract).
pub const PORT: u16 = 8000;

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
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            network: "cacheon-sandbox".into(),
            models_dir: PathBuf::from("/workspace/models/Qwen2.5-72B-Instruct"),
            gpus: Gpus::All,
            shm_bytes: 16 << 30,
            pids_limit: 4096,
            memory_bytes: 512 << 30,
            startup_timeout: Duration::from_secs(900),
            health_poll: Duration::from_secs(2),
            stop_grace: Duration::from_secs(30),
            log_cap: 2 << 20,
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
    let host_config = HostConfig {
        init: Some(true),
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
        labels: Some(HashMap::from([
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
        self.ensure_network(&cfg.network).await?;
        let body = container_body(image, args, labels, cfg);
        let options = CreateContainerOptionsBuilder::new().build();
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(engine_error)?;
        let mut running = Running {
            engine: self.clone(),
            id: created.id,
            ip: String::new(),
            cfg: cfg.clone(),
            removed: false,
        };
        // From here on, `running` removes the container on any early return.
        self.docker
            .start_container(
                &running.id,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(engine_error)?;
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
                if let Ok(r) = http.get(&url).send().await {
                    if r.status().is_success() {
                        return Ok(());
                    }
                }
            }
            if Instant::now() + self.cfg.health_poll >= deadline {
                return Err(ContainerError::NeverHealthy(self.cfg.startup_timeout));
            }
            tokio::time::sleep(self.cfg.health_poll).await;
        }
    }

    /// The last `log_cap` bytes of the container's stdout and stderr.
    pub async fn logs(&self) -> Vec<u8> {
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail("all")
            .build();
        let mut stream = self.engine.docker.logs(&self.id, Some(options));
        let mut kept: std::collections::VecDeque<u8> = std::collections::VecDeque::new();
        while let Some(Ok(chunk)) = stream.next().await {
            kept.extend(chunk.into_bytes().iter());
            let excess = kept.len().saturating_sub(self.cfg.log_cap);
            kept.drain(..excess);
        }
        kept.into()
    }

    /// Stops (SIGTERM, then SIGKILL after the grace period) and removes the container;
    /// returns its last logs.
    pub async fn teardown(mut self) -> Result<Vec<u8>, ContainerError> {
        let logs = self.logs().await;
        let grace = i32::try_from(self.cfg.stop_grace.as_secs()).unwrap_or(30);
        let stop = StopContainerOptionsBuilder::new().t(grace).build();
        // Already stopped is fine; removal below is what must succeed.
        let _ = self
            .engine
            .docker
            .stop_container(&self.id, Some(stop))
            .await;
        remove(&self.engine, &self.id).await?;
        self.removed = true;
        Ok(logs)
    }
}

async fn remove(engine: &Engine, id: &str) -> Result<(), ContainerError> {
    let force = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    match engine.docker.remove_container(id, Some(force)).await {
        Ok(()) => Ok(()),
        Err(e) if e.to_string().contains("No such container") => Ok(()),
        Err(e) => Err(engine_error(e)),
    }
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
