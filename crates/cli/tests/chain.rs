//! `cacheon chain ...` end to end: the real binary over a real websocket to the mock node,
//! which serves the finney spec-393 metadata and SCALE storage.

use std::process::Output;

use cacheon_chain::mock::MockNode;
use cacheon_chain::AccountId32;
use parity_scale_codec::Encode;

const NETUID: u16 = 14;
const SEED: &str = "0x4ed8d4b17698ddeaa1f1559f152f87b5d472f725ca86d341bd0276f1b61197e2";
const ADDRESS: &str = "5EPCUjPxiHAcNooYipQFWr9NmmXJKpNG5RhcntXwbtUySrgH";
const DIGEST: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn account(i: u8) -> AccountId32 {
    AccountId32([i; 32])
}

async fn subnet() -> (MockNode, String, cacheon_chain::mock::ServerHandle) {
    let metadata = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../chain/tests/fixtures/finney-spec393.scale"
    ))
    .expect("metadata fixture");
    let node = MockNode::new(metadata, 393);
    let ours: AccountId32 = ADDRESS.parse().expect("ss58");
    node.put_subnet_item("SubnetworkN", NETUID, 4u16);
    for uid in 0..4u8 {
        let key = if uid == 2 { ours } else { account(uid + 1) };
        node.put_neuron(NETUID, u16::from(uid), &key);
    }
    node.put_subnet_item("ValidatorPermit", NETUID, vec![false, false, true, false]);
    node.put_subnet_item("WeightsVersionKey", NETUID, 77u64);
    node.put_subnet_item("CommitRevealWeightsEnabled", NETUID, false);
    node.put_subnet_item("LastUpdate", NETUID, vec![0u64; 4]);
    let good = format!(r#"{{"image":"alice/fast:1","digest":"{DIGEST}"}}"#);
    node.put_revealed(NETUID, &account(1), &[(good.encode(), 990)]);
    node.put_plain_commitment(NETUID, &account(2), 980, b"not json at all");
    let (addr, handle) = node
        .serve_ws("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("serve");
    (node, format!("ws://{addr}"), handle)
}

async fn cacheon(url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cacheon"));
    cmd.args(["chain", "--subtensor-url", url, "--rpc-attempts", "2"])
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.expect("run cacheon")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_commands_read_a_node_over_websocket() {
    let (node, url, _server) = subnet().await;

    let graph: serde_json::Value = serde_json::from_str(&stdout(
        &cacheon(&url, &["metagraph", "--netuid", "14", "--json"], &[]).await,
    ))
    .expect("json");
    assert_eq!(graph["block"]["number"], 1000);
    let neurons = graph["neurons"].as_array().expect("neurons");
    assert_eq!(neurons.len(), 4);
    assert_eq!(neurons[2]["hotkey"], ADDRESS);
    assert_eq!(neurons[2]["validator_permit"], true);

    let table = stdout(&cacheon(&url, &["commitments", "--netuid", "14"], &[]).await);
    assert!(table.contains("2 commitments"), "{table}");
    assert!(table.contains(&format!("alice/fast:1@{DIGEST}")), "{table}");
    assert!(table.contains("rejected: not_json"), "{table}");

    let settings: serde_json::Value =
        serde_json::from_str(&stdout(&cacheon(&url, &["weights", "--json"], &[]).await))
            .expect("json");
    assert_eq!(settings["version_key"], 77);
    assert_eq!(settings["commit_reveal"], false);
    assert_eq!(settings["rate_limit"], 100, "the metadata's default");

    // set-weights with a btcli wallet: a dry run prints the extrinsic and sends nothing.
    let wallets = tempfile::tempdir().expect("tempdir");
    let hotkeys = wallets.path().join("validator/hotkeys");
    std::fs::create_dir_all(&hotkeys).expect("mkdir");
    std::fs::write(
        hotkeys.join("default"),
        format!(r#"{{"secretSeed":"{SEED}","ss58Address":"{ADDRESS}"}}"#),
    )
    .expect("write");
    let wallet_env = [
        (
            "CACHEON_WALLET_PATH",
            wallets.path().to_str().expect("utf-8"),
        ),
        ("CACHEON_WALLET_NAME", "validator"),
    ];
    let dry: serde_json::Value = serde_json::from_str(&stdout(
        &cacheon(
            &url,
            &["set-weights", "--uid", "1", "--dry-run"],
            &wallet_env,
        )
        .await,
    ))
    .expect("json");
    assert_eq!(dry["uid"], 2);
    assert_eq!(dry["signed"]["call"]["call"], "set_weights");
    assert_eq!(dry["signed"]["call"]["dests"], serde_json::json!([1]));
    assert!(dry["submitted"].is_null());
    assert!(node.submitted().is_empty(), "a dry run submits nothing");

    let sent: serde_json::Value = serde_json::from_str(&stdout(
        &cacheon(&url, &["set-weights", "--uid", "1"], &wallet_env).await,
    ))
    .expect("json");
    let submitted = node.submitted();
    assert_eq!(submitted.len(), 1);
    assert_eq!(
        sent["signed"]["extrinsic"],
        format!("0x{}", hex::encode(&submitted[0]))
    );
}

#[tokio::test]
async fn an_unreachable_node_is_a_clear_error() {
    let out = cacheon("ws://127.0.0.1:1", &["metagraph"], &[]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("gave up after 2 attempts") && err.contains("127.0.0.1:1"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_commits_with_the_validators_rules_checked_first() {
    let (node, url, _server) = subnet().await;
    let wallets = tempfile::tempdir().expect("tempdir");
    let hotkeys = wallets.path().join("default/hotkeys");
    std::fs::create_dir_all(&hotkeys).expect("mkdir");
    std::fs::write(
        hotkeys.join("default"),
        format!(r#"{{"secretSeed":"{SEED}","ss58Address":"{ADDRESS}"}}"#),
    )
    .expect("write");
    let commit = |args: Vec<String>| {
        let url = url.clone();
        let wallet_path = wallets.path().to_str().expect("utf-8").to_owned();
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_cacheon"))
                .args(["commit", "--subtensor-url", &url, "--rpc-attempts", "2"])
                .args(["--wallet-path", &wallet_path])
                .args(args)
                .output()
                .await
                .expect("run cacheon")
        }
    };
    let args = |image: &str, extra: &[&str]| {
        let mut v: Vec<String> = ["--image", image, "--digest", DIGEST]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        v.extend(extra.iter().map(|s| (*s).to_owned()));
        v
    };

    // A reference validators would reject: refused before the wallet or the node.
    let out = commit(args("Alice/Fast:1", &[])).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("image_grammar") && err.contains("nothing was signed"),
        "{err}"
    );
    assert!(node.submitted().is_empty());

    let dry: serde_json::Value =
        serde_json::from_str(&stdout(&commit(args("alice/fast:2", &["--dry-run"])).await))
            .expect("json");
    assert_eq!(dry["uid"], 2);
    assert_eq!(dry["signed"]["call"]["kind"], "timelock_encrypted");
    assert_eq!(dry["expected_reveal_block"], 1000 + 360);
    assert!(dry["submitted"].is_null());
    assert!(node.submitted().is_empty(), "a dry run submits nothing");

    let sent: serde_json::Value =
        serde_json::from_str(&stdout(&commit(args("alice/fast:2", &["--plain"])).await))
            .expect("json");
    assert_eq!(sent["signed"]["call"]["kind"], "raw");
    let submitted = node.submitted();
    assert_eq!(submitted.len(), 1);
    assert_eq!(
        sent["signed"]["extrinsic"],
        format!("0x{}", hex::encode(&submitted[0]))
    );
    let plain = sent["signed"]["call"]["data"].as_str().expect("hex");
    let bytes = hex::decode(plain.trim_start_matches("0x")).expect("hex");
    assert_eq!(
        cacheon_core::decode_commitment(&bytes)
            .map(|c| c.image.to_string())
            .expect("validators accept it"),
        "alice/fast:2"
    );
}

/// `cacheon mock-chain` (what scripts/demo.sh runs) serves a subnet that the real chain
/// commands read like any node: uids with the hotkeys it printed, and its commitments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_chain_serves_a_subnet_the_chain_commands_read() {
    use tokio::io::AsyncBufReadExt;
    let metadata = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../chain/tests/fixtures/finney-spec393.scale"
    );
    let good = format!(r#"{{"image":"alice/fast:1","digest":"{DIGEST}"}}"#);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cacheon"))
        .args(["mock-chain", "--listen", "127.0.0.1:0", "--block-secs", "0"])
        .args([
            "--metadata",
            metadata,
            "--uids",
            "4",
            "--start-block",
            "500",
        ])
        .args(["--revealed", &format!("2={good}"), "--plain", "3=not json"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn mock-chain");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut printed = Vec::new();
    while printed.len() < 5 {
        let line = lines.next_line().await.expect("read").expect("a line");
        printed.push(line);
    }
    let url = printed[0]
        .strip_prefix("listening on ")
        .expect("address line")
        .to_owned();
    let uid2 = printed[3].strip_prefix("uid 2: ").expect("uid 2 line");

    let graph: serde_json::Value =
        serde_json::from_str(&stdout(&cacheon(&url, &["metagraph", "--json"], &[]).await))
            .expect("json");
    assert_eq!(graph["block"]["number"], 500);
    assert_eq!(graph["neurons"][2]["hotkey"], uid2);

    let seen: serde_json::Value = serde_json::from_str(&stdout(
        &cacheon(&url, &["commitments", "--json"], &[]).await,
    ))
    .expect("json");
    let rows = seen["commitments"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{seen}");
    let revealed = rows
        .iter()
        .find(|r| r["hotkey"] == uid2)
        .expect("uid 2's commitment");
    assert_eq!(revealed["source"], "revealed");
    assert_eq!(
        revealed["block"], 498,
        "revealed a block apart before the start"
    );
    assert_eq!(revealed["decoded"]["image"], "alice/fast:1");
    let plain = rows
        .iter()
        .find(|r| r["source"] == "plain")
        .expect("the plain one");
    assert_eq!(plain["decoded"]["reason"], "not_json");

    let bad = tokio::process::Command::new(env!("CARGO_BIN_EXE_cacheon"))
        .args(["mock-chain", "--metadata", "/dev/null", "--revealed", "x=1"])
        .output()
        .await
        .expect("run");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("is not a uid"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
