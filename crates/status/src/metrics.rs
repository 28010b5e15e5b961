//! `/metrics`: the host's Prometheus recorder plus gauges read from the store at scrape time.
//!
//! The store gauges are set through the `metrics` facade on a recorder made for this one
//! scrape and rendered after the host's: nothing global is touched (tests and several
//! status servers in one process cannot see each other's values), and a gauge that has
//! no value now (no king, no block seen yet) is absent rather than stale.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusBuilder;

use crate::error::ApiError;
use crate::StatusState;

/// The Prometheus text exposition format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(crate) async fn metrics(State(s): State<StatusState>) -> Result<Response, ApiError> {
    let Some(handle) = &s.metrics else {
        return Err(ApiError::Unavailable("metrics are not enabled"));
    };
    let counts = s.store.submission_counts().await?;
    let king = s.store.king().await?;
    let open_rounds = s.store.open_round_count().await?;
    let last_completed = s.store.last_completed_round_at().await?;
    let snap = s.snapshot();
    let now = crate::api::now_unix();

    let scrape = PrometheusBuilder::new().build_recorder();
    metrics::with_local_recorder(&scrape, || {
        metrics::describe_gauge!("cacheon_submissions", "Submissions per lifecycle state.");
        for c in &counts {
            metrics::gauge!("cacheon_submissions", "state" => c.state.code()).set(c.count as f64);
        }
        metrics::describe_gauge!("cacheon_open_rounds", "Rounds open now.");
        metrics::gauge!("cacheon_open_rounds").set(open_rounds as f64);
        if let Some(k) = &king {
            metrics::describe_gauge!("cacheon_king_uid", "The king's uid.");
            metrics::gauge!("cacheon_king_uid").set(f64::from(k.uid));
            metrics::describe_gauge!("cacheon_king_score", "The king's latest score.");
            metrics::gauge!("cacheon_king_score").set(k.score);
        }
        if let Some(at) = last_completed {
            metrics::describe_gauge!(
                "cacheon_last_completed_round_timestamp_seconds",
                metrics::Unit::Seconds,
                "When the last completed round closed (unix time)."
            );
            metrics::gauge!("cacheon_last_completed_round_timestamp_seconds").set(at as f64);
            metrics::describe_gauge!(
                "cacheon_last_completed_round_age_seconds",
                metrics::Unit::Seconds,
                "Time since the last completed round closed; alert when it grows."
            );
            metrics::gauge!("cacheon_last_completed_round_age_seconds")
                .set(now.saturating_sub(at).max(0) as f64);
        }
        if let Some(block) = snap.chain_block {
            metrics::describe_gauge!("cacheon_chain_block", "The last finalized block seen.");
            metrics::gauge!("cacheon_chain_block").set(block as f64);
        }
        metrics::describe_gauge!("cacheon_info", "Always 1; labels carry version and mode.");
        metrics::gauge!("cacheon_info", "version" => snap.version.clone(), "mode" => snap.mode.code())
            .set(1.0);
    });

    let mut body = handle.render();
    if !body.is_empty() && !body.ends_with('\n') {
        body.push('\n');
    }
    body.push_str(&scrape.handle().render());
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response())
}
