"""A mitmproxy addon (runs inside mitmdump): Anthropic's hosts go to the local fake, nothing
else goes anywhere.

The target comes from `FAKE_SITE` ("127.0.0.1:PORT"); every request's host and path is
appended to `FAKE_SITE_LOG`, so a test can show what Claude Code asked for.
"""

import os

from mitmproxy import http

ROUTED = {"platform.claude.com", "api.anthropic.com", "console.anthropic.com", "claude.ai"}
HOST, PORT = os.environ["FAKE_SITE"].rsplit(":", 1)


def request(flow: http.HTTPFlow) -> None:
    host = flow.request.pretty_host
    with open(os.environ["FAKE_SITE_LOG"], "a", encoding="utf-8") as fh:
        fh.write(f"{flow.request.method} {host} {flow.request.path.split('?')[0]}\n")
    if host in ROUTED:
        flow.request.scheme, flow.request.host, flow.request.port = "http", HOST, int(PORT)
        flow.request.headers["x-routed-from"] = host
    else:  # the suite never reaches the internet
        flow.response = http.Response.make(502, b"not routed by the test proxy", {"content-type": "text/plain"})
