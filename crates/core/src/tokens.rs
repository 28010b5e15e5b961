//! Which tokens a server generated, read from what it streamed.
//!
//! Teacher forcing must force the tokens the server actually produced: a model may generate
//! a split of its text that is not the tokenizer's canonical one (`"."`, `"’t"` where BPE
//! would write `".’"`, `"t"`), and forcing the canonical split puts the baseline in contexts
//! nobody chose. The streamed `logprobs.content` entries name those tokens, but in several
//! dialects: a token string, a `bytes` array, vLLM's `token_id:N`; special tokens that are
//! listed although the text skips them; partial UTF-8 characters written as `"\u{fffd}"` per
//! piece (vLLM up to 0.11) or as `""` followed by a piece carrying the whole character
//! (later versions). This module reads them against the baseline's vocabulary and cuts the
//! text into [`Segment`]s: tokens read exactly, and gaps that the caller tokenises
//! canonically. Whatever the stream says, the resolved tokens always spell the text exactly,
//! so a server gains nothing from its choice of split: every check still runs on the
//! baseline's logprobs of these tokens.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::gate::TokenId;

/// How far ahead of a token it could not read the resolver looks for the next token it can.
/// Partial characters span a few bytes; a longer gap is tokenised canonically, and a bound
/// keeps a hostile stream from costing quadratic time.
const RESYNC_WINDOW: usize = 256;

/// One `logprobs.content[]` entry as a server streamed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamedToken {
    pub token: String,
    /// The `bytes` array, when the server sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<Vec<u8>>,
    pub logprob: f64,
}

impl StreamedToken {
    /// The bytes this entry claims to cover: its `bytes` array, else its token string.
    pub fn claimed_bytes(&self) -> &[u8] {
        self.bytes.as_deref().unwrap_or(self.token.as_bytes())
    }
}

/// The baseline's vocabulary, as the resolver needs it.
pub trait Vocabulary {
    /// The regular (non-special) token whose bytes are exactly `bytes`.
    fn id_of_bytes(&self, bytes: &[u8]) -> Option<TokenId>;
    /// The special token written as `text` (`<|im_end|>`), which decoded text omits.
    fn special_id(&self, text: &str) -> Option<TokenId>;
    /// The bytes of a regular token; `None` for special or unknown ids.
    fn bytes_of(&self, id: TokenId) -> Option<&[u8]>;
    fn is_special(&self, id: TokenId) -> bool;
}

/// A piece of the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Streamed entry `entry` is token `id`, spelling `text` (empty for a special token).
    Token {
        id: TokenId,
        entry: usize,
        text: Range<usize>,
    },
    /// Text whose tokens the stream does not tell (tokenise it canonically); `entries` are
    /// the streamed entries that fell inside it.
    Gap {
        text: Range<usize>,
        entries: Range<usize>,
    },
}

/// What one entry says about itself.
#[derive(Debug, Clone)]
enum Piece<'a> {
    /// A regular token with these bytes.
    Regular(TokenId, &'a [u8]),
    /// A special token: in the token sequence, not in the text.
    Special(TokenId),
    /// Nothing usable: `""` (a partial character, newer vLLM), `"\u{fffd}"` (older vLLM),
    /// or text that is no token of the vocabulary.
    Unknown { empty: bool, bytes: &'a [u8] },
}

fn classify<'a>(e: &'a StreamedToken, vocab: &'a dyn Vocabulary) -> Piece<'a> {
    if let Some(id) = e
        .token
        .strip_prefix("token_id:")
        .and_then(|n| n.parse::<TokenId>().ok())
    {
        if vocab.is_special(id) {
            return Piece::Special(id);
        }
        if let Some(b) = vocab.bytes_of(id) {
            return Piece::Regular(id, b);
        }
        return Piece::Unknown {
            empty: false,
            bytes: &[],
        };
    }
    if let Some(id) = vocab.special_id(&e.token) {
        return Piece::Special(id);
    }
    let bytes = e.claimed_bytes();
    if bytes.is_empty() {
        return Piece::Unknown { empty: true, bytes };
    }
    match vocab.id_of_bytes(bytes) {
        Some(id) => Piece::Regular(id, bytes),
        None => Piece::Unknown {
            empty: false,
            bytes,
        },
    }
}

/// Cuts `text` into tokens read from `entries` and gaps to tokenise canonically.
/// The segments cover the text exactly, in order; gaps start and end on character
/// boundaries, so each is a `&str` of its own.
pub fn segment(text: &str, entries: &[StreamedToken], vocab: &dyn Vocabulary) -> Vec<Segment> {
    let t = text.as_bytes();
    let pieces: Vec<Piece> = entries.iter().map(|e| classify(e, vocab)).collect();
    let n = pieces.len();
    let mut out = Vec::with_capacity(n + 1);
    let (mut i, mut c) = (0usize, 0usize);
    while i < n {
        match pieces[i] {
            Piece::Special(id) => {
                out.push(Segment::Token {
                    id,
                    entry: i,
                    text: c..c,
                });
                i += 1;
            }
            Piece::Regular(id, b) if t[c..].starts_with(b) => {
                out.push(Segment::Token {
                    id,
                    entry: i,
                    text: c..c + b.len(),
                });
                c += b.len();
                i += 1;
            }
            _ => {
                let (end_i, end_c) = gap_end(t, &pieces, i, c);
                out.push(Segment::Gap {
                    text: c..end_c,
                    entries: i..end_i,
                });
                i = end_i;
                c = end_c;
            }
        }
    }
    if c < t.len() {
        out.push(Segment::Gap {
            text: c..t.len(),
            entries: n..n,
        });
    }
    on_char_boundaries(text, out)
}

/// Where a gap that starts at entry `i`, text offset `c`, ends: the first later entry that
/// reads exactly again, or a completed partial character, or the end.
fn gap_end(t: &[u8], pieces: &[Piece], i: usize, c: usize) -> (usize, usize) {
    let n = pieces.len();
    // The text offset while every entry so far in the gap had a known extent.
    let mut known = Some(c);
    let mut after_empty = false;
    let mut j = i;
    while j < n {
        match pieces[j] {
            Piece::Unknown { empty: true, .. } => after_empty = true,
            // Newer vLLM: the piece after the empty ones carries the whole character(s).
            Piece::Regular(_, b) | Piece::Unknown { bytes: b, .. } if after_empty => {
                after_empty = false;
                known = known
                    .filter(|&k| t[k..].starts_with(b))
                    .map(|k| k + b.len());
                if let Some(k) = known {
                    return (j + 1, k);
                }
            }
            Piece::Special(_) => {
                if pieces[j..].iter().all(|p| matches!(p, Piece::Special(_))) {
                    return (j, t.len());
                }
            }
            Piece::Regular(_, b) => {
                // Resynchronise at the nearest later place this token spells; at `c` itself
                // only when the gap already holds entries (else it would have read exactly).
                let from = if j == i { c + 1 } else { c };
                let to = t.len().min(c + RESYNC_WINDOW);
                if let Some(p) = (from..=to).find(|&p| t[p..].starts_with(b)) {
                    return (j, p);
                }
                known = None;
            }
            Piece::Unknown { .. } => known = None,
        }
        j += 1;
    }
    (n, t.len())
}

/// Widens gaps to character boundaries (a token may end inside a character), absorbing the
/// neighbouring tokens, and merges adjacent gaps.
fn on_char_boundaries(text: &str, segments: Vec<Segment>) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::with_capacity(segments.len());
    let mut pending: Option<(Range<usize>, Range<usize>)> = None;
    let mut iter = segments.into_iter().peekable();
    while let Some(seg) = iter.next() {
        match seg {
            Segment::Gap { text: tr, entries } => {
                let (mut tr, mut er) = match pending.take() {
                    Some((pt, pe)) => (pt.start..tr.end, pe.start..entries.end),
                    None => (tr, entries),
                };
                // Absorb earlier tokens until the gap starts on a boundary.
                while !text.is_char_boundary(tr.start) {
                    match out.pop() {
                        Some(Segment::Token { entry, text: t, .. }) => {
                            tr.start = t.start;
                            er.start = entry;
                        }
                        Some(Segment::Gap { text: t, entries }) => {
                            tr.start = t.start;
                            er.start = entries.start;
                        }
                        None => {
                            tr.start = 0;
                            er.start = 0;
                        }
                    }
                }
                pending = Some((tr, er));
            }
            Segment::Token {
                id,
                entry,
                text: tr,
            } => match pending.take() {
                // A gap ending inside a character takes this token too.
                Some((pt, pe)) if !text.is_char_boundary(pt.end) => {
                    pending = Some((pt.start..tr.end.max(pt.end), pe.start..entry + 1));
                }
                Some(p) => {
                    out.push(Segment::Gap {
                        text: p.0,
                        entries: p.1,
                    });
                    out.push(Segment::Token {
                        id,
                        entry,
                        text: tr,
                    });
                }
                None => out.push(Segment::Token {
                    id,
                    entry,
                    text: tr,
                }),
            },
        }
        if iter.peek().is_none() {
            if let Some((tr, er)) = pending.take() {
                let end = if text.is_char_boundary(tr.end) {
                    tr.end
                } else {
                    text.len()
                };
                out.push(Segment::Gap {
                    text: tr.start..end,
                    entries: er,
                });
            }
        }
    }
    out
}

/// The output as tokens to force, and which streamed entry claims each one's logprob.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resolved {
    pub tokens: Vec<TokenId>,
    /// Per token, the streamed entry that is that token (`None` inside a gap it could not be
    /// paired with).
    pub entries: Vec<Option<usize>>,
    /// A stop token the stream listed after the text (vLLM's final chunk), and its entry.
    pub stop: Option<(TokenId, usize)>,
    /// How many tokens came from canonical tokenisation of gaps.
    pub canonical: usize,
}

/// Puts the segments together, with `gap_tokens[k]` the canonical tokens (id, bytes) of the
/// k-th gap. Inside a gap, an entry is paired with the canonical token that starts at the
/// same byte and has the same bytes.
pub fn assemble(
    segments: &[Segment],
    gap_tokens: &[Vec<(TokenId, Vec<u8>)>],
    entries: &[StreamedToken],
    stop_ids: &[TokenId],
) -> Resolved {
    let mut r = Resolved::default();
    let mut gaps = gap_tokens.iter();
    for seg in segments {
        match seg {
            Segment::Token { id, entry, .. } => {
                r.tokens.push(*id);
                r.entries.push(Some(*entry));
            }
            Segment::Gap { entries: er, .. } => {
                let canonical = gaps.next().map(Vec::as_slice).unwrap_or_default();
                r.canonical += canonical.len();
                let in_gap = entries.get(er.clone()).unwrap_or_default();
                let mut k = 0usize;
                let mut k_off = 0usize;
                let mut off = 0usize;
                for (id, bytes) in canonical {
                    while k < in_gap.len() && k_off < off {
                        k_off += in_gap[k].claimed_bytes().len();
                        k += 1;
                    }
                    // Zero-width entries (specials, partial pieces) never pair here, nor
                    // does the piece after a partial one: it carries bytes not its own.
                    let mut after_empty = false;
                    while k < in_gap.len() && in_gap[k].claimed_bytes().is_empty() {
                        after_empty = true;
                        k += 1;
                    }
                    let paired = (!after_empty
                        && k < in_gap.len()
                        && k_off == off
                        && in_gap[k].claimed_bytes() == bytes.as_slice())
                    .then_some(er.start + k);
                    r.tokens.push(*id);
                    r.entries.push(paired);
                    off += bytes.len();
                }
            }
        }
    }
    // A stop token after the last text token ends the sequence; it is not an output token.
    if let (Some(&last), Some(&Some(entry))) = (r.tokens.last(), r.entries.last()) {
        if stop_ids.contains(&last) {
            r.tokens.pop();
            r.entries.pop();
            r.stop = Some((last, entry));
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A little byte-level vocabulary: specials, single bytes, and some merges.
    struct Toy {
        by_bytes: HashMap<Vec<u8>, TokenId>,
        bytes: HashMap<TokenId, Vec<u8>>,
        specials: HashMap<String, TokenId>,
    }

    impl Toy {
        fn new() -> Self {
            let mut t = Toy {
                by_bytes: HashMap::new(),
                bytes: HashMap::new(),
                specials: HashMap::new(),
            };
            for b in 0..=255u8 {
                t.add(1000 + u32::from(b), &[b]);
            }
            for (id, s) in [
                (1, "The"),
                (2, " end"),
                (3, "."),
                (4, ".’"),
                (5, "’t"),
                (6, "t"),
                (7, " don"),
                (8, " café"),
                (9, "’"),
            ] {
                t.add(id, s.as_bytes());
            }
            t.specials.insert("<|im_end|>".into(), 50);
            t.specials.insert("<|im_start|>".into(), 51);
            t
        }
        fn add(&mut self, id: TokenId, b: &[u8]) {
            self.by_bytes.insert(b.to_vec(), id);
            self.bytes.insert(id, b.to_vec());
        }
    }

    impl Vocabulary for Toy {
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
            id == 50 || id == 51
        }
    }

    fn e(token: &str) -> StreamedToken {
        StreamedToken {
            token: token.into(),
            bytes: None,
            logprob: -0.1,
        }
    }

    fn eb(token: &str, bytes: &[u8]) -> StreamedToken {
        StreamedToken {
            token: token.into(),
            bytes: Some(bytes.to_vec()),
            logprob: -0.1,
        }
    }

    fn tokens_of(segs: &[Segment]) -> Vec<Option<TokenId>> {
        segs.iter()
            .map(|s| match s {
                Segment::Token { id, .. } => Some(*id),
                Segment::Gap { .. } => None,
            })
            .collect()
    }

    #[test]
    fn a_non_canonical_split_is_forced_as_generated() {
        // The model wrote "." then "’t" where canonical BPE would give ".’" then "t".
        let v = Toy::new();
        let entries = [e("The"), e(" end"), e("."), e("’t")];
        let segs = segment("The end.’t", &entries, &v);
        assert_eq!(tokens_of(&segs), [Some(1), Some(2), Some(3), Some(5)]);
    }

    #[test]
    fn a_special_token_listed_but_skipped_in_the_text_is_kept_in_place() {
        let v = Toy::new();
        let entries = [e("<|im_start|>"), e("The"), e(" end"), e("<|im_end|>")];
        let segs = segment("The end", &entries, &v);
        assert_eq!(tokens_of(&segs), [Some(51), Some(1), Some(2), Some(50)]);
        let r = assemble(&segs, &[], &entries, &[50]);
        assert_eq!(r.tokens, [51, 1, 2]);
        assert_eq!(r.entries, [Some(0), Some(1), Some(2)]);
        assert_eq!(r.stop, Some((50, 3)));
    }

    #[test]
    fn token_id_strings_and_bytes_arrays_are_read() {
        let v = Toy::new();
        let entries = [e("token_id:1"), eb("whatever", b" end"), e("token_id:50")];
        let segs = segment("The end", &entries, &v);
        assert_eq!(tokens_of(&segs), [Some(1), Some(2), Some(50)]);
    }

    #[test]
    fn raw_partial_bytes_read_exactly_even_inside_a_character() {
        // "’" is E2 80 99; the server wrote its two pieces as raw bytes.
        let v = Toy::new();
        let entries = [
            e("The"),
            eb("\\xe2", &[0xe2]),
            eb("\\x80", &[0x80]),
            eb("\\x99", &[0x99]),
        ];
        let segs = segment("The’", &entries, &v);
        assert_eq!(
            tokens_of(&segs),
            [Some(1), Some(1226), Some(1128), Some(1153)]
        );
    }

    #[test]
    fn older_vllm_replacement_characters_become_a_gap_that_ends_where_the_stream_reads_again() {
        // Pieces of "’" written as U+FFFD each (vLLM <= 0.11).
        let v = Toy::new();
        let entries = [e("The"), e("\u{fffd}"), e("\u{fffd}"), e("t"), e(" end")];
        let segs = segment("The’t end", &entries, &v);
        assert_eq!(
            segs,
            [
                Segment::Token {
                    id: 1,
                    entry: 0,
                    text: 0..3
                },
                Segment::Gap {
                    text: 3..6,
                    entries: 1..3
                },
                Segment::Token {
                    id: 6,
                    entry: 3,
                    text: 6..7
                },
                Segment::Token {
                    id: 2,
                    entry: 4,
                    text: 7..11
                },
            ]
        );
        let r = assemble(&segs, &[vec![(9, "’".into())]], &entries, &[50]);
        assert_eq!(r.tokens, [1, 9, 6, 2]);
        assert_eq!(r.entries, [Some(0), None, Some(3), Some(4)]);
        assert_eq!(r.canonical, 1);
    }

    #[test]
    fn newer_vllm_empty_pieces_end_at_the_piece_that_completes_the_character() {
        let v = Toy::new();
        let entries = [e("The"), e(""), e("’t"), e(" end")];
        let segs = segment("The’t end", &entries, &v);
        assert_eq!(
            segs[1],
            Segment::Gap {
                text: 3..7,
                entries: 1..3
            }
        );
        assert_eq!(
            segs[2],
            Segment::Token {
                id: 2,
                entry: 3,
                text: 7..11
            }
        );
        // Canonically the gap is one token "’t"; the completing entry claims the same bytes
        // but was a different token, so it must not be paired.
        let r = assemble(&segs, &[vec![(5, "’t".into())]], &entries, &[]);
        assert_eq!(r.tokens, [1, 5, 2]);
        assert_eq!(r.entries, [Some(0), None, Some(3)]);
    }

    #[test]
    fn entries_for_text_that_is_not_there_never_pair() {
        let v = Toy::new();
        // The server claims " end" twice but wrote it once.
        let entries = [e("The"), e(" end"), e(" end")];
        let segs = segment("The end", &entries, &v);
        let r = assemble(&segs, &[], &entries, &[]);
        assert_eq!(r.tokens, [1, 2]);
        // The third entry is left in a trailing gap of no text.
        assert!(matches!(segs.last(), Some(Segment::Gap { text, .. }) if text.is_empty()));
    }

    #[test]
    fn text_without_entries_is_one_gap() {
        let v = Toy::new();
        let segs = segment("The end", &[], &v);
        assert_eq!(
            segs,
            [Segment::Gap {
                text: 0..7,
                entries: 0..0
            }]
        );
    }

    #[test]
    fn a_gap_inside_a_character_widens_to_its_boundaries() {
        let v = Toy::new();
        // First piece of "é" read exactly, second piece unreadable.
        let entries = [e(" caf"), eb("\\xc3", &[0xc3]), e("\u{fffd}"), e(" end")];
        let text = " café end";
        let segs = segment(text, &entries, &v);
        for s in &segs {
            if let Segment::Gap { text: r, .. } = s {
                assert!(text.is_char_boundary(r.start) && text.is_char_boundary(r.end));
            }
        }
        // The segments still cover the text in order.
        let mut at = 0;
        for s in &segs {
            let r = match s {
                Segment::Token { text, .. } | Segment::Gap { text, .. } => text,
            };
            assert_eq!(r.start, at);
            at = r.end;
        }
        assert_eq!(at, text.len());
    }

    #[test]
    fn hostile_entries_never_panic_and_always_cover_the_text() {
        let v = Toy::new();
        let text = "The end.’t café";
        let menu = [
            e(""),
            e("\u{fffd}"),
            e("<|im_end|>"),
            e("token_id:99999999"),
            e("token_id:1"),
            eb("x", &[0xff]),
            e("The"),
            e("’"),
            e("t"),
            eb("", &[0x80]),
        ];
        for a in 0..menu.len() {
            for b in 0..menu.len() {
                for c in 0..menu.len() {
                    let entries = [menu[a].clone(), menu[b].clone(), menu[c].clone()];
                    let segs = segment(text, &entries, &v);
                    let mut at = 0;
                    for s in &segs {
                        let r = match s {
                            Segment::Token { text, .. } | Segment::Gap { text, .. } => text,
                        };
                        assert_eq!(r.start, at, "{entries:?}");
                        at = r.end;
                    }
                    assert_eq!(at, text.len(), "{entries:?}");
                }
            }
        }
    }
}
