"""Tripwires: deterministic detectors for instructions injected into tool outputs.

A web page, an e-mail, a file or a third-party tool result is written by whoever controls it,
and the model reads it as readily as it reads the user.  :func:`scan_output` walks such a
result (any JSON-like value: MCP results are dicts whose ``content`` lists hold
``{"type": "text", "text": ...}`` items; every string and every object key is scanned) and
reports :class:`Finding` values with a code, a fixed severity, the JSON pointer of the string
and a printable excerpt, plus the session **labels** they imply.

Prompt injection cannot be reliably detected in text.  A report is an *input to policy* — a
label such as ``injection`` can make a policy ask for approval before anything is sent out —
and never the only control: a clean report does not mean the content is safe.  Known gaps:
paraphrases the families do not list, other languages, a phrase split across two strings
(each string is scanned on its own), and text inside images.  Known false positives: text
*about* prompt injection quotes it, and documentation of chat formats shows role markers.

Codes, severities and labels are in :data:`CODES`; the label of a code is the part before the
dot, except for ``scan.truncated`` and ``classifier.error``, which add ``scan_incomplete`` (a
policy that treats unscanned text as suspect can say so).  Only findings of medium or high
severity add labels; low ones are informational and occur in ordinary content (a byte-order
mark, an HTML comment, an icon font's private-use characters).

Work is bounded: at most :attr:`TripwireLimits.max_bytes` of UTF-8 text, ``max_depth`` levels
and ``max_nodes`` values are scanned per output, and a ``scan.truncated`` finding says where
the scan stopped.  All matching is RE2 (linear time); see :mod:`.tripwire_scan` for the
detectors and :mod:`.tripwire_rules` for the phrase families and the ordinary text they are
written not to match.

**Classifiers.**  An optional model plugs in as an :class:`InjectionClassifier`; none is
required, bundled or downloaded.  Classifiers run after the deterministic detectors, once per
string value of at least ``min_classifier_chars`` characters, and receive the folded text
(Unicode tag characters decoded, invisible characters removed, NFKC), so smuggled text reads
plainly.  They return :class:`Finding` values with a code of their own (``classifier.<name>``
is the convention), a severity and a label; ``scan_output`` sets the pointer and makes excerpt
and message printable.  A classifier that raises, or returns anything but a sequence of
findings, yields one ``classifier.error`` finding (medium) and is not called again for that
output; the deterministic findings are returned as usual.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from ringfence.core.textscan import Hits, Severity, json_pointer, reveal
from ringfence.core.tripwire_scan import SHORT_TEXT, finds_nothing, scan_text

__all__ = [
    "CODES",
    "DEFAULT_LIMITS",
    "LABEL_SEVERITY",
    "Finding",
    "InjectionClassifier",
    "Severity",
    "TripwireLimits",
    "TripwireReport",
    "label_of",
    "scan_output",
]

_H, _M, _L = Severity.HIGH, Severity.MEDIUM, Severity.LOW
CODES: Mapping[str, tuple[Severity, str]] = {
    "injection.override": (_H, "tells the assistant to ignore or replace its instructions"),
    "injection.identity": (_H, "gives the assistant a new identity or 'mode'"),
    "injection.concealment": (_H, "tells the assistant to keep something from the user"),
    "injection.exfiltration": (_H, "asks for secrets or bulk data to be sent or put in a link"),
    "injection.addressing": (_M, "speaks to the AI assistant or tells it which tool to call"),
    "role_marker.chat_template": (_H, "chat-template tokens ([INST], <|im_start|>, <<SYS>>)"),
    "role_marker.tag": (_H, "markup that mimics a system prompt (<system>, <IMPORTANT>)"),
    "role_marker.heading": (_H, "a turn heading ('### Assistant:')"),
    "role_marker.line": (_M, "a 'System:' line that speaks to the assistant"),
    "role_marker.tool_call": (_H, "text shaped like a tool call or tool result"),
    "hidden_text.tag": (_H, "Unicode tag characters (invisible ASCII)"),
    "hidden_text.bidi": (_M, "bidirectional overrides, or embeddings without right-to-left text"),
    "hidden_text.bidi_mark": (_L, "bidirectional marks, or embeddings in right-to-left text"),
    "hidden_text.invisible_run": (_M, "a run of invisible characters (a hidden payload)"),
    "hidden_text.invisible": (_L, "zero-width or other invisible characters"),
    "hidden_text.variation_selectors": (_M, "a run of variation selectors (smuggled bytes)"),
    "hidden_text.control": (_L, "control characters (terminal escapes)"),
    "hidden_text.private_use": (_L, "private-use or unassigned code points"),
    "hidden_text.padding": (_M, "long whitespace padding that pushes text out of view"),
    "hidden_text.html": (_H, "instructions inside an HTML comment or hidden element"),
    "hidden_text.html_hidden": (_L, "an HTML comment or hidden element"),
    "encoded_payload.base64": (_H, "base64 that decodes to instructions"),
    "encoded_payload.hex": (_H, "hex that decodes to instructions"),
    "encoded_payload.rot13": (_H, "ROT13 text that decodes to instructions"),
    "encoded_payload.variation_selectors": (_H, "variation selectors that decode to instructions"),
    "encoded_payload.text": (_L, "an encoded blob that decodes to readable text"),
    "scan.truncated": (_M, "the output exceeded the scan limits; the rest was not scanned"),
    "classifier.error": (_M, "a classifier failed; its verdict is missing"),
}
"""Every deterministic code: (fixed severity, what it means)."""

_LABEL_OVERRIDES = {"scan.truncated": "scan_incomplete", "classifier.error": "scan_incomplete"}
_RANK = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2}
LABEL_SEVERITY = Severity.MEDIUM
"""Findings at or above this severity add their label to the report."""


def label_of(code: str) -> str:
    """The session label a deterministic code adds (``injection.override`` → ``injection``)."""
    return _LABEL_OVERRIDES.get(code, code.partition(".")[0])


@dataclass(frozen=True)
class Finding:
    """One suspicious thing in a tool output.

    ``pointer`` is the RFC 6901 pointer of the string (or object key) it was found in, ``""``
    for a bare string.  ``excerpt`` is printable: hidden characters appear as ``\\u{XXXX}``
    and smuggled or encoded text appears decoded.  ``label`` is the session label it implies
    (None for none); deterministic findings take theirs from :func:`label_of`.
    """

    code: str
    severity: Severity
    pointer: str
    excerpt: str
    message: str = ""
    label: str | None = None


@dataclass(frozen=True)
class TripwireLimits:
    """Bounds on the work one :func:`scan_output` call does."""

    max_bytes: int = 1 << 20
    """UTF-8 bytes of strings and keys scanned per output (1 MiB)."""
    max_depth: int = 64
    max_nodes: int = 100_000
    min_classifier_chars: int = 16
    """Shorter strings ("text", "image/png") are not sent to classifiers."""
    max_classifier_findings: int = 32
    """Findings kept from one classifier call; the rest are dropped."""


DEFAULT_LIMITS = TripwireLimits()


@dataclass(frozen=True)
class TripwireReport:
    """What :func:`scan_output` found: sorted findings, the labels to add, how much was read."""

    findings: tuple[Finding, ...]
    labels: tuple[str, ...]
    scanned_bytes: int
    truncated: bool

    def at_least(self, severity: Severity) -> tuple[Finding, ...]:
        """The findings of ``severity`` or higher."""
        return tuple(f for f in self.findings if _RANK[f.severity] >= _RANK[severity])

    @property
    def max_severity(self) -> Severity | None:
        """The highest severity found, None for a clean report."""
        return max((f.severity for f in self.findings), key=_RANK.__getitem__, default=None)


class InjectionClassifier(Protocol):
    """An optional detector, typically an ML model, run after the deterministic ones.

    For example, a wrapper around a local prompt-injection model::

        class ModelClassifier:
            def classify(self, text: str) -> Sequence[Finding]:
                score = model.score(text[:2000])  # the caller's model, loaded by the caller
                if score < 0.9:
                    return []
                return [Finding("classifier.model", Severity.MEDIUM, "", text[:80],
                                f"score {score:.2f}", "injection")]
    """

    def classify(self, text: str) -> Sequence[Finding]:
        """Findings for one folded string; pointers are set by the caller."""
        ...


class _Walk:
    """One scan: a byte budget, node and depth counts, and what was found."""

    def __init__(self, limits: TripwireLimits) -> None:
        self.limits = limits
        self.hits = Hits()
        self.budget = limits.max_bytes
        self.nodes = 0
        self.truncated = False
        self.texts: list[tuple[str, str]] = []  # (pointer, folded) for classifiers

    def stop(self, pointer: str, why: str) -> None:
        # Only the first limit reached is reported: it is where the unscanned part begins.
        if not self.truncated:
            self.truncated = True
            self.hits.add("scan.truncated", pointer, why, why)

    def text(self, text: str, path: tuple[str | int, ...], is_value: bool) -> None:
        if self.budget <= 0:
            self.stop(json_pointer(path), f"byte limit of {self.limits.max_bytes} reached")
            return
        raw = text.encode("utf-8", "surrogatepass")
        if len(raw) > self.budget:
            why = f"scanned {self.budget} of {len(raw)} bytes here; limit reached"
            self.stop(json_pointer(path), why)
            raw = raw[: self.budget]
        self.budget -= len(raw)
        # Decoding again drops a character cut in half by the limit and turns lone surrogates
        # (possible in Python strings, never in real UTF-8, and fatal to RE2) into U+FFFD.
        # The pointer is made only if the scan found something (most strings find nothing).
        folded = scan_text(raw.decode("utf-8", "replace"), lambda: json_pointer(path), self.hits)
        if is_value and len(folded) >= self.limits.min_classifier_chars:
            self.texts.append((json_pointer(path), folded))

    def walk(self, content: Any) -> None:
        # An explicit stack: a deeply nested value must not hit Python's recursion limit.
        stack: list[tuple[Any, tuple[str | int, ...], bool]] = [(content, (), False)]
        while stack:
            value, path, is_key = stack.pop()
            self.nodes += 1
            if self.nodes > self.limits.max_nodes:
                self.stop(json_pointer(path), f"node limit of {self.limits.max_nodes} reached")
                return
            if isinstance(value, str):
                if value:
                    self.text(value, path, is_value=not is_key)
                if self.truncated and self.budget <= 0:
                    return  # nothing more will be read
            elif isinstance(value, Mapping | list | tuple):
                if len(path) >= self.limits.max_depth:
                    self.stop(json_pointer(path), f"depth limit of {self.limits.max_depth} reached")
                else:
                    stack.extend(reversed(_children(value, path)))


def _children(value: Any, path: tuple[str | int, ...]) -> list[tuple[Any, Any, bool]]:
    """(value, path, is_key) for the members of a container, in document order."""
    if not isinstance(value, Mapping):
        return [(item, (*path, i), False) for i, item in enumerate(value)]
    # Media payloads (MCP image and audio content) reach the model as media, not as text.
    media = value.get("type") in ("image", "audio")
    out: list[tuple[Any, Any, bool]] = []
    for key, item in value.items():
        child = (*path, key if isinstance(key, str | int) else str(key))
        out.append((key, child, True))
        if not (media and key == "data"):
            out.append((item, child, False))
    return out


def _one_line(text: str) -> str:
    """``text`` with every run of whitespace (tabs, newlines, padding) as one space."""
    return " ".join(text.split())


def _describe(classifier: object, exc: Exception) -> str:
    try:
        detail = str(exc)
    except Exception:  # an exception's own __str__ may fail too
        detail = "(unprintable)"
    return reveal(f"{type(classifier).__name__}: {type(exc).__name__}: {detail}")


def _checked(found: Any, pointer: str, limits: TripwireLimits) -> list[Finding]:
    """A classifier's result made safe to report; TypeError if it is not a list of findings."""
    if not isinstance(found, Sequence) or isinstance(found, str | bytes):
        raise TypeError(f"classify() returned {type(found).__name__}, not a sequence")
    out = []
    for f in list(found)[: limits.max_classifier_findings]:
        if not (
            isinstance(f, Finding)
            and isinstance(f.severity, Severity)
            and isinstance(f.code, str)
            and f.code
            and all(isinstance(x, str) for x in (f.excerpt, f.message))
            and (f.label is None or isinstance(f.label, str))
        ):
            raise TypeError(f"classify() returned {type(f).__name__} {reveal(repr(f))[:80]}")
        code, excerpt = _one_line(reveal(f.code))[:80], _one_line(reveal(f.excerpt))[:200]
        message = _one_line(reveal(f.message))[:500]
        out.append(replace(f, pointer=pointer, code=code, excerpt=excerpt, message=message))
    return out


def _classify(
    classifiers: Iterable[InjectionClassifier], texts: list[tuple[str, str]], limits: TripwireLimits
) -> list[Finding]:
    out = []
    for classifier in classifiers:
        for pointer, text in texts:
            try:
                out += _checked(classifier.classify(text), pointer, limits)
            except Exception as exc:  # any failure becomes a finding: the caller must get a report
                what = _one_line(_describe(classifier, exc))
                severity, meaning = CODES["classifier.error"]
                label = label_of("classifier.error")
                message = f"{meaning}: {what[:300]}"
                out.append(
                    Finding("classifier.error", severity, pointer, what[:200], message, label)
                )
                break  # a broken classifier is not asked again for this output
    return out


def _clean_strings(items: list[Any], limits: TripwireLimits) -> TripwireReport | None:
    """The report of :func:`scan_output` for a list of short strings that all scan clean
    (what a tool's text answers are), without the walk; None for anything else."""
    if len(items) >= limits.max_nodes:
        return None
    total = 0
    for item in items:
        if type(item) is not str or len(item) > SHORT_TEXT:
            return None
        if not item:
            continue
        if item.isascii():
            total += len(item)
        else:
            raw = item.encode("utf-8", "surrogatepass")
            total += len(raw)
            item = raw.decode("utf-8", "replace")
        if not finds_nothing(item):
            return None
    if total > limits.max_bytes:
        return None
    return TripwireReport((), (), total, False)


def _sort_key(f: Finding) -> tuple[str, str, int, str, str]:
    return (f.pointer, f.code, -_RANK[f.severity], f.excerpt, f.message)


def scan_output(
    content: Any,
    *,
    limits: TripwireLimits = DEFAULT_LIMITS,
    classifiers: Iterable[InjectionClassifier] = (),
) -> TripwireReport:
    """Scan one tool output (any JSON-like value) for injected instructions.

    Strings, object keys and the items of lists and tuples are scanned; other values are
    skipped.  Never raises for any input value (a failing classifier becomes a
    ``classifier.error`` finding).  Findings are sorted by pointer, code, severity and excerpt.
    """
    if not classifiers and type(content) is list:
        clean = _clean_strings(content, limits)
        if clean is not None:
            return clean
    walk = _Walk(limits)
    walk.walk(content)
    findings = []
    for pointer, code, excerpt, shown in walk.hits.items():
        severity, meaning = CODES[code]
        message = f"{meaning}: {shown}" if shown else meaning
        excerpt, message = _one_line(excerpt), _one_line(message)
        findings.append(Finding(code, severity, pointer, excerpt, message, label_of(code)))
    findings += _classify(classifiers, walk.texts, limits)
    findings.sort(key=_sort_key)
    labels = {f.label for f in findings if f.label and _RANK[f.severity] >= _RANK[LABEL_SEVERITY]}
    scanned = limits.max_bytes - walk.budget
    return TripwireReport(tuple(findings), tuple(sorted(labels)), scanned, walk.truncated)
