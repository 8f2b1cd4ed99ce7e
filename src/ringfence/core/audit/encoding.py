"""The canonical encoding of audit records (format ``rf-cjson-1``).

A record is a JSON object encoded as UTF-8 with object keys sorted by code point, no
insignificant whitespace, integers in the signed/unsigned 64-bit range, floats finite and
written in shortest round-trip form, strings with only the escapes JSON requires.  The
encoder is msgspec's (``order="sorted"``); :func:`canonical` refuses what the format forbids.
The same bytes are hashed into the Merkle tree and stored, so verification never re-encodes.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ringfence.core.action import argument_problem
from ringfence.errors import InputError

__all__ = ["FORMAT", "canonical", "decode"]

FORMAT = "rf-cjson-1"
_encoder = msgspec.json.Encoder(order="sorted")
_decoder = msgspec.json.Decoder()
encode_unchecked = _encoder.encode
# For record structs whose fields are declared in code-point order: same bytes, no sorting.
encode_record = msgspec.json.Encoder(order="deterministic").encode


def canonical(record: dict[str, Any]) -> bytes:
    """Canonical bytes of ``record``; raises InputError for values the format forbids."""
    problem = argument_problem(record)
    if problem is not None:
        raise InputError(problem.replace("args", "record", 1), code="input.record")
    return _encoder.encode(record)


def decode(data: bytes) -> dict[str, Any]:
    """Parse canonical bytes back into a record (InputError if it is not a JSON object)."""
    try:
        value = _decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # msgspec raises the latter itself
        raise InputError(f"record is not valid JSON: {exc}", code="input.record") from None
    if not isinstance(value, dict):
        raise InputError("record is not a JSON object", code="input.record")
    return value


def is_canonical(data: bytes) -> bool:
    """True if ``data`` is exactly the canonical encoding of what it decodes to."""
    try:
        return _encoder.encode(decode(data)) == data
    except InputError:
        return False
