//! Untrusted miner images on a Docker engine (SPEC §8), with bollard.
//!
//! Pull by digest only, after the registry has shown that the committed digest is what it
//! serves and that the image fits the size limit; run with every sandbox restriction on an
//! internal network; wait for health while watching for a crash; always tear down. Errors
//! say whose fault they are (`ContainerError::blame`).

mod engine;
mod error;
mod gpu;
mod registry;
mod sandbox;

pub use engine::{check_repo_digest, Engine, Labelled, PullPolicy, PullProgress};
pub use error::{Blame, ContainerError};
pub use gpu::{wait_released, GpuProbe};
pub use registry::{Credentials, RegistryAuth, RegistryPolicy};
pub use sandbox::{
    container_body, log_tail, scratch_options, ulimits, Gpus, Labels, Running, SandboxConfig,
    LABEL_ROLE, LABEL_ROUND, LABEL_SUBMISSION, PORT, USER_NAME,
};
