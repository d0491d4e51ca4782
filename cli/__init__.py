"""The ``recs`` command: one installed console script for every step of operating the pipeline
(``cli/main.py`` lists the subcommands; ``recs --help``).

The outermost layer: it may import ``assets``, ``resources`` and ``recs_pipeline``; nothing
imports it. Every subcommand first settles the environment (``cli/environment.py``): the
project config file and the Dagster instance's home, exported for every process it starts.
"""
