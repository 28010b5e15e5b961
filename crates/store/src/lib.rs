//! Cacheon's durable state: one SQLite file, accessed through sqlx.
//!
//! The submission lifecycle of SPEC §4 is a set of operations on [`WriteTx`], each a
//! guarded `UPDATE … WHERE state = …`, so a transition that no longer applies (a replayed
//! verdict, a round already closed) changes nothing. A [`WriteTx`] is one SQLite
//! transaction taken with `BEGIN IMMEDIATE`: callers compose several operations and commit
//! once; dropping it rolls everything back, which is what a crash does too.
//!
//! Concurrency: one writer connection (SQLite allows one writer anyway; a second pooled
//! writer would only trade waiting for `SQLITE_BUSY`), and a pool of read-only connections
//! for the status API. WAL mode lets those readers run while the writer works.

mod evidence;
mod king;
mod read;
mod write;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

pub use evidence::ContestantEvidence;
pub use read::{ContestantRow, StateCount, WeightSubmissionRow};
pub use read::{KingEvent, KingRow, RoundRow, RoundState, SubmissionFilter, SubmissionRow};
pub use write::{
    ApplyOutcome, ContestantVerdict, NewRound, ObservedCommitment, Recorded, RoundVoid,
    VerdictOutcome, WeightMode, WeightOutcome, WriteTx, ISOLATE_AFTER_VOIDS, KING_VOID_LIMIT,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("submission {0} not found")]
    UnknownSubmission(String),
    #[error("hotkey `{0}` is not an ss58 address")]
    InvalidHotkey(String),
    #[error("round {0} not found")]
    UnknownRound(i64),
    #[error("submission {id} is {state}, expected {expected}")]
    WrongState {
        id: String,
        state: String,
        expected: &'static str,
    },
    #[error("round {round} has no verdict for contestant {submission}")]
    MissingVerdict { round: i64, submission: String },
    #[error("crown decision refused: {0}")]
    StaleDecision(String),
    #[error("value out of range for the store: {0}")]
    OutOfRange(&'static str),
    #[error("stored row is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) and migrates the store at `path`.
    pub async fn open(path: &Path) -> Result<Self> {
        let base = SqliteConnectOptions::new()
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit survives power loss, not only a process crash. Writes are few.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(base.clone().create_if_missing(true))
            .await?;
        MIGRATOR.run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(base.read_only(true))
            .await?;
        Ok(Self { writer, reader })
    }

    /// Migration versions applied to this store, oldest first.
    pub async fn applied_migrations(&self) -> Result<Vec<i64>> {
        let rows: Vec<(i64,)> =
            sqlx::query_as("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
                .fetch_all(&self.reader)
                .await?;
        Ok(rows.into_iter().map(|(v,)| v).collect())
    }

    /// Starts a write transaction (`BEGIN IMMEDIATE`: the write lock is taken up front, so
    /// a transaction never fails half-way because another process wrote first).
    pub async fn write(&self) -> Result<WriteTx> {
        let tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        Ok(WriteTx::new(tx))
    }

    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }
}

/// Seconds since the epoch, as stored.
fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn to_i64(v: u64, what: &'static str) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::OutOfRange(what))
}

fn parse_code<T: FromStr>(s: &str) -> Result<T> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("unknown code `{s}`")))
}
