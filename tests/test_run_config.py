"""Run config: the Dagster run-config classes generated from the core dataclasses (one source
of truth), choices that Dagster itself rejects at launch, and the whole run's config checked
by its first step."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
from pathlib import Path

import dagster as dg
import pytest

import assets.lib.settings as settings
from assets.definitions import ALL_ASSETS, defs
from recs_pipeline.graph.negatives import HardNegativeConfig
from recs_pipeline.infra.project_config import section
from recs_pipeline.models import model_names


def test_every_settings_class_mirrors_its_core_dataclasses():
    """Parity: every core field is a run-config field (under its one declared name) with the
    same default, description and choices, or is declared internal with a reason; the run
    config has no field that is neither a core field nor a declared Dagster-only extra."""
    op_of = {cls: op for op, cls in settings.OPS.items()}
    for settings_cls, cores in settings.SETTINGS.items():
        fields = settings_cls.model_fields
        expected = set(settings.EXTRAS.get(settings_cls, {}))
        for core in cores:
            renamed = settings.RENAMED.get(core, {})
            internal = settings.INTERNAL.get(core, {})
            for field in dataclasses.fields(core):
                if field.name in internal:
                    assert internal[field.name].strip(), (core, field.name)
                    assert renamed.get(field.name, field.name) not in fields
                    continue
                name = renamed.get(field.name, field.name)
                expected.add(name)
                assert name in fields, (settings_cls, name)
                run_field = fields[name]
                # The default is the core's, unset where UNSET says what unset means, or the
                # deployment's where its project config sets one (the tests' own, recs.toml).
                default = None if field.name in settings.UNSET.get(core, {}) else field.default
                default = section("ops", op_of[settings_cls]).get(name, default)
                if isinstance(default, list):
                    default = tuple(default)
                run_default = run_field.default
                if isinstance(default, tuple):
                    run_default = tuple(run_default)
                assert run_default == default, (settings_cls, name)
                assert run_field.description.startswith(field.metadata["doc"]), name
                choices = field.metadata.get("choices")
                if choices:
                    assert settings.choices_of(run_field.annotation) == tuple(choices), name
        assert set(fields) == expected, settings_cls


def test_renames_are_declared_once_and_map_to_core_fields():
    for core, renamed in settings.RENAMED.items():
        names = {f.name for f in dataclasses.fields(core)}
        assert set(renamed) <= names, core
    train = settings.TrainSettings(learning_rate=0.5, time_budget_minutes=3.0).to_core()
    assert (train.lr, train.time_budget_minutes) == (0.5, 3.0)
    publish = settings.PublishSettings(index="ivf", ivf_probes=7).publish_index()
    assert (publish.kind, publish.probes) == ("ivf", 7)


def daily_job() -> dg.JobDefinition:
    return defs.resolve_job_def("daily_recommendations")


def op_config(op: str, config: dict) -> dict:
    return {"ops": {op: {"config": config}}}


@pytest.mark.parametrize(
    ("op", "config"),
    [
        ("trained_model", {"model": "lightgcnx"}),
        ("trained_model", {"loss": "hinge"}),
        ("trained_model", {"distill": "mf"}),
        ("hard_negatives", {"method": "bfs"}),
        ("recommendations", {"index": "annoy"}),
        ("model_evaluation", {"baselines": ["lightgcn"]}),
    ],
)
def test_dagster_rejects_an_unknown_choice_at_launch(op, config):
    with pytest.raises(dg.DagsterInvalidConfigError):
        dg.validate_run_config(daily_job(), op_config(op, config))


def test_launchpad_lists_the_model_choices():
    ops = daily_job().run_config_schema.config_type.fields["ops"].config_type.fields
    model = ops["trained_model"].config_type.fields["config"].config_type.fields["model"]
    # Optional: unset, model_selection's champion serves.
    assert model.config_type.kind.name == "NONEABLE"
    choices = model.config_type.inner_type
    assert choices.kind.name == "ENUM"
    assert [v.config_value for v in choices.enum_values] == model_names()
    dg.validate_run_config(daily_job(), op_config("trained_model", {"model": "gfcf"}))


def test_run_config_check_names_the_op_and_setting():
    run_config = {
        "ops": {
            "interaction_split": {"config": {"window_days": 14}},
            "trained_model": {"config": {"batch_size": 0}},
        }
    }
    with pytest.raises(dg.Failure, match=r"trained_model.*batch_size"):
        settings.check_settings(run_config)
    with pytest.raises(dg.Failure, match=r"hard_negatives.*band_start.*band_end"):
        settings.check_settings(op_config("hard_negatives", {"band_start": 0.5, "band_end": 0.2}))
    with pytest.raises(dg.Failure, match=r"trained_model.*learning_rate"):
        settings.check_settings(op_config("trained_model", {"learning_rate": -1.0}))
    with pytest.raises(dg.Failure, match=r"trained_model.*batch_size"):
        settings.check_settings(op_config("trained_model", {"batch_size": None}))
    # Dagster lets null through at launch (it makes every field with a default Noneable).
    dg.validate_run_config(daily_job(), op_config("trained_model", {"batch_size": None}))
    settings.check_settings({"ops": {}})
    settings.check_settings(op_config("trained_model", {"epochs": 3}))


def test_every_asset_checks_the_whole_runs_config_first():
    for asset in ALL_ASSETS:
        source = textwrap.dedent(inspect.getsource(asset.op.compute_fn.decorated_fn))
        statements = ast.parse(source).body[0].body
        if isinstance(statements[0], ast.Expr) and isinstance(statements[0].value, ast.Constant):
            statements = statements[1:]  # the docstring
        assert ast.unparse(statements[0]) == "check_run_config(context)", asset.key


def test_the_configuration_reference_documents_every_run_config_setting():
    """docs/configuration-reference.md (generated by `python -m docsgen`; tests/test_docs.py
    checks it is current) has a row for every run-config setting of every op."""
    from assets.lib.settings import IngestSettings

    page = (Path(__file__).resolve().parents[1] / "docs" / "configuration-reference.md").read_text()
    sections = {
        chunk.split("`", 1)[0]: chunk for chunk in page.split("\n### `")[1:]
    }  # op name -> its section
    for op, settings_cls in [*settings.OPS.items(), ("raw_interactions", IngestSettings)]:
        for name in settings_cls.model_fields:
            assert f"| `{name}` |" in sections[op], (op, name)


def daily_job_from_module() -> dg.JobDefinition:
    from assets.definitions import defs as location

    return location.resolve_job_def("daily_recommendations")


def test_a_bad_setting_fails_the_first_step_under_the_jobs_own_executor(tmp_path, monkeypatch):
    """The daily job as the schedule or the UI launches it (the forkserver executor, each step
    its own process): the first step, raw_interactions, fails on trained_model's setting and
    nothing opens the warehouse."""
    (tmp_path / "landing").mkdir()
    monkeypatch.setenv("RECS_WAREHOUSE", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.setenv("RECS_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("RECS_LANDING_ROOT", str(tmp_path / "landing"))
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        result = dg.execute_job(
            dg.reconstructable(daily_job_from_module),
            instance,
            run_config=op_config("trained_model", {"batch_size": 0}),
            tags={"dagster/partition": "2026-03-10"},
            raise_on_error=False,
        )
        failures = [event for event in result.all_events if event.is_step_failure]
        assert not result.success
        assert [event.step_key for event in failures] == ["raw_interactions"]
        message = failures[0].event_specific_data.error.to_string()
        assert "ops.trained_model.config.batch_size" in message
        assert result.get_asset_materialization_events() == []
    assert not (tmp_path / "warehouse.duckdb").exists()
    assert not (tmp_path / "artifacts").exists()


def test_an_undeclared_or_clashing_core_field_cannot_reach_the_run_config():
    from recs_pipeline.config import setting

    @dataclasses.dataclass(frozen=True)
    class Undeclared:
        size: int = 3

    @dataclasses.dataclass(frozen=True)
    class Seeded:
        seed: int = setting(0, "A seed.")

    with pytest.raises(TypeError, match="Undeclared.size is not declared"):
        settings.derived(Undeclared)
    with pytest.raises(TypeError, match="'seed' is taken twice"):
        settings.derived(Seeded, HardNegativeConfig)
