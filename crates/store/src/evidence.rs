//! What each score was measured with (issue 16): the contestants' noise figures, the
//! challengers' leads over the king, the round's confirmation pass, and each verdict's
//! report (issue 17). Recorded in the same transaction that applies the round, and only
//! while it is open, so a replay changes nothing. Split from `write` for size; these are
//! `WriteTx` operations like the others.

use cacheon_core::confirm::ConfirmationRecord;
use cacheon_core::noise::{Lead, ScoreNoise};
use cacheon_core::report::ContestantReport;
use cacheon_core::SubmissionId;

use crate::write::WriteTx;
use crate::{Result, StoreError};

/// One contestant's noise figures in a round.
#[derive(Debug, Clone, PartialEq)]
pub struct ContestantEvidence {
    pub submission: SubmissionId,
    pub noise: Option<ScoreNoise>,
    pub lead: Option<Lead>,
    /// What its image is (`cacheon_core::content`), when it was pulled.
    pub content: Option<String>,
    /// Its score in the round's confirmation pass, when it was measured again and scored.
    pub confirm_score: Option<f64>,
    /// Its verdict explained (`cacheon_core::report`).
    pub report: Option<ContestantReport>,
}

impl WriteTx {
    /// Records the evidence of a round that is still open (call before `apply_round`).
    pub async fn record_evidence(
        &mut self,
        round_id: i64,
        contestants: &[ContestantEvidence],
        confirmation: Option<&ConfirmationRecord>,
    ) -> Result<()> {
        let open: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM rounds WHERE id = ? AND state = 'open'")
                .bind(round_id)
                .fetch_optional(&mut *self.tx)
                .await?;
        if open.is_none() {
            return Ok(());
        }
        for c in contestants {
            sqlx::query(
                "UPDATE round_contestants SET noise = ?, lead = ?, confirm_score = ?, report = ? \
                 WHERE round_id = ? AND submission_id = ?",
            )
            .bind(c.noise.as_ref().map(json).transpose()?)
            .bind(c.lead.as_ref().map(json).transpose()?)
            .bind(c.confirm_score)
            .bind(c.report.as_ref().map(json).transpose()?)
            .bind(round_id)
            .bind(c.submission.to_string())
            .execute(&mut *self.tx)
            .await?;
        }
        if let Some(record) = confirmation {
            sqlx::query("UPDATE rounds SET confirmation = ?, confirmation_record = ? WHERE id = ?")
                .bind(record.outcome.code())
                .bind(json(record)?)
                .bind(round_id)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }
}

impl WriteTx {
    /// Records what a measured submission's image is. Record every contestant of a round
    /// before asking `content_original` of any, so that a copy measured in the same round
    /// as its original is found too.
    pub async fn record_content(&mut self, id: &SubmissionId, content: &str) -> Result<()> {
        sqlx::query("UPDATE submissions SET content_id = ? WHERE id = ?")
            .bind(content)
            .bind(id.to_string())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// The submission `id` copies, if any: the earliest (commit block, then id) submission
    /// of another hotkey whose image has the same content.
    pub async fn content_original(&mut self, id: &SubmissionId) -> Result<Option<SubmissionId>> {
        let original: Option<String> = sqlx::query_scalar(
            "SELECT o.id FROM submissions s JOIN submissions o \
               ON o.content_id = s.content_id AND o.hotkey != s.hotkey \
             WHERE s.id = ?1 AND s.content_id IS NOT NULL \
               AND (o.commit_block < s.commit_block \
                    OR (o.commit_block = s.commit_block AND o.id < s.id)) \
             ORDER BY o.commit_block, o.id LIMIT 1",
        )
        .bind(id.to_string())
        .fetch_optional(&mut *self.tx)
        .await?;
        original
            .map(|o| {
                o.parse()
                    .map_err(|_| StoreError::Corrupt(format!("submission id `{o}`")))
            })
            .transpose()
    }
}

fn json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("evidence: {e}")))
}
