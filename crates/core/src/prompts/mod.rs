//! A round's prompts, derived from the seed block's hash (SPEC §7).
//!
//! Same hash, corpus and templates give the same prompts on any machine; nobody can know
//! them before the seed block exists. Each phase mixes long-context prompts (thousands of
//! tokens of corpus text) with short ones, in a shuffled order. Token counts here are the
//! usual ~4 characters per token estimate; the harness counts real tokens with the
//! baseline's tokenizer.

mod rng;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use rng::PromptRng;

/// Characters per token for the estimate used to size passages.
pub const CHARS_PER_TOKEN: usize = 4;
/// Where a template puts the corpus passage.
pub const PASSAGE_SLOT: &str = "{passage}";

/// 32-byte block hash, written `0x` + 64 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BlockHash(pub [u8; 32]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a block hash is `0x` followed by 64 hex digits")]
pub struct BadBlockHash;

impl FromStr for BlockHash {
    type Err = BadBlockHash;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix("0x").ok_or(BadBlockHash)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(digits, &mut out).map_err(|_| BadBlockHash)?;
        Ok(Self(out))
    }
}

impl fmt::Display for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl TryFrom<String> for BlockHash {
    type Error = BadBlockHash;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<BlockHash> for String {
    fn from(h: BlockHash) -> Self {
        h.to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkloadError {
    #[error("the corpus has no text")]
    EmptyCorpus,
    #[error("templates are not valid JSON: {0}")]
    TemplatesJson(String),
    #[error("template list `{0}` is empty")]
    NoTemplates(&'static str),
    #[error("template `{0}` must contain {PASSAGE_SLOT} exactly once")]
    BadTemplate(String),
    #[error("prompt set could not be serialised for hashing: {0}")]
    Serialize(String),
    #[error("invalid workload shape: {0}")]
    BadShape(&'static str),
}

/// Texts prompts are cut from, in a canonical order (sorted by name).
#[derive(Debug, Clone)]
pub struct Corpus {
    /// Paragraphs of all documents, in document order.
    paragraphs: Vec<String>,
    hash: [u8; 32],
    documents: usize,
}

impl Corpus {
    /// Builds a corpus from `(name, text)` documents; paragraphs are separated by blank lines.
    pub fn new(mut documents: Vec<(String, String)>) -> Result<Self, WorkloadError> {
        documents.sort_by(|a, b| a.0.cmp(&b.0));
        let mut hasher = Sha256::new();
        let mut paragraphs = Vec::new();
        for (name, text) in &documents {
            // Length-prefixed, so ("ab","c") and ("a","bc") hash differently.
            for part in [name.as_bytes(), text.as_bytes()] {
                hasher.update((part.len() as u64).to_le_bytes());
                hasher.update(part);
            }
            let text = text.replace("\r\n", "\n");
            paragraphs.extend(
                text.split("\n\n")
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned),
            );
        }
        if paragraphs.is_empty() {
            return Err(WorkloadError::EmptyCorpus);
        }
        Ok(Self {
            paragraphs,
            hash: hasher.finalize().into(),
            documents: documents.len(),
        })
    }

    pub fn hash_hex(&self) -> String {
        hex::encode(self.hash)
    }

    pub fn documents(&self) -> usize {
        self.documents
    }

    /// At least `target_chars` of consecutive paragraphs from `start`, wrapping around.
    fn passage(&self, start: usize, target_chars: usize) -> String {
        let mut out = String::new();
        for p in self.paragraphs.iter().cycle().skip(start) {
            if !out.is_empty() {
                out.push_str("\n\n");
            }
            out.push_str(p);
            if out.len() >= target_chars {
                break;
            }
        }
        out
    }
}

/// Chat templates: `{passage}` is replaced by corpus text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Templates {
    /// System messages; empty means prompts have no system message.
    #[serde(default)]
    pub system: Vec<String>,
    pub long: Vec<String>,
    pub short: Vec<String>,
}

impl Templates {
    pub fn from_json(json: &str) -> Result<Self, WorkloadError> {
        let t: Self =
            serde_json::from_str(json).map_err(|e| WorkloadError::TemplatesJson(e.to_string()))?;
        t.check()?;
        Ok(t)
    }

    /// Also run by `generate`: templates may arrive deserialised from a job document.
    pub fn check(&self) -> Result<(), WorkloadError> {
        for (name, list) in [("long", &self.long), ("short", &self.short)] {
            if list.is_empty() {
                return Err(WorkloadError::NoTemplates(name));
            }
            if let Some(bad) = list.iter().find(|s| s.matches(PASSAGE_SLOT).count() != 1) {
                return Err(WorkloadError::BadTemplate(bad.clone()));
            }
        }
        Ok(())
    }
}

/// How many prompts of which kind each phase gets (SPEC §7 defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WorkloadShape {
    pub warmup: usize,
    pub latency: usize,
    pub throughput: usize,
    /// Share of long-context prompts in every phase, rounded to whole prompts.
    pub long_fraction: f64,
    /// Passage size ranges in estimated tokens, inclusive.
    pub long_tokens: (usize, usize),
    pub short_tokens: (usize, usize),
}

impl Default for WorkloadShape {
    fn default() -> Self {
        Self {
            warmup: 2,
            latency: 16,
            throughput: 64,
            long_fraction: 0.25,
            long_tokens: (5_000, 7_000),
            short_tokens: (64, 512),
        }
    }
}

/// Bounds that keep a hostile or mistyped shape from exhausting memory.
pub const MAX_PROMPT_TOKENS: usize = 32_768;
pub const MAX_PROMPTS_PER_PHASE: usize = 10_000;

impl WorkloadShape {
    pub fn check(&self) -> Result<(), WorkloadError> {
        if [self.warmup, self.latency, self.throughput]
            .iter()
            .any(|&n| n > MAX_PROMPTS_PER_PHASE)
        {
            return Err(WorkloadError::BadShape("too many prompts in a phase"));
        }
        if !(0.0..=1.0).contains(&self.long_fraction) {
            return Err(WorkloadError::BadShape("long_fraction must be in [0, 1]"));
        }
        for (lo, hi) in [self.long_tokens, self.short_tokens] {
            if lo == 0 || lo > hi || hi > MAX_PROMPT_TOKENS {
                return Err(WorkloadError::BadShape(
                    "token ranges need 0 < lo <= hi <= MAX_PROMPT_TOKENS",
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Sent one at a time before the latency phase; not scored.
    Warmup,
    /// Sent one at a time; TTFT comes from here.
    Latency,
    /// Sent at fixed concurrency; throughput comes from here.
    Throughput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptKind {
    Long,
    Short,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    /// Position in the round, 0-based, across phases.
    pub index: usize,
    pub phase: Phase,
    pub kind: PromptKind,
    pub messages: Vec<ChatMessage>,
    /// `chars / CHARS_PER_TOKEN` over all messages.
    pub approx_tokens: usize,
}

/// A round's prompts and the hashes that identify them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptSet {
    pub seed_block_hash: BlockHash,
    pub corpus_hash: String,
    /// SHA-256 of the canonical JSON of `prompts`; results record it.
    pub prompt_set_hash: String,
    pub prompts: Vec<Prompt>,
}

impl PromptSet {
    /// Requests the gate judges (latency and throughput; warm-ups are discarded).
    pub fn scored_count(&self) -> usize {
        self.prompts
            .iter()
            .filter(|p| p.phase != Phase::Warmup)
            .count()
    }

    pub fn phase(&self, phase: Phase) -> impl Iterator<Item = &Prompt> {
        self.prompts.iter().filter(move |p| p.phase == phase)
    }
}

/// Derives the prompts of the round seeded by `seed`.
///
/// Draw order (part of the contract): for each phase in order warmup, latency, throughput:
/// shuffle that phase's kinds (`round(n * long_fraction)` longs first, then shorts); then
/// for each prompt: system template index (if any), user template index, passage length in
/// tokens, starting paragraph.
pub fn generate(
    seed: &BlockHash,
    corpus: &Corpus,
    templates: &Templates,
    shape: &WorkloadShape,
) -> Result<PromptSet, WorkloadError> {
    shape.check()?;
    templates.check()?;
    let mut rng = PromptRng::from_block_hash(seed);
    let mut prompts = Vec::new();
    for (phase, n) in [
        (Phase::Warmup, shape.warmup),
        (Phase::Latency, shape.latency),
        (Phase::Throughput, shape.throughput),
    ] {
        let longs = (n as f64 * shape.long_fraction).round() as usize;
        let mut kinds: Vec<PromptKind> = (0..n)
            .map(|i| {
                if i < longs {
                    PromptKind::Long
                } else {
                    PromptKind::Short
                }
            })
            .collect();
        rng.shuffle(&mut kinds);
        for kind in kinds {
            let mut messages = Vec::with_capacity(2);
            if !templates.system.is_empty() {
                let i = pick(&mut rng, templates.system.len());
                messages.push(ChatMessage {
                    role: "system".into(),
                    content: templates.system[i].clone(),
                });
            }
            let (list, (lo, hi)) = match kind {
                PromptKind::Long => (&templates.long, shape.long_tokens),
                PromptKind::Short => (&templates.short, shape.short_tokens),
            };
            let template = &list[pick(&mut rng, list.len())];
            let tokens = rng.between(lo as u64, hi as u64) as usize;
            let start = pick(&mut rng, corpus.paragraphs.len());
            let passage = corpus.passage(start, tokens * CHARS_PER_TOKEN);
            messages.push(ChatMessage {
                role: "user".into(),
                content: template.replacen(PASSAGE_SLOT, &passage, 1),
            });
            let chars: usize = messages.iter().map(|m| m.content.chars().count()).sum();
            prompts.push(Prompt {
                index: prompts.len(),
                phase,
                kind,
                messages,
                approx_tokens: chars / CHARS_PER_TOKEN,
            });
        }
    }
    let canonical =
        serde_json::to_vec(&prompts).map_err(|e| WorkloadError::Serialize(e.to_string()))?;
    Ok(PromptSet {
        seed_block_hash: *seed,
        corpus_hash: corpus.hash_hex(),
        prompt_set_hash: hex::encode(Sha256::digest(&canonical)),
        prompts,
    })
}

fn pick(rng: &mut PromptRng, len: usize) -> usize {
    rng.below(len as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Corpus {
        let text: String = (0..400)
            .map(|i| format!("Paragraph {i} says something about caching and tokens.\n\n"))
            .collect();
        Corpus::new(vec![
            ("a.txt".into(), text),
            ("b.txt".into(), "Short.\n".into()),
        ])
        .unwrap()
    }

    fn templates() -> Templates {
        Templates::from_json(
            r#"{"system":["Be brief."],"long":["Summarise:\n{passage}"],"short":["Explain: {passage}"]}"#,
        )
        .unwrap()
    }

    fn hash(b: u8) -> BlockHash {
        BlockHash([b; 32])
    }

    #[test]
    fn same_seed_same_prompts_other_seed_other_prompts() {
        let shape = WorkloadShape::default();
        let a = generate(&hash(1), &corpus(), &templates(), &shape).unwrap();
        let b = generate(&hash(1), &corpus(), &templates(), &shape).unwrap();
        let c = generate(&hash(2), &corpus(), &templates(), &shape).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.prompt_set_hash, c.prompt_set_hash);
        assert_eq!(a.prompts.len(), 82);
        assert_eq!(a.phase(Phase::Latency).count(), 16);
        assert_eq!(
            a.phase(Phase::Throughput)
                .filter(|p| p.kind == PromptKind::Long)
                .count(),
            16
        );
    }

    #[test]
    fn passages_respect_the_size_ranges() {
        let shape = WorkloadShape::default();
        let set = generate(&hash(3), &corpus(), &templates(), &shape).unwrap();
        for p in &set.prompts {
            let lo = match p.kind {
                PromptKind::Long => shape.long_tokens.0,
                PromptKind::Short => shape.short_tokens.0,
            };
            assert!(p.approx_tokens >= lo, "{} < {lo}", p.approx_tokens);
        }
    }

    #[test]
    fn corpus_order_does_not_matter_but_content_does() {
        let x = || ("x".to_string(), "one\n\ntwo".to_string());
        let y = || ("y".to_string(), "three".to_string());
        let a = Corpus::new(vec![x(), y()]).unwrap();
        let b = Corpus::new(vec![y(), x()]).unwrap();
        let c = Corpus::new(vec![x(), ("y".into(), "three!".into())]).unwrap();
        assert_eq!(a.hash_hex(), b.hash_hex());
        assert_ne!(a.hash_hex(), c.hash_hex());
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert_eq!(Corpus::new(vec![]).err(), Some(WorkloadError::EmptyCorpus));
        assert!(Templates::from_json(r#"{"long":["no slot"],"short":["{passage}"]}"#).is_err());
        assert!(Templates::from_json(r#"{"long":[],"short":["{passage}"]}"#).is_err());
        assert!("0x12".parse::<BlockHash>().is_err());
        let unchecked = Templates {
            system: vec![],
            long: vec![],
            short: vec![],
        };
        let shape = WorkloadShape::default();
        assert!(generate(&hash(1), &corpus(), &unchecked, &shape).is_err());
        let huge = WorkloadShape {
            long_tokens: (1, usize::MAX),
            ..shape
        };
        assert!(generate(&hash(1), &corpus(), &templates(), &huge).is_err());
        let h = hash(9);
        assert_eq!(h.to_string().parse::<BlockHash>().unwrap(), h);
    }
}
