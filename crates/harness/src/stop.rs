//! Fail fast: a contestant's run stops as soon as its verdict can no longer change, and a
//! hostile server can hold the measuring machine only for a bounded time.
//!
//! Two rules, either of which ends a run:
//! - more scored requests have failed (a stream fault) than the gate's `min_pass_fraction`
//!   allows: no later request can make the verdict a pass, so none is sent;
//! - the requests that failed have together taken longer than `fault_budget`: a server that
//!   stalls or drips each request until its deadline would otherwise hold the pod for one
//!   deadline per allowed failure.
//!
//! Both are decided from what the harness itself saw (stream faults and the monotonic
//! clock), never from timing of the healthy requests, so an honest server is never cut.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cacheon_core::gate::StreamFault;
use cacheon_core::prompts::Phase;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::stream::{nanos, StreamRecord};

/// When a run stops early.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StopRule {
    /// Most failed scored requests the verdict can absorb; one more ends the run.
    pub max_failures: Option<usize>,
    /// Most wall time failed requests (warm-ups included) may take in total.
    pub fault_budget: Option<Duration>,
}

impl StopRule {
    /// Never stops early (the baseline: its failure voids the round anyway).
    pub fn never() -> Self {
        Self {
            max_failures: None,
            fault_budget: None,
        }
    }

    /// For a contestant whose `scored` requests must pass at `min_pass_fraction`: the most
    /// failures that still leave `passed / scored >= min_pass_fraction`, the gate's own
    /// arithmetic.
    pub fn for_contestant(min_pass_fraction: f64, scored: usize, fault_budget: Duration) -> Self {
        let max_failures = (0..=scored)
            .rev()
            .find(|&f| {
                let passed = scored - f;
                scored > 0 && passed as f64 / scored as f64 >= min_pass_fraction
            })
            .unwrap_or(0);
        Self {
            max_failures: Some(max_failures),
            fault_budget: Some(fault_budget),
        }
    }
}

/// Which rule ended a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopCause {
    /// More scored requests failed than the gate allows.
    TooManyFailures,
    /// Failed requests used up the fault budget.
    FaultBudget,
}

/// A run that ended before every request was sent, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlyStop {
    pub cause: StopCause,
    /// Nanoseconds from the start of the run to the decision.
    pub at_ns: u64,
    /// Failed scored requests when it stopped.
    pub failed: usize,
    /// Milliseconds the failed requests took, together.
    pub fault_ms: u64,
    /// The stream fault of every failed request (warm-ups included), in the order seen.
    #[serde(default)]
    pub faults: Vec<StreamFault>,
}

/// Shared by every request task of one run. Only failed requests take the lock.
pub(crate) struct Watch {
    rule: StopRule,
    epoch: Instant,
    tally: Mutex<Tally>,
    notify: Notify,
}

/// What the failed requests have added up to.
#[derive(Default)]
struct Tally {
    /// Failed scored requests.
    failed: usize,
    fault_ns: u64,
    faults: Vec<StreamFault>,
    stopped: Option<EarlyStop>,
}

impl Watch {
    pub(crate) fn new(rule: StopRule, epoch: Instant) -> Self {
        Self {
            rule,
            epoch,
            tally: Mutex::new(Tally::default()),
            notify: Notify::new(),
        }
    }

    fn tally(&self) -> MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a finished request into account; `took` is its wall time.
    pub(crate) fn observe(&self, record: &StreamRecord, took: Duration) {
        let Some(fault) = record.fault else {
            return;
        };
        let mut t = self.tally();
        t.faults.push(fault);
        t.fault_ns = t.fault_ns.saturating_add(nanos(took));
        if record.phase != Phase::Warmup {
            t.failed += 1;
        }
        let cause = if self.rule.max_failures.is_some_and(|m| t.failed > m) {
            Some(StopCause::TooManyFailures)
        } else if self
            .rule
            .fault_budget
            .is_some_and(|b| t.fault_ns >= nanos(b))
        {
            Some(StopCause::FaultBudget)
        } else {
            None
        };
        if let (Some(cause), None) = (cause, &t.stopped) {
            t.stopped = Some(EarlyStop {
                cause,
                at_ns: nanos(self.epoch.elapsed()),
                failed: t.failed,
                fault_ms: t.fault_ns / 1_000_000,
                faults: t.faults.clone(),
            });
            drop(t);
            self.notify.notify_waiters();
        }
    }

    pub(crate) fn fault_ns(&self) -> u64 {
        self.tally().fault_ns
    }

    pub(crate) fn stopped(&self) -> Option<EarlyStop> {
        self.tally().stopped.clone()
    }

    /// Resolves once the run has been told to stop.
    pub(crate) async fn until_stopped(&self) {
        loop {
            let notified = self.notify.notified();
            if self.stopped().is_some() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowance_is_the_gates_own_arithmetic() {
        let budget = Duration::from_secs(90);
        assert_eq!(
            StopRule::for_contestant(0.95, 80, budget).max_failures,
            Some(4)
        );
        assert_eq!(
            StopRule::for_contestant(0.95, 18, budget).max_failures,
            Some(0)
        );
        assert_eq!(
            StopRule::for_contestant(0.9, 20, budget).max_failures,
            Some(2)
        );
        assert_eq!(
            StopRule::for_contestant(0.0, 5, budget).max_failures,
            Some(5)
        );
        assert_eq!(
            StopRule::for_contestant(1.0, 0, budget).max_failures,
            Some(0)
        );
        assert_eq!(StopRule::never().max_failures, None);
    }
}
