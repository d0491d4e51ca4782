"""The architecture, held as assertions over the source tree (issue 26): each file's imports,
read with ``ast`` (function-level imports included), nothing imported or run.

- The layers point down: benchmarks -> cli -> assets -> resources -> recs_pipeline. A layer
  imports only the layers below it; the core (``recs_pipeline/``) imports no Dagster at all.
- Dagster's private API (``dagster._``) is imported only in ``assets/platform/``, the folder
  re-checked on every Dagster upgrade, whose docstring lists every private module it names.
- ``assets/``'s root holds only asset modules, ``definitions.py`` and ``__init__.py``; what
  the assets declare with is in ``assets/lib/``, the machinery in ``assets/platform/``.
- A command's flag for a training setting is generated from the setting's declaration
  (``add_setting_flags``), never restated with argparse in ``benchmarks/`` or ``cli/``.
- Loading the code location, the ``recs`` command or the resources imports no torch (nor
  scipy, torch-geometric, numpy, polars): every Dagster process loads the code location, most
  never run a step; the step processes get them from the executor's preload.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Lowest first: each may import the ones before it, none after it.
LAYERS = ["recs_pipeline", "resources", "assets", "cli", "benchmarks"]
# Outside the stack: the docs generator and the tests read every layer; no layer imports them,
# except that the benchmarks start their servers with the tests' own harness (daemon_support,
# postgres_support), which is what the tests measure with.
OUTSIDE = ["docsgen", "tests"]
ALLOWED_OUTSIDE = {("benchmarks", "tests")}
PLATFORM = ROOT / "assets" / "platform"
LIB = ROOT / "assets" / "lib"
# The asset-defining decorators and the asset spec, by their Dagster names.
ASSET_DECORATORS = {"asset", "multi_asset", "graph_asset", "graph_multi_asset", "asset_check"}
# The project's own: dg.asset with the daily assets' shared arguments (assets/lib/catalog.py).
ASSET_DECORATORS |= {"daily_asset"}
ASSET_CALLS = {"AssetSpec"}


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


@cache
def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def imports(path: Path) -> list[tuple[str, int]]:
    """Every module ``path`` imports (absolute: ``from . import x`` resolved against its
    package), with the line, wherever the import statement is."""
    found = []
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.append((module, node.lineno))
            if module == "dagster":  # `from dagster import _core` names a private module too
                found += [
                    (f"dagster.{alias.name}", node.lineno)
                    for alias in node.names
                    if not alias.name.startswith("__")  # __version__ is public
                ]
    return found


def private_names(path: Path) -> set[str]:
    """The ``dagster._`` modules ``path`` imports or names in a string (a module path handed to
    ``importlib`` or an alembic lookup)."""
    names = {m for m, _ in imports(path) if m.startswith("dagster._")}
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if re.fullmatch(r"dagster\._[\w.]+", node.value):
                names.add(node.value)
    return names


def where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


def top_level(module: str) -> str:
    return module.split(".")[0]


def test_the_core_imports_no_dagster():
    wrong = [
        f"{where(path, line)} imports {module}"
        for path in python_files("recs_pipeline")
        for module, line in imports(path)
        if top_level(module) == "dagster" or top_level(module).startswith("dagster_")
    ]
    assert not wrong, "the core (recs_pipeline/) imports Dagster:\n" + "\n".join(wrong)


@pytest.mark.parametrize("layer", LAYERS + OUTSIDE)
def test_the_layers_point_down(layer):
    below = set(LAYERS[: LAYERS.index(layer)]) if layer in LAYERS else set(LAYERS)
    own = {layer}
    wrong = []
    for path in python_files(layer):
        for module, line in imports(path):
            target = top_level(module)
            if target in own or target not in LAYERS + OUTSIDE:
                continue  # itself, the standard library, a third-party package
            if target in below or (layer, target) in ALLOWED_OUTSIDE:
                continue
            if layer in OUTSIDE and target in LAYERS:
                continue  # the tests and the docs generator read every layer
            wrong.append(f"{where(path, line)} imports {module}")
    order = " -> ".join(reversed(LAYERS))
    assert not wrong, f"{layer}/ imports upward or sideways (the layers: {order}):\n" + "\n".join(
        wrong
    )


def test_dagsters_private_api_is_imported_only_in_the_platform_folder():
    """Every ``dagster._`` name of the code (the tests may reach into Dagster to check the
    deployment's files against its own schemas) lives in assets/platform/."""
    wrong = [
        f"{path.relative_to(ROOT)}: {', '.join(sorted(names))}"
        for path in python_files(*LAYERS, "docsgen")
        if not path.is_relative_to(PLATFORM) and (names := private_names(path))
    ]
    assert not wrong, (
        "dagster._ is Dagster's private API: use it only in assets/platform/ (re-checked on"
        " every Dagster upgrade):\n" + "\n".join(wrong)
    )


def test_the_platform_folder_lists_every_private_module_it_uses():
    """The upgrade checklist in assets/platform/__init__.py is the imports, no more, no less."""
    used = set().union(*(private_names(path) for path in python_files("assets/platform")))
    doc = ast.get_docstring(tree(PLATFORM / "__init__.py")) or ""
    listed = set(re.findall(r"``(dagster\._[\w.]+)``", doc))
    assert used == listed, (
        f"assets/platform/__init__.py lists {sorted(listed - used)}, which it does not use, and"
        f" misses {sorted(used - listed)}"
    )


def defines_assets(path: Path) -> bool:
    """Whether the module defines an asset (or an asset check) at its top level: a function
    under ``@asset``/``@dg.asset(...)`` and friends, or an ``AssetSpec``."""

    def name(node: ast.AST) -> str:
        node = node.func if isinstance(node, ast.Call) else node
        if isinstance(node, ast.Attribute):
            return node.attr
        return node.id if isinstance(node, ast.Name) else ""

    for node in tree(path).body:
        if isinstance(node, ast.FunctionDef):
            if any(name(d) in ASSET_DECORATORS for d in node.decorator_list):
                return True
        elif isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            if isinstance(node.value, ast.Call) and name(node.value) in ASSET_CALLS:
                return True
    return False


def test_the_asset_root_holds_only_asset_modules():
    root = ROOT / "assets"
    folders = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))}
    assert folders == {"lib", "platform"}, f"assets/ holds folders {sorted(folders)}"
    others = [
        path.name
        for path in sorted(root.glob("*.py"))
        if path.name not in ("__init__.py", "definitions.py") and not defines_assets(path)
    ]
    assert not others, (
        f"assets/ holds modules that define no asset: {', '.join(others)}. Declaration helpers"
        " go to assets/lib/, Dagster machinery to assets/platform/, commands to cli/."
    )
    assert [
        p.name for p in python_files("assets/lib", "assets/platform") if defines_assets(p)
    ] == []


def test_lib_and_platform_import_no_asset_module():
    """What the assets declare with, and what they run on, never depend on an asset, and the
    machinery never on the declarations (assets -> lib -> platform: a declaration may name the
    machinery's pool); only the steps' preload imports the code location, which is what it is
    for."""
    wrong = []
    for path in python_files("assets/lib", "assets/platform"):
        own = "assets." + path.parent.name
        allowed = ("assets.platform.",) if own == "assets.lib" else ()
        for module, line in imports(path):
            if top_level(module) != "assets" or module in ("assets", own):
                continue
            if module.startswith((own + ".", *allowed)):
                continue
            if path.name == "step_preload.py" and module == "assets.definitions":
                continue
            wrong.append(f"{where(path, line)} imports {module}")
    assert not wrong, "\n".join(wrong)


# What only a step needs, ~1 s of the code location's ~2.3 s import with torch alone (numpy
# and polars ~0.1 s each).
STEP_ONLY_PACKAGES = ("torch", "scipy", "torch_geometric", "numpy", "polars")


@pytest.mark.parametrize("module", ["assets.definitions", "cli.main", "resources"])
def test_loading_the_code_location_imports_no_torch(module):
    """Every run worker, code server (webserver, daemon) and ``dagster``/``recs`` command loads
    these; only a step computes with torch. Declarations (settings, artifact names, model
    names) are importable without it, and an asset body imports the step it runs
    (``assets/platform/step_preload.py`` loads those before the steps are forked)."""
    script = (
        f"import sys, {module}\n"
        f"print(sorted(m for m in {STEP_ONLY_PACKAGES!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]", f"import {module} imports {done.stdout.strip()}"


def test_infra_knows_nothing_of_the_stages_above_it():
    """``recs_pipeline/infra/`` is what every stage stands on: it imports, of the core, only
    itself and the two cross-cutting modules (``config``'s settings, ``schema``'s tables)."""
    allowed = ("recs_pipeline.infra", "recs_pipeline.config", "recs_pipeline.schema")
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in python_files("recs_pipeline/infra")
        for module, line in imports(path)
        if module.startswith("recs_pipeline") and not module.startswith(allowed)
    ]
    assert not found, found


def test_the_gate_is_declared_in_one_module():
    """The gate's metric, baseline and check name are assigned in ``evaluation/gate.py`` alone;
    everything else imports them."""
    gate = ROOT / "recs_pipeline" / "evaluation" / "gate.py"
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in python_files(*LAYERS)
        if path != gate
        for node in ast.walk(tree(path))
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name) and target.id.startswith("GATE_")
    ]
    assert not found, found


def readme_layout() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```", 2)[1]


def test_the_readmes_layout_matches_the_tree():
    """Every folder the README's layout names exists, and every package of the core and the
    code location is named there."""
    block = readme_layout()
    lines = block.splitlines()
    named = set()
    parent = ""
    for line in lines:
        words = line.split()
        if not words:
            continue
        if not line.startswith(" "):
            parent = words[0].rstrip("/")
            named.add(parent)
            named.update(w.rstrip("/") for w in words if w.endswith("/") and w != words[0])
        else:
            named.update(f"{parent}/{w.rstrip('/')}" for w in words if w.endswith("/"))
    missing_on_disk = sorted(name for name in named if not (ROOT / name).is_dir())
    assert not missing_on_disk, missing_on_disk
    packages = {
        str(init.parent.relative_to(ROOT))
        for top in ("recs_pipeline", "assets", "resources", "cli", "benchmarks")
        for init in (ROOT / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert not packages - named, sorted(packages - named)


def test_each_deployment_variable_is_named_in_one_module():
    """A ``RECS_*`` variable is spelled in one module of the project, the one that resolves it
    (``project_config.TOP_LEVEL``, ``resources/deployment.py``'s ``RESOURCE_ENV``, ...);
    everything else asks that module. (The benchmarks, like the tests, set variables for the
    processes they start, as a user would.)"""
    spelled: dict[str, set[str]] = {}
    for path in python_files("recs_pipeline", "resources", "assets", "cli"):
        for node in ast.walk(tree(path)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if re.fullmatch(r"RECS_[A-Z0-9_]+", node.value):
                    spelled.setdefault(node.value, set()).add(str(path.relative_to(ROOT)))
    repeated = {name: sorted(where) for name, where in spelled.items() if len(where) > 1}
    assert not repeated, repeated


def test_asset_modules_hold_no_sql():
    """The asset modules read, call the core, write through it and report: the warehouse's SQL
    is the core's (``recs_pipeline/steps/`` and below)."""
    sql = re.compile(r"\b(SELECT|INSERT|DELETE|UPDATE|CREATE)\b.*\b(FROM|INTO|TABLE|SET)\b", re.S)
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in sorted((ROOT / "assets").glob("*.py"))
        for node in ast.walk(tree(path))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and sql.search(node.value)
    ]
    assert not found, found


# Flags named after a TrainConfig setting that mean something else, with why (the comment at each
# flag says it too); every other such flag is generated from the setting's declaration.
NOT_TRAINING_SETTINGS = {
    ("benchmarks/eval_speed.py", "--dim"): "the random embeddings' dimension: nothing trains",
    ("benchmarks/eval_speed.py", "--threads"): "the ranking's torch threads: nothing trains",
    ("benchmarks/eval_speed.py", "--seed"): "the random embeddings' seed: nothing trains",
    ("benchmarks/history_ingest.py", "--seed"): "the generated export's seed",
    ("benchmarks/synthetic_split.py", "--seed"): "the generated split's seed",
    ("benchmarks/movielens.py", "--distill"): "several teachers, each an extra run",
    ("cli/demo.py", "--distill-listwise"): "the listwise regime: distill_listwise and more",
}


def literal_flags(path: Path) -> list[tuple[str, int]]:
    """The ``--flags`` spelled as literals in ``path``'s ``add_argument`` calls, with the line."""
    return [
        (arg.value, node.lineno)
        for node in ast.walk(tree(path))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "add_argument"
        for arg in node.args
        if isinstance(arg, ast.Constant)
        and isinstance(arg.value, str)
        and arg.value.startswith("--")
    ]


def test_commands_generate_their_training_flags_from_the_declarations():
    """A flag named after a :class:`TrainConfig` setting is made by ``add_setting_flags``
    (type, choices and description from the declaration), so that a command cannot drift from
    what the setting means or allows."""
    from recs_pipeline.training.config import TrainConfig

    settings = {field.name for field in dataclasses.fields(TrainConfig)}
    named = [
        (path, flag, line)
        for path in python_files("benchmarks", "cli")
        for flag, line in literal_flags(path)
        if flag[2:].replace("-", "_") in settings
    ]
    spelled = {(str(path.relative_to(ROOT)), flag) for path, flag, _ in named}
    assert spelled >= NOT_TRAINING_SETTINGS.keys(), (
        "NOT_TRAINING_SETTINGS lists flags no command spells any more:"
        f" {sorted(NOT_TRAINING_SETTINGS.keys() - spelled)}"
    )
    restated = [
        f"{where(path, line)}: {flag}"
        for path, flag, line in named
        if (str(path.relative_to(ROOT)), flag) not in NOT_TRAINING_SETTINGS
    ]
    assert not restated, (
        "these flags restate TrainConfig settings with argparse: generate them with"
        " recs_pipeline.training.cli.add_setting_flags (a dict of the command's defaults, read"
        " back with settings_from_args):\n" + "\n".join(restated)
    )
