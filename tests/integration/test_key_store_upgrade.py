"""The key store keeps every user's state across an upgrade: a broker.db written before the
`revoked` table opens with its sandboxes, keys, budgets and pause flag as they were."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from broker.sandboxes.key_store import KeyStore
from broker.sandboxes.keys import hash_key

# The schema as released before names revoked were remembered.
OLD_SCHEMA = """
CREATE TABLE sandboxes (name TEXT PRIMARY KEY, key_hash TEXT NOT NULL, created REAL NOT NULL,
    last_used REAL, requests INTEGER NOT NULL DEFAULT 0, input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0);
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE budgets (name TEXT PRIMARY KEY, tokens INTEGER NOT NULL, window REAL NOT NULL);
"""


def old_store(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    db.execute("INSERT INTO sandboxes VALUES ('keep', ?, 1000.0, 2000.0, 7, 100, 200)", (hash_key("sk-ib-old"),))
    db.execute("INSERT INTO sandboxes VALUES ('drop', ?, 1000.0, NULL, 0, 0, 0)", (hash_key("sk-ib-drop"),))
    db.execute("INSERT INTO budgets VALUES ('keep', 5000, 3600.0)")
    db.execute("INSERT INTO settings VALUES ('paused', '1')")
    db.commit()
    db.close()


def test_an_old_key_store_opens_with_everything_kept(tmp_path: Path) -> None:
    path = tmp_path / "broker.db"
    old_store(path)
    with KeyStore(path) as store:
        assert store.hashes() == {"keep": hash_key("sk-ib-old"), "drop": hash_key("sk-ib-drop")}
        [keep] = [s for s in store.list() if s.name == "keep"]
        assert (keep.requests, keep.input_tokens, keep.output_tokens) == (7, 100, 200)
        assert store.budgets()["keep"].tokens == 5000
        assert store.paused()
        assert store.revoked_at("keep") is None and store.revoked_at("drop") is None
        assert store.revoke("drop")
        assert store.revoked_at("drop") is not None


def test_a_revoked_name_made_again_is_not_revoked(tmp_path: Path) -> None:
    with KeyStore(tmp_path / "broker.db") as store:
        store.add("a")
        store.add("b")
        assert store.revoke_all() == 2
        assert store.revoked_at("a") is not None and store.revoked_at("b") is not None
        store.add("a")
        assert store.revoked_at("a") is None and store.revoked_at("b") is not None
