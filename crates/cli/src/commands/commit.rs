//! `cacheon commit`: a miner publishes `{"image", "digest"}` on chain. The pair is checked
//! with the validators' own decoder before the wallet is even opened, so a typo costs
//! nothing; then it is timelocked (or plain with `--plain`), signed and submitted.

use anyhow::Context;
use cacheon_chain::commit::{self, Reveal};
use cacheon_chain::{drand::Quicknet, Submit};

use crate::args::CommitArgs;
use crate::commands::chain::{connect, load_hotkey};

pub async fn run(args: &CommitArgs) -> anyhow::Result<()> {
    let commitment = commit::validate(&args.image, &args.digest)
        .map_err(commit::CommitError::from)
        .context("nothing was signed")?;
    let name = args.wallet.wallet_name.as_deref().unwrap_or("default");
    let hotkey = load_hotkey(&args.wallet, name)?;
    let reveal = if args.plain {
        Reveal::Now
    } else {
        Reveal::AfterBlocks(args.reveal_blocks)
    };
    let submit = if args.dry_run {
        Submit::DryRun
    } else {
        Submit::Yes
    };
    let chain = connect(&args.node);
    let outcome = chain
        .commit(
            &hotkey,
            args.netuid,
            &commitment,
            reveal,
            &Quicknet::mainnet()?,
            submit,
        )
        .await
        .with_context(|| format!("committing on netuid {}", args.netuid))?;
    println!("{}", serde_json::to_string_pretty(&outcome)?);
    let hotkey = &outcome.signed.signer;
    let next = match (outcome.submitted.is_some(), outcome.expected_reveal_block) {
        (false, _) => "dry run: nothing was sent".to_owned(),
        (true, Some(block)) => format!(
            "sent; the chain reveals it at about block {block}, and validators list it as \
             {hotkey}:<reveal block> (`cacheon chain commitments` shows it once revealed)"
        ),
        (true, None) => format!(
            "sent; validators list it as {hotkey}:<the block it lands in> \
             (`cacheon chain commitments` shows it)"
        ),
    };
    eprintln!("{next}");
    Ok(())
}
