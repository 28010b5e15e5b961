-- Noise figures and the confirmation pass (issue 16): what each score was measured with.

-- The contestant's 90 % intervals (cacheon_core::noise::ScoreNoise, JSON), a challenger's
-- lead over the king with its interval (noise::Lead, JSON), and its score in the round's
-- confirmation pass.
ALTER TABLE round_contestants ADD COLUMN noise TEXT;
ALTER TABLE round_contestants ADD COLUMN lead TEXT;
ALTER TABLE round_contestants ADD COLUMN confirm_score REAL;

-- The round's confirmation pass, when it had one: its outcome code and the record
-- (cacheon_core::confirm::ConfirmationRecord, JSON).
ALTER TABLE rounds ADD COLUMN confirmation TEXT CHECK (confirmation IN ('confirmed','not_confirmed'));
ALTER TABLE rounds ADD COLUMN confirmation_record TEXT;

-- Copies by content (issue 16): what each measured image is (cacheon_core::content), so a
-- later submission of another hotkey with the same content is rejected `duplicate_of:`.
ALTER TABLE submissions ADD COLUMN content_id TEXT;
CREATE INDEX submissions_by_content ON submissions (content_id, commit_block);

-- A contestant can now leave a round rejected (a copy found by content): the outcome's
-- CHECK gains 'rejected'. SQLite cannot alter a CHECK, so the table is rebuilt; nothing
-- references it.
CREATE TABLE round_contestants_v2 (
    round_id      INTEGER NOT NULL REFERENCES rounds(id),
    submission_id TEXT NOT NULL REFERENCES submissions(id),
    role          TEXT NOT NULL CHECK (role IN ('king','challenger')),
    position      INTEGER NOT NULL,                -- evaluation order, king first
    outcome       TEXT CHECK (outcome IN ('scored','disqualified','rejected')),
    score         REAL,
    reason        TEXT,                            -- disqualify or reject code
    noise         TEXT,
    lead          TEXT,
    confirm_score REAL,
    PRIMARY KEY (round_id, submission_id)
);
INSERT INTO round_contestants_v2
    SELECT round_id, submission_id, role, position, outcome, score, reason, noise, lead,
           confirm_score
    FROM round_contestants;
DROP TABLE round_contestants;
ALTER TABLE round_contestants_v2 RENAME TO round_contestants;
