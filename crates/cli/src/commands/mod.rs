pub mod bench;
pub mod chain;
pub mod commit;
pub mod db;
mod handoff;
pub mod host;
pub mod mock_miner;
pub mod pod;
pub mod prompts;
