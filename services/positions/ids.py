"""Time-ordered row ids (UUID version 7, RFC 9562), made here: Python 3.11 has no uuid7, and
PostgreSQL has `uuidv7()` only from version 18."""

from __future__ import annotations

import os
import time
from uuid import UUID

_VERSION_7 = 0x7 << 76
_VARIANT = 0b10 << 62
_RAND_A = 0xFFF << 64
_RAND_B = (1 << 62) - 1


def uuid7() -> UUID:
    """A new id whose first 48 bits are the Unix time in milliseconds: ids made later sort
    later, so a primary-key btree grows at its right edge instead of at random pages."""
    rand = int.from_bytes(os.urandom(10), "big")  # 80 random bits: 12 for rand_a, 62 for rand_b
    millis = time.time_ns() // 1_000_000
    return UUID(int=millis << 80 | _VERSION_7 | (rand << 64) & _RAND_A | _VARIANT | rand & _RAND_B)
