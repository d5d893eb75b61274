-- A position closed by a triggered algo (TP/SL) order of its exit plan (docs/exit_plans.md).
ALTER TABLE aitrader.positions_closed DROP CONSTRAINT positions_closed_exit_reason_check;
ALTER TABLE aitrader.positions_closed ADD CONSTRAINT positions_closed_exit_reason_check
    CHECK (exit_reason IN ('agent', 'liquidation', 'adl', 'external', 'reconcile',
                           'take_profit', 'stop_loss'));
