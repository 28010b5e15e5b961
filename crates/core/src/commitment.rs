//! From the bytes a miner put on chain to a validated [`Commitment`].
//!
//! Decoding is lenient because miners commit through different tools: plain JSON, `0x` hex
//! (nested up to [`MAX_HEX_DEPTH`] times), and a SCALE compact length prefix in front of the
//! JSON or hex all occur. Validation afterwards is strict: exactly one way to be accepted. The
//! input comes from the chain, i.e. from anyone: every path returns an error, none panics.

use std::borrow::Cow;

use parity_scale_codec::{Compact, Decode};
use serde::{Deserialize, Serialize};

use crate::reference::{Digest, ImageRef, ReferenceError};

/// How many `0x` hex layers we unwrap before giving up.
pub const MAX_HEX_DEPTH: usize = 3;
/// Commitments are small JSON objects; anything larger is not one (and is not worth parsing).
pub const MAX_COMMITMENT_BYTES: usize = 16 * 1024;

/// A miner's validated commitment: what to pull and which content it must have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commitment {
    pub image: ImageRef,
    pub digest: Digest,
}

/// Why a commitment was refused; `code()` is what the miner sees.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
pub enum CommitmentError {
    #[error("commitment is empty")]
    Empty,
    #[error("commitment is larger than {MAX_COMMITMENT_BYTES} bytes")]
    TooLarge,
    #[error("commitment is not valid UTF-8")]
    NotUtf8,
    #[error("commitment has invalid hex after `0x`")]
    BadHex,
    #[error("commitment nests hex more than {MAX_HEX_DEPTH} levels deep")]
    TooDeep,
    #[error("commitment is not JSON")]
    NotJson,
    #[error("commitment JSON is not an object")]
    NotObject,
    #[error("commitment has no `image` string field")]
    MissingImage,
    #[error("commitment has no `digest` string field")]
    MissingDigest,
    #[error("invalid image: {0}")]
    Image(ReferenceError),
    #[error("invalid digest: {0}")]
    Digest(ReferenceError),
}

impl CommitmentError {
    const IMAGE_CODES: [(ReferenceError, &'static str); 4] = [
        (ReferenceError::EmptyImage, "image_empty"),
        (ReferenceError::ImageTooLong, "image_too_long"),
        (ReferenceError::EmbeddedDigest, "image_embeds_digest"),
        (ReferenceError::ImageGrammar, "image_grammar"),
    ];

    /// Stable reason code, e.g. `image_grammar`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::TooLarge => "too_large",
            Self::NotUtf8 => "not_utf8",
            Self::BadHex => "bad_hex",
            Self::TooDeep => "too_deep",
            Self::NotJson => "not_json",
            Self::NotObject => "not_object",
            Self::MissingImage => "missing_image",
            Self::MissingDigest => "missing_digest",
            Self::Digest(_) => "digest_format",
            Self::Image(e) => Self::IMAGE_CODES
                .iter()
                .find(|(k, _)| k == e)
                .map_or("image_grammar", |(_, c)| c),
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        let simple = [
            Self::Empty,
            Self::TooLarge,
            Self::NotUtf8,
            Self::BadHex,
            Self::TooDeep,
            Self::NotJson,
            Self::NotObject,
            Self::MissingImage,
            Self::MissingDigest,
            Self::Digest(ReferenceError::DigestFormat),
        ];
        simple.into_iter().find(|e| e.code() == code).or_else(|| {
            Self::IMAGE_CODES
                .iter()
                .find(|(_, c)| *c == code)
                .map(|(e, _)| Self::Image(e.clone()))
        })
    }
}

/// Decodes and validates raw on-chain commitment bytes.
pub fn decode_commitment(raw: &[u8]) -> Result<Commitment, CommitmentError> {
    if raw.len() > MAX_COMMITMENT_BYTES {
        return Err(CommitmentError::TooLarge);
    }
    let json = unwrap_layers(raw)?;
    if json.is_empty() {
        return Err(CommitmentError::Empty);
    }
    let text = std::str::from_utf8(&json).map_err(|_| CommitmentError::NotUtf8)?;
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|_| CommitmentError::NotJson)?;
    let object = value.as_object().ok_or(CommitmentError::NotObject)?;
    let field = |name| object.get(name).and_then(serde_json::Value::as_str);
    let image = field("image").ok_or(CommitmentError::MissingImage)?;
    let digest = field("digest").ok_or(CommitmentError::MissingDigest)?;
    Ok(Commitment {
        image: ImageRef::parse(image).map_err(CommitmentError::Image)?,
        digest: Digest::parse(digest).map_err(CommitmentError::Digest)?,
    })
}

/// Peels SCALE prefixes and `0x` hex layers until what is left should be JSON.
fn unwrap_layers(raw: &[u8]) -> Result<Cow<'_, [u8]>, CommitmentError> {
    let mut bytes = Cow::Borrowed(raw);
    let mut hex_layers = 0;
    loop {
        if let Some(inner) = strip_scale_prefix(&bytes) {
            bytes = Cow::Owned(inner.to_vec());
        }
        let trimmed = bytes.trim_ascii();
        let Some(hex_digits) = trimmed
            .strip_prefix(b"0x")
            .or_else(|| trimmed.strip_prefix(b"0X"))
        else {
            return Ok(Cow::Owned(trimmed.to_vec()));
        };
        if hex_layers == MAX_HEX_DEPTH {
            return Err(CommitmentError::TooDeep);
        }
        hex_layers += 1;
        bytes = Cow::Owned(hex::decode(hex_digits).map_err(|_| CommitmentError::BadHex)?);
    }
}

/// Returns the body when `bytes` is a SCALE compact length followed by exactly that many
/// bytes of JSON or hex. Plain JSON (`{` reads as a 4-byte-mode prefix that cannot match)
/// and plain hex (`0` announces 12 bytes that would have to start with `{` or `0x`, not
/// `x`) never match; at worst one leading whitespace byte is taken as a prefix, which the
/// trim that follows would have removed anyway.
fn strip_scale_prefix(bytes: &[u8]) -> Option<&[u8]> {
    let mut rest = bytes;
    let len = Compact::<u32>::decode(&mut rest).ok()?.0;
    (usize::try_from(len).ok()? == rest.len() && looks_like_payload(rest)).then_some(rest)
}

fn looks_like_payload(bytes: &[u8]) -> bool {
    let t = bytes.trim_ascii_start();
    t.starts_with(b"{") || t.starts_with(b"0x") || t.starts_with(b"0X")
}

#[cfg(test)]
mod tests {
    use super::*;
    use parity_scale_codec::Encode;

    const DIGEST: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn json() -> String {
        format!(r#"{{"image":"ghcr.io/org/x:v1","digest":"{DIGEST}","note":1}}"#)
    }

    fn hex_wrap(s: &[u8]) -> Vec<u8> {
        format!("0x{}", hex::encode(s)).into_bytes()
    }

    #[test]
    fn every_lenient_encoding_decodes() {
        let plain = json().into_bytes();
        let scale = json().encode();
        let once = hex_wrap(&plain);
        let thrice = hex_wrap(&hex_wrap(&hex_wrap(&plain)));
        let scale_of_hex = String::from_utf8(hex_wrap(&plain)).unwrap().encode();
        let hex_of_scale = hex_wrap(&scale);
        for raw in [plain, scale, once, thrice, scale_of_hex, hex_of_scale] {
            let c = decode_commitment(&raw).unwrap();
            assert_eq!(c.image.as_str(), "ghcr.io/org/x:v1");
            assert_eq!(c.digest.as_str(), DIGEST);
        }
    }

    #[test]
    fn a_prefix_byte_that_is_whitespace_is_still_a_prefix() {
        // Compact two-byte mode for lengths 64..=16383 can start with 0x09 (TAB).
        let padded = format!(
            r#"{{"image":"a/b","digest":"{DIGEST}","pad":"{}"}}"#,
            "x".repeat(7874 - 110)
        );
        let mut body = padded.clone().into_bytes();
        body.resize(7874, b' ');
        let raw = String::from_utf8(body).unwrap().encode();
        assert_eq!(raw[0], 0x09);
        assert!(decode_commitment(&raw).is_ok());
    }

    #[test]
    fn refusals_carry_their_reason() {
        let four = hex_wrap(&hex_wrap(&hex_wrap(&hex_wrap(json().as_bytes()))));
        let cases: Vec<(Vec<u8>, CommitmentError)> = vec![
            (b"".to_vec(), CommitmentError::Empty),
            (b"   ".to_vec(), CommitmentError::Empty),
            (four, CommitmentError::TooDeep),
            (b"0xzz".to_vec(), CommitmentError::BadHex),
            (vec![0xff, 0xfe], CommitmentError::NotUtf8),
            (b"{nope".to_vec(), CommitmentError::NotJson),
            (b"[1,2]".to_vec(), CommitmentError::NotObject),
            (br#"{"digest":"x"}"#.to_vec(), CommitmentError::MissingImage),
            (
                br#"{"image":"a/b","digest":5}"#.to_vec(),
                CommitmentError::MissingDigest,
            ),
            (
                format!(r#"{{"image":"A/b","digest":"{DIGEST}"}}"#).into_bytes(),
                CommitmentError::Image(ReferenceError::ImageGrammar),
            ),
            (
                br#"{"image":"a/b","digest":"sha256:ABC"}"#.to_vec(),
                CommitmentError::Digest(ReferenceError::DigestFormat),
            ),
            (
                vec![b' '; MAX_COMMITMENT_BYTES + 1],
                CommitmentError::TooLarge,
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(decode_commitment(&raw), Err(want.clone()), "{raw:?}");
            assert_eq!(CommitmentError::from_code(want.code()), Some(want));
        }
    }
}
