pub mod bench;
pub mod chain;
pub mod db;
pub mod mock_miner;
pub mod prompts;
