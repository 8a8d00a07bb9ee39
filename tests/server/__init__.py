"""Tests of the server framework's features (tasks) against real peers."""
