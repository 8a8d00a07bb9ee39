"""The Streamable HTTP transport: the MCP endpoint server and the client, both eras."""
