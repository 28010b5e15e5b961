//! Every state change of the lifecycle, as operations inside one write transaction.
//!
//! Each operation checks the state it starts from in its `WHERE` clause, so replaying one
//! (after a crash, or because a document was read twice) is a no-op, never a double count.

use cacheon_core::{
    decode_commitment, CrownDecision, DisqualifyReason, InfraReason, RejectReason, Role,
    SubmissionId, SubmissionState, WeightVector, WithdrawReason,
};
use sqlx::{Sqlite, Transaction};

use crate::read::{self, RoundRow, RoundState};
use crate::{now_unix, to_i64, Result, StoreError};

/// Voided rounds after which a submission is evaluated alone (see `open_round`).
pub const ISOLATE_AFTER_VOIDS: i64 = 2;

/// Voids a king's own turns may cause in a row before it loses the crown. One can be bad
/// luck that only looked like the king's (a registry hiccup on the way to it); two in a
/// row with the machine shown sound after each is a king holding rounds hostage, and each
/// such void costs every challenger in it a wasted round.
pub const KING_VOID_LIMIT: i64 = 2;

/// How a round is voided: why, whose turn it was when it ended (if anyone's), and the
/// chain's block (for the king's history, should the king lose the crown over it).
#[derive(Debug, Clone, Copy)]
pub struct RoundVoid<'a> {
    pub reason: InfraReason,
    /// The contestant whose turn ended the round; `None` when our side failed.
    pub cause: Option<&'a str>,
    pub block: u64,
}

impl RoundVoid<'_> {
    /// Our own side failed: nobody's turn.
    pub fn ours(reason: InfraReason) -> Self {
        Self {
            reason,
            cause: None,
            block: 0,
        }
    }
}

/// A commitment as read from the chain, before any judgement.
#[derive(Debug, Clone)]
pub struct ObservedCommitment {
    pub hotkey: String,
    pub commit_block: u64,
    /// The hotkey's uid on the netuid, `None` when it is not registered.
    pub uid: Option<u16>,
    pub raw: Vec<u8>,
}

/// What `record_commitment` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Seen before: nothing changed.
    Known,
    New {
        state: SubmissionState,
        reason: Option<String>,
    },
}

/// What opening a round needs from the host.
#[derive(Debug, Clone)]
pub struct NewRound {
    pub seed_block: u64,
    pub seed_hash: String,
    pub deadline_at: i64,
    pub max_challengers: u32,
    /// Refuse to open when this many rounds are already open.
    pub max_open_rounds: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum VerdictOutcome {
    /// Passed the gate; the score against the round's baseline.
    Scored { score: f64 },
    /// The contestant's own fault, gate failures included.
    Disqualified(DisqualifyReason),
    /// Its image is the same content as an earlier submission of another hotkey
    /// (`cacheon_core::content`): rejected `duplicate_of:<id>`, as a copied digest is.
    DuplicateOf(SubmissionId),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContestantVerdict {
    pub submission: SubmissionId,
    pub outcome: VerdictOutcome,
}

/// Whether a round-closing operation changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    Applied,
    /// The round was already closed; nothing was changed.
    AlreadyClosed(RoundState),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightMode {
    Set,
    CommitReveal,
    DryRun,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightOutcome {
    /// Accepted by the node; detail is the extrinsic hash.
    Submitted(String),
    Failed(String),
    /// Computed but not submitted (dry run, observe mode, rate limit).
    Skipped(String),
}

/// One open write transaction. Commit with [`WriteTx::commit`]; dropping it rolls back.
pub struct WriteTx {
    pub(crate) tx: Transaction<'static, Sqlite>,
}

impl WriteTx {
    pub(crate) fn new(tx: Transaction<'static, Sqlite>) -> Self {
        Self { tx }
    }

    pub async fn commit(self) -> Result<()> {
        Ok(self.tx.commit().await?)
    }

    /// Records a commitment seen on chain, exactly once per `(hotkey, commit_block)`:
    /// pending if valid and new, otherwise rejected or withdrawn with a reason.
    pub async fn record_commitment(&mut self, obs: &ObservedCommitment) -> Result<Recorded> {
        let id = SubmissionId::new(obs.hotkey.clone(), obs.commit_block);
        let id_text = id.to_string();
        // Ids are parsed back (king, `duplicate_of:`): refuse one that would not parse.
        if id_text.parse::<SubmissionId>().as_ref() != Ok(&id) {
            return Err(StoreError::InvalidHotkey(obs.hotkey.clone()));
        }
        let block = to_i64(obs.commit_block, "commit_block")?;
        let exists: Option<(String,)> = sqlx::query_as("SELECT id FROM submissions WHERE id = ?")
            .bind(&id_text)
            .fetch_optional(&mut *self.tx)
            .await?;
        if exists.is_some() {
            return Ok(Recorded::Known);
        }

        let mut image = None;
        let mut digest = None;
        let (state, reason) = match (obs.uid, decode_commitment(&obs.raw)) {
            (None, _) => (
                SubmissionState::Rejected,
                Some(RejectReason::NotRegistered.to_string()),
            ),
            (_, Err(e)) => (
                SubmissionState::Rejected,
                Some(RejectReason::Malformed(e).to_string()),
            ),
            (Some(_), Ok(c)) => {
                let original: Option<(String,)> = sqlx::query_as(
                    "SELECT id FROM submissions WHERE digest = ? AND hotkey <> ? \
                     AND commit_block < ? AND state <> 'rejected' \
                     ORDER BY commit_block, id LIMIT 1",
                )
                .bind(c.digest.as_str())
                .bind(&obs.hotkey)
                .bind(block)
                .fetch_optional(&mut *self.tx)
                .await?;
                let newer: Option<(String,)> = sqlx::query_as(
                    "SELECT id FROM submissions WHERE hotkey = ? AND commit_block > ? \
                     ORDER BY commit_block DESC LIMIT 1",
                )
                .bind(&obs.hotkey)
                .bind(block)
                .fetch_optional(&mut *self.tx)
                .await?;
                image = Some(c.image.to_string());
                digest = Some(c.digest.to_string());
                match (original, newer) {
                    (Some((orig,)), _) => (
                        SubmissionState::Rejected,
                        Some(format!("duplicate_of:{orig}")),
                    ),
                    (None, Some((newer,))) => (
                        SubmissionState::Withdrawn,
                        Some(format!("superseded_by:{newer}")),
                    ),
                    (None, None) => (SubmissionState::Pending, None),
                }
            }
        };
        let now = now_unix();
        sqlx::query(
            "INSERT INTO submissions (id, hotkey, commit_block, uid, raw_commitment, image, digest, \
             state, reason, observed_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id_text)
        .bind(&obs.hotkey)
        .bind(block)
        .bind(obs.uid.map(i64::from))
        .bind(&obs.raw)
        .bind(image)
        .bind(&digest)
        .bind(state.code())
        .bind(&reason)
        .bind(now)
        .bind(now)
        .execute(&mut *self.tx)
        .await?;

        if state != SubmissionState::Withdrawn {
            // Latest commitment per hotkey wins: older pending ones step aside.
            sqlx::query(
                "UPDATE submissions SET state = 'withdrawn', reason = ?, updated_at = ? \
                 WHERE hotkey = ? AND commit_block < ? AND state = 'pending'",
            )
            .bind(WithdrawReason::SupersededBy(id.clone()).to_string())
            .bind(now)
            .bind(&obs.hotkey)
            .bind(block)
            .execute(&mut *self.tx)
            .await?;
        }
        if digest.is_some() && state != SubmissionState::Rejected {
            // Seen out of order: later copies of this digest by other hotkeys are duplicates,
            // whatever order a scan delivers commitments in.
            sqlx::query(
                "UPDATE submissions SET state = 'rejected', reason = ?, updated_at = ? \
                 WHERE digest = ? AND hotkey <> ? AND commit_block > ? AND state = 'pending'",
            )
            .bind(RejectReason::DuplicateOf(id.clone()).to_string())
            .bind(now)
            .bind(&digest)
            .bind(&obs.hotkey)
            .bind(block)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(Recorded::New { state, reason })
    }

    /// Takes a pending or queued submission out of the competition. Returns whether it did.
    pub async fn withdraw(&mut self, id: &SubmissionId, reason: &WithdrawReason) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE submissions SET state = 'withdrawn', reason = ?, updated_at = ? \
             WHERE id = ? AND state IN ('pending', 'queued')",
        )
        .bind(reason.to_string())
        .bind(now_unix())
        .bind(id.to_string())
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Opens a round with the oldest pending submissions (and the king, first, for a fresh
    /// measurement). `None` when there is nothing pending or enough rounds are open.
    ///
    /// A submission that was in `ISOLATE_AFTER_VOIDS` voided rounds is a suspect: whatever
    /// voided them may be its doing. It is never put next to others again; when its turn
    /// comes (commit order) it is the round's only challenger, so a hostile image that found
    /// a way to break rounds can use up only its own attempts.
    pub async fn open_round(&mut self, new: &NewRound) -> Result<Option<RoundRow>> {
        let (open,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM rounds WHERE state = 'open'")
            .fetch_one(&mut *self.tx)
            .await?;
        if open >= i64::from(new.max_open_rounds) {
            return Ok(None);
        }
        let pending: Vec<(String, i64)> = sqlx::query_as(
            "SELECT id, infra_attempts FROM submissions WHERE state = 'pending' \
             ORDER BY commit_block, id",
        )
        .fetch_all(&mut *self.tx)
        .await?;
        let suspect = |attempts: i64| attempts >= ISOLATE_AFTER_VOIDS;
        let challengers: Vec<(String,)> = match pending.first() {
            None => return Ok(None),
            Some((id, attempts)) if suspect(*attempts) => vec![(id.clone(),)],
            Some(_) => pending
                .iter()
                .filter(|(_, attempts)| !suspect(*attempts))
                .take(new.max_challengers as usize)
                .map(|(id, _)| (id.clone(),))
                .collect(),
        };
        let now = now_unix();
        let round_id = sqlx::query(
            "INSERT INTO rounds (seed_block, seed_hash, state, opened_at, deadline_at) \
             VALUES (?, ?, 'open', ?, ?)",
        )
        .bind(to_i64(new.seed_block, "seed_block")?)
        .bind(&new.seed_hash)
        .bind(now)
        .bind(new.deadline_at)
        .execute(&mut *self.tx)
        .await?
        .last_insert_rowid();

        let king: Option<(String,)> = sqlx::query_as("SELECT submission_id FROM king")
            .fetch_optional(&mut *self.tx)
            .await?;
        let contestants = king
            .map(|(k,)| (k, Role::King))
            .into_iter()
            .chain(challengers.into_iter().map(|(c,)| (c, Role::Challenger)));
        for (position, (id, role)) in contestants.enumerate() {
            sqlx::query(
                "INSERT INTO round_contestants (round_id, submission_id, role, position) \
                 VALUES (?, ?, ?, ?)",
            )
            .bind(round_id)
            .bind(&id)
            .bind(role.code())
            .bind(position as i64)
            .execute(&mut *self.tx)
            .await?;
            if role == Role::Challenger {
                sqlx::query(
                    "UPDATE submissions SET state = 'queued', round_id = ?, updated_at = ? \
                     WHERE id = ? AND state = 'pending'",
                )
                .bind(round_id)
                .bind(now)
                .bind(&id)
                .execute(&mut *self.tx)
                .await?;
            }
        }
        read::round(&mut self.tx, round_id).await
    }

    /// The round if it is still open, otherwise how it was closed (the exactly-once guard
    /// of `apply_round` and `void_round`).
    async fn still_open(&mut self, round_id: i64) -> Result<Result<RoundRow, ApplyOutcome>> {
        let round = read::round(&mut self.tx, round_id)
            .await?
            .ok_or(StoreError::UnknownRound(round_id))?;
        Ok(match round.state {
            RoundState::Open => Ok(round),
            closed => Err(ApplyOutcome::AlreadyClosed(closed)),
        })
    }

    /// Applies a finished round's verdicts and crown decision, exactly once.
    pub async fn apply_round(
        &mut self,
        round_id: i64,
        verdicts: &[ContestantVerdict],
        decision: &CrownDecision,
        block: u64,
    ) -> Result<ApplyOutcome> {
        let round = match self.still_open(round_id).await? {
            Ok(round) => round,
            Err(closed) => return Ok(closed),
        };
        let now = now_unix();
        for c in &round.contestants {
            let verdict = verdicts
                .iter()
                .find(|v| v.submission.to_string() == c.submission_id);
            let Some(verdict) = verdict else {
                let state = read::submission_state(&mut *self.tx, &c.submission_id).await?;
                if state == Some(SubmissionState::Withdrawn) {
                    continue; // deregistered mid-round: nothing to judge
                }
                return Err(StoreError::MissingVerdict {
                    round: round_id,
                    submission: c.submission_id.clone(),
                });
            };
            let (outcome, score, reason) = match &verdict.outcome {
                VerdictOutcome::Scored { score } => ("scored", Some(*score), None),
                VerdictOutcome::Disqualified(r) => ("disqualified", None, Some(r.to_string())),
                VerdictOutcome::DuplicateOf(original) => (
                    "rejected",
                    None,
                    Some(RejectReason::DuplicateOf(original.clone()).to_string()),
                ),
            };
            sqlx::query(
                "UPDATE round_contestants SET outcome = ?, score = ?, reason = ? \
                 WHERE round_id = ? AND submission_id = ?",
            )
            .bind(outcome)
            .bind(score)
            .bind(reason.clone())
            .bind(round_id)
            .bind(&c.submission_id)
            .execute(&mut *self.tx)
            .await?;
            // Challengers leave `queued`; the king's row follows its fresh verdict.
            let guard = match c.role {
                Role::Challenger => {
                    "UPDATE submissions SET state = ?1, reason = ?2, score = ?3, updated_at = ?4 \
                     WHERE id = ?5 AND state = 'queued' AND round_id = ?6"
                }
                Role::King => {
                    "UPDATE submissions SET state = ?1, reason = ?2, score = ?3, updated_at = ?4 \
                     WHERE id = ?5 AND state IN ('scored', 'disqualified')"
                }
            };
            let update = sqlx::query(guard)
                .bind(outcome)
                .bind(reason)
                .bind(score)
                .bind(now)
                .bind(&c.submission_id);
            let update = match c.role {
                Role::Challenger => update.bind(round_id),
                Role::King => update,
            };
            update.execute(&mut *self.tx).await?;
        }
        self.check_decision(&round, verdicts, decision).await?;
        self.apply_decision(&round, decision, block).await?;
        sqlx::query("UPDATE rounds SET state = 'completed', closed_at = ? WHERE id = ?")
            .bind(now)
            .bind(round_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(ApplyOutcome::Applied)
    }

    /// Voids a round, exactly once like `apply_round`. Never a verdict against a miner.
    ///
    /// Without a `cause` (our side failed) its challengers go back to `pending` with one
    /// more attempt charged, or to `failed_infra` at `max_attempts`. With a `cause` (the
    /// round ended during that contestant's turn and the machine was shown sound after),
    /// only the cause pays: a challenger is charged the attempt, the king one of its
    /// `KING_VOID_LIMIT` caused voids (at the limit it is dethroned, `caused_voids`); every
    /// other challenger goes back to `pending` uncharged.
    pub async fn void_round(
        &mut self,
        round_id: i64,
        void: &RoundVoid<'_>,
        max_attempts: u32,
    ) -> Result<ApplyOutcome> {
        let round = match self.still_open(round_id).await? {
            Ok(round) => round,
            Err(closed) => return Ok(closed),
        };
        let now = now_unix();
        let cause = void.cause.and_then(|id| {
            round
                .contestants
                .iter()
                .find(|c| c.submission_id == id)
                .map(|c| (id, c.role))
        });
        // Who is charged an attempt: everyone queued when there is no cause, the cause
        // when it is a challenger, no challenger when it is the king.
        let (charge_all, charge_one) = match cause {
            None => (true, None),
            Some((id, Role::Challenger)) => (false, Some(id)),
            Some((_, Role::King)) => (false, None),
        };
        if charge_all || charge_one.is_some() {
            sqlx::query(
                "UPDATE submissions SET \
               infra_attempts = infra_attempts + 1, \
               state = CASE WHEN infra_attempts + 1 >= ?1 THEN 'failed_infra' ELSE 'pending' END, \
               reason = CASE WHEN infra_attempts + 1 >= ?1 THEN ?2 ELSE NULL END, \
               updated_at = ?3 \
             WHERE round_id = ?4 AND state = 'queued' AND (?5 IS NULL OR id = ?5)",
            )
            .bind(i64::from(max_attempts))
            .bind(void.reason.code())
            .bind(now)
            .bind(round_id)
            .bind(charge_one)
            .execute(&mut *self.tx)
            .await?;
        }
        sqlx::query(
            "UPDATE submissions SET state = 'pending', reason = NULL, updated_at = ? \
             WHERE round_id = ? AND state = 'queued'",
        )
        .bind(now)
        .bind(round_id)
        .execute(&mut *self.tx)
        .await?;
        if let Some((id, Role::King)) = cause {
            self.king_caused_void(id, void.block, round_id).await?;
        }
        sqlx::query(
            "UPDATE rounds SET state = 'void', void_reason = ?, void_cause = ?, closed_at = ? \
             WHERE id = ?",
        )
        .bind(void.reason.code())
        .bind(cause.map(|(id, _)| id))
        .bind(now)
        .bind(round_id)
        .execute(&mut *self.tx)
        .await?;
        Ok(ApplyOutcome::Applied)
    }

    /// Operator action: a `failed_infra` submission gets a fresh set of attempts.
    pub async fn requeue(&mut self, id: &SubmissionId) -> Result<()> {
        let text = id.to_string();
        let done = sqlx::query(
            "UPDATE submissions SET state = 'pending', infra_attempts = 0, reason = NULL, \
             updated_at = ? WHERE id = ? AND state = 'failed_infra'",
        )
        .bind(now_unix())
        .bind(&text)
        .execute(&mut *self.tx)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(());
        }
        match read::submission_state(&mut *self.tx, &text).await? {
            None => Err(StoreError::UnknownSubmission(text)),
            Some(state) => Err(StoreError::WrongState {
                id: text,
                state: state.code().to_owned(),
                expected: "failed_infra",
            }),
        }
    }

    /// Logs a weight setting attempt (also dry runs), for the status API and rate limiting.
    pub async fn record_weights(
        &mut self,
        block: u64,
        vector: &WeightVector,
        version_key: u64,
        mode: WeightMode,
        outcome: &WeightOutcome,
    ) -> Result<i64> {
        // Never store a placeholder in place of the real vector.
        let json = |v: &[u16]| {
            serde_json::to_string(v).map_err(|e| StoreError::Corrupt(format!("weights: {e}")))
        };
        let mode = match mode {
            WeightMode::Set => "set",
            WeightMode::CommitReveal => "commit_reveal",
            WeightMode::DryRun => "dry_run",
        };
        let (outcome, detail) = match outcome {
            WeightOutcome::Submitted(d) => ("submitted", d),
            WeightOutcome::Failed(d) => ("failed", d),
            WeightOutcome::Skipped(d) => ("skipped", d),
        };
        let id = sqlx::query(
            "INSERT INTO weight_submissions (block, uids, weights, version_key, mode, outcome, detail, at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(to_i64(block, "block")?)
        .bind(json(&vector.uids)?)
        .bind(json(&vector.weights)?)
        .bind(to_i64(version_key, "version_key")?)
        .bind(mode)
        .bind(outcome)
        .bind(detail)
        .bind(now_unix())
        .execute(&mut *self.tx)
        .await?
        .last_insert_rowid();
        Ok(id)
    }
}
