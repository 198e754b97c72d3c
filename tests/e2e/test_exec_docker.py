"""`inference-broker exec NAME -- docker run ...` against a real docker engine, and a broker with
no `listen` in its config (the default a new user has: loopback and every container bridge).

A wired container streams through the broker; the sandbox is made on first use and reused;
an image that runs as a named user gets the dir without being told the uid; a state dir with a
space works; and when anything is wrong (broker down, sandbox revoked, engine unreachable,
the bridge not served) no container is created and the message names the fix.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.e2e.infra.broker import BrokerProcess, Upstream
from tests.e2e.infra.clients import BODY, CLAUDE_ENV, WGET_STREAM, claude_print, sse_text
from tests.e2e.infra.dockerd import DockerDaemon


def exec_run(broker: BrokerProcess, name: str, *run: str, timeout: float = 120.0):
    return broker.cli("exec", name, "--", "docker", "run", *run, timeout=timeout)


def no_container(dockerd: DockerDaemon, container: str) -> bool:
    return dockerd.docker("ps", "-aq", "--filter", f"name=^{container}$").stdout.strip() == ""


@pytest.fixture
def default_broker(dockerd: DockerDaemon, start_broker) -> BrokerProcess:
    """A broker whose config has no `listen`: 127.0.0.1:8765 and docker0:8765, unasked."""
    broker = start_broker(None)
    assert broker.port_on("127.0.0.1") == 8765 and broker.port_on(dockerd.bridge_ip) == 8765, broker.bound
    return broker


def test_exec_streams_through_the_broker_with_nothing_configured(
    dockerd: DockerDaemon, probe_image: str, default_broker: BrokerProcess, upstream: Upstream
) -> None:
    first = exec_run(default_broker, "web", "--rm", "-e", f"BODY={BODY}", probe_image, "sh", "-c", WGET_STREAM)
    assert first.returncode == 0, first.stderr
    assert "sandbox 'web' created" in first.stderr
    assert sse_text(first.stdout) == upstream.fake.reply_text
    key = default_broker.sandbox_key("web")
    assert key not in first.stdout + first.stderr and upstream.access not in first.stdout + first.stderr

    again = exec_run(default_broker, "web", "--rm", "-e", f"BODY={BODY}", probe_image, "sh", "-c", WGET_STREAM)
    assert again.returncode == 0 and "created" not in again.stderr, again.stderr  # reused, same key
    assert default_broker.sandbox_key("web") == key
    assert len([r for r in upstream.fake.requests if r.path == "/v1/messages"]) == 2
    assert upstream.fake.problems == []


def test_exec_passes_the_exit_status_through(dockerd: DockerDaemon, probe_image: str,
                                             default_broker: BrokerProcess) -> None:
    out = exec_run(default_broker, "status", "--rm", probe_image, "sh", "-c", "exit 7")
    assert out.returncode == 7, out.stderr


def test_exec_hands_the_dir_to_a_named_image_user(
    dockerd: DockerDaemon, claude_image: str, default_broker: BrokerProcess, upstream: Upstream
) -> None:
    """The image says `USER sandbox` (uid 1000 in its /etc/passwd); the broker runs as root and is
    never told the uid: Claude Code in the container still reads its login and gets an answer."""
    named = f"ib-named-user:{uuid.uuid4().hex[:6]}"
    cid = dockerd.docker("create", claude_image, "true").stdout.strip()
    try:
        dockerd.docker("commit", "-c", "USER sandbox", cid, named)
    finally:
        dockerd.docker("rm", "-f", cid, check=False)
    try:
        env = [f for k, v in CLAUDE_ENV.items() for f in ("-e", f"{k}={v}")]
        out = exec_run(default_broker, "named", "--rm", *env, named, *claude_print())
        assert out.returncode == 0, f"stdout={out.stdout!r} stderr={out.stderr!r}"
        assert upstream.fake.reply_text in out.stdout
        assert default_broker.sandbox_dir("named").stat().st_uid == 1000
    finally:
        dockerd.docker("rmi", "-f", named, check=False)


def test_exec_works_with_a_space_in_the_state_dir(
    dockerd: DockerDaemon, probe_image: str, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """macOS's state dir is `~/Library/Application Support/...`: the mount path stays one word."""
    root = tmp_path_factory.mktemp("Application Support")
    broker = BrokerProcess(root, ["127.0.0.1:0", "docker:0"], upstream.url, upstream.token_url, upstream.access,
                           upstream.refresh, issued=upstream.sandbox_keys,
                           env={k: dockerd.env[k] for k in ("DOCKER_HOST", "DOCKER_CONFIG")})
    broker.start()
    try:
        assert " " in str(broker.state_dir)
        out = exec_run(broker, "spaced", "--rm", "-e", f"BODY={BODY}", probe_image, "sh", "-c", WGET_STREAM)
        assert out.returncode == 0, out.stderr
        assert sse_text(out.stdout) == upstream.fake.reply_text
    finally:
        broker.stop()


def test_nothing_starts_when_the_broker_is_down(dockerd: DockerDaemon, probe_image: str, start_broker) -> None:
    broker = start_broker(None)
    broker.stop()
    container = f"ib-never-{uuid.uuid4().hex[:6]}"
    out = exec_run(broker, "down", "--name", container, probe_image, "true")
    assert out.returncode != 0
    assert "the broker is not running: start it with `inference-broker run`" in out.stderr
    assert no_container(dockerd, container) and not broker.sandbox_dir("down").exists()


def test_nothing_starts_for_a_revoked_sandbox(dockerd: DockerDaemon, probe_image: str,
                                              default_broker: BrokerProcess, tmp_path: Path) -> None:
    """A dir whose key the broker no longer accepts (a copy kept past `sandbox revoke`)."""
    assert exec_run(default_broker, "gone", "--rm", probe_image, "true").returncode == 0
    kept = tmp_path / "kept"
    os.rename(default_broker.sandbox_dir("gone"), kept)
    default_broker.revoke("gone")
    os.rename(kept, default_broker.sandbox_dir("gone"))
    container = f"ib-never-{uuid.uuid4().hex[:6]}"
    out = exec_run(default_broker, "gone", "--name", container, probe_image, "true")
    assert out.returncode != 0 and "sandbox 'gone' was revoked" in out.stderr, out.stderr
    assert "docker-args gone --rotate" in out.stderr
    assert no_container(dockerd, container)


def test_nothing_starts_for_a_sandbox_revoked_as_usual(dockerd: DockerDaemon, probe_image: str,
                                                       default_broker: BrokerProcess) -> None:
    """`sandbox revoke` deletes the key and the dir: exec must not quietly make a new sandbox."""
    assert exec_run(default_broker, "ended", "--rm", probe_image, "true").returncode == 0
    default_broker.revoke("ended")
    container = f"ib-never-{uuid.uuid4().hex[:6]}"
    out = exec_run(default_broker, "ended", "--name", container, probe_image, "true")
    assert out.returncode != 0 and "sandbox 'ended' was revoked" in out.stderr, out.stderr
    assert "inference-broker sandbox add ended" in out.stderr
    assert no_container(dockerd, container) and not default_broker.sandbox_dir("ended").exists()


def test_nothing_starts_when_the_engine_is_unreachable(dockerd: DockerDaemon, default_broker: BrokerProcess,
                                                       tmp_path: Path) -> None:
    env = {**default_broker.env, "DOCKER_HOST": f"unix://{tmp_path}/no.sock"}
    import subprocess

    out = subprocess.run(default_broker.argv("exec", "x", "--", "docker", "run", "--rm", "probe:latest", "true"),
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "the docker engine is not reachable" in out.stderr, out.stderr
    assert not default_broker.sandbox_dir("x").exists()


def test_nothing_starts_when_the_bridge_is_not_served(dockerd: DockerDaemon, probe_image: str,
                                                      start_broker) -> None:
    broker = start_broker(["127.0.0.1:0"])  # an explicit listen wins: loopback only
    container = f"ib-never-{uuid.uuid4().hex[:6]}"
    out = exec_run(broker, "lonely", "--name", container, probe_image, "true")
    assert out.returncode != 0 and "does not listen on the docker bridge" in out.stderr, out.stderr
    assert "add `docker:PORT`" in out.stderr
    assert no_container(dockerd, container) and not broker.sandbox_dir("lonely").exists()
