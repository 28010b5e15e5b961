//! Whose fault a container failure is. The miner's faults disqualify (core's
//! `DisqualifyReason`); ours void the round (core's `InfraReason`) and are never charged to
//! a miner. Every error says which it is.

use std::time::Duration;

use cacheon_core::submission::{DisqualifyReason, InfraReason};

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    // The miner's fault.
    #[error("image {image} not found in its registry")]
    ImageNotFound { image: String },
    #[error("pulling {image} was denied: {reason}")]
    PullDenied { image: String, reason: String },
    #[error("pulling {image} failed: {reason}")]
    PullFailed { image: String, reason: String },
    #[error("{image}: the registry serves {found}, not the committed {expected}")]
    DigestMismatch {
        image: String,
        expected: String,
        found: String,
    },
    #[error("{image} is {bytes} bytes, over the limit of {limit}")]
    ImageTooLarge {
        image: String,
        bytes: u64,
        limit: u64,
    },
    #[error("{image} declares VOLUME {paths:?}: the sandbox gives no disk outside its read-only root and scratch")]
    DeclaresVolume { image: String, paths: Vec<String> },
    #[error(
        "{image} sets {names:?}: variables that steer the NVIDIA container toolkit are ours to set"
    )]
    ToolkitVariable { image: String, names: Vec<String> },
    #[error("the engine could not start the image: {0}")]
    StartFailed(String),
    #[error("the container exited with code {exit_code} before it was healthy")]
    Crashed { exit_code: i64 },
    #[error("the container was killed for using more memory than allowed")]
    OomKilled,
    #[error("the container did not answer GET /health with 200 within {0:?}")]
    NeverHealthy(Duration),
    #[error("GET /health answered {status} to `{location}`; redirects are not followed")]
    Redirected { status: u16, location: String },

    // Ours.
    #[error("Docker engine: {0}")]
    Engine(String),
    /// Out of disk while unpacking. Ours, unless the pod checked that the disk had room for
    /// a whole image before the pull (then the image grew past its budget): the pod decides.
    #[error("no space left for images: {0}")]
    DiskFull(String),
    /// A registry the operator runs (a mirror) failed: the operator's infrastructure,
    /// not the miner's choice.
    #[error("the operator's registry failed: {0}")]
    Mirror(String),
    #[error("sandbox network setup failed: {0}")]
    Network(String),
    #[error("GPUs not released in time: {0}")]
    GpuBusy(String),
}

/// Who pays for a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    Miner(DisqualifyReason),
    Infra(InfraReason),
}

impl ContainerError {
    pub fn blame(&self) -> Blame {
        use ContainerError as E;
        match self {
            E::ImageNotFound { .. } => Blame::Miner(DisqualifyReason::ImageNotFound),
            E::PullDenied { .. } => Blame::Miner(DisqualifyReason::PullDenied),
            E::PullFailed { .. } => Blame::Miner(DisqualifyReason::PullFailed),
            E::StartFailed(_) => Blame::Miner(DisqualifyReason::StartFailed),
            E::DeclaresVolume { .. } => Blame::Miner(DisqualifyReason::DeclaredVolume),
            E::ToolkitVariable { .. } => Blame::Miner(DisqualifyReason::ToolkitVariable),
            E::Redirected { .. } => Blame::Miner(DisqualifyReason::Redirected),
            E::DigestMismatch { .. } => Blame::Miner(DisqualifyReason::DigestMismatch),
            E::ImageTooLarge { .. } => Blame::Miner(DisqualifyReason::ImageTooLarge),
            E::Crashed { .. } => Blame::Miner(DisqualifyReason::Crashed),
            E::OomKilled => Blame::Miner(DisqualifyReason::OomKilled),
            E::NeverHealthy(_) => Blame::Miner(DisqualifyReason::Unhealthy),
            E::Engine(_) | E::DiskFull(_) | E::Mirror(_) | E::Network(_) | E::GpuBusy(_) => {
                Blame::Infra(InfraReason::EngineFailure)
            }
        }
    }
}

/// Classifies an engine error (bollard) that is not specific to one step.
pub(crate) fn engine(e: bollard::errors::Error) -> ContainerError {
    let text = e.to_string();
    if text.contains("no space left") {
        ContainerError::DiskFull(text)
    } else {
        ContainerError::Engine(text)
    }
}
