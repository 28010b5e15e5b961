//! Every flag of every subcommand. Only this module parses the command line; every setting
//! an operator configures can also come from the `CACHEON_*` variable named in its help
//! (per-invocation arguments such as `--seed` are flags only).

use std::path::PathBuf;

use cacheon_core::prompts::BlockHash;
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "cacheon",
    version,
    about = "Cacheon validator (Bittensor subnet 14)"
)]
pub struct Cli {
    /// Log output format.
    #[arg(long, env = "CACHEON_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,
    /// Log filter, in tracing's EnvFilter syntax (e.g. `info,cacheon_store=debug`).
    #[arg(long, env = "CACHEON_LOG", default_value = "info", global = true)]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the prompts of the round seeded by a block hash.
    Prompts(PromptsArgs),
    /// Manage the validator's SQLite store.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create the store, or upgrade it to the current schema.
    Migrate(DbArgs),
}

#[derive(Debug, Args)]
pub struct DbArgs {
    /// Path of the SQLite file.
    #[arg(long, env = "CACHEON_DATABASE", default_value = "cacheon.db")]
    pub database: PathBuf,
}

/// Where prompts come from: the bundled corpus and templates unless overridden.
#[derive(Debug, Args)]
pub struct WorkloadSource {
    /// Directory of `*.txt` corpus documents (searched recursively) replacing the bundled
    /// corpus. Every validator must use the same corpus to derive the same prompts.
    #[arg(long, env = "CACHEON_CORPUS_DIR")]
    pub corpus_dir: Option<PathBuf>,
    /// Chat templates JSON replacing the bundled `prompts/templates.json`.
    #[arg(long, env = "CACHEON_TEMPLATES")]
    pub templates: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PromptsArgs {
    /// Hash of the seed block, `0x` + 64 hex digits.
    #[arg(long)]
    pub seed: BlockHash,
    /// Print the prompt set as JSON.
    #[arg(long, conflicts_with = "stats")]
    pub json: bool,
    /// Print only the token-length distribution.
    #[arg(long)]
    pub stats: bool,
    #[command(flatten)]
    pub source: WorkloadSource,
}
