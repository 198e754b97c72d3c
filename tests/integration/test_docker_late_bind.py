"""Container bridges that come and go: the broker listens on each while it exists.

A bridge of the test's own (a link-local /30 address, never another machine's) stands in for
docker0, named through the `docker_bridge` setting. Podman removes its bridge with its last
container and makes it again for the next one, so the broker must drop the address when it
goes and bind again when it comes back, quickly (woken by rtnetlink, not a slow poll).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess

import aiohttp

from broker.config.settings import Config, CredentialSettings
from broker.runtime.service import Service
from tests.support import require_root, require_tools


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _bridge_up(name: str, address: str) -> None:
    ip("link", "add", name, "type", "bridge")
    ip("addr", "add", f"{address}/30", "dev", name)
    ip("link", "set", name, "up")


async def _until(check, what: str, seconds: float = 5.0):  # type: ignore[no-untyped-def]
    for _ in range(int(seconds / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not {what} after {seconds}s")


def _on(service: Service, address: str) -> list[str]:
    return [b for b in service.proxy.bound if b.startswith(address + ":")]


async def test_bridge_bound_when_it_appears_dropped_when_it_goes(tmp_path):
    require_root()
    require_tools("ip")
    name = f"iblate{os.getpid() % 10000}"
    address = f"169.254.{100 + os.getpid() % 100}.{1 + 4 * (os.getpid() % 60)}"
    subprocess.run(["ip", "link", "del", name], capture_output=True)
    # The poll interval is long: only the kernel's address events can make this quick.
    config = Config(listen=("127.0.0.1:0", "docker:0"), state_dir=tmp_path / "state", docker_bridge=name,
                    docker_poll_seconds=3600,
                    credentials=CredentialSettings(sources=("file",), file=tmp_path / "none.json"))
    service = Service(config)
    await service.start()
    listen_json = config.state_dir / "listen.json"
    try:
        assert len(service.proxy.bound) == 1 and service.proxy.bound[0].startswith("127.0.0.1:")
        _bridge_up(name, address)
        await _until(lambda: _on(service, address), "bound on the new bridge")
        (bound,) = _on(service, address)
        await _until(lambda: json.loads(listen_json.read_text())["listen"] == service.proxy.bound, "in listen.json")
        async with aiohttp.ClientSession() as s, s.head(f"http://{bound}/") as resp:
            assert resp.status == 200

        ip("link", "del", name)  # podman's last container stopped
        await _until(lambda: not _on(service, address), "dropped")
        await _until(lambda: json.loads(listen_json.read_text())["listen"] == service.proxy.bound, "in listen.json")
        assert len(service.proxy.bound) == 1

        _bridge_up(name, address)  # and the next one starts
        await _until(lambda: _on(service, address), "bound again")
        async with aiohttp.ClientSession() as s, s.head(f"http://{_on(service, address)[0]}/") as resp:
            assert resp.status == 200
    finally:
        await service.stop()
        subprocess.run(["ip", "link", "del", name], capture_output=True)


async def test_a_bridge_present_at_start_is_served_before_ready(tmp_path):
    require_root()
    require_tools("ip")
    name = f"ibnow{os.getpid() % 10000}"
    address = f"169.254.{100 + (os.getpid() + 1) % 100}.{1 + 4 * ((os.getpid() + 1) % 60)}"
    subprocess.run(["ip", "link", "del", name], capture_output=True)
    _bridge_up(name, address)
    config = Config(listen=("127.0.0.1:0", "docker:0"), state_dir=tmp_path / "state", docker_bridge=name,
                    credentials=CredentialSettings(sources=("file",), file=tmp_path / "none.json"))
    service = Service(config)
    try:
        await service.start()
        assert _on(service, address)
        assert json.loads((config.state_dir / "listen.json").read_text())["listen"] == service.proxy.bound
    finally:
        await service.stop()
        subprocess.run(["ip", "link", "del", name], capture_output=True)


async def test_a_port_clash_on_the_late_bridge_is_logged(tmp_path, monkeypatch, caplog):
    """Regression: binding the bridge late raised BrokerError, which the task did not catch,
    so it died with no log line and the broker kept running without the address."""
    import socket

    from broker.sandboxes import bridges

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))  # another program holds the port on the "bridge" address
    holder.listen()
    port = holder.getsockname()[1]
    up = False
    monkeypatch.setattr(bridges, "gateways", lambda names: {"docker0": "127.0.0.1"} if up else {})
    config = Config(listen=("127.0.0.1:0", f"docker:{port}"), state_dir=tmp_path / "state",
                    credentials=CredentialSettings(sources=("file",), file=tmp_path / "none.json"))
    service = Service(config)
    await service.start()
    try:
        caplog.set_level("ERROR", logger="broker.sandboxes.bridges")
        up = True
        assert await service.bridge_sites.sync() is False
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert any(f"cannot listen on the container bridge 127.0.0.1:{port}" in m for m in errors), errors
        assert len(service.proxy.bound) == 1  # still serving on loopback
        await service.bridge_sites.sync()  # tried again on the next change, not logged again
        assert len([r for r in caplog.records if r.levelname == "ERROR"]) == len(errors)
        (task,) = [t for t in service._tasks if t.get_name() == "bridge-watch"]
        assert not task.done()
    finally:
        await service.stop()
        holder.close()
