"""Opaque cursors for paginated lists."""

from __future__ import annotations

from typing import Any

from bastion.protocol.errors import InvalidParams
from bastion.protocol.tokens import token_bytes, token_text


def encode_cursor(offset: int) -> str:
    return token_text(f"o:{offset}".encode())


def decode_cursor(cursor: object) -> int:
    if cursor is None:
        return 0
    if not isinstance(cursor, str):
        raise InvalidParams("cursor must be a string returned as nextCursor")
    try:
        text = token_bytes(cursor).decode()
        prefix, offset = text.split(":", 1)
        value = int(offset)
    except (ValueError, UnicodeDecodeError):
        raise InvalidParams(f"invalid cursor {cursor[:40]!r}: use a nextCursor value") from None
    if prefix != "o" or value < 0:
        raise InvalidParams(f"invalid cursor {cursor[:40]!r}: use a nextCursor value")
    return value


def paginate(
    items: list[dict[str, Any]], key: str, cursor: object, page_size: int
) -> dict[str, Any]:
    """One page of `items` under `key`, with `nextCursor` when more remain."""
    start = decode_cursor(cursor)
    if start > len(items):
        raise InvalidParams("cursor is past the end of the list")
    page = items[start : start + page_size]
    result: dict[str, Any] = {key: page}
    if start + page_size < len(items):
        result["nextCursor"] = encode_cursor(start + page_size)
    return result
