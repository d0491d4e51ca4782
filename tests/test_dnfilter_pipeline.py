"""dnfilter through the Dagster chain: selected as the model, and evaluated as a baseline."""

import dagster as dg

from tests.conftest import SMALL_LOG, make_resources
from tests.test_pipeline import DAY_1, RUN_CONFIG, connect, ingest, recall_at_20, run_chain


def test_dnfilter_is_selectable_served_and_evaluated_beside_gfcf(small_landing, tmp_path):
    """With filter settings in the run config (user exponent 0.3 instead of GF-CF's ½, the
    default; sharpening 0.5 instead of none)."""
    resources = make_resources(small_landing, tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    assert ingest(instance, resources, SMALL_LOG.start, SMALL_LOG.end).success
    ops = RUN_CONFIG["ops"]
    config = {
        "ops": {
            **ops,
            "trained_model": {
                "config": {
                    "model": "dnfilter",
                    "model_params": {"user_exponent": 0.3, "sharpen": 0.5},
                }
            },
            "model_evaluation": {"config": {"baselines": ["popularity", "gfcf", "dnfilter"]}},
        }
    }
    assert run_chain(instance, resources, DAY_1, config).success
    recall = recall_at_20(resources, DAY_1)
    with connect(resources) as con:
        served = con.execute(
            "SELECT count(DISTINCT user_id) FROM serving.recommendations"
            " WHERE as_of_date = ? AND model = 'dnfilter'",
            [DAY_1],
        ).fetchone()[0]
    assert {"dnfilter", "gfcf", "popularity"} <= set(recall)
    assert recall["dnfilter"] > recall["popularity"]
    assert served > 0
    event = instance.get_latest_materialization_event(dg.AssetKey("trained_model"))
    settings = event.asset_materialization.metadata["settings"].data
    assert settings["user_exponent"] == 0.3
    assert settings["sharpen"] == 0.5
