ALTER TABLE aitrader.exit_plan_history ADD COLUMN algo_id TEXT, ADD COLUMN s_code TEXT, ADD COLUMN s_msg TEXT;
