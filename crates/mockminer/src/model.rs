//! A toy language model that is cheap, deterministic and shaped like a real one.
//!
//! - Tokens are words with their leading whitespace (`" foo"`), so the text a server streams
//!   re-tokenises to exactly the tokens it generated, as with a real BPE on plain words.
//! - The next-token distribution depends on the last three tokens and the position only.
//!   One candidate is strongly preferred (greedy is well defined); at about one position in
//!   twenty a second candidate is a near-tie 0.2 nats behind, the case where real kernels
//!   on different hardware may legitimately disagree.
//! - End-of-sequence becomes top-1 at context-dependent points, so some answers stop before
//!   `max_tokens` and some do not.
//!
//! Every number comes from `mix`, a fixed integer hash, so any machine computes the same
//! logprobs bit for bit.

use std::collections::HashMap;

use cacheon_core::gate::TokenId;

/// End of sequence.
pub const EOS: TokenId = 0;
pub const EOS_TEXT: &str = "<|im_end|>";
/// Words in the vocabulary (ids 1..=VOCAB).
const VOCAB: u32 = 512;
/// Ids for prompt pieces outside the vocabulary start here.
const UNKNOWN_BASE: u32 = 1_000_000;
/// How many candidates a step reports, as `top_logprobs: 5` asks.
pub const TOP_K: usize = 5;

const PREFERRED_BOOST: f64 = 8.0;
const NEAR_TIE_GAP: f64 = 0.2;
const NEAR_TIE_EVERY: u64 = 20;
const EOS_EVERY: u64 = 90;
const NEAR_STOP_EVERY: u64 = 150;

/// One generated position: the token, its logprob and the model's top-k there.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub token: TokenId,
    pub logprob: f64,
    pub top: Vec<(TokenId, f64)>,
}

pub struct ToyModel {
    words: Vec<String>,
    ids: HashMap<String, TokenId>,
}

impl Default for ToyModel {
    fn default() -> Self {
        Self::new()
    }
}

impl ToyModel {
    pub fn new() -> Self {
        const ONSETS: [&str; 16] = [
            "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
        ];
        const VOWELS: [&str; 8] = ["a", "e", "i", "o", "u", "ai", "ou", "ea"];
        const CODAS: [&str; 4] = ["", "n", "st", "rk"];
        let words = (0..VOCAB as usize)
            .map(|i| {
                let (o, v, c) = (i % 16, (i / 16) % 8, (i / 128) % 4);
                format!(" {}{}{}", ONSETS[o], VOWELS[v], CODAS[c])
            })
            .collect::<Vec<String>>();
        let ids = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as TokenId + 1))
            .collect();
        Self { words, ids }
    }

    /// The id of a piece of text, for pieces as `tokenize` cuts them.
    pub fn piece_id(&self, piece: &str) -> TokenId {
        if piece == EOS_TEXT {
            return EOS;
        }
        if let Some(&id) = self.ids.get(piece) {
            return id;
        }
        let h = piece.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        UNKNOWN_BASE + (h % 1_000_000) as u32
    }

    /// The text of a token, `None` for ids the model never generates.
    pub fn text(&self, id: TokenId) -> Option<&str> {
        match id {
            EOS => Some(EOS_TEXT),
            1..=VOCAB => self.words.get(id as usize - 1).map(String::as_str),
            _ => None,
        }
    }

    /// Token ids of the `pieces` of `text`.
    pub fn tokenize(&self, text: &str) -> Vec<TokenId> {
        pieces(text).map(|p| self.piece_id(p)).collect()
    }

    /// Log-probabilities of every candidate (index = token id, 0 = EOS) after `context`.
    pub fn logprobs(&self, context: &[TokenId]) -> Vec<f64> {
        let tail: Vec<TokenId> = context.iter().rev().take(3).copied().collect();
        // The position (mod a prime) makes different prompts answer differently although
        // every chat prompt ends with the same template tokens.
        let seed = mix(0x9e37_79b9_7f4a_7c15 ^ (context.len() as u64 % 1009));
        let ctx = tail.iter().fold(seed, |h, &t| mix(h ^ u64::from(t)));
        let preferred = 1 + (mix(ctx ^ 1) % u64::from(VOCAB)) as usize;
        let runner_up = 1 + (mix(ctx ^ 2) % u64::from(VOCAB)) as usize;
        let near_tie = mix(ctx ^ 3).is_multiple_of(NEAR_TIE_EVERY) && runner_up != preferred;
        let stop = mix(ctx ^ 4).is_multiple_of(EOS_EVERY);
        // Now and then end-of-sequence is a near-tie runner-up: an honest server may stop.
        let near_stop = !stop && mix(ctx ^ 5).is_multiple_of(NEAR_STOP_EVERY);

        let mut logits: Vec<f64> = (0..=VOCAB as usize)
            .map(|c| unit(mix(ctx ^ (c as u64).wrapping_mul(0x2545_f491_4f6c_dd1d))) * 2.0)
            .collect();
        logits[preferred] += PREFERRED_BOOST;
        if near_tie {
            logits[runner_up] = logits[preferred] - NEAR_TIE_GAP;
        }
        logits[EOS as usize] = if stop {
            logits[preferred] + 1.0
        } else if near_stop {
            logits[preferred] - NEAR_TIE_GAP
        } else {
            -20.0
        };

        let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let log_z = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
        logits.into_iter().map(|l| l - log_z).collect()
    }

    /// The top-k `(token, logprob)` after `context`, best first (ties by lower id).
    pub fn top(&self, context: &[TokenId], k: usize) -> Vec<(TokenId, f64)> {
        top_of(&self.logprobs(context), k)
    }

    /// Greedy decoding of up to `max_tokens` tokens after `prompt`; stops after EOS (which
    /// is included as the last step).
    pub fn generate(&self, prompt: &[TokenId], max_tokens: usize) -> Vec<Step> {
        self.generate_with(prompt, max_tokens, |_, top| top[0].0)
    }

    /// Decoding where `choose(position, top_k)` picks each token (a fault mode bending the
    /// greedy choice); the step reports the model's true logprob of the chosen token.
    pub fn generate_with(
        &self,
        prompt: &[TokenId],
        max_tokens: usize,
        mut choose: impl FnMut(usize, &[(TokenId, f64)]) -> TokenId,
    ) -> Vec<Step> {
        let mut context = prompt.to_vec();
        let mut steps = Vec::with_capacity(max_tokens.min(4096));
        for position in 0..max_tokens {
            let lps = self.logprobs(&context);
            let top = top_of(&lps, TOP_K);
            if top.is_empty() {
                break;
            }
            let token = choose(position, &top);
            let logprob = lps
                .get(token as usize)
                .copied()
                .unwrap_or(f64::NEG_INFINITY);
            steps.push(Step {
                token,
                logprob,
                top,
            });
            if token == EOS {
                break;
            }
            context.push(token);
        }
        steps
    }

    /// Number of tokens the model can generate (EOS and the words); ids outside are prompt
    /// pieces only.
    pub fn vocab_len(&self) -> u32 {
        VOCAB + 1
    }
}

impl ToyModel {
    /// Teacher forcing (vLLM's `prompt_logprobs` over an assistant continuation): for each
    /// token of `output`, the model's logprob of it and its top-k, given everything before.
    pub fn teacher_force(&self, prompt: &[TokenId], output: &[TokenId], k: usize) -> Vec<Step> {
        let mut context = prompt.to_vec();
        output
            .iter()
            .map(|&token| {
                let lps = self.logprobs(&context);
                let logprob = lps
                    .get(token as usize)
                    .copied()
                    .unwrap_or(f64::NEG_INFINITY);
                context.push(token);
                Step {
                    token,
                    logprob,
                    top: top_of(&lps, k),
                }
            })
            .collect()
    }
}

/// The pieces `tokenize` cuts text into: leading whitespace plus a run of non-whitespace.
pub fn pieces(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let word_start = rest
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(rest.len());
        let word_end = rest[word_start..]
            .find(char::is_whitespace)
            .map_or(rest.len(), |i| word_start + i);
        let (piece, tail) = rest.split_at(word_end);
        rest = tail;
        Some(piece)
    })
}

/// The `k` best `(token, logprob)` of a distribution, best first, ties by lower id.
pub fn top_of(logprobs: &[f64], k: usize) -> Vec<(TokenId, f64)> {
    let better = |a: &(TokenId, f64), b: &(TokenId, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let mut ranked: Vec<(TokenId, f64)> = logprobs
        .iter()
        .enumerate()
        .map(|(i, &lp)| (i as TokenId, lp))
        .collect();
    // Selection first: teacher forcing ranks every position of long prompts.
    if k > 0 && k < ranked.len() {
        ranked.select_nth_unstable_by(k - 1, better);
    }
    ranked.truncate(k);
    ranked.sort_by(better);
    ranked
}

/// 1-based rank of `token` in a distribution (vLLM's `rank`); tokens the model never
/// generates rank after the whole vocabulary.
pub fn rank_of(logprobs: &[f64], token: TokenId) -> usize {
    match logprobs.get(token as usize) {
        Some(&lp) => 1 + logprobs.iter().filter(|&&other| other > lp).count(),
        None => logprobs.len() + 1,
    }
}

/// splitmix64's finaliser: a fixed, well-distributed 64-bit mix.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A deterministic uniform draw in [0, 1) keyed by `x`.
pub fn unit_hash(x: u64) -> f64 {
    unit(mix(x))
}

/// Uniform in [0, 1) from the top 53 bits.
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(m: &ToyModel) -> Vec<TokenId> {
        m.tokenize("Summarise the chapter on ownership, please.")
    }

    #[test]
    fn generated_text_retokenises_to_the_same_tokens() {
        let m = ToyModel::new();
        let steps = m.generate(&prompt(&m), 256);
        let ids: Vec<TokenId> = steps
            .iter()
            .map(|s| s.token)
            .filter(|&t| t != EOS)
            .collect();
        let text: String = ids.iter().map(|&t| m.text(t).unwrap()).collect();
        assert_eq!(m.tokenize(&text), ids);
    }

    #[test]
    fn deterministic_normalised_and_greedy_is_top_1() {
        let m = ToyModel::new();
        let a = m.generate(&prompt(&m), 64);
        assert_eq!(a, m.generate(&prompt(&m), 64));
        let lps = m.logprobs(&prompt(&m));
        let total: f64 = lps.iter().map(|l| l.exp()).sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
        for s in &a {
            assert_eq!(s.top.len(), TOP_K);
            assert_eq!((s.token, s.logprob), s.top[0]);
        }
    }

    #[test]
    fn near_ties_and_early_stops_happen_at_the_designed_rates() {
        let m = ToyModel::new();
        let (mut positions, mut ties, mut stops) = (0, 0, 0);
        for i in 0..200 {
            let steps = m.generate(&m.tokenize(&format!("prompt number {i}")), 256);
            stops += usize::from(steps.last().is_some_and(|s| s.token == EOS));
            for s in &steps {
                positions += 1;
                ties += usize::from(s.top[0].1 - s.top[1].1 < 0.5);
            }
        }
        let tie_rate = ties as f64 / positions as f64;
        assert!((0.02..0.10).contains(&tie_rate), "near-tie rate {tie_rate}");
        assert!((20..=190).contains(&stops), "{stops} of 200 stopped early");
    }
}
