//! The one error type of the S3 hand-off. Callers mostly need to tell three things apart:
//! S3 is down for now (wait and try again later), a document was refused (never use it),
//! and S3 refused us for good (configuration or permissions: an operator must act).

use crate::EnvelopeError;

#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    /// S3 did not answer usefully after every retry (network, timeout, 5xx, throttling).
    #[error("S3 unavailable ({op} {key}): {detail}")]
    Unavailable {
        op: &'static str,
        key: String,
        detail: String,
    },
    /// A document was read but refused (corrupt JSON, unknown major schema, bad/missing MAC,
    /// wrong shape, too large). Nothing from it may be used.
    #[error("refused {key}: {source}")]
    Refused {
        key: String,
        #[source]
        source: EnvelopeError,
    },
    /// S3 answered with a non-retryable error (403 access denied, no such bucket, ...).
    #[error("S3 error ({op} {key}): {detail}")]
    S3 {
        op: &'static str,
        key: String,
        detail: String,
    },
    #[error("invalid hand-off configuration: {0}")]
    Config(String),
}

impl HandoffError {
    /// True when S3 could not be reached (or kept failing) and the same call may well
    /// succeed later; false when retrying cannot help.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, HandoffError::Unavailable { .. })
    }
}
