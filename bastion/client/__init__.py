"""An MCP client for both eras: `connect_stdio(argv)` and `connect_http(url)` yield a `Client`."""

from bastion.client.client import Client
from bastion.client.http import connect_http
from bastion.client.stdio import connect_stdio
from bastion.session.client_side import ClientHandlers

__all__ = ["Client", "ClientHandlers", "connect_http", "connect_stdio"]
