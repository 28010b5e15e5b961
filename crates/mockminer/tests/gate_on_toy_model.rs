//! The toy model against itself through the real gate: the honest server passes, one that
//! resolves near-ties the other way passes, one that drifts off the model fails.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use cacheon_core::gate::{judge, ForcedPosition, GateThresholds, RequestEvidence, TokenId};
use cacheon_mockminer::{ToyModel, EOS, TOP_K};

/// Evidence for a contestant that produced `output` (EOS excluded) for `prompt`.
fn evidence(
    m: &ToyModel,
    prompt: &[TokenId],
    output: &[TokenId],
    stopped: bool,
) -> RequestEvidence {
    let forced: Vec<ForcedPosition> = m
        .teacher_force(prompt, output, TOP_K)
        .into_iter()
        .map(|s| ForcedPosition {
            token: s.token,
            text: m.text(s.token).unwrap().into(),
            logprob: s.logprob,
            top: s.top,
            streamed: Some(s.logprob),
        })
        .collect();
    let mut context = prompt.to_vec();
    context.extend(output);
    let reference: Vec<TokenId> = m
        .generate(prompt, 256)
        .iter()
        .map(|s| s.token)
        .filter(|&t| t != EOS)
        .collect();
    RequestEvidence {
        prompt_index: 0,
        stream_fault: None,
        forced,
        logprobs_streamed: true,
        reference,
        stopped,
        stop_gap: {
            let top = m.top(&context, 5);
            top.iter().find(|c| c.0 == EOS).map(|c| top[0].1 - c.1)
        },
        overlong: None,
    }
}

/// Greedy decoding that takes the runner-up wherever it is within `gap` nats.
fn generate_flipping(m: &ToyModel, prompt: &[TokenId], gap: f64) -> (Vec<TokenId>, bool) {
    let mut context = prompt.to_vec();
    let mut out = Vec::new();
    for _ in 0..256 {
        let top = m.top(&context, 2);
        let pick = if top[0].1 - top[1].1 < gap && top[1].0 != EOS {
            top[1].0
        } else {
            top[0].0
        };
        if pick == EOS {
            return (out, true);
        }
        out.push(pick);
        context.push(pick);
    }
    (out, false)
}

fn prompts(m: &ToyModel) -> Vec<Vec<TokenId>> {
    (0..40)
        .map(|i| m.tokenize(&format!("Explain borrowing, case {i}.")))
        .collect()
}

#[test]
fn honest_and_near_tie_flipping_servers_pass_a_drifting_one_fails() {
    let m = ToyModel::new();
    let t = GateThresholds::default();
    let honest: Vec<_> = prompts(&m)
        .iter()
        .map(|p| {
            let steps = m.generate(p, 256);
            let stopped = steps.last().is_some_and(|s| s.token == EOS);
            let out: Vec<_> = steps
                .iter()
                .map(|s| s.token)
                .filter(|&t| t != EOS)
                .collect();
            evidence(&m, p, &out, stopped)
        })
        .collect();
    let v = judge(&t, &honest);
    assert!(v.passed && v.pass_fraction == 1.0, "{v:?}");

    let flipping: Vec<_> = prompts(&m)
        .iter()
        .map(|p| {
            let (out, stopped) = generate_flipping(&m, p, 0.5);
            evidence(&m, p, &out, stopped)
        })
        .collect();
    assert!(judge(&t, &flipping).passed);

    // Always takes the runner-up: a different model.
    let drifting: Vec<_> = prompts(&m)
        .iter()
        .map(|p| {
            let (out, stopped) = generate_flipping(&m, p, 100.0);
            evidence(&m, p, &out, stopped)
        })
        .collect();
    let v = judge(&t, &drifting);
    assert!(!v.passed, "{:?}", v.pass_fraction);
}
