"""Every credential source passes the same contract (after keyring's testing/backend.py).

File, Claude Code's Keychain item (through a real Secret Service), and the broker's own
setup-token: load what is stored, save losslessly, report changes, and say why when unusable.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from broker.login.claude_locks import STORAGE_LOCK, HostLocks
from broker.login.file_store import FileSource
from broker.login.keychain_store import KeychainSource, KeyringSecretSource, SecretStore, claude_keychain_service
from broker.login.credentials import parse_login, serialize_login
from broker.login import writeback as wb
from broker.common.errors import CredentialsError, RefreshError
from tests.fakes.login import claude_login_doc
from tests.secret_service import secret_service


@pytest.fixture(scope="module")
def keyring_env(tmp_path_factory):
    with secret_service(tmp_path_factory.mktemp("secrets")) as env:
        yield env


def login_json(access: str = "sk-ant-oat01-" + "a" * 40, refresh: str = "sk-ant-ort01-" + "b" * 40) -> str:
    return json.dumps(claude_login_doc(access, refresh, int((time.time() + 3600) * 1000)))


class Harness:
    """How to put raw bytes into a source from outside (as the host's Claude Code would)."""

    def __init__(self, source, put, get, oauth: bool = True) -> None:
        self.source, self.put, self.get, self.oauth = source, put, get, oauth


def make_harness(request, tmp_path, kind: str) -> Harness:
    n = request.node.name.encode().hex()[-12:]
    if kind == "file":
        path = tmp_path / ".credentials.json"
        return Harness(FileSource(path), path.write_text, path.read_text)
    request.getfixturevalue("keyring_env")
    if kind == "keychain":
        store = SecretStore(f"Claude Code-credentials-test-{n}", "tester", platform="linux")
        return Harness(KeychainSource(store, poll_seconds=0.05, locks=HostLocks(tmp_path)), store.set, store.get)
    store = SecretStore(f"inference-broker-test-{n}", "setup-token", platform="linux")
    return Harness(KeyringSecretSource(store, poll_seconds=0.05), store.set, store.get, oauth=False)


@pytest.fixture(params=["file", "keychain", "setup-token"])
def harness(request, tmp_path):
    return make_harness(request, tmp_path, request.param)


@pytest.fixture(params=["file", "keychain"])
def shared_store(request, tmp_path):
    """A source the host's Claude Code writes too: the write-back contract."""
    return make_harness(request, tmp_path, request.param)


def test_empty_source_has_no_login(harness):
    assert harness.source.unavailable() is None
    assert harness.source.load() is None


def test_loads_what_the_host_stored(harness):
    if harness.oauth:
        harness.put(login_json())
        login = harness.source.load()
        assert login.access_token.startswith("sk-ant-oat01-") and login.refresh_token.startswith("sk-ant-ort01-")
        assert login.subscription_type == "max"
    else:
        harness.put("sk-ant-oat01-" + "c" * 40)
        login = harness.source.load()
        assert login.access_token == "sk-ant-oat01-" + "c" * 40 and login.refresh_token is None
        assert harness.source.refreshable is False


def test_save_round_trips_and_keeps_unknown_fields(harness):
    if harness.oauth:
        harness.put(login_json())
        rotated = harness.source.load().rotated("sk-ant-oat01-" + "n" * 40, "sk-ant-ort01-" + "m" * 40, 2_000_000_000.0)
        harness.source.save(rotated)
        doc = json.loads(harness.get())
        assert doc["claudeAiOauth"]["accessToken"] == "sk-ant-oat01-" + "n" * 40
        assert doc["claudeAiOauth"]["expiresAt"] == 2_000_000_000_000
        assert doc["mcpOAuth"] and doc["organizationUuid"] == "org-uuid-1" and doc["futureField"] == [1, 2, 3]
        assert doc["claudeAiOauth"]["somethingNew"] is True
    else:
        harness.put("sk-ant-oat01-" + "c" * 40)
        harness.source.save(harness.source.load())
        assert harness.get() == "sk-ant-oat01-" + "c" * 40
    assert harness.source.load() is not None


def test_unusable_content_is_handled(harness):
    if harness.oauth:  # half-written JSON: a clear error, so the manager keeps the last good token
        harness.put('{"claudeAiOauth": {"accessTok')
        with pytest.raises(CredentialsError, match="not valid JSON"):
            harness.source.load()
    else:  # a blank secret is no login at all
        harness.put("   ")
        assert harness.source.load() is None


def test_watch_reports_a_change(harness):
    changed = threading.Event()
    stop = harness.source.watch(changed.set)
    try:
        time.sleep(0.2)  # let the watcher settle (inotify) or take its first reading (poll)
        harness.put(login_json() if harness.oauth else "sk-ant-oat01-" + "z" * 40)
        assert changed.wait(3.0), "no change reported within 3 s"
    finally:
        stop()


def test_label_names_where_not_what(harness):
    harness.put(login_json() if harness.oauth else "sk-ant-oat01-" + "c" * 40)
    assert "sk-ant" not in harness.source.label


def test_claude_keychain_service_name_follows_claude_code():
    assert claude_keychain_service({}) == "Claude Code-credentials"
    import hashlib
    import unicodedata

    d = "/home/me/.claude-work"
    want = hashlib.sha256(unicodedata.normalize("NFC", d).encode()).hexdigest()[:8]
    assert claude_keychain_service({"CLAUDE_CONFIG_DIR": d}) == f"Claude Code-credentials-{want}"


def test_keyring_unavailable_says_why(monkeypatch):
    import keyring
    from keyring.backends import fail

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        why = KeychainSource(SecretStore("x", "y", platform="linux")).unavailable()
        assert why and "keyring" in why
    finally:
        keyring.set_keyring(previous)


def test_serialized_login_parses_back():
    login = parse_login(login_json())
    assert parse_login(serialize_login(login)).access_token == login.access_token


def test_write_back_replaces_the_pair_it_was_refreshed_from(shared_store):
    shared_store.put(login_json())
    base = shared_store.source.load()
    new = base.rotated("sk-ant-oat01-" + "n" * 40, "sk-ant-ort01-" + "m" * 40, time.time() + 8 * 3600)
    assert shared_store.source.write_back(base, new).action == wb.WRITE
    stored = json.loads(shared_store.get())
    assert stored["claudeAiOauth"]["refreshToken"] == "sk-ant-ort01-" + "m" * 40 and stored["mcpOAuth"]
    assert not (shared_store.source.locks.dir / STORAGE_LOCK).exists()  # taken and given back


def test_write_back_never_overwrites_a_newer_login(shared_store):
    shared_store.put(login_json())
    base = shared_store.source.load()
    shared_store.put(login_json("sk-ant-oat01-" + "h" * 40, "sk-ant-ort01-" + "h" * 40))  # `claude /login`
    decision = shared_store.source.write_back(base, base.rotated("sk-ant-oat01-x", "sk-ant-ort01-x", None))
    assert decision.action == wb.KEEP_THEIRS and decision.theirs.refresh_token == "sk-ant-ort01-" + "h" * 40
    assert json.loads(shared_store.get())["claudeAiOauth"]["refreshToken"] == "sk-ant-ort01-" + "h" * 40


def test_write_back_restores_a_store_claude_code_cleared(shared_store):
    shared_store.put(login_json())
    base = shared_store.source.load()
    doc = json.loads(shared_store.get())
    doc["claudeAiOauth"].update(accessToken="", refreshToken="", expiresAt=0)
    shared_store.put(json.dumps(doc))
    new = base.rotated("sk-ant-oat01-" + "n" * 40, "sk-ant-ort01-" + "m" * 40, time.time() + 8 * 3600)
    assert shared_store.source.write_back(base, new).action == wb.RESTORE
    assert shared_store.source.load().refresh_token == "sk-ant-ort01-" + "m" * 40


def test_write_back_waits_for_claude_codes_store_lock(shared_store):
    shared_store.put(login_json())
    base = shared_store.source.load()
    lock = shared_store.source.locks.dir / STORAGE_LOCK
    lock.mkdir()  # Claude Code is writing (a fresh lock)
    with pytest.raises(RefreshError, match="Claude Code is writing"):
        shared_store.source.write_back(base, base.rotated("sk-ant-oat01-x", "sk-ant-ort01-x", None), wait=0.3)
    assert lock.is_dir() and shared_store.source.load().refresh_token == base.refresh_token
