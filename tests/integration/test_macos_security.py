"""The macOS Keychain path, driven through a stand-in for /usr/bin/security.

macOS is not available here, so a small script plays `security`: it keeps generic passwords in
a JSON file, understands `find-generic-password -w` and `-i` with `add-generic-password -U -X`
and `delete-generic-password` on stdin, and records every argv it was called with. That proves
the broker's side of the protocol: the secret only ever travels on stdin, hex-encoded, and reads
decode what Claude Code wrote.
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from broker.login.keychain_store import KeychainSource, SecretStore
from tests.fakes.login import claude_login_doc

FAKE_SECURITY = r'''#!PYTHON
import json, shlex, sys
store_path, argv_log = "STORE", "ARGV"
with open(argv_log, "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\n")
try:
    store = json.load(open(store_path))
except FileNotFoundError:
    store = {}

def opt(args, flag):
    return args[args.index(flag) + 1] if flag in args else None

def run(args):
    cmd = args[0]
    key = f"{opt(args, '-s')}|{opt(args, '-a')}"
    if cmd == "find-generic-password":
        if key not in store:
            sys.stderr.write("The specified item could not be found in the keychain.\n")
            return 44
        print(store[key])
        return 0
    if cmd == "add-generic-password":
        if key in store and "-U" not in args:
            return 45  # errSecDuplicateItem
        value = bytes.fromhex(opt(args, "-X")).decode() if "-X" in args else opt(args, "-w")
        store[key] = value
        json.dump(store, open(store_path, "w"))
        return 0
    if cmd == "delete-generic-password":
        store.pop(key, None)
        json.dump(store, open(store_path, "w"))
        return 0
    return 1

if sys.argv[1:] == ["-i"]:
    rc = 0
    for line in sys.stdin:
        if line.strip():
            rc = run(shlex.split(line)) or rc
    sys.exit(rc)
sys.exit(run(sys.argv[1:]))
'''


@pytest.fixture
def security(tmp_path: Path) -> tuple[Path, Path, Path]:
    store, argv = tmp_path / "keychain.json", tmp_path / "argv.log"
    script = tmp_path / "security"
    script.write_text(FAKE_SECURITY.replace("PYTHON", sys.executable).replace("STORE", str(store)).replace("ARGV", str(argv)))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, store, argv


def test_round_trip_through_security_with_secrets_only_on_stdin(security):
    script, store, argv = security
    access, refresh = "sk-ant-oat01-" + "q" * 40, "sk-ant-ort01-" + "r" * 40
    # Claude Code wrote its item (plain JSON value).
    store.write_text(json.dumps({"Claude Code-credentials|me": json.dumps(claude_login_doc(access, refresh, 1_900_000_000_000))}))
    src = KeychainSource(SecretStore("Claude Code-credentials", "me", platform="darwin", security=str(script)))
    assert src.unavailable() is None
    login = src.load()
    assert login.access_token == access and login.subscription_type == "max"
    src.save(login.rotated("sk-ant-oat01-" + "n" * 40, "sk-ant-ort01-" + "m" * 40, 1_950_000_000.0))
    stored = json.loads(json.loads(store.read_text())["Claude Code-credentials|me"])
    assert stored["claudeAiOauth"]["accessToken"] == "sk-ant-oat01-" + "n" * 40
    assert stored["mcpOAuth"] and stored["organizationUuid"] == "org-uuid-1"  # unknown fields kept
    assert src.load().refresh_token == "sk-ant-ort01-" + "m" * 40
    calls = [json.loads(line) for line in argv.read_text().splitlines()]
    assert ["-i"] in calls  # the write went through `security -i`
    for call in calls:
        joined = " ".join(call)
        assert "sk-ant" not in joined and "6e6e6e" not in joined, f"a secret on argv: {call}"


def test_missing_item_is_no_login_and_missing_binary_says_why(security, tmp_path):
    script, _, _ = security
    assert KeychainSource(SecretStore("Claude Code-credentials", "me", "darwin", str(script))).load() is None
    why = KeychainSource(SecretStore("x", "me", "darwin", str(tmp_path / "nope"))).unavailable()
    assert why and "not found" in why


def test_quoting_survives_odd_service_names(security):
    script, store, _ = security
    s = SecretStore('Claude Code-credentials-1a2b3c4d "x"', "me", "darwin", str(script))
    s.set("value with spaces")
    assert s.get() == "value with spaces"
    s.delete()
    assert s.get() is None


def test_keychain_write_back_is_a_compare_and_swap_under_claude_codes_locks(security, tmp_path):
    from broker.login.claude_locks import HostLocks
    from broker.login import writeback as wb

    script, store, argv = security
    access, refresh = "sk-ant-oat01-" + "q" * 40, "sk-ant-ort01-" + "r" * 40
    store.write_text(json.dumps({"Claude Code-credentials|me": json.dumps(claude_login_doc(access, refresh, 1_900_000_000_000))}))
    config_dir = tmp_path / "claude-config"
    src = KeychainSource(SecretStore("Claude Code-credentials", "me", "darwin", str(script)), locks=HostLocks(config_dir))
    base = src.load()
    # Claude Code hit invalid_grant meanwhile and cleared the item.
    doc = claude_login_doc("", "", 0)
    store.write_text(json.dumps({"Claude Code-credentials|me": json.dumps(doc)}))
    new = base.rotated("sk-ant-oat01-" + "n" * 40, "sk-ant-ort01-" + "m" * 40, 1_950_000_000.0)
    assert src.write_back(base, new).action == wb.RESTORE
    assert src.load().refresh_token == "sk-ant-ort01-" + "m" * 40
    assert config_dir.is_dir() and not (config_dir / ".storage-write.lock").exists()
    for call in (json.loads(line) for line in argv.read_text().splitlines()):
        assert "sk-ant" not in " ".join(call), f"a secret on argv: {call}"


def test_claude_codes_keychain_item_locks_in_its_config_dir(tmp_path):
    src = KeychainSource.for_claude_code({"CLAUDE_CONFIG_DIR": str(tmp_path / "cfg"), "USER": "me"}, platform="darwin")
    assert src.locks is not None and src.locks.dir == tmp_path / "cfg"
    assert KeychainSource.for_claude_code({"HOME": str(tmp_path), "USER": "me"}, platform="darwin").locks.dir == tmp_path / ".claude"
