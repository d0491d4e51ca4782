"""Imported by test_executor's fork-server check: records that (and when) it was imported."""

import os
import time
from pathlib import Path

Path(os.environ["PRELOAD_PROBE"]).write_text(f"{os.getpid()} {time.time()}")
