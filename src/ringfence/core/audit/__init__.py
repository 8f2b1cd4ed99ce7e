"""Audit records: canonical encoding, the RFC 9162 Merkle tree, proofs, checkpoints, verification.

All pure: the log writer (``ringfence.runtime.audit``) and stores do the I/O.
"""
