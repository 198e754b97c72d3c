"""Print the figures of the last reliability run as the Markdown table the README quotes.

`make reliability` runs tests/reliability (with a 60 s soak) and then this script.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


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
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
