"""Shared state behind one interface: in memory by default (one process), so a shared store
(Redis, PostgreSQL) can take over for several replicas."""

from bastion.state.interface import Grant, RateState, StateError
from bastion.state.memory import DEFAULT_MAX_KEYS, MemoryState

__all__ = ["DEFAULT_MAX_KEYS", "Grant", "MemoryState", "RateState", "StateError"]
