"""Where the simulator's accounts come from without putting a secret on a command line: the
environment (`AITRADER_OKX_SIM_ACCOUNTS`) or a file only its owner can read."""

from __future__ import annotations

import stat
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path

from .config import AccountSpec

ACCOUNTS_ENV = "AITRADER_OKX_SIM_ACCOUNTS"
ACCOUNTS_FILE_ENV = "AITRADER_OKX_SIM_ACCOUNTS_FILE"
DEFAULT_ACCOUNT = AccountSpec("sim-key", "sim-secret", "sim-passphrase")


class AccountsError(ValueError):
    """Accounts that cannot be used, with a one-line reason."""


def read_accounts_file(path: Path) -> list[str]:
    """The account lines of `path` (blank lines and `#` comments skipped); refused unless only
    its owner may read or write it, as ssh does with a private key."""
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise AccountsError(f"accounts file {path} is not a regular file")
        if mode & 0o077:
            raise AccountsError(f"accounts file {path} is open to group or others "
                                f"(mode {stat.S_IMODE(mode):04o}): chmod 600 it")
        text = path.read_text()
    except OSError as err:
        raise AccountsError(f"accounts file {path}: {err.strerror}") from None
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def load_accounts(
    given: Iterable[str], env_value: str | None, file: Path | None, balance: Decimal
) -> tuple[AccountSpec, ...]:
    """Accounts from --account, the environment (whitespace-separated) and the file, in that
    order; the built-in demo account when there are none. A key given twice is refused."""
    texts = [*given, *(env_value or "").split(), *(read_accounts_file(file) if file else [])]
    specs: dict[str, AccountSpec] = {}
    numbers: dict[str, int] = {}
    for number, text in enumerate(texts, 1):
        try:  # the text holds secrets: errors name the account by its position only
            spec = AccountSpec.parse(text, balance)
        except ValueError as err:
            raise AccountsError(f"account {number}: {err}") from None
        if spec.api_key in specs:
            raise AccountsError(f"account {number} has the API key of account "
                                f"{numbers[spec.api_key]}")
        specs[spec.api_key], numbers[spec.api_key] = spec, number
    if not specs:
        return (AccountSpec(DEFAULT_ACCOUNT.api_key, DEFAULT_ACCOUNT.secret,
                            DEFAULT_ACCOUNT.passphrase, balance),)
    return tuple(specs.values())
