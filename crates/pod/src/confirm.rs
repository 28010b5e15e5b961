//! The confirmation pass (`cacheon_core::confirm`): when the leading challenger's lead over
//! the king is within the measured noise, one pass cannot crown it, so the pod measures the
//! two again before writing `done.json` — fresh prompts from the round's seed, the
//! challenger first and the king right after it (the opposite order of the first pass, so a
//! slow drift of the machine favours neither), and a baseline run of their own, every
//! request gated as before. The host decides on the lower of the two passes.
//!
//! At most one per round, and what it costs is a second turn for two contestants and the
//! baseline: two pulls (images are removed after every turn), three start-ups, three
//! workloads. Its timings are in `confirm/results/` and `confirm/baseline.json`.

use cacheon_core::confirm::Comparison;
use cacheon_core::prompts::{generate, BlockHash, PromptSet};
use cacheon_core::{to_confirm, Contender, Role, SubmissionId};
use cacheon_handoff::documents::{
    ConfirmationPass, Job, JobContestant, RoundOutcome, RoundPhase, Verdict, VerdictKind,
};
use cacheon_handoff::layout;
use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;

use crate::judge;
use crate::round::{self, Context, Interrupt};
use crate::tracker::Tracker;

/// Which of a round's two passes a step belongs to: where its documents and logs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    First,
    Confirmation,
}

impl Pass {
    pub fn result_key(self, round: i64, submission_id: &str) -> String {
        match self {
            Pass::First => layout::result(round, submission_id),
            Pass::Confirmation => layout::confirm_result(round, submission_id),
        }
    }

    pub fn baseline_key(self, round: i64) -> String {
        match self {
            Pass::First => layout::baseline(round),
            Pass::Confirmation => layout::confirm_baseline(round),
        }
    }

    /// A container log's label: the submission id (or `baseline`), prefixed in the
    /// confirmation pass. A submission id never contains '.', so no label is another's.
    pub fn log_label(self, label: &str) -> String {
        match self {
            Pass::First => label.to_string(),
            Pass::Confirmation => format!("confirm.{label}"),
        }
    }
}

/// The fresh prompts of the confirmation pass: the generator's seed is the round's seed
/// hashed with a fixed label, so every validator derives the same set, and no miner could
/// have tuned for it from the first pass's prompts alone.
pub fn prompts(ctx: &Context<'_>, job: &Job) -> Result<PromptSet, String> {
    let seed: BlockHash = job
        .seed_hash
        .parse()
        .map_err(|e| format!("job seed hash: {e}"))?;
    let mut h = Sha256::new();
    h.update(b"cacheon-confirmation-pass\0");
    h.update(seed.0);
    let fresh = BlockHash(h.finalize().into());
    generate(
        &fresh,
        &ctx.prompts.corpus,
        &ctx.prompts.templates,
        &job.workload,
    )
    .map_err(|e| format!("cannot derive the confirmation prompts: {e}"))
}

/// The king and the challenger to measure again, if the first pass left a lead within noise.
pub fn candidate<'j>(
    job: &'j Job,
    verdicts: &[Verdict],
) -> Option<(&'j JobContestant, &'j JobContestant, Comparison)> {
    let terms = job.crown?;
    let contender = |c: &JobContestant| -> Option<Contender> {
        let v = verdicts
            .iter()
            .find(|v| v.submission_id == c.submission_id)?;
        let score = v.outcome.score();
        Some(Contender {
            submission: c.submission_id.parse().ok()?,
            uid: c.uid,
            commit_block: c.commit_block,
            passed: score.is_some(),
            score: score.unwrap_or(0.0),
            lead_noise: v.lead.map(|l| l.interval.half_width()),
        })
    };
    let king = job.contestants.iter().find(|c| c.role == Role::King)?;
    let fresh = contender(king)?;
    let challengers: Vec<Contender> = job
        .contestants
        .iter()
        .filter(|c| c.role == Role::Challenger)
        .filter_map(contender)
        .collect();
    let (id, first) = to_confirm(&terms.confirm, terms.margin, &fresh, &challengers)?;
    let id: String = SubmissionId::to_string(&id);
    let challenger = job.contestants.iter().find(|c| c.submission_id == id)?;
    Some((king, challenger, first))
}

/// Runs the confirmation pass when the first pass calls for one. The round's verdicts come
/// back with a contestant that failed in this pass disqualified by it; a failure of the
/// baseline here voids the round like one in the first pass.
pub async fn run(
    ctx: &Context<'_>,
    job: &Job,
    first: RoundOutcome,
    tracker: &mut Tracker<'_>,
    cancel: &CancellationToken,
) -> Result<(RoundOutcome, Option<ConfirmationPass>), Interrupt> {
    let RoundOutcome::Completed { verdicts } = &first else {
        return Ok((first, None));
    };
    let Some((king, challenger, comparison)) = candidate(job, verdicts) else {
        return Ok((first, None));
    };
    tracing::info!(
        step = "confirming",
        king = %king.submission_id,
        challenger = %challenger.submission_id,
        lead = comparison.lead(),
        noise = ?comparison.noise,
        "the leading challenger's lead is within noise; measuring it and the king again"
    );
    tracker.phase(RoundPhase::Confirming).await;
    let prompts = match prompts(ctx, job) {
        Ok(p) => p,
        Err(detail) => {
            tracing::error!("{detail}");
            let reason = cacheon_core::InfraReason::PreflightFailed;
            return Ok((
                RoundOutcome::Void {
                    reason,
                    detail,
                    cause: None,
                },
                None,
            ));
        }
    };
    let pass = Context {
        pass: Pass::Confirmation,
        ..*ctx
    };
    let results =
        round::contestants(&pass, job, &[challenger, king], &prompts, tracker, cancel).await?;
    let second = judge::run(&pass, job, &prompts, &results, tracker, cancel).await?;
    let RoundOutcome::Completed { verdicts: again } = second else {
        return Ok((second, None));
    };
    let merged = verdicts
        .iter()
        .map(|v| {
            match again.iter().find(|a| a.submission_id == v.submission_id) {
                // Failing the gate (or the stream) in either pass disqualifies.
                Some(
                    a @ Verdict {
                        outcome: VerdictKind::Disqualified { reason, detail },
                        ..
                    },
                ) => Verdict {
                    outcome: VerdictKind::Disqualified {
                        reason: *reason,
                        detail: format!("in the confirmation pass: {detail}"),
                    },
                    gate: a.gate.clone(),
                    report: a.report.clone(),
                    noise: None,
                    lead: None,
                    ..v.clone()
                },
                _ => v.clone(),
            }
        })
        .collect();
    let pass = ConfirmationPass {
        king: king.submission_id.clone(),
        challenger: challenger.submission_id.clone(),
        prompt_set_hash: prompts.prompt_set_hash.clone(),
        verdicts: again,
    };
    Ok((RoundOutcome::Completed { verdicts: merged }, Some(pass)))
}
