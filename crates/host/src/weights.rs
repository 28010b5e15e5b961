//! Weights (SPEC §11): all weight to the king's uid, or to `burn_uid` without a king; set
//! when that changes (a crowning) and every `weights_interval_blocks`. The king's uid is looked up in
//! the metagraph of this pass, not taken from when it was crowned, since uids move. In
//! observe mode the vector is computed and recorded, never sent.

use cacheon_chain::{BlockRef, ChainError, Submit};
use cacheon_core::{king_weights, SubmissionId};
use cacheon_store::{WeightMode, WeightOutcome};

use crate::scan::uid_of;
use crate::{Host, HostError, Signer};

pub async fn run(host: &mut Host, head: BlockRef) -> Result<(), HostError> {
    let king = host.store.king().await?;
    let king_uid = king.as_ref().and_then(|k| {
        let id = k.submission_id.parse::<SubmissionId>().ok()?;
        uid_of(host.state.metagraph.as_ref()?, &id.hotkey)
    });
    let vector = king_weights(king_uid, host.cfg.burn_uid);

    // Due when the vector differs from the last one recorded (a crowning, a dethroning, a
    // moved uid) or the last attempt failed — read from the store, so a host that crashed
    // right after a crowning still sets the new weights — and every interval regardless.
    let last = host.store.last_weight_submission().await?;
    let uids = serde_json::to_string(&vector.uids).unwrap_or_default();
    let changed = last
        .as_ref()
        .is_none_or(|w| w.uids != uids || w.outcome == "failed");
    let next = last
        .as_ref()
        .and_then(|w| u64::try_from(w.block).ok())
        .map(|b| b.saturating_add(host.cfg.weights_interval_blocks));
    let interval_due = next.is_none_or(|n| head.number >= n);
    let retry_ok = host.state.weights_retry_at.is_none_or(|b| head.number >= b);
    host.snapshot.send_modify(|s| s.next_weights_block = next);
    if !(changed || interval_due) || !retry_ok {
        return Ok(());
    }

    let netuid = host.cfg.netuid;
    let (mode, outcome, version_key) = match &host.signer {
        Signer::Observe => {
            tracing::info!(uids = ?vector.uids, "observe mode: weights computed, not submitted");
            (
                WeightMode::DryRun,
                WeightOutcome::Skipped("observe_mode".into()),
                0,
            )
        }
        Signer::DryRun(hotkey) | Signer::Active(hotkey) => {
            let submit = match host.signer {
                Signer::Active(_) => Submit::Yes,
                _ => Submit::DryRun,
            };
            match host
                .chain
                .set_weights(hotkey, netuid, &vector, &host.quicknet, submit)
                .await
            {
                Ok(done) => {
                    let mode = match (submit, &done.signed.call) {
                        (Submit::DryRun, _) => WeightMode::DryRun,
                        (_, cacheon_chain::WeightsCall::SetWeights { .. }) => WeightMode::Set,
                        _ => WeightMode::CommitReveal,
                    };
                    let outcome = match done.submitted {
                        Some(hash) => WeightOutcome::Submitted(format!("0x{}", hex::encode(hash))),
                        None => WeightOutcome::Skipped("dry_run".into()),
                    };
                    (mode, outcome, done.version_key)
                }
                Err(e) => {
                    let code = match &e {
                        ChainError::RateLimited(_) => "rate_limited",
                        ChainError::NotRegistered { .. } => "not_registered",
                        ChainError::Rejected(_) => "rejected",
                        _ => "chain_error",
                    };
                    tracing::error!("setting weights failed: {e}");
                    host.state.weights_retry_at = Some(head.number + host.cfg.weights_retry_blocks);
                    (WeightMode::Set, WeightOutcome::Failed(code.into()), 0)
                }
            }
        }
    };
    let failed = matches!(outcome, WeightOutcome::Failed(_));
    let mut tx = host.store.write().await?;
    tx.record_weights(head.number, &vector, version_key, mode, &outcome)
        .await?;
    tx.commit().await?;
    let label = match &outcome {
        WeightOutcome::Submitted(_) => "submitted",
        WeightOutcome::Failed(_) => "failed",
        WeightOutcome::Skipped(_) => "skipped",
    };
    metrics::counter!(crate::observe::WEIGHTS, "outcome" => label).increment(1);
    // A failed attempt stays due (its row says `failed`), retried after `weights_retry_blocks`.
    if !failed {
        host.state.weights_retry_at = None;
    }
    Ok(())
}
