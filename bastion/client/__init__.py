"""An MCP client for both eras: `connect_stdio(argv)` and `connect_http(url)` yield a `Client`.

`connect_http(url, oauth=OAuthProvider(...))` authorizes with OAuth 2.1 (`bastion.client.oauth`).
"""

from bastion.client.client import Client
from bastion.client.http import connect_http
from bastion.client.oauth import (
    HeadlessAuthorizer,
    MemoryTokenStore,
    OAuthClientSettings,
    OAuthError,
    OAuthProvider,
    PreRegisteredClient,
)
from bastion.client.stdio import connect_stdio
from bastion.session.client_side import ClientHandlers

__all__ = [
    "Client",
    "ClientHandlers",
    "HeadlessAuthorizer",
    "MemoryTokenStore",
    "OAuthClientSettings",
    "OAuthError",
    "OAuthProvider",
    "PreRegisteredClient",
    "connect_http",
    "connect_stdio",
]
