"""An MCP client for both eras: `connect_stdio(argv)` yields a connected `Client`."""

from bastion.client.client import Client
from bastion.client.stdio import connect_stdio
from bastion.session.client_side import ClientHandlers

__all__ = ["Client", "ClientHandlers", "connect_stdio"]
