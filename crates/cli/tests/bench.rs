//! `cacheon bench` between two `cacheon mock-miner` processes, as a miner would run it:
//! the printed score is the SPEC §1 formula of the printed medians, and a cheater is told
//! why it failed.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::process::Command;

use support::MockProcess as Mock;

const WORKLOAD: &str = r#"{
  "shape": {"warmup": 1, "latency": 5, "throughput": 8, "long_fraction": 0.25,
            "long_tokens": [300, 600], "short_tokens": [32, 128]},
  "harness": {"model": "Qwen2.5-72B-Instruct", "max_tokens": 24, "top_logprobs": 5,
              "concurrency": 4, "deadline": 20000, "stall_timeout": 5000,
              "byte_cap": 1048576, "connect_timeout": 2000}
}"#;

fn bench(baseline: &Mock, miner: &Mock, dir: &std::path::Path) -> (String, serde_json::Value) {
    bench_with(baseline, miner, dir, &[])
}

fn bench_with(
    baseline: &Mock,
    miner: &Mock,
    dir: &std::path::Path,
    extra: &[&str],
) -> (String, serde_json::Value) {
    let workload = dir.join("workload.json");
    std::fs::write(&workload, WORKLOAD).unwrap();
    let (json, plot) = (dir.join("report.json"), dir.join("plot.svg"));
    // The mock's vocabulary, as a miner would write it for its own bench runs.
    let tokenizer = dir.join("tokenizer.json");
    let wrote = Command::new(env!("CARGO_BIN_EXE_cacheon"))
        .args(["mock-miner", "--write-tokenizer"])
        .arg(&tokenizer)
        .output()
        .unwrap();
    assert!(wrote.status.success());
    let out = Command::new(env!("CARGO_BIN_EXE_cacheon"))
        .args([
            "bench",
            "--quiet",
            "--baseline",
            &baseline.url,
            "--miner",
            &miner.url,
        ])
        .arg("--tokenizer")
        .arg(&tokenizer)
        .arg("--workload")
        .arg(&workload)
        .arg("--json-out")
        .arg(&json)
        .arg("--plot")
        .arg(&plot)
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("baseline") && svg.contains("miner"));
    let report = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    (stdout, report)
}

/// The two numbers after `label` in the table (baseline, miner).
fn row(table: &str, label: &str) -> (f64, f64) {
    let line = table.lines().find(|l| l.starts_with(label)).unwrap();
    let nums: Vec<f64> = line[label.len()..]
        .split_whitespace()
        .take(2)
        .map(|n| n.parse().unwrap())
        .collect();
    (nums[0], nums[1])
}

fn printed_score(table: &str) -> f64 {
    let line = table.lines().find(|l| l.starts_with("score = ")).unwrap();
    line.rsplit("= ").next().unwrap().trim().parse().unwrap()
}

#[test]
fn the_printed_score_is_the_formula_of_the_printed_medians() {
    let baseline = Mock::start(&["--ttft-ms", "40", "--itl-ms", "6"]);
    let miner = Mock::start(&[
        "--ttft-ms",
        "15",
        "--itl-ms",
        "3",
        "--tokens-per-chunk",
        "2",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let (table, report) = bench(&baseline, &miner, dir.path());
    println!("{table}");
    assert!(table.contains("gate: PASS"), "{table}");

    let (base_ttft, miner_ttft) = row(&table, "TTFT median (s)");
    let (base_tps, miner_tps) = row(&table, "throughput (tokens/s)");
    let by_hand = 0.5 * ((base_ttft - miner_ttft) / base_ttft).max(0.0)
        + 0.5 * ((miner_tps - base_tps) / base_tps).max(0.0);
    let printed = printed_score(&table);
    assert!(printed > 0.0);
    // The table rounds TTFT to 1 µs and TPS to 0.001 token/s.
    assert!(
        (by_hand - printed).abs() < 1e-4,
        "by hand {by_hand} vs printed {printed}"
    );
    let json_score = report["score"].as_f64().unwrap();
    assert!((json_score - printed).abs() < 1e-6);
    assert_eq!(report["miner"]["result"]["verdict"]["passed"], true);
    // The noise figure: an interval printed next to the improvements, around the score (a
    // percentile interval need not hold its point estimate, but sits near it).
    assert!(table.contains("90% interval"), "{table}");
    let noise = &report["noise"]["score"];
    let (low, high) = (
        noise["low"].as_f64().unwrap(),
        noise["high"].as_f64().unwrap(),
    );
    let width = high - low;
    assert!(width >= 0.0, "{noise}");
    assert!(
        low - width <= json_score && json_score <= high + width,
        "{noise} vs {json_score}"
    );
    // Every raw event is in the report.
    let events = report["miner"]["run"]["latency"][0]["events"]
        .as_array()
        .unwrap();
    assert!(events.len() > 3);
}

#[test]
fn a_cheater_fails_the_gate_with_its_reasons_and_scores_zero() {
    let baseline = Mock::start(&["--ttft-ms", "20", "--itl-ms", "3"]);
    let cheater = Mock::start(&[
        "--ttft-ms",
        "5",
        "--itl-ms",
        "1",
        "--fault",
        "wrong-after:3",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let (table, report) = bench(&baseline, &cheater, dir.path());
    assert!(table.contains("gate: FAIL"), "{table}");
    assert!(table.contains("low_agreement"), "{table}");
    assert!(table.contains("outside the baseline's top-5"), "{table}");
    assert_eq!(printed_score(&table), 0.0);
    assert_eq!(report["score"].as_f64(), Some(0.0));
}

#[test]
fn bad_flags_and_files_are_clear_errors() {
    let bad_fault = Command::new(env!("CARGO_BIN_EXE_cacheon"))
        .args(["mock-miner", "--fault", "explode"])
        .output()
        .unwrap();
    assert!(!bad_fault.status.success());
    assert!(String::from_utf8_lossy(&bad_fault.stderr).contains("unknown fault"));

    let dir = tempfile::tempdir().unwrap();
    let workload = dir.path().join("w.json");
    std::fs::write(&workload, r#"{"shape": {"warmup": "two"}}"#).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cacheon"))
        .args([
            "bench",
            "--baseline",
            "http://127.0.0.1:9",
            "--miner",
            "http://127.0.0.1:9",
            "--tokenizer",
            "/nonexistent/tokenizer.json",
        ])
        .arg("--workload")
        .arg(&workload)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not valid"));

    let out = Command::new(env!("CARGO_BIN_EXE_cacheon"))
        .args([
            "bench",
            "--baseline",
            "ftp://x",
            "--miner",
            "http://127.0.0.1:9",
            "--tokenizer",
            "/nonexistent/tokenizer.json",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a usable server URL"));
}

#[test]
fn repeated_runs_print_every_improvement_with_the_interval_of_their_mean() {
    let baseline = Mock::start(&["--ttft-ms", "40", "--itl-ms", "6"]);
    let miner = Mock::start(&["--ttft-ms", "20", "--itl-ms", "3", "--speed-jitter", "0.2"]);
    let dir = tempfile::tempdir().unwrap();
    let (table, report) = bench_with(&baseline, &miner, dir.path(), &["--repeat", "3"]);
    println!("{table}");
    assert!(table.contains("3 runs"), "{table}");
    let repeats = report["repeats"].as_array().unwrap();
    assert_eq!(repeats.len(), 3);
    let scores: Vec<f64> = repeats
        .iter()
        .map(|r| r["score"].as_f64().unwrap())
        .collect();
    // The report's own run is the last repeat.
    assert_eq!(report["score"].as_f64().unwrap(), scores[2]);
    let across = &report["across_runs"];
    assert_eq!(across["runs"], 3);
    let mean = scores.iter().sum::<f64>() / 3.0;
    let (low, high) = (
        across["score"]["low"].as_f64().unwrap(),
        across["score"]["high"].as_f64().unwrap(),
    );
    assert!((((low + high) / 2.0) - mean).abs() < 1e-9, "{across}");
    assert!(low < mean && mean < high, "{across}");
    for name in [
        "mean TTFT improvement",
        "mean throughput improv.",
        "mean score",
    ] {
        let line = table.lines().find(|l| l.starts_with(name)).unwrap();
        assert!(line.contains('['), "{line}");
    }
}
