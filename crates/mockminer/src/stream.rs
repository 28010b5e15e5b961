//! One streamed chat completion: generation, framing as server-sent events, and pacing.
//!
//! Times are absolute from the moment the request arrived (first content chunk at
//! `ttft`, then one token every `itl`), so scheduling jitter never accumulates. Fault modes
//! change what is generated, what is claimed, or how the bytes are framed and paced.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::fault::Fault;
use crate::model::{Step, EOS};
use crate::server::AppState;
use crate::timeline::FrameKind;
use crate::wire::{self, Chunk, ChunkChoice, Delta, Logprobs, TokenLogprob, Usage};

/// Everything decided before the first byte is sent.
pub(crate) struct StreamPlan {
    pub id: String,
    pub created: u64,
    pub steps: Arc<Vec<Step>>,
    pub prompt_tokens: usize,
    pub include_usage: bool,
    pub logprobs: bool,
    pub top_logprobs: usize,
    /// This request's TTFT and inter-token time (`MockConfig::speed_jitter` applied).
    pub ttft: Duration,
    pub itl: Duration,
}

/// Where frames go: the response body, or a buffer when bursting.
struct Sink<'a> {
    tx: &'a mpsc::Sender<(Bytes, FrameKind)>,
    burst: Option<Vec<u8>>,
}

impl Sink<'_> {
    /// Sends one frame; `false` when the client has gone away.
    async fn send(&mut self, kind: FrameKind, bytes: Vec<u8>) -> bool {
        if let Some(buf) = self.burst.as_mut() {
            buf.extend_from_slice(&bytes);
            return true;
        }
        self.tx.send((Bytes::from(bytes), kind)).await.is_ok()
    }

    async fn flush_burst(&mut self) -> bool {
        match self.burst.take() {
            Some(buf) => self.send(FrameKind::Content, buf).await,
            None => true,
        }
    }
}

pub(crate) async fn pace(
    state: Arc<AppState>,
    plan: StreamPlan,
    tx: mpsc::Sender<(Bytes, FrameKind)>,
    received: Instant,
) {
    let cfg = &state.cfg;
    let fault = cfg.fault;
    let mut sink = Sink {
        tx: &tx,
        burst: (fault == Some(Fault::Burst)).then(Vec::new),
    };
    let eol: &[u8] = if cfg.crlf { b"\r\n" } else { b"\n" };
    let frame = |json: Vec<u8>| -> Vec<u8> {
        let mut out = Vec::with_capacity(json.len() + 10);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&json);
        out.extend_from_slice(eol);
        out.extend_from_slice(eol);
        out
    };
    let chunk = |choices: Vec<ChunkChoice>, usage: Option<Usage>| -> Vec<u8> {
        let c = Chunk {
            id: &plan.id,
            object: "chat.completion.chunk",
            created: plan.created,
            model: &cfg.model_name,
            choices,
            usage,
        };
        frame(serde_json::to_vec(&c).unwrap_or_default())
    };

    // Role first, as soon as the request is accepted: the harness must not mistake it for
    // the first token.
    let role = chunk(
        vec![ChunkChoice {
            index: 0,
            delta: Delta {
                role: Some("assistant"),
                content: Some(String::new()),
            },
            logprobs: None,
            finish_reason: None,
        }],
        None,
    );
    if !sink.send(FrameKind::Role, role).await {
        return;
    }

    if fault == Some(Fault::LoneSpace) && plan.steps.first().is_some_and(|s| s.token != EOS) {
        let space = chunk(
            vec![ChunkChoice {
                index: 0,
                delta: Delta {
                    role: None,
                    content: Some(" ".into()),
                },
                logprobs: plan.logprobs.then(|| Logprobs {
                    content: vec![TokenLogprob::text_only(" ", -0.01)],
                }),
                finish_reason: None,
            }],
            None,
        );
        if !sink.send(FrameKind::Content, space).await {
            return;
        }
    }
    let ended_on_eos = plan.steps.last().is_some_and(|s| s.token == EOS);
    let mut visible: Vec<&Step> = plan.steps.iter().filter(|s| s.token != EOS).collect();
    let mut truncated = false;
    if let Some(Fault::Truncate(n)) = fault {
        truncated = visible.len() > n;
        visible.truncate(n);
    }
    let endless = fault == Some(Fault::Endless) && !visible.is_empty();
    let per_chunk = cfg.tokens_per_chunk.max(1);
    let n_chunks = visible.len().div_ceil(per_chunk);
    let mut extra = Duration::ZERO;
    let mut k = 0usize;
    let mut position = 0usize;
    while endless || k < n_chunks {
        let start = (k * per_chunk) % visible.len().max(1);
        let group: Vec<&Step> = if endless {
            (0..per_chunk)
                .map(|i| visible[(start + i) % visible.len()])
                .collect()
        } else {
            visible[start..(start + per_chunk).min(visible.len())].to_vec()
        };
        let last_token = (k + 1) * per_chunk - 1;
        let due = received + plan.ttft + plan.itl * last_token as u32 + extra;
        if sink.burst.is_none() {
            tokio::time::sleep_until(due).await;
        } else if !endless && k + 1 == n_chunks {
            // Bursting: the last chunk is due when honest pacing would have finished.
            tokio::time::sleep_until(due).await;
        }
        if cfg.keepalive
            && !sink
                .send(FrameKind::Comment, [b": keep-alive", eol, eol].concat())
                .await
        {
            return;
        }
        let is_last = !endless && k + 1 == n_chunks;
        // With the EOS entry, the finish reason comes in a chunk of its own, below.
        let eos_chunk = is_last && ended_on_eos && !truncated && cfg.eos_entry;
        let finish = if is_last && !eos_chunk && fault != Some(Fault::NoFinishReason) {
            Some(wire::finish_reason(ended_on_eos.then_some(EOS), truncated))
        } else {
            None
        };
        // With `lone-space`, the very first token loses the space already sent.
        let strip_first = fault == Some(Fault::LoneSpace) && position == 0;
        let content: String = group
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let text = wire::token_text(&state.model, s.token);
                if strip_first && i == 0 {
                    text.trim_start().to_string()
                } else {
                    text
                }
            })
            .collect();
        let logprobs = (plan.logprobs && fault != Some(Fault::NoLogprobs)).then(|| Logprobs {
            content: group
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let claimed = claimed_logprob(fault, s.logprob, position + i);
                    let top = &s.top[..s.top.len().min(plan.top_logprobs)];
                    let mut entry = TokenLogprob::new(&state.model, s.token, claimed, top);
                    if cfg.token_ids {
                        entry.token = format!("token_id:{}", s.token);
                    }
                    if strip_first && i == 0 {
                        entry = TokenLogprob::text_only(entry.token.trim_start(), claimed);
                    }
                    entry
                })
                .collect(),
        });
        position += group.len();
        let bytes = chunk(
            vec![ChunkChoice {
                index: 0,
                delta: Delta {
                    role: None,
                    content: Some(content),
                },
                logprobs,
                finish_reason: finish,
            }],
            None,
        );
        if !sink.send(FrameKind::Content, bytes).await {
            return;
        }
        // The broken frame a fault injects after this chunk, if any.
        let injected: Option<Vec<u8>> = match (fault, k) {
            (Some(Fault::OversizedChunk(size)), 0) => {
                let mut big =
                    b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"".to_vec();
                big.resize(big.len() + size, b'x');
                big.extend_from_slice(b"\"}}]}");
                big.extend_from_slice(eol);
                big.extend_from_slice(eol);
                Some(big)
            }
            (Some(Fault::InvalidUtf8), 1) => Some(frame(
                b"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\xff\xfe\"}}]}".to_vec(),
            )),
            (Some(Fault::MalformedJson), 1) => {
                Some(frame(b"{\"choices\":[{\"index\":0,\"delta\":".to_vec()))
            }
            (Some(Fault::ErrorMidStream), 1) => {
                let err = wire::ErrorBody {
                    object: "error",
                    message: "CUDA error: an illegal memory access was encountered".into(),
                    kind: "InternalServerError",
                    code: 500,
                };
                let body = serde_json::json!({ "error": err });
                let _ = sink
                    .send(FrameKind::Other, frame(body.to_string().into_bytes()))
                    .await;
                let _ = sink
                    .send(FrameKind::Done, [b"data: [DONE]", eol, eol].concat())
                    .await;
                return;
            }
            (Some(Fault::Stall(d)), 2) => {
                extra += d;
                None
            }
            (Some(Fault::Drip(d)), k) if k >= 1 => {
                extra += d;
                None
            }
            (Some(Fault::Bloat(n)), _) => {
                let empty = chunk(
                    vec![ChunkChoice {
                        index: 0,
                        delta: Delta {
                            role: None,
                            content: Some(String::new()),
                        },
                        logprobs: None,
                        finish_reason: None,
                    }],
                    None,
                );
                Some(empty.repeat(n))
            }
            _ => None,
        };
        if let Some(bytes) = injected {
            if !sink.send(FrameKind::Other, bytes).await {
                return;
            }
        }
        k += 1;
    }
    let eos = plan.steps.last().filter(|s| s.token == EOS);
    if let (Some(eos), true, false, false) = (eos, cfg.eos_entry, truncated, endless) {
        if n_chunks > 0 {
            let logprobs = (plan.logprobs && fault != Some(Fault::NoLogprobs)).then(|| {
                let top = &eos.top[..eos.top.len().min(plan.top_logprobs)];
                let mut entry = TokenLogprob::new(&state.model, EOS, eos.logprob, top);
                if cfg.token_ids {
                    entry.token = format!("token_id:{EOS}");
                }
                Logprobs {
                    content: vec![entry],
                }
            });
            let finish = (fault != Some(Fault::NoFinishReason)).then_some("stop");
            let bytes = chunk(
                vec![ChunkChoice {
                    index: 0,
                    delta: Delta {
                        role: None,
                        content: Some(String::new()),
                    },
                    logprobs,
                    finish_reason: finish,
                }],
                None,
            );
            if !sink.send(FrameKind::Other, bytes).await {
                return;
            }
        }
    }
    if n_chunks == 0 {
        // Nothing to say: still end the stream properly.
        let finish = (fault != Some(Fault::NoFinishReason))
            .then(|| wire::finish_reason(ended_on_eos.then_some(EOS), truncated));
        let bytes = chunk(
            vec![ChunkChoice {
                index: 0,
                delta: Delta::default(),
                logprobs: None,
                finish_reason: finish,
            }],
            None,
        );
        if !sink.send(FrameKind::Content, bytes).await {
            return;
        }
    }
    if plan.include_usage {
        let usage = Usage {
            prompt_tokens: plan.prompt_tokens,
            completion_tokens: plan.steps.len(),
            total_tokens: plan.prompt_tokens + plan.steps.len(),
        };
        if !sink
            .send(FrameKind::Usage, chunk(Vec::new(), Some(usage)))
            .await
        {
            return;
        }
    }
    if fault != Some(Fault::NoDone)
        && !sink
            .send(FrameKind::Done, [b"data: [DONE]", eol, eol].concat())
            .await
    {
        return;
    }
    sink.flush_burst().await;
}

/// The logprob a server claims for a token, bent by the fault modes that lie about it.
fn claimed_logprob(fault: Option<Fault>, truth: f64, position: usize) -> f64 {
    match fault {
        Some(Fault::FakeLogprobs) => 0.0,
        Some(Fault::Jitter(sigma)) => {
            let u = crate::model::unit_hash(position as u64 ^ 0x5eed);
            truth + sigma * (2.0 * u - 1.0)
        }
        _ => truth,
    }
}
