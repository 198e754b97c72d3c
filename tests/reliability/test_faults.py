"""Upstream faults: each is a clear error or a cleanly cut stream, and nothing leaks over 1,000
requests (the broker's fds and RSS come back to where they were)."""

from __future__ import annotations

import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.fakes.eventually import eventually
from tests.reliability.outcomes import observe
from tests.reliability.harness import start_broker
from tests.reliability.load import EXPECTED, exchange


@pytest.mark.parametrize("fault", [f for f in EXPECTED if f], ids=lambda f: f)
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_each_fault_is_a_clear_error_or_a_cut_stream(broker, figures: dict, fault: str, stream: bool):
    key = broker.keys["alpha"]
    outcome, reply = exchange(broker.port, key, stream=stream, fault=fault)
    expected = EXPECTED[fault]
    if fault in ("reset-mid-stream", "stall"):
        expected = "cut stream"  # the fault streams whatever the client asked for
    after = exchange(broker.port, key, stream=stream)[0]  # and the next request is fine
    observe(figures, "survived" if outcome == expected and after == "ok" else "not survived")
    assert outcome == expected, reply[:400]
    assert after == "ok"


def test_a_thousand_requests_with_faults_leave_fds_and_rss_at_baseline(tmp_path: Path, figures: dict):
    rng = random.Random(9)
    with start_broker(tmp_path) as b:
        keys = [b.sandbox_add(f"s{i}") for i in range(4)]
        faults = ["5xx", "reset-before-headers", "reset-mid-stream", "slow-first-byte"]
        plan = [(keys[i % 4], rng.random() < 0.5, rng.choice(faults) if rng.random() < 0.2 else "")
                for i in range(1000)]
        plan[::100] = [(keys[0], True, "stall")] * 10

        def run(item: tuple[str, bool, str]) -> tuple[str, str]:
            key, stream, fault = item
            outcome = exchange(b.port, key, stream=stream, fault=fault)[0]
            want = "cut stream" if fault in ("reset-mid-stream", "stall") else EXPECTED[fault]
            return fault, "as expected" if outcome == want else outcome

        with ThreadPoolExecutor(16) as pool:  # warm up at the same concurrency: the upstream pool fills
            list(pool.map(run, [(k, s, "") for k, s, _ in plan[1:65]]))
        fds0, rss0 = b.fds(), b.rss_mib()
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(run, plan))
        bad = [r for r in results if r[1] != "as expected"]
        faulted = [r for r in results if r[0]]
        observe(figures, "survived", sum(1 for r in faulted if r[1] == "as expected"))
        observe(figures, "not survived", sum(1 for r in faulted if r[1] != "as expected"))
        assert bad == [], bad[:10]
        try:
            eventually(lambda: b.fds() <= fds0 + 2, 10, "fds back to the baseline")
        except AssertionError:
            raise AssertionError(f"fds {fds0} -> {b.fds()}: {sorted(os.readlink(f'/proc/{b.proc.pid}/fd/{n}') for n in os.listdir(f'/proc/{b.proc.pid}/fd'))}") from None
        fds1, rss1 = b.fds(), b.rss_mib()
        assert rss1 - rss0 < 30, (rss0, rss1)
        figures["1,000 requests with faults: fds"] = f"{fds0} -> {fds1}"
        figures["1,000 requests with faults: RSS (MiB)"] = f"{rss0:.0f} -> {rss1:.0f}"
        leaks = b.leaks()
        figures["secrets found"] += len(leaks)
        assert leaks == []
