"""Fixtures the `bastion scan` tests borrow: the fixture server run the real way
(`python -m bastion.testing.everything --http 127.0.0.1:PORT`, module-scoped)."""

from tests.http.test_http_interop import fixture_url  # noqa: F401
