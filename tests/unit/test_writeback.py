"""The write-back compare-and-swap: what a store holding this or that gets from a refresh."""

import json

import pytest

from broker.common.errors import CredentialsError
from broker.login import pending as pd
from broker.login import writeback as wb
from broker.login.credentials import OAuthLogin, parse_login
from tests.fakes.login import claude_login_doc

BASE_DOC = claude_login_doc("a1", "r1", 1_000_000)


def text(doc) -> str:
    return json.dumps(doc)


BASE = parse_login(text(BASE_DOC))
NEW = BASE.rotated("a2", "r2", 1_800_000_000.0)


def test_unchanged_store_gets_the_new_pair_and_keeps_fields_added_meanwhile():
    now = {**BASE_DOC, "addedByHost": {"x": 1}}
    decision = wb.decide(wb.stored(text(now)), BASE, NEW)
    assert decision.action == wb.WRITE
    doc = json.loads(decision.document)
    assert doc["claudeAiOauth"]["accessToken"] == "a2" and doc["claudeAiOauth"]["refreshToken"] == "r2"
    assert doc["addedByHost"] == {"x": 1} and doc["mcpOAuth"] == BASE_DOC["mcpOAuth"]


def test_a_newer_login_in_the_store_is_kept_and_adopted():
    now = wb.stored(text(claude_login_doc("a9", "r9", 3_000_000)))
    decision = wb.decide(now, BASE, NEW)
    assert decision.action == wb.KEEP_THEIRS and decision.document is None
    assert decision.theirs.refresh_token == "r9"


def test_a_store_claude_code_cleared_is_restored_with_the_new_pair():
    cleared = json.loads(text(BASE_DOC))
    cleared["claudeAiOauth"].update(accessToken="", refreshToken="", expiresAt=0)
    now = wb.stored(text(cleared))
    assert now.kind == wb.CLEARED
    decision = wb.decide(now, BASE, NEW)
    assert decision.action == wb.RESTORE
    restored = parse_login(decision.document)
    assert (restored.access_token, restored.refresh_token) == ("a2", "r2")
    assert restored.subscription_type == "max" and restored.expires_at == 1_800_000_000.0


def test_a_removed_login_is_not_resurrected():
    assert wb.decide(wb.stored(None), BASE, NEW) == wb.WriteBack(wb.GONE)


def test_an_unreadable_store_gets_the_only_valid_pair():
    now = wb.stored('{"claudeAiOauth": {"accessTo')
    assert now.kind == wb.UNREADABLE and "JSON" in now.problem
    decision = wb.decide(now, BASE, NEW)
    assert decision.action == wb.WRITE and parse_login(decision.document).refresh_token == "r2"


def test_reprs_carry_no_tokens():
    now = wb.stored(text(BASE_DOC))
    assert "a1" not in repr(now) and "r2" not in repr(wb.decide(now, BASE, NEW))


def test_a_login_without_refresh_token_compares_access_tokens():
    base = OAuthLogin(access_token="a1", raw=claude_login_doc("a1", None, 1))
    other = wb.stored(text(claude_login_doc("a5", None, 1)))
    assert wb.decide(other, base, base.rotated("a2", None, None)).action == wb.KEEP_THEIRS


def test_a_store_nested_past_the_stack_is_unreadable_not_a_crash():
    now = wb.stored("[" * 100_000)
    assert now.kind == wb.UNREADABLE and "nested" in now.problem
    assert wb.decide(now, BASE, NEW).action == wb.WRITE


def test_a_pending_record_compares_by_the_digests_of_what_it_replaced():
    first = pd.after_refresh(None, BASE, NEW, "file:x", 1.0)
    newest = NEW.rotated("a3", "r3", 1_900_000_000.0)
    record = pd.after_refresh(first, NEW, newest, "file:x", 2.0)
    for held in (BASE_DOC, claude_login_doc("a2", "r2", 1)):  # the store got neither, or only the first
        decision = wb.decide(wb.stored(text(held)), record, newest)
        assert decision.action == wb.WRITE and parse_login(decision.document).refresh_token == "r3"
    assert wb.decide(wb.stored(text(claude_login_doc("a9", "r9", 1))), record, newest).action == wb.KEEP_THEIRS


def test_a_pending_record_survives_its_file_format_and_refuses_another_version():
    record = pd.after_refresh(None, BASE, NEW, "file:x", 5.0)
    back = pd.from_bytes(pd.to_bytes(record))
    assert back.held_by(NEW) and back.replaces(BASE) and back.source == "file:x" and back.saved_at == 5.0
    assert back.login.expires_at == NEW.expires_at and back.login.subscription_type == "max"
    assert b"r1" not in pd.to_bytes(record) and "r2" not in repr(record)
    doc = json.loads(pd.to_bytes(record))
    for bad in ({**doc, "version": 2}, {**doc, "format": "x"}, {**doc, "login": {}}, "[" * 10_000):
        with pytest.raises(CredentialsError):
            pd.from_bytes(bad.encode() if isinstance(bad, str) else json.dumps(bad).encode())
