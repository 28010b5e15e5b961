//! The king rule (SPEC §11) as a table: margins, thresholds, ties, failures, vacancies.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use cacheon_core::{
    decide, Contender, CrownCause, CrownDecision, KingRule, KingStanding, SubmissionId,
};

const CROWNED_AT: u64 = 1_000_000;

fn contender(name: &str, commit_block: u64, passed: bool, score: f64) -> Contender {
    Contender {
        submission: SubmissionId::new(name, commit_block),
        uid: commit_block as u16,
        commit_block,
        passed,
        score,
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
    let rule = KingRule::default();
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
    let rule = KingRule::default();
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
            let d = decide(&rule, now, Some(&k), std::slice::from_ref(c));
            assert_eq!(
                d,
                CrownDecision::Keep {
                    fresh_score: king_score
                },
                "age {age} {c:?}"
            );
        }
        let d = decide(&rule, now, Some(&k), &[below.clone(), above.clone()]);
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
    let rule = KingRule::default();
    let now = CROWNED_AT + 60_000;
    let k = king_scoring(0.1);
    let late = contender("Late", 300, true, 0.5);
    let early = contender("Early", 200, true, 0.5);
    let lower = contender("Lower", 100, true, 0.45);
    for order in [
        vec![late.clone(), early.clone(), lower.clone()],
        vec![lower.clone(), early.clone(), late.clone()],
    ] {
        let d = decide(&rule, now, Some(&k), &order);
        assert_eq!(winner(&d), Some(("Early", CrownCause::BeatKing)));
    }
}

#[test]
fn king_failing_its_fresh_gate_is_dethroned() {
    let rule = KingRule::default();
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
        );
        assert_eq!(winner(&d), Some(("Weak", CrownCause::KingFailed)));
        // Nobody qualified: the throne is vacated.
        let d = decide(&rule, now, Some(k), &[contender("Zero", 19, true, 0.0)]);
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
    let rule = KingRule::default();
    let d = decide(
        &rule,
        5,
        None,
        &[
            contender("Failed", 1, false, 0.9),
            contender("Ok", 2, true, 0.2),
            contender("Better", 3, true, 0.3),
        ],
    );
    assert_eq!(winner(&d), Some(("Better", CrownCause::Vacant)));
    assert_eq!(decide(&rule, 5, None, &[]), CrownDecision::NoKing);
}

#[test]
fn zero_and_non_finite_scores_are_never_crowned() {
    let rule = KingRule::default();
    let bad = [
        contender("Zero", 1, true, 0.0),
        contender("Neg", 2, true, -0.5),
        contender("Nan", 3, true, f64::NAN),
        contender("Inf", 4, true, f64::INFINITY),
        contender("NegInf", 5, true, f64::NEG_INFINITY),
    ];
    assert_eq!(decide(&rule, 5, None, &bad), CrownDecision::NoKing);
    // Against a king scoring 0, non-finite challengers still lose.
    let k = king_scoring(0.0);
    assert_eq!(
        decide(&rule, CROWNED_AT, Some(&k), &bad),
        CrownDecision::Keep { fresh_score: 0.0 }
    );
    // A passing challenger with positive score beats a zero-score king.
    let d = decide(
        &rule,
        CROWNED_AT,
        Some(&k),
        &[contender("Tiny", 9, true, 1e-6)],
    );
    assert_eq!(winner(&d), Some(("Tiny", CrownCause::BeatKing)));
}
