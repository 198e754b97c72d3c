"""The reliability suite's shared broker and the figures table it prints at the end.

Every test records each outcome as it observes it (`outcomes.observe`), before it asserts
anything: a bad input refused, accepted, crashed or answered otherwise; a fault survived or
not. A regression then shows as a number in the table as well as a failed test. The session
prints the table (and writes it as JSON for `make reliability` and the README) when the suite
ran, passed or not.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.harness import Broker, start_broker

FIGURES: dict[str, Any] = {"bad inputs tried": 0, "bad inputs refused": 0, "bad inputs accepted": 0,
                           "bad inputs crashed": 0, "bad inputs answered otherwise": 0,
                           "faults injected": 0, "faults survived": 0, "faults not survived": 0,
                           "secrets found": 0}


@pytest.fixture(scope="session")
def figures() -> dict[str, Any]:
    return FIGURES


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One broker for a module's table of attacks (each row is independent of the others)."""
    with start_broker(tmp_path_factory.mktemp("broker")) as b:
        b.sandbox_add("alpha")
        b.sandbox_add("beta")
        yield b
        leaks = b.leaks()
        FIGURES["secrets found"] += len(leaks)
        assert leaks == [], leaks


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES["bad inputs tried"] == 0 and "soak seconds" not in FIGURES:
        return  # the suite did not run
    out = Path(os.environ.get("RELIABILITY_FIGURES", "reliability-figures.json"))
    out.write_text(json.dumps(FIGURES, indent=2) + "\n")
    width = max(len(k) for k in FIGURES)
    terminalreporter.section("reliability figures")
    for key, value in FIGURES.items():
        shown = ", ".join(f"{k} {v}" for k, v in value.items()) if isinstance(value, dict) else value
        terminalreporter.write_line(f"{key:<{width}}  {shown}")
