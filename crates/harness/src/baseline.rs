//! What the pinned baseline tells the gate (SPEC §10): canonical token counts, the tokens a
//! server generated (its stream read against the baseline's vocabulary, `cacheon_core::
//! tokens`), and teacher forcing: the baseline's logprobs and top-k at every position of a
//! contestant's output, from one `prompt_logprobs` request over the generation prompt
//! followed by exactly those token ids.
//!
//! Every failure here is the baseline's (or ours), never a contestant's: it surfaces as a
//! `BaselineError`, which voids the round rather than disqualifying anyone.

use std::collections::HashMap;
use std::sync::Arc;

use cacheon_core::gate::{ForcedPosition, Overlong, RequestEvidence, TokenId};
use cacheon_core::prompts::{ChatMessage, Prompt};
use cacheon_core::tokens::{self, Resolved, Segment, StreamedToken};
use futures_util::{stream, StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::client::Target;
use crate::config::HarnessConfig;
use crate::metrics::Accounting;
use crate::stream::StreamRecord;
use crate::vocab::{Vocab, VocabError};
use crate::wire::{ForcedCompletion, Tokenized};

/// Teacher-forcing and tokenisation requests in flight at once.
const PARALLEL: usize = 8;
/// Bytes of text per allowed output token beyond which an output is too long without
/// asking the baseline (real vocabularies' longest tokens are a few dozen bytes).
const MAX_TOKEN_BYTES: usize = 64;
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
    vocab: Arc<Vocab>,
    stop_ids: Vec<TokenId>,
}

impl Baseline {
    /// `vocab` is the baseline model's tokenizer (the model directory's `tokenizer.json`).
    pub fn new(target: Target, cfg: &HarnessConfig, vocab: Arc<Vocab>) -> Result<Self, VocabError> {
        let stop_ids = vocab.stop_ids(&cfg.stop_tokens)?;
        Ok(Self {
            target,
            model: cfg.model.clone(),
            top_k: cfg.top_logprobs,
            timeout: cfg.baseline_timeout,
            output_limit: cfg.output_limit(),
            vocab,
            stop_ids,
        })
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

    /// The canonical tokens of plain text (no template, no special tokens added).
    pub async fn tokenize_text(&self, text: &str) -> Result<Vec<TokenId>, BaselineError> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let body = json!({
            "model": self.model,
            "prompt": text,
            "add_special_tokens": false,
        });
        Ok(self.post::<Tokenized>("/tokenize", body).await?.tokens)
    }

    /// The tokens a server generated for `text`, read from its streamed `entries` where
    /// they spell the text exactly, and tokenised canonically where they do not.
    /// `canonical` is the whole text's canonical tokenisation, reused when one gap is the
    /// whole text (a stream without logprobs) instead of asking the baseline again.
    pub async fn resolve(
        &self,
        text: &str,
        entries: &[StreamedToken],
        canonical: &[TokenId],
    ) -> Result<Resolved, BaselineError> {
        let segments = tokens::segment(text, entries, self.vocab.as_ref());
        let mut gaps = Vec::new();
        for seg in &segments {
            if let Segment::Gap { text: range, .. } = seg {
                let ids = if range.len() == text.len() {
                    canonical.to_vec()
                } else {
                    let piece = text.get(range.clone()).unwrap_or_default();
                    self.tokenize_text(piece).await?
                };
                gaps.push(
                    ids.into_iter()
                        .map(|id| (id, self.vocab.text_bytes(id)))
                        .collect(),
                );
            }
        }
        Ok(tokens::assemble(&segments, &gaps, entries, &self.stop_ids))
    }

    /// Teacher forcing: the baseline's view of every output token, forced as token ids
    /// after the generation prompt (`/v1/completions` with `prompt_logprobs`), and how far
    /// end-of-sequence trails its top-1 right after the output (a stop token is forced
    /// last to read exactly that, wherever it ranks).
    pub async fn teacher_force(
        &self,
        prompt_index: usize,
        prefix: &[TokenId],
        resolved: &Resolved,
        entries: &[StreamedToken],
    ) -> Result<(Vec<ForcedPosition>, Option<f64>), BaselineError> {
        let path = "/v1/completions";
        let stop = resolved
            .stop
            .map(|(id, _)| id)
            .or(self.stop_ids.first().copied());
        let mut ids = Vec::with_capacity(prefix.len() + resolved.tokens.len() + 1);
        ids.extend_from_slice(prefix);
        ids.extend_from_slice(&resolved.tokens);
        ids.extend(stop);
        let mut body = json!({
            "model": self.model,
            "prompt": ids,
            "prompt_logprobs": self.top_k,
            "max_tokens": 1,
            "stream": false,
        });
        crate::stream::greedy(&mut body);
        let forced: ForcedCompletion = self.post(path, body).await?;
        let inconsistent = |reason: String| BaselineError::Inconsistent {
            prompt_index,
            reason,
        };
        let table = forced
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.prompt_logprobs)
            .ok_or_else(|| BaselineError::Decode {
                path,
                reason: "no prompt_logprobs in the answer".into(),
            })?;
        if table.len() != ids.len() {
            return Err(inconsistent(format!(
                "{} prompt_logprobs entries for {} tokens",
                table.len(),
                ids.len()
            )));
        }
        let position = |at: usize, token: TokenId| {
            let Some(Some(entry)) = table.get(at) else {
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
                    own = Some(lp.logprob);
                }
                top.push((id, lp.logprob));
            }
            let own = own.ok_or_else(|| {
                inconsistent(format!("position {at} lacks its own token {token}"))
            })?;
            Ok((own, top))
        };
        let mut positions = Vec::with_capacity(resolved.tokens.len());
        for (offset, &token) in resolved.tokens.iter().enumerate() {
            let (logprob, top) = position(prefix.len() + offset, token)?;
            let streamed = resolved
                .entries
                .get(offset)
                .copied()
                .flatten()
                .and_then(|i| entries.get(i))
                .map(|e| e.logprob);
            positions.push(ForcedPosition {
                token,
                text: self.vocab.display(token),
                logprob,
                top,
                streamed,
            });
        }
        let stop_gap = match stop {
            Some(stop) => {
                let (own, top) = position(ids.len() - 1, stop)?;
                let best = top.iter().map(|t| t.1).fold(own, f64::max);
                // Any stop token among the candidates counts, the one forced or another.
                let nearest = top
                    .iter()
                    .filter(|(id, _)| self.stop_ids.contains(id))
                    .map(|t| t.1)
                    .fold(own, f64::max);
                Some(best - nearest)
            }
            None => None,
        };
        Ok((positions, stop_gap))
    }
}

/// The baseline's greedy output per scored prompt: the gate's reference and the token
/// counts contestants are credited up to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reference {
    /// The tokens the baseline generated, read from its own stream.
    pub tokens: HashMap<usize, Vec<TokenId>>,
    /// Canonical token counts of the baseline's text: what a contestant is credited up to.
    pub counts: HashMap<usize, usize>,
    /// Generation-prompt tokens per prompt, reused for every contestant.
    pub prefixes: HashMap<usize, Vec<TokenId>>,
}

impl Reference {
    pub fn counts(&self) -> HashMap<usize, usize> {
        self.counts.clone()
    }
}

/// Builds the reference from the baseline's own run of the same prompts.
pub async fn reference(
    baseline: &Baseline,
    prompts: &HashMap<usize, Prompt>,
    records: &[&StreamRecord],
) -> Result<Reference, BaselineError> {
    type One = (usize, Vec<TokenId>, Vec<TokenId>, usize);
    let results: Vec<One> = stream::iter(records.iter().copied())
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
            let entries = r.logprobs.as_deref().unwrap_or_default();
            let canonical = baseline.tokenize_text(&r.text).await?;
            let resolved = baseline.resolve(&r.text, entries, &canonical).await?;
            let count = canonical.len();
            Ok((r.prompt_index, prefix, resolved.tokens, count))
        })
        .buffer_unordered(PARALLEL)
        .try_collect()
        .await?;
    let mut out = Reference::default();
    for (i, prefix, tokens, count) in results {
        out.prefixes.insert(i, prefix);
        out.tokens.insert(i, tokens);
        out.counts.insert(i, count);
    }
    Ok(out)
}

fn overlong_evidence(
    r: &StreamRecord,
    reference: &[TokenId],
    tokens: usize,
    limit: usize,
) -> RequestEvidence {
    RequestEvidence {
        prompt_index: r.prompt_index,
        stream_fault: r.fault,
        forced: Vec::new(),
        logprobs_streamed: r.logprobs.is_some(),
        reference: reference.to_vec(),
        stopped: r.finish_reason.as_deref() == Some("stop"),
        stop_gap: None,
        overlong: Some(Overlong { tokens, limit }),
    }
}

fn lookup(prompts: &HashMap<usize, Prompt>, index: usize) -> Result<&Prompt, BaselineError> {
    prompts.get(&index).ok_or(BaselineError::Inconsistent {
        prompt_index: index,
        reason: "no such prompt in the round".into(),
    })
}

/// The gate's evidence for each scored request of a contestant, and the accounting its
/// metrics need (canonical token counts, credit caps, first-token sizes; `failed` is filled
/// in by the caller once the gate has judged).
pub async fn evidence(
    baseline: &Baseline,
    prompts: &HashMap<usize, Prompt>,
    reference: &Reference,
    records: &[&StreamRecord],
) -> Result<(Vec<RequestEvidence>, Accounting), BaselineError> {
    let mut gathered: Vec<(RequestEvidence, usize, usize)> = stream::iter(records.iter().copied())
        .map(|r| async move {
            lookup(prompts, r.prompt_index)?;
            let missing = || BaselineError::Inconsistent {
                prompt_index: r.prompt_index,
                reason: "no reference output".into(),
            };
            let prefix = reference
                .prefixes
                .get(&r.prompt_index)
                .ok_or_else(missing)?;
            let reference_tokens = reference.tokens.get(&r.prompt_index).ok_or_else(missing)?;
            let limit = baseline.output_limit;
            if r.text.len() > limit.saturating_mul(MAX_TOKEN_BYTES) {
                // Far too long to be within `max_tokens`: not even tokenised, so a flood
                // cannot make the baseline refuse (and void the round).
                let e = overlong_evidence(r, reference_tokens, limit.saturating_add(1), limit);
                return Ok::<_, BaselineError>((e, limit.saturating_add(1), 1));
            }
            // Credit and TTFT go by the canonical tokens: a server gains nothing from
            // splitting its text into more, or smaller, tokens.
            let canonical = baseline.tokenize_text(&r.text).await?;
            let count = canonical.len();
            let first_bytes = canonical
                .first()
                .map_or(1, |&id| baseline.vocab.text_bytes(id).len().max(1));
            let entries = r.logprobs.as_deref().unwrap_or_default();
            let mut e = RequestEvidence {
                prompt_index: r.prompt_index,
                stream_fault: r.fault,
                forced: Vec::new(),
                logprobs_streamed: r.logprobs.is_some(),
                reference: reference_tokens.clone(),
                stopped: r.finish_reason.as_deref() == Some("stop"),
                stop_gap: None,
                overlong: None,
            };
            if count > limit || entries.len() > 4 * limit + 16 {
                // Longer than asked for: the contestant's fault, and teacher-forcing it could
                // overflow the baseline's context and void the round for everyone.
                e.overlong = Some(Overlong {
                    tokens: count.max(entries.len()),
                    limit,
                });
                return Ok((e, count, first_bytes));
            }
            let resolved = baseline.resolve(&r.text, entries, &canonical).await?;
            if resolved.tokens.len() > limit {
                e.overlong = Some(Overlong {
                    tokens: resolved.tokens.len(),
                    limit,
                });
                return Ok((e, count, first_bytes));
            }
            let (forced, stop_gap) = baseline
                .teacher_force(r.prompt_index, prefix, &resolved, entries)
                .await?;
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
