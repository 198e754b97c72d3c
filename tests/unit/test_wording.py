"""Countdown words and login hints shared by status, the tray and notifications."""

from __future__ import annotations

import pytest

from broker.common.wording import CLAUDE_LOGIN_HINT, ago_words, duration_words, login_hint


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(0, "0 s"), (40.9, "40 s"), (60, "1 min"), (12 * 60 + 59, "12 min"), (3600, "1 h"),
     (5 * 3600 + 12 * 60, "5 h 12 min"), (86400, "1 d"), (2 * 86400 + 3 * 3600 + 5, "2 d 3 h"), (-5, "0 s")],
)
def test_duration_words(seconds: float, words: str) -> None:
    assert duration_words(seconds) == words


@pytest.mark.parametrize("secs, words", [(0, "0 s"), (59, "59 s"), (60, "1 min"), (3599, "59 min"), (3600 * 25, "1 d 1 h")])
def test_duration_words_short(secs, words):
    assert duration_words(secs) == words


def test_ago_words():
    assert (ago_words(None, 100), ago_words(70, 100), ago_words(0, 3600)) == ("never", "just now", "1 h ago")


def test_a_profile_hint_wins_over_claudes():
    assert login_hint("") == CLAUDE_LOGIN_HINT
    assert login_hint("store the API key with `keyring set`") == "store the API key with `keyring set`"
