//! The mock miner: a deterministic toy language model served over the same API vLLM
//! exposes, so the harness and the gate can be tested end to end without a GPU. The same
//! server is the baseline in tests; an honest mock agrees with it exactly, and fault modes
//! bend it in the ways real cheaters and broken servers do.

pub mod chat;
pub mod completions;
pub mod fault;
mod health;
pub mod model;
pub mod proxy;
pub mod server;
mod stream;
pub mod timeline;
mod wire;

pub use completions::tokenizer_json;
pub use fault::Fault;
pub use model::{Step, ToyModel, EOS, EOS_TEXT, TOP_K};
pub use server::{router, serve, MockConfig, RunningMock, MODEL_NAME};
pub use timeline::{FrameKind, Served, Timeline};
