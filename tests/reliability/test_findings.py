"""One attack per finding of the review, against a broker process, over raw sockets.

Each test is what was done when the finding was made, and asserts the fixed behaviour.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from tests.fakes.eventually import eventually
from tests.reliability.harness import REQUEST, Broker, body_of, start_broker
from tests.reliability.outcomes import answer_outcome, observe

WRONG = "sk-ib-" + "W" * 43


def tally(fig: dict, statuses: list[int], refused: set[int]) -> None:
    """Each answer to a bad input, as observed (before any assert)."""
    for status in statuses:
        observe(fig, answer_outcome(status, refused))


def holds(condition, timeout: float, what: str) -> bool:  # noqa: ANN001
    """Whether `condition` comes true in time (recorded first, asserted after)."""
    try:
        eventually(condition, timeout, what)
    except AssertionError:
        return False
    return True


def finish(b: Broker, fig: dict) -> None:
    leaks = b.leaks()
    fig["secrets found"] += len(leaks)
    assert leaks == [], leaks


def test_1_wrong_keys_from_one_address_never_lock_out_a_valid_key(tmp_path: Path, figures: dict):
    with start_broker(tmp_path) as b:
        key = b.sandbox_add("docker-desktop")
        statuses = [b.post(WRONG)[0] for _ in range(30)]  # another local user, same 127.0.0.1
        tally(figures, statuses, {401, 429})
        assert statuses[:10] == [401] * 10 and set(statuses[10:]) == {429}
        assert b.post(key)[0] == 200  # the sandbox behind the same address is served
        finish(b, figures)


def test_2_many_addresses_and_interleaved_successes_do_not_reset_the_limits(tmp_path: Path, figures: dict):
    with start_broker(tmp_path) as b:  # defaults: 10 per address, 100 in total per minute
        key = b.sandbox_add("s")
        spread = [b.post(WRONG, src=f"127.0.{i // 200 + 1}.{i % 200 + 1}")[0] for i in range(200)]
        tally(figures, spread, {401, 429})
        assert spread.count(401) == 100 and spread.count(429) == 100  # one budget for all addresses
        answers = []
        for i in range(30):  # one valid request every 9 wrong ones, from a fresh address
            answers.append(b.post(key if i % 10 == 9 else WRONG, src="127.0.200.1")[0])
        tally(figures, [a for i, a in enumerate(answers) if i % 10 != 9], {429})
        assert [a for i, a in enumerate(answers) if i % 10 == 9] == [200] * 3
        assert all(a == 429 for i, a in enumerate(answers) if i % 10 != 9)
        finish(b, figures)


def test_3_held_connections_cannot_exhaust_fds_or_flood_the_log(tmp_path: Path, figures: dict):
    with start_broker(tmp_path, nofile=1024) as b:  # default header timeout: 10 s
        key = b.sandbox_add("s")
        base_fds = b.fds()
        held = []
        for _ in range(1100):  # a local user without a key, holding connections open
            held.append(socket.create_connection(("127.0.0.1", b.port)))
        held[-1].sendall(b"GET /v1/models HTTP/1.1\r\nHost: inference.local\r\n")  # a slowloris, too
        capped = holds(lambda: b.fds() <= 512 + base_fds + 8, 5, "the connection cap holds")
        served = b.post(key)[0]  # the sandbox is served all along
        drained = holds(lambda: b.fds() <= base_fds + 4, 20, "idle unauthenticated connections closed")
        closed = 0
        for s in held:
            s.settimeout(0.5)
            try:
                closed += s.recv(1) == b""
            except (ConnectionResetError, socket.timeout):
                closed += 1
            s.close()
        observe(figures, "refused", closed)
        observe(figures, "accepted", 1100 - closed)  # still held open
        assert capped and served == 200 and drained
        assert closed == 1100
        assert b.post(key)[0] == 200
        assert b.log.stat().st_size < 64 * 1024 and "Traceback" not in b.log.read_text()
        figures["fds under a 1,100-connection flood"] = f"{base_fds} -> at most {512 + base_fds} -> {b.fds()}"
        finish(b, figures)


def _send_body(port: int, key: str, size: int, results: list[int]) -> None:
    head = (f"POST /v1/messages HTTP/1.1\r\nHost: inference.local\r\nx-api-key: {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n").encode()
    chunk = b" " * (1 << 20)
    reply = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(head + b'{"model":"m","pad":"')
            for _ in range(size // len(chunk)):
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while data := sock.recv(65536):
                reply += data
        except (ConnectionResetError, socket.timeout):
            pass
    parts = reply.split(b" ", 2)
    results.append(int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0)


def test_4_big_bodies_in_flight_are_capped_and_rss_stays_bounded(tmp_path: Path, figures: dict):
    with start_broker(tmp_path) as b:
        keys = [b.sandbox_add(f"s{i}") for i in range(3)]
        base = b.rss_mib()
        peak = [base]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], b.rss_mib())
                time.sleep(0.02)

        results: list[int] = []
        threads = [threading.Thread(target=_send_body, args=(b.port, keys[i % 3], 30 << 20, results))
                   for i in range(40)]
        sampler = threading.Thread(target=sample)
        sampler.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        stop.set()
        sampler.join()
        tally(figures, results, {400, 429, 503, 0})  # 0: closed mid-upload, as refused
        assert len(results) == 40
        assert results.count(429) + results.count(503) >= 30, results
        assert set(results) <= {400, 429, 503, 0}, results  # 400: the padding is not a full JSON object
        assert peak[0] - base < 300, (base, peak[0])  # was 57 -> 1,391 MiB
        eventually(lambda: b.rss_mib() - base < 64, 10, "request-body memory returned")  # ~1 GiB stayed
        after = b.rss_mib()
        assert b.post(keys[0])[0] == 200
        figures["RSS under 40 x 30 MiB bodies (MiB)"] = f"{base:.0f} -> peak {peak[0]:.0f} -> {after:.0f}"
        finish(b, figures)


def fifo(creds: Path, endpoint) -> None:  # noqa: ANN001
    os.mkfifo(creds)


def dev_zero(creds: Path, endpoint) -> None:  # noqa: ANN001
    creds.symlink_to("/dev/zero")


@pytest.mark.parametrize("make, words", [(fifo, "FIFO"), (dev_zero, "character device")], ids=["fifo", "dev-zero"])
def test_5_6_a_fifo_or_dev_zero_as_the_login_neither_hangs_nor_bloats(tmp_path: Path, figures: dict, make, words):
    with start_broker(tmp_path, write_creds=make) as b:  # the port opens: start-up did not hang
        st = b.status()
        done = b.cli("refresh", ok=False)  # answers instead of hanging
        ok = st["token"]["state"] == "signed_out" and words in st["token"]["reason"] and "Traceback" not in done.stderr
        observe(figures, "refused" if ok else "crashed")
        assert st["token"]["state"] == "signed_out" and words in st["token"]["reason"]
        assert b.rss_mib() < 200
        assert "Traceback" not in done.stderr
        finish(b, figures)
    # leaving the context sent SIGTERM and required the broker to stop within 15 s


def test_7_nested_json_keeps_the_valid_token_serving(tmp_path: Path, figures: dict):
    with start_broker(tmp_path) as b:
        key = b.sandbox_add("s")
        tmp = b.creds.with_name("nested.tmp")
        tmp.write_text('{"claudeAiOauth": ' + "[" * 100_000 + "]" * 100_000 + "}")
        os.replace(tmp, b.creds)
        shown = holds(lambda: "nested too deeply" in b.status()["token"]["reason"], 10, "reason shown")
        state = b.status()["token"]["state"]
        served = [b.post(key)[0] for _ in range(5)]  # was: every request a 500
        observe(figures, "refused" if shown and state == "valid" and served == [200] * 5 else "crashed")
        assert shown and state == "valid"
        assert served == [200] * 5
        finish(b, figures)


def test_8_an_echoing_upstream_never_hands_a_sandbox_the_token(tmp_path: Path, figures: dict):
    with start_broker(tmp_path) as b:
        key = b.sandbox_add("s")
        token = next(iter(b.endpoint.valid_access))
        for fault, status in (("echo", 200), ("echo-302", 302), ("echo-401", 401)):
            got, reply = b.post(key, headers={"x-test-fault": fault})
            body = body_of(reply)
            masked = token.encode() not in reply and b"Bearer " + b"*" * len(token) in body
            observe(figures, "survived" if got == status and masked else "not survived")
            assert got == status and b"authorization" in body.lower(), reply[:200]
            assert masked
        finish(b, figures)


def test_9_an_endpoint_error_cannot_put_the_refresh_token_into_status(tmp_path: Path, figures: dict):
    with start_broker(tmp_path) as b:
        refresh = next(iter(b.endpoint.live_refresh))
        b.endpoint.fail_next(400, {"error": "invalid_request", "error_description": f"bad refresh_token {refresh}"},
                             count=3)
        b.cli("refresh", ok=False)
        eventually(lambda: b.endpoint.calls >= 1, 10, "a refresh attempt")
        st = json.dumps(b.status())
        observe(figures, "refused" if refresh[:20] not in st else "accepted")
        assert refresh not in st and refresh[:20] not in st
        finish(b, figures)  # refresh-events.jsonl, logs and status included


def test_10_an_existing_loose_state_dir_is_tightened_and_files_are_private(tmp_path: Path, figures: dict):
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    with start_broker(tmp_path) as b:
        key = b.sandbox_add("s")
        assert b.post(key)[0] == 200
        eventually(lambda: (state / "audit.jsonl").exists(), 5, "audit written")
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        files = [f for f in state.rglob("*") if f.is_file() and not f.is_socket()]
        assert files and {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: 0o600 for f in files}
        finish(b, figures)


def test_11_12_audit_fields_are_bounded_keys_in_paths_redacted_and_shares_kept(tmp_path: Path, figures: dict):
    audit = {"max_bytes": 256 * 1024, "backups": 1, "sandbox_bytes_per_hour": 64 * 1024}
    with start_broker(tmp_path, audit=audit) as b:
        victim, flood = b.sandbox_add("victim"), b.sandbox_add("flood")
        assert b.post(victim)[0] == 200
        big = json.dumps({**REQUEST, "model": "m" * (12 << 20)}).encode()
        bigs = [b.post(flood, big)[0] for _ in range(7)]  # the fake answers any model
        floods = [b.post(flood)[0] for _ in range(300)]
        status, _ = b.raw(f"GET /v1/models/{flood} HTTP/1.1\r\nHost: inference.local\r\nx-api-key: {flood}\r\n"
                          "Connection: close\r\n\r\n".encode())
        path = b.state / "audit.jsonl"
        written = lambda: "".join(f.read_text() for f in sorted(b.state.glob("audit.jsonl*")))  # noqa: E731
        # lines are written in batches a moment apart: wait for the budget note, the flood's last word
        settled = holds(lambda: flood[6:20] not in path.read_text() and "audit budget spent" in written(), 5,
                        "the audit budget note")
        lines = [json.loads(x) for f in sorted(b.state.glob("audit.jsonl*")) for x in f.read_text().splitlines()]
        # The 308 requests are served; what is refused is their reach into the audit trail.
        bounded = (settled and any(e.get("sandbox") == "victim" for e in lines)
                   and max(len(json.dumps(e)) for e in lines) < 1024 and any("budget" in e.get("note", "") for e in lines))
        crashed = sum(1 for st in [*bigs, *floods, status] if st == 0 or st >= 500)
        observe(figures, "crashed", crashed)
        observe(figures, "refused" if bounded else "accepted", 308 - crashed)
        assert bigs == [200] * 7 and status in (200, 404), _
        assert settled
        assert any(e.get("sandbox") == "victim" for e in lines)  # not rotated away
        assert max(len(json.dumps(e)) for e in lines) < 1024
        assert any("budget" in e.get("note", "") for e in lines)
        finish(b, figures)


def test_gzip_request_bodies_are_forwarded_as_sent_with_their_encoding(tmp_path: Path, figures: dict):
    with start_broker(tmp_path) as b:
        key = b.sandbox_add("s")
        body = gzip.compress(json.dumps(REQUEST).encode())
        status, reply = b.post(key, body, headers={"Content-Encoding": "gzip"})
        assert status == 200, reply[:300]
        rec = b.fake.requests[-1]
        assert rec.header("content-encoding") == ["gzip"] and rec.json()["model"] == REQUEST["model"]
        assert rec.body in (body, gzip.decompress(body))  # as sent (the fake's server may decode it)
        finish(b, figures)
