//! `GET /health`, honest or bent by a health fault: failing, late, redirecting, never
//! ready until a while after start, or a 200 whose body never comes or never ends.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::fault::Fault;
use crate::server::AppState;

pub(crate) async fn health(State(state): State<Arc<AppState>>) -> Response {
    match state.cfg.fault {
        Some(Fault::FailingHealth) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Some(Fault::RedirectHealth(port)) => (
            StatusCode::FOUND,
            [(
                axum::http::header::LOCATION,
                format!("http://127.0.0.1:{port}/latest/meta-data/iam"),
            )],
        )
            .into_response(),
        Some(Fault::SlowHealth(d)) => {
            tokio::time::sleep(d).await;
            StatusCode::OK.into_response()
        }
        Some(Fault::ReadyAfter(d)) if state.started.elapsed() < d => {
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
        Some(Fault::HealthNoBody) => {
            // Headers promise 16 bytes; the body stream never yields one.
            let never = futures_util::stream::pending::<Result<Vec<u8>, std::io::Error>>();
            Response::builder()
                .status(StatusCode::OK)
                .header(axum::http::header::CONTENT_LENGTH, "16")
                .body(axum::body::Body::from_stream(never))
                .unwrap_or_else(|_| StatusCode::OK.into_response())
        }
        Some(Fault::HealthEndlessBody) => {
            let block = vec![b'o'; 64 << 10];
            let endless =
                futures_util::stream::repeat_with(move || Ok::<_, std::io::Error>(block.clone()));
            Response::builder()
                .status(StatusCode::OK)
                .body(axum::body::Body::from_stream(endless))
                .unwrap_or_else(|_| StatusCode::OK.into_response())
        }
        _ => StatusCode::OK.into_response(),
    }
}
