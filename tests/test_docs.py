"""The documentation: the pages code produces are current, the site builds with no broken link,
and the README stays a short guide (no lab notebook: no dates, commit hashes or machine load in
its prose) whose links into docs/ resolve."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from markdown.extensions.toc import slugify

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
REGENERATE = "`.venv/bin/python -m docsgen` (or `make docs`)"


def _environment() -> dict:
    """No deployment of the caller's: the pages show the built-in defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["NO_MKDOCS_2_WARNING"] = "1"
    return env


def test_the_generated_pages_are_current(tmp_path):
    """The configuration reference and the benchmark tables, regenerated from the declared
    settings and benchmarks/results/*.json into a copy of docs/, equal the committed pages."""
    copy = tmp_path / "docs"
    shutil.copytree(DOCS, copy)
    done = subprocess.run(
        [sys.executable, "-m", "docsgen", "--docs", str(copy)],
        cwd=ROOT,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    stale = sorted(
        str(path.relative_to(copy))
        for path in copy.rglob("*")
        if path.is_file()
        and (
            not (DOCS / path.relative_to(copy)).exists()
            or path.read_bytes() != (DOCS / path.relative_to(copy)).read_bytes()
        )
    )
    assert not stale, (
        f"docs pages out of date with the code or benchmarks/results: {', '.join(stale)}."
        f" Regenerate them with {REGENERATE} and commit the result."
    )


def test_the_site_builds_strictly(tmp_path):
    """mkdocs build --strict: a broken link, a missing anchor or a page left out of the nav
    fails here (mkdocs.yml's validation settings)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(tmp_path / "site"),
        ],
        cwd=ROOT,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert (tmp_path / "site" / "index.html").exists()


def _prose(markdown: str) -> str:
    """The text a reader reads as prose: fenced code blocks and inline code removed."""
    without_blocks = re.sub(r"^```.*?^```", "", markdown, flags=re.DOTALL | re.MULTILINE)
    return re.sub(r"`[^`\n]*`", "", without_blocks)


DATE = re.compile(
    r"\b(19|20)\d\d-\d\d-\d\d\b"
    r"|\b(January|February|March|April|May|June|July|August|September|October|November|December)"
    r" (\d{1,2}, )?(19|20)\d\d\b"
)
COMMIT = re.compile(r"\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b")
ISSUE = re.compile(r"\bissue[- ]?#?\d+", re.IGNORECASE)
LOAD = re.compile(r"\bload (average|avg|≈|~|\d)", re.IGNORECASE)


def test_the_readme_is_a_short_guide_without_a_lab_notebook():
    text = README.read_text()
    assert len(text.splitlines()) < 450, "the README is a ten-minute guide: move detail to docs/"
    prose = _prose(text)
    for name, pattern in (
        ("a date", DATE),
        ("a commit hash", COMMIT),
        ("an issue number", ISSUE),
        ("machine load", LOAD),
    ):
        found = [m.group(0) for m in pattern.finditer(prose)]
        assert not found, f"README prose holds {name}: {found[:5]} (keep such detail in docs/)"
    # The two commands stay exactly these.
    assert "make run    # " in text and "make test   # " in text


def test_the_readmes_table_of_the_published_columns_matches_the_schema():
    """The README's short contract lists the published table's columns and types as
    recs_pipeline/schema.py declares them (the docs page's table is generated from it)."""
    from recs_pipeline.schema import columns

    text = README.read_text()
    section = text[text.index("## Reading the published table") :]
    rows = re.findall(r"^\| `(\w+)` \| (\w+) \|", section, flags=re.MULTILINE)
    declared = [(c.name, c.type) for c in columns("serving.recommendations")]
    assert rows == declared


def _anchors(markdown: str) -> set[str]:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", _without_code(markdown), flags=re.MULTILINE)
    return {slugify(re.sub(r"[`*]", "", h), "-") for h in headings}


def _without_code(markdown: str) -> str:
    return re.sub(r"^```.*?^```", "", markdown, flags=re.DOTALL | re.MULTILINE)


def test_the_readmes_links_resolve():
    """Every relative link of the README names a file that exists (docs/ pages included) and,
    where it names an anchor, a heading of that page."""
    text = _without_code(README.read_text())
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert any(link.startswith("docs/") for link in links)
    broken = []
    for link in links:
        if re.match(r"[a-z]+://", link):
            continue
        path, _, anchor = link.partition("#")
        target = README if not path else ROOT / path
        if not target.exists():
            broken.append(f"{link}: no file {path}")
        elif anchor and target.suffix == ".md" and anchor not in _anchors(target.read_text()):
            broken.append(f"{link}: no heading #{anchor} in {path or 'README.md'}")
    assert not broken, broken
