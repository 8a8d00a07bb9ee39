"""The gateway fixtures, for the end-to-end tests of the rate limit."""

from tests.gateway.conftest import gateway_http  # noqa: F401
