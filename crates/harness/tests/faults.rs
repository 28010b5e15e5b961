#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

//! One test per mock fault mode: the harness or the gate names the right reason, and a
//! failing contestant scores zero. None of these would pass if the check were missing.

mod common;

use std::time::Duration;

use cacheon_core::gate::StreamFault;
use cacheon_harness::{HarnessConfig, StopCause, StopRule, Target};
use cacheon_mockminer::{Fault, MockConfig, RunningMock};
use common::{config, failed_checks, judge, miner, prompts, stream_faults, Judged};

async fn judged(fault: Fault, cfg: &HarnessConfig) -> Judged {
    let j = judge(miner(Some(fault)), cfg, &prompts(1, 3, 4)).await;
    assert!(!j.miner.verdict.passed, "{fault} passed the gate");
    assert_eq!(j.score, 0.0, "{fault} scored");
    j
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_after_n_fail_agreement_and_reference() {
    let j = judged(Fault::WrongAfter(4), &config()).await;
    assert_eq!(failed_checks(&j.miner), ["low_agreement", "off_reference"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_logprobs_are_dishonest() {
    let j = judged(Fault::FakeLogprobs, &config()).await;
    assert_eq!(failed_checks(&j.miner), ["dishonest_logprobs"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_logprobs_are_reported() {
    let j = judged(Fault::NoLogprobs, &config()).await;
    assert_eq!(failed_checks(&j.miner), ["logprobs_missing"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_is_too_short() {
    let j = judged(Fault::Truncate(5), &config()).await;
    assert_eq!(failed_checks(&j.miner), ["too_short"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_past_max_tokens_is_too_long_and_never_teacher_forced() {
    let j = judged(Fault::Overlong, &config()).await;
    assert_eq!(failed_checks(&j.miner), ["too_long"]);
    // Not credited either.
    assert_eq!(j.miner.summary.credited_tokens, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_space_sent_early_does_not_start_the_ttft_clock() {
    // The same text as an honest server, but " " goes out at once and "word..." only after
    // the real TTFT: the measured TTFT is the arrival of the whole first token.
    let ttft = Duration::from_millis(40);
    let cheat = MockConfig {
        ttft,
        fault: Some(Fault::LoneSpace),
        ..miner(None)
    };
    let j = judge(cheat, &config(), &prompts(1, 3, 4)).await;
    for r in &j.miner.summary.requests {
        let measured = r.ttft_ms.unwrap();
        assert!(
            measured >= 40.0,
            "prompt {}: ttft {measured} ms",
            r.prompt_index
        );
    }
    assert!(j.miner.summary.ttft_s >= ttft.as_secs_f64());
    // The early space really arrived early (the trick was played).
    let first = &j.miner_run.latency[0];
    assert!(first
        .events
        .iter()
        .any(|e| e.text == " " && e.at_ns < 20_000_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_past_the_timeout_is_reported_as_stalled() {
    let cfg = HarnessConfig {
        stall_timeout: Duration::from_millis(300),
        ..config()
    };
    let j = judged(Fault::Stall(Duration::from_secs(3)), &cfg).await;
    assert_eq!(stream_faults(&j.miner), [StreamFault::Stalled]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_stream_hits_the_deadline() {
    let cfg = HarnessConfig {
        deadline: Duration::from_millis(400),
        ..config()
    };
    let j = judged(Fault::Endless, &cfg).await;
    // Cut by whichever bound it meets first: the deadline, or the events a request may send.
    let faults = stream_faults(&j.miner);
    assert!(
        faults == [StreamFault::DeadlineExceeded] || faults == [StreamFault::TooManyEvents],
        "{faults:?}"
    );
    for r in j.miner_run.scored() {
        let end = r.events.last().unwrap().at_ns;
        assert!(end < 1_000_000_000, "kept reading for {end} ns");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_chunk_hits_the_byte_cap() {
    let j = judged(Fault::OversizedChunk(2 << 20), &config()).await;
    assert_eq!(stream_faults(&j.miner), [StreamFault::ByteCapExceeded]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_stream_bloated_with_empty_events_is_cut_at_the_event_cap() {
    let cfg = config();
    let j = judged(Fault::Bloat(20), &cfg).await;
    assert_eq!(stream_faults(&j.miner), [StreamFault::TooManyEvents]);
    // What is kept of each request is bounded by the cap, not by what the server sent.
    for r in j.miner_run.scored() {
        assert!(
            r.events.len() <= cfg.max_events() + 1,
            "{} events kept",
            r.events.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_reported() {
    let j = judged(Fault::InvalidUtf8, &config()).await;
    assert_eq!(stream_faults(&j.miner), [StreamFault::InvalidUtf8]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_reported() {
    let j = judged(Fault::MalformedJson, &config()).await;
    assert_eq!(stream_faults(&j.miner), [StreamFault::InvalidJson]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_object_inside_a_200_stream_is_reported() {
    let j = judged(Fault::ErrorMidStream, &config()).await;
    assert_eq!(stream_faults(&j.miner), [StreamFault::ErrorEvent]);
    let detail = j.miner_run.latency[0].detail.clone().unwrap();
    assert!(detail.contains("illegal memory access"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_done_is_reported() {
    let j = judged(Fault::NoDone, &config()).await;
    assert_eq!(stream_faults(&j.miner), [StreamFault::MissingDone]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_finish_reason_is_reported() {
    let j = judged(Fault::NoFinishReason, &config()).await;
    assert_eq!(stream_faults(&j.miner), [StreamFault::MissingFinishReason]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_error_is_reported_with_its_status() {
    let j = judged(Fault::Http500, &config()).await;
    assert_eq!(stream_faults(&j.miner), [StreamFault::HttpStatus]);
    assert_eq!(j.miner_run.latency[0].status, Some(500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_sse_is_malformed() {
    let j = judged(Fault::GarbageSse, &config()).await;
    assert_eq!(stream_faults(&j.miner), [StreamFault::MalformedSse]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_measured_as_late_tokens_not_as_speed() {
    // The server computes at the honest pace but sends everything at the end: its TTFT is
    // its whole generation time, which the harness must report.
    let cfg = config();
    let p = prompts(1, 3, 4);
    let pace = MockConfig {
        ttft: Duration::from_millis(5),
        itl: Duration::from_millis(3),
        ..MockConfig::default()
    };
    let burst = judge(
        MockConfig {
            fault: Some(Fault::Burst),
            ..pace.clone()
        },
        &cfg,
        &p,
    )
    .await;
    assert!(burst.miner.verdict.passed, "a burst is honest content");
    for r in &burst.miner_run.latency {
        let tokens = r.logprobs.as_ref().unwrap().len() as u64;
        let ttft = r.ttft_ns().unwrap();
        let floor = 5_000_000 + (tokens - 1) * 3_000_000;
        assert!(
            ttft >= floor,
            "ttft {ttft} ns < {floor} ns for {tokens} tokens"
        );
    }
    let paced = judge(pace, &cfg, &p).await;
    assert!(burst.miner.summary.ttft_s > 3.0 * paced.miner.summary.ttft_s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_and_slow_health_are_told_apart_from_healthy() {
    let poll = Duration::from_millis(20);
    let failing = RunningMock::start(miner(Some(Fault::FailingHealth)))
        .await
        .unwrap();
    let t = Target::new(&failing.url(), 1, Duration::from_secs(1)).unwrap();
    let err = t
        .wait_healthy(Duration::from_millis(300), poll)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");

    let slow = RunningMock::start(miner(Some(Fault::SlowHealth(Duration::from_millis(500)))))
        .await
        .unwrap();
    let t = Target::new(&slow.url(), 1, Duration::from_secs(1)).unwrap();
    let err = t
        .wait_healthy(Duration::from_millis(200), poll)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no complete answer within"),
        "{err}"
    );
    t.wait_healthy(Duration::from_secs(5), poll).await.unwrap();

    let nobody = Target::new("http://127.0.0.1:9", 1, Duration::from_secs(1)).unwrap();
    assert!(nobody
        .wait_healthy(Duration::from_millis(100), poll)
        .await
        .is_err());
}

/// Runs `fault` under the pod's fail-fast rule at `min_pass_fraction` 0.95.
async fn fail_fast(fault: Option<Fault>, cfg: &HarnessConfig) -> cacheon_harness::WorkloadRun {
    let set = prompts(1, 8, 16);
    let mock = RunningMock::start(miner(fault)).await.unwrap();
    let target = Target::new(&mock.url(), cfg.concurrency, cfg.connect_timeout).unwrap();
    let stop = StopRule::for_contestant(0.95, set.scored_count(), cfg.fault_budget);
    assert_eq!(stop.max_failures, Some(1));
    cacheon_harness::run(
        &target,
        &set,
        cfg,
        &stop,
        tokio::time::Instant::now(),
        &|_| {},
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalling_server_is_dropped_as_soon_as_its_verdict_is_certain() {
    let cfg = HarnessConfig {
        stall_timeout: Duration::from_millis(300),
        ..config()
    };
    let run = fail_fast(Some(Fault::Stall(Duration::from_secs(3))), &cfg).await;
    let early = run.stopped_early.clone().expect("stopped early");
    assert_eq!(early.cause, StopCause::TooManyFailures);
    // The warm-up and two scored requests failed; the 22 others were never sent.
    assert_eq!((run.latency.len(), run.throughput.len()), (2, 0));
    assert_eq!(early.failed, 2);
    assert!(run.scored().all(|r| r.fault == Some(StreamFault::Stalled)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dripping_server_spends_its_fault_budget_and_an_honest_one_runs_whole() {
    // A token every 250 ms never trips a 400 ms stall timeout, but at a required 20 tokens/s
    // each request's deadline is 0.4 + 48 / 20 = 2.8 s.
    let cfg = HarnessConfig {
        stall_timeout: Duration::from_millis(400),
        min_token_rate: 20.0,
        fault_budget: Duration::from_secs(5),
        ..config()
    };
    assert_eq!(cfg.request_deadline(), Duration::from_millis(2800));
    let t = std::time::Instant::now();
    let run = fail_fast(Some(Fault::Drip(Duration::from_millis(250))), &cfg).await;
    let early = run.stopped_early.clone().expect("stopped early");
    assert_eq!(early.cause, StopCause::FaultBudget);
    assert!(early.fault_ms >= 5000, "{early:?}");
    assert_eq!(early.faults, [StreamFault::DeadlineExceeded; 2]);
    assert!(run
        .scored()
        .all(|r| r.fault == Some(StreamFault::DeadlineExceeded)));
    println!("dripping server stopped after {:?}: {early:?}", t.elapsed());

    let honest = fail_fast(None, &cfg).await;
    assert_eq!(honest.stopped_early, None);
    assert_eq!((honest.latency.len(), honest.throughput.len()), (8, 16));
    assert!(honest.scored().all(|r| r.fault.is_none()));
}
