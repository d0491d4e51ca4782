"""What the catalog and launchpad show as text: plain text or Markdown, never RST/Sphinx."""

import re

from assets.definitions import defs

# RST literals (``x``) and Sphinx roles (:meth:`x`) show verbatim in Dagster's UI.
RST = re.compile(r"``|:(meth|func|class|data|mod|attr|ref):`")


def config_descriptions(config_type, path=()):
    """(path, description) of a config type and every field in it, recursively."""
    yield path, getattr(config_type, "description", None) or ""
    for name, field in (getattr(config_type, "fields", None) or {}).items():
        yield (*path, name), field.description or ""
        yield from config_descriptions(field.config_type, (*path, name))
    inner = getattr(config_type, "inner_type", None) or getattr(config_type, "of_type", None)
    if inner is not None:
        yield from config_descriptions(inner, path)


def test_no_rst_markup_in_asset_check_or_config_descriptions():
    repo = defs.get_repository_def()
    texts = {}
    for node in repo.asset_graph.asset_nodes:
        key = node.key
        texts[f"asset {key.to_user_string()}"] = node.description or ""
    for key in repo.asset_graph.asset_check_keys:
        spec = repo.asset_graph.get_check_spec(key)
        texts[f"check {key.name}"] = spec.description or ""
    for job in repo.get_all_jobs():
        for path, text in config_descriptions(job.run_config_schema.config_type):
            texts[f"config {job.name}: {'.'.join(path)}"] = text
    assert any(t.startswith("config daily_recommendations: ops.trained_model") for t in texts)
    marked = {where: text for where, text in texts.items() if RST.search(text)}
    assert not marked, "\n".join(f"{w}: {t}" for w, t in marked.items())
