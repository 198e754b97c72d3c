"""One admitted request, upstream and back: body, token, header rewrite, chunk-by-chunk relay.

The proxy server (`proxy.server`) has already checked Host, Origin, path, key and pause.
Here: the body limit and the in-flight byte budget (`proxy.inflight`: a body is held until
upstream answered it, per sandbox and in total; a stream that follows holds no body), the
current token (refreshed first if it is close to expiry), the rewrite, and the relay, which
masks any known secret an upstream echoes into a body (`proxy.scrub`, across chunk
boundaries). A 401 from upstream forces one refresh and one retry. What happened is written
into the request's `Exchange`, which becomes its audit line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from broker.proxy.upstream import Reply, Upstream
from broker.config.settings import ProxySettings
from broker.common.errors import NotLoggedIn
from broker.proxy.exchange import Exchange
from broker.common.api_errors import Refusal, refusal
from broker.proxy.guards import check_body_size
from broker.proxy.headers import rewrite_request_headers, rewrite_response_headers
from broker.proxy.inflight import InflightBytes
from broker.proxy.protocols import TokenProvider
from broker.config.profiles import Profile
from broker.common.redact import REGISTRY
from broker.proxy.scrub import StreamScrubber
from broker.proxy.request_body import BodyTooLarge, decoded, request_model
from broker.usage.reply_usage import JSONUsageReader, SSEUsageTracker, json_usage, plan_limits

log = logging.getLogger(__name__)


class Refused(Exception):
    """The broker answers this request itself, with `refusal`."""

    def __init__(self, refusal: Refusal, headers: dict[str, str] | None = None, close: bool = False) -> None:
        super().__init__(refusal.message)
        self.refusal, self.headers, self.close = refusal, headers, close

    def response(self) -> web.Response:
        resp = error_response(self.refusal, self.headers)
        if self.close:  # the rest of the body is not read: the connection cannot carry another request
            resp.force_close()
        return resp


def _length_kept(method: str, up: Reply) -> bool:
    """Whether the reply can keep upstream's Content-Length: a body not decoded on the way
    (masks are as long as the secrets they replace), so the client can be told its size up
    front instead of in chunks (one write less per reply, and no chunk framing)."""
    return (up.content_length is not None and method != "HEAD" and up.status not in (204, 304)
            and up.headers.get("Content-Encoding", "identity").strip().lower() == "identity")


# The reply encodings aiohttp's client decodes (br and zstd with the Brotli and backports.zstd packages).
DECODED_REPLIES = frozenset({"gzip", "deflate", "br", "zstd", "identity"})


def _unreadable_encoding(method: str, up: Reply) -> str | None:
    """The reply's Content-Encoding when its body has one the client did not decode (the
    proxy reads every body it relays: usage, secret masking), else None."""
    coding = up.headers.get("Content-Encoding")
    if coding is None or coding.lower() in DECODED_REPLIES or method == "HEAD" or up.status in (204, 304):
        return None
    return ascii(coding[:40])


def error_response(r: Refusal, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(r.body(), status=r.status, headers=headers)


class Forwarder:
    def __init__(self, *, profile: Profile, upstream: Upstream, tokens: TokenProvider, settings: ProxySettings,
                 token_margin: float, on_limits: Callable[[Any], None] = lambda headers: None) -> None:
        self.profile, self.upstream, self.tokens = profile, upstream, tokens
        self.settings, self.token_margin = settings, token_margin
        self.plan_limits: dict[str, str] = {}  # the latest plan-limit headers upstream sent
        self.inflight = InflightBytes(settings.max_inflight_bytes_per_sandbox, settings.max_inflight_bytes)
        self.secrets_scrubbed = 0  # since start, over all responses
        self._limits_noted = float("-inf")  # monotonic time they were last read
        self._limits_waiting: Any = None  # the newest reply's headers, read when the timer fires
        self._limits_timer: asyncio.TimerHandle | None = None
        self.on_limits = on_limits  # sees each response's headers that carry plan limits
        # Budgets: once the body is read, hold what the request may spend (or refuse it: a 429
        # and seconds to retry after); the hold is settled when its use is accounted.
        self.reserve: Callable[[Exchange, bytes | bytearray], tuple[Refusal, float] | None] = lambda ex, body: None

    async def forward(self, request: web.BaseRequest, key: str, ex: Exchange) -> web.StreamResponse:
        held = [0]  # body bytes reserved against the in-flight budget, released once sent
        try:
            try:
                up, token = await self._upstream(request, key, ex, held)
            finally:  # the body is gone once upstream answered: a long stream does not hold it
                self.inflight.release(ex.sandbox, held[0])
        except Refused as refused:
            ex.status = refused.refusal.status
            return refused.response()
        return await self._relay(request, up, [token, key], ex)

    async def _upstream(self, request: web.BaseRequest, key: str, ex: Exchange,
                        held: list[int]) -> tuple[Reply, str]:
        """Send the request; the reply whose headers came, and the token it went with."""
        body = await self._read_body(request, ex.sandbox, held)  # as it came: upstream gets these bytes
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]
        readable = self._readable(body, request.headers.get("Content-Encoding"))
        is_object, ex.model = request_model(readable) if readable else (False, None)
        if request.method == "POST" and body and not is_object:
            raise Refused(refusal(400, "request body must be a JSON object"))
        verdict = self.reserve(ex, body)
        if verdict is not None:
            raise Refused(verdict[0], {"Retry-After": str(max(1, round(verdict[1])))})
        token = await self._token(self.token_margin)
        up = await self._send(request, headers, body, token, key)
        if up.status != 401:
            return up, token
        # The token may have been revoked early: refresh once (single-flight) and retry once;
        # with no newer token to try, the client gets the upstream's 401 as it was.
        passed_on = False
        try:
            new_token = await self._after_401(token)
            if new_token == token:
                passed_on = True
                return up, token
        finally:  # a refresh that raised, or a handler cancelled meanwhile, must not leak it
            if not passed_on:
                up.release()
        ex.retried_after_401 = True
        return await self._send(request, headers, body, new_token, key), new_token

    async def _after_401(self, token: str) -> str:
        """The token to retry with after upstream refused `token`: the same one when there
        is none newer (the refresh failed, or raised: the sandbox then sees the 401)."""
        try:
            await self.tokens.refresh("upstream 401", failed_token=token)
            return await self.tokens.token()
        except NotLoggedIn:
            return token
        except Exception as exc:
            log.error("refreshing after an upstream 401 failed: %s", type(exc).__name__)
            return token

    async def _read_body(self, request: web.BaseRequest, name: str, held: list[int]) -> bytes | bytearray:
        """The body, each chunk reserved against the in-flight budget first (`held` counts).
        A small body is usually in whole when the handler starts: then it is taken at once."""
        content = request.content
        try:
            if content.is_eof():
                whole = content.read_nowait()
                self._reserve(0, len(whole), name, held)
                return whole
            body = bytearray()
            async for chunk in content.iter_chunked(65536):
                self._reserve(len(body), len(chunk), name, held)
                body += chunk
        except web.RequestPayloadError as exc:  # e.g. chunked framing cut short
            raise Refused(refusal(400, "the request body could not be read "
                                       f"({str(exc).splitlines()[-1].strip()})")) from None
        return body

    def _readable(self, body: bytes | bytearray, encoding: str | None) -> bytes | bytearray:
        """The body to read the model from: a copy decoded when the client compressed it
        (bounded by the body limit, as a plain body is)."""
        if not encoding or encoding.strip().lower() == "identity" or not body:
            return body
        try:
            return decoded(bytes(body), encoding, self.settings.max_body_bytes)
        except BodyTooLarge:
            bad = check_body_size(str(self.settings.max_body_bytes + 1), self.settings.max_body_bytes)
            assert bad is not None
            raise Refused(bad) from None
        except ValueError as exc:
            raise Refused(refusal(400, f"the request body could not be read ({exc})")) from None

    def _reserve(self, have: int, more: int, name: str, held: list[int]) -> None:
        """Refuse a body past the size limit or the in-flight budget; else count `more` held."""
        limit = self.settings.max_body_bytes
        if have + more > limit:
            bad = check_body_size(str(have + more), limit)
            assert bad is not None
            raise Refused(bad)
        if not more:
            return
        status = self.inflight.reserve(name, more)
        if status is not None:
            whose = "this sandbox's requests" if status == 429 else "all sandboxes' requests"
            raise Refused(refusal(status, f"too many request bytes in flight ({whose} at once); "
                                          "retry shortly"), {"Retry-After": "1"}, close=True)
        held[0] += more

    async def _token(self, min_valid: float) -> str:
        try:
            return await self.tokens.token(min_valid=min_valid)
        except NotLoggedIn as exc:
            raise Refused(refusal(503, f"inference-broker has no usable Claude login: {exc.message}")) from None

    async def _send(self, request: web.BaseRequest, headers: list[tuple[str, str]], body: bytes | bytearray,
                    token: str, key: str) -> Reply:
        out = rewrite_request_headers(headers, auth_header=self.profile.auth_header,
                                      auth_value=self.profile.auth_value(token),
                                      mandatory=self.profile.mandatory_headers, secrets=[key],
                                      body_length=len(body))
        try:
            return await self.upstream.send(request.method, request.raw_path, out, body)
        except asyncio.TimeoutError:
            raise Refused(refusal(504, "the upstream API did not answer in time")) from None
        except aiohttp.ClientConnectionError as exc:
            log.warning("upstream unreachable: %s", type(exc).__name__)
            raise Refused(refusal(502, f"cannot reach the upstream API ({type(exc).__name__})")) from None
        except Exception as exc:  # a reply no parser accepts, or anything else on the way
            log.warning("upstream failed: %s", type(exc).__name__)
            raise Refused(refusal(502, f"the upstream API sent no usable reply ({type(exc).__name__})")) from None

    async def _relay(self, request: web.BaseRequest, up: Reply, secrets: list[str],
                     ex: Exchange) -> web.StreamResponse:
        try:
            ex.status = up.status
            self._note_limits(up)
            unreadable = _unreadable_encoding(request.method, up)
            if unreadable is not None:  # relayed as is, no secret in it could be masked
                ex.status, ex.outcome = 502, "upstream replied in an encoding the broker cannot read"
                log.warning("%s (%s)", ex.outcome, unreadable)
                return error_response(refusal(502, "the upstream API replied in a content encoding the "
                                                   f"broker cannot read ({unreadable})"))
            # An upstream that echoes a secret (the token, an earlier one, the refresh token,
            # the sandbox's key) must not hand it to a sandbox: in a header it is dropped, in a
            # body masked. The status goes with its standard phrase, never upstream's own text.
            held = {*REGISTRY.snapshot(), *secrets}
            headers = rewrite_response_headers(list(up.headers.items()), held)
            tracker = SSEUsageTracker() if up.content_type == "text/event-stream" else None
            scrubber = StreamScrubber(held)
            if tracker is None and request.method != "HEAD" and up.content.is_eof():
                # The whole reply came with its headers: one Response, headers and body in one write.
                data = up.content.read_nowait()
                ex.usage = json_usage(data)
                out = scrubber.whole(data)
                self._scrubbed(scrubber, ex)
                return web.Response(status=up.status, headers=headers, body=out)
            resp = web.StreamResponse(status=up.status, headers=headers)
            if _length_kept(request.method, up):  # framed as upstream framed it: no chunk markers
                resp.content_length = up.content_length
            del headers
            kept = JSONUsageReader()  # a non-stream's usage, in bounded memory whatever its size
            await resp.prepare(request)
            try:
                async for chunk in self.upstream.body(up):
                    if tracker is not None:
                        tracker.feed(chunk)
                    else:
                        kept.feed(chunk)
                    await resp.write(scrubber.feed(chunk))
            except (asyncio.TimeoutError, aiohttp.ClientPayloadError) as exc:
                # Half a reply must not look whole: cut the connection instead of ending cleanly.
                silent = isinstance(exc, asyncio.TimeoutError)
                ex.outcome = "upstream went silent" if silent else "upstream ended the stream early"
                log.warning("%s; cutting the client's connection", ex.outcome)
                if tracker is not None:
                    ex.usage = tracker.result()
                if request.transport is not None:
                    request.transport.abort()
                return resp
            except asyncio.CancelledError:
                # Ended by a revoke, a pause or a client gone: the tokens upstream already
                # counted (message_start's input) still belong to this sandbox's usage.
                if tracker is not None:
                    ex.usage = tracker.result()
                raise
            usage = tracker.result() if tracker is not None else kept.result()
            if usage is not None:
                ex.usage = usage
            await resp.write(scrubber.flush())
            self._scrubbed(scrubber, ex)
            await resp.write_eof()
            return resp
        finally:
            up.release()

    def _scrubbed(self, scrubber: StreamScrubber, ex: Exchange) -> None:
        if scrubber.found:
            self.secrets_scrubbed += scrubber.found
            ex.secrets_scrubbed = scrubber.found
            log.warning("the upstream echoed %d secret(s) into a response body; masked them", scrubber.found)

    def _note_limits(self, up: Reply) -> None:
        """Pass plan-limit headers on at most once a second: every reply carries them, and
        reading them costs per reply. Within that second the newest reply's headers wait
        for a timer, so a change is late by under a second, never lost."""
        now = time.monotonic()
        if now - self._limits_noted >= 1.0:
            self._limits_noted = now
            self._take_limits(up.headers)
            return
        self._limits_waiting = up.headers
        if self._limits_timer is None:
            self._limits_timer = asyncio.get_running_loop().call_later(
                1.0 - (now - self._limits_noted), self._waited_limits)

    def _waited_limits(self) -> None:
        headers, self._limits_waiting, self._limits_timer = self._limits_waiting, None, None
        if headers is not None:
            self._limits_noted = time.monotonic()
            self._take_limits(headers)

    def _take_limits(self, headers: Any) -> None:
        limits = plan_limits(headers)
        if limits:  # a reply without them (an error from a gateway, say) changes nothing
            self.plan_limits = limits
            try:
                self.on_limits(headers)
            except Exception as exc:  # the reply still goes to its sandbox
                log.error("cannot read the plan limits of a reply: %s", type(exc).__name__)
