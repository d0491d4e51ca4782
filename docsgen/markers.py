"""Generated blocks inside hand-written pages.

A page marks each block with an opening and a closing HTML comment (invisible on the site and
on GitHub)::

    <!-- generated: gowalla-models -->
    ...whatever python -m docsgen last wrote...
    <!-- end generated -->

:func:`fill` replaces everything between the two with the named table's current text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

OPEN = "<!-- generated: {name} -->"
CLOSE = "<!-- end generated -->"
_BLOCK = re.compile(
    r"(?P<open><!-- generated: (?P<name>[a-z0-9-]+) -->)\n.*?(?P<close><!-- end generated -->)",
    re.DOTALL,
)


class MarkerError(ValueError):
    """A page names a generated block no producer knows, or leaves one unclosed."""


def names(text: str) -> list[str]:
    """The generated blocks a page holds, in order."""
    return [m.group("name") for m in _BLOCK.finditer(text)]


def fill(text: str, producers: Mapping[str, Callable[[], str]], page: str = "") -> str:
    """``text`` with every generated block's content replaced by its producer's output."""
    opened = text.count("<!-- generated: ")
    if opened != len(names(text)):
        raise MarkerError(f"{page}: a '<!-- generated: NAME -->' without its '{CLOSE}'")

    def replace(match: re.Match) -> str:
        name = match.group("name")
        if name not in producers:
            raise MarkerError(
                f"{page}: no generated table {name!r}; known: {', '.join(sorted(producers))}"
            )
        body = producers[name]().strip("\n")
        return f"{match.group('open')}\n{body}\n{match.group('close')}"

    return _BLOCK.sub(replace, text)
