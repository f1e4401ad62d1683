"""Helpers the tests share (fixtures themselves are in tests/conftest.py)."""
