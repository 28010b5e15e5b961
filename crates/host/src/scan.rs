//! The chain scan (SPEC §3): at the latest finalized block, read the metagraph and every
//! commitment of the netuid, record each commitment in the store (valid ones pending,
//! invalid ones rejected with a reason), withdraw submissions of hotkeys that left, and
//! dethrone a king whose hotkey left. All of it in one transaction: a scan that fails
//! part-way changes nothing.

use cacheon_chain::{AccountId32, BlockRef, Metagraph};
use cacheon_core::{DethroneCause, SubmissionId, SubmissionState, WithdrawReason};
use cacheon_status::ScanReport;
use cacheon_store::{ObservedCommitment, Recorded, SubmissionFilter};

use crate::{now_unix, Host, HostError};

pub async fn run(host: &mut Host) -> Result<BlockRef, HostError> {
    let netuid = host.cfg.netuid;
    let head = host.chain.finalized().await?;
    let metagraph = host.chain.metagraph(netuid, head).await?;
    let mut observed = host.chain.commitments(netuid, head).await?;
    // Oldest first, so the copy rule and "latest wins" see commitments in chain order.
    observed.sort_by(|a, b| (a.block, a.source, &a.raw).cmp(&(b.block, b.source, &b.raw)));

    let live: Vec<_> = [SubmissionState::Pending, SubmissionState::Queued]
        .into_iter()
        .map(|state| SubmissionFilter {
            state: Some(state),
            limit: Some(u32::MAX),
            ..SubmissionFilter::default()
        })
        .collect();
    let mut competing = Vec::new();
    for filter in &live {
        competing.extend(host.store.submissions(filter).await?);
    }

    let mut tx = host.store.write().await?;
    let mut new = 0usize;
    for c in &observed {
        let obs = ObservedCommitment {
            hotkey: c.hotkey.to_string(),
            commit_block: c.block,
            uid: metagraph.uid_of(&c.hotkey),
            raw: c.raw.clone(),
        };
        if let Recorded::New { state, reason } = tx.record_commitment(&obs).await? {
            new += 1;
            tracing::info!(submission = %c.submission_id(), %state, reason = reason.as_deref().unwrap_or(""), "new submission");
        }
    }
    for s in competing
        .iter()
        .filter(|s| uid_of(&metagraph, &s.hotkey).is_none())
    {
        if let Ok(id) = s.id.parse::<SubmissionId>() {
            if tx.withdraw(&id, &WithdrawReason::Deregistered).await? {
                tracing::info!(submission = %s.id, "withdrawn: hotkey deregistered");
            }
        }
    }
    if let Some(king) = tx.king().await? {
        let hotkey = king.submission_id.parse::<SubmissionId>().ok();
        if hotkey
            .and_then(|id| uid_of(&metagraph, &id.hotkey))
            .is_none()
        {
            tx.dethrone(DethroneCause::Deregistered, head.number, None)
                .await?;
            tracing::warn!(king = %king.submission_id, "king dethroned: hotkey deregistered");
        }
    }
    tx.commit().await?;

    let validator_uid = host
        .signer
        .hotkey()
        .and_then(|h| metagraph.uid_of(&h.account_id()));
    host.state.metagraph = Some(metagraph);
    host.snapshot.send_modify(|s| {
        s.chain_block = Some(head.number);
        s.validator_uid = validator_uid;
        s.last_scan = Some(ScanReport {
            block: head.number,
            at: now_unix(),
            commitments: observed.len(),
            new_submissions: new,
            error: None,
        });
    });
    metrics::counter!(crate::observe::SCANS).increment(1);
    metrics::counter!(crate::observe::OBSERVED).increment(new as u64);
    Ok(head)
}

/// The uid an ss58 hotkey holds in `metagraph` (`None`: not registered, or not an address).
pub(crate) fn uid_of(metagraph: &Metagraph, hotkey: &str) -> Option<u16> {
    metagraph.uid_of(&hotkey.parse::<AccountId32>().ok()?)
}
