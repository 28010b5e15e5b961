//! Opening rounds and handing them to pods (SPEC §5, §9). A round is opened in SQLite
//! first; its `job.json` is then written with `If-None-Match` — rebuilt from the store on
//! every pass until it is there, so a host that dies between the two steps writes it after
//! restarting, and a job once written never changes.

use std::collections::HashSet;
use std::time::Duration;

use cacheon_chain::{BlockRef, Metagraph};
use cacheon_core::prompts::{generate, BlockHash};
use cacheon_core::{Role, SubmissionState};
use cacheon_handoff::documents::{CrownTerms, Job, JobContestant};
use cacheon_handoff::{layout, Condition, Put};
use cacheon_store::{NewRound, RoundRow, RoundState, SubmissionFilter};

use crate::{now_unix, Host, HostError};

/// What the host remembers between passes; all of it can be lost (a restart) safely.
#[derive(Default)]
pub struct Memory {
    pub metagraph: Option<Metagraph>,
    /// The block before which no new weights attempt is made (after a failure).
    pub weights_retry_at: Option<u64>,
    /// Rounds whose `job.json` is known to be in the bucket.
    pub jobs_written: HashSet<i64>,
    /// Rounds a pod was requested for.
    pub provisioned: HashSet<i64>,
}

/// Opens a round when submissions are pending and there is room.
pub async fn open(host: &mut Host, head: BlockRef) -> Result<(), HostError> {
    let cfg = &host.cfg;
    let pending = host
        .store
        .submissions(&SubmissionFilter {
            state: Some(SubmissionState::Pending),
            limit: Some(cfg.max_challengers_per_round),
            ..SubmissionFilter::default()
        })
        .await?;
    if pending.is_empty() {
        return Ok(());
    }
    let king = host.store.king().await?;
    let contestants = pending.len() as u32 + u32::from(king.is_some());
    let confirm = king.is_some() && cfg.king_rule.confirm.is_some();
    let deadline = deadline(
        cfg.round_deadline_base,
        cfg.turn_budget,
        contestants,
        confirm,
    );
    let new = NewRound {
        seed_block: head.number,
        seed_hash: BlockHash(head.hash).to_string(),
        deadline_at: now_unix().saturating_add(i64::try_from(deadline.as_secs()).unwrap_or(0)),
        max_challengers: cfg.max_challengers_per_round,
        max_open_rounds: cfg.max_parallel_rounds,
    };
    let mut tx = host.store.write().await?;
    let round = tx.open_round(&new).await?;
    tx.commit().await?;
    if let Some(round) = round {
        tracing::info!(
            round = round.id,
            seed_block = round.seed_block,
            contestants = round.contestants.len(),
            "round opened"
        );
        metrics::counter!(crate::observe::OPENED).increment(1);
        hand_off_one(host, &round).await?;
    }
    Ok(())
}

/// How long a round may take: the base (the baseline's turn and judging) and one turn
/// budget per contestant; with a confirmation pass, another base and two more turns. The
/// pod holds every contestant's turn to `turn`, so only our own side can overrun this.
pub fn deadline(base: Duration, turn: Duration, contestants: u32, confirm: bool) -> Duration {
    let pass = |turns: u32| base + turn * turns;
    pass(contestants) + if confirm { pass(2) } else { Duration::ZERO }
}

/// Every open round has its job in the bucket and a pod requested; pods of closed rounds
/// are stopped.
pub async fn hand_off(host: &mut Host) -> Result<(), HostError> {
    let open = host.store.open_rounds().await?;
    let mut first_error = None;
    for round in &open {
        if let Err(e) = hand_off_one(host, round).await {
            first_error.get_or_insert(e);
        }
    }
    let open_ids: HashSet<i64> = open.iter().map(|r| r.id).collect();
    let finished: Vec<i64> = host
        .state
        .provisioned
        .iter()
        .filter(|id| !open_ids.contains(id))
        .copied()
        .collect();
    for id in finished {
        if let Err(e) = host.provisioner.stop(id).await {
            tracing::warn!(round = id, "stopping the pod failed: {e}");
        }
        host.state.provisioned.remove(&id);
        host.state.jobs_written.remove(&id);
    }
    first_error.map_or(Ok(()), Err)
}

async fn hand_off_one(host: &mut Host, round: &RoundRow) -> Result<(), HostError> {
    if round.state != RoundState::Open {
        return Ok(());
    }
    if !host.state.jobs_written.contains(&round.id) {
        let job = job(host, round).await?;
        match host
            .bucket
            .put_doc(&layout::job(round.id), &job, Condition::IfNoneMatch)
            .await?
        {
            Put::Written { .. } => tracing::info!(round = round.id, "job.json written"),
            Put::PreconditionFailed => {
                tracing::debug!(round = round.id, "job.json was already written");
            }
        }
        host.state.jobs_written.insert(round.id);
    }
    if !host.state.provisioned.contains(&round.id) {
        host.provisioner
            .start(round.id)
            .await
            .map_err(HostError::Config)?;
        host.state.provisioned.insert(round.id);
    }
    Ok(())
}

/// The round's job, from the store and the configuration only (the same bytes on every
/// rebuild, so a rewrite after a crash describes the same round).
pub async fn job(host: &Host, round: &RoundRow) -> Result<Job, HostError> {
    let cfg = &host.cfg;
    let mut contestants = Vec::with_capacity(round.contestants.len());
    for c in &round.contestants {
        let s = host
            .store
            .submission(&c.submission_id)
            .await?
            .ok_or_else(|| HostError::Config(format!("contestant {} vanished", c.submission_id)))?;
        let (Some(image), Some(digest)) = (s.image, s.digest) else {
            return Err(HostError::Config(format!(
                "contestant {} has no image",
                c.submission_id
            )));
        };
        contestants.push(JobContestant {
            submission_id: s.id,
            role: c.role,
            uid: s.uid.unwrap_or(u16::MAX),
            commit_block: u64::try_from(s.commit_block).unwrap_or(0),
            image,
            digest,
        });
    }
    let seed: BlockHash = round
        .seed_hash
        .parse()
        .map_err(|_| HostError::Config(format!("round {} has a bad seed hash", round.id)))?;
    let prompts = generate(&seed, &host.corpus, &host.templates, &cfg.workload)
        .map_err(|e| HostError::Config(format!("prompts: {e}")))?;
    let crown = crown_terms(host, round).await?;
    Ok(Job {
        round_id: round.id,
        netuid: cfg.netuid,
        seed_block: u64::try_from(round.seed_block).unwrap_or(0),
        seed_hash: round.seed_hash.clone(),
        prompt_set_hash: prompts.prompt_set_hash,
        contestants,
        baseline: cfg.baseline.clone(),
        workload: cfg.workload,
        harness: cfg.harness.clone(),
        thresholds: cfg.thresholds,
        created_at: round.opened_at,
        deadline_at: round.deadline_at,
        crown,
        turn_budget_secs: Some(cfg.turn_budget.as_secs()),
    })
}

/// The king's terms for the round: the margin at its seed block (the host decides with the
/// same one), and the confirmation rule. None without a king in the round or a rule.
async fn crown_terms(host: &Host, round: &RoundRow) -> Result<Option<CrownTerms>, HostError> {
    let rule = &host.cfg.king_rule;
    let Some(confirm) = rule.confirm else {
        return Ok(None);
    };
    let Some(king) = host.store.king().await? else {
        return Ok(None);
    };
    let in_round = round
        .contestants
        .iter()
        .any(|c| c.role == Role::King && c.submission_id == king.submission_id);
    Ok(in_round.then(|| CrownTerms {
        margin: rule.margin(
            u64::try_from(round.seed_block).unwrap_or(0),
            u64::try_from(king.crowned_at_block).unwrap_or(0),
        ),
        confirm,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_holds_every_turn() {
        let (base, turn) = (Duration::from_secs(600), Duration::from_secs(1800));
        assert_eq!(deadline(base, turn, 3, false), base + turn * 3);
        assert_eq!(deadline(base, turn, 3, true), base * 2 + turn * 5);
        assert_eq!(deadline(base, turn, 0, false), base);
    }
}
