"""Airflow's local settings for tract: the scheduler imports what the DAGs' tasks run before it
starts its workers.

The LocalExecutor forks its workers from the scheduler, and each worker forks a new process
for every task: a task pays every import its parent did not make. Without this, each task of a
database lock imported Polars and the platform again (~0.6 s each) and the validate task Great
Expectations (4-5 s): a 5,000-subject lock's tasks took 9.2 s, and 4.2-4.8 s with these imports
made once in the scheduler (`bench/lock.py --standalone`). Nothing is run, only imported and
parsed (:data:`PARSED`): Polars' thread pool does not exist yet when the workers fork (it
starts on a frame's first query). The imports do start a few threads (the allocators'
background purging, Polars' spill clean-up), which a fork does not copy: jemalloc's fork
handlers restart its own on demand, and the lock's tasks ran in every run here (the REST test
takes its lock through a scheduler set up so). A task that hangs all the same ends its
process after TRACT_TASK_LIMIT_MINUTES, its threads' stacks in its log (services/watchdog.py).

Airflow imports ``airflow_local_settings`` from its path in every process it starts (here:
``PYTHONPATH`` names this folder); only the scheduler, whose children run the tasks, preloads.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

PLATFORM = (
    "services.tasks",
    "services.platform",
    "services.lock.lock",
    "services.lock.validation",
    "services.audit",
    "services.users",
)
"""What the tasks import, the platform's package first: it sets Polars' allocator before
Polars loads."""
OPTIONAL = ("services.store.s3", "great_expectations")
"""Imported when installed (the s3 and airflow extras): MinIO's client for every task that
opens the store, GX for the validate task."""
DAG_FILES = (
    "airflow.sdk.definitions.decorators",
    "airflow.sdk.definitions.retry_policy",
    "airflow.providers.common.io.assets.file",
)
"""What parsing the DAG files imports beyond what a scheduler has: each task parses its DAG's
file again (34 ms a task without these, 8 ms with them)."""
PARSED = (("schemas", "contracts"), ("services.dictionary", "dictionary_source"))
"""The files that are part of the code, parsed once here as the modules are imported: the event
contracts (every task reads the log through them: ~0.02 s a task) and the data dictionary.
The rule set is not: it is read where each task runs, so a new rule set needs no restart."""

if sys.argv[1:2] == ["scheduler"]:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # as services.lock.gate starts it
    for module in PLATFORM:
        importlib.import_module(module)
    for module in OPTIONAL + DAG_FILES:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            logging.getLogger(__name__).warning("tract: %s not preloaded (%s)", module, exc)
    for module, function in PARSED:
        getattr(importlib.import_module(module), function)()
    logging.getLogger(__name__).warning(
        "tract: the DAGs' imports preloaded in the scheduler (its task processes inherit them)"
    )
