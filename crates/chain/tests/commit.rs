//! A miner's `Commitments.set_commitment` through the mock node with the finney metadata:
//! the bytes sent, decoded field by field, opened as the chain opens them at the reveal, and
//! read back by the validator's own decoder.

mod common;

use cacheon_chain::commit::{self, CommitError, MAX_RAW_BYTES};
use cacheon_chain::mock::MockNode;
use cacheon_chain::{tlock, ChainError, CommitmentCall, Quicknet, Reveal, Submit};
use cacheon_core::decode_commitment;
use common::extrinsic::decode;
use common::{account, chain, hotkey, node, NETUID};
use parity_scale_codec::{Compact, Decode, Encode};

const DIGEST: &str = "sha256:4444444444444444444444444444444444444444444444444444444444444444";
const OUR_UID: u16 = 2;
const NONCE: u32 = 3;

/// A subnet where our hotkey holds uid 2.
fn subnet() -> MockNode {
    let node = node();
    node.put_subnet_item("SubnetworkN", NETUID, 4u16);
    for uid in 0..4u16 {
        let key = if uid == OUR_UID {
            hotkey().account_id()
        } else {
            account(u32::from(uid))
        };
        node.put_neuron(NETUID, uid, &key);
    }
    node.set_nonce(&hotkey().account_id(), NONCE);
    node
}

/// `CommitmentInfo { fields: [data] }` as the pallet decodes it: one field, then `Data`.
fn info_field(info: &[u8]) -> (u8, &[u8]) {
    let mut rest = info;
    let fields = Compact::<u32>::decode(&mut rest).expect("field count").0;
    assert_eq!(fields, 1, "one field");
    (rest[0], &rest[1..])
}

#[tokio::test]
async fn a_timelocked_commitment_opens_at_its_round_to_what_validators_accept() {
    let node = subnet();
    let chain = chain(&node);
    let quicknet = Quicknet::mainnet().expect("quicknet");
    let commitment = commit::validate("ghcr.io/alice/fast-qwen:v3", DIGEST).expect("valid");
    // A round whose signature drand has published, so the test can open it as the chain.
    let round = 1_000_000u64;
    let call =
        CommitmentCall::timelocked(NETUID, &commitment, round, &quicknet, &mut rand_core::OsRng)
            .expect("encrypt");
    let block = chain.finalized().await.expect("block");
    let signed = chain
        .sign_commitment(&hotkey(), call, block)
        .await
        .expect("sign");
    chain
        .submit_extrinsic(signed.block, &signed.extrinsic)
        .await
        .expect("submit");
    assert_eq!(node.submitted(), vec![signed.extrinsic.clone()]);

    let xt = decode(&signed.extrinsic).await;
    assert_eq!(
        (xt.pallet.as_str(), xt.call.as_str()),
        ("Commitments", "set_commitment")
    );
    assert_eq!(&xt.call_data[..2], &[18, 0], "pallet 18, call 0");
    assert_eq!(xt.nonce, Some(u64::from(NONCE)));
    assert_eq!(xt.field("netuid"), NETUID.encode());
    xt.assert_signature_valid(MockNode::block_hash(1000));

    let (tag, mut data) = info_field(xt.field("info"));
    assert_eq!(tag, 134, "Data::TimelockEncrypted");
    let encrypted = Vec::<u8>::decode(&mut data).expect("encrypted");
    assert_eq!(u64::decode(&mut data).expect("reveal_round"), round);
    assert!(data.is_empty());

    // The reveal: decrypt with the round's signature and store the plaintext as it is.
    let fixtures: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixture("drand-quicknet.json")).expect("fixture"),
    )
    .expect("json");
    let signature = tlock::signature(
        &hex::decode(
            fixtures["round_signatures_g1_hex"]["1000000"]
                .as_str()
                .expect("signature"),
        )
        .expect("hex"),
    )
    .expect("g1");
    let revealed = tlock::decrypt(&encrypted, &signature).expect("opens at the round");
    assert_eq!(
        revealed,
        commit::commitment_json(&commitment).encode(),
        "a SCALE string"
    );
    assert_eq!(decode_commitment(&revealed), Ok(commitment.clone()));
    let other_round = fixtures["round_signatures_g1_hex"]["2000"]
        .as_str()
        .expect("signature");
    let wrong = tlock::signature(&hex::decode(other_round).expect("hex")).expect("g1");
    assert!(
        tlock::decrypt(&encrypted, &wrong).is_err(),
        "sealed until its round"
    );
}

#[tokio::test]
async fn a_plain_commitment_is_raw_up_to_128_bytes_and_big_raw_beyond() {
    let node = subnet();
    let chain = chain(&node);
    let quicknet = Quicknet::mainnet().expect("quicknet");
    let short = commit::validate("a/b", DIGEST).expect("valid");
    let long = commit::validate(
        "registry.example.com:5000/a-rather-long-organisation/qwen-72b-server:v1",
        DIGEST,
    )
    .expect("valid");
    for (commitment, expect_tag) in [(short, None), (long, Some(136u8))] {
        let json = commit::commitment_json(&commitment);
        let outcome = chain
            .commit(
                &hotkey(),
                NETUID,
                &commitment,
                Reveal::Now,
                &quicknet,
                Submit::Yes,
            )
            .await
            .expect("commit");
        assert_eq!(outcome.uid, OUR_UID);
        assert_eq!(outcome.expected_reveal_block, None);
        assert!(outcome.submitted.is_some());
        let xt = decode(&outcome.signed.extrinsic).await;
        assert_eq!(xt.call, "set_commitment");
        let (tag, mut data) = info_field(xt.field("info"));
        match expect_tag {
            None => {
                assert!(json.len() <= MAX_RAW_BYTES, "{}", json.len());
                assert_eq!(
                    usize::from(tag),
                    json.len() + 1,
                    "Data::Raw{{n}} is tag n+1"
                );
                assert_eq!(data, json.as_bytes());
            }
            Some(tag_big) => {
                assert!(json.len() > MAX_RAW_BYTES, "{}", json.len());
                assert_eq!(tag, tag_big, "Data::BigRaw");
                assert_eq!(
                    Vec::<u8>::decode(&mut data).expect("bytes"),
                    json.as_bytes()
                );
            }
        }
        // What the host reads from CommitmentOf decodes to the same commitment.
        assert_eq!(decode_commitment(json.as_bytes()), Ok(commitment));
    }
    assert_eq!(node.submitted().len(), 2);
}

#[tokio::test]
async fn a_timelocked_commit_reveals_blocks_ahead_and_a_dry_run_sends_nothing() {
    let node = subnet();
    let chain = chain(&node);
    let quicknet = Quicknet::mainnet().expect("quicknet");
    let commitment = commit::validate("alice/fast:1", DIGEST).expect("valid");
    let before = quicknet.round_at(unix_now() + 360.0 * 12.0);
    let outcome = chain
        .commit(
            &hotkey(),
            NETUID,
            &commitment,
            Reveal::AfterBlocks(360),
            &quicknet,
            Submit::DryRun,
        )
        .await
        .expect("dry run");
    let after = quicknet.round_at(unix_now() + 360.0 * 12.0);
    assert!(node.submitted().is_empty(), "a dry run submits nothing");
    assert_eq!(outcome.submitted, None);
    assert_eq!(outcome.expected_reveal_block, Some(1000 + 360));
    let CommitmentCall::TimelockEncrypted { reveal_round, .. } = outcome.signed.call else {
        panic!("timelocked by default");
    };
    assert!((before..=after).contains(&reveal_round), "{reveal_round}");
    assert_eq!(
        outcome.commitment,
        format!(r#"{{"digest":"{DIGEST}","image":"alice/fast:1"}}"#)
    );
}

#[tokio::test]
async fn refusals_sign_and_send_nothing() {
    // Validators would reject it: refused before anything else.
    let err = commit::validate("Alice/Fast:1", DIGEST).expect_err("uppercase");
    assert_eq!(err.code(), "image_grammar");
    let err = commit::validate("alice/fast:1", "sha256:abc").expect_err("short digest");
    assert_eq!(err.code(), "digest_format");
    let err = commit::validate(&format!("alice/fast@{DIGEST}"), DIGEST).expect_err("embedded");
    assert_eq!(err.code(), "image_embeds_digest");
    assert!(CommitError::from(err)
        .to_string()
        .contains("validators would reject this commitment (image_embeds_digest)"));

    // Not registered on the netuid: the chain would refuse, so we do first.
    let node = node();
    node.put_subnet_item("SubnetworkN", NETUID, 1u16);
    node.put_neuron(NETUID, 0, &account(0));
    let chain = chain(&node);
    let commitment = commit::validate("alice/fast:1", DIGEST).expect("valid");
    let err = chain
        .commit(
            &hotkey(),
            NETUID,
            &commitment,
            Reveal::Now,
            &Quicknet::mainnet().expect("quicknet"),
            Submit::Yes,
        )
        .await
        .expect_err("not registered");
    assert!(
        matches!(err, ChainError::NotRegistered { netuid: NETUID, .. }),
        "{err}"
    );
    assert!(node.submitted().is_empty());
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}
