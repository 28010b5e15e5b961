//! A small round against in-process mock servers: an honest baseline and a configurable
//! miner, measured and judged by the real harness and gate.

#![allow(dead_code)] // each test binary uses its own subset

use std::time::Duration;

use cacheon_core::gate::{GateFailure, GateThresholds, StreamFault};
use cacheon_core::prompts::{generate, BlockHash, Corpus, PromptSet, Templates, WorkloadShape};
use cacheon_harness::{
    contestant_score, evaluate, measure_baseline, run, Baseline, Evaluation, HarnessConfig,
    StopRule, Summary, Target, WorkloadRun,
};
use cacheon_mockminer::{Fault, MockConfig, RunningMock};
use tokio::time::Instant;

pub fn prompts(warmup: usize, latency: usize, throughput: usize) -> PromptSet {
    let words = "ba be bi bo bu ca ce ci co cu da de di do du fa fe fi fo fu ga ge gi go gu";
    let docs = (0..8)
        .map(|i| {
            let text: String = (0..400)
                .map(|j| words.split(' ').nth((i * 7 + j * 3) % 25).unwrap_or("x"))
                .collect::<Vec<_>>()
                .join(" ");
            (format!("doc{i}.txt"), text)
        })
        .collect();
    let corpus = Corpus::new(docs).unwrap();
    let templates = Templates::from_json(
        r#"{"system": ["Be brief."], "long": ["Summarise:\n{passage}"], "short": ["Explain: {passage}"]}"#,
    )
    .unwrap();
    let shape = WorkloadShape {
        warmup,
        latency,
        throughput,
        long_fraction: 0.25,
        long_tokens: (200, 400),
        short_tokens: (8, 64),
    };
    let seed: BlockHash = "0x5f1c000000000000000000000000000000000000000000000000000000006f70"
        .parse()
        .unwrap();
    generate(&seed, &corpus, &templates, &shape).unwrap()
}

pub fn config() -> HarnessConfig {
    HarnessConfig {
        max_tokens: 48,
        concurrency: 4,
        deadline: Duration::from_secs(10),
        stall_timeout: Duration::from_secs(2),
        byte_cap: 512 << 10,
        ..HarnessConfig::default()
    }
}

pub fn miner(fault: Option<Fault>) -> MockConfig {
    MockConfig {
        ttft: Duration::from_millis(5),
        itl: Duration::from_millis(1),
        fault,
        ..MockConfig::default()
    }
}

pub struct Judged {
    pub miner: Evaluation,
    pub miner_run: WorkloadRun,
    pub baseline: Summary,
    pub score: f64,
}

/// Runs the miner then the baseline on the same prompts, and judges the miner.
pub async fn judge(miner_cfg: MockConfig, cfg: &HarnessConfig, prompts: &PromptSet) -> Judged {
    let baseline_mock = RunningMock::start(MockConfig {
        ttft: Duration::from_millis(8),
        itl: Duration::from_millis(2),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let miner_mock = RunningMock::start(miner_cfg).await.unwrap();
    let epoch = Instant::now();
    let miner_target =
        Target::new(&miner_mock.url(), cfg.concurrency, cfg.connect_timeout).unwrap();
    let miner_run = run(
        &miner_target,
        prompts,
        cfg,
        &StopRule::never(),
        epoch,
        &|_| {},
    )
    .await
    .unwrap();
    let base_target =
        Target::new(&baseline_mock.url(), cfg.concurrency, cfg.connect_timeout).unwrap();
    let base_run = run(
        &base_target,
        prompts,
        cfg,
        &StopRule::never(),
        epoch,
        &|_| {},
    )
    .await
    .unwrap();
    let baseline = Baseline::new(base_target, cfg, mock_vocab()).unwrap();
    let (base_summary, reference) = measure_baseline(&baseline, prompts, &base_run)
        .await
        .unwrap();
    let miner = evaluate(
        &baseline,
        prompts,
        &reference,
        &miner_run,
        &GateThresholds::default(),
    )
    .await
    .unwrap();
    let score = contestant_score(&miner, &base_summary).unwrap();
    Judged {
        miner,
        miner_run,
        baseline: base_summary,
        score,
    }
}

/// The names of the checks that failed, over all requests, deduplicated and sorted.
pub fn failed_checks(e: &Evaluation) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = e
        .verdict
        .requests
        .iter()
        .flat_map(|r| r.failures.iter())
        .map(GateFailure::code)
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// The stream faults reported, deduplicated and sorted.
pub fn stream_faults(e: &Evaluation) -> Vec<StreamFault> {
    let mut faults: Vec<StreamFault> = e
        .verdict
        .requests
        .iter()
        .flat_map(|r| r.failures.iter())
        .filter_map(|f| match f {
            GateFailure::InvalidStream { fault } => Some(*fault),
            _ => None,
        })
        .collect();
    faults.sort_by_key(|f| format!("{f:?}"));
    faults.dedup();
    faults
}

/// The mock's vocabulary, read the way the pod reads a model's tokenizer.json.
pub fn mock_vocab() -> std::sync::Arc<cacheon_harness::Vocab> {
    let json = cacheon_mockminer::tokenizer_json();
    std::sync::Arc::new(cacheon_harness::Vocab::from_json(&json, "mock").unwrap())
}
