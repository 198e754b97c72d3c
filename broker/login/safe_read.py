"""Reading a credentials file that someone else controls, without hanging or ballooning.

Claude Code's login file is under 10 KB. Anything else at that path (a FIFO that blocks an
open forever, a symlink to /dev/zero, a 200 MB file) must cost one clear error, not a hung
loop or gigabytes of RAM: open non-blocking, check with fstat that it is a regular file,
cap the size, and give up on a read that takes too long.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from broker.login.credentials import MAX_LOGIN_BYTES
from broker.common.errors import CredentialsError

READ_TIMEOUT = 2.0  # seconds; a local 10 KB file takes microseconds

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


def file_kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def read_regular(path: Path, limit: int = MAX_LOGIN_BYTES, timeout: float = READ_TIMEOUT) -> bytes:
    """The file's bytes; FileNotFoundError if absent; CredentialsError if it is unsafe to read."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise CredentialsError(f"cannot read ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CredentialsError(f"is {file_kind(st.st_mode)}, not a regular file; refusing to read it")
        if st.st_size > limit:
            raise CredentialsError(f"is {st.st_size:,} bytes, more than the {limit:,} a login can be")
        deadline = time.monotonic() + timeout
        chunks, size = [], 0
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > limit:
                raise CredentialsError(f"grew past the {limit:,} bytes a login can be while being read")
            if time.monotonic() > deadline:
                raise CredentialsError(f"took more than {timeout:g} s to read")
            chunks.append(chunk)
    finally:
        os.close(fd)
