"""Time-ordered row ids (UUID version 7, RFC 9562), made here: Python 3.11 has no uuid7, and
PostgreSQL has `uuidv7()` only from version 18."""

from __future__ import annotations

import os
import random
import time
from uuid import UUID

from asyncpg.pgproto.pgproto import UUID as PgUUID  # the uuid.UUID subclass asyncpg returns

_VERSION_7 = 0x7 << 76
_VARIANT = 0b10 << 62
_RAND_B = (1 << 62) - 1
# Ids must be unique, not secret: a generator seeded from the OS once per process, rather than
# a system call per id (74 random bits per millisecond).
_random = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(32)))  # a child draws its own


def uuid7() -> UUID:
    """A new id whose first 48 bits are the Unix time in milliseconds: ids made later sort
    later, so a primary-key btree grows at its right edge instead of at random pages."""
    rand = _random.getrandbits(74)  # 12 bits for rand_a, 62 for rand_b
    millis = time.time_ns() // 1_000_000
    value = millis << 80 | _VERSION_7 | (rand >> 62) << 64 | _VARIANT | rand & _RAND_B
    uid: UUID = PgUUID(value.to_bytes(16, "big"))
    return uid
