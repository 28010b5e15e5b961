-- What miners and operators see (issue 17): each contestant's verdict explained
-- (cacheon_core::report::ContestantReport, JSON): its speed next to the baseline's, the
-- gate's findings, stream faults and timings. Written with the round's other evidence.
ALTER TABLE round_contestants ADD COLUMN report TEXT;
CREATE INDEX round_contestants_by_submission ON round_contestants (submission_id, round_id);
