//! The JSON the harness reads: chat-completion chunks as OpenAI and vLLM stream them, and
//! vLLM's `/tokenize` and `prompt_logprobs` answers. Every field a server may omit is
//! optional; anything else malformed is the server's fault, reported, never a panic.

use std::collections::HashMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Chunk {
    pub id: Option<String>,
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    pub usage: Option<Usage>,
    /// `{"error": {...}}` inside a 200 stream.
    pub error: Option<serde_json::Value>,
    /// vLLM's older in-stream error: `{"object": "error", "message": ...}`.
    pub object: Option<String>,
    pub message: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ChunkChoice {
    #[serde(default)]
    pub index: u32,
    pub delta: Option<Delta>,
    pub logprobs: Option<ChoiceLogprobs>,
    pub finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Delta {
    pub content: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ChoiceLogprobs {
    pub content: Option<Vec<TokenLogprob>>,
}

#[derive(Debug, Deserialize)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f64,
    pub bytes: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
}

/// `POST /tokenize`.
#[derive(Debug, Deserialize)]
pub struct Tokenized {
    pub tokens: Vec<u32>,
}

/// A whole `/v1/completions` answer with vLLM's `prompt_logprobs` (teacher forcing).
#[derive(Debug, Deserialize)]
pub struct ForcedCompletion {
    #[serde(default)]
    pub choices: Vec<ForcedChoice>,
}

#[derive(Debug, Deserialize)]
pub struct ForcedChoice {
    /// Per prompt position (the first is `null`): candidates keyed by token id, the forced
    /// token among them even when outside the top-k.
    pub prompt_logprobs: Option<Vec<Option<HashMap<String, PromptLogprob>>>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PromptLogprob {
    pub logprob: f64,
}
