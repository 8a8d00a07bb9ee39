"""LineChannel: newline framing over real sockets and pipes, size limits, EOF and close."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from bastion.protocol.jsonrpc import DEFAULT_MAX_MESSAGE_SIZE
from bastion.transport import EndOfStream, FrameTooLarge
from bastion.transport.framing import LineChannel


async def socket_pair(max_size: int = DEFAULT_MAX_MESSAGE_SIZE):
    """A LineChannel on one end of a socketpair, and the raw stream writer of the other."""
    left, right = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=left)
    peer_reader, peer_writer = await asyncio.open_connection(sock=right, limit=2**20)
    return LineChannel(reader, writer, max_size=max_size), peer_reader, peer_writer


async def send_raw(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


async def test_splits_lines_and_skips_blank_ones():
    channel, _, raw = await socket_pair()
    await send_raw(raw, b'{"a":1}\n\n   \n{"b":2}\r\n{"c":3}\n')
    assert await channel.read_frame() == b'{"a":1}'
    assert await channel.read_frame() == b'{"b":2}'
    assert await channel.read_frame() == b'{"c":3}'
    raw.close()
    with pytest.raises(EndOfStream):
        await channel.read_frame()
    await channel.aclose()


async def test_reassembles_a_line_written_in_pieces():
    channel, _, raw = await socket_pair()
    read = asyncio.create_task(channel.read_frame())
    for piece in (b'{"jsonrpc":', b'"2.0","method"', b':"x"}'):
        await send_raw(raw, piece)
        await asyncio.sleep(0.01)
        assert not read.done()
    await send_raw(raw, b"\n")
    assert await asyncio.wait_for(read, 1) == b'{"jsonrpc":"2.0","method":"x"}'
    raw.close()
    await channel.aclose()


async def test_last_line_without_newline_is_accepted_then_end_of_stream_repeats():
    channel, _, raw = await socket_pair()
    await send_raw(raw, b'{"first":1}\n{"last":2}')
    raw.close()
    assert await channel.read_frame() == b'{"first":1}'
    assert await channel.read_frame() == b'{"last":2}'
    for _ in range(3):
        with pytest.raises(EndOfStream):
            await channel.read_frame()
    await channel.aclose()


async def test_default_limit_is_four_mebibytes():
    channel, _, raw = await socket_pair()
    assert channel.max_size == DEFAULT_MAX_MESSAGE_SIZE == 4 * 1024 * 1024
    raw.close()
    await channel.aclose()


async def test_a_line_at_the_limit_passes_and_one_byte_more_is_refused():
    channel, _, raw = await socket_pair(max_size=100)
    await send_raw(raw, b"a" * 100 + b"\n" + b"b" * 101 + b"\n" + b"next\n")
    assert await channel.read_frame() == b"a" * 100
    with pytest.raises(FrameTooLarge) as info:
        await channel.read_frame()
    assert info.value.limit == 100
    assert info.value.size >= 101
    assert "100-byte limit" in str(info.value)
    assert await channel.read_frame() == b"next"
    raw.close()
    await channel.aclose()


async def test_a_huge_streamed_line_is_discarded_and_the_stream_continues():
    channel, _, raw = await socket_pair(max_size=1000)

    async def produce() -> None:
        await send_raw(raw, b"x" * 500)
        for _ in range(20):  # 1.3 MB in pieces larger than the read chunk
            await send_raw(raw, b"y" * 65_000)
        await send_raw(raw, b'y"}\n{"ok":true}\n')

    producer = asyncio.create_task(produce())
    with pytest.raises(FrameTooLarge):
        await channel.read_frame()
    # Memory stays bounded while the oversize line is being skipped.
    assert len(channel._buffer) <= 1000 + 64 * 1024
    assert await channel.read_frame() == b'{"ok":true}'
    await producer
    raw.close()
    await channel.aclose()


async def test_oversize_line_cut_off_by_eof_then_end_of_stream():
    channel, _, raw = await socket_pair(max_size=50)
    await send_raw(raw, b"z" * 200)
    raw.close()
    with pytest.raises(FrameTooLarge):
        await channel.read_frame()
    with pytest.raises(EndOfStream):
        await channel.read_frame()
    await channel.aclose()


async def test_oversize_last_line_without_newline_is_refused():
    channel, _, raw = await socket_pair(max_size=50)
    await send_raw(raw, b"z" * 40)
    await asyncio.sleep(0.01)
    await send_raw(raw, b"z" * 20)
    raw.close()
    with pytest.raises(FrameTooLarge):
        await channel.read_frame()
    with pytest.raises(EndOfStream):
        await channel.read_frame()
    await channel.aclose()


async def test_write_frame_appends_the_newline_and_refuses_embedded_ones():
    channel, peer_reader, raw = await socket_pair()
    await channel.write_frame(b'{"x":1}')
    assert await asyncio.wait_for(peer_reader.readline(), 1) == b'{"x":1}\n'
    with pytest.raises(ValueError):
        await channel.write_frame(b'{"x":\n1}')
    raw.close()
    await channel.aclose()


async def test_concurrent_writes_never_interleave():
    channel, peer_reader, raw = await socket_pair()
    frames = [bytes([ord("a") + i]) * 200_000 for i in range(8)]
    async def read_all() -> list[bytes]:
        return [(await peer_reader.readuntil(b"\n"))[:-1] for _ in frames]

    reading = asyncio.create_task(read_all())
    await asyncio.wait_for(asyncio.gather(*(channel.write_frame(f) for f in frames)), 2)
    received = await asyncio.wait_for(reading, 2)
    assert sorted(received) == sorted(frames)
    raw.close()
    await channel.aclose()


async def test_write_after_close_or_without_writer_is_end_of_stream():
    channel, _, raw = await socket_pair()
    await channel.aclose()
    await channel.aclose()  # idempotent
    with pytest.raises(EndOfStream):
        await channel.write_frame(b"{}")
    with pytest.raises(EndOfStream):
        await channel.read_frame()
    raw.close()

    read_fd, write_fd = os.pipe()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    pipe = os.fdopen(read_fd, "rb", buffering=0)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), pipe
    )
    read_only = LineChannel(reader, None)
    with pytest.raises(EndOfStream):
        await read_only.write_frame(b"{}")
    os.write(write_fd, b'{"via":"pipe"}\n')
    os.close(write_fd)
    assert await read_only.read_frame() == b'{"via":"pipe"}'
    with pytest.raises(EndOfStream):
        await read_only.read_frame()
    await read_only.aclose()
    transport.close()


async def test_write_to_a_vanished_peer_ends_with_end_of_stream():
    channel, _, raw = await socket_pair()
    raw.close()
    await asyncio.sleep(0.01)
    with pytest.raises(EndOfStream):
        for _ in range(100):
            await channel.write_frame(b"x" * 10_000)
            await asyncio.sleep(0)
    await channel.aclose()


async def test_closing_the_channel_ends_a_pending_read_on_a_socket():
    channel, _, raw = await socket_pair()
    read = asyncio.create_task(channel.read_frame())
    await asyncio.sleep(0.01)
    await channel.aclose()
    with pytest.raises(EndOfStream):
        await asyncio.wait_for(read, 1)
    raw.close()


async def test_on_eof_runs_once_when_the_peer_ends_the_stream():
    channel, _, raw = await socket_pair()
    calls: list[str] = []

    async def on_eof() -> None:
        calls.append("eof")

    channel.on_eof = on_eof
    await send_raw(raw, b'{"a":1}\n')
    raw.close()
    assert await channel.read_frame() == b'{"a":1}'
    for _ in range(2):
        with pytest.raises(EndOfStream):
            await channel.read_frame()
    assert calls == ["eof"]
    await channel.aclose()


async def test_on_eof_is_not_run_for_a_local_close():
    channel, _, raw = await socket_pair()
    calls: list[str] = []

    async def on_eof() -> None:
        calls.append("eof")

    channel.on_eof = on_eof
    await channel.aclose()
    with pytest.raises(EndOfStream):
        await channel.read_frame()
    assert calls == []
    raw.close()
