//! `POST /v1/completions` as vLLM serves it, for the baseline's teacher forcing: a prompt of
//! token ids (or text), `prompt_logprobs` per position keyed by token id with the actual
//! token added when outside the top-k, and one greedy token after it. Also the mock's
//! `tokenizer.json`, so the validator reads the mock's vocabulary exactly as it reads a real
//! model's.

use std::collections::BTreeMap;

use cacheon_core::gate::TokenId;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::chat::{IM_START, IM_START_TEXT, NEWLINE};
use crate::model::{rank_of, top_of, ToyModel, EOS, EOS_TEXT};
use crate::wire::{self, PromptLogprob};

/// A prompt as vLLM accepts it: token ids or text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum CompletionPrompt {
    Ids(Vec<TokenId>),
    Text(String),
}

/// `POST /v1/completions`, the fields the mock honours.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    pub model: String,
    pub prompt: CompletionPrompt,
    pub max_tokens: Option<u32>,
    pub prompt_logprobs: Option<u8>,
    #[serde(default)]
    pub stream: bool,
}

/// The text of any id the mock knows, as `decoded_token` shows it.
fn text_of(model: &ToyModel, id: TokenId) -> String {
    match id {
        IM_START => IM_START_TEXT.to_string(),
        NEWLINE => "\n".to_string(),
        _ => model.text(id).unwrap_or("<unk>").to_string(),
    }
}

/// vLLM's `prompt_logprobs` layout: `null` first, then per position the top `k` and the
/// actual token.
pub fn prompt_logprobs(
    model: &ToyModel,
    ids: &[TokenId],
    texts: &[String],
    k: usize,
) -> Vec<Option<BTreeMap<String, PromptLogprob>>> {
    ids.iter()
        .enumerate()
        .map(|(i, &id)| {
            if i == 0 {
                return None;
            }
            let lps = model.logprobs(&ids[..i]);
            let mut entries = BTreeMap::new();
            for (rank, (t, lp)) in top_of(&lps, k).into_iter().enumerate() {
                entries.insert(
                    t.to_string(),
                    PromptLogprob {
                        logprob: wire::clamp(lp),
                        rank: rank + 1,
                        decoded_token: wire::token_text(model, t),
                    },
                );
            }
            let actual = lps.get(id as usize).copied().unwrap_or(f64::NEG_INFINITY);
            entries.entry(id.to_string()).or_insert(PromptLogprob {
                logprob: wire::clamp(actual),
                rank: rank_of(&lps, id),
                decoded_token: texts.get(i).cloned().unwrap_or_default(),
            });
            Some(entries)
        })
        .collect()
}

/// The whole answer to a completions request over `ids`.
pub fn answer(
    model: &ToyModel,
    model_name: &str,
    id: &str,
    ids: &[TokenId],
    req: &CompletionRequest,
) -> Value {
    let texts: Vec<String> = ids.iter().map(|&t| text_of(model, t)).collect();
    let max_tokens = (req.max_tokens.unwrap_or(16) as usize).min(4096);
    let steps = model.generate(ids, max_tokens);
    let text: String = steps
        .iter()
        .filter(|s| s.token != EOS)
        .map(|s| wire::token_text(model, s.token))
        .collect();
    let finish = wire::finish_reason(steps.last().map(|s| s.token), false);
    let prompt_logprobs = req
        .prompt_logprobs
        .map(|k| prompt_logprobs(model, ids, &texts, usize::from(k).min(20)));
    json!({
        "id": id,
        "object": "text_completion",
        "model": model_name,
        "choices": [{
            "index": 0,
            "text": text,
            "logprobs": null,
            "finish_reason": finish,
            "prompt_logprobs": prompt_logprobs,
        }],
        "usage": {
            "prompt_tokens": ids.len(),
            "completion_tokens": steps.len(),
            "total_tokens": ids.len() + steps.len(),
        },
    })
}

/// The mock's vocabulary as a `tokenizer.json` the `tokenizers` crate loads: a word-level
/// model over the toy words, the template's pieces, and `<|im_end|>`/`<|im_start|>` as
/// special tokens.
pub fn tokenizer_json() -> String {
    let model = ToyModel::new();
    let mut vocab = serde_json::Map::new();
    for id in 1..model.vocab_len() {
        if let Some(w) = model.text(id) {
            vocab.insert(w.to_string(), json!(id));
        }
    }
    vocab.insert("\n".into(), json!(NEWLINE));
    vocab.insert("<unk>".into(), json!(UNK));
    vocab.insert(EOS_TEXT.into(), json!(EOS));
    vocab.insert(IM_START_TEXT.into(), json!(IM_START));
    let special = |id: TokenId, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": true})
    };
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(EOS, EOS_TEXT), special(IM_START, IM_START_TEXT)],
        "normalizer": null,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
    })
    .to_string()
}

/// The `<unk>` of the mock's tokenizer.json (never generated).
const UNK: TokenId = 900_000;
