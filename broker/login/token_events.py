"""The refresh-event trail (refresh-events.jsonl, `status` history): fingerprints, never tokens."""

from __future__ import annotations

import logging
from typing import Any, Callable

from broker.login import token_status as snap
from broker.common.clock import Clock
from broker.login.credentials import OAuthLogin
from broker.common.redact import REGISTRY, fingerprint
from broker.login.sources import CredentialSource

log = logging.getLogger(__name__)


class TokenEvents:
    def __init__(self, sink: Callable[[dict[str, Any]], None], clock: Clock,
                 source: Callable[[], CredentialSource | None]) -> None:
        self.sink, self.clock, self.source = sink, clock, source

    def record(self, trigger: str, outcome: str, old: OAuthLogin | None, new: OAuthLogin | None,
               detail: str | None = None) -> None:
        source = self.source()
        event = {
            "time": snap.iso(self.clock.time()),
            "trigger": trigger,
            "outcome": outcome,
            "old": fingerprint(old.access_token) if old else None,
            "new": fingerprint(new.access_token) if new else None,
            "source": source.label if source else None,
        }
        if detail:
            event["detail"] = REGISTRY.scrub(detail)
        try:
            self.sink(event)
        except Exception as exc:  # a full disk must not stop a refresh
            log.error("cannot record refresh event: %s", exc)
