-- A dead letter keeps the exact bytes it arrived with. The text column cannot hold every byte
-- sequence (PostgreSQL text refuses NUL, and invalid UTF-8 has no text form), so it now holds a
-- readable rendering only (invalid bytes and NUL as U+FFFD); payload_bytes is the original.
ALTER TABLE aitrader.dead_letters ADD COLUMN payload_bytes BYTEA;

-- One dead letter per message: a batch redelivered after its dead letters were written (the
-- ack lost, the process killed) must not write them again. JetStream names each message by
-- (stream, stream sequence); rows written before this migration have neither.
ALTER TABLE aitrader.dead_letters ADD COLUMN stream TEXT, ADD COLUMN stream_seq BIGINT;
CREATE UNIQUE INDEX dead_letters_once ON aitrader.dead_letters (service, stream, stream_seq)
    WHERE stream_seq IS NOT NULL;
