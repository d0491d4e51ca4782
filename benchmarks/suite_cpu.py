"""Where the test suite's CPU goes. One command:

    .venv/bin/python -m benchmarks.suite_cpu

Runs ``make test``'s pytest command (``python -m pytest -q -n 2 --dist loadfile``) in a
subprocess while this process reads ``/proc`` every ``--every`` seconds: each process's CPU
time (user + system) and command line. Each process is put in a kind by its command line and its
parent's. For example, a step process is forked from the executor's fork server and carries that
server's command line.

``/proc/stat`` gives the whole machine's busy time over the run. The suite is CPU-bound when that
time, spread over the cores, is close to the run's wall time.

Reported:

- the suite's wall time and result line;
- the machine's busy CPU-seconds and their share of the cores;
- CPU-seconds and process counts by kind;
- a single-core speed probe (a Python loop) before and after the run.

A process shorter than the sampling interval can be missed. Compare runs only at the same speed:
the machine's speed can move by 2× within a day. Linux only. Results:
``benchmarks/results/suite_cpu.json``.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._common import Sampling, write_results

ROOT = Path(__file__).resolve().parents[1]
SUITE = [sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadfile"]
TICKS = os.sysconf("SC_CLK_TCK")

# (what the command line holds, the kind), first match wins. A process forked from a kind in
# FORKED_FROM is that entry's kind instead; a kind in SPAWNED_BY is that only when its parent is
# of the kind named there (torch's spawned workers are not run workers).
KINDS = [
    ("multiprocessing.forkserver", "step fork servers (torch, dagster, the code location)"),
    ("spawn_main", "run workers (spawned by a code server)"),
    ("api grpc", "code servers (dagster api grpc)"),
    ("dagster-webserver", "webserver"),
    ("dagster_daemon", "daemon"),
    ("dagster-daemon", "daemon"),
    ("cli.demo", "the demo (cli.demo)"),
    ("bin/recs ", "recs commands"),
    ("cli.main", "recs commands"),
    ("bin/dagster ", "dagster commands"),
    ("exec(eval(", "tests computing in the pytest workers"),
    ("-m pytest", "pytest's controller"),
    ("postgres: ", "PostgreSQL"),  # its backends
    ("/postgresql/", "PostgreSQL"),  # the server, initdb
    ("raylet", "Ray"),
    ("gcs_server", "Ray"),
    ("ray::", "Ray"),
    ("/ray/", "Ray"),
    ("moto", "moto (S3)"),
    (
        "spawn_main",
        "processes spawned by multiprocessing elsewhere (torch's data-parallel workers)",
    ),
    (" -m tests.", "the tests' helper programs (python -m tests.*: readers, chains, servers)"),
    (" -c ", "the tests' scripts (python -c)"),
]
FORKED_FROM = {"step fork servers (torch, dagster, the code location)": "step processes"}
SPAWNED_BY = {"run workers (spawned by a code server)": "code servers (dagster api grpc)"}
OTHER = "other processes"


def kind_of(command: str, parent_kind: str | None) -> str:
    for needle, kind in KINDS:
        if needle in command:
            if parent_kind == kind and kind in FORKED_FROM:
                return FORKED_FROM[kind]
            if kind in SPAWNED_BY and parent_kind != SPAWNED_BY[kind]:
                continue  # a later, more general entry names it
            return kind
    return OTHER


def machine_busy_seconds() -> float:
    """CPU-seconds every core spent busy since boot (``/proc/stat``'s first line)."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    return (sum(values) - values[3] - values[4]) / TICKS  # less idle and iowait


def speed_probe() -> float:
    """Seconds of a single-core Python loop: the machine's speed of the moment."""
    started = time.perf_counter()
    sum(i * i for i in range(10**7))
    return round(time.perf_counter() - started, 3)


class ProcessSampler(Sampling):
    """Every process's CPU time, by (PID, start time), read from ``/proc`` until stopped. A
    process already running at the start counts from there on. This process is left out."""

    def __init__(self, every_seconds: float) -> None:
        super().__init__(every_seconds)
        self.first: dict[tuple[str, str], float] = {}
        self.last: dict[tuple[str, str], tuple[float, str, str]] = {}
        self._initial = True

    def sample(self) -> None:
        me = str(os.getpid())
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or pid == me:
                continue
            try:
                with open(f"/proc/{pid}/stat") as handle:
                    stat = handle.read()
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    command = handle.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            key = (pid, fields[19])  # a PID reused by a later process is another key
            cpu = (int(fields[11]) + int(fields[12])) / TICKS
            self.first.setdefault(key, cpu if self._initial else 0.0)
            previous = self.last.get(key)
            # A forked child keeps its parent's command line until it execs: keep the first.
            self.last[key] = (cpu, previous[1] if previous else command[:300], fields[1])
        self._initial = False

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        self.sample()  # what ran since the last sample

    def by_kind(self) -> list[dict]:
        commands = {pid: command for (pid, _), (_, command, _) in self.last.items()}
        kinds: dict[tuple[str, str], str] = {}

        def kind(key: tuple[str, str]) -> str:
            if key not in kinds:
                _, command, parent = self.last[key]
                parent_command = commands.get(parent)
                parent_kind = kind_of(parent_command, None) if parent_command else None
                kinds[key] = kind_of(command, parent_kind)
            return kinds[key]

        seconds: collections.Counter[str] = collections.Counter()
        count: collections.Counter[str] = collections.Counter()
        commands_of: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        for key, (cpu, command, _) in self.last.items():
            used = cpu - self.first[key]
            if used <= 0 and self.first[key] > 0:
                continue  # running before the suite and idle throughout
            seconds[kind(key)] += used
            count[kind(key)] += 1
            commands_of[kind(key)][" ".join(command.split())[:100]] += used
        return [
            {
                "kind": name,
                "cpu_seconds": round(used, 1),
                "processes": count[name],
                # What the kind holds, for checking the rules: its busiest command lines.
                "top_commands": [
                    [command, round(cpu, 1)] for command, cpu in commands_of[name].most_common(5)
                ],
            }
            for name, used in seconds.most_common()
        ]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.suite_cpu", description=__doc__)
    parser.add_argument("--every", type=float, default=0.25, help="sampling interval, seconds")
    parser.add_argument("--out", help="results file (default: benchmarks/results/suite_cpu.json)")
    args = parser.parse_args(argv)

    speed_before = speed_probe()
    env = {**os.environ, "DAGSTER_HOME": str(ROOT / "dagster_home")}  # as make test sets it
    busy_before = machine_busy_seconds()
    started = time.perf_counter()
    with ProcessSampler(args.every) as sampler:
        done = subprocess.run(SUITE, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    busy = machine_busy_seconds() - busy_before
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    cores = len(os.sched_getaffinity(0))
    kinds = sampler.by_kind()
    payload = {
        "suite": {
            "command": ["python", *SUITE[1:]],
            "returncode": done.returncode,
            "result": lines[-1] if lines else "",
            "failed": [line for line in lines if line.startswith("FAILED ")],
            "wall_seconds": round(wall, 1),
        },
        "cores": cores,
        "machine_busy_cpu_seconds": round(busy, 1),
        "busy_share_of_cores": round(busy / (cores * wall), 3),
        "sampled_cpu_seconds": round(sum(k["cpu_seconds"] for k in kinds), 1),
        "speed_probe_seconds": {"before": speed_before, "after": speed_probe()},
        "kinds": kinds,
    }
    path = write_results("suite_cpu", payload, args.out)
    print(f"{payload['suite']['result']} in {wall:.0f} s; the machine busy {busy:.0f} CPU-s")
    for row in kinds:
        print(f"{row['cpu_seconds']:8.1f} s {row['processes']:5d}  {row['kind']}")
    print(f"results: {path}")
    return payload


if __name__ == "__main__":
    main()
