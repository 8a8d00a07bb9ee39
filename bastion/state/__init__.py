"""Shared state behind one interface: in memory by default (one process), so a shared store
(Redis, PostgreSQL) can take over for several replicas."""
