-- Voids charged to their cause (issue 23): a round that ended because of one contestant's
-- turn charges that contestant only. For the king, the voids it caused since it last
-- completed a round are counted here; at `KING_VOID_LIMIT` it loses the crown.
ALTER TABLE king ADD COLUMN caused_voids INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rounds ADD COLUMN void_cause TEXT;
