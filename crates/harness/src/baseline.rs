//! What the pinned baseline tells the gate (SPEC §10): its tokenisation of any output, and
//! teacher forcing — the baseline's logprobs and top-k at every position of a contestant's
//! output, from one `prompt_logprobs` request over the prompt continued by that output.
//!
//! Every failure here is the baseline's (or ours), never a contestant's: it surfaces as a
//! `BaselineError`, which voids the round rather than disqualifying anyone.

use std::collections::HashMap;

use cacheon_core::gate::{ForcedPosition, Overlong, RequestEvidence, TokenId};
use cacheon_core::prompts::{ChatMessage, Prompt};
use futures_util::{stream, StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::client::Target;
use crate::config::HarnessConfig;
use crate::metrics::Accounting;
use crate::stream::StreamRecord;
use crate::wire::{ForcedCompletion, Tokenized};

/// Teacher-forcing and tokenisation requests in flight at once.
const PARALLEL: usize = 8;
/// Largest baseline answer read (`prompt_logprobs` of a 32k-token context is a few MiB).
const MAX_ANSWER: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("baseline request to {path} failed: {reason}")]
    Transport { path: &'static str, reason: String },
    #[error("baseline answered {path} with HTTP {status}: {body}")]
    Status {
        path: &'static str,
        status: u16,
        body: String,
    },
    #[error("baseline's {path} answer is not what vLLM sends: {reason}")]
    Decode { path: &'static str, reason: String },
    #[error("baseline is inconsistent for prompt {prompt_index}: {reason}")]
    Inconsistent { prompt_index: usize, reason: String },
    #[error("the baseline's own stream for prompt {prompt_index} failed ({reason}); no reference")]
    NoReference { prompt_index: usize, reason: String },
}

/// The baseline server as the gate's oracle.
#[derive(Debug, Clone)]
pub struct Baseline {
    target: Target,
    model: String,
    top_k: u8,
    timeout: std::time::Duration,
    output_limit: usize,
    stop_tokens: Vec<String>,
}

/// The tokens a server's text adds after the generation prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Continuation {
    pub prompt_len: usize,
    pub tokens: Vec<TokenId>,
}

impl Baseline {
    pub fn new(target: Target, cfg: &HarnessConfig) -> Self {
        Self {
            target,
            model: cfg.model.clone(),
            top_k: cfg.top_logprobs,
            timeout: cfg.baseline_timeout,
            output_limit: cfg.output_limit(),
            stop_tokens: cfg.stop_tokens.clone(),
        }
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &'static str,
        body: serde_json::Value,
    ) -> Result<T, BaselineError> {
        let transport = |e: reqwest::Error| BaselineError::Transport {
            path,
            reason: crate::error_chain(&e),
        };
        // `timeout` bounds the whole exchange, body included.
        let mut resp = self
            .target
            .client
            .post(self.target.url(path))
            .timeout(self.timeout)
            .json(&body)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            bytes.extend_from_slice(&chunk);
            if bytes.len() > MAX_ANSWER {
                return Err(BaselineError::Decode {
                    path,
                    reason: format!("answer larger than {MAX_ANSWER} bytes"),
                });
            }
        }
        if !status.is_success() {
            return Err(BaselineError::Status {
                path,
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned(),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| BaselineError::Decode {
            path,
            reason: e.to_string(),
        })
    }

    /// Token ids of messages through the chat template.
    pub async fn tokenize_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        continue_final_message: bool,
    ) -> Result<Vec<TokenId>, BaselineError> {
        let body = json!({
            "model": self.model,
            "messages": messages,
            "add_generation_prompt": add_generation_prompt,
            "continue_final_message": continue_final_message,
        });
        Ok(self.post::<Tokenized>("/tokenize", body).await?.tokens)
    }

    /// The tokens `text` adds as the assistant's answer to `prompt`.
    pub async fn continuation(
        &self,
        prompt: &Prompt,
        prefix: &[TokenId],
        text: &str,
    ) -> Result<Continuation, BaselineError> {
        let full = self
            .tokenize_chat(&with_answer(prompt, text), false, true)
            .await?;
        // Normally the generation prompt is an exact prefix. A tokenizer may merge across
        // the boundary (an answer starting with newlines, say); the merged token then
        // counts as output, which costs at most one position of agreement.
        let prompt_len = full.iter().zip(prefix).take_while(|(a, b)| a == b).count();
        Ok(Continuation {
            prompt_len,
            tokens: full[prompt_len..].to_vec(),
        })
    }

    /// Teacher forcing: the baseline's view of every output position, and how far
    /// end-of-sequence trails its top-1 right after the output (see `RequestEvidence`).
    pub async fn teacher_force(
        &self,
        prompt: &Prompt,
        text: &str,
        continuation: &Continuation,
    ) -> Result<(Vec<ForcedPosition>, Option<f64>), BaselineError> {
        let path = "/v1/chat/completions";
        let body = json!({
            "model": self.model,
            "messages": with_answer(prompt, text),
            "add_generation_prompt": false,
            "continue_final_message": true,
            "prompt_logprobs": self.top_k,
            "logprobs": true,
            "top_logprobs": self.top_k,
            "max_tokens": 1,
            "temperature": 0,
            "stream": false,
        });
        let forced: ForcedCompletion = self.post(path, body).await?;
        let inconsistent = |reason: String| BaselineError::Inconsistent {
            prompt_index: prompt.index,
            reason,
        };
        let entries = forced
            .prompt_logprobs
            .as_ref()
            .ok_or_else(|| BaselineError::Decode {
                path,
                reason: "no prompt_logprobs in the answer".into(),
            })?;
        let expected = continuation.prompt_len + continuation.tokens.len();
        if entries.len() != expected {
            return Err(inconsistent(format!(
                "{} prompt_logprobs entries for {expected} tokens",
                entries.len()
            )));
        }
        let mut positions = Vec::with_capacity(continuation.tokens.len());
        for (offset, &token) in continuation.tokens.iter().enumerate() {
            let at = continuation.prompt_len + offset;
            let Some(Some(entry)) = entries.get(at) else {
                return Err(inconsistent(format!("no logprobs at position {at}")));
            };
            let mut top = Vec::with_capacity(entry.len());
            let mut own = None;
            for (id, lp) in entry {
                let id: TokenId = id.parse().map_err(|_| BaselineError::Decode {
                    path,
                    reason: format!("token id `{id}` is not a number"),
                })?;
                if id == token {
                    own = Some(lp);
                }
                top.push((id, lp.logprob));
            }
            let own = own.ok_or_else(|| {
                inconsistent(format!("position {at} lacks its own token {token}"))
            })?;
            positions.push(ForcedPosition {
                token,
                text: own.decoded_token.clone().unwrap_or_default(),
                logprob: own.logprob,
                top,
            });
        }
        Ok((positions, self.stop_gap(&forced)))
    }

    /// From the one greedy token after the output: 0 when the baseline itself stopped there,
    /// else how far a stop token trails the top-1 among the candidates, if it is among them.
    fn stop_gap(&self, forced: &ForcedCompletion) -> Option<f64> {
        let choice = forced.choices.first()?;
        if choice.finish_reason.as_deref() == Some("stop") {
            return Some(0.0);
        }
        let first = choice.logprobs.as_ref()?.content.as_ref()?.first()?;
        let best = first
            .top_logprobs
            .iter()
            .map(|t| t.logprob)
            .fold(first.logprob, f64::max);
        first
            .top_logprobs
            .iter()
            .filter(|t| self.stop_tokens.contains(&t.token))
            .map(|t| best - t.logprob)
            .reduce(f64::min)
    }
}

fn with_answer(prompt: &Prompt, text: &str) -> Vec<ChatMessage> {
    let mut messages = prompt.messages.clone();
    messages.push(ChatMessage {
        role: "assistant".into(),
        content: text.to_string(),
    });
    messages
}

/// The baseline's greedy output per scored prompt: the gate's reference and the token
/// counts contestants are credited up to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reference {
    pub tokens: HashMap<usize, Vec<TokenId>>,
    /// Generation-prompt tokens per prompt, reused for every contestant.
    pub prefixes: HashMap<usize, Vec<TokenId>>,
}

impl Reference {
    pub fn counts(&self) -> HashMap<usize, usize> {
        self.tokens.iter().map(|(&i, t)| (i, t.len())).collect()
    }
}

/// Builds the reference from the baseline's own run of the same prompts.
pub async fn reference(
    baseline: &Baseline,
    prompts: &HashMap<usize, Prompt>,
    records: &[&StreamRecord],
) -> Result<Reference, BaselineError> {
    let results: Vec<(usize, Vec<TokenId>, Vec<TokenId>)> = stream::iter(records.iter().copied())
        .map(|r| async move {
            if let Some(fault) = r.fault {
                return Err(BaselineError::NoReference {
                    prompt_index: r.prompt_index,
                    reason: r.detail.clone().unwrap_or_else(|| format!("{fault:?}")),
                });
            }
            let prompt = lookup(prompts, r.prompt_index)?;
            let prefix = baseline
                .tokenize_chat(&prompt.messages, true, false)
                .await?;
            let c = baseline.continuation(prompt, &prefix, &r.text).await?;
            Ok((r.prompt_index, prefix, c.tokens))
        })
        .buffer_unordered(PARALLEL)
        .try_collect()
        .await?;
    let mut out = Reference::default();
    for (i, prefix, tokens) in results {
        out.prefixes.insert(i, prefix);
        out.tokens.insert(i, tokens);
    }
    Ok(out)
}

fn lookup(prompts: &HashMap<usize, Prompt>, index: usize) -> Result<&Prompt, BaselineError> {
    prompts.get(&index).ok_or(BaselineError::Inconsistent {
        prompt_index: index,
        reason: "no such prompt in the round".into(),
    })
}

/// The gate's evidence for each scored request of a contestant, and the accounting its
/// metrics need (token counts, credit caps, first-token sizes; `failed` is filled in by the
/// caller once the gate has judged).
pub async fn evidence(
    baseline: &Baseline,
    prompts: &HashMap<usize, Prompt>,
    reference: &Reference,
    records: &[&StreamRecord],
) -> Result<(Vec<RequestEvidence>, Accounting), BaselineError> {
    let mut gathered: Vec<(RequestEvidence, usize, usize)> = stream::iter(records.iter().copied())
        .map(|r| async move {
            let prompt = lookup(prompts, r.prompt_index)?;
            let missing = || BaselineError::Inconsistent {
                prompt_index: r.prompt_index,
                reason: "no reference output".into(),
            };
            let prefix = reference
                .prefixes
                .get(&r.prompt_index)
                .ok_or_else(missing)?;
            let reference_tokens = reference.tokens.get(&r.prompt_index).ok_or_else(missing)?;
            let c = baseline.continuation(prompt, prefix, &r.text).await?;
            let count = c.tokens.len();
            let mut e = RequestEvidence {
                prompt_index: r.prompt_index,
                stream_fault: r.fault,
                forced: Vec::new(),
                streamed_logprobs: r.logprobs.clone(),
                reference: reference_tokens.clone(),
                stopped: r.finish_reason.as_deref() == Some("stop"),
                stop_gap: None,
                overlong: None,
            };
            if count > baseline.output_limit {
                // Longer than asked for: the contestant's fault, and teacher-forcing it could
                // overflow the baseline's context and void the round for everyone.
                e.overlong = Some(Overlong {
                    tokens: count,
                    limit: baseline.output_limit,
                });
                return Ok::<_, BaselineError>((e, count, 1));
            }
            let (forced, stop_gap) = baseline.teacher_force(prompt, &r.text, &c).await?;
            let first_bytes = forced.first().map_or(1, |f| f.text.len().max(1));
            e.forced = forced;
            e.stop_gap = stop_gap;
            Ok((e, count, first_bytes))
        })
        .buffer_unordered(PARALLEL)
        .try_collect()
        .await?;
    gathered.sort_by_key(|(e, _, _)| e.prompt_index);
    let accounting = Accounting {
        counts: gathered
            .iter()
            .map(|(e, n, _)| (e.prompt_index, *n))
            .collect(),
        caps: Some(reference.counts()),
        failed: Default::default(),
        first_token_bytes: gathered
            .iter()
            .map(|(e, _, b)| (e.prompt_index, *b))
            .collect(),
    };
    Ok((
        gathered.into_iter().map(|(e, _, _)| e).collect(),
        accounting,
    ))
}
