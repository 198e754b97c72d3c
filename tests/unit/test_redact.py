import logging

from broker.core.redact import RedactingFilter, SecretRegistry, fingerprint


def test_fingerprint_is_short_and_stable():
    assert fingerprint("sk-ant-oat01-x") == fingerprint("sk-ant-oat01-x") and len(fingerprint("a")) == 8
    assert fingerprint(None) is None


def test_filter_scrubs_patterns_registered_secrets_and_tracebacks():
    reg = SecretRegistry()
    reg.add("plain-secret-value")
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    h = Keep()
    h.addFilter(RedactingFilter(reg))
    log = logging.getLogger("test.redact")
    log.addHandler(h)
    log.propagate = False
    try:
        log.warning("token %s and %s and key %s", "sk-ant-oat01-abcdefghijkl", "plain-secret-value", "sk-ib-ABCDEFGHIJKLMNOP")
        try:
            raise ValueError("boom sk-ant-ort01-abcdefghijkl")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(h)
    text = "\n".join(records)
    assert "sk-ant-oat01-abc" not in text and "plain-secret-value" not in text and "sk-ib-ABC" not in text
    assert "sk-ant-ort01-abc" not in text and text.count("[redacted]") >= 4
