"""`inference-broker sandbox check NAME`: a throwaway container with the sandbox's flags names the
step that fails, with its fix. Each fault is injected for real: a dir the image's user cannot
read, a base URL whose name does not resolve, a container with no network, a broker that does
not serve the bridge, a revoked key; and a healthy sandbox passes, on docker and on podman.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.infra.broker import BrokerProcess
from tests.e2e.infra.dockerd import DockerDaemon
from tests.e2e.infra.podman import Podman


def check(broker: BrokerProcess, name: str, image: str, *options: str, engine: str = "docker"):
    extra = ["--", *options] if options else []
    return broker.cli("sandbox", "check", name, "--engine", engine, "--image", image, *extra, timeout=120)


def failed(out, step: str) -> str:
    lines = out.stdout.splitlines()
    fails = [ln for ln in lines if ln.startswith("FAIL")]
    assert out.returncode == 1 and len(fails) == 1 and fails[0].startswith(f"FAIL {step}:"), out.stdout + out.stderr
    return out.stdout


@pytest.fixture
def checked(dockerd: DockerDaemon, start_broker) -> BrokerProcess:
    broker = start_broker(None)
    broker.cli("docker-args", "box", "--new", check=True)
    return broker


def test_a_healthy_sandbox_passes(dockerd: DockerDaemon, probe_image: str, checked: BrokerProcess) -> None:
    out = check(checked, "box", probe_image)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "FAIL" not in out.stdout and f"inference.local is {dockerd.bridge_ip}" in out.stdout
    assert "ok   key: accepted" in out.stdout


def test_config_dir_unreadable_by_the_image_user(dockerd: DockerDaemon, claude_image: str,
                                                 checked: BrokerProcess) -> None:
    """`claude-code` runs as uid 1000; the dir was made without --uid for a root broker."""
    text = failed(check(checked, "box", claude_image), "config dir")
    assert "(uid 1000) cannot read" in text and "--rotate --uid 1000" in text


def test_name_resolution(dockerd: DockerDaemon, probe_image: str, checked: BrokerProcess) -> None:
    """An image or compose file setting its own base URL, with a name nothing maps."""
    text = failed(check(checked, "box", probe_image, "-e", "ANTHROPIC_BASE_URL=http://broker.invalid:8765"),
                  "name resolution")
    assert "broker.invalid does not resolve" in text and "--add-host" in text


def test_route(dockerd: DockerDaemon, probe_image: str, checked: BrokerProcess) -> None:
    text = failed(check(checked, "box", probe_image, "--network", "none"), "route")
    assert "no way to the host" in text


def test_nothing_listening_on_the_bridge(dockerd: DockerDaemon, probe_image: str, start_broker) -> None:
    broker = start_broker(["127.0.0.1:8767"])  # an explicit loopback-only listen
    broker.cli("docker-args", "box", "--new", check=True)
    text = failed(check(broker, "box", probe_image), "listening")
    assert f"nothing listens on {dockerd.bridge_ip}:8767" in text and "add `docker:8767` to `listen`" in text


def test_key_refused(dockerd: DockerDaemon, probe_image: str, checked: BrokerProcess, tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    os.rename(checked.sandbox_dir("box"), kept)
    checked.revoke("box")
    os.rename(kept, checked.sandbox_dir("box"))
    text = failed(check(checked, "box", probe_image), "key")
    assert "docker-args box --rotate" in text


def test_broker_down(dockerd: DockerDaemon, probe_image: str, checked: BrokerProcess) -> None:
    checked.stop()
    out = check(checked, "box", probe_image)
    assert out.returncode == 1 and "FAIL broker: the broker is not running" in out.stdout
    assert "inference-broker run" in out.stdout


def test_podman_sandbox_passes(podman: Podman, podman_probe_image: str, start_broker) -> None:
    broker = start_broker(None)
    broker.cli("docker-args", "pbox", "--new", "--engine", "podman", check=True)
    out = check(broker, "pbox", podman_probe_image, engine="podman")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "inference.local is 10.88.0.1" in out.stdout and "ok   key: accepted" in out.stdout
