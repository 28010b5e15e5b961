//! `cacheon pod`: the GPU daemon, wired from its flags. SIGINT/SIGTERM stop it gracefully:
//! the round in progress is abandoned, its container removed and its lease released.

use std::time::Duration;

use anyhow::Context;
use cacheon_containers::{
    Credentials, Gpus, PullPolicy, RegistryAuth, RegistryPolicy, SandboxConfig,
};
use cacheon_handoff::documents::BaselineImage;
use cacheon_pod::safety::SafetyRequirements;
use cacheon_pod::{PodConfig, PodExit, PromptSource, Requirements};
use tokio_util::sync::CancellationToken;

use crate::args::PodArgs;
use crate::commands::handoff;
use crate::{shutdown, workload};

pub(crate) fn gpus(spec: &str) -> anyhow::Result<Gpus> {
    Ok(match spec.trim() {
        "all" => Gpus::All,
        "none" => Gpus::None,
        list => {
            let ids: Vec<String> = list.split(',').map(|s| s.trim().to_string()).collect();
            if ids.iter().any(|i| i.parse::<u32>().is_err()) {
                anyhow::bail!("CACHEON_GPUS: `{spec}` is not all, none or a list of indices");
            }
            Gpus::Ids(ids)
        }
    })
}

fn pod_id(a: &PodArgs) -> String {
    a.pod_id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "pod".into());
        // Unique per process, also where every pod's hostname and pid are the same (pods
        // in containers on the host's network): two pods on one engine must never take
        // each other's containers for their own.
        format!("{host}-{}-{}", std::process::id(), random_suffix())
    })
}

/// Eight hex digits from the kernel's random source.
fn random_suffix() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 4];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        // No /dev/urandom: the clock's nanoseconds still tell two processes apart.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        bytes = nanos.to_le_bytes();
    }
    hex::encode(bytes)
}

fn config(a: &PodArgs) -> anyhow::Result<PodConfig> {
    let gib = |n: i64| n.saturating_mul(1 << 30);
    let mut cfg = PodConfig::new(pod_id(a));
    cfg.requirements = Requirements {
        gpu_count: a.gpu_count,
        gpu_name: a.gpu_name.clone(),
        min_gpu_memory_mib: a.gpu_min_memory_mib,
        nvidia_smi: a.nvidia_smi.clone(),
        models_dir: a.models_dir.clone(),
        docker_root: a.docker_root.clone(),
        min_free_disk_bytes: a.min_free_disk_gb.saturating_mul(1 << 30),
        safety: SafetyRequirements {
            min_engine: a.min_docker_version.clone(),
            min_toolkit: a.min_toolkit_version.clone(),
            min_driver: a.min_driver_version.clone(),
            nvidia_ctk: a.nvidia_ctk.clone(),
            probe_image: a.probe_image.clone(),
            min_runc: a.min_runc_versions.clone(),
            min_containerd: a.min_containerd_versions.clone(),
            allow_no_lsm: a.allow_no_lsm,
        },
    };
    if a.probe_image.is_none() && !a.skip_sandbox_self_test {
        anyhow::bail!(
            "CACHEON_PROBE_IMAGE is not set: the sandbox self-test needs an image with \
             `cacheon` (the pod's own, pinned by digest); --skip-sandbox-self-test skips it"
        );
    }
    if a.container_user
        .split(':')
        .next()
        .is_some_and(|u| u == "0" || u == "root")
    {
        anyhow::bail!("CACHEON_CONTAINER_USER: miners' servers never run as root");
    }
    cfg.sandbox = SandboxConfig {
        network: a.sandbox_network.clone(),
        bridge: (a.sandbox_bridge != "auto").then(|| a.sandbox_bridge.clone()),
        user: a.container_user.clone(),
        scratch_bytes: gib(a.container_scratch_gb),
        models_dir: a.models_dir.clone(),
        gpus: gpus(&a.gpus)?,
        shm_bytes: gib(a.container_shm_gb),
        pids_limit: a.container_pids,
        memory_bytes: gib(a.container_memory_gb),
        startup_timeout: Duration::from_secs(a.startup_timeout_secs),
        stop_grace: Duration::from_secs(a.stop_grace_secs),
        open_files: a.container_open_files,
        locked_memory: a
            .container_locked_memory_mb
            .map(|mb| mb.saturating_mul(1 << 20)),
        ..SandboxConfig::default()
    };
    cfg.gpu_probe.nvidia_smi = a.nvidia_smi.clone();
    let auth = match (&a.registry_host, &a.registry_username, &a.registry_password) {
        (Some(host), Some(u), Some(p)) => vec![RegistryAuth {
            host: host.clone(),
            credentials: Credentials {
                username: u.clone(),
                password: p.clone(),
            },
        }],
        _ => Vec::new(),
    };
    cfg.pull = PullPolicy {
        size_limit: a.image_size_limit_gb.saturating_mul(1_000_000_000),
        timeout: Duration::from_secs(a.pull_timeout_secs),
        stall: Duration::from_secs(a.pull_stall_secs),
        registries: RegistryPolicy {
            auth,
            allow_hosts: a.allow_registries.clone(),
            operated: a.operator_registries.clone(),
        },
    };
    cfg.lease_ttl = Duration::from_secs(a.lease_ttl_secs);
    cfg.lease_renew = Duration::from_secs(a.lease_renew_secs.min(a.lease_ttl_secs / 2).max(1));
    cfg.poll = Duration::from_secs(a.poll_secs);
    cfg.idle_exit = Duration::from_secs(a.idle_exit_secs);
    Ok(cfg)
}

pub async fn run(a: &PodArgs) -> anyhow::Result<()> {
    let cfg = config(a)?;
    if a.check_only {
        // The same checks as before a first claim; nothing else.
        let (engine, checked) = cacheon_pod::check_machine(&cfg)
            .await
            .context("this machine is not fit to run miners")?;
        if let Some(image) = &a.canary_image {
            let Some(digest) = &a.canary_digest else {
                anyhow::bail!("--canary-image needs --canary-digest (CACHEON_BASELINE_DIGEST)");
            };
            let baseline = BaselineImage {
                image: image.clone(),
                digest: digest.clone(),
                args: a.canary_args.split_whitespace().map(String::from).collect(),
            };
            let passed = cacheon_pod::canary::run(
                &engine,
                &cfg,
                &baseline,
                &a.canary_model,
                checked.max_model_len,
            )
            .await
            .context("this machine is not fit to run miners")?;
            println!(
                "ok: the baseline canary: healthy after {:.1} s, answered {:?}",
                passed.healthy_after.as_secs_f64(),
                passed.answer
            );
        }
        println!(
            "ok: preflight, versions and the sandbox self-test passed ({} GPU(s), driver {})",
            checked.hardware.gpus.len(),
            checked.hardware.driver.as_deref().unwrap_or("none")
        );
        return Ok(());
    }
    let (corpus, templates) = workload::load(&a.source)?;
    let bucket = handoff::bucket(&a.handoff)?;
    let token = CancellationToken::new();
    let signal = token.clone();
    tokio::spawn(async move {
        shutdown::signal().await;
        signal.cancel();
    });
    let exit = cacheon_pod::run(&cfg, &bucket, &PromptSource { corpus, templates }, token)
        .await
        .context("pod")?;
    match exit {
        PodExit::Idle => tracing::info!("pod exiting: idle"),
        PodExit::Shutdown => tracing::info!("pod exiting: shut down"),
    }
    Ok(())
}
