"""Run config: the Dagster run-config classes generated from the core dataclasses (one source
of truth) and choices that Dagster itself rejects at launch."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import dagster as dg
import pytest

import assets.settings as settings
from assets.definitions import defs
from recs_pipeline.models import model_names


def test_every_settings_class_mirrors_its_core_dataclasses():
    """Parity: every core field is a run-config field (under its one declared name) with the
    same default, description and choices, or is declared internal with a reason; the run
    config has no field that is neither a core field nor a declared Dagster-only extra."""
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
                default = field.default
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
    assert model.config_type.kind.name == "ENUM"
    assert [v.config_value for v in model.config_type.enum_values] == model_names()
    dg.validate_run_config(daily_job(), op_config("trained_model", {"model": "gfcf"}))


def test_readme_documents_every_run_config_setting():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Run config (launchpad)") :]
    rows = {
        line.split("|")[1].strip(" `"): line
        for line in section.splitlines()
        if line.startswith("| `")
    }
    for op, settings_cls in settings.OPS.items():
        for name in settings_cls.model_fields:
            assert f"`{name}`" in rows[op], (op, name)
