"""Plan-limit parsing: the unified headers and the usage endpoint, good, missing and garbage."""

from __future__ import annotations

import time

import pytest

from broker.usage import limit_alerts
from broker.usage.plan_limits import PlanLimits, Window, combine, from_headers, from_usage

NOW = 1_800_000_000.0
P = "anthropic-ratelimit-unified-"


def test_every_known_header_is_parsed() -> None:
    headers = {
        P + "status": "allowed_warning", P + "reset": str(int(NOW + 3600)),
        P + "5h-utilization": "0.62", P + "5h-reset": str(int(NOW + 3600)), P + "5h-status": "allowed",
        P + "5h-surpassed-threshold": "0.5",
        P + "7d-utilization": "0.31", P + "7d-reset": str(int(NOW + 86400)),
        P + "7d_oi-utilization": "0.05", P + "7d_oi-reset": str(int(NOW + 7200)),
        P + "representative-claim": "five_hour", P + "overage-status": "rejected",
        P + "overage-reset": str(int(NOW + 100)), P + "fallback-percentage": "0.5",
        P + "something-new": "x", "request-id": "req_1",
    }
    lim = from_headers(headers, NOW)
    assert lim is not None and lim.seen_at == NOW and lim.source == "headers"
    five = lim.window("five_hour")
    assert five == Window("five_hour", 62.0, NOW + 3600, "allowed", 50.0)
    assert lim.window("seven_day") == Window("seven_day", 31.0, NOW + 86400)
    assert lim.window("seven_day_oauth_apps").percent == 5.0
    assert (lim.status, lim.resets_at, lim.representative_claim) == ("allowed_warning", NOW + 3600, "five_hour")
    assert (lim.overage_status, lim.overage_resets_at, lim.fallback_percentage) == ("rejected", NOW + 100, 50.0)
    assert dict(lim.extra) == {"something-new": "x"}
    doc = lim.to_json()
    assert doc["five_hour"]["utilization"] == 62.0
    assert doc["five_hour"]["resets_at"] == "2027-01-15T09:00:00+00:00"
    assert doc["seen_at"] == "2027-01-15T08:00:00+00:00"


def test_header_names_are_case_insensitive_and_pairs_work() -> None:
    lim = from_headers([("Anthropic-RateLimit-Unified-5h-Utilization", "0.1")], NOW)
    assert lim is not None and lim.window("five_hour").percent == 10.0


def test_no_headers_is_none() -> None:
    assert from_headers({"content-type": "application/json", P: "x"}, NOW) is None


@pytest.mark.parametrize("value", ["", "abc", "nan", "inf", "-0.5", "0x10", " ", "1e400"])
def test_garbage_values_are_dropped_not_fatal(value: str) -> None:
    lim = from_headers({P + "5h-utilization": value, P + "5h-reset": value, P + "status": "allowed",
                        P + "7d-utilization": "0.2"}, NOW)
    assert lim is not None
    five = lim.window("five_hour")
    assert five.percent is None and five.resets_at is None
    assert lim.window("seven_day").percent == 20.0 and lim.status == "allowed"


def test_missing_fields_leave_none() -> None:
    lim = from_headers({P + "5h-reset": "2026-11-26T14:20:00Z"}, NOW)
    five = lim.window("five_hour")
    assert five.percent is None and five.resets_at == 1795702800.0


def test_usage_endpoint_document() -> None:
    doc = {"five_hour": {"utilization": 62.0, "resets_at": "2027-01-15T09:00:00.123456+00:00"},
           "seven_day": {"utilization": 31, "resets_at": "2027-01-20T00:00:00Z"},
           "seven_day_opus": {"utilization": 3.5, "resets_at": None}, "seven_day_sonnet": None,
           "extra_usage": {"is_enabled": False, "monthly_limit": None, "used_credits": None},
           "weird": "text"}
    lim = from_usage(doc, NOW)
    assert lim.source == "usage endpoint"
    assert lim.window("five_hour").percent == 62.0
    assert lim.window("five_hour").resets_at == pytest.approx(NOW + 3600.123456)
    assert lim.window("seven_day_opus") == Window("seven_day_opus", 3.5, None)
    assert lim.window("seven_day_sonnet") is None
    assert dict(lim.extra)["extra_usage.is_enabled"] == "False"


@pytest.mark.parametrize("doc", [None, [], "x", {}, {"five_hour": "x"}, {"five_hour": {"utilization": "bad"}}])
def test_usage_garbage(doc: object) -> None:
    lim = from_usage(doc, NOW)
    assert lim is None or lim.window("five_hour").percent is None


def test_combine_newest_wins_and_keeps_what_only_the_older_knew() -> None:
    head = from_headers({P + "status": "allowed", P + "5h-utilization": "0.5"}, NOW)
    poll = from_usage({"five_hour": {"utilization": 55}, "seven_day_opus": {"utilization": 7}}, NOW + 10)
    both = combine(head, poll)
    assert both.window("five_hour").percent == 55 and both.window("seven_day_opus").percent == 7
    assert both.status == "allowed"  # the endpoint does not say it
    later = combine(both, from_headers({P + "5h-utilization": "0.6"}, NOW + 20))
    assert later.window("five_hour").percent == 60 and later.window("seven_day_opus").percent == 7
    assert combine(None, head) is head and combine(head, None) is head


def _utc(ts: float) -> time.struct_time:
    return time.gmtime(ts)


def _lim(five: float | None, reset: float, seven: float = 31.0, seen: float = NOW) -> PlanLimits:
    return PlanLimits(seen_at=seen, source="headers",
                      windows=(Window("five_hour", five, reset), Window("seven_day", seven, NOW + 86400)))


def test_menu_lines() -> None:
    assert limit_alerts.menu_lines(_lim(62.4, NOW + 3600), _utc) == ("5-hour 62% · resets 09:00", "Weekly 31%")
    assert limit_alerts.menu_lines(None) == ()


def test_alerts_at_80_and_95_once_each() -> None:
    reset = NOW + 3600
    a = _lim(70, reset)
    b = _lim(81, reset)
    c = _lim(90, reset)
    d = _lim(96, reset)
    assert limit_alerts.alerts(None, a) == []
    assert limit_alerts.alerts(a, b, _utc) == [("5-hour limit at 80%", "5-hour 81% · resets 09:00.")]
    assert limit_alerts.alerts(b, c) == []
    title, message = limit_alerts.alerts(c, d)[0]
    assert title == "5-hour limit at 95%" and "refused" in message
    assert limit_alerts.alerts(a, d)[0][0] == "5-hour limit at 95%"  # one jump, one alert: the higher
    assert limit_alerts.alerts(d, d) == []


def test_alert_on_reset_after_a_warning_only() -> None:
    before = _lim(96, NOW + 60)
    after = _lim(2, NOW + 60 + 5 * 3600, seen=NOW + 61)
    assert limit_alerts.alerts(before, after)[0][0] == "5-hour limit reset"
    quiet = _lim(3, NOW + 60)
    assert limit_alerts.alerts(quiet, after) == []


def test_status_words(monkeypatch: pytest.MonkeyPatch) -> None:
    from broker.cli.status_cmd import limit_lines

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        lim = from_headers({P + "status": "allowed", P + "5h-utilization": "0.62", P + "5h-reset": str(int(NOW + 3600)),
                            P + "7d-utilization": "0.31"}, NOW)
        lines = limit_lines({**lim.to_json(), "poll": "on"})
        assert lines == ["limits:   5-hour 62% · resets Fri 09:00, Weekly 31% — allowed",
                         "          as seen Fri 08:00 from the headers"]
        assert limit_lines({"poll": "off: why"}) == ["limits:   usage poll off: why"]
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
