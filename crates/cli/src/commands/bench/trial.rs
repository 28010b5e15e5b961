//! `cacheon bench --image`: a miner's image run exactly as a round runs it, before the miner
//! commits (a hotkey commits once). Pulled by digest with the pod's checks (size limit,
//! digest match), started with the pod's sandbox (`SandboxConfig`'s defaults but for the
//! sizes a workstation has), waited for as the pod waits (health poll, crash and OOM seen),
//! then benched the moment it is healthy, as a pod meets it; always removed afterwards.

use std::time::Duration;

use anyhow::Context;
use cacheon_containers::{
    log_tail, ContainerError, Engine, Labels, PullPolicy, RegistryPolicy, Running, SandboxConfig,
};
use cacheon_core::reference::{Digest, ImageRef};
use tokio::time::Instant;

use crate::args::BenchArgs;

/// A miner's server up in the sandbox.
pub struct Trial {
    running: Running,
    image: String,
}

impl Trial {
    pub fn url(&self) -> String {
        self.running.base_url()
    }

    /// Stops and removes the container; the last lines of its log.
    pub async fn teardown(self) -> String {
        log_tail(&self.running.teardown().await.unwrap_or_default(), 30)
    }

    pub fn image(&self) -> &str {
        &self.image
    }
}

/// `REF@sha256:...` split into what the pod pulls.
fn parse(reference: &str) -> anyhow::Result<(ImageRef, Digest)> {
    let (image, digest) = reference
        .rsplit_once('@')
        .context("--image must be REF@sha256:DIGEST (what you would commit)")?;
    Ok((
        ImageRef::parse(image).context("--image")?,
        Digest::parse(digest).context("--image digest")?,
    ))
}

pub async fn start(a: &BenchArgs, reference: &str) -> anyhow::Result<Trial> {
    let (image, digest) = parse(reference)?;
    let models = a
        .models
        .clone()
        .context("--image needs --models DIR (mounted read-only at /models, as on a pod)")?;
    let engine = Engine::connect().await.context("the Docker engine")?;
    let policy = PullPolicy {
        registries: RegistryPolicy {
            // Your own registry may be on this machine; the pod allows only public ones.
            allow_hosts: image.registry().map(str::to_string).into_iter().collect(),
            ..RegistryPolicy::default()
        },
        ..PullPolicy::default()
    };
    eprintln!("pulling {reference}");
    let t = Instant::now();
    let pinned = engine
        .pull(&image, &digest, &policy, &|_| {})
        .await
        .map_err(|e| verdict_of(&e))?;
    eprintln!("pulled in {:.1} s", t.elapsed().as_secs_f64());
    let sandbox = SandboxConfig {
        network: "cacheon-bench".into(),
        bridge: None,
        models_dir: models,
        gpus: crate::commands::pod::gpus(&a.gpus)?,
        memory_bytes: a.container_memory_gb.saturating_mul(1 << 30),
        shm_bytes: a.container_shm_gb.saturating_mul(1 << 30),
        scratch_bytes: a.container_scratch_gb.saturating_mul(1 << 30),
        startup_timeout: Duration::from_secs(a.startup_timeout_s),
        stop_grace: Duration::from_secs(5),
        open_files: a.container_open_files,
        locked_memory: a
            .container_locked_memory_mb
            .map(|mb| mb.saturating_mul(1 << 20)),
        ..SandboxConfig::default()
    };
    let labels = Labels {
        round: "bench".into(),
        submission: reference.chars().take(200).collect(),
        role: "challenger".into(),
        pod: format!("bench-{}", std::process::id()),
    };
    let t = Instant::now();
    let running = engine
        .start(&pinned, &[], &labels, &sandbox)
        .await
        .map_err(|e| verdict_of(&e))?;
    eprintln!(
        "started in the sandbox as uid {}; waiting up to {} s for GET /health",
        sandbox.user, a.startup_timeout_s
    );
    let trial = Trial {
        running,
        image: reference.to_string(),
    };
    if let Err(e) = trial.running.wait_healthy().await {
        let tail = trial.teardown().await;
        anyhow::bail!(
            "{}\n--- the last lines of its log ---\n{tail}",
            verdict_of(&e)
        );
    }
    eprintln!(
        "healthy after {:.1} s; benching at once, as a pod does",
        t.elapsed().as_secs_f64()
    );
    Ok(trial)
}

/// What a round would say: the reason code a pod would disqualify with, or that the
/// failure would be the validator's (never charged).
fn verdict_of(e: &ContainerError) -> anyhow::Error {
    match e.blame() {
        cacheon_containers::Blame::Miner(reason) => {
            anyhow::anyhow!("a round would disqualify this image as {reason}: {e}")
        }
        cacheon_containers::Blame::Infra(_) => {
            anyhow::anyhow!(
                "this machine failed, not the image (a round would not charge you): {e}"
            )
        }
    }
}
