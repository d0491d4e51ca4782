"""Every setting of the core config dataclasses is range-checked when the config is built,
with an error naming the setting."""

from __future__ import annotations

import pytest

from recs_pipeline.data.split import SplitConfig
from recs_pipeline.evaluation.config import EvaluationConfig
from recs_pipeline.graph.negatives import HardNegativeConfig
from recs_pipeline.models import model_names
from recs_pipeline.serving.recommend import PublishConfig, PublishIndex
from recs_pipeline.training import TrainConfig

BAD = [
    # (core class, bad values, the setting the error must name)
    (TrainConfig, {"batch_size": 0}, "batch_size"),
    (TrainConfig, {"layers": -1}, "layers"),
    (TrainConfig, {"eval_every": 0}, "eval_every"),
    (TrainConfig, {"temperature": 0.0}, "temperature"),
    (TrainConfig, {"epochs": 0}, "epochs"),
    (TrainConfig, {"dim": 0}, "dim"),
    (TrainConfig, {"patience": 0}, "patience"),
    (TrainConfig, {"val_fraction": 1.0}, "val_fraction"),
    (TrainConfig, {"plateau_decay": 0.0}, "plateau_decay"),
    (TrainConfig, {"lr": float("nan")}, "lr"),
    (TrainConfig, {"max_steps_per_epoch": 0}, "max_steps_per_epoch"),
    (TrainConfig, {"time_budget_minutes": -1.0}, "time_budget_minutes"),
    (TrainConfig, {"distill": "lightgcn"}, "distill"),
    (TrainConfig, {"layers": 2, "alphas": (0.5, 0.5)}, "alphas"),
    (HardNegativeConfig, {"pool_size": 0}, "pool_size"),
    (HardNegativeConfig, {"restart": 1.5}, "restart"),
    (HardNegativeConfig, {"band_start": 0.3, "band_end": 0.1}, "band_start"),
    (HardNegativeConfig, {"band_end": 1.5}, "band_end"),
    (HardNegativeConfig, {"walks": 0}, "walks"),
    (SplitConfig, {"window_days": 2, "test_days": 2}, "test_days"),
    (EvaluationConfig, {"max_users": 0}, "max_users"),
    (EvaluationConfig, {"baselines": ("lightgcn",)}, "baselines"),
    (PublishConfig, {"k": 0}, "k"),
    (PublishIndex, {"probes": 0}, "probes"),
    (PublishIndex, {"kind": "annoy"}, "kind"),
]


@pytest.mark.parametrize(("core", "values", "name"), BAD, ids=[str(b[1]) for b in BAD])
def test_core_config_rejects_out_of_range_settings_naming_them(core, values, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b") as error:
        core(**values)
    assert getattr(error.value, "fields", None) and name in error.value.fields


def test_unknown_model_lists_every_model_training_free_included():
    with pytest.raises(ValueError, match="unknown model") as error:
        TrainConfig(model="lightgcnx")
    for name in model_names():
        assert name in str(error.value)
    assert {"popularity", "gfcf"} <= set(model_names())
    TrainConfig(model="gfcf")  # a training-free model is a valid choice of the run config
