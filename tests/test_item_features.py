"""Item features from a catalogue file, aligned to the id map."""

import polars as pl
import pytest
import torch

from recs_pipeline.data.item_features import feature_file, read_item_features
from recs_pipeline.data.logs import LogConfigError


def test_features_align_to_the_id_map_with_flags_kept_and_numbers_standardised(tmp_path):
    (tmp_path / "items.csv").write_text(
        "item_id,action,comedy,price,title\n"
        "i1,1,0,10,Alpha\n"
        "i2,0,1,30,Beta\n"
        "i2,0,1,30,Beta\n"  # a duplicate row counts once
        "i9,1,1,,Gamma\n"  # missing price
        "i7,1,1,20,not in the id map\n"
    )
    features = read_item_features(
        feature_file(tmp_path, "items.csv"), "item_id", ["i0", "i1", "i2", "i9"]
    )
    assert features.columns == ["action", "comedy", "price"]
    assert features.ignored_columns == ["title"]
    assert features.matched_items == 3
    # price: mean 20 and std 10 over the id map's priced items (10, 30) → −1, +1; missing → 0.
    expected = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, -1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    torch.testing.assert_close(features.values, expected)


def test_parquet_catalogue_with_another_id_column(tmp_path):
    pl.DataFrame({"sku": ["b", "a"], "weight": [0.5, 1.5], "flag": [True, False]}).write_parquet(
        tmp_path / "catalogue.parquet"
    )
    features = read_item_features(tmp_path / "catalogue.parquet", "sku", ["a", "b", "c"])
    assert features.columns == ["weight", "flag"]
    torch.testing.assert_close(features.values, torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.0, 0.0]]))


def test_configuration_errors_name_the_setting(tmp_path):
    (tmp_path / "items.csv").write_text("id,genre\nx,1\n")
    with pytest.raises(LogConfigError, match="item_column 'item_id'"):
        read_item_features(tmp_path / "items.csv", "item_id", ["x"])
    with pytest.raises(LogConfigError, match="item_features_path .* outside landing_root"):
        feature_file(tmp_path, "../elsewhere.csv")
    with pytest.raises(LogConfigError, match="relative to landing_root"):
        feature_file(tmp_path, str(tmp_path / "items.csv"))
    with pytest.raises(LogConfigError, match="unknown format"):
        feature_file(tmp_path, "items.xlsx")
    assert feature_file(tmp_path, "missing.csv") is None


def test_catalogue_ids_follow_the_ingest_id_rule(tmp_path):
    # Issue 11, finding 12: ingest stores ids in NFC with whitespace trimmed; the catalogue's id
    # column is read under the same rule, so an NFD or padded catalogue id matches its item.
    (tmp_path / "items.csv").write_text(
        'item_id,genre\n"caf\u0065\u0301\t",1\n" i2\u00a0",1\n', encoding="utf-8"
    )
    features = read_item_features(tmp_path / "items.csv", "item_id", ["caf\u00e9", "i2", "i3"])
    assert features.matched_items == 2
    torch.testing.assert_close(features.values, torch.tensor([[1.0], [1.0], [0.0]]))


def test_categorical_columns_become_one_and_multi_hot_and_the_rest_are_reported(tmp_path):
    # Issue 12, finding 7: a MovieLens-like catalogue. Genres (multi-valued, "|") become one 0/1
    # column per genre; a single-valued category one-hot; the title (a different value for every
    # item) and a date are not features, and each ignored column says why.
    (tmp_path / "movies.csv").write_text(
        "movieId,title,genres,studio,released\n"
        "1,Toy Story (1995),Adventure|Animation|Children,pixar,1995-11-22\n"
        "2,Jumanji (1995),Adventure|Children,tristar,1995-12-15\n"
        "3,Heat (1995),Action|Crime,warner,1995-12-15\n"
        "4,Sabrina (1995),Comedy,pixar,1995-12-15\n"
    )
    ids = ["1", "2", "3", "4", "5"]
    features = read_item_features(tmp_path / "movies.csv", "movieId", ids)
    genres = ["Action", "Adventure", "Animation", "Children", "Comedy", "Crime"]
    studios = ["pixar", "tristar", "warner"]
    assert features.columns == [f"genres={g}" for g in genres] + [f"studio={s}" for s in studios]
    torch.testing.assert_close(
        features.values,
        torch.tensor(
            [
                [0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0],
                [0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
                [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0],
                [0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0],
                [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # not in the catalogue
            ]
        ),
    )
    assert set(features.ignored) == {"title", "released"}
    assert "different value for every item" in features.ignored["title"]
    assert "DATE" in features.ignored["released"]
    # The cap on distinct values: above it a column is ignored, with the reason.
    capped = read_item_features(tmp_path / "movies.csv", "movieId", ids, max_categories=2)
    assert capped.columns == []
    assert "max_categories 2" in capped.ignored["genres"]
    assert "max_categories 2" in capped.ignored["studio"]
    # The separator is configurable; without one genres is a single value per item (all differ).
    single = read_item_features(tmp_path / "movies.csv", "movieId", ids, separator=None)
    assert "different value for every item" in single.ignored["genres"]


def test_save_item_features_reports_each_ignored_column_with_its_reason(tmp_path):
    from assets.features import save_item_features
    from recs_pipeline.graph.bipartite import InteractionGraph
    from recs_pipeline.infra.artifacts import ITEM_FEATURES, UrlArtifactStore
    from resources import LogSource

    (tmp_path / "items.csv").write_text("item_id,title,genres\na,Alpha,x|y\nb,Beta,y\n")
    empty = torch.zeros(0, dtype=torch.long)
    graph = InteractionGraph(["u"], ["a", "b"], empty, empty, empty, empty, empty)
    store = UrlArtifactStore(tmp_path / "artifacts")
    metadata = save_item_features(store, "2026-03-01", LogSource(landing_root=str(tmp_path)), graph)
    assert metadata["item_features"] == "genres=x, genres=y"
    assert set(metadata["ignored_feature_columns"].data) == {"title"}
    assert store.get(ITEM_FEATURES, "2026-03-01")["columns"] == ["genres=x", "genres=y"]
