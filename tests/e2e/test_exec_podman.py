"""Rootful podman (Debian 12's 4.3.1 here): `exec` and `docker-args --engine podman` with a
broker that has no `listen` in its config. Podman 4.3 refuses `host-gateway`; its containers
reach the host on the podman bridge (`podman0`, 10.88.0.1), which podman creates with the first
container and removes with the last: the broker binds it as it appears.
"""

from __future__ import annotations

import shlex
import uuid

from tests.e2e.infra.broker import BrokerProcess, Upstream
from tests.e2e.infra.clients import BODY, CLAUDE_ENV, WGET_STREAM, claude_print, sse_text
from tests.e2e.infra.podman import Podman


def exec_run(broker: BrokerProcess, name: str, *run: str, timeout: float = 120.0):
    return broker.cli("exec", name, "--", "podman", "run", *run, timeout=timeout)


def test_exec_with_podman_and_nothing_configured(podman: Podman, podman_probe_image: str, start_broker,
                                                 upstream: Upstream) -> None:
    broker = start_broker(None)
    out = exec_run(broker, "pod", "--rm", "-e", f"BODY={BODY}", podman_probe_image, "sh", "-c", WGET_STREAM)
    assert out.returncode == 0, out.stderr
    assert sse_text(out.stdout) == upstream.fake.reply_text
    assert "podman0" in broker.log_text() or "10.88.0.1" in broker.log_text()
    assert upstream.fake.problems == []


def test_claude_code_via_docker_args_engine_podman(podman: Podman, podman_claude_image: str, start_broker,
                                                   upstream: Upstream) -> None:
    """The issue's line: `podman run $(inference-broker docker-args NAME --new --engine podman) IMAGE claude`."""
    broker = start_broker(None)
    out = broker.cli("docker-args", "cc", "--new", "--uid", "1000", "--engine", "podman")
    assert out.returncode == 0, out.stderr
    flags = shlex.split(out.stdout)
    assert flags[:2] == ["--add-host", "inference.local:10.88.0.1"]
    env = [f for k, v in CLAUDE_ENV.items() for f in ("-e", f"{k}={v}")]
    result = podman.run(podman_claude_image, claude_print(), flags=[*flags, *env], timeout=120)
    assert result.returncode == 0, f"stdout={result.stdout!r} stderr={result.stderr!r}"
    assert upstream.fake.reply_text in result.stdout
    assert upstream.access not in result.stdout + result.stderr


def test_nothing_starts_when_podman_bridge_is_not_served(podman: Podman, podman_probe_image: str,
                                                         start_broker) -> None:
    broker = start_broker(["127.0.0.1:0"])
    container = f"ib-never-{uuid.uuid4().hex[:6]}"
    out = exec_run(broker, "lonely", "--name", container, podman_probe_image, "true")
    assert out.returncode != 0 and "does not listen on the podman bridge" in out.stderr, out.stderr
    assert podman.podman("ps", "-aq", "--filter", f"name=^{container}$").stdout.strip() == ""
