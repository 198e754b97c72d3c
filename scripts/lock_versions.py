"""Compare the packages installed in this interpreter's environment with requirements.lock.

`python scripts/lock_versions.py check requirements.lock` exits non-zero unless every package
the lock names for this platform is installed at its locked version inside this environment
(a venv built with --system-site-packages also sees Debian's packages, which must not stand in
for a locked one). `report` prints the packages whose versions differ from the lock (for the
run against the newest releases) and always exits 0.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name


@dataclass(frozen=True)
class Pin:
    name: str
    version: str


def locked_pins(text: str) -> list[Pin]:
    """The `name==version ; marker` lines of a hashed lock that apply to this interpreter."""
    pins = []
    for line in text.splitlines():
        if not line or line[0] in " #-":
            continue
        spec, _, marker = line.rstrip(" \\").partition(";")
        name, _, version = spec.strip().partition("==")
        if marker.strip() and not Marker(marker.strip()).evaluate():
            continue
        pins.append(Pin(canonicalize_name(name), version.strip()))
    return pins


def installed() -> dict[str, metadata.Distribution]:
    """The first distribution of each name on sys.path: the one an import would get."""
    found: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions():
        found.setdefault(canonicalize_name(dist.metadata["Name"]), dist)
    return found


def inside_environment(dist: metadata.Distribution) -> bool:
    where = Path(str(dist.locate_file(""))).resolve()
    return where.is_relative_to(Path(sys.prefix).resolve())


def differences(pins: list[Pin], dists: dict[str, metadata.Distribution], *,
                require_inside: bool) -> list[str]:
    lines = []
    for pin in pins:
        dist = dists.get(pin.name)
        if dist is None:
            lines.append(f"{pin.name}: locked {pin.version}, not installed")
        elif dist.version != pin.version:
            lines.append(f"{pin.name}: locked {pin.version}, installed {dist.version}")
        elif require_inside and not inside_environment(dist):
            lines.append(f"{pin.name}: {pin.version} comes from {dist.locate_file('')}, "
                         f"outside {sys.prefix}")
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("check", "report"):
        print("usage: lock_versions.py check|report LOCKFILE", file=sys.stderr)
        return 2
    mode, lock = argv
    pins = locked_pins(Path(lock).read_text())
    lines = differences(pins, installed(), require_inside=mode == "check")
    if mode == "check":
        for line in lines:
            print(f"not as locked: {line}", file=sys.stderr)
        return 1 if lines else 0
    if lines:
        print(f"{len(lines)} of {len(pins)} packages differ from {lock}:")
        print("\n".join(f"  {line}" for line in lines))
    else:
        print(f"all {len(pins)} packages are at the versions in {lock}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
