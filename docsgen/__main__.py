"""``python -m docsgen [--docs DIR]``: write the generated docs pages (see :mod:`docsgen`).

With ``--docs`` another copy of ``docs/`` is regenerated in place (the test regenerates a
temporary copy and compares it with the committed pages).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from docsgen import DOCS, REGENERATE


def generate(docs: Path) -> list[Path]:
    """Regenerate every generated page and block under ``docs``; the files that changed."""
    from docsgen import config_reference

    config_reference.clean_environment()  # before anything imports the settings modules
    from docsgen import markers
    from docsgen.tables import TABLES

    changed = []
    reference = docs / config_reference.PAGE
    text = config_reference.render()
    if not reference.exists() or reference.read_text() != text:
        reference.write_text(text)
        changed.append(reference)
    for page in sorted(docs.rglob("*.md")):
        old = page.read_text()
        if "<!-- generated: " not in old:
            continue
        new = markers.fill(old, TABLES, page=str(page.relative_to(docs)))
        if new != old:
            page.write_text(new)
            changed.append(page)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=REGENERATE, description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=DOCS, help="the docs folder (default: docs/)")
    args = parser.parse_args(argv)
    changed = generate(args.docs.resolve())
    for path in changed:
        print(f"wrote {path}")
    if not changed:
        print("every generated page is current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
