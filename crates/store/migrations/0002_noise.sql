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
