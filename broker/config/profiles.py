"""Provider profiles: where requests go and how the credential is attached.

A profile is data (providers/*.yaml), so a new upstream or auth style needs no code. Loading
validates every field and names the file and key in its errors; `config.files`
reads the files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

import yaml

from broker.common.errors import ProfileError
from broker.config.fields import Fields

AUTH_KINDS = ("oauth", "static")
SOURCE_KINDS = ("keychain", "file", "setup-token", "keyring")


@dataclass(frozen=True)
class Profile:
    name: str
    upstream: str
    auth_kind: str  # oauth: refreshable pair; static: a long-lived secret
    auth_header: str
    auth_scheme: str  # "Bearer" or "" (raw value)
    paths: tuple[str, ...]
    mandatory_headers: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    description: str = ""
    label: str = ""  # what the menu calls a login that names no plan ("Anthropic API key")
    token_url: str | None = None
    client_id: str | None = None
    oauth_scopes: tuple[str, ...] = ()  # sent with every refresh, before the login's own
    oauth_user_agent: str | None = None  # the User-Agent of the refresh request
    credential_sources: tuple[str, ...] = ()
    keychain_service: str | None = None
    keyring_service: str | None = None
    keyring_username: str | None = None
    login_hint: str = ""
    usage_path: str | None = None  # the plan's usage endpoint (GET, with the real token)
    usage_poll_seconds: float = 300.0

    def auth_value(self, secret: str) -> str:
        return f"{self.auth_scheme} {secret}" if self.auth_scheme else secret


def _url(fields: Fields, key: str, *, required: bool) -> str | None:
    value = fields.get(key, str, required=required)
    if value is not None:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise fields.fail(fields.name(key), f"must be an http(s) URL (got {value!r})")
    return value


def parse_profile(text: str, where: str) -> Profile:

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError(f"{where}: not valid YAML ({exc})") from None
    f = Fields(data, where, "", ProfileError)
    name = f.get("name", str, required=True)
    auth = f.sub("auth")
    kind = auth.choice("kind", AUTH_KINDS, "oauth")
    header = auth.get("header", str, "Authorization")
    scheme = auth.get("scheme", str, "Bearer")
    auth.done()
    oauth = f.sub("oauth")
    token_url = _url(oauth, "token_url", required=kind == "oauth")
    client_id = oauth.get("client_id", str, required=kind == "oauth")
    oauth_scopes = oauth.strings("scopes")
    oauth_user_agent = oauth.get("user_agent", str)
    oauth.done()
    mandatory = f.get("mandatory_headers", dict, {})
    for k, v in mandatory.items():
        if not isinstance(k, str) or not isinstance(v, str) or not v:
            raise f.fail(f"mandatory_headers.{k}", "must map a header name to a non-empty string")
    sources = f.strings("credential_sources")
    for s in sources:
        if s not in SOURCE_KINDS:
            raise f.fail("credential_sources", f"unknown source {s!r} (known: {', '.join(SOURCE_KINDS)})")
    usage = f.sub("usage")
    usage_path = usage.get("path", str)
    if usage_path is not None and not usage_path.startswith("/"):
        raise usage.fail(usage.name("path"), f"{usage_path!r} must start with /")
    poll_seconds = usage.positive("poll_seconds", 300.0)
    if poll_seconds < 30:
        raise usage.fail(usage.name("poll_seconds"), "must be at least 30 (the endpoint is rate-limited)")
    usage.done()
    paths = f.strings("paths")
    if not paths:
        raise f.fail("paths", "must list at least one API path sandboxes may reach")
    for p in paths:
        if not p.startswith("/"):
            raise f.fail("paths", f"{p!r} must start with /")
    profile = Profile(
        name=name,
        upstream=_url(f, "upstream", required=True) or "",
        auth_kind=kind,
        auth_header=header,
        auth_scheme=scheme,
        paths=paths,
        mandatory_headers={k.lower(): v for k, v in mandatory.items()},
        aliases=f.strings("aliases"),
        description=f.get("description", str, ""),
        label=f.get("label", str, ""),
        token_url=token_url,
        client_id=client_id,
        oauth_scopes=oauth_scopes,
        oauth_user_agent=oauth_user_agent,
        credential_sources=sources,
        keychain_service=f.get("keychain_service", str),
        keyring_service=f.get("keyring_service", str),
        keyring_username=f.get("keyring_username", str),
        login_hint=f.get("login_hint", str, ""),
        usage_path=usage_path,
        usage_poll_seconds=poll_seconds,
    )
    f.done()
    return profile
