"""The two commands of cli.demo (issue 12, finding 1): the demo writes only under its own
data root, ``--own-logs`` runs the chain on the configured logs, and neither writes into the
landing root."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.test_project_config import RATINGS_ENV, fresh_process, write_ratings


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root``, with each file's sha256."""
    return {
        str(path.relative_to(root)): (
            hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        )
        for path in sorted(root.rglob("*"))
    }


TINY_DEMO = ("--days", "4", "--users", "200", "--items", "100", "--events-per-day", "300")


def test_demo_and_own_logs_leave_the_landing_root_byte_for_byte_unchanged(tmp_path):
    landing = tmp_path / "my-export"
    write_ratings(landing)
    (landing / "items.csv").write_text("movieId,title\n100,Heat\n")
    before = snapshot(landing)
    config = tmp_path / "recs.toml"
    config.write_text(
        'partition_start = "2016-01-01"\n[ops.interaction_split]\nwindow_days = 5\ntest_days = 1\n'
    )
    env = RATINGS_ENV | {
        "RECS_CONFIG": str(config),
        "RECS_LANDING_ROOT": str(landing),
        "RECS_DATA_ROOT": str(tmp_path / "data"),
        "DAGSTER_HOME": str(tmp_path / "home"),
    }
    (tmp_path / "home").mkdir()

    both = (
        "import sys\n"
        "from cli.demo import main\n"
        f"print('demo exit', main({list(TINY_DEMO)!r} + ['--model', 'popularity']), flush=True)\n"
        "print('own exit', main(['--own-logs', '--to', '2016-01-10', '--model', 'popularity']))\n"
        "print('again exit', main(['--own-logs', '--to', '2016-01-10', '--model', 'popularity']))\n"
    )
    ran = fresh_process(both, env | {"RECS_WAREHOUSE": str(tmp_path / "mine.duckdb")})
    out = ran.stdout + ran.stderr
    assert snapshot(landing) == before, out
    demo, own = out.split("demo exit")
    own, again = own.split("own exit")
    assert "chain for" in demo, out
    demo_root = tmp_path / "data" / "demo"
    assert (demo_root / "landing" / "items.csv").exists()
    assert (demo_root / "warehouse.duckdb").exists()
    assert not (tmp_path / "data" / "warehouse.duckdb").exists()
    assert "ingested 5 days" in own, out
    assert "chain for 2016-01-10" in own, out
    assert (tmp_path / "mine.duckdb").exists()
    # A second run over the unchanged export reads nothing again (issue 28).
    assert "every day is ingested from its files as they are" in again, out
    assert "ingested 5 days" not in again and "chain for 2016-01-10" in again, out


def test_the_demo_refuses_a_data_root_overlapping_the_landing_root(tmp_path):
    landing = tmp_path / "data"
    landing.mkdir()
    (landing / "keep.csv").write_text("a\n")
    env = {
        "RECS_LANDING_ROOT": str(landing),
        "RECS_DATA_ROOT": str(landing),
        "RECS_CONFIG": "",
        "DAGSTER_HOME": str(tmp_path / "home"),
    }
    ran = fresh_process("", env, "-m", "cli.demo", "--days", "3")
    assert ran.returncode == 2
    assert "never writes into a landing root" in ran.stderr
    assert snapshot(landing) == {"keep.csv": hashlib.sha256(b"a\n").hexdigest()}


def test_the_command_lines_training_settings_are_valid_trained_model_settings(capsys):
    from cli.demo import _train_overrides, parse_args
    from recs_pipeline.training import TrainConfig

    assert _train_overrides(parse_args([])) == {}
    overrides = _train_overrides(parse_args(["--epochs", "3", "--distill", "dnfilter"]))
    assert overrides == {"epochs": 3, "distill": "dnfilter", "distill_ranked": True}
    config = TrainConfig(**overrides)
    assert (config.distill, config.distill_ranked, config.epochs) == ("dnfilter", True, 3)
    listwise = parse_args(["--distill", "dnfilter", "--distill-listwise"])
    config = TrainConfig(**_train_overrides(listwise))
    assert (config.distill_listwise, config.distill_weight, config.loss) == (True, 4.0, "softmax")
    with pytest.raises(ValueError, match="distill_listwise"):
        TrainConfig(**_train_overrides(parse_args(["--distill-listwise"])))
    flags = ["--model", "dnfilter", "--param", "sharpen=0", "--param", "k=1024"]
    overrides = _train_overrides(parse_args(flags))
    assert overrides == {"model": "dnfilter", "model_params": {"sharpen": 0, "k": 1024}}
    assert TrainConfig(**overrides).model_params == {"k": 1024, "sharpen": 0.0}
    teacher = ["--distill", "dnfilter", "--distill-param", "user_exponent=0.3"]
    assert TrainConfig(**_train_overrides(parse_args(teacher))).distill_params == {
        "user_exponent": 0.3
    }
    # The --filter-* flags of earlier versions still work, with a warning: the model's setting
    # for a training-free model, else the teacher's.
    old = ["--model", "dnfilter", "--filter-sharpen", "0", "--filter-ideal-k", "1024"]
    assert _train_overrides(parse_args(old)) == {
        "model": "dnfilter",
        "model_params": {"sharpen": 0.0, "k": 1024},
    }
    old = ["--distill", "dnfilter", "--filter-user-exponent", "0.3"]
    assert _train_overrides(parse_args(old))["distill_params"] == {"user_exponent": 0.3}
    assert "--filter-user-exponent is deprecated: use --param user_exponent=0.3" in (
        capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    shown = capsys.readouterr().out
    assert "--param NAME=VALUE" in shown and "--filter-sharpen" not in shown  # the alias hidden
    with pytest.raises(ValueError, match=r"dnfilter has no parameter 'sharpness'"):
        TrainConfig(
            **_train_overrides(parse_args(["--model", "dnfilter", "--param", "sharpness=1"]))
        )
    with pytest.raises(SystemExit):
        parse_args(["--param", "sharpen"])  # no value
