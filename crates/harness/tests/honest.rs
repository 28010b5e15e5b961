#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

//! An honest server passes the gate however it frames its stream, and with the noise real
//! hardware adds: near-tie flips and small logprob differences.

mod common;

use std::time::Duration;

use cacheon_harness::HarnessConfig;
use cacheon_mockminer::{Fault, MockConfig};
use common::{config, failed_checks, judge, miner, prompts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_mock_agrees_with_the_baseline_exactly() {
    let p = prompts(1, 4, 8);
    let j = judge(miner(None), &config(), &p).await;
    assert!(j.miner.verdict.passed, "{:?}", failed_checks(&j.miner));
    assert_eq!(j.miner.verdict.pass_fraction, 1.0);
    for r in j.miner_run.scored() {
        assert_eq!(r.fault, None, "{:?}", r.detail);
        assert!(r.done);
        let usage = r.usage.unwrap();
        // Validator-side count equals the server's (+1 for an EOS the server counts).
        let counted = j
            .miner
            .summary
            .requests
            .iter()
            .find(|m| m.prompt_index == r.prompt_index)
            .unwrap()
            .output_tokens as u64;
        assert!(usage.completion_tokens == counted || usage.completion_tokens == counted + 1);
    }
    // The miner is faster than the baseline on both counts, so it scores above zero.
    assert!(j.miner.summary.ttft_s < j.baseline.ttft_s);
    assert!(j.score > 0.0, "{}", j.score);
    // Every scored prompt credited at most the baseline's count.
    assert_eq!(j.miner.summary.credited_tokens, j.baseline.credited_tokens);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_token_chunks_keepalive_comments_and_crlf_are_read_exactly() {
    let p = prompts(1, 4, 8);
    let plain = judge(miner(None), &config(), &p).await;
    let framed = judge(
        MockConfig {
            tokens_per_chunk: 3,
            keepalive: true,
            crlf: true,
            ..miner(None)
        },
        &config(),
        &p,
    )
    .await;
    assert!(
        framed.miner.verdict.passed,
        "{:?}",
        failed_checks(&framed.miner)
    );
    for (a, b) in plain.miner_run.scored().zip(framed.miner_run.scored()) {
        assert_eq!(a.text, b.text);
        assert_eq!(a.logprobs, b.logprobs);
        assert_eq!(b.fault, None);
        // Several logprob entries per chunk: about a third as many token events.
        let events =
            |r: &cacheon_harness::StreamRecord| r.events.iter().filter(|e| e.has_token()).count();
        assert!(
            events(b) <= events(a).div_ceil(3),
            "{} vs {}",
            events(b),
            events(a)
        );
        assert!(b.events.iter().any(|e| e.tokens == 3));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vllm_dialects_of_logprob_entries_are_read_as_the_same_tokens() {
    // What real vLLM streams: the end-of-sequence entry in a final chunk of its own, token
    // ids in place of token strings (--return-tokens-as-token-ids), several tokens a chunk.
    let p = prompts(1, 4, 8);
    // Long enough that most answers stop on end-of-sequence.
    let cfg = HarnessConfig {
        max_tokens: 200,
        ..config()
    };
    let plain = judge(miner(None), &cfg, &p).await;
    let dialect = judge(
        MockConfig {
            eos_entry: true,
            token_ids: true,
            tokens_per_chunk: 2,
            ..miner(None)
        },
        &cfg,
        &p,
    )
    .await;
    assert!(
        dialect.miner.verdict.passed,
        "{:?}",
        failed_checks(&dialect.miner)
    );
    let stopped = dialect
        .miner_run
        .scored()
        .filter(|r| r.finish_reason.as_deref() == Some("stop"))
        .count();
    assert!(stopped > 0, "the workload must include stopped answers");
    for (a, b) in plain
        .miner
        .verdict
        .requests
        .iter()
        .zip(&dialect.miner.verdict.requests)
    {
        // The same tokens judged, each paired with its own entry; the EOS entry is the stop,
        // not an output token.
        assert_eq!(a.measured.tokens, b.measured.tokens);
        assert_eq!(b.measured.logprob_coverage, 1.0, "{b:?}");
        assert_eq!(b.measured.disagreements, 0);
    }
    for r in dialect.miner_run.scored() {
        let entries = r.logprobs.as_ref().unwrap();
        assert!(entries.iter().all(|e| e.token.starts_with("token_id:")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_tie_flips_at_a_realistic_rate_pass() {
    let p = prompts(1, 8, 16);
    let j = judge(miner(Some(Fault::FlipTies(0.5))), &config(), &p).await;
    assert!(j.miner.verdict.passed, "{:?}", failed_checks(&j.miner));
    assert_eq!(
        j.miner.verdict.pass_fraction,
        1.0,
        "{:?}",
        failed_checks(&j.miner)
    );
    // The flips happened: some outputs differ from the greedy reference, and some stopped
    // early at an end-of-sequence near-tie (legitimate although shorter than 90 %).
    let honest = judge(miner(None), &config(), &p).await;
    let differing = j
        .miner_run
        .scored()
        .zip(honest.miner_run.scored())
        .filter(|(a, b)| a.text != b.text)
        .count();
    assert!(differing > 0, "no near-tie was flipped");
    let early_stops = j
        .miner_run
        .scored()
        .zip(honest.miner_run.scored())
        .filter(|(a, b)| {
            a.finish_reason.as_deref() == Some("stop") && a.text.len() * 10 < b.text.len() * 9
        })
        .count();
    assert!(early_stops > 0, "no end-of-sequence near-tie was taken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_logprob_jitter_passes_and_large_fails() {
    let p = prompts(1, 4, 8);
    let small = judge(miner(Some(Fault::Jitter(0.05))), &config(), &p).await;
    assert!(
        small.miner.verdict.passed,
        "{:?}",
        failed_checks(&small.miner)
    );
    let large = judge(miner(Some(Fault::Jitter(1.0))), &config(), &p).await;
    assert!(!large.miner.verdict.passed);
    assert_eq!(failed_checks(&large.miner), ["dishonest_logprobs"]);
    assert_eq!(large.score, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slower_honest_server_passes_and_scores_zero() {
    let p = prompts(1, 4, 8);
    let slow = MockConfig {
        ttft: Duration::from_millis(30),
        itl: Duration::from_millis(4),
        ..MockConfig::default()
    };
    let j = judge(slow, &config(), &p).await;
    assert!(j.miner.verdict.passed);
    assert!(j.miner.summary.ttft_s > j.baseline.ttft_s);
    assert_eq!(j.score, 0.0);
}
