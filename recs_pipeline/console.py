"""What the terminal shows: summary lines instead of one line per day, progress bars only
where someone watches, and the few third-party warnings that cannot be fixed at their cause.

Progress bars (tqdm, on stderr) are drawn when ``RECS_PROGRESS`` is ``1`` (``python -m
cli.demo`` sets it when its stderr is a terminal), or, unset, when stderr is a terminal;
``RECS_PROGRESS=0`` turns them off. They never go through Dagster's event log.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import warnings
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


def silence_unfixable_warnings() -> None:
    """Filter, narrowly, the warnings this project cannot fix at their cause:

    - Dagster's BetaWarning/PreviewWarning for the beta parameters the code location relies on
      (``backfill_policy``, ``allow_nonexistent_upstream_partitions``), raised while the asset
      modules are imported;
    - torch's "Sparse CSR tensor support is in beta state", raised once per process by the
      first CSR tensor (no argument opts out of it).
    """
    import dagster as dg

    for category in (dg.BetaWarning, dg.PreviewWarning):
        warnings.filterwarnings("ignore", category=category, module=r"(dagster|assets)(\.|$)")
    # Raised wherever a CSR tensor is first built: our code, or torch.load rebuilding a saved
    # adjacency (module torch._utils); the message is specific enough to filter on alone.
    warnings.filterwarnings(
        "ignore", message="Sparse CSR tensor support is in beta state", category=UserWarning
    )
