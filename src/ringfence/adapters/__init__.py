"""Adapters: the edges where actions arrive (the MCP gateway, framework integrations, services).

Adapters translate to and from the core API and hold no policy logic of their own.
"""
