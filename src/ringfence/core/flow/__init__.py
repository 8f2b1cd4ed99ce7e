"""Session information flow: labels, counters, call history and value provenance.

Prompt injection cannot be reliably detected in text, but the action it leads to can be
checked against where its data came from.  This package is the pure core of that check:

* :func:`parts_of` extracts the significant parts of a value — e-mail addresses, URLs and
  domains, IBANs and account numbers, phone numbers, paths, ids and short free text —
  from anywhere inside it (destinations hide inside message bodies and documents).
* :class:`Provenance` remembers which :class:`Source` (the user, trusted tools, untrusted
  content) showed the session each part, and answers, for one argument, whether it comes
  only from untrusted content, from nowhere, or from the user.
* :class:`SessionState` carries labels (which only ever grow), counters, call counts, a
  window of recent call digests and the provenance, bounded in entries and bytes, and
  encodes to JSON for a store.

Nothing here performs I/O, reads a clock or draws random numbers.  The matching rules and
the fail-closed behaviour at the bounds are described in :mod:`.parts`,
:mod:`.values`, :mod:`.provenance` and :mod:`.session`.
"""

from ringfence.core.flow.parts import TRUNCATED, Part, PartKind
from ringfence.core.flow.provenance import Provenance, Seen, Source
from ringfence.core.flow.session import (
    OTHER,
    UNTRUSTED_LABEL,
    SessionState,
    call_digest,
    decode_state,
    encode_state,
)
from ringfence.core.flow.values import DEFAULT_LIMITS, STOPWORDS, FlowLimits, parts_of

__all__ = [
    "DEFAULT_LIMITS",
    "OTHER",
    "STOPWORDS",
    "TRUNCATED",
    "UNTRUSTED_LABEL",
    "FlowLimits",
    "Part",
    "PartKind",
    "Provenance",
    "Seen",
    "SessionState",
    "Source",
    "call_digest",
    "decode_state",
    "encode_state",
    "parts_of",
]
