//! `cacheon chain ...`: what the validator reads from the chain, printed for operators as a
//! table or JSON, and a manual (or dry-run) weights extrinsic.

use std::time::Duration;

use anyhow::Context;
use cacheon_chain::{drand::Quicknet, latest_per_hotkey, Chain, Hotkey, RetryPolicy, Submit};

use crate::args::{ChainArgs, ChainCommand, NodeArgs, WalletArgs};

pub fn connect(node: &NodeArgs) -> Chain {
    Chain::ws(
        &node.url,
        RetryPolicy {
            attempts: node.rpc_attempts,
            rpc_timeout: Duration::from_secs(node.rpc_timeout_secs),
            ..RetryPolicy::default()
        },
    )
}

/// Loads the hotkey of wallet `name` (btcli's layout under `--wallet-path`).
pub fn load_hotkey(w: &WalletArgs, name: &str) -> anyhow::Result<Hotkey> {
    let path = cacheon_chain::hotkey_path(&w.wallet_path, name, &w.wallet_hotkey);
    Hotkey::load(&path, w.password.as_deref())
        .with_context(|| format!("loading the hotkey {}", path.display()))
}

pub async fn run(args: &ChainArgs) -> anyhow::Result<()> {
    let chain = connect(&args.node);
    let url = &args.node.url;
    match &args.command {
        ChainCommand::Metagraph(q) => {
            let block = chain
                .finalized()
                .await
                .with_context(|| format!("reading {url}"))?;
            let graph = chain.metagraph(q.netuid, block).await?;
            if q.json {
                println!("{}", serde_json::to_string_pretty(&graph)?);
            } else {
                print!("{}", render::metagraph(&graph));
            }
        }
        ChainCommand::Commitments(a) => {
            let q = &a.query;
            let block = chain
                .finalized()
                .await
                .with_context(|| format!("reading {url}"))?;
            let all = chain.commitments(q.netuid, block).await?;
            let shown: Vec<&cacheon_chain::ObservedCommitment> = if a.all {
                all.iter().collect()
            } else {
                latest_per_hotkey(&all)
            };
            if q.json {
                let rows: Vec<serde_json::Value> =
                    shown.iter().map(|c| render::commitment_json(c)).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"block": block, "commitments": rows})
                    )?
                );
            } else {
                println!(
                    "netuid {} at block {}: {} commitments",
                    q.netuid,
                    block.number,
                    shown.len()
                );
                print!("{}", render::commitments(&shown));
            }
        }
        ChainCommand::Weights(q) => {
            let block = chain
                .finalized()
                .await
                .with_context(|| format!("reading {url}"))?;
            let settings = chain.weight_settings(q.netuid, block).await?;
            if q.json {
                println!("{}", serde_json::to_string_pretty(&settings)?);
            } else {
                print!("{}", render::settings(&settings));
            }
        }
        ChainCommand::SetWeights(a) => {
            let name = a.wallet.wallet_name.as_deref().unwrap_or("default");
            let hotkey = load_hotkey(&a.wallet, name)?;
            let weights = cacheon_core::king_weights(a.uid, a.burn_uid);
            let quicknet = Quicknet::mainnet()?;
            let submit = if a.dry_run {
                Submit::DryRun
            } else {
                Submit::Yes
            };
            let outcome = chain
                .set_weights(&hotkey, a.netuid, &weights, &quicknet, submit)
                .await?;
            println!("{}", serde_json::to_string_pretty(&outcome)?);
        }
    }
    Ok(())
}

/// Plain-text tables.
pub mod render {
    use std::fmt::Write;

    use cacheon_chain::{Metagraph, ObservedCommitment, WeightSettings};

    pub fn metagraph(graph: &Metagraph) -> String {
        let mut out = format!(
            "netuid {} at block {}: {} uids\n",
            graph.netuid,
            graph.block.number,
            graph.neurons.len()
        );
        let _ = writeln!(out, "{:>5}  {:<48}  validator", "uid", "hotkey");
        for n in &graph.neurons {
            let _ = writeln!(
                out,
                "{:>5}  {:<48}  {}",
                n.uid,
                n.hotkey.to_string(),
                if n.validator_permit { "yes" } else { "" }
            );
        }
        out
    }

    pub fn commitment_json(c: &ObservedCommitment) -> serde_json::Value {
        let decoded = match c.decode() {
            Ok(m) => {
                serde_json::json!({"status": "valid", "image": m.image.to_string(), "digest": m.digest.to_string()})
            }
            Err(e) => {
                serde_json::json!({"status": "rejected", "reason": e.code(), "detail": e.to_string()})
            }
        };
        serde_json::json!({
            "submission": c.submission_id().to_string(),
            "hotkey": c.hotkey.to_string(),
            "block": c.block,
            "source": c.source,
            "raw": format!("0x{}", hex::encode(&c.raw)),
            "decoded": decoded,
        })
    }

    pub fn commitments(shown: &[&ObservedCommitment]) -> String {
        let mut out = format!(
            "{:<48}  {:>9}  {:<8}  result\n",
            "hotkey", "block", "source"
        );
        for c in shown {
            let result = match c.decode() {
                Ok(m) => format!("{}@{}", m.image, m.digest),
                Err(e) => format!("rejected: {} ({e})", e.code()),
            };
            let source = match c.source {
                cacheon_chain::CommitmentSource::Plain => "plain",
                cacheon_chain::CommitmentSource::Revealed => "revealed",
            };
            let _ = writeln!(
                out,
                "{:<48}  {:>9}  {:<8}  {result}",
                c.hotkey.to_string(),
                c.block,
                source
            );
        }
        out
    }

    pub fn settings(s: &WeightSettings) -> String {
        let mut out = String::new();
        let rows: [(&str, String); 8] = [
            ("netuid", s.netuid.to_string()),
            ("block", s.block.number.to_string()),
            ("weights version key", s.version_key.to_string()),
            (
                "commit-reveal",
                if s.commit_reveal {
                    format!("on (version {})", s.commit_reveal_version)
                } else {
                    "off".into()
                },
            ),
            ("rate limit (blocks)", s.rate_limit.to_string()),
            ("tempo (blocks)", s.tempo.to_string()),
            ("reveal period (epochs)", s.reveal_period_epochs.to_string()),
            (
                "epoch model",
                s.epoch.map_or("block arithmetic (legacy)".into(), |e| {
                    format!("stateful, epoch index {}", e.subnet_epoch_index)
                }),
            ),
        ];
        for (k, v) in rows {
            let _ = writeln!(out, "{k:<24} {v}");
        }
        let recent = s
            .last_update
            .iter()
            .enumerate()
            .filter(|(_, b)| **b > 0)
            .count();
        let _ = writeln!(
            out,
            "{:<24} {recent} of {} uids have set weights",
            "last update",
            s.last_update.len()
        );
        out
    }
}
