"""The write-ahead record on disk: `state_dir/pending-login.json`, 0600, atomic with fsync.

Written the moment the token endpoint answers, before anything else; removed once the
store holds the pair. A broker killed in between finds it on start (`broker.login.pending`
decides what it means). Only the latest pair is kept: each save replaces the file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from broker.common.atomic_files import fsync_dir, write_private
from broker.common.errors import CredentialsError
from broker.login import pending as pd
from broker.login.safe_read import read_regular

log = logging.getLogger(__name__)

NAME = "pending-login.json"


class PendingFile:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def save(self, p: pd.Pending) -> None:
        """Atomic and durable (temp file, fsync, rename, fsync of the dir); raises OSError."""
        write_private(self.path, pd.to_bytes(p), follow=False)

    def load(self) -> pd.Pending | None:
        """The saved record, or None. One that cannot be used is set aside, never deleted."""
        try:
            data = read_regular(self.path, limit=pd.MAX_BYTES)
        except FileNotFoundError:
            return None
        except CredentialsError as exc:
            log.error("the saved login %s is unusable (%s); ignoring it", self.path, exc.message)
            return None
        try:
            return pd.from_bytes(data)
        except CredentialsError as exc:
            aside = self.path.with_name(self.path.name + ".unreadable")
            log.error("the saved login %s is unusable (%s); moved to %s", self.path, exc.message, aside.name)
            try:
                os.replace(self.path, aside)
            except OSError:
                pass
            return None

    def clear(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            return
        fsync_dir(self.path.parent)
