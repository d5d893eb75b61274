-- The fold keeps the exact cost of a position: sum(px x sz) of its opening and closing fills,
-- from which a closed position's gross PnL is computed without the rounded average. A price has
-- 8 decimals and a size 8: their product needs 16 to be exact (it had 12).
ALTER TABLE aitrader.positions_open
    ALTER COLUMN opened_value TYPE NUMERIC(40, 16),
    ALTER COLUMN closed_value TYPE NUMERIC(40, 16);
