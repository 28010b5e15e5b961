//! The hand-off bucket as both daemons open it from their flags.

use anyhow::Context;
use cacheon_handoff::{Bucket, HandoffSecret, Retry, S3Config};

use crate::args::HandoffArgs;

pub fn bucket(a: &HandoffArgs) -> anyhow::Result<Bucket> {
    let cfg = S3Config {
        endpoint: a.s3_endpoint.clone(),
        region: a.s3_region.clone(),
        bucket: a.s3_bucket.clone(),
        prefix: a.s3_prefix.clone(),
        access_key_id: a.s3_access_key_id.clone(),
        secret_access_key: a.s3_secret_access_key.clone(),
        force_path_style: a.s3_path_style,
    };
    let secret = a
        .handoff_secret
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| HandoffSecret::new(s.as_bytes().to_vec()));
    if secret.is_none() {
        if !a.insecure_no_handoff_mac {
            anyhow::bail!(
                "CACHEON_HANDOFF_SECRET is not set: hand-off documents would not be \
                 authenticated. Set the same secret on the host and every pod (for example \
                 `openssl rand -hex 32`), or pass --insecure-no-handoff-mac for a throwaway \
                 local setup"
            );
        }
        tracing::warn!("--insecure-no-handoff-mac: hand-off documents are not authenticated");
    }
    let retry = Retry {
        attempts: a.s3_attempts,
        ..Retry::default()
    };
    Bucket::new(&cfg, secret, retry).context("hand-off bucket configuration")
}
