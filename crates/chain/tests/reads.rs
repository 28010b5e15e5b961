//! Reading the chain through subxt's mock RPC client, with storage written as the pallets
//! write it (real hashers, real SCALE) and the finney spec-393 metadata served by the node.

mod common;

use cacheon_chain::{latest_per_hotkey, ChainError, CommitmentSource};
use common::{account, chain, node, NETUID};
use parity_scale_codec::Encode;

const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn json(image: &str) -> String {
    format!(r#"{{"image":"{image}","digest":"{DIGEST}"}}"#)
}

#[tokio::test]
async fn metagraph_of_256_uids() {
    let node = node();
    node.put_subnet_item("SubnetworkN", common::NETUID, 256u16);
    for uid in 0..256u16 {
        node.put_neuron(NETUID, uid, &account(u32::from(uid) * 7));
    }
    // Another subnet's neurons and a stale key past SubnetworkN must not leak in.
    node.put_neuron(NETUID + 1, 3, &account(99_999));
    node.put_neuron(NETUID, 300, &account(88_888));
    let permits: Vec<bool> = (0..256).map(|uid| uid % 64 == 0).collect();
    node.put_subnet_item("ValidatorPermit", NETUID, permits.clone());

    let chain = chain(&node);
    let block = chain.finalized().await.expect("finalized");
    assert_eq!(block.number, 1000);
    let graph = chain.metagraph(NETUID, block).await.expect("metagraph");
    assert_eq!(graph.neurons.len(), 256);
    for (i, n) in graph.neurons.iter().enumerate() {
        assert_eq!(usize::from(n.uid), i);
        assert_eq!(n.hotkey, account(i as u32 * 7));
        assert_eq!(n.validator_permit, permits[i]);
    }
    assert_eq!(graph.uid_of(&account(7 * 200)), Some(200));
    assert_eq!(graph.uid_of(&account(88_888)), None);
    // 256 keys in pages of at most 64: one prefix iteration, not 256 lookups.
    assert!(node.calls("state_getKeysPaged") >= 5);
    assert_eq!(
        node.calls("state_getStorage"),
        2,
        "SubnetworkN and ValidatorPermit only"
    );

    assert_eq!(
        chain
            .uid_of(NETUID, &account(7 * 5), block)
            .await
            .expect("uid"),
        Some(5)
    );
    assert_eq!(
        chain
            .uid_of(NETUID, &account(12_345), block)
            .await
            .expect("uid"),
        None
    );
}

#[tokio::test]
async fn metagraph_with_a_missing_uid_is_an_error_not_a_guess() {
    let node = node();
    node.put_subnet_item("SubnetworkN", NETUID, 3u16);
    node.put_neuron(NETUID, 0, &account(1));
    node.put_neuron(NETUID, 2, &account(2));
    let chain = chain(&node);
    let block = chain.finalized().await.expect("finalized");
    let err = chain
        .metagraph(NETUID, block)
        .await
        .expect_err("uid 1 is missing");
    assert!(matches!(err, ChainError::Decode { .. }), "{err}");
    assert!(err.to_string().contains("uid 1"), "{err}");
}

/// Every way miners commit, as the chain stores it, decoded to a submission or a reason.
#[tokio::test]
async fn commitments_decode_to_submissions_or_rejections() {
    let node = node();
    let plain_json = json("ghcr.io/alice/server:v1");
    // A revealed plaintext is a SCALE string: compact length, then the UTF-8 text.
    let scale_prefixed = json("bob/server:v2").encode();
    let hex_wrapped = format!(
        "0x{}",
        hex::encode(json("registry.example.com:5000/carol/srv"))
    );
    let double_hex = format!(
        "0x{}",
        hex::encode(format!("0x{}", hex::encode(json("dave/srv:3"))))
    );
    let long_json = format!(
        r#"{{"image":"erin/{}:v1","digest":"{DIGEST}","note":"{}"}}"#,
        "x".repeat(40),
        "n".repeat(150)
    );

    node.put_plain_commitment(NETUID, &account(1), 900, plain_json.as_bytes());
    node.put_revealed(NETUID, &account(2), &[(scale_prefixed, 910)]);
    node.put_revealed(NETUID, &account(3), &[(hex_wrapped.encode(), 920)]);
    node.put_revealed(NETUID, &account(4), &[(double_hex.into_bytes(), 930)]);
    // Over 128 bytes: split across two Raw fields and joined again.
    node.put_plain_commitment(NETUID, &account(5), 940, long_json.as_bytes());
    node.put_revealed(NETUID, &account(6), &[(vec![0xff, 0xfe, 0x00, 0x13], 950)]);
    node.put_revealed(
        NETUID,
        &account(7),
        &[(
            br#"{"image":"Upper/Case","digest":"sha256:00"}"#.to_vec(),
            960,
        )],
    );
    node.put_plain_commitment(NETUID, &account(8), 970, b"0xnothex");
    // Three reveals of one hotkey and a plain one: the latest (block 990) counts.
    node.put_revealed(
        NETUID,
        &account(9),
        &[
            (json("old/one:1").encode(), 980),
            (json("new/one:2").encode(), 990),
            (json("mid/one:1").encode(), 985),
        ],
    );
    node.put_plain_commitment(NETUID, &account(9), 975, json("plain/one:0").as_bytes());
    // Another subnet's commitment is not ours.
    node.put_revealed(
        NETUID + 1,
        &account(10),
        &[(json("other/net:1").encode(), 900)],
    );

    let chain = chain(&node);
    let block = chain.finalized().await.expect("finalized");
    let observed = chain.commitments(NETUID, block).await.expect("scan");
    assert_eq!(observed.len(), 12, "{observed:#?}");
    let latest = latest_per_hotkey(&observed);
    let outcome: Vec<(u32, u64, CommitmentSource, Result<String, &str>)> = latest
        .iter()
        .map(|c| {
            let index = u32::from_be_bytes(c.hotkey.0[..4].try_into().expect("4 bytes"));
            let decoded = c
                .decode()
                .map(|m| m.image.to_string())
                .map_err(|e| e.code());
            (index, c.block, c.source, decoded)
        })
        .collect();
    use CommitmentSource::{Plain, Revealed};
    assert_eq!(
        outcome,
        vec![
            (1, 900, Plain, Ok("ghcr.io/alice/server:v1".to_owned())),
            (2, 910, Revealed, Ok("bob/server:v2".to_owned())),
            (
                3,
                920,
                Revealed,
                Ok("registry.example.com:5000/carol/srv".to_owned())
            ),
            (4, 930, Revealed, Ok("dave/srv:3".to_owned())),
            (5, 940, Plain, Ok(format!("erin/{}:v1", "x".repeat(40)))),
            (6, 950, Revealed, Err("not_utf8")),
            (7, 960, Revealed, Err("image_grammar")),
            (8, 970, Plain, Err("bad_hex")),
            (9, 990, Revealed, Ok("new/one:2".to_owned())),
        ]
    );
    let ids: Vec<String> = latest
        .iter()
        .map(|c| c.submission_id().to_string())
        .collect();
    assert_eq!(ids[0], format!("{}:900", account(1)));
}

/// The connection drops while the scan is on its second page: the half-read scan is thrown
/// away and a new connection reads all of it again.
#[tokio::test]
async fn a_disconnect_mid_scan_is_retried_from_scratch() {
    let node = node();
    for i in 0..150u32 {
        node.put_revealed(
            NETUID,
            &account(i),
            &[(json(&format!("m/s{i}:1")).encode(), 500 + u64::from(i))],
        );
    }
    let chain = chain(&node);
    let block = chain.finalized().await.expect("finalized");
    let undisturbed = chain.commitments(NETUID, block).await.expect("scan");
    assert_eq!(undisturbed.len(), 150);
    let connections = node.connections();
    let pages = node.calls("state_queryStorageAt");
    assert!(pages >= 3, "150 entries take several pages, got {pages}");

    node.fail_call("state_queryStorageAt", pages + 2);
    let recovered = chain
        .commitments(NETUID, block)
        .await
        .expect("scan after reconnect");
    assert_eq!(recovered, undisturbed);
    assert_eq!(node.connections(), connections + 1, "one reconnect");
    // Second page failed, so the retry read every page again: 2 + pages, never a merge.
    assert_eq!(node.calls("state_queryStorageAt"), pages + 2 + pages);

    // A node that keeps failing: an error, never a partial list.
    let before = node.calls("state_queryStorageAt");
    for k in 1..=3 {
        node.fail_call("state_queryStorageAt", before + 2 * k);
    }
    let err = chain
        .commitments(NETUID, block)
        .await
        .expect_err("every attempt fails");
    assert!(
        matches!(err, ChainError::Exhausted { attempts: 3, .. }),
        "{err}"
    );
}
