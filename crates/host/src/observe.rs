//! The host's metrics, for `/metrics`: their names and descriptions in one place, and what
//! rounds cost: every closed round feeds the duration histograms, the per-contestant step
//! and GPU-time histograms (from the reports the pod wrote) and the counters by
//! disqualification and void reason.
//!
//! Called only when a round's closing transaction actually applied, so a replayed
//! `done.json` counts nothing twice. Names follow Prometheus' conventions: base units in
//! the name (`_seconds`), `_total` only on counters, labels with few values (role, reason
//! codes, outcome); never a submission id or hotkey.

use cacheon_core::report::ContestantReport;
use cacheon_core::{InfraReason, Role};
use cacheon_store::{ContestantVerdict, VerdictOutcome};

/// Histogram buckets of every `_seconds` metric: a second to a day, for steps of a few
/// seconds up to GPU time of four GPUs over long rounds.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
    14_400.0, 28_800.0, 86_400.0,
];

pub const ROUND_DURATION: &str = "cacheon_round_duration_seconds";
pub const PULL_DURATION: &str = "cacheon_contestant_pull_duration_seconds";
pub const STARTUP_DURATION: &str = "cacheon_contestant_startup_duration_seconds";
pub const WORKLOAD_DURATION: &str = "cacheon_contestant_workload_duration_seconds";
pub const TEARDOWN_DURATION: &str = "cacheon_contestant_teardown_duration_seconds";
pub const GPU_SECONDS: &str = "cacheon_contestant_gpu_seconds";
pub const DISQUALIFIED: &str = "cacheon_disqualifications_total";
pub const REJECTED: &str = "cacheon_rejections_total";
pub const VOID: &str = "cacheon_rounds_void_total";
pub const CLOSED: &str = "cacheon_rounds_closed_total";
pub const OPENED: &str = "cacheon_rounds_opened_total";
pub const SCANS: &str = "cacheon_scans_total";
pub const OBSERVED: &str = "cacheon_submissions_observed_total";
pub const WEIGHTS: &str = "cacheon_weights_total";

/// Registers the descriptions, so a scrape explains every series.
pub fn describe() {
    use metrics::{describe_counter, describe_histogram, Unit};
    describe_histogram!(
        ROUND_DURATION,
        Unit::Seconds,
        "From a round opening to its closing, by outcome (completed, void)."
    );
    describe_histogram!(
        PULL_DURATION,
        Unit::Seconds,
        "A contestant's wait for its image, by role."
    );
    describe_histogram!(
        STARTUP_DURATION,
        Unit::Seconds,
        "A contestant's container start until it answered /health, by role."
    );
    describe_histogram!(
        WORKLOAD_DURATION,
        Unit::Seconds,
        "A contestant's workload, by role."
    );
    describe_histogram!(
        TEARDOWN_DURATION,
        Unit::Seconds,
        "A contestant's container stop and removal, by role."
    );
    describe_histogram!(
        GPU_SECONDS,
        Unit::Seconds,
        "GPU time a contestant held: GPUs x (its pull wait + its turn), by role."
    );
    describe_counter!(DISQUALIFIED, "Contestants disqualified, by reason.");
    describe_counter!(
        REJECTED,
        "Contestants rejected after measurement, by reason."
    );
    describe_counter!(VOID, "Rounds voided, by infrastructure reason.");
    describe_counter!(CLOSED, "Rounds closed, by outcome.");
    describe_counter!(OPENED, "Rounds opened.");
    describe_counter!(SCANS, "Chain scans for commitments.");
    describe_counter!(OBSERVED, "New submissions seen on chain.");
    describe_counter!(WEIGHTS, "Weight settings, by outcome.");
}

/// A round that completed: its duration, every contestant's steps, and its verdicts.
pub fn completed(
    opened_at: i64,
    now: i64,
    verdicts: &[ContestantVerdict],
    reports: &[(Role, &ContestantReport)],
) {
    metrics::counter!(CLOSED, "outcome" => "completed").increment(1);
    metrics::histogram!(ROUND_DURATION, "outcome" => "completed").record(age(opened_at, now));
    for (role, r) in reports {
        let role = role.code();
        let t = &r.timings;
        metrics::histogram!(PULL_DURATION, "role" => role).record(t.pull_s);
        metrics::histogram!(STARTUP_DURATION, "role" => role).record(t.start_s + t.ready_s);
        metrics::histogram!(WORKLOAD_DURATION, "role" => role).record(t.workload_s);
        metrics::histogram!(TEARDOWN_DURATION, "role" => role).record(t.teardown_s);
        metrics::histogram!(GPU_SECONDS, "role" => role).record(t.gpu_seconds);
    }
    for v in verdicts {
        match &v.outcome {
            VerdictOutcome::Scored { .. } => {}
            VerdictOutcome::Disqualified(reason) => {
                metrics::counter!(DISQUALIFIED, "reason" => reason.code()).increment(1);
            }
            VerdictOutcome::DuplicateOf(_) => {
                metrics::counter!(REJECTED, "reason" => "duplicate_of").increment(1);
            }
        }
    }
}

/// A round that was voided.
pub fn void(opened_at: i64, now: i64, reason: InfraReason) {
    metrics::counter!(CLOSED, "outcome" => "void").increment(1);
    metrics::counter!(VOID, "reason" => reason.code()).increment(1);
    metrics::histogram!(ROUND_DURATION, "outcome" => "void").record(age(opened_at, now));
}

fn age(opened_at: i64, now: i64) -> f64 {
    now.saturating_sub(opened_at).max(0) as f64
}
