//! Keeps a claimed round's lease alive and says when to stop: the lease was taken over by
//! another pod, or the round's deadline passed. Work on a round whose lease is gone must stop at once — another pod may own it.

use std::sync::Arc;
use std::time::Duration;

use cacheon_handoff::{Bucket, Lease};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// Why the round's work was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    LeaseLost,
    DeadlinePassed,
    Shutdown,
}

/// The running keeper; dropping it stops renewing.
pub struct Keeper {
    pub lease: Arc<Mutex<Lease>>,
    pub cancel: CancellationToken,
    cause: Arc<std::sync::Mutex<Option<StopCause>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Keeper {
    /// Starts renewing `lease` every `every`; `cancel` (a child of the pod's shutdown
    /// token) is cancelled when the round must stop.
    pub fn start(
        bucket: Bucket,
        lease: Lease,
        every: Duration,
        deadline_at: i64,
        shutdown: &CancellationToken,
    ) -> Self {
        let lease = Arc::new(Mutex::new(lease));
        let cancel = shutdown.child_token();
        let cause = Arc::new(std::sync::Mutex::new(None));
        let task = tokio::spawn(renew_loop(
            bucket,
            lease.clone(),
            every,
            deadline_at,
            cancel.clone(),
            cause.clone(),
        ));
        Self {
            lease,
            cancel,
            cause,
            task,
        }
    }

    /// Why the round was cancelled (shutdown when the pod is stopping).
    pub fn cause(&self) -> StopCause {
        self.cause
            .lock()
            .ok()
            .and_then(|c| *c)
            .unwrap_or(StopCause::Shutdown)
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn renew_loop(
    bucket: Bucket,
    lease: Arc<Mutex<Lease>>,
    every: Duration,
    deadline_at: i64,
    cancel: CancellationToken,
    cause: Arc<std::sync::Mutex<Option<StopCause>>>,
) {
    let stop = |why: StopCause| {
        if let Ok(mut c) = cause.lock() {
            c.get_or_insert(why);
        }
        cancel.cancel();
    };
    let mut wait = every;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let now = crate::now_unix();
        if now >= deadline_at {
            tracing::warn!("the round's deadline passed; stopping work on it");
            stop(StopCause::DeadlinePassed);
            return;
        }
        let mut held = lease.lock().await;
        match bucket.renew(&mut held, now).await {
            Ok(true) => {
                tracing::debug!(expires_at = held.expires_at, "lease renewed");
                wait = every;
            }
            Ok(false) => {
                tracing::error!(round = held.round_id, "lease lost to another pod; stopping");
                stop(StopCause::LeaseLost);
                return;
            }
            Err(e) => {
                // S3 trouble. While S3 is unreachable nobody else can take the lease over
                // either; once it answers, the conditional renewal tells whether it is still
                // ours (and results are write-once, so overlap with a successor is harmless).
                tracing::warn!(
                    expires_at = held.expires_at,
                    "lease renewal failed, retrying: {e}"
                );
                wait = (every / 4).max(Duration::from_millis(100));
            }
        }
    }
}
