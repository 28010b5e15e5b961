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

impl TokenLogprob {
    /// The token's text: its raw bytes when they are whole UTF-8, else the token string.
    pub fn text(&self) -> String {
        match &self.bytes {
            Some(b) => match std::str::from_utf8(b) {
                Ok(s) => s.to_string(),
                Err(_) => self.token.clone(),
            },
            None => self.token.clone(),
        }
    }
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

/// A whole (non-streamed) chat completion with vLLM's `prompt_logprobs`.
#[derive(Debug, Deserialize)]
pub struct ForcedCompletion {
    #[serde(default)]
    pub choices: Vec<ForcedChoice>,
    pub prompt_logprobs: Option<Vec<Option<HashMap<String, PromptLogprob>>>>,
}

#[derive(Debug, Deserialize)]
pub struct ForcedChoice {
    pub finish_reason: Option<String>,
    pub logprobs: Option<ForcedLogprobs>,
}

#[derive(Debug, Deserialize)]
pub struct ForcedLogprobs {
    pub content: Option<Vec<ForcedToken>>,
}

#[derive(Debug, Deserialize)]
pub struct ForcedToken {
    pub logprob: f64,
    #[serde(default)]
    pub top_logprobs: Vec<Candidate>,
}

#[derive(Debug, Deserialize)]
pub struct Candidate {
    pub token: String,
    pub logprob: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PromptLogprob {
    pub logprob: f64,
    pub decoded_token: Option<String>,
}
