"""The Streamable HTTP transport: the MCP endpoint server and the client, both eras."""

from bastion.transport.http.server import McpHttpEndpoint, asgi_app, run_http, uvicorn_server

__all__ = ["McpHttpEndpoint", "asgi_app", "run_http", "uvicorn_server"]
