//! The king rule (SPEC §11) as a table: margins, thresholds, ties, failures, vacancies.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use cacheon_core::{
    decide, Contender, CrownCause, CrownDecision, KingRule, KingStanding, SubmissionId,
};

const CROWNED_AT: u64 = 1_000_000;

/// SPEC §11 as written: one pass decides (confirmation is tested below and in `confirm`).
fn one_pass() -> KingRule {
    KingRule {
        confirm: None,
        ..KingRule::default()
    }
}

fn contender(name: &str, commit_block: u64, passed: bool, score: f64) -> Contender {
    Contender {
        submission: SubmissionId::new(name, commit_block),
        uid: commit_block as u16,
        commit_block,
        passed,
        score,
        lead_noise: None,
    }
}

fn king(fresh: Option<Contender>) -> KingStanding {
    KingStanding {
        submission: SubmissionId::new("King", 10),
        uid: 10,
        crowned_at_block: CROWNED_AT,
        fresh,
    }
}

fn king_scoring(score: f64) -> KingStanding {
    king(Some(contender("King", 10, true, score)))
}

fn winner(d: &CrownDecision) -> Option<(&str, CrownCause)> {
    match d {
        CrownDecision::Crown { winner, cause, .. } => {
            Some((winner.submission.hotkey.as_str(), *cause))
        }
        _ => None,
    }
}

#[test]
fn margin_decays_linearly_to_zero() {
    let rule = one_pass();
    let cases = [
        (0, 0.01),
        (12_600, 0.0075),
        (25_200, 0.005),
        (50_399, 0.01 / 50_400.0),
        (50_400, 0.0),
        (80_000, 0.0),
    ];
    for (age, want) in cases {
        let got = rule.margin(CROWNED_AT + age, CROWNED_AT);
        assert!((got - want).abs() < 1e-15, "age {age}: {got} != {want}");
    }
    // A crowning block ahead of "now" never makes the margin exceed its base.
    assert_eq!(rule.margin(CROWNED_AT - 5, CROWNED_AT), 0.01);
}

#[test]
fn challenger_must_beat_the_decayed_threshold() {
    let rule = one_pass();
    let king_score = 0.40;
    // (blocks since crowning, margin at that age)
    for (age, margin) in [(0u64, 0.01), (25_200, 0.005), (50_400, 0.0), (100_000, 0.0)] {
        let now = CROWNED_AT + age;
        let threshold = king_score * (1.0 + margin);
        let below = contender("Below", 20, true, threshold - 1e-9);
        let exact = contender("Exact", 21, true, threshold);
        let above = contender("Above", 22, true, threshold + 1e-9);
        let k = king_scoring(king_score);

        for c in [&below, &exact] {
            let d = decide(&rule, now, Some(&k), std::slice::from_ref(c), None);
            assert_eq!(
                d,
                CrownDecision::Keep {
                    fresh_score: king_score
                },
                "age {age} {c:?}"
            );
        }
        let d = decide(&rule, now, Some(&k), &[below.clone(), above.clone()], None);
        assert_eq!(
            winner(&d),
            Some(("Above", CrownCause::BeatKing)),
            "age {age}"
        );
        if let CrownDecision::Crown { dethroned, .. } = d {
            assert_eq!(dethroned, Some(k.submission.clone()));
        }
    }
}

#[test]
fn highest_score_wins_and_ties_go_to_the_earlier_commit() {
    let rule = one_pass();
    let now = CROWNED_AT + 60_000;
    let k = king_scoring(0.1);
    let late = contender("Late", 300, true, 0.5);
    let early = contender("Early", 200, true, 0.5);
    let lower = contender("Lower", 100, true, 0.45);
    for order in [
        vec![late.clone(), early.clone(), lower.clone()],
        vec![lower.clone(), early.clone(), late.clone()],
    ] {
        let d = decide(&rule, now, Some(&k), &order, None);
        assert_eq!(winner(&d), Some(("Early", CrownCause::BeatKing)));
    }
}

#[test]
fn king_failing_its_fresh_gate_is_dethroned() {
    let rule = one_pass();
    let now = CROWNED_AT;
    let failed = king(Some(contender("King", 10, false, 0.0)));
    let absent = king(None);
    let nan = king(Some(contender("King", 10, true, f64::NAN)));
    for k in [&failed, &absent, &nan] {
        // The best passing challenger with score > 0 takes over, even below the old score.
        let d = decide(
            &rule,
            now,
            Some(k),
            &[
                contender("Weak", 20, true, 0.01),
                contender("Zero", 19, true, 0.0),
            ],
            None,
        );
        assert_eq!(winner(&d), Some(("Weak", CrownCause::KingFailed)));
        // Nobody qualified: the throne is vacated.
        let d = decide(
            &rule,
            now,
            Some(k),
            &[contender("Zero", 19, true, 0.0)],
            None,
        );
        assert_eq!(
            d,
            CrownDecision::Vacate {
                dethroned: k.submission.clone()
            }
        );
    }
}

#[test]
fn without_a_king_the_best_positive_passing_challenger_is_crowned() {
    let rule = one_pass();
    let d = decide(
        &rule,
        5,
        None,
        &[
            contender("Failed", 1, false, 0.9),
            contender("Ok", 2, true, 0.2),
            contender("Better", 3, true, 0.3),
        ],
        None,
    );
    assert_eq!(winner(&d), Some(("Better", CrownCause::Vacant)));
    assert_eq!(decide(&rule, 5, None, &[], None), CrownDecision::NoKing);
}

#[test]
fn zero_and_non_finite_scores_are_never_crowned() {
    let rule = one_pass();
    let bad = [
        contender("Zero", 1, true, 0.0),
        contender("Neg", 2, true, -0.5),
        contender("Nan", 3, true, f64::NAN),
        contender("Inf", 4, true, f64::INFINITY),
        contender("NegInf", 5, true, f64::NEG_INFINITY),
    ];
    assert_eq!(decide(&rule, 5, None, &bad, None), CrownDecision::NoKing);
    // Against a king scoring 0, non-finite challengers still lose.
    let k = king_scoring(0.0);
    assert_eq!(
        decide(&rule, CROWNED_AT, Some(&k), &bad, None),
        CrownDecision::Keep { fresh_score: 0.0 }
    );
    // A passing challenger with positive score beats a zero-score king.
    let d = decide(
        &rule,
        CROWNED_AT,
        Some(&k),
        &[contender("Tiny", 9, true, 1e-6)],
        None,
    );
    assert_eq!(winner(&d), Some(("Tiny", CrownCause::BeatKing)));
}

fn noisy(name: &str, commit_block: u64, score: f64, lead_noise: f64) -> Contender {
    Contender {
        lead_noise: Some(lead_noise),
        ..contender(name, commit_block, true, score)
    }
}

#[test]
fn a_lead_within_noise_is_crowned_only_when_a_second_pass_confirms_it() {
    use cacheon_core::confirm::{Comparison, Confirmation};
    use cacheon_core::{confirmation_record, to_confirm, SecondPass};
    let rule = KingRule {
        base_margin: 0.0,
        ..KingRule::default()
    };
    let k = king_scoring(0.30);
    // A lead of 0.05 against a noise of 0.01: decisive, one pass.
    let confirm = rule.confirm.unwrap();
    let fresh = k.fresh.clone().unwrap();
    let clear = [noisy("Clear", 20, 0.35, 0.01)];
    assert_eq!(to_confirm(&confirm, 0.0, &fresh, &clear), None);
    let d = decide(&rule, CROWNED_AT, Some(&k), &clear, None);
    assert_eq!(winner(&d), Some(("Clear", CrownCause::BeatKing)));

    // A lead of 0.02 against the same noise: within noise; without a second pass the king
    // stays, whatever the first pass said.
    let close = [
        noisy("Close", 20, 0.32, 0.01),
        noisy("Below", 21, 0.29, 0.01),
    ];
    let (who, first) = to_confirm(&confirm, 0.0, &fresh, &close).unwrap();
    assert_eq!(who, SubmissionId::new("Close", 20));
    assert_eq!((first.king, first.challenger), (0.30, 0.32));
    let keep = CrownDecision::Keep { fresh_score: 0.30 };
    assert_eq!(decide(&rule, CROWNED_AT, Some(&k), &close, None), keep);
    let second = |challenger: f64, noise: f64, name: &str| SecondPass {
        challenger: SubmissionId::new(name, 20),
        comparison: Comparison {
            king: 0.30,
            challenger,
            noise: Some(noise),
        },
    };
    // Confirmed: the second pass's lead also clears 1.25 × the larger noise.
    let d = decide(
        &rule,
        CROWNED_AT,
        Some(&k),
        &close,
        Some(&second(0.319, 0.01, "Close")),
    );
    assert_eq!(winner(&d), Some(("Close", CrownCause::BeatKing)));
    // The lower pass does not clear: the king stays.
    for refuting in [second(0.305, 0.01, "Close"), second(0.33, 0.03, "Close")] {
        assert_eq!(
            decide(&rule, CROWNED_AT, Some(&k), &close, Some(&refuting)),
            keep
        );
    }
    // A second pass of another challenger confirms nothing.
    assert_eq!(
        decide(
            &rule,
            CROWNED_AT,
            Some(&k),
            &close,
            Some(&second(0.4, 0.0, "Other"))
        ),
        keep
    );
    // Confirmation never lowers SPEC's threshold: with a 10 % margin, 0.32 is below it.
    let strict = KingRule {
        base_margin: 0.1,
        ..rule
    };
    assert_eq!(to_confirm(&confirm, 0.1, &fresh, &close), None);
    assert_eq!(
        decide(
            &strict,
            CROWNED_AT,
            Some(&k),
            &close,
            Some(&second(0.5, 0.0, "Close"))
        ),
        keep
    );
    // Nothing to confirm without a king that passed.
    let failed = contender("King", 10, false, 0.0);
    assert_eq!(to_confirm(&confirm, 0.0, &failed, &close), None);
    // The record the host keeps says what `decide` did.
    let who = SubmissionId::new("Close", 20);
    let confirming = second(0.319, 0.01, "Close");
    let record = confirmation_record(&rule, CROWNED_AT, &k, &close, &who, Some(&confirming));
    let record = record.unwrap();
    assert_eq!(record.outcome, Confirmation::Confirmed);
    assert_eq!(record.first, first);
    let refuted = second(0.305, 0.01, "Close");
    let record = confirmation_record(&rule, CROWNED_AT, &k, &close, &who, Some(&refuted));
    assert_eq!(record.unwrap().outcome, Confirmation::NotConfirmed);
}
