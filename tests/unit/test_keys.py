"""Sandbox keys: generation, hashing, constant-time matching, extraction from headers."""

from __future__ import annotations

import hashlib

import pytest

from broker.sandboxes.keys import KEY_PREFIX, extract_key, generate_key, hash_key, looks_like_key, match_key

K1 = "sk-ib-" + "a" * 43
K2 = "sk-ib-" + "b" * 43


def test_generate_key_shape_and_uniqueness():
    keys = {generate_key() for _ in range(50)}
    assert len(keys) == 50
    for key in keys:
        assert key.startswith(KEY_PREFIX) and looks_like_key(key)
        assert len(key) == len(KEY_PREFIX) + 43


def test_hash_key_is_hex_sha256():
    assert hash_key(K1) == hashlib.sha256(K1.encode()).hexdigest()
    assert hash_key("é") == hashlib.sha256("é".encode("utf-8")).hexdigest()


@pytest.mark.parametrize(
    "presented, expected",
    [
        (K1, "one"),
        (K2, "two"),
        ("sk-ib-" + "c" * 43, None),
        ("", None),
        (hash_key(K1), None),  # the stored hash itself is not a key
    ],
)
def test_match_key(presented, expected):
    hashes = {"one": hash_key(K1), "two": hash_key(K2), "broken": "not-hex-é"}
    assert match_key(presented, hashes) == expected


def test_match_key_checks_every_entry(monkeypatch):
    import broker.sandboxes.keys as keys

    calls = []
    real = keys.hmac.compare_digest

    def counting(a, b):
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(keys.hmac, "compare_digest", counting)
    hashes = {f"n{i}": hash_key(f"k{i}") for i in range(5)}
    assert match_key("k0", hashes) == "n0"
    assert len(calls) == 5


def test_match_key_empty_store():
    assert match_key(K1, {}) is None


@pytest.mark.parametrize(
    "headers, expected",
    [
        ([("x-api-key", K1)], K1),
        ([("X-Api-Key", f"  {K1} ")], K1),
        ([("Authorization", f"Bearer {K1}")], K1),
        ([("authorization", f"bearer {K1}")], K1),
        ([("Authorization", f"BEARER   {K1}")], K1),
        ([("x-api-key", K1), ("Authorization", f"Bearer {K1}")], K1),
        ([("x-api-key", K1), ("Authorization", f"Bearer {K2}")], None),
        ([("x-api-key", K1), ("x-api-key", K2)], None),
        ([("x-api-key", K1), ("x-api-key", K1)], K1),
        ([("x-api-key", "")], None),
        ([("Authorization", "Bearer ")], None),
        ([("Authorization", "Bearer")], None),
        ([("Authorization", f"Basic {K1}")], None),
        ([("x-api-key", K1), ("Authorization", "Basic Zm9v")], K1),
        ([("content-type", "application/json")], None),
        ([], None),
    ],
)
def test_extract_key(headers, expected):
    assert extract_key(headers) == expected


@pytest.mark.parametrize(
    "s, expected",
    [
        (K1, True),
        ("sk-ib-" + "A-_9" * 11, True),
        ("sk-ib-short", False),
        ("sk-ant-oat01-" + "a" * 43, False),
        (K1 + "!", False),
        (" " + K1, False),
        ("", False),
    ],
)
def test_looks_like_key(s, expected):
    assert looks_like_key(s) is expected
