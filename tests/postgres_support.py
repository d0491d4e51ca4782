"""A real PostgreSQL server for tests and benchmarks, started from the machine's binaries in a
temporary folder on a loopback port, and stopped by PID: ``initdb`` then ``postgres`` in the
foreground as a child process (what ``pg_ctl start`` runs, without the daemonising, so that
its PID is the child's own).

PostgreSQL refuses to run as root; as root, the server runs as ``nobody`` (the folder is
``nobody``'s). The binaries are Debian's (``/usr/lib/postgresql/<version>/bin``; the Makefile
installs ``postgresql`` where they are missing), or ``$PG_BINDIR``, or whatever ``initdb`` is
on ``PATH``. Use the session fixture ``postgres_server`` (``tests/conftest.py``) and one
database per test (:meth:`PostgresServer.create_database`).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from tests.daemon_support import free_port

UNPRIVILEGED_USER = "nobody"
SUPERUSER = "recs"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL binaries here; the message says how to install them."""


def find_bindir() -> Path:
    candidates = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(Path(os.environ["PG_BINDIR"]))
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    candidates += sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "postgres").exists():
            return bindir
    raise PostgresUnavailable(
        "no PostgreSQL server binaries (initdb, postgres) found in $PG_BINDIR, on PATH or under"
        " /usr/lib/postgresql/*/bin: `make setup` installs them (apt-get install postgresql)"
    )


class PostgresServer:
    """One PostgreSQL server in a temporary folder, listening on 127.0.0.1:``port`` only.

    ``durable=False`` (tests) turns fsync off: nothing survives a machine crash, which a test
    server never needs. Benchmarks keep PostgreSQL's defaults."""

    def __init__(self, durable: bool = False):
        self.bindir = find_bindir()
        self.port = free_port()
        self.host = "127.0.0.1"
        self.user = SUPERUSER
        self.durable = durable
        self.process: subprocess.Popen | None = None
        self.root = Path(tempfile.mkdtemp(prefix="recs-postgres-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._as_other = os.geteuid() == 0
        if self._as_other:
            entry = pwd.getpwnam(UNPRIVILEGED_USER)
            self._ids = (entry.pw_uid, entry.pw_gid)
            os.chown(self.root, *self._ids)
        os.chmod(self.root, 0o700)

    def _run_kwargs(self) -> dict:
        kwargs = {"cwd": self.root, "env": {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}}
        if self._as_other:
            kwargs |= {"user": self._ids[0], "group": self._ids[1], "extra_groups": []}
        return kwargs

    def start(self, timeout: float = 60) -> PostgresServer:
        subprocess.run(
            [
                str(self.bindir / "initdb"),
                *("-D", str(self.data), "-U", self.user, "-A", "trust"),
                *("-E", "UTF8", "--locale=C", "--no-instructions"),
            ],
            check=True,
            capture_output=True,
            **self._run_kwargs(),
        )
        settings = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(self.root),
            "max_connections": "200",
        }
        if not self.durable:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [
                    str(self.bindir / "postgres"),
                    *("-D", str(self.data)),
                    *(arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._run_kwargs(),
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"postgres exited with {self.process.returncode}:\n{self.logs()}"
                )
            try:
                with contextlib.closing(self.connect("postgres")):
                    return self
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.2)

    def connect(self, db_name: str):
        import psycopg2

        return psycopg2.connect(
            host=self.host, port=self.port, user=self.user, dbname=db_name, connect_timeout=5
        )

    def create_database(self, prefix: str = "recs") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with contextlib.closing(self.connect("postgres")) as con:
            con.autocommit = True
            with con.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        return name

    def environment(self, db_name: str) -> dict[str, str]:
        """What a Dagster process needs to use ``db_name`` as its shared instance."""
        return {
            "RECS_INSTANCE": "postgres",
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": "",
            "DAGSTER_PG_DB": db_name,
        }

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        """Fast shutdown (SIGINT: sessions ended, a clean checkpoint) by PID, then SIGKILL to the
        server's process group if it has not ended in 30 s; then the folder goes."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            self.process = None
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
