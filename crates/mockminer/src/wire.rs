//! Response bodies as vLLM's OpenAI server writes them.

use std::collections::BTreeMap;

use cacheon_core::gate::TokenId;
use serde::Serialize;

use crate::model::{ToyModel, EOS};

/// vLLM reports an impossible token as -9999.0, never as -inf (JSON has no infinity).
pub const LOGPROB_FLOOR: f64 = -9999.0;

pub fn clamp(lp: f64) -> f64 {
    if lp.is_nan() {
        LOGPROB_FLOOR
    } else {
        lp.max(LOGPROB_FLOOR)
    }
}

#[derive(Debug, Serialize)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f64,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Serialize)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f64,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<TopLogprob>,
}

impl TokenLogprob {
    pub fn new(model: &ToyModel, token: TokenId, logprob: f64, top: &[(TokenId, f64)]) -> Self {
        let text = token_text(model, token);
        Self {
            bytes: text.as_bytes().to_vec(),
            token: text,
            logprob: clamp(logprob),
            top_logprobs: top
                .iter()
                .map(|&(t, lp)| {
                    let text = token_text(model, t);
                    TopLogprob {
                        bytes: text.as_bytes().to_vec(),
                        token: text,
                        logprob: clamp(lp),
                    }
                })
                .collect(),
        }
    }
}

impl TokenLogprob {
    /// An entry for a piece of text the server made up (no candidates).
    pub fn text_only(text: &str, logprob: f64) -> Self {
        Self {
            token: text.to_string(),
            logprob: clamp(logprob),
            bytes: text.as_bytes().to_vec(),
            top_logprobs: Vec::new(),
        }
    }
}

/// The text a token stands for in a logprob entry (vLLM shows special tokens by name).
pub fn token_text(model: &ToyModel, token: TokenId) -> String {
    model.text(token).unwrap_or("<unk>").to_string()
}

#[derive(Debug, Serialize)]
pub struct Logprobs {
    pub content: Vec<TokenLogprob>,
}

#[derive(Debug, Default, Serialize)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    pub logprobs: Option<Logprobs>,
    pub finish_reason: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

#[derive(Debug, Serialize)]
pub struct Chunk<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: Vec<ChunkChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

#[derive(Debug, Serialize)]
pub struct Message {
    pub role: &'static str,
    pub content: String,
}

#[derive(Debug, Serialize)]
pub struct Choice {
    pub index: u32,
    pub message: Message,
    pub logprobs: Option<Logprobs>,
    pub finish_reason: &'static str,
}

/// One entry of vLLM's `prompt_logprobs`: candidates keyed by token id.
#[derive(Debug, Serialize)]
pub struct PromptLogprob {
    pub logprob: f64,
    pub rank: usize,
    pub decoded_token: String,
}

#[derive(Debug, Serialize)]
pub struct Completion<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: Vec<Choice>,
    pub usage: Usage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_logprobs: Option<Vec<Option<BTreeMap<String, PromptLogprob>>>>,
}

/// vLLM's error body, also what it puts inside a stream when generation fails.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub object: &'static str,
    pub message: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub code: u16,
}

pub fn finish_reason(last: Option<TokenId>, stopped_early: bool) -> &'static str {
    if stopped_early || last == Some(EOS) {
        "stop"
    } else {
        "length"
    }
}
