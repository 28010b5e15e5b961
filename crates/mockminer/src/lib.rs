//! The mock miner: a deterministic toy language model, to be served over the same API vLLM
//! exposes, so the harness and the gate can be tested end to end without a GPU. The same
//! model is the baseline in tests; an honest mock agrees with it exactly, and fault modes
//! bend it in the ways real cheaters and broken servers do.

pub mod model;

pub use model::{Step, ToyModel, EOS, EOS_TEXT, TOP_K};
