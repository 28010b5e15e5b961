//! The king's side of a write transaction: checking a crown decision against the stored
//! king, applying it, dethroning, and the king history. Split from `write` only for size;
//! these are `WriteTx` operations like the others.

use cacheon_core::{CrownDecision, DethroneCause, Role, SubmissionId};

use crate::read::{self, KingRow, RoundRow};
use crate::write::{ContestantVerdict, VerdictOutcome, WriteTx, KING_VOID_LIMIT};
use crate::{now_unix, to_i64, Result, StoreError};

impl WriteTx {
    /// The king as this transaction sees it: compute the crown decision from this, inside
    /// the same transaction that applies it, so it cannot be stale.
    pub async fn king(&mut self) -> Result<Option<KingRow>> {
        read::king(&mut *self.tx).await
    }

    /// Refuses a decision that does not fit the stored king or the round's verdicts (a
    /// decision computed from a stale view, or a bug), before anything is written.
    pub(crate) async fn check_decision(
        &mut self,
        round: &RoundRow,
        verdicts: &[ContestantVerdict],
        decision: &CrownDecision,
    ) -> Result<()> {
        let current = read::king(&mut *self.tx).await?.map(|k| k.submission_id);
        let expected_king = match decision {
            CrownDecision::NoKing => None,
            CrownDecision::Keep { .. } => current.clone().filter(|k| {
                round
                    .contestants
                    .iter()
                    .any(|c| c.role == Role::King && &c.submission_id == k)
            }),
            CrownDecision::Vacate { dethroned } => Some(dethroned.to_string()),
            CrownDecision::Crown { dethroned, .. } => dethroned.as_ref().map(ToString::to_string),
        };
        let keeps = matches!(decision, CrownDecision::Keep { .. });
        if expected_king != current || (keeps && current.is_none()) {
            return Err(StoreError::StaleDecision(format!(
                "decision {decision:?} does not match the stored king {current:?}"
            )));
        }
        if let CrownDecision::Crown { winner, .. } = decision {
            let id = winner.submission.to_string();
            let challenger = round
                .contestants
                .iter()
                .any(|c| c.role == Role::Challenger && c.submission_id == id);
            let scored = verdicts.iter().any(|v| {
                v.submission == winner.submission
                    && matches!(v.outcome, VerdictOutcome::Scored { .. })
            });
            if !(challenger && scored) {
                return Err(StoreError::StaleDecision(format!(
                    "crowned {id} is not a scored challenger of round {}",
                    round.id
                )));
            }
        }
        Ok(())
    }

    pub(crate) async fn apply_decision(
        &mut self,
        round: &RoundRow,
        decision: &CrownDecision,
        block: u64,
    ) -> Result<()> {
        let block_i = to_i64(block, "block")?;
        match decision {
            CrownDecision::NoKing => {}
            CrownDecision::Keep { fresh_score } => {
                let king = read::king(&mut *self.tx).await?;
                let Some(king) = king else {
                    return Err(StoreError::Corrupt(
                        "decision keeps a king but there is none".into(),
                    ));
                };
                sqlx::query("UPDATE king SET score = ?, round_id = ?, caused_voids = 0")
                    .bind(fresh_score)
                    .bind(round.id)
                    .execute(&mut *self.tx)
                    .await?;
                self.history(
                    "defended",
                    &king.submission_id,
                    king.uid,
                    Some(*fresh_score),
                    block_i,
                    Some(round.id),
                    "fresh_measurement",
                )
                .await?;
            }
            CrownDecision::Vacate { .. } => {
                self.dethrone(DethroneCause::FailedFreshGate, block, Some(round.id))
                    .await?;
            }
            CrownDecision::Crown { winner, cause, .. } => {
                let winner_id = winner.submission.to_string();
                if let Some(dethrone) = cause.dethrone_cause() {
                    self.dethrone(dethrone, block, Some(round.id)).await?;
                }
                sqlx::query(
                    "INSERT OR REPLACE INTO king (slot, submission_id, uid, score, crowned_at_block, round_id) \
                     VALUES (1, ?, ?, ?, ?, ?)",
                )
                .bind(&winner_id)
                .bind(i64::from(winner.uid))
                .bind(winner.score)
                .bind(block_i)
                .bind(round.id)
                .execute(&mut *self.tx)
                .await?;
                self.history(
                    "crowned",
                    &winner_id,
                    winner.uid,
                    Some(winner.score),
                    block_i,
                    Some(round.id),
                    cause.code(),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// The king's turn voided a round: one more caused void; at `KING_VOID_LIMIT` in a row
    /// (no completed round between them) it loses the crown.
    pub(crate) async fn king_caused_void(
        &mut self,
        king_id: &str,
        block: u64,
        round_id: i64,
    ) -> Result<()> {
        let counted =
            sqlx::query("UPDATE king SET caused_voids = caused_voids + 1 WHERE submission_id = ?")
                .bind(king_id)
                .execute(&mut *self.tx)
                .await?;
        if counted.rows_affected() == 0 {
            return Ok(()); // no longer king (dethroned meanwhile)
        }
        let (voids,): (i64,) = sqlx::query_as("SELECT caused_voids FROM king")
            .fetch_one(&mut *self.tx)
            .await?;
        tracing::warn!(
            king = king_id,
            voids,
            limit = KING_VOID_LIMIT,
            "the king's turn voided a round"
        );
        if voids >= KING_VOID_LIMIT {
            self.dethrone(DethroneCause::CausedVoids, block, Some(round_id))
                .await?;
        }
        Ok(())
    }

    /// Removes the king (if any) and records why. Returns the dethroned submission.
    pub async fn dethrone(
        &mut self,
        cause: DethroneCause,
        block: u64,
        round_id: Option<i64>,
    ) -> Result<Option<SubmissionId>> {
        let Some(king) = read::king(&mut *self.tx).await? else {
            return Ok(None);
        };
        sqlx::query("DELETE FROM king")
            .execute(&mut *self.tx)
            .await?;
        self.history(
            "dethroned",
            &king.submission_id,
            king.uid,
            Some(king.score),
            to_i64(block, "block")?,
            round_id,
            cause.code(),
        )
        .await?;
        let id = king
            .submission_id
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("king id {}", king.submission_id)))?;
        Ok(Some(id))
    }

    #[allow(clippy::too_many_arguments)]
    async fn history(
        &mut self,
        event: &str,
        submission_id: &str,
        uid: u16,
        score: Option<f64>,
        block: i64,
        round_id: Option<i64>,
        cause: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO king_history (event, submission_id, uid, score, block, round_id, cause, at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(event)
        .bind(submission_id)
        .bind(i64::from(uid))
        .bind(score)
        .bind(block)
        .bind(round_id)
        .bind(cause)
        .bind(now_unix())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}
