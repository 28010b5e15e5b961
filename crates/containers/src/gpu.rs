//! Waiting for the GPUs to be free before the next container: a stopped server's memory is
//! released by the driver a moment after its process exits, and the next server must not
//! start out of memory because of its predecessor.

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::ContainerError;
use crate::sandbox::Gpus;

/// How to ask the driver (`nvidia-smi`, overridable for tests and odd installs).
#[derive(Debug, Clone)]
pub struct GpuProbe {
    pub nvidia_smi: PathBuf,
    /// A GPU counts as free at or below this much used memory.
    pub free_below_mib: u64,
    pub timeout: Duration,
    pub poll: Duration,
}

impl Default for GpuProbe {
    fn default() -> Self {
        Self {
            nvidia_smi: PathBuf::from("nvidia-smi"),
            free_below_mib: 1024,
            timeout: Duration::from_secs(120),
            poll: Duration::from_secs(1),
        }
    }
}

/// Used memory per GPU index, from `nvidia-smi --query-gpu=index,memory.used`.
async fn used_mib(probe: &GpuProbe) -> Result<Vec<(String, u64)>, ContainerError> {
    let out = tokio::process::Command::new(&probe.nvidia_smi)
        .args([
            "--query-gpu=index,memory.used",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .await
        .map_err(|e| ContainerError::GpuBusy(format!("{}: {e}", probe.nvidia_smi.display())))?;
    if !out.status.success() {
        return Err(ContainerError::GpuBusy(format!(
            "{} exited with {}",
            probe.nvidia_smi.display(),
            out.status
        )));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (index, used) = l.split_once(',').unwrap_or((l, ""));
            used.trim()
                .parse::<u64>()
                .map(|u| (index.trim().to_string(), u))
                .map_err(|_| ContainerError::GpuBusy(format!("unreadable nvidia-smi line `{l}`")))
        })
        .collect()
}

/// Returns once every GPU in `gpus` uses at most `free_below_mib`; an infrastructure error
/// at the timeout. Nothing to wait for with `Gpus::None`.
pub async fn wait_released(gpus: &Gpus, probe: &GpuProbe) -> Result<(), ContainerError> {
    if *gpus == Gpus::None {
        return Ok(());
    }
    let deadline = Instant::now() + probe.timeout;
    loop {
        let busy: Vec<(String, u64)> = used_mib(probe)
            .await?
            .into_iter()
            .filter(|(index, _)| match gpus {
                Gpus::Ids(ids) => ids.contains(index),
                _ => true,
            })
            .filter(|(_, used)| *used > probe.free_below_mib)
            .collect();
        if busy.is_empty() {
            return Ok(());
        }
        if Instant::now() + probe.poll >= deadline {
            return Err(ContainerError::GpuBusy(format!(
                "still in use after {:?}: {busy:?} (MiB)",
                probe.timeout
            )));
        }
        tokio::time::sleep(probe.poll).await;
    }
}
