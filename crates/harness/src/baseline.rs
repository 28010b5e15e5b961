//! What the pinned baseline tells the gate (SPEC §10): its tokenisation of any output, and
//! teacher forcing — the baseline's logprobs and top-k at every position of a contestant's
//! output, from one `prompt_logprobs` request over the prompt continued by that output.
//!
//! Every failure here is the baseline's (or ours), never a contestant's: it surfaces as a
//! `BaselineError`, which voids the round rather than disqualifying anyone.

use std::collections::HashMap;

use cacheon_core::gate::{ForcedPosition, RequestEvidence, TokenId};
use cacheon_core::prompts::{ChatMessage, Prompt};
use futures_util::{stream, StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::client::Target;
use crate::stream::StreamRecord;
use crate::wire::{ForcedCompletion, Tokenized};

/// Teacher-forcing and tokenisation requests in flight at once.
const PARALLEL: usize = 8;

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
}

/// The tokens a server's text adds after the generation prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Continuation {
    pub prompt_len: usize,
    pub tokens: Vec<TokenId>,
}

impl Baseline {
    pub fn new(target: Target, model: impl Into<String>, top_k: u8) -> Self {
        Self {
            target,
            model: model.into(),
            top_k,
        }
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &'static str,
        body: serde_json::Value,
    ) -> Result<T, BaselineError> {
        let resp = self
            .target
            .client
            .post(self.target.url(path))
            .json(&body)
            .send()
            .await
            .map_err(|e| BaselineError::Transport {
                path,
                reason: crate::error_chain(&e),
            })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| BaselineError::Transport {
            path,
            reason: crate::error_chain(&e),
        })?;
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

    /// Teacher forcing: the baseline's view of every output position, and whether it would
    /// end the answer right after it.
    pub async fn teacher_force(
        &self,
        prompt: &Prompt,
        text: &str,
        continuation: &Continuation,
    ) -> Result<(Vec<ForcedPosition>, bool), BaselineError> {
        let path = "/v1/chat/completions";
        let body = json!({
            "model": self.model,
            "messages": with_answer(prompt, text),
            "add_generation_prompt": false,
            "continue_final_message": true,
            "prompt_logprobs": self.top_k,
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
        let would_stop = forced
            .choices
            .first()
            .and_then(|c| c.finish_reason.as_deref())
            == Some("stop");
        Ok((positions, would_stop))
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

/// The gate's evidence for each scored request of a contestant, and its validator-side
/// token counts.
pub async fn evidence(
    baseline: &Baseline,
    prompts: &HashMap<usize, Prompt>,
    reference: &Reference,
    records: &[&StreamRecord],
) -> Result<(Vec<RequestEvidence>, HashMap<usize, usize>), BaselineError> {
    let mut gathered: Vec<(RequestEvidence, usize)> = stream::iter(records.iter().copied())
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
            let (forced, would_stop) = baseline.teacher_force(prompt, &r.text, &c).await?;
            let count = c.tokens.len();
            Ok::<_, BaselineError>((
                RequestEvidence {
                    prompt_index: r.prompt_index,
                    stream_fault: r.fault,
                    forced,
                    streamed_logprobs: r.logprobs.clone(),
                    reference: reference_tokens.clone(),
                    stopped: r.finish_reason.as_deref() == Some("stop"),
                    baseline_would_stop: would_stop,
                },
                count,
            ))
        })
        .buffer_unordered(PARALLEL)
        .try_collect()
        .await?;
    gathered.sort_by_key(|(e, _)| e.prompt_index);
    let counts = gathered.iter().map(|(e, n)| (e.prompt_index, *n)).collect();
    Ok((gathered.into_iter().map(|(e, _)| e).collect(), counts))
}
