"""The docker infrastructure itself: what a container can and cannot reach, and Claude Code
running inside one. Broker tests build on exactly these facts."""

from __future__ import annotations

import shlex

from broker.sandboxes import engine_args
from tests.e2e.infra.dockerd import DockerDaemon

FETCH = "timeout 5 wget -qO- {url}"  # busybox `wget -T` segfaults; `timeout` bounds it instead


def _fetch(dockerd: DockerDaemon, image: str, port: int):
    url = f"http://{engine_args.HOST_ALIAS}:{port}/"
    return dockerd.run(image, ["sh", "-c", FETCH.format(url=shlex.quote(url))],
                       flags=["--add-host", engine_args.ADD_HOST], timeout=30)


def test_container_reaches_server_on_bridge_address(dockerd: DockerDaemon, probe_image: str, serve) -> None:
    server = serve(dockerd.bridge_ip, text="bridge says hi")
    out = _fetch(dockerd, probe_image, server.port)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "bridge says hi"
    assert server.hosts == [f"inference.local:{server.port}"]


def test_container_cannot_reach_loopback_server(dockerd: DockerDaemon, probe_image: str, serve) -> None:
    server = serve("127.0.0.1", text="loopback only")
    out = _fetch(dockerd, probe_image, server.port)
    assert out.returncode != 0
    assert "loopback only" not in out.stdout
    assert server.hosts == []


def test_host_gateway_is_the_bridge_address(dockerd: DockerDaemon, probe_image: str) -> None:
    out = dockerd.run(probe_image, ["cat", "/etc/hosts"], flags=["--add-host", engine_args.ADD_HOST])
    assert f"{dockerd.bridge_ip}\tinference.local" in out.stdout


def test_claude_code_runs_in_container(dockerd: DockerDaemon, claude_image: str) -> None:
    out = dockerd.run(claude_image, ["claude", "--version"], timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Claude Code" in out.stdout


def test_claude_image_runs_unprivileged_with_a_home(dockerd: DockerDaemon, claude_image: str) -> None:
    out = dockerd.run(claude_image, ["sh", "-c", 'id -u; echo "$HOME"; touch "$HOME/x" && echo ok'])
    assert out.stdout.split() == ["1000", "/home/sandbox", "ok"], out.stderr
