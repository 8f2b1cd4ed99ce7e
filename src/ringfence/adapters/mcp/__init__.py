"""The MCP gateway: puts every MCP request through policy, Guard and audit, and pins tool surfaces.

``surface`` hashes tool definitions canonically and diffs them, ``pins`` decides what is pinned or
quarantined, ``pinstore`` reads and writes the pin file, ``scan`` looks for poisoned definitions.
"""
