"""A paper split in the LightGCN format at the size the selection must handle. One command:

    .venv/bin/python -m benchmarks.synthetic_split --out /tmp/split-100k

writes ``train.txt`` and ``test.txt`` (each line: a user id, then that user's item ids) for
``--users`` users over ``--items`` items, ``--interactions`` in all: users' lengths log-normal,
items drawn from a Zipf-like popularity (a few items in most users' lists, as in real logs,
which is what makes the filters' item-item graph dense), 20% of each user's items in test.
Then ``python -m benchmarks.paper_split --data /tmp/split-100k --models auto`` measures the
selection's time and peak memory on it (``peak_rss_mib`` in its JSON).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def write_split(
    out: Path, users: int, items: int, interactions: int, seed: int = 0, test_share: float = 0.2
) -> tuple[int, int]:
    rng = np.random.default_rng(seed)
    lengths = rng.lognormal(mean=0.0, sigma=0.8, size=users)
    lengths = np.maximum(5, np.round(lengths / lengths.sum() * interactions)).astype(int)
    weights = 1.0 / np.arange(1, items + 1) ** 0.9
    weights /= weights.sum()
    permutation = rng.permutation(items)  # popular items spread over the id range
    out.mkdir(parents=True, exist_ok=True)
    train_edges = test_edges = 0
    with (out / "train.txt").open("w") as train, (out / "test.txt").open("w") as test:
        for user, length in enumerate(lengths):
            drawn = np.unique(permutation[rng.choice(items, size=int(length), p=weights)])
            rng.shuffle(drawn)
            held = max(1, int(len(drawn) * test_share))
            train.write(f"{user} " + " ".join(map(str, drawn[held:])) + "\n")
            test.write(f"{user} " + " ".join(map(str, drawn[:held])) + "\n")
            train_edges += len(drawn) - held
            test_edges += held
    return train_edges, test_edges


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.synthetic_split",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("--out", required=True)
    parser.add_argument("--users", type=int, default=60_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--interactions", type=int, default=3_000_000)
    # Not TrainConfig's seed: the generated split's (nothing is trained).
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    train, test = write_split(Path(args.out), args.users, args.items, args.interactions, args.seed)
    print(f"wrote {args.out}: {args.users} users, {args.items} items, {train} train and {test}"
          " test interactions")  # fmt: skip


if __name__ == "__main__":
    main()
