//! The SPEC §7 workload against one server: warm-ups and the latency phase one request at
//! a time, then the throughput phase at fixed concurrency. Every request is spawned on its
//! own task so a busy stream never delays the stamping of another's events. A `StopRule`
//! ends the run as soon as the verdict is certain (see `stop`).

use std::sync::Arc;

use cacheon_core::prompts::{Phase, Prompt, PromptSet};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::Target;
use crate::config::HarnessConfig;
use crate::stop::{EarlyStop, StopRule, Watch};
use crate::stream::{nanos, stream_chat, StreamRecord};
use crate::HarnessError;

/// Every scored request of one server, in prompt order within each phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadRun {
    pub base_url: String,
    pub concurrency: usize,
    pub warmups_discarded: usize,
    pub latency: Vec<StreamRecord>,
    pub throughput: Vec<StreamRecord>,
    /// Nanoseconds from the start of the run to its end.
    pub elapsed_ns: u64,
    /// Set when the run stopped before every request was sent; the requests it never
    /// finished are absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<EarlyStop>,
    /// Wall time of the requests that failed (warm-ups included), together.
    #[serde(default)]
    pub failed_requests_ns: u64,
}

impl WorkloadRun {
    /// Every scored record (latency then throughput).
    pub fn scored(&self) -> impl Iterator<Item = &StreamRecord> {
        self.latency.iter().chain(&self.throughput)
    }
}

/// Progress, for a bar or a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub phase: Phase,
    pub done: usize,
    pub total: usize,
}

/// Runs the workload; `epoch` is the instant all `sent_ns` are measured from. `stop` says
/// when to give up on a server whose verdict is already certain.
pub async fn run(
    target: &Target,
    prompts: &PromptSet,
    cfg: &HarnessConfig,
    stop: &StopRule,
    epoch: Instant,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<WorkloadRun, HarnessError> {
    target.warm(1).await?;
    let watch = Arc::new(Watch::new(*stop, epoch));
    let phase_prompts = |phase: Phase| -> Vec<Prompt> { prompts.phase(phase).cloned().collect() };
    let warmups = sequential(
        target,
        cfg,
        &watch,
        epoch,
        Phase::Warmup,
        phase_prompts(Phase::Warmup),
        progress,
    )
    .await;
    let latency = sequential(
        target,
        cfg,
        &watch,
        epoch,
        Phase::Latency,
        phase_prompts(Phase::Latency),
        progress,
    )
    .await;
    let throughput = if watch.stopped().is_some() {
        Vec::new()
    } else {
        // Open every connection the throughput phase will use right before it, not at the
        // start: servers close idle connections (uvicorn after 5 s), and a handshake must
        // not fall inside the timed window.
        target.warm(cfg.concurrency).await?;
        throughput_phase(
            target,
            cfg,
            &watch,
            epoch,
            phase_prompts(Phase::Throughput),
            progress,
        )
        .await?
    };
    Ok(WorkloadRun {
        base_url: target.base_url().to_string(),
        concurrency: cfg.concurrency,
        warmups_discarded: warmups.len(),
        latency,
        throughput,
        elapsed_ns: nanos(epoch.elapsed()),
        stopped_early: watch.stopped(),
        failed_requests_ns: watch.fault_ns(),
    })
}

async fn sequential(
    target: &Target,
    cfg: &HarnessConfig,
    watch: &Watch,
    epoch: Instant,
    phase: Phase,
    list: Vec<Prompt>,
    progress: &(dyn Fn(Progress) + Sync),
) -> Vec<StreamRecord> {
    let total = list.len();
    let mut records = Vec::with_capacity(total);
    for (done, p) in list.iter().enumerate() {
        if watch.stopped().is_some() {
            break;
        }
        let t = Instant::now();
        let record = stream_chat(target, cfg, epoch, p.index, phase, &p.messages).await;
        watch.observe(&record, t.elapsed());
        records.push(record);
        progress(Progress {
            phase,
            done: done + 1,
            total,
        });
    }
    records
}

async fn throughput_phase(
    target: &Target,
    cfg: &HarnessConfig,
    watch: &Arc<Watch>,
    epoch: Instant,
    list: Vec<Prompt>,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Vec<StreamRecord>, HarnessError> {
    let total = list.len();
    let slots = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let mut records = Vec::with_capacity(total);
    let mut done = 0;
    'prompts: for p in list {
        // Wait for a free slot; meanwhile collect what has finished.
        let permit = loop {
            tokio::select! {
                biased;
                () = watch.until_stopped() => break 'prompts,
                permit = slots.clone().acquire_owned() => {
                    break permit.map_err(|_| HarnessError::Internal("semaphore closed".into()))?;
                }
                Some(joined) = tasks.join_next() => {
                    if let Some(r) = joined.map_err(|e| HarnessError::Internal(e.to_string()))? {
                        records.push(r);
                    }
                    done += 1;
                    progress(Progress { phase: Phase::Throughput, done, total });
                }
            }
        };
        let (target, cfg, watch) = (target.clone(), cfg.clone(), watch.clone());
        tasks.spawn(async move {
            let t = Instant::now();
            // A request still in flight when the run stops is dropped, not recorded: it
            // was cut by us, not failed by the server.
            let r = tokio::select! {
                () = watch.until_stopped() => None,
                r = stream_chat(&target, &cfg, epoch, p.index, Phase::Throughput, &p.messages) => {
                    watch.observe(&r, t.elapsed());
                    Some(r)
                }
            };
            drop(permit);
            r
        });
    }
    while let Some(joined) = tasks.join_next().await {
        if let Some(r) = joined.map_err(|e| HarnessError::Internal(e.to_string()))? {
            records.push(r);
        }
        done += 1;
        progress(Progress {
            phase: Phase::Throughput,
            done,
            total,
        });
    }
    records.sort_by_key(|r| r.prompt_index);
    Ok(records)
}
