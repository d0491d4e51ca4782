"""Where a ``recs`` command finds its settings, set before anything imports the code location.

- The project config file (``recs.toml``, :mod:`recs_pipeline.infra.project_config`): ``RECS_CONFIG``
  when set (empty: none), else ``recs.toml`` in the current folder, else the project's. With
  none of those and no log or warehouse named in the environment, the commands that operate a
  deployment use the demo's (``{data root}/demo/recs.toml``, written by ``recs demo``), as
  ``make ui`` always did, and say so.
- The Dagster instance's home: ``DAGSTER_HOME`` when set, else the file's ``dagster_home``, else
  ``dagster_home/`` in the project. A home without ``dagster.yaml`` gets the project's (the
  pools, the run queue, the run launcher), so a run is never recorded on Dagster's defaults,
  and never in an ephemeral instance: ``recs`` always names a home.

Both are exported (``RECS_CONFIG``, ``DAGSTER_HOME``) so that every process a command starts
(the code server, run workers and their step processes, the daemon, the UI) reads the same
settings: no shell has to export anything.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

from recs_pipeline.infra import project_config
from recs_pipeline.infra.project_config import CONFIG_ENV, DEFAULT_CONFIG_FILE, PROJECT_ROOT

WORKSPACE = PROJECT_ROOT / "workspace.yaml"
HOME_TEMPLATE = PROJECT_ROOT / "dagster_home" / "dagster.yaml"
LOCAL_CONFIG = "recs.toml"
# Resource fields whose variable, set, names a deployment of one's own (as `make ui` checked).
DEPLOYMENT_FIELDS = (
    ("log_source", "landing_root"),
    ("warehouse", "database"),
    ("warehouse", "catalog"),
)


@dataclasses.dataclass(frozen=True)
class Environment:
    config: Path | None  # the project config file read (None: none)
    home: Path  # DAGSTER_HOME
    demo: bool  # the demo's config, chosen because no deployment is configured
    notes: tuple[str, ...]  # what was chosen that a user should hear about


def demo_config() -> Path:
    return (project_config.data_root() / "demo" / "recs.toml").resolve()


def _choose_config(use_demo: bool) -> tuple[Path | None, bool]:
    if CONFIG_ENV in os.environ:
        return project_config.config_path(), False
    local = Path.cwd() / LOCAL_CONFIG
    if local.is_file():
        return local.resolve(), False
    if DEFAULT_CONFIG_FILE.is_file():
        return DEFAULT_CONFIG_FILE, False
    from resources.deployment import RESOURCE_ENV  # Dagster's import, only when it is needed

    named = [RESOURCE_ENV[resource][field] for resource, field in DEPLOYMENT_FIELDS]
    if use_demo and not any(os.environ.get(var) for var in named):
        demo = demo_config()
        if demo.is_file():
            return demo, True
    return None, False


def configure(use_demo: bool = True) -> Environment:
    """Choose the project config file and the instance's home and export both (module
    docstring); raises :class:`recs_pipeline.infra.project_config.DeploymentSettingError` for a file
    that does not load. ``use_demo``: fall back to the demo's config (not for the demo itself,
    nor for the profile, which writes into the file)."""
    notes = []
    config, demo = _choose_config(use_demo)
    if config is not None:
        os.environ[CONFIG_ENV] = str(config)
    if demo:
        notes.append(f"no deployment configured: using the demo's settings ({config})")
    project_config.project_config()  # a file that does not load fails here, naming itself
    home = Path(project_config.setting("dagster_home")).expanduser().resolve()
    os.environ["DAGSTER_HOME"] = str(home)
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copyfile(HOME_TEMPLATE, home / "dagster.yaml")
        notes.append(f"new Dagster home {home}: the project's dagster.yaml copied into it")
    return Environment(config, home, demo, tuple(notes))


def prepare_instance(environment: Environment, log) -> None:
    """Create (or check) the instance's storage once, under the home's lock, before any Dagster
    process starts on it (assets/platform/instance.py says why); dead runs are reaped, each
    logged."""
    from assets.platform.instance import prepare_instance as prepare

    prepare(environment.home, log=log)
