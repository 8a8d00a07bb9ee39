"""Tests of Bastion's Streamable HTTP client (both eras, and the HTTP+SSE fallback)."""
