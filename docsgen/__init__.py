"""The docs pages that code produces, never typed: ``python -m docsgen`` writes them.

- ``docs/configuration-reference.md``, from the declared settings
  (:mod:`docsgen.config_reference`): the run-config dataclasses' ``setting()`` declarations,
  the resources' fields, the project config file's keys and the ``RECS_*`` variables.
- The tables between ``<!-- generated: NAME -->`` and ``<!-- end generated -->`` in any page
  under ``docs/`` (:mod:`docsgen.tables`): benchmark tables from ``benchmarks/results/*.json``,
  each with one stamp (machine, commit, date) taken from its files, and the warehouse's
  columns from ``recs_pipeline/schema.py``. The prose around them is written by hand.

``tests/test_docs.py`` regenerates everything into a temporary folder and fails when a
committed page differs from what the code produces.
"""

import html
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RESULTS = ROOT / "benchmarks" / "results"
REGENERATE = "python -m docsgen"


_CODE_WITH_PIPE = re.compile(r"`([^`]*\|[^`]*)`")


def table_cell(text: object) -> str:
    """``text`` as one Markdown table cell: on one line, its pipes escaped. A code span holding a
    pipe becomes HTML (``<code>…&#124;…</code>``): ``\\|`` inside backticks shows as ``\\|`` on
    the site (Python-Markdown) though GitHub shows ``|``."""
    one_line = " ".join(str(text).split())
    one_line = _CODE_WITH_PIPE.sub(
        lambda m: "<code>" + html.escape(m.group(1)).replace("|", "&#124;") + "</code>", one_line
    )
    return one_line.replace("|", "\\|")
