"""The broker from real docker containers, wired only by what `docker-args` prints.

The broker listens on loopback and on `docker` (the bridge address); a container started with
the printed flags reaches `inference.local`, streams through the broker to the fake upstream,
and the real Claude Code CLI gets its answer. Loopback-only brokers and revoked keys fail.
"""

from __future__ import annotations

import shlex
import urllib.request


from tests.e2e.infra.broker import BrokerProcess, Upstream
from tests.e2e.infra.clients import BODY, CLAUDE_ENV, WGET_STREAM, claude_print, sse_events, sse_text
from tests.e2e.infra.dockerd import DockerDaemon

OAUTH_BETA = "oauth-2025-04-20"


def docker_args(broker: BrokerProcess, name: str, *extra: str) -> tuple[list[str], str]:
    """Run the real `inference-broker docker-args` and parse its stdout as a shell would;
    also return the key it wrote into the sandbox's dir (which the flags mount)."""
    out = broker.cli("docker-args", name, *extra)
    assert out.returncode == 0, out.stderr
    return shlex.split(out.stdout), broker.sandbox_key(name)


def wget_stream(dockerd: DockerDaemon, image: str, flags: list[str]):
    return dockerd.run(image, ["sh", "-c", WGET_STREAM], flags=[*flags, "-e", f"BODY={BODY}"])


def test_container_streams_through_broker_with_printed_flags(
    dockerd: DockerDaemon, probe_image: str, bridged: BrokerProcess, upstream: Upstream
) -> None:
    flags, key = docker_args(bridged, "web", "--new")
    assert key and key.startswith("sk-ib-")
    assert f"ANTHROPIC_BASE_URL=http://inference.local:{bridged.port_on(dockerd.bridge_ip)}" in flags

    out = wget_stream(dockerd, probe_image, flags)
    assert out.returncode == 0, out.stderr
    assert sse_events(out.stdout)[-1] == "message_stop"
    assert sse_text(out.stdout) == upstream.fake.reply_text
    assert upstream.access not in out.stdout + out.stderr

    (seen,) = upstream.fake.requests
    assert seen.header("authorization") == [f"Bearer {upstream.access}"]
    assert OAUTH_BETA in seen.header("anthropic-beta")[0]
    assert upstream.fake.problems == []


def test_claude_code_in_container_gets_upstream_answer(
    dockerd: DockerDaemon, claude_image: str, bridged: BrokerProcess, upstream: Upstream
) -> None:
    flags, key = docker_args(bridged, "claude", "--new", "--uid", "1000")  # the image runs as uid 1000
    env_flags = [f for k, v in CLAUDE_ENV.items() for f in ("-e", f"{k}={v}")]
    out = dockerd.run(claude_image, claude_print(), flags=[*flags, *env_flags], timeout=120)
    assert out.returncode == 0, f"stdout={out.stdout!r} stderr={out.stderr!r}"
    assert upstream.fake.reply_text in out.stdout
    assert upstream.access not in out.stdout + out.stderr

    messages = [r for r in upstream.fake.requests if r.path == "/v1/messages"]
    assert messages, [r.path for r in upstream.fake.requests]
    assert messages[-1].header("authorization") == [f"Bearer {upstream.access}"]
    betas = messages[-1].header("anthropic-beta")[0].split(",")
    assert OAUTH_BETA in betas and any(b.startswith("claude-code-") for b in betas)
    assert upstream.fake.problems == []


def test_container_cannot_reach_loopback_only_broker(
    dockerd: DockerDaemon, probe_image: str, start_broker, upstream: Upstream
) -> None:
    broker = start_broker(["127.0.0.1:0"])
    port = broker.port_on("127.0.0.1")
    with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/", method="HEAD"),
                                timeout=5) as resp:
        assert resp.status == 200  # the broker is up, on loopback

    out = broker.cli("docker-args", "lonely", "--new")
    assert out.returncode == 0 and "does not listen on the docker bridge" in out.stderr, out.stderr
    flags = shlex.split(out.stdout)
    broker.sandbox_key("lonely")

    result = wget_stream(dockerd, probe_image, flags)
    assert result.returncode != 0 and result.stdout == ""
    assert upstream.fake.requests == []


def test_revoked_and_rotated_keys_fail_from_inside(
    dockerd: DockerDaemon, probe_image: str, bridged: BrokerProcess, upstream: Upstream
) -> None:
    flags, first = docker_args(bridged, "temp", "--new")
    assert wget_stream(dockerd, probe_image, flags).returncode == 0

    rotated, second = docker_args(bridged, "temp", "--rotate")
    assert rotated == flags and second != first  # same wiring; the dir now holds the new key
    old = wget_stream(dockerd, probe_image, [*flags, "-e", f"KEY={first}"])
    assert old.returncode != 0 and "401" in old.stderr
    assert wget_stream(dockerd, probe_image, flags).returncode == 0

    bridged.revoke("temp")
    assert not bridged.sandbox_dir("temp").exists()
    gone = wget_stream(dockerd, probe_image, flags)  # the dir to mount is gone: docker refuses
    assert gone.returncode != 0 and "temp" in gone.stderr
    wiring = flags[:flags.index("--mount")]  # the same container without the mount, the key by hand
    after = wget_stream(dockerd, probe_image, [*wiring, "-e", f"KEY={second}"])
    assert after.returncode != 0 and "401" in after.stderr
    assert len(upstream.fake.requests) == 2  # refused requests never went upstream
    assert upstream.fake.problems == []
