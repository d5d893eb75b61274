-- The outcome of making each exit-plan version rest on the exchange (#16): the algo order that
-- holds its legs, and OKX's answer ("0" resting; any other sCode, or ours: "timeout",
-- "no_responders", "invalid", refused). NULL s_code: not attempted yet, or the plan has no leg.
ALTER TABLE aitrader.exit_plan_history
    ADD COLUMN algo_id TEXT,
    ADD COLUMN s_code  TEXT,
    ADD COLUMN s_msg   TEXT;
