"""A bounded soak: several sandboxes streaming at once, the token rotating every few seconds
(by the host's Claude Code, and by a revocation that forces the broker to refresh), and
injected upstream faults. RELIABILITY_SOAK_SECONDS sets the length (20 s by default in the
suite, 60 s from `make reliability`).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from pathlib import Path

from tests.fakes.eventually import eventually
from tests.fakes.login import write_login
from tests.reliability.harness import start_broker
from tests.reliability.load import EXPECTED, exchange
from tests.reliability.outcomes import observe

SANDBOXES = 6
ROTATE_EVERY = 3.0
# The broker forces at most one refresh per 30 s on upstream 401s (to spare the token
# endpoint), so early revocations come no more often than that.
REVOKE_EVERY = 31.0
FAULTS = ["5xx", "reset-before-headers", "reset-mid-stream", "slow-first-byte", "stall"]


def test_soak(tmp_path: Path, figures: dict):
    seconds = float(os.environ.get("RELIABILITY_SOAK_SECONDS", "20"))
    with start_broker(tmp_path) as b:
        keys = [b.sandbox_add(f"sandbox-{i}") for i in range(SANDBOXES)]
        for k in keys:  # warm up
            assert exchange(b.port, k, stream=True)[0] == "ok"
        fds0, rss0 = b.fds(), b.rss_mib()
        calls0 = b.endpoint.calls
        outcomes: Counter[str] = Counter()
        lock = threading.Lock()
        stop = threading.Event()
        rotations = Counter()

        def sandbox(i: int) -> None:
            rng = random.Random(i)
            while not stop.is_set():
                fault = rng.choice(FAULTS) if rng.random() < 0.1 else ""
                want = "cut stream" if fault in ("reset-mid-stream", "stall") else EXPECTED[fault]
                outcome = exchange(b.port, keys[i], stream=rng.random() < 0.7, fault=fault)[0]
                with lock:
                    if outcome == want:
                        outcomes[f"fault handled: {fault}" if fault else "served"] += 1
                    else:
                        outcomes[f"unexpected: {outcome} (fault {fault or 'none'})"] += 1

        def rotator() -> None:
            last_revoked = time.monotonic() - REVOKE_EVERY + 2 * ROTATE_EVERY
            while not stop.wait(ROTATE_EVERY):
                if time.monotonic() - last_revoked >= REVOKE_EVERY:
                    # The server revokes every token early: the broker must refresh on the 401.
                    for token in list(b.endpoint.valid_access):
                        b.endpoint.revoke_access(token)
                    rotations["revocations"] += 1
                    last_revoked = time.monotonic()
                else:  # the host's Claude Code rotates its login (rename over the file)
                    access, refresh = b.endpoint.issue()
                    write_login(b.creds, access, refresh, time.time() + 8 * 3600)
                    rotations["host rotations"] += 1

        threads = [threading.Thread(target=sandbox, args=(i,)) for i in range(SANDBOXES)]
        threads.append(threading.Thread(target=rotator))
        for t in threads:
            t.start()
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join(60)
        eventually(lambda: b.fds() <= fds0 + 2, 20, f"fds back to {fds0}")
        fds1, rss1 = b.fds(), b.rss_mib()
        leaks = b.leaks()
        served = sum(v for k, v in outcomes.items() if not k.startswith("unexpected"))
        unexpected = {k: v for k, v in outcomes.items() if k.startswith("unexpected")}
        figures["soak seconds"] = seconds
        figures["soak requests"] = sum(outcomes.values())
        figures["soak served or fault handled"] = served
        figures["soak outcomes"] = dict(sorted(outcomes.items()))
        figures["soak token rotations"] = dict(rotations)
        figures["soak refresh calls"] = b.endpoint.calls - calls0
        figures["soak fds before/after"] = f"{fds0} -> {fds1}"
        figures["soak RSS before/after (MiB)"] = f"{rss0:.0f} -> {rss1:.0f}"
        faults = sum(v for k, v in outcomes.items() if k.startswith("fault handled"))
        observe(figures, "survived", faults)
        observe(figures, "not survived", sum(v for k, v in unexpected.items() if "fault none" not in k))
        figures["secrets found"] += len(leaks)
        assert leaks == []
        assert unexpected == {}, unexpected
        assert rotations["revocations"] == 0 or figures["soak refresh calls"] >= 1
        assert rss1 - rss0 < 40, (rss0, rss1)
