//! Row types and queries. Each query is a free function over any executor, so the status
//! API reads through the read-only pool and write operations read inside their own
//! transaction with the same code.

use cacheon_core::confirm::ConfirmationRecord;
use cacheon_core::noise::{Lead, ScoreNoise};
use cacheon_core::report::ContestantReport;
use cacheon_core::{Role, SubmissionState};
use sqlx::sqlite::SqliteRow;
use sqlx::{Executor, FromRow, QueryBuilder, Row, Sqlite};

use crate::{parse_code, Result, Store, StoreError};

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SubmissionRow {
    pub id: String,
    pub hotkey: String,
    pub commit_block: i64,
    pub uid: Option<u16>,
    pub image: Option<String>,
    pub digest: Option<String>,
    pub state: SubmissionState,
    /// Reject, withdraw, disqualify or infrastructure code, for the miner to read.
    pub reason: Option<String>,
    pub round_id: Option<i64>,
    pub infra_attempts: i64,
    pub score: Option<f64>,
    pub observed_at: i64,
    pub updated_at: i64,
}

impl FromRow<'_, SqliteRow> for SubmissionRow {
    fn from_row(row: &SqliteRow) -> sqlx::Result<Self> {
        let state: String = row.try_get("state")?;
        Ok(Self {
            id: row.try_get("id")?,
            hotkey: row.try_get("hotkey")?,
            commit_block: row.try_get("commit_block")?,
            uid: row.try_get("uid")?,
            image: row.try_get("image")?,
            digest: row.try_get("digest")?,
            state: decode_column(&state)?,
            reason: row.try_get("reason")?,
            round_id: row.try_get("round_id")?,
            infra_attempts: row.try_get("infra_attempts")?,
            score: row.try_get("score")?,
            observed_at: row.try_get("observed_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoundState {
    Open,
    Completed,
    Void,
}

impl RoundState {
    pub fn code(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Completed => "completed",
            Self::Void => "void",
        }
    }
}

impl std::str::FromStr for RoundState {
    type Err = ();
    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        match s {
            "open" => Ok(Self::Open),
            "completed" => Ok(Self::Completed),
            "void" => Ok(Self::Void),
            _ => Err(()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ContestantRow {
    pub submission_id: String,
    pub role: Role,
    pub position: i64,
    /// `scored` or `disqualified` once the round is applied.
    pub outcome: Option<String>,
    pub score: Option<f64>,
    pub reason: Option<String>,
    /// 90 % intervals of its score and improvements (bootstrap over the prompts).
    pub noise: Option<ScoreNoise>,
    /// A challenger's lead over the king, with its interval.
    pub lead: Option<Lead>,
    /// Its score in the round's confirmation pass.
    pub confirm_score: Option<f64>,
    /// Its verdict explained: speed against the baseline, the gate's findings, timings.
    pub report: Option<ContestantReport>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RoundRow {
    pub id: i64,
    pub seed_block: i64,
    pub seed_hash: String,
    pub state: RoundState,
    pub void_reason: Option<String>,
    /// The contestant whose turn ended a void round (`None`: our side failed).
    pub void_cause: Option<String>,
    pub opened_at: i64,
    pub deadline_at: i64,
    pub closed_at: Option<i64>,
    /// King first, then challengers in commit order.
    pub contestants: Vec<ContestantRow>,
    /// The confirmation pass, when the round had one.
    pub confirmation: Option<ConfirmationRecord>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, FromRow)]
pub struct KingRow {
    pub submission_id: String,
    #[sqlx(try_from = "i64")]
    pub uid: u16,
    pub score: f64,
    pub crowned_at_block: i64,
    pub round_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, FromRow)]
pub struct KingEvent {
    pub id: i64,
    /// `crowned`, `defended` or `dethroned`.
    pub event: String,
    pub submission_id: String,
    #[sqlx(try_from = "i64")]
    pub uid: u16,
    pub score: Option<f64>,
    pub block: i64,
    pub round_id: Option<i64>,
    pub cause: String,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, FromRow)]
pub struct WeightSubmissionRow {
    pub id: i64,
    pub block: i64,
    /// The JSON array as stored (compared as text by the host); served as an array.
    #[serde(serialize_with = "json_text")]
    pub uids: String,
    #[serde(serialize_with = "json_text")]
    pub weights: String,
    pub version_key: i64,
    pub mode: String,
    pub outcome: String,
    pub detail: Option<String>,
    pub at: i64,
}

/// Serves a column holding JSON as that JSON, so readers of the status API get `[2]`, not
/// `"[2]"`. The store wrote it, but a column that does not parse is served as the string
/// rather than failing the whole response.
fn json_text<S: serde::Serializer>(text: &str, s: S) -> std::result::Result<S::Ok, S::Error> {
    use serde::Serialize;
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value) => value.serialize(s),
        Err(_) => text.serialize(s),
    }
}

/// Filters for listing submissions; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct SubmissionFilter {
    pub state: Option<SubmissionState>,
    pub hotkey: Option<String>,
    pub uid: Option<u16>,
    /// At most this many, newest commit first (default 100).
    pub limit: Option<u32>,
}

fn decode_column<T: std::str::FromStr>(s: &str) -> sqlx::Result<T> {
    s.parse()
        .map_err(|_| sqlx::Error::Decode(format!("unknown code `{s}`").into()))
}

pub(crate) async fn submission_state<'e, E: Executor<'e, Database = Sqlite>>(
    db: E,
    id: &str,
) -> Result<Option<SubmissionState>> {
    let row: Option<(String,)> = sqlx::query_as("SELECT state FROM submissions WHERE id = ?")
        .bind(id)
        .fetch_optional(db)
        .await?;
    row.map(|(s,)| parse_code(&s)).transpose()
}

pub(crate) async fn king<'e, E: Executor<'e, Database = Sqlite>>(db: E) -> Result<Option<KingRow>> {
    Ok(sqlx::query_as(
        "SELECT submission_id, uid, score, crowned_at_block, round_id FROM king WHERE slot = 1",
    )
    .fetch_optional(db)
    .await?)
}

pub(crate) async fn round(db: &mut sqlx::SqliteConnection, id: i64) -> Result<Option<RoundRow>> {
    let Some(row) = sqlx::query(
        "SELECT id, seed_block, seed_hash, state, void_reason, void_cause, opened_at, deadline_at, closed_at, \
         confirmation_record FROM rounds WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(&mut *db)
    .await?
    else {
        return Ok(None);
    };
    let contestants = sqlx::query(
        "SELECT submission_id, role, position, outcome, score, reason, noise, lead, confirm_score, \
         report FROM round_contestants WHERE round_id = ? ORDER BY position",
    )
    .bind(id)
    .fetch_all(&mut *db)
    .await?
    .iter()
    .map(|c| -> Result<ContestantRow> {
        Ok(ContestantRow {
            submission_id: c.try_get("submission_id")?,
            role: parse_code(&c.try_get::<String, _>("role")?)?,
            position: c.try_get("position")?,
            outcome: c.try_get("outcome")?,
            score: c.try_get("score")?,
            reason: c.try_get("reason")?,
            noise: from_json(c.try_get("noise")?)?,
            lead: from_json(c.try_get("lead")?)?,
            confirm_score: c.try_get("confirm_score")?,
            report: from_json(c.try_get("report")?)?,
        })
    })
    .collect::<Result<Vec<_>>>()?;
    let state: String = row.try_get("state")?;
    Ok(Some(RoundRow {
        id: row.try_get("id")?,
        seed_block: row.try_get("seed_block")?,
        seed_hash: row.try_get("seed_hash")?,
        state: state
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("round state `{state}`")))?,
        void_reason: row.try_get("void_reason")?,
        void_cause: row.try_get("void_cause")?,
        opened_at: row.try_get("opened_at")?,
        deadline_at: row.try_get("deadline_at")?,
        closed_at: row.try_get("closed_at")?,
        contestants,
        confirmation: from_json(row.try_get("confirmation_record")?)?,
    }))
}

/// The rounds `ids`, in that order, read on one connection (one snapshot inside a
/// transaction).
async fn rounds(conn: &mut sqlx::SqliteConnection, ids: Vec<(i64,)>) -> Result<Vec<RoundRow>> {
    let mut rounds = Vec::with_capacity(ids.len());
    for (id,) in ids {
        rounds.extend(round(&mut *conn, id).await?);
    }
    Ok(rounds)
}

/// A JSON column written by `evidence`; unreadable means the file was altered.
fn from_json<T: serde::de::DeserializeOwned>(text: Option<String>) -> Result<Option<T>> {
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("evidence column: {e}")))
    })
    .transpose()
}

impl Store {
    pub async fn submission(&self, id: &str) -> Result<Option<SubmissionRow>> {
        Ok(sqlx::query_as("SELECT * FROM submissions WHERE id = ?")
            .bind(id)
            .fetch_optional(self.reader())
            .await?)
    }

    pub async fn submissions(&self, filter: &SubmissionFilter) -> Result<Vec<SubmissionRow>> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT * FROM submissions WHERE 1 = 1");
        if let Some(state) = filter.state {
            q.push(" AND state = ").push_bind(state.code());
        }
        if let Some(hotkey) = &filter.hotkey {
            q.push(" AND hotkey = ").push_bind(hotkey.clone());
        }
        if let Some(uid) = filter.uid {
            q.push(" AND uid = ").push_bind(i64::from(uid));
        }
        q.push(" ORDER BY commit_block DESC, id LIMIT ")
            .push_bind(i64::from(filter.limit.unwrap_or(100)));
        Ok(q.build_query_as().fetch_all(self.reader()).await?)
    }

    pub async fn king(&self) -> Result<Option<KingRow>> {
        king(self.reader()).await
    }

    /// Newest first.
    pub async fn king_history(&self, limit: u32) -> Result<Vec<KingEvent>> {
        Ok(
            sqlx::query_as("SELECT * FROM king_history ORDER BY id DESC LIMIT ?")
                .bind(i64::from(limit))
                .fetch_all(self.reader())
                .await?,
        )
    }

    /// Read in one transaction, so the round and its contestants are one snapshot.
    pub async fn round(&self, id: i64) -> Result<Option<RoundRow>> {
        let mut conn = self.reader().begin().await?;
        round(&mut conn, id).await
    }

    pub async fn open_rounds(&self) -> Result<Vec<RoundRow>> {
        let mut conn = self.reader().begin().await?;
        let ids = sqlx::query_as("SELECT id FROM rounds WHERE state = 'open' ORDER BY id")
            .fetch_all(&mut *conn)
            .await?;
        rounds(&mut conn, ids).await
    }

    pub async fn last_weight_submission(&self) -> Result<Option<WeightSubmissionRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM weight_submissions ORDER BY id DESC LIMIT 1")
                .fetch_optional(self.reader())
                .await?,
        )
    }
}

/// How many submissions are in one state (the status API's counts and gauges).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct StateCount {
    pub state: SubmissionState,
    pub count: u64,
}

impl Store {
    /// Submissions per state: every state once, in `SubmissionState::ALL` order, zeros
    /// included, so a consumer never has to guess whether a missing state means zero.
    pub async fn submission_counts(&self) -> Result<Vec<StateCount>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM submissions GROUP BY state")
                .fetch_all(self.reader())
                .await?;
        let mut counts: Vec<StateCount> = SubmissionState::ALL
            .iter()
            .map(|&state| StateCount { state, count: 0 })
            .collect();
        for (code, n) in rows {
            let state: SubmissionState = parse_code(&code)?;
            let n = u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("count {n}")))?;
            if let Some(c) = counts.iter_mut().find(|c| c.state == state) {
                c.count = n;
            }
        }
        Ok(counts)
    }

    /// The `limit` most recent rounds, newest first, each with its contestants, read in
    /// one transaction so the list is one snapshot.
    pub async fn recent_rounds(&self, limit: u32) -> Result<Vec<RoundRow>> {
        let mut conn = self.reader().begin().await?;
        let ids = sqlx::query_as("SELECT id FROM rounds ORDER BY id DESC LIMIT ?")
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
        rounds(&mut conn, ids).await
    }

    /// The rounds `submission` was a contestant in, newest first.
    pub async fn rounds_of(&self, submission: &str, limit: u32) -> Result<Vec<RoundRow>> {
        let mut conn = self.reader().begin().await?;
        let ids = sqlx::query_as(
            "SELECT round_id FROM round_contestants WHERE submission_id = ? \
             ORDER BY round_id DESC LIMIT ?",
        )
        .bind(submission)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        rounds(&mut conn, ids).await
    }

    /// When the last completed round closed (unix seconds), if one has.
    pub async fn last_completed_round_at(&self) -> Result<Option<i64>> {
        let (at,): (Option<i64>,) =
            sqlx::query_as("SELECT MAX(closed_at) FROM rounds WHERE state = 'completed'")
                .fetch_one(self.reader())
                .await?;
        Ok(at)
    }

    /// How many rounds are open.
    pub async fn open_round_count(&self) -> Result<u64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM rounds WHERE state = 'open'")
            .fetch_one(self.reader())
            .await?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("count {n}")))
    }
}
