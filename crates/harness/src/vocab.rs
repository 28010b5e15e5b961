//! The baseline model's vocabulary, read from its `tokenizer.json` with the `tokenizers`
//! crate: every token's exact bytes, and which tokens are special. The gate resolves a
//! server's streamed tokens against it (`cacheon_core::tokens`) so teacher forcing forces
//! what the server generated.

use std::collections::HashMap;
use std::path::Path;

use cacheon_core::gate::TokenId;
use cacheon_core::tokens::Vocabulary;
use tokenizers::{DecoderWrapper, Tokenizer};

#[derive(Debug, thiserror::Error)]
pub enum VocabError {
    #[error("cannot read tokenizer {path}: {reason}")]
    Load { path: String, reason: String },
    #[error("tokenizer {path} has no token for stop text `{text}`")]
    UnknownStop { path: String, text: String },
}

/// Token ids ↔ bytes for one tokenizer.
#[derive(Debug, Clone)]
pub struct Vocab {
    by_bytes: HashMap<Vec<u8>, TokenId>,
    bytes: HashMap<TokenId, Vec<u8>>,
    specials: HashMap<String, TokenId>,
    special_text: HashMap<TokenId, String>,
    source: String,
}

impl Vocab {
    /// Loads `tokenizer.json`. Byte-level BPE vocabularies (GPT-2 style, as Qwen's) store
    /// each byte as a printable character; those are mapped back to the raw bytes.
    pub fn load(path: &Path) -> Result<Self, VocabError> {
        let source = path.display().to_string();
        let tok = Tokenizer::from_file(path).map_err(|e| VocabError::Load {
            path: source.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self::from_tokenizer(&tok, source))
    }

    /// From a `tokenizer.json` document already in memory.
    pub fn from_json(json: &str, source: &str) -> Result<Self, VocabError> {
        let tok: Tokenizer = json
            .parse()
            .map_err(|e: tokenizers::Error| VocabError::Load {
                path: source.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Self::from_tokenizer(&tok, source.to_string()))
    }

    fn from_tokenizer(tok: &Tokenizer, source: String) -> Self {
        let byte_level = matches!(tok.get_decoder(), Some(DecoderWrapper::ByteLevel(_)));
        let unbyte = byte_level.then(byte_decoder);
        let added = tok.get_added_tokens_decoder();
        let mut v = Vocab {
            by_bytes: HashMap::new(),
            bytes: HashMap::new(),
            specials: HashMap::new(),
            special_text: HashMap::new(),
            source,
        };
        for (piece, id) in tok.get_vocab(false) {
            if added.get(&id).is_some_and(|a| a.special) {
                continue;
            }
            let bytes = match &unbyte {
                Some(table) => match piece.chars().map(|c| table.get(&c).copied()).collect() {
                    Some(b) => b,
                    None => piece.into_bytes(),
                },
                None => piece.into_bytes(),
            };
            v.insert(id, bytes);
        }
        for (id, a) in added {
            if a.special {
                v.specials.insert(a.content.clone(), id);
                v.special_text.insert(id, a.content.clone());
            } else {
                // Added tokens are written as they read, never byte-level encoded.
                v.insert(id, a.content.clone().into_bytes());
            }
        }
        v
    }

    fn insert(&mut self, id: TokenId, bytes: Vec<u8>) {
        self.by_bytes.entry(bytes.clone()).or_insert(id);
        self.bytes.insert(id, bytes);
    }

    /// The ids of the stop texts (`<|im_end|>`...) this vocabulary has, in order; the first
    /// must be there (it is the one forced after an output to read end-of-sequence).
    pub fn stop_ids(&self, texts: &[String]) -> Result<Vec<TokenId>, VocabError> {
        let id = |t: &String| {
            self.special_id(t)
                .or_else(|| self.id_of_bytes(t.as_bytes()))
        };
        match texts.first() {
            Some(first) if id(first).is_none() => Err(VocabError::UnknownStop {
                path: self.source.clone(),
                text: first.clone(),
            }),
            _ => Ok(texts.iter().filter_map(id).collect()),
        }
    }

    /// A token as people read it (specials by name, partial characters lossy).
    pub fn display(&self, id: TokenId) -> String {
        match (self.special_text.get(&id), self.bytes.get(&id)) {
            (Some(s), _) => s.clone(),
            (None, Some(b)) => String::from_utf8_lossy(b).into_owned(),
            (None, None) => format!("<{id}>"),
        }
    }

    /// Bytes of any token in text: a special's name, a regular token's bytes.
    pub fn text_bytes(&self, id: TokenId) -> Vec<u8> {
        match (self.special_text.get(&id), self.bytes.get(&id)) {
            (Some(s), _) => s.clone().into_bytes(),
            (None, Some(b)) => b.clone(),
            (None, None) => Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.bytes.len() + self.specials.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Vocabulary for Vocab {
    fn id_of_bytes(&self, bytes: &[u8]) -> Option<TokenId> {
        self.by_bytes.get(bytes).copied()
    }
    fn special_id(&self, text: &str) -> Option<TokenId> {
        self.specials.get(text).copied()
    }
    fn bytes_of(&self, id: TokenId) -> Option<&[u8]> {
        self.bytes.get(&id).map(Vec::as_slice)
    }
    fn is_special(&self, id: TokenId) -> bool {
        self.special_text.contains_key(&id)
    }
}

/// GPT-2's byte-level alphabet, reversed: the printable character that stands for each
/// byte in a byte-level vocabulary → that byte. Printable Latin-1 bytes stand for
/// themselves; the others are shifted to U+0100 and up, in byte order.
fn byte_decoder() -> HashMap<char, u8> {
    let printable = |b: u8| (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    let mut shifted = 0u32;
    (0..=255u8)
        .map(|b| {
            let c = if printable(b) {
                char::from(b)
            } else {
                shifted += 1;
                char::from_u32(0x100 + shifted - 1).unwrap_or('\u{fffd}')
            };
            (c, b)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_level_alphabet_is_a_bijection_with_the_known_landmarks() {
        let d = byte_decoder();
        assert_eq!(d.len(), 256);
        assert_eq!(d[&'Ġ'], b' ');
        assert_eq!(d[&'Ċ'], b'\n');
        assert_eq!(d[&'A'], b'A');
        // "’" is E2 80 99, written âĢĻ in Qwen's vocabulary.
        let bytes: Vec<u8> = "âĢĻ".chars().map(|c| d[&c]).collect();
        assert_eq!(bytes, "’".as_bytes());
    }
}
