"""The reliability table prints outcomes as counted and fails on any count of a failure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.reliability.outcomes import answer_outcome, observe

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "reliability_table.py"
ZERO = {"bad inputs tried": 0, "bad inputs refused": 0, "bad inputs accepted": 0, "bad inputs crashed": 0,
        "bad inputs answered otherwise": 0, "faults injected": 0, "faults survived": 0, "faults not survived": 0,
        "secrets found": 0}


def table(tmp_path: Path, figures: dict) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "figures.json"
    path.write_text(json.dumps(figures))
    return subprocess.run([sys.executable, str(SCRIPT), str(path)], capture_output=True, text=True, timeout=30)


def test_outcomes_are_counted_as_observed_and_an_acceptance_shows_and_fails(tmp_path: Path) -> None:
    figures = dict(ZERO)
    for status, forwarded in ((400, False), (200, False), (500, False), (0, False), (403, False), (400, True)):
        observe(figures, answer_outcome(status, {400}, forwarded=forwarded))
    observe(figures, "survived", 3)
    observe(figures, "not survived")
    assert (figures["bad inputs tried"], figures["bad inputs refused"], figures["bad inputs accepted"],
            figures["bad inputs crashed"], figures["bad inputs answered otherwise"]) == (6, 1, 2, 2, 1)
    assert (figures["faults injected"], figures["faults survived"], figures["faults not survived"]) == (4, 3, 1)
    done = table(tmp_path, figures)
    assert done.returncode == 1 and "| bad inputs accepted | 2 |" in done.stdout
    assert "This run FAILED: bad inputs accepted 2, bad inputs crashed 2" in done.stdout


def test_a_clean_run_says_what_would_have_failed_it(tmp_path: Path) -> None:
    done = table(tmp_path, {**ZERO, "bad inputs tried": 5, "bad inputs refused": 5})
    assert done.returncode == 0 and "| bad inputs refused | 5 |" in done.stdout
    assert "any bad input accepted" in done.stdout
