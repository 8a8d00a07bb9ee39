"""Sessions: a peer over a transport, and the client and server sides of MCP on top."""

from bastion.session.client_side import ClientConnection, ClientHandlers, ServerDescription
from bastion.session.context import IncomingRequest
from bastion.session.core import Session
from bastion.session.errors import EraDetectionError, PeerClosed, RequestTimeout, SessionError
from bastion.session.server_side import ServerApp, ServerConnection, ServerRequest, serve_channel

__all__ = [
    "ClientConnection",
    "ClientHandlers",
    "EraDetectionError",
    "IncomingRequest",
    "PeerClosed",
    "RequestTimeout",
    "ServerApp",
    "ServerConnection",
    "ServerDescription",
    "ServerRequest",
    "Session",
    "SessionError",
    "serve_channel",
]
