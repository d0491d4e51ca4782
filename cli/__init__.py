"""The commands: ``recs``, one installed console script for every step of operating the pipeline
(``cli/main.py`` lists the subcommands; ``recs --help``), and the in-process commands it calls.

- ``python -m cli.demo``: the demo (``make run``, ``recs demo``), or the chain on your own logs
  (``--own-logs``): runs created through the code location, executed in this process; its
  terminal shows one line per step (``cli/step_lines.py``);
- ``python -m cli.profile``: the log's profile and suggested window (``recs profile``);
- ``python -m cli.doctor``: the copies outside the warehouse checked against it (``recs doctor``).

Above the code location: it may import ``assets``, ``resources`` and ``recs_pipeline``; only the
benchmarks may import it (tests/test_layers.py). Every subcommand first settles the environment
(``cli/environment.py``): the project config file and the Dagster instance's home, exported for
every process it starts.
"""
