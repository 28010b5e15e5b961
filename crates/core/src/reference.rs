//! Strict validation of what a miner commits: a Docker image reference and a content digest.
//!
//! The image grammar is the one of the Docker distribution project (`reference/regexp.go`),
//! narrowed to what a validator can pull safely: an optional registry `host[:port]`, a
//! lowercase repository path, an optional tag and *no* embedded digest (the digest is a
//! separate, mandatory field, so there is exactly one source of truth for what gets pulled).
//! IPv6 registry literals are not accepted; no public registry needs them.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// Longest reference we accept, registry and tag included.
pub const MAX_IMAGE_REF_LEN: usize = 255;

/// Why an image reference or a digest was refused. Stable codes end up in the status API.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ReferenceError {
    #[error("image reference is empty")]
    EmptyImage,
    #[error("image reference is longer than {MAX_IMAGE_REF_LEN} characters")]
    ImageTooLong,
    #[error("image reference must not embed a digest; commit it in the `digest` field")]
    EmbeddedDigest,
    #[error("image reference does not follow the Docker reference grammar")]
    ImageGrammar,
    #[error("digest must be `sha256:` followed by 64 lowercase hex characters")]
    DigestFormat,
}

// Distribution grammar, anchored. The domain alternative is tried first, exactly as Docker
// does, but only taken when the first component looks like a host (has `.` or `:`, or is
// `localhost`); `ImageRef::parse` enforces that split.
static DOMAIN_COMPONENT: &str = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
static PATH_COMPONENT: &str = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
static TAG: &str = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";

static DOMAIN_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"^{DOMAIN_COMPONENT}(?:\.{DOMAIN_COMPONENT})*(?::[0-9]+)?$"
    ))
    .expect("static regex")
});
static PATH_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r"^{PATH_COMPONENT}(?:/{PATH_COMPONENT})*$")).expect("static regex")
});
static TAG_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!("^{TAG}$")).expect("static regex"));
static DIGEST_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^sha256:[0-9a-f]{64}$").expect("static regex"));

/// A validated image reference such as `ghcr.io/org/server:v2`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageRef {
    raw: String,
    /// Byte length of the registry part (`host[:port]`), 0 when absent.
    domain_len: usize,
    /// Byte offset of `:tag` (of the colon), if a tag is present.
    tag_at: Option<usize>,
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::EmptyImage);
        }
        if s.len() > MAX_IMAGE_REF_LEN {
            return Err(ReferenceError::ImageTooLong);
        }
        if s.contains('@') {
            return Err(ReferenceError::EmbeddedDigest);
        }
        // A tag is whatever follows the last ':' when no '/' comes after it; a ':' before a
        // '/' belongs to the registry port.
        let tag_at = s.rfind(':').filter(|&i| !s[i..].contains('/'));
        let name = &s[..tag_at.unwrap_or(s.len())];
        if let Some(i) = tag_at {
            if !TAG_RE.is_match(&s[i + 1..]) {
                return Err(ReferenceError::ImageGrammar);
            }
        }
        let (domain_len, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                if !DOMAIN_RE.is_match(first) {
                    return Err(ReferenceError::ImageGrammar);
                }
                (first.len(), rest)
            }
            _ => (0, name),
        };
        if !PATH_RE.is_match(path) {
            return Err(ReferenceError::ImageGrammar);
        }
        Ok(Self {
            raw: s.to_owned(),
            domain_len,
            tag_at,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The registry host (with port), if the reference names one.
    pub fn registry(&self) -> Option<&str> {
        (self.domain_len > 0).then(|| &self.raw[..self.domain_len])
    }

    /// The reference without its tag: what `name@digest` is built from.
    pub fn repository(&self) -> &str {
        &self.raw[..self.tag_at.unwrap_or(self.raw.len())]
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag_at.map(|i| &self.raw[i + 1..])
    }

    /// The pull-by-digest form `repository@sha256:…`; the tag is informative only.
    pub fn pinned(&self, digest: &Digest) -> String {
        format!("{}@{}", self.repository(), digest)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for ImageRef {
    type Error = ReferenceError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<ImageRef> for String {
    fn from(r: ImageRef) -> Self {
        r.raw
    }
}

/// A content digest, `sha256:` plus 64 lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        if DIGEST_RE.is_match(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(ReferenceError::DigestFormat)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Digest {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Digest {
    type Error = ReferenceError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> Self {
        d.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_of_a_full_reference() {
        let r = ImageRef::parse("registry.local:5000/ns/x:v1").unwrap();
        assert_eq!(r.registry(), Some("registry.local:5000"));
        assert_eq!(r.repository(), "registry.local:5000/ns/x");
        assert_eq!(r.tag(), Some("v1"));
        let d = Digest::parse(&format!("sha256:{}", "ab".repeat(32))).unwrap();
        assert_eq!(
            r.pinned(&d),
            format!("registry.local:5000/ns/x@sha256:{}", "ab".repeat(32))
        );
    }

    #[test]
    fn port_without_tag_is_not_a_tag() {
        let r = ImageRef::parse("localhost:5000/miner").unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.registry(), Some("localhost:5000"));
    }
}
