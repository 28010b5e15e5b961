//! `progress.json`: what the pod is doing, for the status API. Best effort — a progress
//! write that fails is logged and forgotten; no decision is ever taken from it.

use cacheon_handoff::documents::{ContestantProgress, ContestantStatus, Job, Progress, RoundPhase};
use cacheon_handoff::{layout, Bucket, Condition};

pub struct Tracker<'a> {
    bucket: &'a Bucket,
    doc: Progress,
}

impl<'a> Tracker<'a> {
    pub fn new(bucket: &'a Bucket, job: &Job, pod_id: &str) -> Self {
        let contestants = job
            .contestants
            .iter()
            .map(|c| ContestantProgress {
                submission_id: c.submission_id.clone(),
                status: ContestantStatus::Waiting,
            })
            .collect();
        Self {
            bucket,
            doc: Progress {
                round_id: job.round_id,
                pod_id: pod_id.to_string(),
                phase: RoundPhase::Preparing,
                contestants,
                updated_at: crate::now_unix(),
            },
        }
    }

    pub async fn phase(&mut self, phase: RoundPhase) {
        self.doc.phase = phase;
        self.publish().await;
    }

    pub async fn contestant(&mut self, submission_id: &str, status: ContestantStatus) {
        if let Some(c) = self
            .doc
            .contestants
            .iter_mut()
            .find(|c| c.submission_id == submission_id)
        {
            c.status = status;
        }
        self.publish().await;
    }

    async fn publish(&mut self) {
        self.doc.updated_at = crate::now_unix();
        let key = layout::progress(self.doc.round_id);
        if let Err(e) = self
            .bucket
            .put_doc(&key, &self.doc, Condition::Always)
            .await
        {
            tracing::warn!("progress not published: {e}");
        }
    }
}
