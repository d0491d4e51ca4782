"""How the Gowalla test fold differs from a validation slice carved from train.

``python -m benchmarks.gowalla_calibration --data ../shared/data/gowalla_lightgcn``

Fits the training-free models (popularity, GF-CF) twice: on the fit edges of
``train_model``'s validation split (the same seed, 5,000 users, 20% of their train edges, as
``benchmarks.gowalla`` uses) scored on that slice, and on all train edges scored on the test
fold (``--holdout``: which train edges are a user's latest, ``benchmarks.gowalla.holdout_order``;
each holdout writes its own file). A trained model whose validation recall matches GF-CF's validation recall is as good as
GF-CF by the only signal training may use; the two test columns show what the test fold adds.
Results: ``benchmarks/results/gowalla_calibration.json``.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks._common import quiet_sparse_warnings, write_results
from benchmarks.gowalla import HOLDOUTS, holdout_order, load_lightgcn_split
from benchmarks.variants import run_training_free
from recs_pipeline.graph.bipartite import interaction_csr
from recs_pipeline.training.cli import add_setting_flags
from recs_pipeline.training.validation import validation_split

# The TrainConfig settings of the validation slice (add_setting_flags), with benchmarks.gowalla's
# defaults, so that the slice is the one its trained models stop early on.
TRAIN_FLAGS = {"val_users": 5000, "val_fraction": 0.2, "seed": 0}


def calibration_name(holdout: str) -> str:
    """The results file of a holdout: each slice keeps its own."""
    return (
        "gowalla_calibration"
        if holdout == "random"
        else f"gowalla_calibration_{holdout.replace('-', '_')}"
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gowalla_calibration")
    parser.add_argument("--data", required=True)
    add_setting_flags(parser, TRAIN_FLAGS)
    parser.add_argument("--holdout", choices=HOLDOUTS, default="random", help="holdout_order")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    quiet_sparse_warnings()
    n_users, n_items, tu, ti, su, si = load_lightgcn_split(args.data)
    last_ts = holdout_order(tu.numel(), args.seed, args.holdout)
    generator = torch.Generator().manual_seed(args.seed)
    held = validation_split(tu, last_ts, n_users, args.val_users, generator, args.val_fraction)
    folds = {
        "validation": (tu[~held], ti[~held], tu[held], ti[held]),
        "test": (tu, ti, su, si),
    }
    results = {}
    for fold, (fu, fi, eu, ei) in folds.items():
        exclude = interaction_csr(fu, fi, n_users, n_items)
        results[fold] = run_training_free(
            ("popularity", "gfcf"), fu, fi, n_users, n_items, exclude, eu, ei
        )
        for name, r in results[fold].items():
            print(f"{fold:<11}{name:<12}R@20 {r['recall@20']:.4f}  N@20 {r['ndcg@20']:.4f}")
    payload = {"args": vars(args), "results": results}
    path = write_results(calibration_name(args.holdout), payload, args.out)
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
