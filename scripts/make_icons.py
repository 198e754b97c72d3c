#!/usr/bin/env python3
"""Regenerate assets/icon-<state>.png and assets/app-icon.png from broker/tray/icons.py.

The PNGs are for packaging and docs; the running tray draws its icons from code, so they
never drift from what is committed as long as this script is re-run after changing them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from broker.tray.menu import ICON_STATES  # noqa: E402
from broker.tray.icons import app_icon, icon_image  # noqa: E402


def write_icons(out: Path, size: int = 64) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for state in ICON_STATES:
        path = out / f"icon-{state}.png"
        icon_image(state, size).save(path, optimize=True)
        written.append(path)
    path = out / "app-icon.png"
    app_icon(256).save(path, optimize=True)
    written.append(path)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "assets", help="output directory")
    parser.add_argument("--size", type=int, default=64, help="tray icon size in pixels")
    args = parser.parse_args()
    for path in write_icons(args.out, args.size):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
