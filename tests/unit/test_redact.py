import logging

from broker.common.redact import RedactingFilter, SecretRegistry, fingerprint


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


# -- reasons: scrubbed where they are made and again where they are shown ----------------------

def test_a_refresh_reason_never_carries_a_known_token_even_cut_short():
    from broker.common.errors import RefreshError
    from broker.common.redact import REGISTRY
    from broker.status.snapshot import TokenStatus

    secret = "refresh-tok-" + "Q" * 60  # no known pattern: only the registry knows it
    REGISTRY.add(secret)
    described = f"invalid_grant: refresh token {secret} was already used"
    exc = RefreshError(f"the login was refused ({described[:50]})", kind=RefreshError.INVALID_GRANT)
    assert secret[:12] not in exc.message and "[redacted]" in exc.message
    full = RefreshError(f"refused ({described})", kind=RefreshError.REJECTED)
    assert secret not in full.message and full.message.endswith("was already used)")
    status = TokenStatus(state="valid", reason=f"refresh failing ({described})")
    assert secret not in status.reason and secret not in str(status.to_json())
