//! What an image *is*, independent of how it was tagged or when it was built: the copy rule
//! beyond identical digests. A rebuild of someone else's image (the same layers, a new
//! label or build time) has a new digest but the same content; so does a re-push through
//! another registry. Two images are the same server when they have the same filesystem
//! layers (the uncompressed layer digests, `rootfs.diff_ids`, which the engine computes
//! itself on pull) and the same way of starting it (entrypoint, command, environment,
//! working directory, user). Labels, history and timestamps are left out: they change
//! nothing a server does. Two servers differing only in their launch flags or environment
//! (the same vLLM image with other options) are different content.
//!
//! Exact equality only: a copier who also changes one byte escapes this rule, and is then
//! left to the confirmation rule (`confirm`), which does not crown an equally fast server.

use serde::Serialize;
use sha2::{Digest as _, Sha256};

/// The parts of an image that decide what its server does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImageContent {
    /// `sha256:…` of every uncompressed layer, bottom first.
    pub diff_ids: Vec<String>,
    /// What the container runs: the entrypoint followed by the command (the pod adds no
    /// arguments of its own), so moving an argument from one to the other changes nothing.
    pub argv: Vec<String>,
    /// `NAME=value` pairs; their order does not matter.
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
}

impl ImageContent {
    /// `sha256:` + hex of the SHA-256 of the content's canonical JSON (environment sorted).
    pub fn id(&self) -> String {
        let mut canonical = self.clone();
        canonical.env.sort();
        canonical.env.dedup();
        // Serializing a struct of strings cannot fail; an empty body would still hash.
        let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
        format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vllm() -> ImageContent {
        ImageContent {
            diff_ids: vec![format!("sha256:{}", "a".repeat(64))],
            argv: vec![
                "vllm".into(),
                "serve".into(),
                "--port".into(),
                "8000".into(),
            ],
            env: vec!["PATH=/usr/bin".into(), "HF_HOME=/tmp".into()],
            working_dir: "/app".into(),
            user: String::new(),
        }
    }

    #[test]
    fn the_environments_order_is_not_content_but_everything_else_is() {
        let a = vllm();
        let mut reordered = a.clone();
        reordered.env.reverse();
        assert_eq!(a.id(), reordered.id());
        assert!(a.id().starts_with("sha256:") && a.id().len() == 71);
        let changes: [fn(&mut ImageContent); 6] = [
            |c| c.diff_ids.push(format!("sha256:{}", "b".repeat(64))),
            |c| c.argv.push("--x".into()),
            |c| c.argv[3] = "8001".into(),
            |c| c.env.push("VLLM_USE_V1=1".into()),
            |c| c.working_dir = "/srv".into(),
            |c| c.user = "1000".into(),
        ];
        for change in changes {
            let mut b = a.clone();
            change(&mut b);
            assert_ne!(a.id(), b.id(), "{b:?}");
        }
    }
}
