"""`tract report` on the current state, as a user runs it: the same tables as the report a
lock snapshot gives, without loading the snapshot module (and pyarrow, 0.4 s of every report)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from services.demo.trial import write_demo_trial
from services.lock.snapshot import outcome_snapshot
from services.platform import Platform

TRACT = str(Path(sys.executable).parent / "tract")
# The console script's own entry, with a look at what it loaded once it is done.
REPORT = """
import sys
from services.cli import main
sys.argv = ["tract", "--home", sys.argv[1], "report", "--study", "DEMO", "--json"]
try:
    main()
finally:
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("pyarrow", "services"))
    print(json.dumps(loaded), file=sys.stderr)
"""


def test_report_of_the_current_state_loads_no_snapshot_module_nor_pyarrow(tmp_path: Path) -> None:
    files = write_demo_trial(tmp_path / "files")
    home = tmp_path / "home"
    subprocess.run(
        [
            TRACT,
            "--home",
            str(home),
            "ingest",
            "--study",
            "DEMO",
            "--quiet",
            *map(str, files.values()),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    done = subprocess.run(
        [sys.executable, "-c", "import json\n" + REPORT, str(home)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded = json.loads(done.stderr.strip().splitlines()[-1])
    assert "pyarrow" not in loaded and "services.lock.snapshot" not in loaded, loaded
    # The same report as the snapshot of the current state gives (the lock's report path).
    platform = Platform.embedded(home)
    result = platform.outcomes("DEMO")
    pathology = platform.records("pathology_report", "DEMO").collect()
    snapshot = outcome_snapshot(result, pathology).report(platform.rules.confidence_level)
    shown = json.loads(done.stdout)
    shown.pop("since_lock")  # the platform's addition on either path
    assert shown == json.loads(json.dumps(snapshot))
    assert snapshot["completers"]["n"] == 20
