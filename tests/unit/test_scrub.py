"""The streaming body scrubber: secrets never pass, whatever the chunking; bounded hold-back."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.proxy.scrub import StreamScrubber, mask_for

TOKEN = b"sk-ant-oat01-" + b"A" * 20 + b"xyz"
KEY = b"sk-ib-sandboxkey-0123456789"
ALPHABET = b"ABCsk-ant-oat01xyz_\n\"{}: "


def run(secrets: list[bytes], chunks: list[bytes]) -> tuple[bytes, int]:
    s = StreamScrubber(secrets)
    out = b"".join(s.feed(c) for c in chunks) + s.flush()
    return out, s.found


def test_a_secret_split_across_chunks_is_masked_at_the_same_length():
    body = b'{"echo":"Bearer ' + TOKEN + b'"}'
    for cut in range(len(body) + 1):
        out, found = run([TOKEN], [body[:cut], body[cut:]])
        assert TOKEN not in out and found == 1 and len(out) == len(body)
        assert out == body.replace(TOKEN, mask_for(TOKEN))


def test_one_byte_at_a_time_and_several_secrets():
    body = b"x" + TOKEN + b"y" + KEY + b"z" + TOKEN
    out, found = run([TOKEN, KEY], [bytes([b]) for b in body])
    assert TOKEN not in out and KEY not in out and found == 3


def test_a_whole_body_at_once_matches_the_chunked_result():
    body = b"x" + TOKEN + b"y" + KEY + b"z" + TOKEN + b"sk-"
    s = StreamScrubber([TOKEN, KEY])
    assert s.whole(body) == run([TOKEN, KEY], [body[:5], body[5:]])[0] and s.found == 3
    assert StreamScrubber([]).whole(body) == body


def test_holds_back_only_while_a_tail_could_start_a_secret():
    s = StreamScrubber([TOKEN])
    assert s.feed(b"plain text, no secret") == b"plain text, no secret"  # nothing held
    assert s.feed(b"tail sk-ant-o") == b"tail "  # could be a token: held
    assert s.feed(b"K") == b"sk-ant-oK"  # it was not
    assert s.max_hold == len(TOKEN) - 1


def test_no_secrets_is_a_pass_through():
    s = StreamScrubber([])
    assert s.feed(b"abc") == b"abc" and s.flush() == b""


@settings(max_examples=300, deadline=None)
@given(secrets=st.lists(st.binary(min_size=8, max_size=40).filter(lambda b: b"*" not in b),
                        min_size=1, max_size=4),
       pieces=st.lists(st.one_of(st.binary(max_size=30), st.integers(0, 3)), max_size=20),
       cuts=st.lists(st.integers(0, 400), max_size=10))
def test_property_no_secret_ever_passes_whatever_the_chunking(secrets, pieces, cuts):
    body = b"".join(secrets[p % len(secrets)] if isinstance(p, int) else p for p in pieces)
    bounds = sorted({0, len(body), *(c for c in cuts if c <= len(body))})
    chunks = [body[a:b] for a, b in zip(bounds, bounds[1:])]
    s = StreamScrubber(secrets)
    outs = []
    for c in chunks:
        outs.append(s.feed(c))
        assert len(s._held) <= s.max_hold
    out = b"".join(outs) + s.flush()
    assert len(out) == len(body)
    for secret in secrets:
        assert secret not in out


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=300), cut=st.integers(0, 300))
def test_property_bodies_without_secrets_pass_unchanged(body, cut):
    secrets = [TOKEN, KEY]
    if any(x in body for x in secrets):
        return
    out, found = run(secrets, [body[:cut], body[cut:]])
    assert out == body and found == 0
