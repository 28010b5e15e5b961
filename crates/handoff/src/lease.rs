//! Round leases (SPEC §5): several pods may poll one bucket, and exactly one of them runs a
//! round. The lease is `rounds/{round}/lease.json`, created with `If-None-Match: *` and
//! from then on only replaced with `If-Match` on the ETag its writer read, so of pods
//! racing on the same state exactly one write succeeds. Renewal, release and the takeover
//! of an expired lease are all such replacements.
//!
//! Expiry is judged by the claiming pod against the `expires_at` the holder wrote, both in
//! unix seconds; pods' clocks are assumed to agree to well within the TTL (NTP).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{layout, Bucket, Condition, HandoffError, Put};

/// `lease.json`. Times are unix seconds on the writing pod's clock.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LeaseDoc {
    pub round_id: i64,
    pub pod_id: String,
    pub acquired_at: i64,
    pub renewed_at: i64,
    pub expires_at: i64,
    /// Given up by its holder: claimable at once, expired or not.
    pub released: bool,
}

/// A lease this pod holds.
#[derive(Debug, Clone)]
pub struct Lease {
    pub round_id: i64,
    pub pod_id: String,
    /// The ETag of our last write: the next one is conditional on it.
    pub etag: String,
    pub acquired_at: i64,
    pub expires_at: i64,
    pub ttl: Duration,
}

/// The outcome of a claim.
#[derive(Debug, Clone)]
pub enum Claim {
    Won(Lease),
    /// Another pod holds an unexpired lease (or won the race just now).
    Held {
        by: String,
        expires_at: i64,
    },
    /// `done.json` exists: the round is finished; nothing to claim.
    Done,
}

impl Lease {
    fn doc(&self, renewed_at: i64, expires_at: i64, released: bool) -> LeaseDoc {
        LeaseDoc {
            round_id: self.round_id,
            pod_id: self.pod_id.clone(),
            acquired_at: self.acquired_at,
            renewed_at,
            expires_at,
            released,
        }
    }
}

fn ttl_secs(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)
}

impl Bucket {
    /// Tries to take the round for `pod_id`. Exactly one of several racing pods wins: a
    /// missing lease is created with `If-None-Match: *`; an expired or released one is
    /// replaced with `If-Match` on the ETag read, so a pod that read a stale lease loses.
    ///
    /// A lease that cannot be read (corrupt, wrong MAC, another major version) is an
    /// error, not a free round: it may be a newer pod's, and overwriting it could put two
    /// pods on one round.
    pub async fn claim(
        &self,
        round: i64,
        pod_id: &str,
        ttl: Duration,
        now: i64,
    ) -> Result<Claim, HandoffError> {
        if self.exists(&layout::done(round)).await? {
            return Ok(Claim::Done);
        }
        let key = layout::lease(round);
        let cond = match self.get_doc::<LeaseDoc>(&key).await? {
            None => Condition::IfNoneMatch,
            Some((current, etag)) if current.released || now >= current.expires_at => {
                Condition::IfMatch(etag)
            }
            Some((current, _)) => {
                return Ok(Claim::Held {
                    by: current.pod_id,
                    expires_at: current.expires_at,
                })
            }
        };
        let expires_at = now.saturating_add(ttl_secs(ttl));
        let doc = LeaseDoc {
            round_id: round,
            pod_id: pod_id.to_owned(),
            acquired_at: now,
            renewed_at: now,
            expires_at,
            released: false,
        };
        match self.put_doc(&key, &doc, cond).await? {
            Put::Written { etag } => {
                let lease = Lease {
                    round_id: round,
                    pod_id: pod_id.to_owned(),
                    etag,
                    acquired_at: now,
                    expires_at,
                    ttl,
                };
                // The previous holder may have finished and released between our look at
                // done.json and our write; then there is nothing to run.
                if self.exists(&layout::done(round)).await? {
                    self.release(&lease, now).await?;
                    return Ok(Claim::Done);
                }
                Ok(Claim::Won(lease))
            }
            // Another pod wrote first; say who, if the lease is readable by now.
            Put::PreconditionFailed => match self.get_doc::<LeaseDoc>(&key).await? {
                Some((winner, _)) => Ok(Claim::Held {
                    by: winner.pod_id,
                    expires_at: winner.expires_at,
                }),
                None => Ok(Claim::Held {
                    by: String::new(),
                    expires_at: now,
                }),
            },
        }
    }

    /// Whether a claim could win now (no `done.json`, no live lease), read without writing:
    /// a pod looks before it spends minutes preparing for a round (the canary).
    pub async fn claimable(&self, round: i64, now: i64) -> Result<bool, HandoffError> {
        if self.exists(&layout::done(round)).await? {
            return Ok(false);
        }
        Ok(
            match self.get_doc::<LeaseDoc>(&layout::lease(round)).await? {
                None => true,
                Some((current, _)) => current.released || now >= current.expires_at,
            },
        )
    }

    /// Extends the lease to `now + ttl`. `Ok(false)` when it was lost (another pod took it
    /// over after it expired, or it is gone); then the round must be abandoned. On success
    /// `lease` carries the new ETag and expiry.
    pub async fn renew(&self, lease: &mut Lease, now: i64) -> Result<bool, HandoffError> {
        let expires_at = now.saturating_add(ttl_secs(lease.ttl));
        let doc = lease.doc(now, expires_at, false);
        let key = layout::lease(lease.round_id);
        match self
            .put_doc(&key, &doc, Condition::IfMatch(lease.etag.clone()))
            .await?
        {
            Put::Written { etag } => {
                lease.etag = etag;
                lease.expires_at = expires_at;
                Ok(true)
            }
            Put::PreconditionFailed => Ok(false),
        }
    }

    /// Gives the lease up so that another pod can claim the round at once. A lease that is
    /// already lost is not an error: it is not ours to release.
    pub async fn release(&self, lease: &Lease, now: i64) -> Result<(), HandoffError> {
        let doc = lease.doc(now, now, true);
        let key = layout::lease(lease.round_id);
        self.put_doc(&key, &doc, Condition::IfMatch(lease.etag.clone()))
            .await
            .map(|_| ())
    }
}
