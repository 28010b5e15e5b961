//! The hand-off between the host and the pods (SPEC §5). Everything they exchange is a JSON
//! document in S3; this crate defines how a document is written and read back: a schema
//! version every reader checks, and an HMAC when the operator configured a shared secret.
//! The S3 layout, leases and the document types build on this.

pub mod documents;
pub mod envelope;
mod error;
pub mod layout;
mod lease;
mod s3;
#[cfg(feature = "testing")]
pub mod testing;

pub use envelope::{open, seal, EnvelopeError, HandoffSecret, SCHEMA_MAJOR, SCHEMA_VERSION};
pub use error::HandoffError;
pub use lease::{Claim, Lease, LeaseDoc};
pub use s3::{Bucket, Condition, Put, Retry, S3Config};
