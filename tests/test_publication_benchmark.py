"""benchmarks.publication end to end on a tiny LightGCN-format split written here."""

import json

import torch

from benchmarks import publication


def write_split(folder, n_users=120, n_items=300, per_user=12, seed=0):
    """Two item communities; each user's first 10 items train, the rest test."""
    g = torch.Generator().manual_seed(seed)
    train, test = [], []
    for u in range(n_users):
        half = (u % 2) * (n_items // 2)
        items = (half + torch.randperm(n_items // 2, generator=g)[:per_user]).tolist()
        train.append(" ".join(map(str, [u, *items[:10]])))
        test.append(" ".join(map(str, [u, *items[10:]])))
    (folder / "train.txt").write_text("\n".join(train) + "\n")
    (folder / "test.txt").write_text("\n".join(test) + "\n")


def test_exact_and_index_rankings_are_compared_on_trained_embeddings(tmp_path):
    write_split(tmp_path)
    out = tmp_path / "publication.json"
    payload = publication.main(
        [
            "--data",
            str(tmp_path),
            "--train-minutes",
            "0.02",
            "--list-size",
            "16",
            "--probes",
            "2,1000",
            "--repeats",
            "1",
            "--out",
            str(out),
        ]
    )
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"exact", "ivf/2", "ivf/1000"} == set(payload["results"])
    assert results["exact"]["overlap_with_exact"] == 1.0
    # Probing every list is exact ranking up to ties at rank K (per-list GEMMs sum in
    # another order); two lists of ~16 items lose some of it.
    assert results["ivf/1000"]["overlap_with_exact"] > 0.99
    for metric, value in results["exact"]["test"].items():
        assert abs(results["ivf/1000"]["test"][metric] - value) < 0.01
    assert 0.0 < results["ivf/2"]["overlap_with_exact"] < 1.0
    assert payload["lists"] * 32 >= 300
