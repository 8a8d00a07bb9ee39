"""Reading capability objects: `has_capability(caps, "sampling.tools")`."""

from __future__ import annotations

from typing import Any


def has_capability(capabilities: dict[str, Any] | None, path: str) -> bool:
    """Whether a dotted capability path is declared (present and not false/null)."""
    node: Any = capabilities or {}
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return node is not None and node is not False


def elicitation_modes(capabilities: dict[str, Any] | None) -> set[str]:
    """The elicitation modes a client supports; an empty `elicitation: {}` means form only."""
    if not has_capability(capabilities, "elicitation"):
        return set()
    elicitation = (capabilities or {}).get("elicitation")
    if not isinstance(elicitation, dict):  # malformed (e.g. `true`): treat as the bare form
        elicitation = {}
    modes = {mode for mode in ("form", "url") if mode in elicitation}
    return modes or {"form"}


def has_extension(capabilities: dict[str, Any] | None, extension: str) -> bool:
    """Whether a modern capability object declares an extension."""
    extensions = (capabilities or {}).get("extensions")
    return isinstance(extensions, dict) and extension in extensions


def capability_for_input_request(method: str) -> str:
    """The client capability an MRTR input request (or legacy server request) needs."""
    return {
        "sampling/createMessage": "sampling",
        "elicitation/create": "elicitation",
        "roots/list": "roots",
    }[method]
