"""Bastion: a secure gateway for the Model Context Protocol, on its own dual-era MCP stack."""

__version__ = "0.1.0"
