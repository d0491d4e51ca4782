"""A real S3 HTTP server for the tests: moto's server mode in its own process (no MinIO server is
installable here), on a loopback port, stopped by PID. The artifact store's tests and the shared
deployment's (a DuckLake's Parquet files and the artifacts in buckets) run against it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

REGION = "eu-west-1"
# Credentials the way a deployment passes them: botocore and DuckDB's httpfs
# (recs_pipeline.infra.warehouse._s3_secret) read them from the environment.
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "recs-test",
    "AWS_SECRET_ACCESS_KEY": "recs-test-secret",
    "AWS_DEFAULT_REGION": REGION,
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class S3Server:
    """``with S3Server(log) as server:`` moto's S3 server at ``server.endpoint`` (``http://…``)
    while the block runs; its output goes to the file ``log``."""

    def __init__(self, log: Path):
        self.log = log
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> S3Server:
        with open(self.log, "wb") as out:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return self
                except OSError:
                    alive = self._process.poll() is None
                    assert alive and time.monotonic() < deadline, self.log.read_text()
                    time.sleep(0.1)
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
