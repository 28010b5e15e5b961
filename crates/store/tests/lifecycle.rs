//! The SPEC §4 lifecycle on a real SQLite file: intake, rounds, verdicts applied exactly
//! once, infrastructure requeues with a cap, the king and its history, atomicity.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;

use cacheon_core::{
    Contender, CrownCause, CrownDecision, DisqualifyReason, InfraReason, SubmissionId,
    SubmissionState,
};
use cacheon_store::{
    ApplyOutcome, ContestantVerdict, NewRound, ObservedCommitment, Recorded, RoundState, RoundVoid,
    Store, StoreError, SubmissionFilter, VerdictOutcome,
};

fn digest(n: u8) -> String {
    format!("sha256:{}", format!("{n:02x}").repeat(32))
}

fn commitment(image: &str, n: u8) -> Vec<u8> {
    format!(r#"{{"image":"{image}","digest":"{}"}}"#, digest(n)).into_bytes()
}

fn obs(hotkey: &str, block: u64, uid: Option<u16>, raw: Vec<u8>) -> ObservedCommitment {
    ObservedCommitment {
        hotkey: hotkey.into(),
        commit_block: block,
        uid,
        raw,
    }
}

async fn open(dir: &Path) -> Store {
    Store::open(&dir.join("cacheon.db"))
        .await
        .expect("open store")
}

async fn record(store: &Store, o: ObservedCommitment) -> Recorded {
    let mut tx = store.write().await.unwrap();
    let r = tx.record_commitment(&o).await.unwrap();
    tx.commit().await.unwrap();
    r
}

async fn state_of(store: &Store, id: &str) -> (SubmissionState, Option<String>) {
    let row = store
        .submission(id)
        .await
        .unwrap()
        .expect("submission exists");
    (row.state, row.reason)
}

fn new_round(max: u32) -> NewRound {
    NewRound {
        seed_block: 100,
        seed_hash: format!("0x{}", "ab".repeat(32)),
        deadline_at: i64::MAX,
        max_challengers: max,
        max_open_rounds: 1,
    }
}

async fn open_round(store: &Store, max: u32) -> Option<cacheon_store::RoundRow> {
    let mut tx = store.write().await.unwrap();
    let r = tx.open_round(&new_round(max)).await.unwrap();
    tx.commit().await.unwrap();
    r
}

/// Everything observable, for before/after comparisons.
async fn snapshot(store: &Store) -> String {
    let subs = store
        .submissions(&SubmissionFilter {
            limit: Some(10_000),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut rounds = Vec::new();
    for id in 1..=20 {
        rounds.extend(store.round(id).await.unwrap());
    }
    format!(
        "{subs:?}\n{:?}\n{:?}\n{rounds:?}\n{:?}",
        store.king().await.unwrap(),
        store.king_history(1000).await.unwrap(),
        store.last_weight_submission().await.unwrap()
    )
}

/// Applies a round in its own committed transaction.
async fn apply(
    store: &Store,
    round_id: i64,
    verdicts: &[ContestantVerdict],
    decision: &CrownDecision,
    block: u64,
) -> ApplyOutcome {
    let mut tx = store.write().await.unwrap();
    let out = tx
        .apply_round(round_id, verdicts, decision, block)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    out
}

/// The decision that crowns `id` on an empty throne.
fn crown_vacant(id: &str, uid: u16, score: f64) -> CrownDecision {
    CrownDecision::Crown {
        winner: contender(id, uid, score),
        cause: CrownCause::Vacant,
        dethroned: None,
    }
}

fn contender(id: &str, uid: u16, score: f64) -> Contender {
    let sid: SubmissionId = id.parse().unwrap();
    Contender {
        commit_block: sid.commit_block,
        submission: sid,
        uid,
        passed: true,
        score,
        lead_noise: None,
    }
}

fn scored(id: &str, score: f64) -> ContestantVerdict {
    ContestantVerdict {
        submission: id.parse().unwrap(),
        outcome: VerdictOutcome::Scored { score },
    }
}

#[tokio::test]
async fn intake_records_every_commitment_once_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;

    let first = record(
        &store,
        obs("Alice", 10, Some(1), commitment("ghcr.io/a/x:v1", 1)),
    )
    .await;
    assert_eq!(
        first,
        Recorded::New {
            state: SubmissionState::Pending,
            reason: None
        }
    );
    // Seen again on the next scan: nothing changes.
    let before = snapshot(&store).await;
    assert_eq!(
        record(
            &store,
            obs("Alice", 10, Some(1), commitment("ghcr.io/a/x:v1", 1))
        )
        .await,
        Recorded::Known
    );
    assert_eq!(snapshot(&store).await, before);

    record(&store, obs("Bob", 11, Some(2), b"0xnothex".to_vec())).await;
    assert_eq!(
        state_of(&store, "Bob:11").await,
        (SubmissionState::Rejected, Some("malformed:bad_hex".into()))
    );

    record(&store, obs("Carol", 12, None, commitment("ghcr.io/c/x", 3))).await;
    assert_eq!(
        state_of(&store, "Carol:12").await,
        (SubmissionState::Rejected, Some("not_registered".into()))
    );

    // Copying Alice's digest under another hotkey is rejected, pointing at the original.
    record(
        &store,
        obs("Mallory", 13, Some(4), commitment("ghcr.io/m/copy", 1)),
    )
    .await;
    assert_eq!(
        state_of(&store, "Mallory:13").await,
        (
            SubmissionState::Rejected,
            Some("duplicate_of:Alice:10".into())
        )
    );

    // Latest commitment per hotkey wins.
    record(
        &store,
        obs("Alice", 20, Some(1), commitment("ghcr.io/a/x:v2", 5)),
    )
    .await;
    assert_eq!(
        state_of(&store, "Alice:10").await,
        (
            SubmissionState::Withdrawn,
            Some("superseded_by:Alice:20".into())
        )
    );
    assert_eq!(
        state_of(&store, "Alice:20").await.0,
        SubmissionState::Pending
    );
    // An older one seen late is born superseded.
    record(
        &store,
        obs("Alice", 15, Some(1), commitment("ghcr.io/a/x:v15", 6)),
    )
    .await;
    assert_eq!(
        state_of(&store, "Alice:15").await,
        (
            SubmissionState::Withdrawn,
            Some("superseded_by:Alice:20".into())
        )
    );

    // An original seen after its copy turns the pending copy into a duplicate.
    record(
        &store,
        obs("Copier", 31, Some(7), commitment("ghcr.io/x/y", 9)),
    )
    .await;
    record(
        &store,
        obs("Author", 30, Some(8), commitment("ghcr.io/x/z", 9)),
    )
    .await;
    assert_eq!(
        state_of(&store, "Copier:31").await,
        (
            SubmissionState::Rejected,
            Some("duplicate_of:Author:30".into())
        )
    );
    assert_eq!(
        state_of(&store, "Author:30").await.0,
        SubmissionState::Pending
    );

    let rejected = store
        .submissions(&SubmissionFilter {
            state: Some(SubmissionState::Rejected),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rejected.len(), 4);
    let by_uid = store
        .submissions(&SubmissionFilter {
            uid: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_uid.len(), 3);
}

#[tokio::test]
async fn rounds_take_the_oldest_pending_and_the_king_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    for (i, hk) in ["A", "B", "C"].iter().enumerate() {
        record(
            &store,
            obs(
                hk,
                100 - i as u64,
                Some(i as u16),
                commitment("r/x", i as u8),
            ),
        )
        .await;
    }
    let round = open_round(&store, 2).await.expect("round opens");
    let ids: Vec<_> = round
        .contestants
        .iter()
        .map(|c| c.submission_id.as_str())
        .collect();
    assert_eq!(ids, ["C:98", "B:99"]);
    // Only one round may be open at a time (max_open_rounds = 1).
    assert!(open_round(&store, 2).await.is_none());
    assert_eq!(state_of(&store, "A:100").await.0, SubmissionState::Pending);

    let decision = crown_vacant("C:98", 2, 0.3);
    let mut tx = store.write().await.unwrap();
    let out = tx
        .apply_round(
            round.id,
            &[scored("C:98", 0.3), scored("B:99", 0.1)],
            &decision,
            500,
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(out, ApplyOutcome::Applied);

    let next = open_round(&store, 8).await.expect("second round");
    let roles: Vec<_> = next
        .contestants
        .iter()
        .map(|c| (c.submission_id.as_str(), c.role.code()))
        .collect();
    assert_eq!(roles, [("C:98", "king"), ("A:100", "challenger")]);
}

#[tokio::test]
async fn applying_the_same_verdicts_twice_changes_nothing_the_second_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    record(&store, obs("A", 1, Some(3), commitment("r/a", 1))).await;
    record(&store, obs("B", 2, Some(4), commitment("r/b", 2))).await;
    let round = open_round(&store, 8).await.unwrap();
    let verdicts = [
        scored("A:1", 0.4),
        ContestantVerdict {
            submission: "B:2".parse().unwrap(),
            outcome: VerdictOutcome::Disqualified(DisqualifyReason::GateFailed),
        },
    ];
    let decision = crown_vacant("A:1", 3, 0.4);

    assert_eq!(
        apply(&store, round.id, &verdicts, &decision, 50).await,
        ApplyOutcome::Applied
    );
    let after_first = snapshot(&store).await;

    let mut tx = store.write().await.unwrap();
    let again = tx
        .apply_round(round.id, &verdicts, &decision, 60)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(again, ApplyOutcome::AlreadyClosed(RoundState::Completed));
    assert_eq!(snapshot(&store).await, after_first);

    // A void arriving late for the same round is a no-op too.
    let mut tx = store.write().await.unwrap();
    let late = tx
        .void_round(round.id, &RoundVoid::ours(InfraReason::PodLost), 3)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(late, ApplyOutcome::AlreadyClosed(RoundState::Completed));
    assert_eq!(snapshot(&store).await, after_first);

    assert_eq!(state_of(&store, "A:1").await.0, SubmissionState::Scored);
    assert_eq!(
        state_of(&store, "B:2").await,
        (SubmissionState::Disqualified, Some("gate_failed".into()))
    );
    let king = store.king().await.unwrap().unwrap();
    assert_eq!(
        (king.submission_id.as_str(), king.uid, king.crowned_at_block),
        ("A:1", 3, 50)
    );
    assert_eq!(store.king_history(10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_round_without_every_verdict_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    record(&store, obs("A", 1, Some(3), commitment("r/a", 1))).await;
    record(&store, obs("B", 2, Some(4), commitment("r/b", 2))).await;
    let round = open_round(&store, 8).await.unwrap();
    let before = snapshot(&store).await;
    let mut tx = store.write().await.unwrap();
    let err = tx
        .apply_round(round.id, &[scored("A:1", 0.4)], &CrownDecision::NoKing, 5)
        .await;
    assert!(
        matches!(err, Err(StoreError::MissingVerdict { .. })),
        "{err:?}"
    );
    drop(tx);
    assert_eq!(snapshot(&store).await, before);
}

#[tokio::test]
async fn a_transaction_dropped_before_commit_leaves_the_previous_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    record(&store, obs("A", 1, Some(3), commitment("r/a", 1))).await;
    let round = open_round(&store, 8).await.unwrap();
    let before = snapshot(&store).await;

    let mut tx = store.write().await.unwrap();
    let decision = crown_vacant("A:1", 3, 0.4);
    tx.apply_round(round.id, &[scored("A:1", 0.4)], &decision, 9)
        .await
        .unwrap();
    tx.record_commitment(&obs("Z", 5, Some(9), commitment("r/z", 7)))
        .await
        .unwrap();
    // A concurrent reader sees the committed state while the writer is mid-way (WAL).
    assert_eq!(snapshot(&store).await, before);
    drop(tx); // the connection goes back without COMMIT: rolled back

    assert_eq!(snapshot(&store).await, before);
    store.close().await;
    let reopened = open(dir.path()).await;
    assert_eq!(snapshot(&reopened).await, before);
}

/// A process killed with SIGKILL in the middle of a transaction: the child half of this test.
/// It runs only when the parent sets CACHEON_CRASH_DB.
#[tokio::test]
async fn crash_child() {
    let Ok(db) = std::env::var("CACHEON_CRASH_DB") else {
        return;
    };
    let store = Store::open(Path::new(&db)).await.unwrap();
    let round = store.open_rounds().await.unwrap().remove(0);
    let mut tx = store.write().await.unwrap();
    let decision = crown_vacant("A:1", 3, 0.4);
    tx.apply_round(round.id, &[scored("A:1", 0.4)], &decision, 9)
        .await
        .unwrap();
    println!("IN-TRANSACTION");
    // Wait to be killed: the parent closes nothing, it sends SIGKILL.
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    unreachable!("the parent kills this process before it answers");
}

#[tokio::test]
async fn a_process_killed_mid_transaction_loses_nothing_and_applies_nothing() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cacheon.db");
    let store = open(dir.path()).await;
    record(&store, obs("A", 1, Some(3), commitment("r/a", 1))).await;
    open_round(&store, 8).await.unwrap();
    let before = snapshot(&store).await;
    store.close().await;

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env("CACHEON_CRASH_DB", &db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let reached = lines.any(|l| l.map(|l| l.contains("IN-TRANSACTION")).unwrap_or(false));
    assert!(reached, "child never reached the middle of its transaction");
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();

    let store = open(dir.path()).await;
    assert_eq!(snapshot(&store).await, before);
    // And the interrupted work can simply be done again.
    let round = store.open_rounds().await.unwrap().remove(0);
    let mut tx = store.write().await.unwrap();
    let decision = crown_vacant("A:1", 3, 0.4);
    assert_eq!(
        tx.apply_round(round.id, &[scored("A:1", 0.4)], &decision, 9)
            .await
            .unwrap(),
        ApplyOutcome::Applied
    );
    tx.commit().await.unwrap();
    assert_eq!(store.king().await.unwrap().unwrap().submission_id, "A:1");
}

#[tokio::test]
async fn infrastructure_failures_requeue_until_the_cap_then_need_an_operator() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    record(&store, obs("A", 1, Some(3), commitment("r/a", 1))).await;
    for attempt in 1..=3 {
        let round = open_round(&store, 8)
            .await
            .expect("requeued submission opens a round");
        let mut tx = store.write().await.unwrap();
        assert_eq!(
            tx.void_round(round.id, &RoundVoid::ours(InfraReason::PodLost), 3)
                .await
                .unwrap(),
            ApplyOutcome::Applied
        );
        tx.commit().await.unwrap();
        let row = store.submission("A:1").await.unwrap().unwrap();
        assert_eq!(row.infra_attempts, attempt);
        let want = if attempt < 3 {
            SubmissionState::Pending
        } else {
            SubmissionState::FailedInfra
        };
        assert_eq!(row.state, want, "attempt {attempt}");
        assert_eq!(
            store
                .round(round.id)
                .await
                .unwrap()
                .unwrap()
                .void_reason
                .as_deref(),
            Some("pod_lost")
        );
    }
    assert_eq!(
        state_of(&store, "A:1").await,
        (SubmissionState::FailedInfra, Some("pod_lost".into()))
    );
    // Never disqualified: infrastructure is not the miner's fault.
    assert!(open_round(&store, 8).await.is_none());

    let id: SubmissionId = "A:1".parse().unwrap();
    let mut tx = store.write().await.unwrap();
    tx.requeue(&id).await.unwrap();
    tx.commit().await.unwrap();
    let row = store.submission("A:1").await.unwrap().unwrap();
    assert_eq!(
        (row.state, row.infra_attempts),
        (SubmissionState::Pending, 0)
    );

    let mut tx = store.write().await.unwrap();
    assert!(matches!(
        tx.requeue(&id).await,
        Err(StoreError::WrongState { .. })
    ));
    assert!(matches!(
        tx.requeue(&"Nobody:1".parse().unwrap()).await,
        Err(StoreError::UnknownSubmission(_))
    ));
}

/// Two voided rounds make a submission a suspect: it is evaluated alone from then on, so
/// whatever it does to rounds cannot use up its neighbours' attempts.
#[tokio::test]
async fn a_submission_in_two_voided_rounds_is_evaluated_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    record(&store, obs("H", 1, Some(3), commitment("r/h", 1))).await;
    record(&store, obs("A", 2, Some(4), commitment("r/a", 2))).await;
    record(&store, obs("B", 3, Some(5), commitment("r/b", 3))).await;
    let members = |r: &cacheon_store::RoundRow| -> Vec<String> {
        r.contestants
            .iter()
            .map(|c| c.submission_id.clone())
            .collect()
    };
    let void = |round: i64| {
        let store = &store;
        async move {
            let mut tx = store.write().await.unwrap();
            tx.void_round(round, &RoundVoid::ours(InfraReason::EngineFailure), 3)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
    };
    for _ in 0..cacheon_store::ISOLATE_AFTER_VOIDS {
        let round = open_round(&store, 8).await.unwrap();
        assert_eq!(members(&round), ["H:1", "A:2", "B:3"]);
        void(round.id).await;
    }
    // All three are suspects now: each is evaluated alone, in commit order.
    let round = open_round(&store, 8).await.unwrap();
    assert_eq!(members(&round), ["H:1"]);
    void(round.id).await;
    assert_eq!(
        state_of(&store, "H:1").await.0,
        SubmissionState::FailedInfra
    );
    let round = open_round(&store, 8).await.unwrap();
    assert_eq!(members(&round), ["A:2"]);
    let decision = crown_vacant("A:2", 4, 0.4);
    apply(&store, round.id, &[scored("A:2", 0.4)], &decision, 9).await;
    // A newcomer is never grouped with the remaining suspect, and waits for its turn.
    record(&store, obs("C", 9, Some(6), commitment("r/c", 9))).await;
    let round = open_round(&store, 8).await.unwrap();
    assert_eq!(
        members(&round),
        ["A:2", "B:3"],
        "king first, then the suspect alone"
    );
}

#[tokio::test]
async fn the_king_is_defended_beaten_and_vacated_with_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    record(&store, obs("K", 1, Some(1), commitment("r/k", 1))).await;
    let r1 = open_round(&store, 8).await.unwrap();
    let crown_k = crown_vacant("K:1", 1, 0.2);
    apply(&store, r1.id, &[scored("K:1", 0.2)], &crown_k, 100).await;

    record(&store, obs("C", 2, Some(2), commitment("r/c", 2))).await;
    let r2 = open_round(&store, 8).await.unwrap();
    apply(
        &store,
        r2.id,
        &[scored("K:1", 0.25), scored("C:2", 0.251)],
        &CrownDecision::Keep { fresh_score: 0.25 },
        200,
    )
    .await;
    let king = store.king().await.unwrap().unwrap();
    assert_eq!(
        (
            king.submission_id.as_str(),
            king.score,
            king.crowned_at_block
        ),
        ("K:1", 0.25, 100)
    );

    record(&store, obs("D", 3, Some(5), commitment("r/d", 3))).await;
    let r3 = open_round(&store, 8).await.unwrap();
    let beat = CrownDecision::Crown {
        winner: contender("D:3", 5, 0.5),
        cause: CrownCause::BeatKing,
        dethroned: Some("K:1".parse().unwrap()),
    };
    apply(
        &store,
        r3.id,
        &[scored("K:1", 0.24), scored("D:3", 0.5)],
        &beat,
        300,
    )
    .await;
    assert_eq!(store.king().await.unwrap().unwrap().submission_id, "D:3");

    record(&store, obs("E", 4, Some(6), commitment("r/e", 4))).await;
    let r4 = open_round(&store, 8).await.unwrap();
    let dq = |id: &str| ContestantVerdict {
        submission: id.parse().unwrap(),
        outcome: VerdictOutcome::Disqualified(DisqualifyReason::Crashed),
    };
    apply(
        &store,
        r4.id,
        &[dq("D:3"), dq("E:4")],
        &CrownDecision::Vacate {
            dethroned: "D:3".parse().unwrap(),
        },
        400,
    )
    .await;
    assert!(store.king().await.unwrap().is_none());
    assert_eq!(
        state_of(&store, "D:3").await,
        (SubmissionState::Disqualified, Some("crashed".into()))
    );

    let events: Vec<_> = store
        .king_history(10)
        .await
        .unwrap()
        .into_iter()
        .rev()
        .map(|e| format!("{} {} {}", e.event, e.submission_id, e.cause))
        .collect();
    assert_eq!(
        events,
        [
            "crowned K:1 vacant",
            "defended K:1 fresh_measurement",
            "dethroned K:1 beaten",
            "crowned D:3 beat_king",
            "dethroned D:3 failed_fresh_gate",
        ]
    );
}

#[tokio::test]
async fn a_crowned_winner_must_be_a_contestant() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    record(&store, obs("A", 1, Some(3), commitment("r/a", 1))).await;
    let round = open_round(&store, 8).await.unwrap();
    let stranger = crown_vacant("X:9", 9, 1.0);
    let mut tx = store.write().await.unwrap();
    assert!(matches!(
        tx.apply_round(round.id, &[scored("A:1", 0.4)], &stranger, 9)
            .await,
        Err(StoreError::StaleDecision(_))
    ));
}

#[tokio::test]
async fn stale_or_inconsistent_decisions_are_refused_before_any_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    record(&store, obs("K", 1, Some(1), commitment("r/k", 1))).await;
    let r1 = open_round(&store, 8).await.unwrap();
    apply(
        &store,
        r1.id,
        &[scored("K:1", 0.2)],
        &crown_vacant("K:1", 1, 0.2),
        10,
    )
    .await;
    record(&store, obs("C", 2, Some(2), commitment("r/c", 2))).await;
    record(&store, obs("D", 3, Some(3), commitment("r/d", 3))).await;
    let r2 = open_round(&store, 8).await.unwrap();
    let verdicts = [
        scored("K:1", 0.2),
        scored("C:2", 0.5),
        ContestantVerdict {
            submission: "D:3".parse().unwrap(),
            outcome: VerdictOutcome::Disqualified(DisqualifyReason::GateFailed),
        },
    ];
    let before = snapshot(&store).await;
    let beat = |id: &str, uid| CrownDecision::Crown {
        winner: contender(id, uid, 0.9),
        cause: CrownCause::BeatKing,
        dethroned: Some("K:1".parse().unwrap()),
    };
    let stale = [
        crown_vacant("C:2", 2, 0.5), // ignores the reigning king
        beat("D:3", 3),              // disqualified in this round
        beat("K:1", 1),              // the king is not a challenger
        CrownDecision::Vacate {
            dethroned: "X:9".parse().unwrap(),
        },
        CrownDecision::NoKing,
    ];
    for decision in stale {
        let mut tx = store.write().await.unwrap();
        let err = tx.apply_round(r2.id, &verdicts, &decision, 20).await;
        assert!(
            matches!(err, Err(StoreError::StaleDecision(_))),
            "{decision:?}: {err:?}"
        );
        drop(tx);
        assert_eq!(snapshot(&store).await, before);
    }
    // The decision computed from the king inside the transaction applies.
    let mut tx = store.write().await.unwrap();
    assert_eq!(tx.king().await.unwrap().unwrap().submission_id, "K:1");
    tx.apply_round(r2.id, &verdicts, &beat("C:2", 2), 20)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.king().await.unwrap().unwrap().submission_id, "C:2");
}

#[tokio::test]
async fn copies_are_caught_whatever_order_a_scan_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    record(&store, obs("Copier", 30, Some(1), commitment("r/copy", 9))).await;
    record(&store, obs("Author", 50, Some(2), commitment("r/new", 4))).await;
    // The author's original, older than the copy but superseded by its own newer commit.
    record(&store, obs("Author", 10, Some(2), commitment("r/orig", 9))).await;
    assert_eq!(
        state_of(&store, "Author:10").await.0,
        SubmissionState::Withdrawn
    );
    assert_eq!(
        state_of(&store, "Copier:30").await,
        (
            SubmissionState::Rejected,
            Some("duplicate_of:Author:10".into())
        )
    );
}

#[tokio::test]
async fn a_hotkey_that_is_not_an_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let mut tx = store.write().await.unwrap();
    let err = tx
        .record_commitment(&obs("not a key", 1, Some(1), commitment("r/a", 1)))
        .await;
    assert!(matches!(err, Err(StoreError::InvalidHotkey(_))), "{err:?}");
}

#[tokio::test]
async fn a_copy_by_content_is_rejected_and_the_evidence_is_kept_once() {
    use cacheon_core::confirm::{Comparison, Confirmation, ConfirmationRecord};
    use cacheon_core::noise::{Interval, Lead};
    use cacheon_store::ContestantEvidence;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    record(&store, obs("A", 1, Some(3), commitment("r/a", 1))).await;
    record(&store, obs("A", 2, Some(3), commitment("r/a2", 2))).await;
    record(&store, obs("B", 3, Some(4), commitment("r/b", 3))).await;
    record(&store, obs("C", 4, Some(5), commitment("r/c", 4))).await;
    let round = open_round(&store, 8).await.unwrap();
    let same = "sha256:".to_string() + &"c".repeat(64);
    let other = "sha256:".to_string() + &"d".repeat(64);
    let mut tx = store.write().await.unwrap();
    // A's latest commitment (A:1 was superseded) and B's carry the same content; C differs.
    for (id, content) in [("A:2", &same), ("B:3", &same), ("C:4", &other)] {
        tx.record_content(&id.parse().unwrap(), content)
            .await
            .unwrap();
    }
    let original = |id: &str| id.parse::<SubmissionId>().unwrap();
    assert_eq!(tx.content_original(&original("A:2")).await.unwrap(), None);
    assert_eq!(
        tx.content_original(&original("B:3")).await.unwrap(),
        Some(original("A:2"))
    );
    assert_eq!(tx.content_original(&original("C:4")).await.unwrap(), None);
    let lead = Lead {
        lead: 0.02,
        interval: Interval {
            low: 0.01,
            high: 0.03,
        },
    };
    let record = ConfirmationRecord {
        king: original("A:2"),
        challenger: original("C:4"),
        first: Comparison {
            king: 0.3,
            challenger: 0.32,
            noise: Some(0.01),
        },
        second: None,
        outcome: Confirmation::NotConfirmed,
    };
    let mut report = cacheon_core::report::ContestantReport::default();
    report.timings.workload_s = 12.5;
    report
        .stream_faults
        .insert(cacheon_core::gate::StreamFault::Stalled, 1);
    let evidence = [ContestantEvidence {
        submission: original("C:4"),
        noise: None,
        lead: Some(lead),
        content: Some(other.clone()),
        confirm_score: Some(0.29),
        report: Some(report.clone()),
    }];
    tx.record_evidence(round.id, &evidence, Some(&record))
        .await
        .unwrap();
    let verdicts = [
        scored("A:2", 0.3),
        ContestantVerdict {
            submission: original("B:3"),
            outcome: VerdictOutcome::DuplicateOf(original("A:2")),
        },
        scored("C:4", 0.32),
    ];
    let out = tx
        .apply_round(round.id, &verdicts, &crown_vacant("A:2", 3, 0.3), 9)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(out, ApplyOutcome::Applied);
    assert_eq!(
        state_of(&store, "B:3").await,
        (SubmissionState::Rejected, Some("duplicate_of:A:2".into()))
    );
    let stored = store.round(round.id).await.unwrap().unwrap();
    assert_eq!(stored.confirmation, Some(record));
    let row = |id: &str| {
        stored
            .contestants
            .iter()
            .find(|c| c.submission_id == id)
            .unwrap()
            .clone()
    };
    assert_eq!(row("B:3").outcome.as_deref(), Some("rejected"));
    assert_eq!(row("C:4").lead, Some(lead));
    assert_eq!(row("C:4").confirm_score, Some(0.29));
    assert_eq!(row("C:4").report, Some(report));
    assert_eq!(row("A:2").report, None);
    // The submission's own rounds, newest first, carry the same rows.
    let mine = store.rounds_of("C:4", 10).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].id, round.id);
    assert!(store.rounds_of("Z:99", 10).await.unwrap().is_empty());
    assert_eq!(
        store.last_completed_round_at().await.unwrap(),
        stored.closed_at
    );
    // Once closed, the round's evidence is never rewritten.
    let mut tx = store.write().await.unwrap();
    let later = [ContestantEvidence {
        confirm_score: Some(9.0),
        report: None,
        ..evidence[0].clone()
    }];
    tx.record_evidence(round.id, &later, None).await.unwrap();
    tx.commit().await.unwrap();
    let again = store.round(round.id).await.unwrap().unwrap();
    assert_eq!(again.contestants, stored.contestants);
}

async fn void_caused_by(store: &Store, round: i64, cause: &str) -> ApplyOutcome {
    let mut tx = store.write().await.unwrap();
    let void = RoundVoid {
        reason: InfraReason::EngineFailure,
        cause: Some(cause),
        block: 77,
    };
    let out = tx.void_round(round, &void, 3).await.unwrap();
    tx.commit().await.unwrap();
    out
}

async fn attempts(store: &Store, id: &str) -> (SubmissionState, i64) {
    let row = store.submission(id).await.unwrap().unwrap();
    (row.state, row.infra_attempts)
}

#[tokio::test]
async fn a_void_charges_only_the_challenger_whose_turn_caused_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    record(&store, obs("A", 1, Some(3), commitment("r/a", 1))).await;
    record(&store, obs("B", 2, Some(4), commitment("r/b", 2))).await;
    let round = open_round(&store, 8).await.unwrap();
    assert_eq!(
        void_caused_by(&store, round.id, "B:2").await,
        ApplyOutcome::Applied
    );
    assert_eq!(attempts(&store, "A:1").await, (SubmissionState::Pending, 0));
    assert_eq!(attempts(&store, "B:2").await, (SubmissionState::Pending, 1));
    let row = store.round(round.id).await.unwrap().unwrap();
    assert_eq!(row.void_cause.as_deref(), Some("B:2"));
    // Replayed, it changes nothing.
    let before = snapshot(&store).await;
    assert_eq!(
        void_caused_by(&store, round.id, "B:2").await,
        ApplyOutcome::AlreadyClosed(RoundState::Void)
    );
    assert_eq!(snapshot(&store).await, before);
}

#[tokio::test]
async fn a_king_whose_turns_void_rounds_loses_the_crown_and_nobody_else_pays() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    record(&store, obs("K", 1, Some(3), commitment("r/k", 1))).await;
    let first = open_round(&store, 8).await.unwrap();
    apply(
        &store,
        first.id,
        &[scored("K:1", 0.4)],
        &crown_vacant("K:1", 3, 0.4),
        10,
    )
    .await;
    record(&store, obs("C", 2, Some(4), commitment("r/c", 2))).await;

    // One caused void: counted, the king keeps the crown, the challenger is not charged.
    let round = open_round(&store, 8).await.unwrap();
    void_caused_by(&store, round.id, "K:1").await;
    assert_eq!(store.king().await.unwrap().unwrap().submission_id, "K:1");
    assert_eq!(attempts(&store, "C:2").await, (SubmissionState::Pending, 0));

    // A completed round in between starts the count again.
    let round = open_round(&store, 8).await.unwrap();
    let keep = CrownDecision::Keep { fresh_score: 0.4 };
    let verdicts = [scored("K:1", 0.4), scored("C:2", 0.1)];
    apply(&store, round.id, &verdicts, &keep, 20).await;
    record(&store, obs("D", 3, Some(5), commitment("r/d", 3))).await;
    let round = open_round(&store, 8).await.unwrap();
    void_caused_by(&store, round.id, "K:1").await;
    assert_eq!(store.king().await.unwrap().unwrap().submission_id, "K:1");

    // The second in a row dethrones it; still nobody else is charged.
    let round = open_round(&store, 8).await.unwrap();
    void_caused_by(&store, round.id, "K:1").await;
    assert_eq!(store.king().await.unwrap(), None);
    assert_eq!(attempts(&store, "D:3").await, (SubmissionState::Pending, 0));
    let history = store.king_history(10).await.unwrap();
    assert!(
        history.iter().any(|e| e.cause == "caused_voids"),
        "{history:?}"
    );
}
