//! Whether this machine is sound right now. Whose a failure is depends on it: a start
//! failure, or an engine error during a contestant's turn, is that contestant's only when
//! the machine is shown healthy right after (the engine answers, every GPU is still there,
//! a known-good container starts in the sandbox). Otherwise the machine failed, and that
//! is ours: a GPU that fell off the bus must not disqualify whoever was on it.

use crate::preflight::{query_gpus, PreflightError};
use crate::round::Context;
use crate::safety;

/// Every GPU preflight found still answers `nvidia-smi` (checked before each turn).
pub async fn gpus_present(ctx: &Context<'_>) -> Result<(), PreflightError> {
    let req = &ctx.cfg.requirements;
    if req.gpu_count == 0 {
        return Ok(());
    }
    let now = query_gpus(&req.nvidia_smi).await?;
    let before = &ctx.checked.hardware.gpus;
    let missing: Vec<u32> = before
        .iter()
        .filter(|g| {
            !now.gpus
                .iter()
                .any(|n| n.index == g.index && n.name == g.name)
        })
        .map(|g| g.index)
        .collect();
    if !missing.is_empty() {
        return Err(PreflightError::GpuQuery {
            tool: req.nvidia_smi.display().to_string(),
            detail: format!(
                "GPU(s) {missing:?} no longer answer (preflight saw {} GPUs)",
                before.len()
            ),
        });
    }
    Ok(())
}

/// The machine shown healthy: the engine answers, the GPUs are all there, and the sandbox
/// starts a known-good container (the self-test probe, when configured). `Err` says what
/// is wrong with the machine.
pub async fn sound(ctx: &Context<'_>) -> Result<(), String> {
    ctx.engine.ping().await.map_err(|e| e.to_string())?;
    gpus_present(ctx).await.map_err(|e| e.to_string())?;
    if let Some(probe) = &ctx.cfg.requirements.safety.probe_image {
        safety::self_test(ctx.engine, &ctx.cfg.sandbox, probe, &ctx.cfg.pod_id)
            .await
            .map_err(|e| format!("a known-good container does not run: {e}"))?;
    }
    Ok(())
}
