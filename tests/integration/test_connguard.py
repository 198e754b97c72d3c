"""The out-of-file-descriptors log limiter: one line a minute, no traceback, a count."""

from __future__ import annotations

import errno
import logging

import pytest

from broker.adapters.connguard import StormFilter

pytestmark = pytest.mark.integration


def record(exc: BaseException | None, msg: str = "Error handling request") -> logging.LogRecord:
    return logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, msg, None,
                             (type(exc), exc, None) if exc else None)


def test_an_fd_storm_is_one_line_a_minute_with_a_count():
    now = [0.0]
    f = StormFilter(every=60.0, clock=lambda: now[0])
    emfile = OSError(errno.EMFILE, "Too many open files")
    passed = [f.filter(record(emfile)) for _ in range(6360)]  # what the attack wrote in 8 s
    assert passed.count(True) == 1
    now[0] = 61.0
    r = record(emfile)
    assert f.filter(r) and "[6359 similar messages suppressed]" in r.getMessage()
    assert r.exc_info is None and "out of file descriptors" in r.getMessage()
    accept = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "socket.accept() out of system resource",
                               None, None)
    assert not f.filter(accept)  # same storm, same minute


def test_other_errors_pass_untouched():
    f = StormFilter()
    r = record(ValueError("boom"))
    assert all(f.filter(r) for _ in range(10)) and r.exc_info is not None
