//! `cacheon`: the one binary operators, pods and miners run. This file only wires the
//! parsed command line to the subcommand that does the work; flags live in `args`.

mod args;
mod commands;
mod logging;
mod shutdown;
mod workload;

use clap::Parser;

use crate::args::{Cli, Command, DbCommand};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format, &cli.log);
    // Before the runtime starts threads: the kernel refuses a new user namespace to any
    // multithreaded process, sandbox or not, so the probe must try while it has one thread.
    let unshared = match &cli.command {
        Command::ProbeSandbox(a) if a.unshare => commands::probe::try_unshare(),
        _ => Vec::new(),
    };
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(cli.command, unshared)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, unshared: Vec<String>) -> anyhow::Result<()> {
    match command {
        Command::Prompts(a) => commands::prompts::run(&a),
        Command::Db {
            command: DbCommand::Migrate(a),
        } => commands::db::migrate(&a).await,
        Command::MockMiner(a) => commands::mock_miner::run(&a).await,
        Command::MockChain(a) => commands::mock_chain::run(&a).await,
        Command::Bench(a) => commands::bench::run(&a).await,
        Command::CalibrateGate(a) => commands::calibrate::run(&a).await,
        Command::CalibrateCrown(a) => commands::calibrate_crown::run(&a),
        Command::Chain(a) => commands::chain::run(&a).await,
        Command::Commit(a) => commands::commit::run(&a).await,
        Command::Host(a) => commands::host::run(&a).await,
        Command::Pod(a) => commands::pod::run(&a).await,
        Command::ProbeSandbox(a) => commands::probe::run(&a, &unshared).await,
    }
}
