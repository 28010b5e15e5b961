//! Leftovers of dead pods. A pod removes, before its first claim, every container on its
//! engine that no live pod owns: its own (an earlier run under the same id), and any whose
//! pod no longer holds the lease of that container's round (the pod died: its lease
//! expired, was released, or another pod took the round over). A live pod's containers on
//! the same engine are left alone, so two pods sharing an engine cannot remove each
//! other's servers; an orphan still cannot keep the GPUs, because the lease says when its
//! pod is gone.

use cacheon_containers::{ContainerError, Engine, Labelled};
use cacheon_handoff::{layout, Bucket, LeaseDoc};

/// A self-test probe lives seconds; one this old lost its pod.
const PROBE_ORPHANED_AFTER_SECS: i64 = 600;

/// Removes the orphans; returns how many.
pub async fn reap(engine: &Engine, bucket: &Bucket, pod_id: &str) -> Result<usize, ContainerError> {
    let now = crate::now_unix();
    let mut removed = 0;
    for c in engine.labelled().await? {
        if !orphaned(&c, bucket, pod_id, now).await {
            continue;
        }
        engine.remove_container(&c.id).await?;
        tracing::info!(container = %c.id, pod = ?c.pod, round = ?c.round, "reaped an orphaned container");
        removed += 1;
    }
    Ok(removed)
}

async fn orphaned(c: &Labelled, bucket: &Bucket, pod_id: &str, now: i64) -> bool {
    let Some(pod) = c.pod.as_deref() else {
        return true; // started by a pod that did not label its own: nobody claims it
    };
    if pod == pod_id {
        return true;
    }
    let round = match c.round.as_deref().map(str::parse::<i64>) {
        Some(Ok(round)) => round,
        // Not a round's container (a self-test probe, or a label we do not know).
        _ => return now.saturating_sub(c.created) > PROBE_ORPHANED_AFTER_SECS,
    };
    match bucket.get_doc::<LeaseDoc>(&layout::lease(round)).await {
        Ok(Some((lease, _))) => lease.pod_id != pod || lease.released || now >= lease.expires_at,
        Ok(None) => true,
        Err(e) => {
            // Cannot tell: leave it; the next look decides.
            tracing::warn!(container = %c.id, "cannot read the lease of round {round}: {e}");
            false
        }
    }
}
