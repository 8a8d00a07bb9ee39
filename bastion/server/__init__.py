"""Build MCP servers that answer both protocol eras from the same code."""

from bastion.server.app import Server
from bastion.server.context import Context, InputRequired
from bastion.server.prompts import PromptArgument
from bastion.server.stdio import run_stdio, serve_stdio
from bastion.server.tasks import TaskStore
from bastion.server.tools import ToolError, ToolResult

__all__ = [
    "Context",
    "InputRequired",
    "PromptArgument",
    "Server",
    "TaskStore",
    "ToolError",
    "ToolResult",
    "run_stdio",
    "serve_stdio",
]
