"""`listen: docker:0` when docker starts after the broker: it binds as soon as the bridge appears.

A bridge of the test's own (a link-local /30 address, never another machine's) stands in for
docker0, named through the `docker_bridge` setting.
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


async def test_binds_on_the_bridge_once_it_appears(tmp_path):
    require_root()
    require_tools("ip")
    name = f"iblate{os.getpid() % 10000}"
    address = f"169.254.{100 + os.getpid() % 100}.{1 + 4 * (os.getpid() % 60)}"
    subprocess.run(["ip", "link", "del", name], capture_output=True)
    config = Config(listen=("127.0.0.1:0", "docker:0"), state_dir=tmp_path / "state", docker_bridge=name,
                    docker_poll_seconds=0.1,
                    credentials=CredentialSettings(sources=("file",), file=tmp_path / "none.json"))
    service = Service(config)
    await service.start()
    try:
        assert len(service.proxy.bound) == 1 and service.proxy.bound[0].startswith("127.0.0.1:")
        ip("link", "add", name, "type", "bridge")
        ip("addr", "add", f"{address}/30", "dev", name)
        ip("link", "set", name, "up")
        for _ in range(100):
            if any(b.startswith(address + ":") for b in service.proxy.bound):
                break
            await asyncio.sleep(0.05)
        bound = [b for b in service.proxy.bound if b.startswith(address + ":")]
        assert bound, service.proxy.bound
        assert json.loads((config.state_dir / "listen.json").read_text())["listen"] == service.proxy.bound
        async with aiohttp.ClientSession() as s, s.head(f"http://{bound[0]}/") as resp:
            assert resp.status == 200
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
    appeared = asyncio.Event()

    async def bridge_appears(interval: float = 5.0, name: str = "docker0") -> str:
        await appeared.wait()
        return "127.0.0.1"

    monkeypatch.setattr(bridges, "bridge_gateway", lambda name="docker0": None)  # not up at start
    monkeypatch.setattr(bridges, "watch_bridge", bridge_appears)
    config = Config(listen=("127.0.0.1:0", f"docker:{port}"), state_dir=tmp_path / "state",
                    credentials=CredentialSettings(sources=("file",), file=tmp_path / "none.json"))
    service = Service(config)
    await service.start()
    try:
        caplog.set_level("ERROR", logger="broker.runtime.service")
        appeared.set()
        (task,) = [t for t in service._tasks if t.get_name() == "docker-bind"]
        await asyncio.wait_for(asyncio.shield(task), 5)  # ends normally, having said why
        assert task.exception() is None
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert any(f"cannot listen on the docker bridge 127.0.0.1:{port}" in m for m in errors), errors
        assert len(service.proxy.bound) == 1  # still serving on loopback
    finally:
        await service.stop()
        holder.close()
