"""Read YAML text into plain values while remembering the line of every value.

Duplicate keys, aliases (billion-laughs) and non-JSON scalars (dates, binary) are errors,
because a policy must mean exactly what a reviewer reads.
"""

from __future__ import annotations

import math
from typing import Any

import yaml

from ringfence.errors import PolicyError

Path = tuple[str | int, ...]

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SCALAR_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}
_COLLECTION_TAGS = {"tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"}
MAX_SOURCE_BYTES = 4 << 20
MAX_DEPTH = 64


class Located:
    """Plain data parsed from one YAML source, with a line for each path inside it."""

    def __init__(self, value: Any, lines: dict[Path, int], source: str) -> None:
        self.value = value
        self.lines = lines
        self.source = source

    def line(self, path: Path) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def error(self, path: Path, message: str, code: str = "policy.invalid") -> PolicyError:
        """A PolicyError naming this source, the line of ``path`` and the field."""
        return PolicyError(
            message, code=code, source=self.source, line=self.line(path), field=dotted(path)
        )


def dotted(path: Path) -> str:
    """``("rules", 3, "when")`` → ``rules[3].when``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def parse(text: str | bytes, source: str) -> Located:
    """Parse YAML ``text`` (one document) into plain values with line numbers."""
    if isinstance(text, bytes):
        if len(text) > MAX_SOURCE_BYTES:
            raise PolicyError(f"file is larger than {MAX_SOURCE_BYTES} bytes", source=source)
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PolicyError(
                f"not valid UTF-8 at byte {exc.start}", code="policy.encoding", source=source
            ) from None
    elif not text.isascii():
        try:
            text.encode("utf-8")  # libyaml would raise UnicodeEncodeError on a lone surrogate
        except UnicodeEncodeError as exc:
            raise PolicyError(
                f"not valid UTF-8 at character {exc.start} (lone surrogate)",
                code="policy.encoding",
                source=source,
            ) from None
    if len(text) > MAX_SOURCE_BYTES:
        raise PolicyError(f"file is larger than {MAX_SOURCE_BYTES} bytes", source=source)
    try:
        _check_depth(text, source)
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise PolicyError(
            f"malformed YAML: {exc.problem or exc.context}",
            code="policy.yaml",
            source=source,
            line=mark.line + 1 if mark else None,
        ) from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"malformed YAML: {exc}", code="policy.yaml", source=source) from None
    if not nodes or nodes[0] is None:
        raise PolicyError("the policy is empty", code="policy.empty", source=source)
    if len(nodes) > 1:
        raise PolicyError(
            "more than one YAML document in one file",
            source=source,
            line=nodes[1].start_mark.line + 1,
        )
    lines: dict[Path, int] = {}
    constructor = _Loader("")
    value = _convert(nodes[0], (), lines, source, constructor, set())
    return Located(value, lines, source)


def _check_depth(text: str, source: str) -> None:
    # libyaml's composer recurses in C without a limit: tens of thousands of nested "[" crash
    # the interpreter.  The event stream is flat, so the depth is checked on it first.
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise PolicyError(
                    "nested too deeply",
                    source=source,
                    line=event.start_mark.line + 1 if event.start_mark else None,
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _convert(
    node: yaml.Node,
    path: Path,
    lines: dict[Path, int],
    source: str,
    constructor: yaml.SafeLoader,
    seen: set[int],
) -> Any:
    line = node.start_mark.line + 1
    lines[path] = line
    if id(node) in seen:
        raise PolicyError(
            "YAML aliases are not allowed in policies", source=source, line=line, field=dotted(path)
        )
    if len(path) > MAX_DEPTH:
        raise PolicyError("nested too deeply", source=source, line=line, field=dotted(path))
    seen.add(id(node))
    if isinstance(node, yaml.ScalarNode):
        if node.tag not in _SCALAR_TAGS:
            raise PolicyError(
                f"unsupported YAML value type {node.tag!r} (use strings, numbers, booleans, null)",
                source=source,
                line=line,
                field=dotted(path),
            )
        value = constructor.construct_object(node)
        if isinstance(value, float) and not math.isfinite(value):
            # Not JSON, and the policy version hash could not tell .inf from -.inf.
            raise PolicyError(
                f"{node.value!r} is not allowed (numbers must be finite)",
                source=source,
                line=line,
                field=dotted(path),
            )
        return value
    if node.tag not in _COLLECTION_TAGS:
        raise PolicyError(
            f"unsupported YAML collection type {node.tag!r} (use plain mappings and lists)",
            source=source,
            line=line,
            field=dotted(path),
        )
    if isinstance(node, yaml.SequenceNode):
        return [
            _convert(item, (*path, i), lines, source, constructor, seen)
            for i, item in enumerate(node.value)
        ]
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise PolicyError(
                    "YAML merge keys are not allowed",
                    source=source,
                    line=key_node.start_mark.line + 1,
                    field=dotted(path),
                )
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
                raise PolicyError(
                    "mapping keys must be strings",
                    source=source,
                    line=key_node.start_mark.line + 1,
                    field=dotted(path),
                )
            if id(key_node) in seen:
                raise PolicyError(
                    "YAML aliases are not allowed in policies",
                    source=source,
                    line=value_node.start_mark.line + 1,  # the key node carries the anchor's mark
                    field=dotted(path),
                )
            seen.add(id(key_node))
            key = key_node.value
            if key in out:
                raise PolicyError(
                    f"duplicate key {key!r}",
                    code="policy.duplicate_key",
                    source=source,
                    line=key_node.start_mark.line + 1,
                    field=dotted((*path, key)),
                )
            key_line = key_node.start_mark.line + 1
            if id(value_node) in seen:
                raise PolicyError(
                    "YAML aliases are not allowed in policies",
                    source=source,
                    line=key_line,
                    field=dotted((*path, key)),
                )
            out[key] = _convert(value_node, (*path, key), lines, source, constructor, seen)
            lines[(*path, key)] = key_line
        return out
    raise PolicyError("unsupported YAML node", source=source, line=line, field=dotted(path))
