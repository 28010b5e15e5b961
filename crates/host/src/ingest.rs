//! Ingesting what pods wrote (SPEC §4, §5, §11): for each open round, `done.json` is read,
//! checked against the round, turned into verdicts and a crown decision, and applied in
//! one transaction that also closes the round — so applying twice changes nothing. A round
//! past its deadline, a void verdict, or a document that is refused (corrupt, bad MAC)
//! voids the round: its challengers go back to pending, charged nothing but an attempt.

use cacheon_chain::BlockRef;
use cacheon_core::confirm::Comparison;
use cacheon_core::{
    confirmation_record, decide, Contender, InfraReason, KingStanding, Role, SecondPass,
    SubmissionId,
};
use cacheon_handoff::documents::{
    ConfirmationPass, Done, Progress, RoundOutcome, Verdict, VerdictKind,
};
use cacheon_handoff::{layout, HandoffError};
use cacheon_store::{
    ApplyOutcome, ContestantEvidence, ContestantVerdict, RoundRow, RoundVoid, VerdictOutcome,
};

use crate::{now_unix, observe, Host, HostError};

pub async fn run(host: &mut Host, head: BlockRef) -> Result<(), HostError> {
    let open = host.store.open_rounds().await?;
    let mut progress = std::collections::BTreeMap::new();
    let mut first_error = None;
    for round in &open {
        match host
            .bucket
            .get_doc::<Progress>(&layout::progress(round.id))
            .await
        {
            Ok(Some((p, _))) => {
                if let Ok(v) = serde_json::to_value(&p) {
                    progress.insert(round.id, v);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(round = round.id, "progress unreadable: {e}"),
        }
        if let Err(e) = one(host, round, head).await {
            first_error.get_or_insert(e);
        }
    }
    host.snapshot.send_modify(|s| s.progress = progress);
    first_error.map_or(Ok(()), Err)
}

async fn one(host: &mut Host, round: &RoundRow, head: BlockRef) -> Result<(), HostError> {
    let done = match host.bucket.get_doc::<Done>(&layout::done(round.id)).await {
        Ok(Some((done, _))) => done,
        Ok(None) => {
            if now_unix() >= round.deadline_at {
                return void(
                    host,
                    round,
                    InfraReason::DeadlineExceeded,
                    "deadline passed",
                )
                .await;
            }
            return Ok(());
        }
        Err(HandoffError::Refused { key, source }) => {
            tracing::error!(%key, "refusing the round's done.json: {source}");
            return void(host, round, InfraReason::CorruptResult, &source.to_string()).await;
        }
        Err(e) => {
            if now_unix() >= round.deadline_at {
                return void(host, round, InfraReason::StorageUnavailable, &e.to_string()).await;
            }
            return Err(e.into());
        }
    };
    tracing::info!(round = round.id, pod = %done.pod_id, "ingesting done.json");
    if done.round_id != round.id {
        return void(
            host,
            round,
            InfraReason::CorruptResult,
            "done.json names another round",
        )
        .await;
    }
    let verdicts = match &done.outcome {
        RoundOutcome::Void {
            reason,
            detail,
            cause,
        } => {
            let void = RoundVoid {
                reason: *reason,
                cause: cause.as_deref(),
                block: head.number,
            };
            return void_with(host, round, &void, detail).await;
        }
        RoundOutcome::Completed { verdicts } => verdicts,
    };
    let stored = match to_store(round, verdicts) {
        Ok(v) => v,
        Err(detail) => return void(host, round, InfraReason::CorruptResult, &detail).await,
    };
    let pass = done.confirmation.as_ref();
    let evidence = evidence(verdicts, pass);
    apply(host, round, &stored, &evidence, pass, head).await
}

/// Every contestant's noise figures and confirmation score, as the store keeps them.
fn evidence(verdicts: &[Verdict], pass: Option<&ConfirmationPass>) -> Vec<ContestantEvidence> {
    verdicts
        .iter()
        .filter_map(|v| {
            let confirm_score = pass
                .and_then(|p| {
                    p.verdicts
                        .iter()
                        .find(|a| a.submission_id == v.submission_id)
                })
                .and_then(scored);
            Some(ContestantEvidence {
                submission: v.submission_id.parse().ok()?,
                noise: v.noise,
                lead: v.lead,
                content: v.content.clone(),
                confirm_score,
                report: v.report.clone(),
            })
        })
        .collect()
}

/// A score the host can use (documents are checked, not trusted).
fn scored(v: &Verdict) -> Option<f64> {
    v.outcome.score().filter(|s| s.is_finite() && *s >= 0.0)
}

/// The confirmation pass as the king rule reads it: both measured again and scored.
fn second_pass(pass: &ConfirmationPass) -> Option<SecondPass> {
    let find = |id: &str| pass.verdicts.iter().find(|v| v.submission_id == id);
    let challenger = find(&pass.challenger)?;
    Some(SecondPass {
        challenger: pass.challenger.parse().ok()?,
        comparison: Comparison {
            king: scored(find(&pass.king)?)?,
            challenger: scored(challenger)?,
            noise: challenger.lead.map(|l| l.interval.half_width()),
        },
    })
}

/// The pod's verdicts as the store takes them; every contestant exactly once, scores
/// finite and non-negative, or the document is refused.
fn to_store(
    round: &RoundRow,
    verdicts: &[cacheon_handoff::documents::Verdict],
) -> Result<Vec<ContestantVerdict>, String> {
    let mut out = Vec::with_capacity(verdicts.len());
    for c in &round.contestants {
        let mut matching = verdicts
            .iter()
            .filter(|v| v.submission_id == c.submission_id);
        let (Some(v), None) = (matching.next(), matching.next()) else {
            return Err(format!("not exactly one verdict for {}", c.submission_id));
        };
        let submission: SubmissionId = v
            .submission_id
            .parse()
            .map_err(|_| format!("bad submission id {}", v.submission_id))?;
        let outcome = match &v.outcome {
            VerdictKind::Scored { score, .. } if score.is_finite() && *score >= 0.0 => {
                VerdictOutcome::Scored { score: *score }
            }
            VerdictKind::Scored { score, .. } => {
                return Err(format!("score {score} for {}", v.submission_id))
            }
            VerdictKind::Disqualified { reason, .. } => VerdictOutcome::Disqualified(*reason),
        };
        out.push(ContestantVerdict {
            submission,
            outcome,
        });
    }
    if out.len() != verdicts.len() {
        return Err("verdicts for submissions that are not contestants".into());
    }
    Ok(out)
}

async fn apply(
    host: &mut Host,
    round: &RoundRow,
    verdicts: &[ContestantVerdict],
    evidence: &[ContestantEvidence],
    pass: Option<&ConfirmationPass>,
    head: BlockRef,
) -> Result<(), HostError> {
    let role_of = |id: &SubmissionId| {
        round
            .contestants
            .iter()
            .find(|c| c.submission_id == id.to_string())
            .map(|c| c.role)
    };
    let mut tx = host.store.write().await?;
    // Copies by content: every image recorded first, so an original in this very round
    // counts; a challenger whose image is an earlier submission's of another hotkey is
    // rejected whatever it scored.
    for e in evidence {
        if let Some(content) = &e.content {
            tx.record_content(&e.submission, content).await?;
        }
    }
    let mut verdicts = verdicts.to_vec();
    for v in &mut verdicts {
        if role_of(&v.submission) != Some(Role::Challenger) {
            continue;
        }
        if let Some(original) = tx.content_original(&v.submission).await? {
            tracing::warn!(submission = %v.submission, %original, "a copy of an earlier submission's image");
            v.outcome = VerdictOutcome::DuplicateOf(original);
        }
    }
    let verdicts = verdicts.as_slice();
    let mut contenders = Vec::with_capacity(verdicts.len());
    for v in verdicts {
        let id = v.submission.to_string();
        let row = host
            .store
            .submission(&id)
            .await?
            .ok_or_else(|| HostError::Config(format!("contestant {id} vanished")))?;
        let (passed, score) = match v.outcome {
            VerdictOutcome::Scored { score } => (true, score),
            VerdictOutcome::Disqualified(_) | VerdictOutcome::DuplicateOf(_) => (false, 0.0),
        };
        contenders.push(Contender {
            submission: v.submission.clone(),
            uid: row.uid.unwrap_or(u16::MAX),
            commit_block: u64::try_from(row.commit_block).unwrap_or(0),
            passed,
            score,
            lead_noise: evidence
                .iter()
                .find(|e| e.submission == v.submission)
                .and_then(|e| e.lead)
                .map(|l| l.interval.half_width()),
        });
    }
    // The king as this transaction sees it: a decision can never be taken on a stale view.
    let king = tx.king().await?.and_then(|k| {
        let submission: SubmissionId = k.submission_id.parse().ok()?;
        let fresh = contenders
            .iter()
            .find(|c| c.submission == submission && role_of(&c.submission) == Some(Role::King))
            .cloned();
        Some(KingStanding {
            submission,
            uid: k.uid,
            crowned_at_block: u64::try_from(k.crowned_at_block).unwrap_or(0),
            fresh,
        })
    });
    let challengers: Vec<Contender> = contenders
        .iter()
        .filter(|c| role_of(&c.submission) == Some(Role::Challenger))
        .cloned()
        .collect();
    // The margin of the round's seed block: the one its job told the pod.
    let at = u64::try_from(round.seed_block).unwrap_or(0);
    let rule = &host.cfg.king_rule;
    let second = pass.and_then(second_pass);
    let decision = decide(rule, at, king.as_ref(), &challengers, second.as_ref());
    let record = pass.and_then(|p| {
        let challenger: SubmissionId = p.challenger.parse().ok()?;
        let king = king.as_ref()?;
        confirmation_record(rule, at, king, &challengers, &challenger, second.as_ref())
    });
    tx.record_evidence(round.id, evidence, record.as_ref())
        .await?;
    let applied = tx
        .apply_round(round.id, verdicts, &decision, head.number)
        .await?;
    tx.commit().await?;
    if applied == ApplyOutcome::Applied {
        tracing::info!(round = round.id, ?decision, confirmation = ?record, "round applied");
        let reports: Vec<_> = evidence
            .iter()
            .filter_map(|e| Some((role_of(&e.submission)?, e.report.as_ref()?)))
            .collect();
        observe::completed(round.opened_at, now_unix(), verdicts, &reports);
    }
    Ok(())
}

async fn void(
    host: &mut Host,
    round: &RoundRow,
    reason: InfraReason,
    detail: &str,
) -> Result<(), HostError> {
    void_with(host, round, &RoundVoid::ours(reason), detail).await
}

async fn void_with(
    host: &mut Host,
    round: &RoundRow,
    void: &RoundVoid<'_>,
    detail: &str,
) -> Result<(), HostError> {
    let reason = void.reason;
    let mut tx = host.store.write().await?;
    let applied = tx
        .void_round(round.id, void, host.cfg.max_infra_attempts)
        .await?;
    tx.commit().await?;
    if applied == ApplyOutcome::Applied {
        match void.cause {
            Some(cause) => tracing::warn!(
                round = round.id,
                %reason,
                cause,
                detail,
                "round void during one contestant's turn; only it is charged"
            ),
            None => {
                tracing::warn!(round = round.id, %reason, detail, "round void; challengers requeued")
            }
        }
        observe::void(round.opened_at, now_unix(), reason);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use cacheon_core::DisqualifyReason;
    use cacheon_handoff::documents::Verdict;
    use cacheon_store::{ContestantRow, RoundState};

    fn round(ids: &[&str]) -> RoundRow {
        RoundRow {
            id: 1,
            seed_block: 1,
            seed_hash: String::new(),
            state: RoundState::Open,
            void_reason: None,
            void_cause: None,
            opened_at: 0,
            deadline_at: 0,
            closed_at: None,
            contestants: ids
                .iter()
                .enumerate()
                .map(|(i, id)| ContestantRow {
                    submission_id: id.to_string(),
                    role: Role::Challenger,
                    position: i as i64,
                    outcome: None,
                    score: None,
                    reason: None,
                    noise: None,
                    lead: None,
                    confirm_score: None,
                    report: None,
                })
                .collect(),
            confirmation: None,
        }
    }

    fn verdict(id: &str, outcome: VerdictKind) -> Verdict {
        Verdict {
            submission_id: id.into(),
            role: Role::Challenger,
            outcome,
            gate: None,
            noise: None,
            lead: None,
            content: None,
            report: None,
        }
    }

    fn scored(score: f64) -> VerdictKind {
        VerdictKind::Scored {
            score,
            ttft_s: 0.1,
            tps: 10.0,
        }
    }

    #[test]
    fn verdicts_must_match_the_round_exactly() {
        let (a, b) = ("5Abc:1", "5Def:2");
        let r = round(&[a, b]);
        let dq = VerdictKind::Disqualified {
            reason: DisqualifyReason::Crashed,
            detail: String::new(),
        };
        let ok = to_store(&r, &[verdict(a, scored(0.5)), verdict(b, dq.clone())]).unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0].outcome, VerdictOutcome::Scored { score: 0.5 });
        assert_eq!(
            ok[1].outcome,
            VerdictOutcome::Disqualified(DisqualifyReason::Crashed)
        );
        // Missing, doubled, foreign, or impossible scores: refused as a whole.
        assert!(to_store(&r, &[verdict(a, scored(0.5))]).is_err());
        assert!(to_store(
            &r,
            &[
                verdict(a, scored(0.5)),
                verdict(a, scored(0.6)),
                verdict(b, dq.clone())
            ]
        )
        .is_err());
        assert!(to_store(
            &r,
            &[
                verdict(a, scored(0.5)),
                verdict(b, dq.clone()),
                verdict("5Xyz:3", dq.clone())
            ]
        )
        .is_err());
        for bad in [f64::NAN, f64::INFINITY, -0.1] {
            assert!(to_store(&r, &[verdict(a, scored(bad)), verdict(b, dq.clone())]).is_err());
        }
    }
}
