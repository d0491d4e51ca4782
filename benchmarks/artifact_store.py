"""Artifact store: put and get of one large checkpoint (``--mb`` MB of float32 weights).

Each put and each get runs in a fresh process (so the page cache holds the file, but no
Python object survives between them), timed around the store call alone. Memory is the
process's peak resident set during the call above its resident set just before it: for a
put, what the store holds besides the tensor itself; for a get, the decoded tensor plus what
the store held on the way. Runs alternate put and get for ``--repeats`` rounds; medians.

``--root`` is any store root (a folder, ``file:///…``); by default a fresh folder in the
system's temporary directory, removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks._common import hwm_mib, median, reset_hwm, rss_mib, write_results

PARTITION = "2026-03-01"


def _store(root: str):
    from recs_pipeline.infra import artifacts

    # LocalArtifactStore: the store before URL roots, so the same script measures "before".
    store_class = getattr(artifacts, "UrlArtifactStore", None) or artifacts.LocalArtifactStore
    return store_class(root, run_id="benchmark")


def worker(op: str, root: str, mb: int) -> dict:
    import torch

    from recs_pipeline.infra.artifacts import MODEL

    store = _store(root)
    if op == "put":
        checkpoint = {"model": "benchmark", "weights": torch.ones(mb * 250_000)}
    rss = rss_mib()
    reset_hwm()
    start = time.perf_counter()
    if op == "put":
        store.put(MODEL, PARTITION, checkpoint)
    else:
        checkpoint = store.get(MODEL, PARTITION)
    seconds = time.perf_counter() - start
    peak = hwm_mib()
    assert checkpoint["weights"].numel() == mb * 250_000
    return {"seconds": seconds, "peak_above_start_mib": peak - rss}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.artifact_store",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--mb", type=int, default=200, help="checkpoint size (MB of weights)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--root", help="store root (folder or URL); default: a temporary folder")
    parser.add_argument("--label", default="current", help="key of this run in the JSON")
    parser.add_argument("--out", help="JSON file (default benchmarks/results/artifact_store.json)")
    parser.add_argument("--worker", choices=["put", "get"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.root, args.mb)))
        return {}

    load = os.getloadavg()
    folder = None if args.root else tempfile.mkdtemp(prefix="recs-artifact-bench-")
    root = args.root or folder
    runs: dict[str, list[dict]] = {"put": [], "get": []}
    try:
        for _ in range(args.repeats):
            for op in ("put", "get"):
                out = subprocess.run(
                    [sys.executable, "-m", "benchmarks.artifact_store", "--worker", op]
                    + ["--root", root, "--mb", str(args.mb)],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                runs[op].append(json.loads(out.strip().splitlines()[-1]))
                print(op, runs[op][-1], flush=True)
    finally:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)

    result = {
        "store": type(_store(root or ".")).__name__,
        "mb": args.mb,
        "repeats": args.repeats,
        "root": "temporary folder" if folder else root,
        "load_average_before": load,
        **{
            op: {
                "median_seconds": median([r["seconds"] for r in values]),
                "median_peak_above_start_mib": median([r["peak_above_start_mib"] for r in values]),
                "runs": values,
            }
            for op, values in runs.items()
        },
    }
    path = args.out or os.path.join(os.path.dirname(__file__), "results", "artifact_store.json")
    previous = json.loads(open(path).read()) if os.path.exists(path) else {}
    labelled = previous.get("runs", {}) if isinstance(previous, dict) else {}
    labelled[args.label] = result
    written = write_results("artifact_store", {"runs": labelled}, out=path)
    print(f"wrote {written}")
    return result


if __name__ == "__main__":
    main()
