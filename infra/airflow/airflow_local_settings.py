"""Airflow's local settings for tract: the scheduler imports what the DAGs' tasks run before it
starts its workers.

The LocalExecutor forks its workers from the scheduler, and each worker forks a new process
for every task: a task pays every import its parent did not make. Without this, each task of a
database lock imported Polars and the platform again (~0.6 s each) and the validate task Great
Expectations (4-5 s): a 5,000-subject lock's tasks took 9.2 s, and 4.5 s with these imports
made once in the scheduler (`bench/lock.py --standalone`). Nothing is run, only imported: no
Polars thread pool exists yet when the workers fork (it starts on a frame's first query) and
the allocator keeps no background threads.

Airflow imports ``airflow_local_settings`` from its path in every process it starts (here:
``PYTHONPATH`` names this folder); only the scheduler, whose children run the tasks, preloads.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

if sys.argv[1:2] == ["scheduler"]:
    # the platform first: its package sets Polars' allocator before Polars loads
    for module in ("services.tasks", "services.platform", "services.lock.validation"):
        importlib.import_module(module)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # as services.lock.gate starts it
    importlib.import_module("great_expectations")
    logging.getLogger(__name__).warning(
        "tract: the DAGs' imports preloaded in the scheduler (its task processes inherit them)"
    )
