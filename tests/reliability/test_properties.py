"""Property tests (hypothesis): the credentials parser and the header rewrite take anything.

Any input gives a value or a CredentialsError saying why, never another exception; the
rewritten headers carry the broker's credential once, the OAuth beta flag exactly once, and
nothing of the sandbox's key.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.login.credentials import OAUTH_KEY, OAuthLogin, parse_login, serialize_login
from broker.common.errors import CredentialsError
from broker.proxy.headers import rewrite_request_headers

OAUTH_BETA = "oauth-2025-04-20"
KEY = "sk-ib-" + "K" * 43
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                           max_leaves=20)
oauth_fields = st.fixed_dictionaries({}, optional={
    "accessToken": st.one_of(st.text(), json_values), "refreshToken": st.one_of(st.text(), json_values),
    "expiresAt": st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False), json_values),
    "refreshTokenExpiresAt": json_values, "scopes": st.one_of(st.lists(st.text()), json_values),
    "subscriptionType": json_values, "rateLimitTier": json_values})
documents = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300),
    json_values.map(json.dumps),
    st.builds(lambda o, extra: json.dumps({OAUTH_KEY: o, **extra}), oauth_fields,
              st.dictionaries(st.text(max_size=8), json_values, max_size=3)),
    st.integers(1, 5000).map(lambda depth: '{"claudeAiOauth": ' + "[" * depth + "]" * depth + "}"),
)


def check_parse(data: str | bytes) -> OAuthLogin | None:
    try:
        login = parse_login(data)
    except CredentialsError as exc:
        assert exc.message  # says why
        return None
    assert isinstance(login.access_token, str) and login.access_token
    return login


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_any_credentials_input_is_a_login_or_a_clear_error(data):
    login = check_parse(data)
    if login is not None:  # and what parses, round-trips without losing the token pair
        again = parse_login(serialize_login(login))
        assert (again.access_token, again.refresh_token) == (login.access_token, login.refresh_token)


header_names = st.sampled_from(["anthropic-beta", "Anthropic-Beta", "authorization", "x-api-key", "content-type",
                                "connection", "keep-alive", "host", "x-app", "anthropic-version", "te",
                                "transfer-encoding", "x-forwarded-for", "user-agent", "cookie", "proxy-authorization"])
header_values = st.one_of(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
                          st.just(KEY), st.just(f"Bearer {KEY}"), st.just(OAUTH_BETA),
                          st.just(f"{OAUTH_BETA}, claude-code-20250219"), st.just("x-api-key, authorization"))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(header_names, header_values), max_size=12))
def test_header_rewrite_injects_one_credential_one_oauth_flag_and_drops_the_key(headers):
    out = rewrite_request_headers(headers, auth_header="Authorization", auth_value="Bearer sk-ant-oat01-TOKEN",
                                  mandatory={"anthropic-beta": OAUTH_BETA}, secrets=[KEY])
    names = [n.lower() for n, _ in out]
    assert names.count("authorization") == 1 and ("Authorization", "Bearer sk-ant-oat01-TOKEN") in out
    betas = [v for n, v in out if n.lower() == "anthropic-beta"]
    assert len(betas) == 1
    assert [f.strip() for f in betas[0].split(",")].count(OAUTH_BETA) == 1
    assert not any(KEY in v or KEY in n for n, v in out)
    assert not {"x-api-key", "connection", "keep-alive", "host", "te", "transfer-encoding", "cookie",
                "proxy-authorization", "x-forwarded-for"} & set(names)
