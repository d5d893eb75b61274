-- A dead letter keeps the exact bytes it arrived with. The text column cannot hold every byte
-- sequence (PostgreSQL text refuses NUL, and invalid UTF-8 has no text form), so it now holds a
-- readable rendering only (invalid bytes and NUL as U+FFFD); payload_bytes is the original.
ALTER TABLE aitrader.dead_letters ADD COLUMN payload_bytes BYTEA;
