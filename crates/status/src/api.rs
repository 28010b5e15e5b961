//! The JSON endpoints and the container-log endpoint.

use std::collections::BTreeMap;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cacheon_store::{
    ContestantRow, KingEvent, KingRow, RoundRow, RoundState, Store, SubmissionFilter, SubmissionRow,
};
use cacheon_store::{StoreError, WeightSubmissionRow};
use serde::Serialize;

use crate::error::ApiError;
use crate::html;
use crate::params::{self, Params};
use crate::{HostSnapshot, StatusState};

/// Default and maximum `limit` of the list endpoints.
pub(crate) const DEFAULT_KING_HISTORY: u32 = 50;
pub(crate) const DEFAULT_SUBMISSIONS: u32 = 100;
pub(crate) const DEFAULT_ROUNDS: u32 = 50;
pub(crate) const MAX_LIMIT: u32 = 1000;

/// The king with the submission it runs, so a reader need not look it up.
#[derive(Debug, Serialize)]
pub(crate) struct KingView {
    #[serde(flatten)]
    pub king: KingRow,
    pub hotkey: Option<String>,
    pub image: Option<String>,
    pub digest: Option<String>,
    /// The king's fresh scores over its reign (the round that crowned it and every
    /// defence, newest 50): how much its score moves from round to round on its own.
    pub fresh_scores: Option<FreshScores>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct FreshScores {
    pub rounds: usize,
    pub mean: f64,
    /// Sample standard deviation; 0 with one round.
    pub sd: f64,
    pub min: f64,
    pub max: f64,
}

impl FreshScores {
    fn of(scores: &[f64]) -> Option<Self> {
        let n = scores.len();
        if n == 0 {
            return None;
        }
        let mean = scores.iter().sum::<f64>() / n as f64;
        let var = if n > 1 {
            scores.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        Some(Self {
            rounds: n,
            mean,
            sd: var.sqrt(),
            min: scores.iter().copied().fold(f64::INFINITY, f64::min),
            max: scores.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

pub(crate) async fn load_king(store: &Store) -> Result<Option<KingView>, StoreError> {
    let Some(king) = store.king().await? else {
        return Ok(None);
    };
    let sub = store.submission(&king.submission_id).await?;
    // Newest first: this reign's events end at its crowning.
    let mut scores = Vec::new();
    for e in store.king_history(500).await? {
        if e.submission_id != king.submission_id {
            continue;
        }
        if e.event == "dethroned" {
            break;
        }
        if let Some(score) = e.score.filter(|s| s.is_finite()) {
            scores.push(score);
        }
        if e.event == "crowned" || scores.len() == 50 {
            break;
        }
    }
    Ok(Some(KingView {
        fresh_scores: FreshScores::of(&scores),
        hotkey: sub.as_ref().map(|s| s.hotkey.clone()),
        image: sub.as_ref().and_then(|s| s.image.clone()),
        digest: sub.and_then(|s| s.digest),
        king,
    }))
}

/// A round with the pod's live progress, when the host has any.
#[derive(Debug, Serialize)]
pub(crate) struct RoundView {
    #[serde(flatten)]
    pub round: RoundRow,
    pub progress: Option<serde_json::Value>,
    /// Seconds from opening to closing, or to now while it runs.
    pub elapsed_s: i64,
}

impl RoundView {
    pub(crate) fn new(round: RoundRow, snapshot: &HostSnapshot) -> Self {
        let progress = snapshot.progress.get(&round.id).cloned();
        let end = round.closed_at.unwrap_or_else(now_unix);
        Self {
            elapsed_s: end.saturating_sub(round.opened_at).max(0),
            round,
            progress,
        }
    }
}

#[derive(Debug, Serialize)]
struct StatusView {
    #[serde(flatten)]
    host: HostSnapshot,
    /// Unix seconds when this answer was made.
    now: i64,
    /// Every state, zeros included.
    submissions: BTreeMap<&'static str, u64>,
    king: Option<KingView>,
    open_rounds: u64,
    last_weights: Option<WeightSubmissionRow>,
}

pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Liveness and the store's readability: 503 when the store cannot be read.
pub(crate) async fn health(State(s): State<StatusState>) -> Response {
    let snap = s.snapshot();
    match s.store.open_round_count().await {
        Ok(_) => Json(serde_json::json!({
            "ok": true,
            "version": snap.version,
            "mode": snap.mode,
        }))
        .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "status API: health check cannot read the store");
            let body = serde_json::json!({ "ok": false, "error": "store unavailable" });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

pub(crate) async fn status(State(s): State<StatusState>) -> Result<Response, ApiError> {
    let host = s.snapshot();
    let submissions = s
        .store
        .submission_counts()
        .await?
        .into_iter()
        .map(|c| (c.state.code(), c.count))
        .collect();
    let view = StatusView {
        host,
        now: now_unix(),
        submissions,
        king: load_king(&s.store).await?,
        open_rounds: s.store.open_round_count().await?,
        last_weights: s.store.last_weight_submission().await?,
    };
    Ok(Json(view).into_response())
}

pub(crate) async fn king(State(s): State<StatusState>) -> Result<Json<Option<KingView>>, ApiError> {
    Ok(Json(load_king(&s.store).await?))
}

pub(crate) async fn king_history(
    State(s): State<StatusState>,
    p: Params,
) -> Result<Json<Vec<KingEvent>>, ApiError> {
    let limit = p.limit(DEFAULT_KING_HISTORY, MAX_LIMIT)?;
    Ok(Json(s.store.king_history(limit).await?))
}

pub(crate) async fn submissions(
    State(s): State<StatusState>,
    p: Params,
) -> Result<Json<Vec<SubmissionRow>>, ApiError> {
    let filter = SubmissionFilter {
        state: p.state()?,
        hotkey: p.hotkey()?,
        uid: p.uid()?,
        limit: Some(p.limit(DEFAULT_SUBMISSIONS, MAX_LIMIT)?),
    };
    Ok(Json(s.store.submissions(&filter).await?))
}

/// How many of a submission's rounds its answer carries, newest first.
pub(crate) const SUBMISSION_ROUNDS: u32 = 20;

/// A submission with its verdict in every round it ran in.
#[derive(Debug, Serialize)]
pub(crate) struct SubmissionView {
    #[serde(flatten)]
    pub submission: SubmissionRow,
    pub rounds: Vec<SubmissionRound>,
}

/// One round of a submission: the round's state and the submission's row in it (outcome,
/// score, noise, lead, the report explaining the verdict), and where its log is.
#[derive(Debug, Serialize)]
pub(crate) struct SubmissionRound {
    pub round_id: i64,
    pub state: RoundState,
    pub void_reason: Option<String>,
    /// The contestant whose turn caused the void, if one did (only it was charged).
    pub void_cause: Option<String>,
    pub opened_at: i64,
    pub closed_at: Option<i64>,
    #[serde(flatten)]
    pub contestant: ContestantRow,
    pub log: String,
}

pub(crate) async fn submission(
    State(s): State<StatusState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = params::path(id)?;
    let sub = s
        .store
        .submission(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound("unknown submission".into()))?;
    let rounds = s.store.rounds_of(&id, SUBMISSION_ROUNDS).await?;
    if html::wants_html(&headers) {
        return Ok(html::submission_page(&sub, &rounds));
    }
    let rounds = rounds
        .into_iter()
        .filter_map(|r| {
            let contestant = r.contestants.into_iter().find(|c| c.submission_id == id)?;
            Some(SubmissionRound {
                log: log_path(r.id, &contestant.submission_id),
                round_id: r.id,
                state: r.state,
                void_reason: r.void_reason,
                void_cause: r.void_cause,
                opened_at: r.opened_at,
                closed_at: r.closed_at,
                contestant,
            })
        })
        .collect();
    Ok(negotiated(Json(SubmissionView {
        submission: sub,
        rounds,
    })))
}

pub(crate) async fn rounds(
    State(s): State<StatusState>,
    p: Params,
) -> Result<Json<Vec<RoundView>>, ApiError> {
    let limit = p.limit(DEFAULT_ROUNDS, MAX_LIMIT)?;
    let snap = s.snapshot();
    let rounds = s.store.recent_rounds(limit).await?;
    Ok(Json(
        rounds
            .into_iter()
            .map(|r| RoundView::new(r, &snap))
            .collect(),
    ))
}

pub(crate) async fn round(
    State(s): State<StatusState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = params::round_id(&params::path(id)?)?;
    let round = s
        .store
        .round(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("round {id} not found")))?;
    let snap = s.snapshot();
    if html::wants_html(&headers) {
        return Ok(html::round_page(&round, &snap));
    }
    Ok(negotiated(Json(RoundView::new(round, &snap))))
}

/// Where `/rounds/{id}/logs/{label}` serves a container log.
pub(crate) fn log_path(round: i64, label: &str) -> String {
    format!("/rounds/{round}/logs/{label}")
}

/// The JSON side of an address that also serves a page: caches must key on `Accept`.
fn negotiated(json: impl IntoResponse) -> Response {
    ([(header::VARY, "Accept")], json).into_response()
}

/// A container log as `text/plain`; `nosniff` and a sandboxing CSP keep a browser from
/// treating a miner's log as a page.
pub(crate) async fn round_log(
    State(s): State<StatusState>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (id, label) = params::path(p)?;
    let id = params::round_id(&id)?;
    let label = params::log_label(&label)?.to_owned();
    let Some(source) = &s.logs else {
        return Err(ApiError::Unavailable(
            "container logs are not available here",
        ));
    };
    match source.round_log(id, label.clone()).await {
        Ok(Some(bytes)) => Ok((
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::CONTENT_SECURITY_POLICY, "sandbox"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            String::from_utf8_lossy(&bytes).into_owned(),
        )
            .into_response()),
        Ok(None) => Err(ApiError::NotFound(format!(
            "no log `{label}` for round {id}"
        ))),
        Err(e) => Err(ApiError::Logs(e)),
    }
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}
