"""Budgets: parsing, the in-memory book, and the decision, with time passed in by hand."""

from __future__ import annotations

import pytest

from broker.usage.budget import BUCKET, Budget, BudgetBook, BudgetError, decide, parse_budget
from broker.usage.plan_limits import PlanLimits, Window

NOW = 1_800_000_000.0  # a whole minute


@pytest.mark.parametrize("text, tokens, window, words", [
    ("2M/5h", 2_000_000, 18000, "2M/5h"), ("500k/1d", 500_000, 86400, "500k/1d"),
    ("50000/30m", 50_000, 1800, "50k/30m"), (" 1.5M / 2h ", 1_500_000, 7200, "1.5M/2h"),
    ("10/h", 10, 3600, "10/1h"), ("3G/1w", 3 * 10**9, 604800, "3G/1w"), ("1234/5h", 1234, 18000, "1234/5h"),
])
def test_parse(text, tokens, window, words):
    b = parse_budget(text)
    assert (b.tokens, b.window, b.words()) == (tokens, window, words)


@pytest.mark.parametrize("text", ["", "2M", "5h", "2X/5h", "0/5h", "1M/30s", "1M/40d", "-1/5h", "2M/5y"])
def test_parse_refuses(text):
    with pytest.raises(BudgetError, match="bad budget"):
        parse_budget(text)


def test_off():
    assert parse_budget("off") is None and parse_budget(" OFF ") is None


def test_book_sums_a_rolling_window():
    book = BudgetBook()
    book.spend("a", NOW, 100)
    book.spend("a", NOW + 30, 50)  # same bucket
    book.spend("a", NOW + 3600, 10)
    book.spend("b", NOW, 7)
    assert book.spent("a", NOW + 3600, 7200) == 160
    assert book.spent("a", NOW + 3600 + 60, 3600) == 10  # the first bucket has aged out
    assert book.spent("b", NOW + 1, 3600) == 7 and book.spent("nobody", NOW, 3600) == 0
    book.forget("a")
    assert book.spent("a", NOW + 3600, 7200) == 0


def test_decide_over_budget_and_the_window_rolls():
    book, budget = BudgetBook(), Budget(1000, 3600)
    assert decide("a", budget, book, NOW) is None
    book.spend("a", NOW, 600)
    book.spend("a", NOW + 600, 500)
    refused = decide("a", budget, book, NOW + 700)
    assert refused is not None
    r, wait = refused
    assert r.status == 429 and r.error_type == "rate_limit_error"
    assert "sandbox 'a' has used its inference-broker budget of 1k/1h (1100 tokens" in r.message
    assert wait == NOW + BUCKET + 3600 - (NOW + 700)  # the first 600 tokens age out
    assert decide("b", budget, book, NOW + 700) is None  # another sandbox keeps working
    assert decide("a", None, book, NOW + 700) is None  # no budget, no limit
    assert decide("a", budget, book, NOW + 700 + wait) is None  # the window has rolled


def test_stop_at_percent_of_the_five_hour_window():
    limits = PlanLimits(seen_at=NOW, source="headers", windows=(Window("five_hour", 91.0, NOW + 1800),))
    book = BudgetBook()
    r, wait = decide("a", None, book, NOW, limits, stop_at=90)
    assert r.status == 429 and wait == 1800 and "stops every sandbox at 90% of the plan's 5-hour window" in r.message
    assert decide("a", None, book, NOW, limits, stop_at=95) is None
    assert decide("a", None, book, NOW + 1801, limits, stop_at=90) is None  # the window has reset
    assert decide("a", None, book, NOW, None, stop_at=90) is None  # nothing known yet


def test_estimate_is_max_tokens_plus_the_input_by_size() -> None:
    from broker.usage.budget import estimate_tokens

    body = b'{"model": "m", "max_tokens": 800, "messages": [{"role": "user", "content": "say \\"max_tokens\\": 99999"}]}'
    assert estimate_tokens(body) == 800 + len(body) // 4  # the quoted one inside a string is not a key
    assert estimate_tokens(b"") == 0
    assert estimate_tokens(b'{"max_tokens": 12345678901234}') == 30 // 4  # not a count any API takes


def test_requests_in_flight_hold_their_share_of_the_budget() -> None:
    from broker.usage.budget import IN_FLIGHT_WAIT, BudgetBook, decide

    book, budget = BudgetBook(), Budget(100, 3600)
    book.spend("a", 1000.0, 40)
    assert decide("a", budget, book, 1000.0, held=59) is None
    refused = decide("a", budget, book, 1000.0, held=60)
    assert refused is not None and refused[1] == IN_FLIGHT_WAIT
    assert "up to 60 more held by its requests in flight" in refused[0].message


def test_count_tokens_spends_nothing() -> None:
    from broker.usage.budget import spends_nothing

    assert spends_nothing("/v1/messages/count_tokens") and spends_nothing("/v1/messages/count_tokens?beta=true")
    assert not spends_nothing("/v1/messages")


@pytest.mark.parametrize("text", ["99999999999999999999999G/1h", "9" * 400 + "/1h", "10000000000000k/1d",
                                  "1e3/1h", "2M/99999999999999999999999999999h"])
def test_absurd_budgets_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(BudgetError, match="bad budget"):
        parse_budget(text)
