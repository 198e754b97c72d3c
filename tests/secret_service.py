"""A real Secret Service for tests: a private D-Bus session bus and an unlocked gnome-keyring.

Nothing touches the developer's own keyring: the bus, the keyring files and the runtime dir
all live in a temp dir, and the keyring backend is pinned to Secret Service for the test.
"""

from __future__ import annotations

import os
import signal
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from tests.support import require_tools


@contextmanager
def secret_service(root: Path) -> Iterator[dict[str, str]]:
    require_tools("dbus-daemon", "gnome-keyring-daemon")
    runtime = root / "run"
    data = root / "data"
    for d in (runtime, data):
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
    bus = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--print-address=1", f"--address=unix:path={runtime}/bus"],
        stdout=subprocess.PIPE, text=True)
    address = bus.stdout.readline().strip()  # type: ignore[union-attr]
    env = {"DBUS_SESSION_BUS_ADDRESS": address, "XDG_RUNTIME_DIR": str(runtime), "XDG_DATA_HOME": str(data)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        out = subprocess.run(["gnome-keyring-daemon", "--unlock", "--components=secrets"], input="test-password",
                             capture_output=True, text=True, timeout=30, env={**os.environ, "NO_AT_BRIDGE": "1"})
        if out.returncode != 0:
            raise RuntimeError(f"gnome-keyring-daemon failed: {out.stderr.strip()}")
        import keyring
        from keyring.backends import SecretService

        previous = keyring.get_keyring()
        keyring.set_keyring(SecretService.Keyring())
        try:
            yield env
        finally:
            keyring.set_keyring(previous)
    finally:
        _stop_keyring_daemons(address)
        bus.send_signal(signal.SIGTERM)
        bus.wait(timeout=10)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _stop_keyring_daemons(bus_address: str) -> None:
    """End the gnome-keyring-daemon started on this bus, by its pid: other tests (and other
    people on this machine) run their own."""
    ours = f"DBUS_SESSION_BUS_ADDRESS={bus_address}".encode()
    for proc in Path("/proc").iterdir():
        try:
            if b"gnome-keyring-daemon" in (proc / "cmdline").read_bytes() and ours in \
                    (proc / "environ").read_bytes().split(b"\0"):
                os.kill(int(proc.name), signal.SIGTERM)
        except (OSError, ValueError):
            continue
