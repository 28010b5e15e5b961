//! The mock's chat template and the request bodies it accepts (vLLM's field names).
//!
//! The template is Qwen-shaped: `<|im_start|>{role}\n{content}<|im_end|>\n` per message,
//! then `<|im_start|>assistant\n` when a generation prompt is asked for. Special pieces are
//! tokens of their own and each message's content is tokenised on its own, so the tokens of
//! a prompt with a generation prompt are a prefix of the tokens of the same prompt continued
//! by an assistant message: the property the gate's teacher forcing relies on.

use cacheon_core::gate::TokenId;
use cacheon_core::prompts::ChatMessage;
use serde::Deserialize;

use crate::model::{pieces, ToyModel, EOS, EOS_TEXT};

/// `<|im_start|>`: outside the generated vocabulary, like the prompt pieces.
pub const IM_START: TokenId = 900_001;
pub const IM_START_TEXT: &str = "<|im_start|>";
/// The newline after a role and after `<|im_end|>`.
pub const NEWLINE: TokenId = 900_002;

/// One prompt token with its text, for `/tokenize` and `prompt_logprobs`.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptToken {
    pub id: TokenId,
    pub text: String,
}

/// Renders messages through the template into tokens.
pub fn render(
    model: &ToyModel,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    continue_final_message: bool,
) -> Vec<PromptToken> {
    let mut out = Vec::new();
    let special = |out: &mut Vec<PromptToken>, id: TokenId, text: &str| {
        out.push(PromptToken {
            id,
            text: text.to_string(),
        })
    };
    let text = |out: &mut Vec<PromptToken>, s: &str| out.extend(render_text(model, s));
    let last = messages.len().saturating_sub(1);
    for (i, m) in messages.iter().enumerate() {
        special(&mut out, IM_START, IM_START_TEXT);
        text(&mut out, &m.role);
        special(&mut out, NEWLINE, "\n");
        text(&mut out, &m.content);
        let open_end = continue_final_message && i == last && m.role == "assistant";
        if !open_end {
            special(&mut out, EOS, EOS_TEXT);
            special(&mut out, NEWLINE, "\n");
        }
    }
    if add_generation_prompt && !continue_final_message {
        special(&mut out, IM_START, IM_START_TEXT);
        text(&mut out, "assistant");
        special(&mut out, NEWLINE, "\n");
    }
    out
}

/// Plain text (no template), as `/tokenize` with `prompt` does it.
pub fn render_text(model: &ToyModel, s: &str) -> Vec<PromptToken> {
    pieces(s)
        .map(|piece| PromptToken {
            id: model.piece_id(piece),
            text: piece.to_string(),
        })
        .collect()
}

#[derive(Debug, Clone, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

fn yes() -> bool {
    true
}

/// A message's content as OpenAI clients send it: a string, or a list of parts of which
/// the mock reads the text ones (vLLM's own `bench serve` sends parts).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Clone, Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: String,
}

#[derive(Debug, Clone, Deserialize)]
struct WireMessage {
    role: String,
    content: Content,
}

fn messages<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ChatMessage>, D::Error> {
    let wire = Vec::<WireMessage>::deserialize(d)?;
    wire.into_iter()
        .map(|m| {
            let content = match m.content {
                Content::Text(t) => t,
                Content::Parts(parts) => {
                    let mut text = String::new();
                    for p in parts {
                        if p.kind != "text" {
                            return Err(serde::de::Error::custom(format!(
                                "content part type `{}` is not supported by a text model",
                                p.kind
                            )));
                        }
                        text.push_str(&p.text);
                    }
                    text
                }
            };
            Ok(ChatMessage {
                role: m.role,
                content,
            })
        })
        .collect()
}

/// `POST /v1/chat/completions`, the fields the mock honours.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    #[serde(deserialize_with = "messages")]
    pub messages: Vec<ChatMessage>,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub logprobs: bool,
    pub top_logprobs: Option<u8>,
    /// vLLM extension: logprobs of every prompt token, with this many candidates.
    pub prompt_logprobs: Option<u8>,
    #[serde(default = "yes")]
    pub add_generation_prompt: bool,
    #[serde(default)]
    pub continue_final_message: bool,
}

/// `POST /tokenize`: either plain text or chat messages through the template.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TokenizeRequest {
    Chat {
        messages: Vec<ChatMessage>,
        #[serde(default = "yes")]
        add_generation_prompt: bool,
        #[serde(default)]
        continue_final_message: bool,
        #[serde(default)]
        return_token_strs: bool,
    },
    Text {
        prompt: String,
        #[serde(default)]
        return_token_strs: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    #[test]
    fn generation_prompt_is_a_prefix_of_the_continued_conversation() {
        let m = ToyModel::new();
        let conv = [
            msg("system", "Be brief."),
            msg("user", "Tell me\n about  it."),
        ];
        let prefix = render(&m, &conv, true, false);
        let mut continued = conv.to_vec();
        continued.push(msg("assistant", " ba be\n\nbi"));
        let full = render(&m, &continued, false, true);
        assert_eq!(full[..prefix.len()], prefix[..]);
        let tail: String = full[prefix.len()..]
            .iter()
            .map(|t| t.text.as_str())
            .collect();
        assert_eq!(tail, " ba be\n\nbi");
        let joined: String = prefix.iter().map(|t| t.text.as_str()).collect();
        assert!(joined.ends_with("<|im_start|>assistant\n"), "{joined:?}");
    }
}
