//! The `cacheon` binary as an operator runs it.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::path::Path;
use std::process::{Command, Output};

const SEED_A: &str = "0x5f1c3a9e0b7d24f68e1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f70";
const SEED_B: &str = "0x5f1c3a9e0b7d24f68e1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f71";

fn cacheon(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cacheon"))
        .args(args)
        .env_remove("CACHEON_CORPUS_DIR")
        .env_remove("CACHEON_TEMPLATES")
        .output()
        .expect("run cacheon")
}

fn ok(args: &[&str]) -> Vec<u8> {
    let out = cacheon(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn repo_corpus() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../prompts/corpus")
        .display()
        .to_string()
}

#[test]
fn prompts_are_byte_identical_for_a_seed_and_differ_for_another() {
    let a1 = ok(&["prompts", "--seed", SEED_A]);
    let a2 = ok(&["prompts", "--seed", SEED_A]);
    let b = ok(&["prompts", "--seed", SEED_B]);
    assert_eq!(a1, a2);
    assert_ne!(a1, b);
    assert!(a1.len() > 100_000, "a round carries long-context prompts");
}

#[test]
fn json_output_is_the_whole_prompt_set() {
    let v: serde_json::Value =
        serde_json::from_slice(&ok(&["prompts", "--seed", SEED_A, "--json"])).unwrap();
    let prompts = v["prompts"].as_array().unwrap();
    assert_eq!(prompts.len(), 2 + 16 + 64);
    assert_eq!(v["seed_block_hash"], SEED_A);
    assert_eq!(v["prompt_set_hash"].as_str().unwrap().len(), 64);
    let long = prompts.iter().filter(|p| p["kind"] == "long").count();
    assert!(long > 0 && long < prompts.len());
}

#[test]
fn the_repository_corpus_directory_gives_the_bundled_prompts() {
    let bundled = ok(&["prompts", "--seed", SEED_A, "--stats"]);
    let from_dir = ok(&[
        "prompts",
        "--seed",
        SEED_A,
        "--stats",
        "--corpus-dir",
        &repo_corpus(),
    ]);
    assert_eq!(bundled, from_dir);
}

#[test]
fn another_corpus_changes_the_prompts_and_their_hash() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("one.txt"),
        "Alpha paragraph.\n\nBeta paragraph.\n",
    )
    .unwrap();
    let own = ok(&[
        "prompts",
        "--seed",
        SEED_A,
        "--stats",
        "--corpus-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_ne!(own, ok(&["prompts", "--seed", SEED_A, "--stats"]));
}

#[test]
fn bad_input_is_a_clear_error() {
    for (args, needle) in [
        (vec!["prompts", "--seed", "0x1234"], "64 hex digits"),
        (
            vec![
                "prompts",
                "--seed",
                SEED_A,
                "--corpus-dir",
                "/nonexistent/corpus",
            ],
            "reading corpus",
        ),
        (
            vec![
                "prompts",
                "--seed",
                SEED_A,
                "--templates",
                "/nonexistent.json",
            ],
            "reading templates",
        ),
        (
            vec!["--log-format", "xml", "prompts", "--seed", SEED_A],
            "invalid value 'xml'",
        ),
    ] {
        let out = cacheon(&args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let empty = tempfile::tempdir().unwrap();
    let out = cacheon(&[
        "prompts",
        "--seed",
        SEED_A,
        "--corpus-dir",
        empty.path().to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no *.txt documents"));
}

#[test]
fn db_migrate_creates_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state").join("..").join("v.db");
    let db = db.to_str().unwrap();
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    for _ in 0..2 {
        let out = String::from_utf8(ok(&["db", "migrate", "--database", db])).unwrap();
        assert!(out.contains("schema 4 (4 migration(s) applied)"), "{out}");
    }
    assert!(Path::new(db).exists());
    let out = Command::new(env!("CARGO_BIN_EXE_cacheon"))
        .args(["--log-format", "json", "db", "migrate"])
        .env("CACHEON_DATABASE", dir.path().join("env.db"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        dir.path().join("env.db").exists(),
        "CACHEON_DATABASE is honoured"
    );
}

/// `cacheon host requeue` on a real store: a `failed_infra` submission becomes pending with
/// fresh attempts; anything else is refused with a reason.
#[tokio::test]
async fn host_requeue_gives_a_failed_infra_submission_fresh_attempts() {
    use cacheon_core::InfraReason;
    use cacheon_store::{NewRound, ObservedCommitment, RoundVoid, Store};

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cacheon.db");
    let hotkey = "5EPCUjPxiHAcNooYipQFWr9NmmXJKpNG5RhcntXwbtUySrgH";
    let id = format!("{hotkey}:990");
    let store = Store::open(&db).await.unwrap();
    let mut tx = store.write().await.unwrap();
    let raw = format!(
        r#"{{"image":"alice/fast:1","digest":"sha256:{}"}}"#,
        "2".repeat(64)
    );
    tx.record_commitment(&ObservedCommitment {
        hotkey: hotkey.into(),
        commit_block: 990,
        uid: Some(3),
        raw: raw.into_bytes(),
    })
    .await
    .unwrap();
    let round = tx
        .open_round(&NewRound {
            seed_block: 1000,
            seed_hash: format!("0x{}", "0".repeat(64)),
            deadline_at: 0,
            max_challengers: 8,
            max_open_rounds: 1,
        })
        .await
        .unwrap()
        .unwrap();
    tx.void_round(round.id, &RoundVoid::ours(InfraReason::PodLost), 1)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let state = |s: &Store| {
        let s = s.clone();
        let id = id.clone();
        async move { s.submission(&id).await.unwrap().unwrap() }
    };
    assert_eq!(state(&store).await.state.code(), "failed_infra");

    let db_arg = db.to_str().unwrap();
    let out = ok(&["host", "requeue", &id, "--database", db_arg]);
    assert!(String::from_utf8_lossy(&out).contains("pending again"));
    let row = state(&store).await;
    assert_eq!((row.state.code(), row.infra_attempts), ("pending", 0));

    // Now pending: a second requeue is refused, as are unknown and malformed ids.
    for (arg, expect) in [
        (id.as_str(), "expected failed_infra"),
        ("5Abc:1", "not found"),
        ("nonsense", "not a submission id"),
    ] {
        let out = cacheon(&["host", "requeue", arg, "--database", db_arg]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(expect),
            "{arg}: {err}"
        );
    }
    store.close().await;
}

/// A model directory preflight accepts, with stand-ins for `nvidia-smi` (one H200 on
/// driver 570) and `nvidia-ctk` reporting `toolkit`.
fn fit_machine(dir: &Path, toolkit: &str) {
    use std::os::unix::fs::PermissionsExt;
    let models = dir.join("models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::write(models.join("config.json"), "{}").unwrap();
    std::fs::write(models.join("model.safetensors"), b"toy").unwrap();
    std::fs::write(
        models.join("tokenizer.json"),
        cacheon_mockminer::tokenizer_json(),
    )
    .unwrap();
    for (name, out) in [
        (
            "nvidia-smi",
            "0, NVIDIA H200, 143771, 570.124.06".to_string(),
        ),
        (
            "nvidia-ctk",
            format!("NVIDIA Container Toolkit CLI version {toolkit}\ncommit: 0000"),
        ),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\nprintf '%s\\n' '{out}'\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn check_only(dir: &Path, extra: &[&str]) -> Output {
    let models = dir.join("models");
    let smi = dir.join("nvidia-smi");
    let ctk = dir.join("nvidia-ctk");
    let mut args = vec![
        "pod",
        "--check-only",
        "--skip-sandbox-self-test",
        "--gpu-count",
        "1",
        "--min-free-disk-gb",
        "0",
        "--s3-bucket",
        "unused",
        "--models-dir",
        models.to_str().unwrap(),
        "--nvidia-smi",
        smi.to_str().unwrap(),
        "--nvidia-ctk",
        ctk.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = Command::new(env!("CARGO_BIN_EXE_cacheon"))
        .args(&args)
        .env("CACHEON_HANDOFF_SECRET", "unused")
        .output()
        .expect("run cacheon");
    out
}

#[test]
fn preflight_refuses_a_toolkit_or_engine_with_known_escapes() {
    let dir = tempfile::tempdir().unwrap();
    // The container toolkit before 1.17.8 (CVE-2025-23266): refused before the engine.
    fit_machine(dir.path(), "1.17.3");
    let out = check_only(dir.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("NVIDIA container toolkit version 1.17.3 is older than the required 1.17.8"),
        "{err}"
    );
    // A fixed toolkit, but an engine older than the operator's minimum.
    fit_machine(dir.path(), "1.17.8");
    let out = check_only(dir.path(), &["--min-docker-version", "999.0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("Docker engine version") && err.contains("older than the required 999.0"),
        "{err}"
    );
    // The engine passes, but under it Debian's runc 1.1.5 (fixes backported under the old
    // number) is older than every release line's floor: refused by default.
    let out = check_only(dir.path(), &["--min-docker-version", "20.10"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("runc version") && err.contains("1.2.8"),
        "{err}"
    );
    // Everything fine by the operator's floors: the machine passes.
    let mut lowered = vec!["--min-docker-version", "20.10"];
    lowered.extend(support::RUNTIME_FLOORS_OF_THIS_MACHINE);
    let out = check_only(dir.path(), &lowered);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok: preflight"));
}
