"""Print the figures of the last reliability run as the Markdown table the README quotes.

`make reliability` runs tests/reliability (with a 60 s soak) and then this script. The tests
count each outcome as they observe it, before asserting, so a failed run still writes its
figures: this script prints them and exits non-zero when any count of a failure is not zero.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

FAILURES = ("bad inputs accepted", "bad inputs crashed", "bad inputs answered otherwise", "faults not survived",
            "secrets found")


def main(path: str = "reliability-figures.json") -> int:
    try:
        figures = json.loads(Path(path).read_text())
    except FileNotFoundError:
        print(f"{path} not found: run `make reliability` first", file=sys.stderr)
        return 1
    print("| Figure | Value |")
    print("|---|---|")
    for key, value in figures.items():
        shown = ", ".join(f"{k}: {v}" for k, v in value.items()) if isinstance(value, dict) else value
        print(f"| {key} | {shown} |")
    failed = {k: figures.get(k, 0) for k in FAILURES if figures.get(k, 0)}
    print()
    if failed:
        print("This run FAILED: " + ", ".join(f"{k} {v}" for k, v in failed.items()) + ".")
    else:
        print("Counts are outcomes as observed; any bad input accepted, crashed or answered otherwise, any "
              "fault not survived or any secret found fails the run (and shows above).")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
