"""What the sandbox commands say when a person gets something wrong, with the real CLI.

Each message says what happened and the command that fixes it: the quick start's `--new` run a
second time, a bad name (with and without a running broker), `revoke --all` (which deletes every
sandbox's history, so it says so and asks on a terminal), and `docker-args --help`.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.fakes.broker_process import REPO, BrokerProcess

SETTINGS = {"listen": ["127.0.0.1:0"], "docker_bridge": "ibnobridge0", "token_url": "http://127.0.0.1:1/t",
            "upstream_url": "http://127.0.0.1:1"}


@pytest.fixture
def broker(tmp_path: Path) -> BrokerProcess:
    return BrokerProcess(tmp_path / "broker", settings=dict(SETTINGS))


@pytest.mark.parametrize("running", [False, True], ids=["no broker", "through the broker"])
def test_new_twice_says_drop_new(broker: BrokerProcess, running: bool) -> None:
    if running:
        broker.start()
    try:
        first = broker.cli("docker-args", "box", "--new", "--port", "8765")
        again = broker.cli("docker-args", "box", "--new", "--port", "8765")
        add = broker.cli("sandbox", "add", "box")
        bad = broker.cli("sandbox", "add", "bad name!")
    finally:
        broker.stop()
    assert first.returncode == 0, first.stderr
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr.endswith("Cannot create the sandbox: sandbox 'box' already exists: to wire a container to it "
                            "again, drop `--new` (`inference-broker docker-args box`); for a new key, "
                            "`inference-broker sandbox rotate box`\n"), again.stderr
    assert add.returncode == 1 and "drop `--new`" in add.stderr
    assert bad.returncode == 1 and bad.stderr.startswith("Cannot create the sandbox: bad sandbox name 'bad name!'")
    assert "Sandbox key" not in again.stderr + add.stderr + bad.stderr


def test_rotate_and_budget_of_a_missing_sandbox_say_so(broker: BrokerProcess) -> None:
    rotate = broker.cli("sandbox", "rotate", "ghost")
    budget = broker.cli("sandbox", "budget", "ghost", "2M/5h")
    assert rotate.returncode == budget.returncode == 1
    assert rotate.stderr.startswith("Cannot give the sandbox a new key: no sandbox named 'ghost'")
    assert budget.stderr.startswith("Cannot set the budget: no sandbox named 'ghost'")


def test_docker_args_help_does_not_promise_a_printed_key(broker: BrokerProcess) -> None:
    text = broker.cli("docker-args", "--help").stdout
    assert "prints its new key" not in text and "print its new key" not in text
    assert "never to the screen" in " ".join(text.split())


def two_sandboxes(broker: BrokerProcess) -> Path:
    broker.add_sandbox("alpha")
    broker.add_sandbox("beta")
    return broker.state_dir / "sandboxes"


def names(broker: BrokerProcess) -> list[str]:
    return [line.split()[0] for line in broker.cli("sandbox", "list", check=True).stdout.splitlines()
            if line and not line.startswith("no sandboxes")]


def test_revoke_all_without_a_terminal_needs_yes(broker: BrokerProcess) -> None:
    dirs = two_sandboxes(broker)
    refused = broker.cli("revoke", "--all", input="y\n")  # a pipe, not a person
    assert refused.returncode == 1
    assert (f"revoke --all deletes 2 sandbox(es) (alpha, beta): their keys stop working at once, and their Claude "
            f"Code dirs under {dirs} (conversation history, settings) are removed.") in refused.stderr
    assert "add --yes to go ahead" in refused.stderr and "nothing revoked" in refused.stderr
    assert names(broker) == ["alpha", "beta"] and sorted(p.name for p in dirs.iterdir()) == ["alpha", "beta"]
    done = broker.cli("sandbox", "revoke", "--all", "--yes")
    assert done.returncode == 0 and "deletes 2 sandbox(es)" in done.stderr
    assert names(broker) == [] and list(dirs.iterdir()) == []


def on_a_terminal(broker: BrokerProcess, answer: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with a pseudo-terminal as its stdin, as a person types `answer`."""
    leader, follower = os.openpty()
    try:
        os.write(leader, answer.encode())
        return subprocess.run(broker.argv(*args), env=broker.env, cwd=REPO, stdin=follower, capture_output=True,
                              text=True, timeout=30)
    finally:
        os.close(follower)
        os.close(leader)


@pytest.mark.parametrize("running", [False, True], ids=["no broker", "through the broker"])
def test_revoke_all_asks_on_a_terminal(broker: BrokerProcess, running: bool) -> None:
    two_sandboxes(broker)
    if running:
        broker.start()
    try:
        kept = on_a_terminal(broker, "\n", "revoke", "--all")  # Enter: the default is No
        assert kept.returncode == 1 and "Revoke all 2? [y/N]" in kept.stdout and "nothing revoked" in kept.stderr
        assert names(broker) == ["alpha", "beta"]
        gone = on_a_terminal(broker, "y\n", "revoke", "--all")
        assert gone.returncode == 0, gone.stderr
        assert names(broker) == []
    finally:
        broker.stop()
    assert not any(key in kept.stdout + kept.stderr + gone.stdout + gone.stderr for key in broker.issued)


def test_revoke_all_with_nothing_to_revoke_asks_nothing(broker: BrokerProcess) -> None:
    done = broker.cli("revoke", "--all")
    assert done.returncode == 0 and "[y/N]" not in done.stdout and "add --yes" not in done.stderr
