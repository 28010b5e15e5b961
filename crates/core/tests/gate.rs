//! The correctness gate (SPEC §10): honest servers pass despite realistic noise; each way of
//! cheating or breaking fails with its own reason.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use cacheon_core::gate::{
    check_request, judge, ForcedPosition, GateFailure, GateThresholds, RequestEvidence, StreamFault,
};

const N: usize = 200;

/// The baseline's greedy output: token i is `100 + i` with logprob -0.05; runner-up at -0.4.
fn honest() -> RequestEvidence {
    let forced: Vec<ForcedPosition> = (0..N as u32)
        .map(|i| ForcedPosition {
            token: 100 + i,
            text: format!("t{}", 100 + i),
            logprob: -0.05,
            top: vec![
                (100 + i, -0.05),
                (9000 + i, -0.4),
                (1, -3.0),
                (2, -4.0),
                (3, -5.0),
            ],
            // What a server streams when it reports its logprobs truthfully.
            streamed: Some(-0.05),
        })
        .collect();
    RequestEvidence {
        prompt_index: 0,
        stream_fault: None,
        reference: forced.iter().map(|f| f.token).collect(),
        forced,
        logprobs_streamed: true,
        stopped: false,
        stop_gap: None,
        overlong: None,
    }
}

/// The contestant takes the runner-up (a near tie, 0.35 nats behind) at `positions`.
fn flip(e: &mut RequestEvidence, positions: impl IntoIterator<Item = usize>) {
    for i in positions {
        let (tok, lp) = e.forced[i].top[1];
        e.forced[i].token = tok;
        e.forced[i].text = format!("t{tok}");
        e.forced[i].logprob = lp;
        e.forced[i].streamed = Some(lp);
    }
}

fn checks(e: &RequestEvidence) -> Vec<&'static str> {
    check_request(&GateThresholds::default(), e)
        .failures
        .iter()
        .map(GateFailure::code)
        .collect()
}

#[test]
fn honest_output_passes() {
    assert!(checks(&honest()).is_empty());
}

#[test]
fn near_tie_flips_at_a_realistic_rate_pass() {
    // ~2 % of positions resolved the other way, as bf16 kernels on other hardware do.
    let mut e = honest();
    flip(&mut e, (7..N).step_by(50));
    assert!(
        checks(&e).is_empty(),
        "{:?}",
        check_request(&GateThresholds::default(), &e)
    );
}

#[test]
fn small_logprob_jitter_passes_and_large_fails() {
    let mut e = honest();
    for (i, f) in e.forced.iter_mut().enumerate() {
        f.streamed = Some(f.logprob + if i % 2 == 0 { 0.08 } else { -0.08 });
    }
    assert!(checks(&e).is_empty());
    for f in &mut e.forced {
        f.streamed = f.streamed.map(|s| s - 0.3);
    }
    assert_eq!(checks(&e), ["dishonest_logprobs"]);
}

#[test]
fn absurd_logprobs_fail_with_figures_a_json_document_can_carry() {
    // Each difference is finite, their sum is not: without the cap the verdict would carry
    // an infinity, which JSON writes as null and the host then refuses (voiding the round
    // for everyone in it).
    let mut e = honest();
    for f in &mut e.forced {
        f.streamed = Some(-1e308);
    }
    let v = check_request(&GateThresholds::default(), &e);
    let codes: Vec<_> = v.failures.iter().map(GateFailure::code).collect();
    assert_eq!(codes, ["dishonest_logprobs"]);
    let mean = v.measured.mean_abs_logprob_diff.unwrap();
    assert!(mean.is_finite(), "{mean}");
    let json = serde_json::to_string(&v).unwrap();
    let back: cacheon_core::gate::RequestVerdict = serde_json::from_str(&json).unwrap();
    assert_eq!(back, v);
}

#[test]
fn fake_or_missing_logprobs_fail() {
    // A model claiming certainty the baseline does not share: the baseline gives its
    // tokens -1.0, it streams 0.0.
    let mut fake = honest();
    for f in &mut fake.forced {
        f.logprob = -1.0;
        f.top[0].1 = -1.0;
        f.top[1].1 = -2.0; // still the baseline's top-1
        f.streamed = Some(0.0);
    }
    assert_eq!(checks(&fake), ["dishonest_logprobs"]);

    let mut nan = honest();
    nan.forced[3].streamed = Some(f64::NAN);
    assert_eq!(checks(&nan), ["dishonest_logprobs"]);

    let mut missing = honest();
    missing.logprobs_streamed = false;
    for f in &mut missing.forced {
        f.streamed = None;
    }
    assert_eq!(checks(&missing), ["logprobs_missing"]);

    // One token in ten missing from the stream: too little to judge the logprobs by.
    let mut sparse = honest();
    for (i, f) in sparse.forced.iter_mut().enumerate() {
        if i % 10 == 3 {
            f.streamed = None;
        }
    }
    assert_eq!(checks(&sparse), ["logprobs_misaligned"]);
}

#[test]
fn a_few_tokens_without_a_streamed_entry_of_their_own_are_skipped_not_failed() {
    // Two tokens of a split character resolved canonically (no entry of their own).
    let mut e = honest();
    e.forced[7].streamed = None;
    e.forced[8].streamed = None;
    assert!(check_request(&GateThresholds::default(), &e).passed());
}

#[test]
fn short_answers_may_disagree_as_often_per_token_as_long_ones() {
    let t = GateThresholds::default();
    assert_eq!(t.agreeing_needed(0), 0);
    assert_eq!(
        t.agreeing_needed(10),
        9,
        "one disagreement in ten tokens at 97%"
    );
    assert_eq!(t.agreeing_needed(33), 32);
    assert_eq!(t.agreeing_needed(34), 32, "0.03 × 34 = 1.02 rounds up to 2");
    assert_eq!(t.agreeing_needed(100), 97);
    assert_eq!(t.agreeing_needed(200), 194);
    // A 20-token answer with one flip passes; with two it fails.
    let mut e = honest();
    e.forced.truncate(20);
    e.reference.truncate(20);
    for f in &mut e.forced[3..5] {
        f.token = 1; // in the top-5, 2.95 nats behind: no near-tie
        f.logprob = -3.0;
        f.streamed = Some(-3.0);
    }
    assert_eq!(checks(&e), ["low_agreement"]);
    e.forced[4] = honest().forced[4].clone();
    assert!(checks(&e).is_empty(), "{:?}", check_request(&t, &e));
}

#[test]
fn wrong_tokens_after_n_fail_agreement_and_reference() {
    let mut e = honest();
    for (i, f) in e.forced.iter_mut().enumerate().skip(150) {
        f.token = 50_000 + i as u32; // not in the top-5
        f.text = format!("w{i}");
        f.logprob = -9.0;
        f.streamed = Some(-9.0);
    }
    assert_eq!(checks(&e), ["low_agreement", "off_reference"]);
    match &check_request(&GateThresholds::default(), &e).failures[1] {
        GateFailure::OffReference { position, .. } => assert_eq!(*position, 150),
        other => panic!("{other:?}"),
    }
}

#[test]
fn truncation_fails_but_a_legitimate_early_stop_passes() {
    let mut e = honest();
    e.forced.truncate(N / 2);
    assert_eq!(checks(&e), ["too_short"]);
    e.stopped = true; // stopped, but the baseline would have gone on
    assert_eq!(checks(&e), ["too_short"]);
    e.stop_gap = Some(0.6); // end-of-sequence close behind, but not a near-tie
    assert_eq!(checks(&e), ["too_short"]);
    e.stop_gap = Some(0.3); // a near-tie stop is legitimate
    assert!(checks(&e).is_empty());
    e.stop_gap = Some(0.0);
    assert!(checks(&e).is_empty());
    // 90 % is enough without a stop.
    let mut e = honest();
    e.forced.truncate(N * 9 / 10);
    assert!(checks(&e).is_empty());
}

#[test]
fn an_overlong_output_fails_alone() {
    let mut e = honest();
    e.forced.clear();
    e.overlong = Some(cacheon_core::gate::Overlong {
        tokens: 30_000,
        limit: 292,
    });
    assert_eq!(checks(&e), ["too_long"]);
}

#[test]
fn vllm_style_top_lists_are_ranked_not_trusted() {
    // vLLM puts the sampled token first and may append it as a sixth entry.
    let mut e = honest();
    for (i, f) in e.forced.iter_mut().enumerate().skip(100) {
        let wrong = 60_000 + i as u32;
        f.token = wrong;
        f.text = format!("w{i}");
        f.logprob = -9.0;
        f.top.insert(0, (wrong, -9.0));
        f.streamed = Some(-9.0);
    }
    assert_eq!(checks(&e), ["low_agreement", "off_reference"]);
}

#[test]
fn running_past_the_baselines_end_is_a_divergence() {
    let mut e = honest();
    e.reference.truncate(N - 1); // the baseline stopped here; its top-5 has no such token
    e.forced[N - 1].top = vec![(0, -0.01), (1, -5.0), (2, -6.0), (3, -7.0), (4, -8.0)];
    let c = checks(&e);
    assert!(c.contains(&"off_reference"), "{c:?}");
}

#[test]
fn an_invalid_stream_fails_the_request() {
    let mut e = honest();
    e.stream_fault = Some(StreamFault::MissingDone);
    assert_eq!(checks(&e), ["invalid_stream"]);
}

#[test]
fn the_pass_fraction_decides_overall() {
    let t = GateThresholds::default();
    let broken = || {
        let mut e = honest();
        e.stream_fault = Some(StreamFault::InvalidJson);
        e
    };
    let mut twenty: Vec<_> = (0..19).map(|_| honest()).collect();
    twenty.push(broken());
    let v = judge(&t, &twenty);
    assert!(v.passed && (v.pass_fraction - 0.95).abs() < 1e-12);
    twenty[0] = broken();
    assert!(!judge(&t, &twenty).passed);
    assert!(!judge(&t, &[]).passed, "no evidence is no proof");
}
