pub mod bench;
pub mod db;
pub mod mock_miner;
pub mod prompts;
