//! The host's read-only status API (SPEC §12): JSON for tools, Prometheus text for
//! monitoring and one small HTML page for people.
//!
//! Everything here reads: the store through its read-only pool, the host's latest
//! [`HostSnapshot`] through a `watch` channel, container logs through a [`LogSource`].
//! No handler can change the lifecycle. Miner-controlled text (hotkeys, images, reasons,
//! logs, progress documents) reaches a browser only HTML-escaped, or as `text/plain`
//! with `nosniff`.
//!
//! Endpoints (all `GET`):
//!
//! | path | answer |
//! |---|---|
//! | `/` | HTML overview |
//! | `/health` | `{"ok":true,...}`, 503 when the store cannot be read |
//! | `/status` | the snapshot, submission counts per state, king, open rounds, last weights |
//! | `/king`, `/king/history?limit=` | the king (or `null`), its history newest first |
//! | `/submissions?state=&hotkey=&uid=&limit=` | submissions |
//! | `/submissions/{id}` | one submission with its verdict, explained, in each of its rounds |
//! | `/rounds?limit=`, `/rounds/{id}` | rounds newest first, with the pod's live progress |
//! | `/rounds/{id}/logs/{label}` | a container log, `text/plain` |
//! | `/metrics` | Prometheus exposition |
//!
//! `/submissions/{id}` and `/rounds/{id}` answer a page instead of JSON when the request's
//! `Accept` asks for `text/html`, as a browser's does (`Vary: Accept`).
//!
//! Errors are `{"error": "..."}` with the matching status; a store failure is a 500 with
//! a generic message, its detail goes to the log.

mod api;
mod error;
mod html;
mod metrics;
mod params;
mod snapshot;

use std::future::Future;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;

pub use html::escape_html;
pub use snapshot::{HostSnapshot, LogSource, Mode, ScanReport};

/// What every handler reads. Cheap to clone.
#[derive(Clone)]
pub struct StatusState {
    pub store: cacheon_store::Store,
    /// The host publishes a new snapshot after each step.
    pub snapshot: tokio::sync::watch::Receiver<HostSnapshot>,
    /// `None`: `/rounds/{id}/logs/{label}` answers 503.
    pub logs: Option<Arc<dyn LogSource>>,
    /// The recorder the host installed; `None`: `/metrics` answers 503.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

impl StatusState {
    /// The latest snapshot, cloned so no lock is held across an `.await`.
    fn snapshot(&self) -> HostSnapshot {
        self.snapshot.borrow().clone()
    }
}

/// The status API's routes.
pub fn router(state: StatusState) -> Router {
    Router::new()
        .route("/", get(html::index))
        .route("/health", get(api::health))
        .route("/status", get(api::status))
        .route("/king", get(api::king))
        .route("/king/history", get(api::king_history))
        .route("/submissions", get(api::submissions))
        .route("/submissions/{id}", get(api::submission))
        .route("/rounds", get(api::rounds))
        .route("/rounds/{id}", get(api::round))
        .route("/rounds/{id}/logs/{label}", get(api::round_log))
        .route("/metrics", get(metrics::metrics))
        .fallback(api::not_found)
        .with_state(state)
}

/// Serves the status API on `listener` until `shutdown` resolves, then finishes the
/// requests in flight and returns (axum's graceful shutdown).
///
/// The caller binds the listener, so it knows the address (`listener.local_addr()`)
/// before serving; tests bind `127.0.0.1:0`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: StatusState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "status API listening");
    }
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    tracing::info!("status API stopped");
    Ok(())
}
