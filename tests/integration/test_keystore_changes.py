"""The key store's cheap look at its file says when a query is worth making, and never misses a commit."""

from __future__ import annotations

from pathlib import Path

from broker.sandboxes.key_store import KeyStore


def test_may_have_changed_follows_commits_from_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "broker.db"
    with KeyStore(path) as broker, KeyStore(path) as cli:
        broker.add("a")
        assert broker.may_have_changed()  # not looked yet: ask
        assert broker.changed() is False  # the first look takes the current state as seen
        assert not broker.may_have_changed()
        cli.revoke("a")
        assert broker.may_have_changed()
        assert broker.changed() is True and broker.hashes() == {}
        assert not broker.may_have_changed() and broker.changed() is False
        cli.set_paused(True)
        assert broker.may_have_changed() and broker.changed() is True and broker.paused()


def test_own_commits_ask_once_and_are_not_changes(tmp_path: Path) -> None:
    with KeyStore(tmp_path / "broker.db") as broker:
        broker.add("a")
        broker.changed()
        broker.set_paused(True)
        assert broker.may_have_changed()  # the file changed: only the query can tell whose commit it was
        assert broker.changed() is False
        assert not broker.may_have_changed()
