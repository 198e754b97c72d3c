"""Audit fields a sandbox controls are bounded and scrubbed; each sandbox has a fair share."""

from __future__ import annotations

from broker.proxy.audit_policy import MAX_FIELD, AuditBudget, bound_entry, bound_text


def test_long_fields_are_cut_and_say_by_how_much():
    out = bound_entry({"model": "m" * (12 * 1024 * 1024), "status": 200, "latency_ms": 1.5})
    assert len(out["model"]) < MAX_FIELD + 40 and out["model"].endswith(f"(+{12 * 1024 * 1024 - MAX_FIELD} chars)")
    assert out["status"] == 200 and out["latency_ms"] == 1.5


def test_key_like_strings_in_a_path_are_redacted():
    key = "sk-ib-" + "k" * 43
    assert bound_entry({"path": f"/v1/{key}/messages"})["path"] == "/v1/[redacted]/messages"
    assert bound_entry({"path": "/v1/" + "Zq9_" * 10})["path"] == "/v1/[redacted]"  # any token-shaped run
    assert bound_entry({"path": "/v1/messages/count_tokens"})["path"] == "/v1/messages/count_tokens"
    assert bound_text(f"model {key}") == "model [redacted]"  # known shapes anywhere


def test_a_sandbox_over_its_budget_is_counted_once_and_summarised_later():
    b = AuditBudget(bytes_per_window=1000, window=3600.0)
    assert b.admit("flood", 600, 0.0) == [{}]
    marker = b.admit("flood", 600, 1.0)
    assert len(marker) == 1 and "budget spent" in marker[0]["note"]
    assert all(b.admit("flood", 600, 2.0 + i) == [] for i in range(100))
    assert b.admit("quiet", 600, 3.0) == [{}]  # another sandbox's share is untouched
    later = b.admit("flood", 600, 3601.0)
    assert later[0]["suppressed"] == 101 and later[-1] == {}
