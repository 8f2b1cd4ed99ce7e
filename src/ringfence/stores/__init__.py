"""Implementations of the runtime's ports: SQLite (embedded default), in-memory (tests), key files."""
