"""The real Claude Code, interactive in a real terminal (tmux), in sandboxes with no route out,
wired by nothing but what `inference-broker docker-args` prints: `docker run -it` for an image
running as root and one running as uid 1000, `docker-compose run` from the compose snippet, the
Dev Containers CLI (`devcontainer up` / `exec`) from the devcontainer fragment, and a network
namespace with the env output; and the README's quick start, `inference-broker exec NAME --
docker|podman run -it ...`, with no `listen` in the config (podman: rootful, Debian's 4.3).

Each: the prompt comes up with the plan shown and no onboarding, connectivity error, API-key or
trust question; a typed prompt gets the fake upstream's answer and its plan-limit warning; a
second start of the same sandbox continues the conversation; a key rotated meanwhile is taken
up by the running Claude Code; after `sandbox revoke` the next prompt says it is not logged in;
neither the screens nor the sandbox's dir ever hold the Claude token. Screens land in
test-artifacts/interactive/.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import uuid
from pathlib import Path
from typing import Callable, Sequence

import pytest
import yaml

from tests.e2e.infra.broker import BrokerProcess, Upstream
from tests.e2e.infra.dockerd import DockerDaemon
from tests.e2e.infra.interactive import (LIMIT_WARNING, REVOKED, ask, files_containing, leave,
                                         near_limit_headers, reach_prompt, wait_saved)
from tests.e2e.infra.images import CLAUDE_ENV
from tests.e2e.infra.netns import NetnsSandbox
from tests.e2e.infra.tmux import Terminal
from tests.support import require_tools

WORKDIR = "/workspace"
NO_DNS = ["--dns", "127.0.0.1"]
DEVCONTAINER = os.environ.get("INFERENCE_BROKER_TEST_DEVCONTAINER", "devcontainer")  # @devcontainers/cli  # Claude Code's own lookups (telemetry, updates) stay on the host


def docker_args(broker: BrokerProcess, name: str, *extra: str) -> str:
    out = broker.cli("docker-args", name, *extra)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The user's project folder, mounted as the sandbox's work folder."""
    path = tmp_path / "project"
    path.mkdir()
    (path / "README.md").write_text("a project\n")
    return path


@pytest.fixture(autouse=True)
def _tmux() -> None:
    require_tools("tmux")


def conversation(start: Callable[[str, Sequence[str]], Terminal], broker: BrokerProcess,
                 upstream: Upstream, name: str, plan: str = "Claude Max") -> None:
    """The whole interactive story; `start(label, claude_args)` opens a terminal running it."""
    upstream.fake.limit_headers = {k.split("unified-", 1)[1]: v for k, v in near_limit_headers().items()}
    first = start("first", [])
    try:
        reach_prompt(first, plan)
        screen = ask(first, "say hi", upstream.fake.reply_text, "answer")
        first.wait_for(LIMIT_WARNING, 30, label="plan-limit warning")
        assert "API Usage Billing" not in screen
        wait_saved(broker.sandbox_dir(name), upstream.fake.reply_text)  # kept for the next start
        leave(first)
    finally:
        first.close()
    messages = [r for r in upstream.fake.requests if r.path == "/v1/messages"]
    assert messages and all(r.header("authorization") == [f"Bearer {upstream.access}"] for r in messages)
    assert {r.path for r in upstream.fake.requests} <= {"/v1/messages", "/v1/messages/count_tokens"}

    box = broker.sandbox_dir(name)
    assert files_containing(box, [upstream.access, upstream.refresh]) == []
    creds = box / ".credentials.json"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600 and stat.S_IMODE(box.stat().st_mode) == 0o700

    second = start("second", ["--continue"])
    try:
        screen = reach_prompt(second, plan)
        assert "say hi" in screen and upstream.fake.reply_text in screen  # the same conversation
        before = broker.sandbox_key(name)
        out = broker.cli("docker-args", name, "--rotate")  # the running Claude Code takes the new key
        assert out.returncode == 0 and broker.sandbox_key(name) != before, out.stderr
        ask(second, "and after a rotation", f"and after a rotation[\\s\\S]*{upstream.fake.reply_text}",
            "after rotate")
        broker.revoke(name)
        assert not box.exists()
        ask(second, "are you still there", REVOKED, "after revoke")
    finally:
        second.close()
    assert upstream.access not in first.seen() + second.seen()
    assert upstream.fake.problems == []


def _docker_terminal(dockerd: DockerDaemon, name: str, label: str, argv: list[str]) -> Terminal:
    return Terminal(argv, dockerd.env, name=f"{name}-{label}")


@pytest.fixture
def containers(dockerd: DockerDaemon):
    names: list[str] = []
    yield names
    if names:
        dockerd.docker("rm", "-f", *names, check=False)


@pytest.mark.parametrize("image_fixture, uid", [("claude_root_image", None), ("claude_image", "1000")],
                         ids=["root", "uid1000"])
def test_docker_run(request, dockerd: DockerDaemon, bridged: BrokerProcess, upstream: Upstream,
                    project: Path, containers: list[str], image_fixture: str, uid: str | None) -> None:
    image = request.getfixturevalue(image_fixture)
    name = f"run-{image_fixture}"
    extra = ["--uid", uid] if uid else []
    if uid:
        os.chown(project, int(uid), int(uid))  # the user's project belongs to the image's user
    printed: list[str] = []

    def start(label: str, claude_args: Sequence[str]) -> Terminal:
        # The README's quick start (`--new` the first time, nothing the next), plus a container
        # name and no DNS for the test.
        first = not printed
        flags = docker_args(bridged, name, *(["--new", "--workdir", WORKDIR, *extra] if first else []))
        assert "sk-ib-" not in flags  # the key stays in the sandbox's dir
        assert first or flags == printed[0]  # printable again, the same wiring
        printed.append(flags)
        container = f"ib-{name}-{label}-{uuid.uuid4().hex[:6]}"
        containers.append(container)
        argv = ["docker", "run", "--rm", "-it", "--name", container, *NO_DNS, *shlex.split(flags),
                "-v", f"{project}:{WORKDIR}", "-w", WORKDIR, image, "claude", *claude_args]
        return _docker_terminal(dockerd, name, label, argv)

    conversation(start, bridged, upstream, name)


def _exec_quick_start(engine: str, image: str, broker: BrokerProcess, upstream: Upstream, project: Path,
                      remove: Callable[[list[str]], None]) -> None:
    """The README's quick start: `inference-broker exec NAME -- ENGINE run --rm -it -v ... -w ...
    IMAGE claude`, with no `listen` in the config and an image running as uid 1000 that the
    broker is never told about."""
    name = f"quick-{engine}"
    os.chown(project, 1000, 1000)
    containers: list[str] = []

    def start(label: str, claude_args: Sequence[str]) -> Terminal:
        container = f"ib-{name}-{label}-{uuid.uuid4().hex[:6]}"
        containers.append(container)
        argv = broker.argv("exec", name, "--", engine, "run", "--rm", "-it", "--name", container, *NO_DNS,
                           "-v", f"{project}:{WORKDIR}", "-w", WORKDIR, image, "claude", *claude_args)
        return Terminal(argv, broker.env, name=f"{engine}-exec-{label}")

    try:
        conversation(start, broker, upstream, name)
    finally:
        if containers:
            remove(containers)


def test_docker_exec(dockerd: DockerDaemon, claude_image: str, start_broker, upstream: Upstream,
                     project: Path) -> None:
    _exec_quick_start("docker", claude_image, start_broker(None), upstream, project,
                      lambda names: dockerd.docker("rm", "-f", *names, check=False))


def test_podman_exec(podman, podman_claude_image: str, start_broker, upstream: Upstream, project: Path) -> None:
    _exec_quick_start("podman", podman_claude_image, start_broker(None), upstream, project,
                      lambda names: podman.podman("rm", "-f", *names, check=False))


def test_compose_run(dockerd: DockerDaemon, claude_image: str, bridged: BrokerProcess, upstream: Upstream,
                     project: Path, tmp_path: Path) -> None:
    require_tools("docker-compose")
    name = "agent"
    snippet = yaml.safe_load(docker_args(bridged, name, "--new", "--workdir", WORKDIR, "--uid", "1000",
                                         "--format", "compose"))
    os.chown(project, 1000, 1000)
    service = snippet["services"][name]
    # What the user's compose.yaml adds around the snippet: an image and the project; the test
    # adds no DNS and the default bridge, as for `docker run` (on a project network, lookups go
    # through docker's embedded DNS, whose timeouts made Claude Code's turns take 10 s).
    service.update(image=claude_image, dns=["127.0.0.1"], network_mode="bridge", working_dir=WORKDIR)
    service["volumes"].append(f"{project}:{WORKDIR}")
    compose = tmp_path / "compose.yaml"
    compose.write_text(yaml.safe_dump(snippet))
    project_name = f"ib{uuid.uuid4().hex[:8]}"

    def start(label: str, claude_args: Sequence[str]) -> Terminal:
        argv = ["docker-compose", "-f", str(compose), "-p", project_name, "run", "--rm", name, "claude",
                *claude_args]
        return _docker_terminal(dockerd, "compose", label, argv)

    try:
        conversation(start, bridged, upstream, name)
    finally:
        subprocess.run(["docker-compose", "-f", str(compose), "-p", project_name, "down", "-t", "1"],
                       env=dockerd.env, capture_output=True, timeout=60, check=False)


def test_netns_env(netns_sandbox: NetnsSandbox, start_broker, upstream: Upstream, project: Path,
                   tmp_path: Path) -> None:
    claude = os.environ.get(CLAUDE_ENV) or "claude"  # the release the images were built from
    broker = start_broker([f"{netns_sandbox.host_ip}:0"])
    port = str(broker.port_on(netns_sandbox.host_ip))
    env_lines = docker_args(broker, "ns", "--new", "--workdir", str(project), "--format", "env",
                            "--port", port).splitlines()
    home = tmp_path / "home"
    home.mkdir()
    base = [f"PATH={os.environ.get('PATH', '/usr/bin:/bin')}", "TERM=xterm-256color", f"HOME={home}"]

    def start(label: str, claude_args: Sequence[str]) -> Terminal:
        argv = ["ip", "netns", "exec", netns_sandbox.name, "env", "-i", *base, *env_lines, claude, *claude_args]
        return Terminal(argv, {"PATH": os.environ.get("PATH", "")}, cwd=str(project), name=f"netns-{label}")

    conversation(start, broker, upstream, "ns")


def test_devcontainer(dockerd: DockerDaemon, claude_image: str, bridged: BrokerProcess, upstream: Upstream,
                      project: Path) -> None:
    require_tools(DEVCONTAINER)
    name = "dev"
    fragment = json.loads(docker_args(bridged, name, "--new", "--workdir", "/workspaces", "--uid", "1000",
                                      "--format", "devcontainer"))
    os.chown(project, 1000, 1000)
    # The project's devcontainer.json: the fragment merged in, plus an image; the test adds no DNS.
    config = {**fragment, "image": claude_image, "updateRemoteUserUID": False}
    config["runArgs"] = [*fragment["runArgs"], "--dns=127.0.0.1"]
    (project / ".devcontainer").mkdir()
    (project / ".devcontainer" / "devcontainer.json").write_text(json.dumps(config, indent=2))
    cli = [DEVCONTAINER, "--workspace-folder", str(project)]

    def up() -> str:
        out = subprocess.run([cli[0], "up", *cli[1:], "--remove-existing-container"], env=dockerd.env,
                             capture_output=True, text=True, timeout=120, check=False)
        assert out.returncode == 0, out.stdout + out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])["containerId"]

    def start(label: str, claude_args: Sequence[str]) -> Terminal:
        up()  # a new container each time: the second start finds only what the mount kept
        return _docker_terminal(dockerd, "devcontainer", label, [cli[0], "exec", *cli[1:], "claude", *claude_args])

    try:
        conversation(start, bridged, upstream, name)
    finally:
        ids = dockerd.docker("ps", "-aq", "--filter", f"label=devcontainer.local_folder={project}", check=False)
        if ids.stdout.split():
            dockerd.docker("rm", "-f", *ids.stdout.split(), check=False)
