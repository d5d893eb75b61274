"""Generate the containerized deployment's secrets once: `python secrets_init.py DIR`.

compose's one-shot `secrets-init` runs this (as root) on the `secrets` volume before anything
else starts. Nothing is ever overwritten, so a restart keeps the database password:
- DIR/postgres_password (owner: the postgres image's user; PostgreSQL's POSTGRES_PASSWORD_FILE)
- DIR/aitrader_database_url (owner: the aitrader image's user; read through secrets_dir)
- DIR/aitrader_console_db_password (owner: the aitrader image's user): the console role's
  password; the one-shot migrate sets it on the role, the console logs in with it
- DIR/demo/: the offline demo's okx_sim account (okx_sim_accounts, mode 0600) and the same
  key as the demo ingest's aitrader_okx_api_key / _secret_key / _passphrase
Every file is readable by its owner only; no value is printed.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

POSTGRES_UID = 999  # the official postgres (Debian) image's `postgres` user
AITRADER_UID = 10001  # the Dockerfile's `aitrader` user
DATABASE_URL = "postgresql://aitrader:{password}@postgres:5432/aitrader"


def write_once(path: Path, text: str, uid: int, mode: int) -> bool:
    """Write `path` atomically unless it exists; owned by `uid` when run as root."""
    if path.exists():
        return False
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "w") as out:
        out.write(text)
    if os.geteuid() == 0:
        os.chown(temporary, uid, uid)
    os.replace(temporary, path)
    return True


def generate(directory: Path) -> list[str]:
    """Create what is missing under `directory`; the names of the files created."""
    created: list[str] = []
    password_file = directory / "postgres_password"
    if not password_file.exists():
        password = secrets.token_urlsafe(32)
        # The URL first: the password file's presence means both were written.
        (directory / "aitrader_database_url").unlink(missing_ok=True)
        write_once(directory / "aitrader_database_url", DATABASE_URL.format(password=password),
                   AITRADER_UID, 0o400)
        write_once(password_file, password, POSTGRES_UID, 0o400)
        created += ["aitrader_database_url", "postgres_password"]
    # On its own: a volume of an earlier compose.yaml, without it, gains it.
    if write_once(directory / "aitrader_console_db_password", secrets.token_urlsafe(32), AITRADER_UID, 0o400):
        created.append("aitrader_console_db_password")
    demo = directory / "demo"
    demo.mkdir(mode=0o755, exist_ok=True)
    if not (demo / "okx_sim_accounts").exists():
        key, secret, phrase = (secrets.token_hex(8), secrets.token_hex(16),
                               secrets.token_hex(8))
        for name, value in (("aitrader_okx_api_key", key), ("aitrader_okx_secret_key", secret),
                            ("aitrader_okx_passphrase", phrase)):
            (demo / name).unlink(missing_ok=True)
            write_once(demo / name, value, AITRADER_UID, 0o400)
        write_once(demo / "okx_sim_accounts", f"{key}:{secret}:{phrase}:demo\n", AITRADER_UID,
                   0o600)
        created.append("demo/")
    return created


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not Path(argv[1]).is_dir():
        print("usage: secrets_init.py DIR (an existing directory)", file=sys.stderr)
        return 2
    created = generate(Path(argv[1]))
    print(f"secrets-init: created {', '.join(created)}" if created else "secrets-init: kept all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
