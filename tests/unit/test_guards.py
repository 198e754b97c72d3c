"""Request guards as tables: which requests are served and what a refusal says."""

from __future__ import annotations

import logging

import pytest

from broker.proxy.guards import (
    Refusal,
    check_body_size,
    check_host,
    check_origin,
    check_path,
    refusal,
)

ALLOWED_HOSTS = ["inference.local", "localhost", "127.0.0.1", "::1", "172.17.0.1"]
PATHS = ["/v1/messages", "/v1/messages/count_tokens", "/v1/models", "/v1/models/*"]
MIB = 1024 * 1024


@pytest.mark.parametrize(
    "status, error_type",
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (405, "invalid_request_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (503, "api_error"),
    ],
)
def test_refusal_types_and_body(status, error_type):
    r = refusal(status, "why")
    assert r == Refusal(status, error_type, "why")
    assert r.body() == {"type": "error", "error": {"type": error_type, "message": "why"}}


@pytest.mark.parametrize(
    "host, status",
    [
        ("inference.local", None),
        ("inference.local:8765", None),
        ("INFERENCE.Local:8765", None),
        ("inference.local.", None),
        ("inference.local.:80", None),
        ("localhost", None),
        ("127.0.0.1:1234", None),
        ("[::1]:8765", None),
        ("[::1]", None),
        ("::1", None),
        ("172.17.0.1:8765", None),
        (None, 400),
        ("", 400),
        ("   ", 400),
        ("inference.local:", 400),
        ("inference.local:abc", 400),
        ("[::1", 400),
        ("[::1]x", 400),
        ("evil.example", 403),
        ("evil.example:8765", 403),
        ("inference.local.evil.example", 403),
        ("127.0.0.2", 403),
        ("[::2]:8765", 403),
    ],
)
def test_check_host(host, status):
    r = check_host(host, ALLOWED_HOSTS)
    assert (r and r.status) == status


def test_check_host_message_names_host_and_setting():
    r = check_host("Rebind.Example:80", ALLOWED_HOSTS)
    assert r is not None and r.error_type == "permission_error"
    assert "rebind.example" in r.message and "proxy.allowed_hosts" in r.message


def test_check_host_allowed_entries_are_normalised():
    assert check_host("inference.local", ["Inference.Local."]) is None
    assert check_host("[::1]:1", ["[::1]"]) is None


@pytest.mark.parametrize(
    "origin, status",
    [
        (None, None),
        ("http://localhost:3000", None),
        ("HTTP://LOCALHOST:3000/", None),
        ("https://evil.example", 403),
        ("null", 403),
        ("", 403),
    ],
)
def test_check_origin(origin, status):
    r = check_origin(origin, ["http://localhost:3000"])
    assert (r and r.status) == status


def test_check_origin_refuses_any_origin_by_default():
    r = check_origin("http://127.0.0.1:8765", [])
    assert r is not None and r.status == 403 and "Origin" in r.message


@pytest.mark.parametrize(
    "value, status",
    [
        (None, None),
        ("0", None),
        ("76000", None),
        (str(32 * MIB), None),
        (" 10 ", None),
        (str(32 * MIB + 1), 413),
        ("99999999999999999999999", 413),
        ("-1", 400),
        ("abc", 400),
        ("", 400),
        ("10, 10", 400),
        ("10,20", 400),
        ("+5", 400),
        ("1e3", 400),
        ("١٢", 400),  # non-ASCII digits
    ],
)
def test_check_body_size(value, status):
    r = check_body_size(value, 32 * MIB)
    assert (r and r.status) == status


def test_check_body_size_message_gives_limit_in_mib():
    r = check_body_size(str(40 * MIB), 32 * MIB)
    assert r is not None and r.error_type == "request_too_large" and "32 MiB" in r.message


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("POST", "/v1/messages", None),
        ("post", "/v1/messages", None),
        ("POST", "/v1/messages/count_tokens", None),
        ("GET", "/v1/models", None),
        ("GET", "/v1/models/claude-sonnet-4-5", None),
        ("HEAD", "/v1/models", None),
        ("HEAD", "/", 403),
        ("GET", "/v1/models/", 403),
        ("POST", "/v1/messages/", 403),
        ("POST", "/v1/messages/batches", 403),
        ("POST", "/api/oauth/usage", 403),
        ("POST", "/v1/oauth/token", 403),
        ("GET", "/V1/models", 403),
        ("POST", "/v1/messagesX", 403),
        ("PUT", "/v1/messages", 405),
        ("DELETE", "/v1/models/x", 405),
        ("CONNECT", "/v1/messages", 405),
        ("POST", "/v1/models/../oauth/token", 400),
        ("POST", "/v1/models/./x", 400),
        ("GET", "/v1/models/..", 400),
        ("GET", "/v1//models", 400),
        ("GET", "//v1/models", 400),
        ("GET", "/v1/models/a%2fb", 400),
        ("GET", "/v1/models/a%2Fb", 400),
        ("GET", "/v1/models/%2e%2e", 400),
        ("GET", "/v1/models/%2E", 400),
        ("GET", "/v1/models/a\\b", 400),
        ("GET", "/v1/models/a\x00b", 400),
        ("GET", "/v1/models/a%00b", 400),
        ("GET", "/v1/models/a%252e", 400),
        ("GET", "/v1/models/a b", 400),
        ("GET", "v1/models", 400),
        ("GET", "/v1/models/" + "x" * 3000, 400),
    ],
)
def test_check_path(method, path, status):
    r = check_path(method, path, PATHS)
    assert (r and r.status) == status


def test_check_path_reason_names_the_path():
    r = check_path("POST", "/api/oauth/profile", PATHS)
    assert r is not None and r.error_type == "permission_error"
    assert r.message == "path /api/oauth/profile is not forwarded by inference-broker"


def test_check_path_echo_is_printable_and_short():
    r = check_path("GET", "/x\x01" + "y" * 500, PATHS)
    assert r is not None and "\x01" not in r.message and len(r.message) < 200


# -- malformed requests in the log ------------------------------------------------------------


def _aiohttp_record(exc: BaseException) -> logging.LogRecord:
    """The record aiohttp's server writes for a request it could not parse."""
    return logging.LogRecord("broker.proxy.requests", logging.ERROR, __file__, 1, "Error handling request from %s",
                             ("127.0.0.1",), (type(exc), exc, None))


def test_malformed_requests_log_one_escaped_line_each_then_hold_back_until_the_next_window():
    from aiohttp.http_exceptions import BadHttpMessage

    from broker.proxy.connection_guard import MalformedRequestLog
    from tests.fakes.clock import FakeClock

    clock = FakeClock()
    log = MalformedRequestLog(per_window=2, window=60.0, clock=clock.time)
    bad = BadHttpMessage("Content-Length can't be present with Transfer-Encoding\x1b[2J")
    records = [_aiohttp_record(bad) for _ in range(5)]
    assert [log.filter(r) for r in records] == [True, True, False, False, False]
    line = records[0].getMessage()
    assert line.startswith("refused a malformed request from 127.0.0.1: Content-Length can't be present")
    assert "\x1b" not in line and "\\x1b" in line and records[0].exc_info is None
    assert records[0].levelno == logging.WARNING
    clock.now += 60
    later = _aiohttp_record(bad)
    assert log.filter(later) and later.getMessage().endswith("[3 more held back]")
    other = _aiohttp_record(RuntimeError("a bug of ours"))
    assert log.filter(other) and other.exc_info is not None  # not a parse error: left as it is
    assert log.total == 6
