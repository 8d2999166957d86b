"""The DuckDB baseline of bench/files_to_outcomes.py: bench/primary_rules.sql over a folder of
the six transfer files, printing the patients per category.

    .venv/bin/python bench/duckdb_primary.py DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb

SQL = Path(__file__).with_name("primary_rules.sql")


def main() -> None:
    folder = Path(sys.argv[1]).resolve()
    script = SQL.read_text().replace("${DIR}", str(folder))
    for category, patients in duckdb.connect().execute(script).fetchall():
        print(f"{category} {patients}")


if __name__ == "__main__":
    main()
