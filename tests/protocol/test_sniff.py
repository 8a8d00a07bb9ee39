"""Identifying a message from the first bytes of a frame too large to parse."""

from __future__ import annotations

import pytest

from bastion.protocol.jsonrpc import sniff_envelope


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b'{"jsonrpc":"2.0","id":7,"result":{"content":[{"id":3', ("response", 7)),
        (b'{"jsonrpc":"2.0","id":"r-1","error":{"code":1', ("response", "r-1")),
        (b'{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"x"', ("request", 5)),
        (b'{"method":"tools/call","id":"a\\"b","params":{"id":9', ("request", 'a"b')),
        # An "id" inside params or result is not the message's id.
        (b'{"jsonrpc":"2.0","method":"tools/call","params":{"id":9', ("request", None)),
        (b'{"jsonrpc":"2.0","result":{"id":9},"id":3', ("response", None)),
        (b'{"id": 1.5, "method": "x"', ("request", None)),
        (b"not json at all", (None, None)),
        (b"", (None, None)),
    ],
)
def test_sniff_envelope(head, expected):
    assert sniff_envelope(head) == expected
