//! `cacheon mock-chain`: the chain crate's in-memory node served over a websocket, so the
//! host (or `cacheon chain ...`) runs its real code against a subnet that exists only on
//! this machine: `scripts/demo.sh` uses it, as the end-to-end tests use the same node.

use std::time::Duration;

use anyhow::Context;
use cacheon_chain::mock::MockNode;
use cacheon_chain::AccountId32;
use parity_scale_codec::Encode;

use crate::args::MockChainArgs;
use crate::shutdown;

/// uid `n`'s hotkey: 32 bytes of `n + 100`, the same the end-to-end tests use.
pub fn hotkey(uid: u16) -> AccountId32 {
    AccountId32([(uid % 156) as u8 + 100; 32])
}

pub async fn run(a: &MockChainArgs) -> anyhow::Result<()> {
    let metadata = std::fs::read(&a.metadata)
        .with_context(|| format!("cannot read metadata {}", a.metadata.display()))?;
    anyhow::ensure!(
        metadata.starts_with(b"meta"),
        "{} is not SCALE runtime metadata (no \"meta\" prefix)",
        a.metadata.display()
    );
    let node = MockNode::new(metadata, a.spec_version);
    node.set_block(a.start_block);
    node.put_subnet_item("SubnetworkN", a.netuid, a.uids);
    for uid in 0..a.uids {
        node.put_neuron(a.netuid, uid, &hotkey(uid));
    }
    node.put_subnet_item("ValidatorPermit", a.netuid, vec![true; usize::from(a.uids)]);
    node.put_subnet_item("CommitRevealWeightsEnabled", a.netuid, false);
    node.put_subnet_item("LastUpdate", a.netuid, vec![0u64; usize::from(a.uids)]);
    let count = (a.revealed.len() + a.plain.len()) as u64;
    let mut block = a.start_block.saturating_sub(count + 1);
    for (uid, text) in &a.revealed {
        block += 1;
        node.put_revealed(a.netuid, &hotkey(*uid), &[(text.encode(), block)]);
    }
    for (uid, text) in &a.plain {
        block += 1;
        let at = u32::try_from(block).context("block number over u32")?;
        node.put_plain_commitment(a.netuid, &hotkey(*uid), at, text.as_bytes());
    }
    let (addr, _server) = node
        .serve_ws(a.listen)
        .await
        .with_context(|| format!("cannot listen on {}", a.listen))?;
    // On stdout, so a script that asked for port 0 learns the address.
    println!("listening on ws://{addr}");
    for uid in 0..a.uids {
        println!("uid {uid}: {}", hotkey(uid));
    }
    std::io::Write::flush(&mut std::io::stdout())?;
    tracing::info!(%addr, netuid = a.netuid, block = a.start_block, "mock chain serving");

    let ticker = async {
        if a.block_secs == 0 {
            return std::future::pending().await;
        }
        let mut interval = tokio::time::interval(Duration::from_secs(a.block_secs));
        interval.tick().await;
        let mut number = a.start_block;
        loop {
            interval.tick().await;
            number += 1;
            node.set_block(number);
        }
    };
    tokio::select! {
        () = ticker => {}
        () = shutdown::signal() => {}
    }
    Ok(())
}
