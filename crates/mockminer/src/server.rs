//! The HTTP face of the mock: the endpoints vLLM's OpenAI server exposes, on axum.
//!
//! `/health`, `/v1/models`, `/tokenize` and `/v1/chat/completions` (streamed with
//! logprobs and usage, or whole with vLLM's `prompt_logprobs` for teacher forcing). An
//! honest mock with no fault agrees with any other honest mock token for token, so the same
//! binary serves as miner and as baseline in tests.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use crate::chat::{self, ChatRequest, TokenizeRequest};
use crate::completions::{CompletionPrompt, CompletionRequest};
use crate::fault::Fault;
use crate::model::{Step, ToyModel, EOS};
use crate::stream::{self, StreamPlan};
use crate::timeline::{FrameKind, Timeline};
use crate::wire::{self, Choice, Completion, ErrorBody, Logprobs, Message, TokenLogprob, Usage};

/// The model name vLLM is started with (`--served-model-name`).
pub const MODEL_NAME: &str = "Qwen2.5-72B-Instruct";

#[derive(Debug, Clone)]
pub struct MockConfig {
    pub model_name: String,
    /// Time from request to the first content chunk.
    pub ttft: Duration,
    /// Time between tokens.
    pub itl: Duration,
    pub tokens_per_chunk: usize,
    /// Requests generated at once; more wait their turn (queueing shows in TTFT).
    pub max_concurrency: usize,
    pub fault: Option<Fault>,
    /// Send `: keep-alive` comment lines between chunks.
    pub keepalive: bool,
    /// As vLLM does: after the last token, a chunk with empty content, the finish reason and
    /// the logprob entry of the end-of-sequence token that stopped generation.
    pub eos_entry: bool,
    /// As vLLM with `--return-tokens-as-token-ids`: logprob entries name `token_id:N`.
    pub token_ids: bool,
    /// End lines with CRLF instead of LF.
    pub crlf: bool,
    pub max_model_len: usize,
    /// Coefficient of variation of every request's TTFT and inter-token time (log-normal
    /// factors with mean 1, drawn from the request's number by a fixed hash): a server as
    /// noisy as real ones, reproducibly.
    pub speed_jitter: f64,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            model_name: MODEL_NAME.to_string(),
            ttft: Duration::from_millis(50),
            itl: Duration::from_millis(10),
            tokens_per_chunk: 1,
            max_concurrency: 256,
            fault: None,
            keepalive: false,
            eos_entry: false,
            token_ids: false,
            crlf: false,
            max_model_len: 32_768,
            speed_jitter: 0.0,
        }
    }
}

pub(crate) struct AppState {
    pub cfg: MockConfig,
    pub model: ToyModel,
    pub permits: Arc<Semaphore>,
    pub timeline: Option<Arc<Timeline>>,
    next_id: AtomicU64,
    /// Generations by (prompt, max_tokens): the model is deterministic, and a benchmark
    /// must not measure the mock's own arithmetic.
    generated: Mutex<GenerationCache>,
    /// When the router was built (what `ready-after` counts from).
    pub(crate) started: tokio::time::Instant,
}

/// Generations by (hash of the prompt's tokens, max_tokens).
type GenerationCache = HashMap<(u64, usize), Arc<Vec<Step>>>;

/// Generations kept; the cache is simply emptied when full.
const GENERATION_CACHE: usize = 4096;

/// The axum application; `timeline` records server-side instants (benchmarks only).
pub fn router(cfg: MockConfig, timeline: Option<Arc<Timeline>>) -> Router {
    let state = Arc::new(AppState {
        permits: Arc::new(Semaphore::new(cfg.max_concurrency.max(1))),
        cfg,
        model: ToyModel::new(),
        timeline,
        next_id: AtomicU64::new(0),
        generated: Mutex::new(HashMap::new()),
        started: tokio::time::Instant::now(),
    });
    Router::new()
        .route("/health", get(crate::health::health))
        .route("/v1/models", get(models))
        .route("/tokenize", post(tokenize))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .layer(axum::middleware::from_fn(stamp_arrival))
        .with_state(state)
}

/// When a request's headers were parsed, before its body is read: the start of the mock's
/// own TTFT.
#[derive(Debug, Clone, Copy)]
struct Arrived(Instant);

async fn stamp_arrival(mut req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    req.extensions_mut().insert(Arrived(Instant::now()));
    next.run(req).await
}

/// Serves until `shutdown` resolves. Nagle is off: tokens are small writes that must not wait.
pub async fn serve(
    listener: TcpListener,
    cfg: MockConfig,
    timeline: Option<Arc<Timeline>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(cfg, timeline))
        .with_graceful_shutdown(shutdown)
        .await
}

/// A mock serving on a loopback port of the current runtime, stopped when dropped.
pub struct RunningMock {
    pub addr: SocketAddr,
    pub timeline: Arc<Timeline>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl RunningMock {
    pub async fn start(cfg: MockConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let timeline = Arc::new(Timeline::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = serve(listener, cfg, Some(timeline.clone()), async {
            let _ = stopped.await;
        });
        tokio::spawn(async move {
            if let Err(e) = served.await {
                tracing::warn!("mock miner stopped: {e}");
            }
        });
        Ok(Self {
            addr,
            timeline,
            stop: Some(stop),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for RunningMock {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn error(status: StatusCode, kind: &'static str, message: String) -> Response {
    let body = ErrorBody {
        object: "error",
        message,
        kind,
        code: status.as_u16(),
    };
    (status, Json(body)).into_response()
}

async fn models(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(json!({
        "object": "list",
        "data": [{
            "id": state.cfg.model_name,
            "object": "model",
            "owned_by": "cacheon-mock",
            "max_model_len": state.cfg.max_model_len,
        }]
    }))
}

async fn tokenize(
    State(state): State<Arc<AppState>>,
    body: Result<Json<TokenizeRequest>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, "BadRequestError", e.body_text()),
    };
    let (tokens, want_strs) = match req {
        TokenizeRequest::Chat {
            messages,
            add_generation_prompt,
            continue_final_message,
            return_token_strs,
        } => (
            chat::render(
                &state.model,
                &messages,
                add_generation_prompt,
                continue_final_message,
            ),
            return_token_strs,
        ),
        TokenizeRequest::Text {
            prompt,
            return_token_strs,
        } => (chat::render_text(&state.model, &prompt), return_token_strs),
    };
    let mut body = json!({
        "count": tokens.len(),
        "max_model_len": state.cfg.max_model_len,
        "tokens": tokens.iter().map(|t| t.id).collect::<Vec<_>>(),
    });
    if want_strs {
        body["token_strs"] = json!(tokens.iter().map(|t| t.text.as_str()).collect::<Vec<_>>());
    }
    Json(body).into_response()
}

async fn chat_completions(
    State(state): State<Arc<AppState>>,
    arrived: Option<axum::Extension<Arrived>>,
    body: Result<Json<ChatRequest>, JsonRejection>,
) -> Response {
    let received = arrived.map_or_else(Instant::now, |a| a.0 .0);
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, "BadRequestError", e.body_text()),
    };
    if let Some(refused) = unknown_model(&state, &req.model) {
        return refused;
    }
    if state.cfg.fault == Some(Fault::Http500) {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "engine died".into(),
        );
    }
    let prompt = chat::render(
        &state.model,
        &req.messages,
        req.add_generation_prompt,
        req.continue_final_message,
    );
    if prompt.len() > state.cfg.max_model_len {
        return error(
            StatusCode::BAD_REQUEST,
            "BadRequestError",
            format!(
                "This model's maximum context length is {} tokens; the prompt has {}.",
                state.cfg.max_model_len,
                prompt.len()
            ),
        );
    }
    let max_tokens = req.max_completion_tokens.or(req.max_tokens).unwrap_or(256) as usize;
    let ids: Vec<u32> = prompt.iter().map(|t| t.id).collect();
    let n = state.next_id.fetch_add(1, Ordering::Relaxed);
    let id = format!("chatcmpl-mock-{n}");
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let top_logprobs = usize::from(req.top_logprobs.unwrap_or(0)).min(20);

    let Ok(permit) = state.permits.clone().acquire_owned().await else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "shutting down".into(),
        );
    };
    let steps = cached_generation(&state, &ids, max_tokens);

    if !req.stream {
        drop(permit);
        return whole_completion(
            &state,
            &req,
            &prompt,
            &ids,
            steps,
            &id,
            created,
            top_logprobs,
        );
    }
    if state.cfg.fault == Some(Fault::GarbageSse) {
        drop(permit);
        return sse_response(Body::from(
            "this is not\nan event stream\n\n{\"choices\":[]}\n\n",
        ));
    }
    let jitter = state.cfg.speed_jitter;
    let plan = StreamPlan {
        id,
        created,
        steps,
        prompt_tokens: ids.len(),
        include_usage: req.stream_options.as_ref().is_some_and(|o| o.include_usage),
        logprobs: req.logprobs,
        top_logprobs,
        ttft: state.cfg.ttft.mul_f64(lognormal(jitter, 2 * n)),
        itl: state.cfg.itl.mul_f64(lognormal(jitter, 2 * n + 1)),
    };
    let (tx, rx) = mpsc::channel::<(Bytes, FrameKind)>(64);
    let timeline = state.timeline.clone();
    let response_id = plan.id.clone();
    if let Some(t) = &timeline {
        t.start(&response_id, received);
    }
    let task_state = state.clone();
    tokio::spawn(async move {
        stream::pace(task_state, plan, tx, received).await;
        drop(permit);
    });
    // The send instant is stamped as hyper takes the frame to write it, not when the pacing
    // task queued it: the benchmark compares the harness with the moment bytes left.
    let frames = ReceiverStream::new(rx).map(move |(bytes, kind)| {
        if let Some(t) = &timeline {
            t.stamp(&response_id, kind);
        }
        Ok::<_, std::convert::Infallible>(bytes)
    });
    sse_response(Body::from_stream(frames))
}

/// `POST /v1/completions`: whole answers only (the baseline's teacher forcing).
async fn completions(
    State(state): State<Arc<AppState>>,
    body: Result<Json<CompletionRequest>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, "BadRequestError", e.body_text()),
    };
    if let Some(refused) = unknown_model(&state, &req.model) {
        return refused;
    }
    if req.stream {
        return error(
            StatusCode::BAD_REQUEST,
            "BadRequestError",
            "the mock streams chat completions only".into(),
        );
    }
    let ids: Vec<u32> = match &req.prompt {
        CompletionPrompt::Ids(ids) => ids.clone(),
        CompletionPrompt::Text(text) => chat::render_text(&state.model, text)
            .iter()
            .map(|t| t.id)
            .collect(),
    };
    if ids.is_empty() || ids.len() > state.cfg.max_model_len {
        return error(
            StatusCode::BAD_REQUEST,
            "BadRequestError",
            format!(
                "the prompt has {} tokens; this model takes 1 to {}",
                ids.len(),
                state.cfg.max_model_len
            ),
        );
    }
    let n = state.next_id.fetch_add(1, Ordering::Relaxed);
    let id = format!("cmpl-mock-{n}");
    Json(crate::completions::answer(
        &state.model,
        &state.cfg.model_name,
        &id,
        &ids,
        &req,
    ))
    .into_response()
}

/// vLLM's answer to a request for a model it does not serve.
fn unknown_model(state: &AppState, model: &str) -> Option<Response> {
    (model != state.cfg.model_name).then(|| {
        error(
            StatusCode::NOT_FOUND,
            "NotFoundError",
            format!("The model `{model}` does not exist."),
        )
    })
}

fn sse_response(body: Body) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn cached_generation(state: &AppState, ids: &[u32], max_tokens: usize) -> Arc<Vec<Step>> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ids.hash(&mut h);
    let key = (h.finish(), max_tokens);
    if let Some(hit) = state
        .generated
        .lock()
        .ok()
        .and_then(|c| c.get(&key).cloned())
    {
        return hit;
    }
    let steps = Arc::new(generate(state, ids, max_tokens));
    if let Ok(mut cache) = state.generated.lock() {
        if cache.len() >= GENERATION_CACHE {
            cache.clear();
        }
        cache.insert(key, steps.clone());
    }
    steps
}

/// Generation as the configured fault bends it.
fn generate(state: &AppState, prompt: &[u32], max_tokens: usize) -> Vec<Step> {
    let model = &state.model;
    match state.cfg.fault {
        Some(Fault::WrongAfter(n)) => model.generate_with(prompt, max_tokens, |pos, top| {
            if pos < n {
                top[0].0
            } else {
                // A word far down the distribution: never in the top-5.
                let mut t = 1 + (top[0].0 * 7 + 13) % (model.vocab_len() - 1);
                while top.iter().any(|c| c.0 == t) {
                    t = 1 + t % (model.vocab_len() - 1);
                }
                t
            }
        }),
        Some(Fault::FlipTies(rate)) => model.generate_with(prompt, max_tokens, |pos, top| {
            let near_tie = top.len() > 1 && top[0].1 - top[1].1 < 0.5;
            let draw = crate::model::unit_hash((pos as u64) << 20 ^ u64::from(top[0].0));
            if near_tie && draw < rate {
                top[1].0
            } else {
                top[0].0
            }
        }),
        Some(Fault::Overlong) => model.generate_with(prompt, max_tokens * 4, |_, top| {
            top.iter().find(|c| c.0 != EOS).map_or(1, |c| c.0)
        }),
        Some(Fault::Endless) => model.generate_with(prompt, max_tokens.clamp(1, 64), |_, top| {
            // Never choose to stop.
            top.iter().find(|c| c.0 != EOS).map_or(1, |c| c.0)
        }),
        _ => model.generate(prompt, max_tokens),
    }
}

#[allow(clippy::too_many_arguments)]
fn whole_completion(
    state: &AppState,
    req: &ChatRequest,
    prompt: &[chat::PromptToken],
    ids: &[u32],
    steps: Arc<Vec<Step>>,
    id: &str,
    created: u64,
    top_logprobs: usize,
) -> Response {
    let model = &state.model;
    let content: String = steps
        .iter()
        .filter(|s| s.token != EOS)
        .map(|s| wire::token_text(model, s.token))
        .collect();
    let logprobs = req.logprobs.then(|| Logprobs {
        content: steps
            .iter()
            .filter(|s| s.token != EOS)
            .map(|s| {
                TokenLogprob::new(
                    model,
                    s.token,
                    s.logprob,
                    &s.top[..s.top.len().min(top_logprobs)],
                )
            })
            .collect(),
    });
    let prompt_logprobs = req.prompt_logprobs.map(|k| {
        let texts: Vec<String> = prompt.iter().map(|t| t.text.clone()).collect();
        crate::completions::prompt_logprobs(model, ids, &texts, usize::from(k).min(20))
    });
    let body = Completion {
        id,
        object: "chat.completion",
        created,
        model: &state.cfg.model_name,
        choices: vec![Choice {
            index: 0,
            message: Message {
                role: "assistant",
                content,
            },
            logprobs,
            finish_reason: wire::finish_reason(steps.last().map(|s| s.token), false),
        }],
        usage: Usage {
            prompt_tokens: ids.len(),
            completion_tokens: steps.len(),
            total_tokens: ids.len() + steps.len(),
        },
        prompt_logprobs,
    };
    Json(body).into_response()
}

/// exp(N(−s²/2, s²)) with `s² = ln(1 + cv²)`: mean 1, coefficient of variation `cv`; the
/// normal draw is Box–Muller over two fixed hashes of `key`.
fn lognormal(cv: f64, key: u64) -> f64 {
    if !(cv.is_finite() && cv > 0.0) {
        return 1.0;
    }
    let u1 = crate::model::unit_hash(key.wrapping_mul(2).wrapping_add(0x6a09)).max(1e-12);
    let u2 = crate::model::unit_hash(key.wrapping_mul(2).wrapping_add(0xbb67));
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    let s2 = (1.0 + cv * cv).ln();
    (z * s2.sqrt() - s2 / 2.0).exp().clamp(0.05, 20.0)
}

#[cfg(test)]
mod tests {
    use super::lognormal;

    #[test]
    fn speed_jitter_has_mean_one_and_the_requested_spread() {
        let n = 20_000u64;
        let draws: Vec<f64> = (0..n).map(|k| lognormal(0.2, k)).collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!((mean - 1.0).abs() < 0.01, "{mean}");
        assert!((var.sqrt() / mean - 0.2).abs() < 0.01, "{}", var.sqrt());
        assert_eq!(lognormal(0.0, 7), 1.0);
        assert_eq!(lognormal(0.2, 7), lognormal(0.2, 7));
    }
}
