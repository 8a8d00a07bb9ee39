"""Transports: bytes in and out of a peer, one framed JSON-RPC message at a time."""

from bastion.transport.base import Channel, EndOfStream, FrameTooLarge

__all__ = ["Channel", "EndOfStream", "FrameTooLarge"]
