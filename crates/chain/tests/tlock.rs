//! Timelock encryption against the chain's own implementation (PyPI `bittensor-drand`,
//! installed by scripts/test-services.sh) and drand quicknet's published signatures.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use cacheon_chain::drand::{self, EpochState, Quicknet};
use cacheon_chain::tlock::{self, TlockError};
use cacheon_chain::{CommitPayload, WeightSettings};
use parity_scale_codec::{Decode, Encode};
use serde_json::{json, Value};

fn fixtures() -> Value {
    let text = std::fs::read_to_string(common::fixture("drand-quicknet.json")).expect("fixture");
    serde_json::from_str(&text).expect("json")
}

fn signatures() -> Vec<(u64, String)> {
    let f = fixtures();
    let sigs = f["round_signatures_g1_hex"]
        .as_object()
        .expect("signatures");
    sigs.iter()
        .map(|(round, sig)| {
            (
                round.parse().expect("round"),
                sig.as_str().expect("hex").to_owned(),
            )
        })
        .collect()
}

fn sig(hex_sig: &str) -> ark_bls12_381::G1Affine {
    tlock::signature(&hex::decode(hex_sig).expect("hex")).expect("signature")
}

/// Runs the Python reference. Missing Python is a failure: run scripts/test-services.sh.
fn reference(request: Value) -> Value {
    // Where scripts/test-services.sh put it (same variables, same default).
    let python = std::env::var("CACHEON_TEST_PYTHON").unwrap_or_else(|_| {
        let state = std::env::var("CACHEON_TEST_STATE")
            .unwrap_or_else(|_| "/tmp/cacheon-test-services".to_owned());
        format!("{state}/venv/bin/python")
    });
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tlock_reference.py");
    let mut child = Command::new(&python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} ({e}); run scripts/test-services.sh to install bittensor-drand"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request.to_string().as_bytes())
        .expect("write request");
    let out = child.wait_with_output().expect("python");
    assert!(
        out.status.success(),
        "reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json answer")
}

/// bittensor-drand's `UserData` wrapper: SCALE `(Vec<u8> ciphertext, u64 round)`.
fn unwrap_user_data(hex_data: &str) -> (Vec<u8>, u64) {
    let bytes = hex::decode(hex_data).expect("hex");
    <(Vec<u8>, u64)>::decode(&mut &bytes[..]).expect("UserData")
}

#[test]
fn quicknet_signatures_verify_and_the_key_is_the_published_one() {
    let f = fixtures();
    assert_eq!(
        f["public_key_g2_hex"].as_str(),
        Some(drand::QUICKNET_PUBLIC_KEY)
    );
    assert_eq!(f["genesis_time"].as_u64(), Some(drand::QUICKNET_GENESIS));
    let quicknet = Quicknet::mainnet().expect("key");
    for (round, s) in signatures() {
        assert!(
            tlock::verify_round(&quicknet.public_key, round, &sig(&s)).expect("verify"),
            "round {round}"
        );
        assert!(!tlock::verify_round(&quicknet.public_key, round + 1, &sig(&s)).expect("verify"));
    }
}

#[test]
fn ours_round_trips_and_refuses_wrong_keys_and_tampering() {
    let quicknet = Quicknet::mainnet().expect("key");
    let sigs = signatures();
    let (round, s) = &sigs[0];
    let message = b"weights for uid 7".to_vec();
    let ct = tlock::encrypt(
        &quicknet.public_key,
        *round,
        &message,
        &mut rand_core::OsRng,
    )
    .expect("encrypt");
    assert_eq!(ct.len(), 244 + message.len());
    assert_eq!(&ct[ct.len() - 8..], b"AES_GCM_");
    assert_eq!(tlock::decrypt(&ct, &sig(s)).expect("decrypt"), message);

    let (_, other) = &sigs[1];
    assert_eq!(tlock::decrypt(&ct, &sig(other)), Err(TlockError::WrongKey));
    let mut tampered = ct.clone();
    tampered[110] ^= 1; // inside V
    assert_eq!(
        tlock::decrypt(&tampered, &sig(s)),
        Err(TlockError::WrongKey)
    );
    let mut tampered = ct.clone();
    tampered[200] ^= 1; // inside the AES body
    assert_eq!(tlock::decrypt(&tampered, &sig(s)), Err(TlockError::BadBody));
    // Hostile input: every truncation and junk header is an error, never a panic.
    for cut in 0..ct.len() - 16 {
        assert!(tlock::decrypt(&ct[..cut], &sig(s)).is_err(), "cut at {cut}");
    }
    let mut huge_len = ct.clone();
    huge_len[96..104].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        tlock::decrypt(&huge_len, &sig(s)),
        Err(TlockError::Malformed(_))
    ));
    assert!(matches!(
        tlock::decrypt(&[0xff; 300], &sig(s)),
        Err(TlockError::BadPoint(_))
    ));
}

#[test]
fn bittensor_drand_ciphertexts_decrypt_in_ours() {
    let message = b"hello from the chain's own tle";
    for (round, s) in signatures() {
        let answer = reference(
            json!({"op": "encrypt_at_round", "data": hex::encode(message), "round": round}),
        );
        let (ct, wrapped_round) = unwrap_user_data(answer["user_data"].as_str().expect("data"));
        assert_eq!(wrapped_round, round);
        assert_eq!(
            tlock::decrypt(&ct, &sig(&s)).expect("our decrypt of theirs"),
            message,
            "round {round}"
        );
    }
}

#[test]
fn our_ciphertexts_decrypt_in_bittensor_drand() {
    let quicknet = Quicknet::mainnet().expect("key");
    let payload = CommitPayload {
        hotkey: common::account(7).0.to_vec(),
        uids: vec![3],
        values: vec![u16::MAX],
        version_key: 1013,
    }
    .encode();
    for (round, s) in signatures() {
        let ct = tlock::encrypt(&quicknet.public_key, round, &payload, &mut rand_core::OsRng)
            .expect("encrypt");
        let user_data = (ct, round).encode();
        let answer = reference(
            json!({"op": "decrypt_with_signature", "user_data": hex::encode(&user_data), "signature": s}),
        );
        assert_eq!(
            answer["plain"].as_str(),
            Some(hex::encode(&payload).as_str()),
            "round {round}: {answer}"
        );
        // The wrong round's signature is refused by their side too: the check can fail.
        let wrong = signatures()
            .into_iter()
            .find(|(r, _)| *r != round)
            .expect("another round")
            .1;
        let answer = reference(
            json!({"op": "decrypt_with_signature", "user_data": hex::encode(&user_data), "signature": wrong}),
        );
        assert!(answer["error"].is_string(), "{answer}");
    }
}

/// The weights commit: the same payload bytes, the same ciphertext shape and the same reveal
/// round as bittensor-drand's `get_encrypted_commit_v2` for the stateful epoch model.
#[test]
fn weights_commit_matches_get_encrypted_commit_v2() {
    let quicknet = Quicknet::mainnet().expect("key");
    let hotkey = common::account(42);
    let cases = [
        // (last_epoch_block, pending_epoch_at, index, tempo, blocks_since_last_step, current, period)
        (
            7_000_000u64,
            0u64,
            19_000u64,
            360u16,
            120u64,
            7_000_120u64,
            1u64,
        ),
        (7_000_000, 7_000_200, 19_000, 360, 120, 7_000_120, 2),
        (100, 0, 5, 10, 3, 103, 3),
    ];
    for (last, pending, index, tempo, since, current, period) in cases {
        let answer = reference(json!({
            "op": "commit_v2", "uids": [0, 5], "weights": [1, 65535], "version_key": 1013,
            "last_epoch_block": last, "pending_epoch_at": pending, "subnet_epoch_index": index,
            "tempo": tempo, "blocks_since_last_step": since, "current_block": current,
            "reveal_period_epochs": period, "hotkey": hex::encode(hotkey.0),
        }));
        let settings = WeightSettings {
            netuid: common::NETUID,
            block: cacheon_chain::BlockRef {
                number: current,
                hash: [0; 32],
            },
            version_key: 1013,
            commit_reveal: true,
            commit_reveal_version: 4,
            rate_limit: 100,
            tempo,
            reveal_period_epochs: period,
            last_update: vec![],
            epoch: Some(EpochState {
                last_epoch_block: last,
                pending_epoch_at: pending,
                subnet_epoch_index: index,
                blocks_since_last_step: since,
            }),
        };
        // Their clock read lies between `before` and `after`; so must our round.
        let ours_lo = drand::reveal_round(
            &settings,
            current,
            answer["before"].as_f64().expect("before"),
            &quicknet,
        )
        .expect("round");
        let ours_hi = drand::reveal_round(
            &settings,
            current,
            answer["after"].as_f64().expect("after"),
            &quicknet,
        )
        .expect("round");
        let theirs = answer["round"].as_u64().expect("round");
        assert!(
            ours_lo <= theirs && theirs <= ours_hi,
            "ours {ours_lo}..={ours_hi}, theirs {theirs}"
        );

        let payload = CommitPayload {
            hotkey: hotkey.0.to_vec(),
            uids: vec![0, 5],
            values: vec![1, 65535],
            version_key: 1013,
        }
        .encode();
        let ct = hex::decode(answer["ciphertext"].as_str().expect("ct")).expect("hex");
        assert_eq!(
            ct.len(),
            244 + payload.len(),
            "same plaintext length inside"
        );
    }
}

#[test]
fn commit_payload_layout_is_the_chains() {
    let payload = CommitPayload {
        hotkey: vec![0xAB; 32],
        uids: vec![1, 2, 3],
        values: vec![100, 200, 300],
        version_key: 42,
    };
    let mut expected = vec![0x80];
    expected.extend([0xAB; 32]);
    expected.extend(hex::decode("0c010002000300").expect("hex"));
    expected.extend(hex::decode("0c6400c8002c01").expect("hex"));
    expected.extend(42u64.to_le_bytes());
    assert_eq!(payload.encode(), expected);
}

/// A miner's timelocked commitment: the same reveal round and the same plaintext length
/// (the JSON as a SCALE string) as bittensor's `get_encrypted_commitment`.
#[test]
fn commitment_matches_get_encrypted_commitment() {
    let quicknet = Quicknet::mainnet().expect("key");
    let commitment = cacheon_chain::commit::validate(
        "ghcr.io/alice/fast-qwen:v3",
        "sha256:3333333333333333333333333333333333333333333333333333333333333333",
    )
    .expect("valid");
    let json = cacheon_chain::commit::commitment_json(&commitment);
    for blocks in [1u64, 360, 7200] {
        let answer =
            reference(json!({"op": "commitment", "data": json, "blocks_until_reveal": blocks}));
        let lo = cacheon_chain::commit::reveal_round(
            &quicknet,
            answer["before"].as_f64().expect("before"),
            blocks,
        );
        let hi = cacheon_chain::commit::reveal_round(
            &quicknet,
            answer["after"].as_f64().expect("after"),
            blocks,
        );
        let theirs = answer["round"].as_u64().expect("round");
        // Their clock is read in whole seconds: one round of slack below ours.
        assert!(
            lo.saturating_sub(1) <= theirs && theirs <= hi,
            "{blocks} blocks: ours {lo}..={hi}, theirs {theirs}"
        );
        let call = cacheon_chain::CommitmentCall::timelocked(
            14,
            &commitment,
            theirs,
            &quicknet,
            &mut rand_core::OsRng,
        )
        .expect("encrypt");
        let cacheon_chain::CommitmentCall::TimelockEncrypted { encrypted, .. } = call else {
            panic!("timelocked");
        };
        let ct = hex::decode(answer["ciphertext"].as_str().expect("ct")).expect("hex");
        assert_eq!(ct.len(), encrypted.len(), "same plaintext inside");
        assert_eq!(encrypted.len(), 244 + json.encode().len());
    }
}
