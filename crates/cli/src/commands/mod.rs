//! One module per subcommand; each turns parsed arguments into calls on the library crates.

pub mod db;
pub mod prompts;
