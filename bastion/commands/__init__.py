"""Command groups of the `bastion` CLI that live outside `bastion/cli.py` (each registers
itself on the main Typer app with a `register(app)` function)."""
