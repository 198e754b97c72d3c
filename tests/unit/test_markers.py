"""A test's layer comes from its directory, so `-m "not integration"` really leaves them out.

Collection runs in a child pytest over the real tree: a file added to tests/integration
without a `pytestmark` line must still be deselected.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def collected_files(*args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q", *args, "tests"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode in (0, 5), done.stdout[-3000:] + done.stderr[-3000:]  # 5: nothing selected
    return {line.split("::", 1)[0] for line in done.stdout.splitlines() if "::" in line}


def test_every_integration_e2e_and_reliability_test_is_marked_by_its_directory() -> None:
    layered = {f"tests/{d}/{p.name}" for d in ("integration", "e2e", "reliability")
               for p in (ROOT / "tests" / d).glob("test_*.py")}
    unit = {f"tests/unit/{p.name}" for p in (ROOT / "tests" / "unit").glob("test_*.py")}
    assert len(layered) >= 10 and len(unit) >= 10

    fast = collected_files("-m", "not integration and not e2e and not reliability")
    assert fast & layered == set()
    assert unit <= fast  # unit tests are not swept out with them
