"""Helpers shared by the benchmark scripts: machine description, memory probes, JSON output."""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """What the figures were measured on."""
    return {
        "nproc": os.cpu_count(),
        "sched_affinity": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": _cpu_model(),
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mib() -> float | None:
    """Current resident set size (VmRSS) in MiB, or None off Linux."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib / 1024


def hwm_mib() -> float | None:
    """Peak resident set size since start or since the last :func:`reset_hwm` (VmHWM), MiB."""
    kib = _status_kib("VmHWM")
    return None if kib is None else kib / 1024


def reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0: write 5 to /proc/self/clear_refs).

    Returns whether it worked; when it did not, :func:`hwm_mib` keeps the process peak.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def process_peak_mib() -> float:
    """Process peak RSS from getrusage (ru_maxrss, KiB on Linux); never reset."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def machine_used_mib() -> float | None:
    """Memory in use on the whole machine (MemTotal − MemAvailable), MiB, or None off Linux."""
    try:
        fields = {
            line.split(":")[0]: int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
        }
        return (fields["MemTotal"] - fields["MemAvailable"]) / 1024
    except (OSError, KeyError, ValueError, IndexError):
        return None


class Sampling:
    """Calls :meth:`sample` at once and then every ``every_seconds``, in a thread, while the
    ``with`` block runs."""

    def __init__(self, every_seconds: float = 0.25):
        self.every_seconds = every_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.every_seconds):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class MachinePeak(Sampling):
    """Peak of :func:`machine_used_mib` while the ``with`` block runs, sampled by a thread.

    A process's own high-water mark misses what it hands to other processes: Ray's workers, its
    object store in shared memory, a DDP rank. The machine-wide figure includes them (and
    anything else running, so read it beside the load average).
    """

    def __init__(self, every_seconds: float = 0.25):
        super().__init__(every_seconds)
        self.peak_mib: float | None = None

    def sample(self) -> None:
        used = machine_used_mib()
        if used is not None and (self.peak_mib is None or used > self.peak_mib):
            self.peak_mib = used


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def write_results(name: str, payload: dict, out: str | None = None) -> Path:
    """Write ``payload`` (plus the command line and the machine) as JSON; returns the path."""
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"command": [sys.executable, "-m", f"benchmarks.{name}", *sys.argv[1:]]}
    document["machine"] = machine()
    document["recorded"] = recorded()
    document.update(payload)
    path.write_text(json.dumps(document, indent=2, default=_jsonable) + "\n")
    return path


def recorded() -> dict:
    """When and at which commit the figures were measured: the stamp the docs' benchmark tables
    carry (``python -m docsgen``). ``+dirty``: the working tree had uncommitted changes."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "--short", "HEAD")
    if commit and git("status", "--porcelain", "--untracked-files=no"):
        commit += "+dirty"
    return {"date": datetime.datetime.now(datetime.UTC).date().isoformat(), "commit": commit}


def _jsonable(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Path | datetime.date):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


def fmt(value, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def quiet_sparse_warnings() -> None:
    """Silence torch's beta/invariant-check notices for sparse tensors (noise in the output)."""
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
    warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
