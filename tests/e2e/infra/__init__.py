"""Sandboxes for end-to-end tests: a private Docker engine with locally built images, and
network namespaces joined to the host by a link-local veth pair. Fixtures live in
`tests/e2e/conftest.py`; these modules hold the machinery so it can be used outside pytest."""
