"""`doctor` on what a first run trips over, each with the real CLI in its own process.

A broker that is not running, a port another program holds, listening where containers cannot
reach (a bridge of the test's own stands in for docker0), a sandbox dir the container's user
cannot read, a stand-in login showing an old plan; and the config path it read. Any warning
makes it exit 1. The real broker (`run --no-tray`) shows the fix: it brings the plan up to date.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.broker_process import BrokerProcess
from tests.fakes.eventually import eventually
from tests.fakes.login import write_login
from tests.fakes.token_endpoint import new_access, new_refresh
from tests.support import require_root, require_tools

NO_BRIDGE = {"docker_bridge": "ibnobridge0"}  # whatever docker0 this machine has, not these tests'
NOWHERE = {"token_url": "http://127.0.0.1:1/v1/oauth/token", "upstream_url": "http://127.0.0.1:1"}


def broker_at(root: Path, **settings: object) -> BrokerProcess:
    return BrokerProcess(root, settings={**NO_BRIDGE, **NOWHERE, **settings})


def logged_in(broker: BrokerProcess) -> tuple[str, str]:
    access, refresh = new_access(), new_refresh()
    write_login(broker.creds, access, refresh, time.time() + 8 * 3600)
    return access, refresh


def findings(done: subprocess.CompletedProcess[str]) -> str:
    return done.stdout + done.stderr


def test_a_broker_that_is_not_running_is_a_warning_and_fails(tmp_path: Path) -> None:
    broker = broker_at(tmp_path)
    secrets = logged_in(broker)
    done = broker.cli("doctor")
    assert done.returncode == 1, findings(done)
    assert ('[WARN] the broker is not running: sandboxes get "connection refused"\n'
            "       fix: start it with `inference-broker run`") in done.stdout
    assert done.stdout.rstrip().endswith("1 warning(s)")
    assert json.loads(broker.cli("doctor", "--json").stdout)[0]["what"] == f"config: {broker.config_path}"
    assert not any(s in findings(done) for s in secrets)


def test_it_prints_the_config_path_it_read_or_would_read(tmp_path: Path) -> None:
    broker = broker_at(tmp_path)
    assert f"[ok  ] config: {broker.config_path}\n" in broker.cli("doctor").stdout
    env = {k: v for k, v in broker.env.items() if k != "INFERENCE_BROKER_CONFIG"}  # the default place
    done = subprocess.run(broker.argv("doctor"), env=env, capture_output=True, text=True, timeout=30)
    default = broker.home / ".config" / "inference-broker" / "config.yaml"
    assert f"[ok  ] config: {default} (not there: the defaults apply; create it to change them)" in done.stdout
    assert "defaults\n" not in done.stdout


def test_a_port_another_program_holds(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        broker = broker_at(tmp_path, listen=[f"127.0.0.1:{port}"])
        logged_in(broker)
        done = broker.cli("doctor")
        started = subprocess.run(broker.argv("run", "--no-tray"), env=broker.env, capture_output=True, text=True,
                                 timeout=30)
    assert done.returncode == 1
    assert (f"[WARN] port {port} on 127.0.0.1 is taken by another program: the broker cannot start there\n"
            f"       fix: stop it (`ss -ltnp 'sport = :{port}'` names it), or choose another port in `listen` in "
            f"{broker.config_path}") in done.stdout
    assert started.returncode != 0  # what doctor foretold
    free = broker.cli("doctor")
    assert f"[ok  ] 127.0.0.1:{port} is free for the broker" in free.stdout


@pytest.fixture
def bridge() -> Iterator[tuple[str, str]]:
    """A bridge with a link-local address, standing in for docker0: (name, address)."""
    require_root()
    require_tools("ip")
    name = f"ibdoc{os.getpid() % 10000}"
    address = f"169.254.{150 + os.getpid() % 100}.{1 + 4 * (os.getpid() % 60)}"
    subprocess.run(["ip", "link", "del", name], capture_output=True)
    for args in (["link", "add", name, "type", "bridge"], ["addr", "add", f"{address}/30", "dev", name],
                 ["link", "set", name, "up"]):
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)
    try:
        yield name, address
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True, timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_listening_where_containers_cannot_reach_names_the_configured_port(tmp_path: Path,
                                                                             bridge: tuple[str, str]) -> None:
    name, address = bridge
    port = free_port()
    broker = broker_at(tmp_path, listen=[f"127.0.0.1:{port}"], docker_bridge=name)
    logged_in(broker)
    stopped = broker.cli("doctor")
    with broker:
        running = broker.cli("doctor")
    assert stopped.returncode == running.returncode == 1
    said = (f"containers cannot reach the broker: it listens on 127.0.0.1:{port}, and containers of the Linux "
            f"docker engine reach the host only on its bridge ({address})")
    assert f"[WARN] {said}\n       fix: add `docker:{port}` to `listen` in {broker.config_path} (Docker" in stopped.stdout
    assert f"add `docker:{port}` to `listen` in {broker.config_path} and restart the broker" in running.stdout
    assert "8766" not in stopped.stdout + running.stdout

    broker.settings["listen"] = [f"127.0.0.1:{port}", f"docker:{port}"]
    broker.write_config()
    with broker:
        wired = broker.cli("doctor")
    assert f"[ok  ] containers can reach the broker on the docker bridge ({address})" in wired.stdout
    assert wired.returncode == 0, wired.stdout


def test_a_sandbox_dir_the_containers_user_cannot_read(tmp_path: Path) -> None:
    require_root()  # handing a dir to uid 1000 takes root, as it does for a user's broker run as root
    broker = broker_at(tmp_path, listen=[f"127.0.0.1:{free_port()}"])
    logged_in(broker)
    key = broker.add_sandbox("box")
    where = broker.state_dir / "sandboxes" / "box"
    plain = broker.cli("doctor", "--sandbox", "box")
    assert ("[ok  ] sandbox 'box': its Claude Code dir belongs to uid 0, so its container must run as uid 0 (or "
            "root); `doctor --sandbox box --image IMAGE` (or --uid UID) checks the user an image runs as") in plain.stdout
    assert "`inference-broker sandbox check box --image IMAGE` (it names the step that fails)" in plain.stdout
    node = broker.cli("doctor", "--sandbox", "box", "--uid", "1000")
    assert node.returncode == 1
    assert (f"[FAIL] sandbox 'box': a container running as uid 1000 cannot use {where}, {where}/.credentials.json, "
            f"{where}/.claude.json (owned by uid 0)") in node.stdout
    assert "fix: `inference-broker docker-args box --rotate --uid 1000` hands it to uid 1000" in node.stdout
    broker.cli("docker-args", "box", "--rotate", "--uid", "1000", check=True)  # the fix it named
    fixed = broker.cli("doctor", "--sandbox", "box", "--uid", "1000")
    assert "[ok  ] sandbox 'box': a container running as uid 1000 can use its Claude Code dir" in fixed.stdout
    assert "[FAIL]" not in fixed.stdout, fixed.stdout
    root = broker.cli("doctor", "--sandbox", "box", "--uid", "0")
    assert "a container running as uid 0 can use its Claude Code dir" in root.stdout
    alone = broker.cli("doctor", "--uid", "1000")
    assert alone.returncode == 1 and "--uid and --image go with --sandbox NAME" in alone.stderr
    assert key not in findings(plain) + findings(node) + findings(fixed)


def stand_in(broker: BrokerProcess, name: str) -> dict:
    return json.loads((broker.state_dir / "sandboxes" / name / ".credentials.json").read_text())["claudeAiOauth"]


def test_a_sandbox_made_before_the_login_follows_its_plan_once_the_broker_adopts_it(tmp_path: Path) -> None:
    broker = broker_at(tmp_path)
    key = broker.add_sandbox("early")  # no login yet: the stand-in shows no plan ("Claude API")
    assert "subscriptionType" not in stand_in(broker, "early")
    access, refresh = logged_in(broker)  # then `claude /login` on the host
    stale = broker.cli("doctor", "--sandbox", "early")
    assert stale.returncode == 1
    assert ("[WARN] sandbox 'early' shows no plan (\"Claude API\") while your login is on the max plan\n"
            "       fix: start the broker (`inference-broker run`): it brings every sandbox's plan up to date and "
            "keeps its key") in stale.stdout
    with broker:
        eventually(lambda: stand_in(broker, "early").get("subscriptionType") == "max", 10, "the plan in the sandbox")
        fresh = broker.cli("doctor", "--sandbox", "early")
    oauth = stand_in(broker, "early")
    assert oauth["accessToken"] == key and oauth["rateLimitTier"] == "default_claude_max_20x"  # same key
    assert "shows no plan" not in fresh.stdout and fresh.returncode == 0, fresh.stdout
    assert "sandbox(es) early now show the max plan" in broker.output_text()
    assert not any(s in findings(stale) + findings(fresh) + broker.output_text() for s in (key, access, refresh))


def test_a_broker_started_signed_out_says_claude_login_and_adopts_the_plan_for_its_sandboxes(tmp_path: Path) -> None:
    broker = broker_at(tmp_path)
    with broker:
        key = broker.add_sandbox("box")  # made through the running broker, before any login
        assert "subscriptionType" not in stand_in(broker, "box")
        log = broker.output_text()
        assert "token signed_out" in log and "run `claude /login` on the host" in log
        logged_in(broker)  # the login appears: the broker's watcher adopts it
        eventually(lambda: stand_in(broker, "box").get("subscriptionType") == "max", 15, "the plan in the sandbox")
    assert stand_in(broker, "box")["accessToken"] == key


def test_what_a_sandbox_plants_in_its_stand_in_is_not_repeated_or_followed(tmp_path: Path) -> None:
    broker = broker_at(tmp_path)
    key = broker.add_sandbox("box")
    logged_in(broker)
    creds = broker.state_dir / "sandboxes" / "box" / ".credentials.json"
    doc = json.loads(creds.read_text())
    doc["claudeAiOauth"]["subscriptionType"] = "\x1b]0;owned\x07\x1b[2J"  # the sandbox writes this dir
    creds.write_text(json.dumps(doc))
    planted = broker.cli("doctor", "--sandbox", "box")
    assert "[WARN] sandbox 'box' shows a plan with an unreadable name while your login is on the max plan" \
        in planted.stdout
    assert "\x1b" not in planted.stdout + planted.stderr
    creds.unlink()
    creds.symlink_to(broker.creds)  # a link to the host's own login: never read through
    linked = broker.cli("doctor", "--sandbox", "box")
    assert "shows" not in linked.stdout and "sk-ant-" not in linked.stdout + linked.stderr
    assert key not in planted.stdout + linked.stdout
