"""What the terminal shows: summary lines instead of one line per day, and progress bars only
where someone watches. (The third-party warnings that cannot be fixed at their cause are
filtered where the code location loads, ``assets/__init__.py``: one of them is Dagster's, and
the core imports no Dagster.)

Progress bars (tqdm, on stderr) are drawn when ``RECS_PROGRESS`` is ``1`` (``python -m
cli.demo`` sets it when its stderr is a terminal), or, unset, when stderr is a terminal;
``RECS_PROGRESS=0`` turns them off. They never go through Dagster's event log.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Sequence
from typing import Any


def days_summary(what: str, days: Sequence[dt.date | str], total: int, first: int = 5) -> str:
    """One line for a set of days, e.g. ``no landing files for 2,037 of 2,100 days:
    2011-01-01, 2011-01-02, … (first 5)``."""
    shown = [d if isinstance(d, str) else d.isoformat() for d in list(days)[:first]]
    more = f" … (first {first})" if len(days) > first else ""
    return f"{what} for {len(days):,} of {total:,} days: {', '.join(shown)}{more}"


def progress_enabled() -> bool:
    setting = os.environ.get("RECS_PROGRESS")
    if setting is not None:
        return setting == "1"
    return sys.stderr.isatty()


class _NoBar:
    def update(self, n: int = 1) -> None: ...

    def set_postfix_str(self, text: str) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None: ...


def progress_bar(total: int, desc: str, unit: str) -> Any:
    """A tqdm bar on stderr where progress is shown (see the module docstring), else a no-op
    with the same ``update``/``set_postfix_str``/``close`` methods."""
    if not progress_enabled():
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)
