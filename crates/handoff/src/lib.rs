//! The hand-off between the host and the pods (SPEC §5). Everything they exchange is a JSON
//! document in S3; this crate defines how a document is written and read back: a schema
//! version every reader checks, and an HMAC when the operator configured a shared secret.
//! The S3 layout, leases and the document types build on this.

pub mod envelope;

pub use envelope::{open, seal, EnvelopeError, HandoffSecret, SCHEMA_MAJOR, SCHEMA_VERSION};
