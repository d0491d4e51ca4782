"""``benchmarks.gowalla``: the name :mod:`benchmarks.paper_split` had while Gowalla was the only
split it read; kept so that the commands in the docs and results keep working."""

from benchmarks.paper_split import *  # noqa: F403
from benchmarks.paper_split import main

if __name__ == "__main__":
    main()
