import pytest

from broker.usage.report import UsageQueryError, UsageRecord, bucket_seconds, check_by, parse_span


@pytest.mark.parametrize("text, seconds", [("7d", 604800), ("90m", 5400), ("5h", 18000), ("2w", 1209600),
                                           (" 1.5h ", 5400), ("30s", 30), ("1D", 86400)])
def test_parse_span(text, seconds):
    assert parse_span(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "d", "0d", "-1d", "7y", "7 days", None])
def test_parse_span_refuses(text):
    with pytest.raises(UsageQueryError, match="bad time span"):
        parse_span(text)


def test_by_and_buckets():
    assert check_by("model") == "model"
    with pytest.raises(UsageQueryError, match="choose sandbox, model, day, client"):
        check_by("nope")
    assert [bucket_seconds(s) for s in (86400, 7 * 86400, 30 * 86400)] == [3600, 21600, 86400]


def test_budget_tokens_leave_cache_reads_out():
    r = UsageRecord(0, "a", None, 200, 1.0, input_tokens=10, output_tokens=5, cache_creation_tokens=2,
                    cache_read_tokens=1000)
    assert r.budget_tokens == 17
