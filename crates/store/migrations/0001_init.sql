-- Cacheon validator store, schema 1. States and reasons are the stable codes of
-- cacheon-core's enums; CHECK constraints keep free text out.

CREATE TABLE submissions (
    id             TEXT PRIMARY KEY NOT NULL,      -- "{hotkey}:{commit_block}"
    hotkey         TEXT NOT NULL,
    commit_block   INTEGER NOT NULL,
    uid            INTEGER,                        -- uid when observed; NULL if unregistered
    raw_commitment BLOB NOT NULL,                  -- exactly what the chain held
    image          TEXT,                           -- set when the commitment validated
    digest         TEXT,
    state          TEXT NOT NULL CHECK (state IN
                     ('pending','queued','scored','disqualified','rejected','withdrawn','failed_infra')),
    reason         TEXT,                           -- reject / withdraw / disqualify code
    round_id       INTEGER REFERENCES rounds(id),  -- last round it was queued in
    infra_attempts INTEGER NOT NULL DEFAULT 0,
    score          REAL,                           -- latest score, when scored
    observed_at    INTEGER NOT NULL,               -- unix seconds
    updated_at     INTEGER NOT NULL
);
CREATE INDEX submissions_by_state ON submissions (state, commit_block);
CREATE INDEX submissions_by_hotkey ON submissions (hotkey, commit_block);
CREATE INDEX submissions_by_digest ON submissions (digest, commit_block);

CREATE TABLE rounds (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    seed_block  INTEGER NOT NULL,
    seed_hash   TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('open','completed','void')),
    void_reason TEXT,
    opened_at   INTEGER NOT NULL,
    deadline_at INTEGER NOT NULL,
    closed_at   INTEGER
);

CREATE TABLE round_contestants (
    round_id      INTEGER NOT NULL REFERENCES rounds(id),
    submission_id TEXT NOT NULL REFERENCES submissions(id),
    role          TEXT NOT NULL CHECK (role IN ('king','challenger')),
    position      INTEGER NOT NULL,                -- evaluation order, king first
    outcome       TEXT CHECK (outcome IN ('scored','disqualified')),
    score         REAL,
    reason        TEXT,                            -- disqualify code
    PRIMARY KEY (round_id, submission_id)
);

-- The current king: at most one row.
CREATE TABLE king (
    slot             INTEGER PRIMARY KEY CHECK (slot = 1),
    submission_id    TEXT NOT NULL REFERENCES submissions(id),
    uid              INTEGER NOT NULL,
    score            REAL NOT NULL,
    crowned_at_block INTEGER NOT NULL,
    round_id         INTEGER REFERENCES rounds(id)
);

CREATE TABLE king_history (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    event         TEXT NOT NULL CHECK (event IN ('crowned','defended','dethroned')),
    submission_id TEXT NOT NULL REFERENCES submissions(id),
    uid           INTEGER NOT NULL,
    score         REAL,
    block         INTEGER NOT NULL,
    round_id      INTEGER REFERENCES rounds(id),
    cause         TEXT NOT NULL,
    at            INTEGER NOT NULL
);

CREATE TABLE weight_submissions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    block       INTEGER NOT NULL,
    uids        TEXT NOT NULL,                     -- JSON array of u16
    weights     TEXT NOT NULL,                     -- JSON array of u16
    version_key INTEGER NOT NULL,
    mode        TEXT NOT NULL CHECK (mode IN ('set','commit_reveal','dry_run')),
    outcome     TEXT NOT NULL CHECK (outcome IN ('submitted','failed','skipped')),
    detail      TEXT,                              -- extrinsic hash or error code
    at          INTEGER NOT NULL
);
