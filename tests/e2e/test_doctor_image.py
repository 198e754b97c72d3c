"""`doctor --sandbox NAME --image IMAGE` with a real docker engine: it looks up the user the
image runs as (a numeric USER, root, a user name from the image's /etc/passwd) and says whether
that user can use the sandbox's Claude Code dir, naming `--rotate --uid UID` when it cannot."""

from __future__ import annotations

import time
from pathlib import Path

from tests.e2e.infra.dockerd import DockerDaemon
from tests.fakes.broker_process import BrokerProcess
from tests.fakes.login import write_login
from tests.fakes.token_endpoint import new_access, new_refresh


def named_user_image(dockerd: DockerDaemon, base: str) -> str:
    """`base` with `USER sandbox` (uid 1000 in its /etc/passwd), committed from a stopped container."""
    cid = dockerd.docker("create", base, "true").stdout.strip()
    try:
        dockerd.docker("commit", "-c", "USER sandbox", cid, "claude-named:latest")
    finally:
        dockerd.docker("rm", "-f", cid, check=False)
    return "claude-named:latest"


def test_doctor_looks_up_the_images_user(tmp_path: Path, dockerd: DockerDaemon, claude_image: str,
                                         probe_image: str) -> None:
    broker = BrokerProcess(tmp_path / "broker", settings={"listen": ["127.0.0.1:18799"], "docker_bridge": "ibnone0"},
                           env_extra={"DOCKER_HOST": dockerd.env["DOCKER_HOST"]})
    write_login(broker.creds, new_access(), new_refresh(), time.time() + 8 * 3600)
    key = broker.add_sandbox("box")  # owned by root, the broker's user here
    where = broker.state_dir / "sandboxes" / "box"

    numeric = broker.cli("doctor", "--sandbox", "box", "--image", claude_image)  # USER 1000:1000
    assert numeric.returncode == 1
    assert f"[ok  ] image '{claude_image}' runs as uid 1000" in numeric.stdout
    assert f"[FAIL] sandbox 'box': a container running as uid 1000 cannot use {where}" in numeric.stdout
    assert "fix: `inference-broker docker-args box --rotate --uid 1000`" in numeric.stdout

    named = broker.cli("doctor", "--sandbox", "box", "--image", named_user_image(dockerd, claude_image))
    assert "[ok  ] image 'claude-named:latest' runs as uid 1000" in named.stdout and "[FAIL]" in named.stdout

    root = broker.cli("doctor", "--sandbox", "box", "--image", probe_image)  # no USER: root
    assert f"[ok  ] image '{probe_image}' runs as uid 0" in root.stdout
    assert "a container running as uid 0 can use its Claude Code dir" in root.stdout

    broker.cli("docker-args", "box", "--rotate", "--uid", "1000", check=True)  # the fix it named
    fixed = broker.cli("doctor", "--sandbox", "box", "--image", claude_image)
    assert "a container running as uid 1000 can use its Claude Code dir" in fixed.stdout
    assert "[FAIL]" not in fixed.stdout, fixed.stdout

    missing = broker.cli("doctor", "--sandbox", "box", "--image", "no-such-image:1")
    assert "[WARN] cannot tell which user image 'no-such-image:1' runs as: `docker image` failed" in missing.stdout
    assert "give it with `--uid UID`" in missing.stdout and missing.returncode == 1
    assert dockerd.docker("ps", "-aq").stdout.strip() == ""  # the lookup's container is gone
    assert key not in numeric.stdout + named.stdout + root.stdout + fixed.stdout + missing.stdout
