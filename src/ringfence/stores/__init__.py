"""Implementations of the runtime's ports: SQLite (the embedded default), in-memory, key files."""
