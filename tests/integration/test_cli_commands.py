"""`doctor`, `status` with no broker running, `login` and `autostart`, as a user runs them.

Each command is the real CLI in its own process (`python -m broker ...`) with a private HOME,
config and Claude login; `login` stores into a real Secret Service. Every output is searched
for the tokens it must never show.
"""

from __future__ import annotations

import configparser
import json
import os
import secrets
import shlex
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from broker.login import pending
from broker.login.credentials import parse_login
from broker.login.keychain_store import SecretStore
from broker.login.pending_file import PendingFile
from broker.common.redact import fingerprint
from tests.fakes.broker_process import BrokerProcess
from tests.fakes.login import write_login
from tests.fakes.threaded import serve_in_thread
from tests.fakes.token_endpoint import FakeTokenEndpoint, new_access, new_refresh
from tests.secret_service import secret_service


@dataclass
class Offline:
    """A broker's files and config, with a Claude login good for 8 hours, and no broker running."""

    broker: BrokerProcess
    access: str
    refresh: str


@pytest.fixture
def offline(tmp_path: Path) -> Offline:
    # docker_bridge: a name no interface has, so a docker0 of this machine's does not change what doctor says
    o = Offline(BrokerProcess(tmp_path / "broker", settings={"docker_bridge": "ibnobridge0"}), new_access(),
                new_refresh())
    write_login(o.broker.creds, o.access, o.refresh, time.time() + 8 * 3600)
    return o


def shown(*outputs: subprocess.CompletedProcess[str]) -> str:
    return "\n".join(f"{o.stdout}\n{o.stderr}" for o in outputs)


def assert_not_shown(text: str, *secrets_: str) -> None:
    for i, secret in enumerate(secrets_):
        assert secret not in text, f"secret #{i} ({secret[:12]}...) was shown"


# -- doctor -------------------------------------------------------------------------------


def test_doctor_finds_a_private_login_and_no_problem(offline: Offline) -> None:
    done = offline.broker.cli("doctor")
    assert done.returncode == 1, shown(done)  # a warning: the broker is not running
    out = done.stdout
    assert f"[ok  ] file:{offline.broker.creds}: max plan login found, expires in 4" in out  # 479 min: 7 h 59
    assert "with a refresh token" in out and f"[ok  ] {offline.broker.creds} is private (mode 0600)" in out
    assert "[WARN] the broker is not running: sandboxes get \"connection refused\"\n       fix: start it with " \
           "`inference-broker run`" in out
    assert out.rstrip().endswith("\n1 warning(s)") and "[FAIL]" not in out
    assert_not_shown(shown(done), offline.access, offline.refresh)


def test_doctor_fails_on_a_login_other_users_can_read(offline: Offline) -> None:
    os.chmod(offline.broker.creds, 0o644)  # seen in the wild
    done = offline.broker.cli("doctor")
    assert done.returncode == 1
    assert f"[FAIL] {offline.broker.creds} is mode 0644: other users can read your Claude login" in done.stdout
    assert f"fix: chmod 600 {offline.broker.creds}" in done.stdout and "1 problem(s), 1 warning(s)" in done.stdout
    assert stat.S_IMODE(offline.broker.creds.stat().st_mode) == 0o644  # doctor says; it changes nothing
    findings = json.loads(offline.broker.cli("doctor", "--json").stdout)
    assert {"level": "problem", "what": f"{offline.broker.creds} is mode 0644: other users can read your Claude login",
            "fix": f"chmod 600 {offline.broker.creds}"} in findings
    assert_not_shown(shown(done), offline.access, offline.refresh)


def test_status_and_doctor_with_no_broker_tell_of_a_login_the_broker_saved_but_never_wrote_back(
        offline: Offline) -> None:
    """A broker killed between the token endpoint's answer and the write-back left its record."""
    stale = parse_login(offline.broker.creds.read_text())
    new = stale.rotated(new_access(), new_refresh(), time.time() + 8 * 3600)
    record = pending.after_refresh(None, stale, new, f"file:{offline.broker.creds}", time.time())
    PendingFile(offline.broker.state_dir / "pending-login.json").save(record)
    status, doctor = offline.broker.cli("status", "--json"), offline.broker.cli("doctor")
    token = json.loads(status.stdout)["token"]
    assert token["fingerprint"] == fingerprint(new.access_token)  # what the broker will serve
    assert token["writeback_problem"].startswith(f"the login could not be written back to file:{offline.broker.creds}")
    assert doctor.returncode == 1 and "[FAIL] the login could not be written back to" in doctor.stdout
    assert "the broker holds the current login" in doctor.stdout and "inference-broker run" in doctor.stdout
    assert (offline.broker.state_dir / "pending-login.json").exists()  # the commands change nothing
    assert_not_shown(shown(status, doctor), offline.access, offline.refresh, new.access_token, new.refresh_token)


def test_doctor_without_a_login_says_how_to_log_in(tmp_path: Path) -> None:
    done = BrokerProcess(tmp_path / "broker").cli("doctor")
    assert done.returncode == 1
    assert "[FAIL] no Claude login found\n       fix: run `claude /login` on the host" in done.stdout


def test_doctor_checks_a_running_broker_and_a_sandbox(offline: Offline) -> None:
    endpoint = FakeTokenEndpoint()
    access, refresh = endpoint.issue()
    write_login(offline.broker.creds, access, refresh, time.time() + 8 * 3600)
    with serve_in_thread(endpoint.make_app) as token_url:
        offline.broker.settings["token_url"] = f"{token_url}/v1/oauth/token"
        with offline.broker as broker:
            key = broker.add_sandbox("box")
            done = broker.cli("doctor", "--sandbox", "box")
            missing = broker.cli("doctor", "--sandbox", "nobody")
    assert done.returncode == 0, shown(done)
    assert f"[ok  ] the broker is running on {broker.bound[0]}" in done.stdout
    assert "[ok  ] token valid: token valid for 7 h" in done.stdout
    assert "[ok  ] sandbox 'box' has a key" in done.stdout
    assert "[ok  ] sandbox 'box': its Claude Code dir " in done.stdout and "holds its current key" in done.stdout
    assert f"[ok  ] http://{broker.bound[0]}/ answers (200)" in done.stdout
    assert missing.returncode == 1
    assert "[FAIL] no sandbox named 'nobody'\n       fix: `inference-broker docker-args nobody --new`" in missing.stdout
    assert_not_shown(shown(done, missing) + broker.output_text(), key, access, refresh)
    assert endpoint.problems == []


def test_doctor_finds_a_sandbox_dir_that_is_stale_open_or_gone(offline: Offline) -> None:
    broker = offline.broker
    key = broker.add_sandbox("box")  # no broker running: key store and dir written directly
    where = broker.state_dir / "sandboxes" / "box"
    creds = where / ".credentials.json"
    old = creds.read_bytes()
    broker.cli("sandbox", "rotate", "box", check=True)
    creds.write_bytes(old)  # the dir still holds the key from before the rotation
    creds.chmod(0o644)
    stale = broker.cli("doctor", "--sandbox", "box")
    assert stale.returncode == 1
    assert "[FAIL] sandbox 'box': its Claude Code dir holds a key that is no longer the sandbox's" in stale.stdout
    assert f"[FAIL] {creds} is readable by other users\n       fix: chmod 600 {creds}" in stale.stdout
    assert "docker-args box --rotate` writes it with a new key" in stale.stdout
    for f in where.iterdir():
        f.unlink()
    where.rmdir()
    gone = broker.cli("doctor", "--sandbox", "box")
    assert gone.returncode == 1 and f"[FAIL] sandbox 'box' has no Claude Code dir ({where})" in gone.stdout
    assert_not_shown(shown(stale, gone), key)


# -- status with no broker running ----------------------------------------------------------


def test_offline_status_reads_the_login_itself(offline: Offline) -> None:
    key = offline.broker.add_sandbox("box")  # no broker: written to the key store directly
    text = offline.broker.cli("status", check=True)
    lines = text.stdout.splitlines()
    assert lines[0] == "broker:   not running (start it with `inference-broker run`) — provider anthropic-oauth"
    assert lines[1].startswith("token:    valid (max plan): token valid for 7 h")
    access = offline.access
    assert f"from file:{offline.broker.creds}, fingerprint {fingerprint(access)}, refresh mode own" in text.stdout
    assert "sandboxes: 1" in text.stdout and "box" in text.stdout and "never" in text.stdout

    doc = json.loads(offline.broker.cli("status", "--json", check=True).stdout)
    assert doc["running"] is False and doc["listen"] == [] and doc["proxy"]["paused"] is False
    assert doc["token"]["state"] == "valid" and doc["token"]["source"] == f"file:{offline.broker.creds}"
    assert doc["token"]["fingerprint"] == fingerprint(access) and doc["token"]["subscription_type"] == "max"
    assert [s["name"] for s in doc["sandboxes"]] == ["box"]
    assert not (offline.broker.state_dir / "broker.sock").exists()  # it started nothing
    assert_not_shown(shown(text) + json.dumps(doc), key, access, offline.refresh)


def test_offline_status_when_signed_out(tmp_path: Path) -> None:
    done = BrokerProcess(tmp_path / "broker").cli("status", "--json", check=True)
    token = json.loads(done.stdout)["token"]
    assert token["state"] == "signed_out" and token["fingerprint"] is None
    assert "claude /login" in token["reason"]


# -- login --setup-token --------------------------------------------------------------------


@pytest.fixture
def keyring_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    with secret_service(tmp_path / "secrets") as env:
        yield {**env, "PYTHON_KEYRING_BACKEND": "keyring.backends.SecretService.Keyring"}


def test_login_setup_token_stores_it_in_the_keyring_and_the_broker_uses_it(
        offline: Offline, keyring_env: dict[str, str]) -> None:
    broker = offline.broker
    broker.env_extra.update(keyring_env)
    broker.settings["credentials"] = {"file": str(broker.creds)}  # the profile's order: setup token first
    token = "sk-ant-oat01-" + secrets.token_urlsafe(40)
    store = SecretStore("inference-broker", "setup-token", platform="linux")

    done = broker.cli("login", "--setup-token", input=token + "\n", check=True)
    assert f"setup token stored in the keyring (fingerprint {fingerprint(token)})" in done.stdout
    assert store.get() == token
    marker = broker.state_dir / "setup-token.enabled"
    assert stat.S_IMODE(marker.stat().st_mode) == 0o600

    st = json.loads(broker.cli("status", "--json", check=True).stdout)["token"]
    assert st["source"] == "keyring:inference-broker/setup-token" and st["fingerprint"] == fingerprint(token)
    assert st["state"] == "valid" and st["reason"] == "long-lived token (no expiry recorded)"

    # Bad input is refused with a reason, and the stored token stays.
    spaced = broker.cli("login", "--setup-token", input="two words\n")
    api_key = broker.cli("login", "--setup-token", input="sk-ant-api03-" + "x" * 40 + "\n")
    assert spaced.returncode == api_key.returncode == 1
    assert "expected one token on standard input, with no spaces" in spaced.stderr
    assert "does not look like a Claude OAuth token" in api_key.stderr and "Traceback" not in api_key.stderr
    assert store.get() == token and marker.exists()

    out = broker.cli("login", "--logout", check=True)
    assert "setup token forgotten" in out.stdout
    assert store.get() is None and not marker.exists()
    back = json.loads(broker.cli("status", "--json", check=True).stdout)["token"]
    assert back["source"] == f"file:{broker.creds}"
    assert_not_shown(shown(done, spaced, api_key, out), token)


def test_login_api_key_is_what_the_anthropic_profile_serves(tmp_path: Path, keyring_env: dict[str, str]) -> None:
    broker = BrokerProcess(tmp_path / "broker", {"provider": "anthropic", "credentials": {}}, env_extra=keyring_env)
    before = json.loads(broker.cli("status", "--json", check=True).stdout)["token"]
    assert before["state"] == "signed_out" and "inference-broker login --api-key" in before["reason"]

    key = "sk-ant-api03-" + secrets.token_urlsafe(40)
    wrong = broker.cli("login", "--api-key", input="sk-ant-oat01-" + "x" * 40 + "\n")
    assert wrong.returncode == 1 and "does not look like an Anthropic API key" in wrong.stderr
    done = broker.cli("login", "--api-key", input=key + "\n", check=True)
    assert f"API key stored in the keyring (fingerprint {fingerprint(key)})" in done.stdout
    assert SecretStore("inference-broker", "anthropic-api-key", platform="linux").get() == key

    st = json.loads(broker.cli("status", "--json", check=True).stdout)
    assert st["provider"] == "anthropic" and st["token"]["state"] == "valid"
    assert st["token"]["source"] == "keyring:inference-broker/anthropic-api-key"
    assert st["token"]["fingerprint"] == fingerprint(key)
    assert_not_shown(shown(wrong, done) + json.dumps(st), key)


# -- autostart ------------------------------------------------------------------------------


def test_autostart_writes_a_login_item_that_starts_this_broker(offline: Offline) -> None:
    entry = offline.broker.home / ".config" / "autostart" / "inference-broker.desktop"
    assert offline.broker.cli("autostart", "status", check=True).stdout.strip() == f"Launch at login: off ({entry})"

    on = offline.broker.cli("autostart", "enable", check=True)
    assert on.stdout.strip() == f"Launch at login: on ({entry})"
    desktop = configparser.ConfigParser(interpolation=None)
    desktop.read_string(entry.read_text())
    argv = shlex.split(desktop["Desktop Entry"]["Exec"])
    # A login session has none of this shell's environment: the item names the config file.
    assert argv[1:] == ["-m", "broker", "--config", str(offline.broker.config_path), "run"]
    assert offline.broker.cli("autostart", "status", check=True).stdout.strip() == f"Launch at login: on ({entry})"

    # Run the item's own command (with `status` for `run`) without the config in the environment.
    env = {k: v for k, v in offline.broker.env.items() if k != "INFERENCE_BROKER_CONFIG"}
    status = subprocess.run([*argv[:-1], "status", "--json"], env=env, capture_output=True, text=True, timeout=30)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["token"]["source"] == f"file:{offline.broker.creds}"

    off = offline.broker.cli("autostart", "disable", check=True)
    assert off.stdout.strip() == f"Launch at login: off (removed {entry})"
    assert not entry.exists()
