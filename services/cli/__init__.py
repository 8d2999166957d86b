"""``tract``, the command-line interface: every command module of it, above the platform.

``main.py`` holds the root group and the core commands and registers the others: locks and
snapshots (``lock.py``), site queries (``queries.py``), the web page's users and server
(``web.py``), exports (``export.py``), Kafka (``kafka.py``) and the adjudicator service
(``adjudicator.py``); ``console.py`` is what they share. Nothing below the CLI imports it.
"""

from services.cli.main import cli, main

__all__ = ["cli", "main"]
