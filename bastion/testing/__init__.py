"""Test fixtures built on Bastion itself.

`bastion.testing.everything` is the conformance fixture ("everything" server): every tool,
resource, template and prompt the MCP conformance suite expects, served by
`bastion.server.Server` in both protocol eras. Run it with
`python -m bastion.testing.everything` (stdio).
"""
