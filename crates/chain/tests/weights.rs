//! Weights extrinsics through the mock node with the finney metadata: the exact bytes sent,
//! decoded back field by field, and the signature checked with schnorrkel against a signer
//! payload rebuilt by hand.

mod common;

use cacheon_chain::drand::{self, Quicknet};
use cacheon_chain::mock::MockNode;
use cacheon_chain::{tlock, weights_call, ChainError, CommitPayload, Submit, WeightsCall};
use cacheon_core::{king_weights, WeightVector};
use common::extrinsic::decode;
use common::{account, chain, hotkey, node, NETUID};
use parity_scale_codec::{Decode, Encode};
use subxt::utils::Era;

const VERSION_KEY: u64 = 1013;
const NONCE: u32 = 7;
const OUR_UID: u16 = 3;

/// A subnet where our hotkey holds uid 3, with weights settings written to storage.
fn subnet(commit_reveal: bool) -> MockNode {
    let node = node();
    node.put_subnet_item("SubnetworkN", NETUID, 8u16);
    for uid in 0..8u16 {
        let key = if uid == OUR_UID {
            hotkey().account_id()
        } else {
            account(u32::from(uid))
        };
        node.put_neuron(NETUID, uid, &key);
    }
    node.put_subnet_item("ValidatorPermit", NETUID, vec![true; 8]);
    node.put_subnet_item("WeightsVersionKey", NETUID, VERSION_KEY);
    node.put_subnet_item("CommitRevealWeightsEnabled", NETUID, commit_reveal);
    node.put_subnet_item("WeightsSetRateLimit", NETUID, 100u64);
    node.put_subnet_item("Tempo", NETUID, 360u16);
    node.put_subnet_item("LastUpdate", NETUID, vec![0u64; 8]);
    node.set_nonce(&hotkey().account_id(), NONCE);
    node
}

fn u16s(bytes: &[u8]) -> Vec<u16> {
    Vec::<u16>::decode(&mut &bytes[..]).expect("Vec<u16>")
}

#[tokio::test]
async fn set_weights_extrinsic_bytes_decode_field_by_field() {
    let node = subnet(false);
    let chain = chain(&node);
    let quicknet = Quicknet::mainnet().expect("quicknet");
    let weights = king_weights(Some(5), 0);
    let outcome = chain
        .set_weights(&hotkey(), NETUID, &weights, &quicknet, Submit::Yes)
        .await
        .expect("set weights");
    assert_eq!(outcome.uid, OUR_UID);
    let sent = node.submitted();
    assert_eq!(
        sent,
        vec![outcome.signed.extrinsic.clone()],
        "exactly the signed bytes were sent"
    );
    assert_eq!(
        outcome.submitted,
        Some(sp_crypto_hashing::blake2_256(&sent[0]))
    );

    let xt = decode(&sent[0]).await;
    assert_eq!(
        (xt.pallet.as_str(), xt.call.as_str()),
        ("SubtensorModule", "set_weights")
    );
    assert_eq!(&xt.call_data[..2], &[7, 0], "pallet 7, call 0");
    assert!(xt.signed);
    assert_eq!(
        xt.address,
        [&[0u8][..], &hotkey().account_id().0].concat(),
        "MultiAddress::Id(hotkey)"
    );
    assert_eq!(xt.nonce, Some(u64::from(NONCE)));
    assert_eq!(xt.tip, Some(0));
    assert_eq!(xt.era, Era::mortal(64, 1000));
    assert_eq!(xt.field("netuid"), NETUID.encode());
    assert_eq!(u16s(xt.field("dests")), vec![5]);
    assert_eq!(u16s(xt.field("weights")), vec![u16::MAX]);
    assert_eq!(xt.field("version_key"), VERSION_KEY.encode());
    xt.assert_signature_valid(MockNode::block_hash(1000));
}

#[tokio::test]
async fn timelocked_commit_bytes_decode_and_decrypt_to_the_weights() {
    let node = subnet(true);
    let chain = chain(&node);
    let quicknet = Quicknet::mainnet().expect("quicknet");
    let block = chain.finalized().await.expect("block");
    let settings = chain
        .weight_settings(NETUID, block)
        .await
        .expect("settings");
    assert!(settings.commit_reveal);
    assert_eq!(settings.commit_reveal_version, 4, "the metadata's default");
    assert_eq!(settings.reveal_period_epochs, 1, "the metadata's default");
    assert_eq!(
        settings.epoch, None,
        "spec 393 has no stateful epoch counter"
    );

    // Choose "now" so the reveal round is one whose signature drand has published, so the
    // test can open the commitment as the chain will.
    let target = 1_000_000u64;
    let first = drand::first_reveal_block_legacy(NETUID, 360, block.number, 1).expect("block");
    let ahead =
        (first + drand::SECURITY_BLOCK_OFFSET - block.number) as f64 * drand::BLOCK_TIME_SECS;
    let now = drand::QUICKNET_GENESIS as f64 + target as f64 * 3.0 + 1.0 - ahead;
    let weights = WeightVector {
        uids: vec![1, 5],
        weights: vec![100, u16::MAX],
    };
    let call = weights_call(
        &settings,
        &hotkey().account_id(),
        &weights,
        block.number,
        now,
        &quicknet,
    )
    .expect("call");
    let WeightsCall::CommitTimelockedMechanismWeights { reveal_round, .. } = &call else {
        panic!("commit-reveal is on: {call:?}");
    };
    assert_eq!(*reveal_round, target);

    let signed = chain
        .sign_weights(&hotkey(), call, block)
        .await
        .expect("sign");
    chain.submit(&signed).await.expect("submit");
    let sent = node.submitted();
    assert_eq!(sent, vec![signed.extrinsic.clone()]);

    let xt = decode(&sent[0]).await;
    assert_eq!(
        (xt.pallet.as_str(), xt.call.as_str()),
        ("SubtensorModule", "commit_timelocked_mechanism_weights")
    );
    assert_eq!(&xt.call_data[..2], &[7, 118], "pallet 7, call 118");
    assert_eq!(xt.nonce, Some(u64::from(NONCE)));
    assert_eq!(xt.field("netuid"), NETUID.encode());
    assert_eq!(xt.field("mecid"), [0u8]);
    assert_eq!(xt.field("reveal_round"), target.encode());
    assert_eq!(xt.field("commit_reveal_version"), 4u16.encode());
    let commit = Vec::<u8>::decode(&mut xt.field("commit")).expect("commit bytes");
    xt.assert_signature_valid(MockNode::block_hash(1000));

    // What the chain does at reveal: decrypt with the round's signature, decode the payload.
    let fixtures: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixture("drand-quicknet.json")).expect("fixture"),
    )
    .expect("json");
    let sig_hex = fixtures["round_signatures_g1_hex"]["1000000"]
        .as_str()
        .expect("signature");
    let signature = tlock::signature(&hex::decode(sig_hex).expect("hex")).expect("g1");
    let plain = tlock::decrypt(&commit, &signature).expect("opens at the reveal round");
    let payload = CommitPayload::decode(&mut &plain[..]).expect("payload");
    assert_eq!(
        payload,
        CommitPayload {
            hotkey: hotkey().account_id().0.to_vec(),
            uids: vec![1, 5],
            values: vec![100, u16::MAX],
            version_key: VERSION_KEY,
        }
    );
}

#[tokio::test]
async fn dry_run_builds_and_signs_but_sends_nothing() {
    let node = subnet(false);
    let chain = chain(&node);
    let quicknet = Quicknet::mainnet().expect("quicknet");
    let outcome = chain
        .set_weights(
            &hotkey(),
            NETUID,
            &king_weights(None, 0),
            &quicknet,
            Submit::DryRun,
        )
        .await
        .expect("dry run");
    assert_eq!(outcome.submitted, None);
    assert!(node.submitted().is_empty());
    assert_eq!(node.calls("author_submitAndWatchExtrinsic"), 0);
    let xt = decode(&outcome.signed.extrinsic).await;
    assert_eq!(
        u16s(xt.field("dests")),
        vec![0],
        "no king: all weight to the burn uid"
    );
    xt.assert_signature_valid(MockNode::block_hash(1000));
}

#[tokio::test]
async fn refusals_send_nothing() {
    // Rate limited: uid 3 set weights 50 blocks ago, the limit is 100.
    let node = subnet(false);
    let mut last = vec![0u64; 8];
    last[usize::from(OUR_UID)] = 950;
    node.put_subnet_item("LastUpdate", NETUID, last);
    let chain = chain(&node);
    let quicknet = Quicknet::mainnet().expect("quicknet");
    let err = chain
        .set_weights(
            &hotkey(),
            NETUID,
            &king_weights(Some(1), 0),
            &quicknet,
            Submit::Yes,
        )
        .await
        .expect_err("rate limited");
    assert!(matches!(err, ChainError::RateLimited(_)), "{err}");
    assert!(
        err.to_string().contains("next allowed at block 1050"),
        "{err}"
    );

    // Not registered on another netuid.
    let err = chain
        .set_weights(
            &hotkey(),
            NETUID + 1,
            &king_weights(Some(1), 0),
            &quicknet,
            Submit::Yes,
        )
        .await
        .expect_err("not registered");
    assert!(matches!(err, ChainError::NotRegistered { .. }), "{err}");
    assert!(node.submitted().is_empty());

    // The start-up check: registered with a permit; without one it is still registered.
    assert_eq!(
        chain
            .check_validator(NETUID, &hotkey().account_id())
            .await
            .expect("check"),
        (OUR_UID, true)
    );
    node.put_subnet_item("ValidatorPermit", NETUID, vec![false; 8]);
    assert_eq!(
        chain
            .check_validator(NETUID, &hotkey().account_id())
            .await
            .expect("check"),
        (OUR_UID, false)
    );
    let err = chain
        .check_validator(NETUID, &account(77))
        .await
        .expect_err("unregistered");
    assert!(matches!(err, ChainError::NotRegistered { .. }), "{err}");
}
