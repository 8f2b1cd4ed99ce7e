"""The pure core: actions, decisions, the policy language and audit-record hashing.

Nothing under ``ringfence.core`` performs I/O, reads a clock or draws random numbers:
time, ids and keys are passed in by the runtime layer.
"""
