"""Bind every argument of a call to its parameter name, defaults applied, before the check.

For a protected function we generate, once, a binder with the very same signature whose body
returns ``{name: value, ...}``: Python itself then binds positional, keyword and default
arguments (and raises the same TypeError the real call would), at C speed.  ``*args`` is bound
as a list under its name; ``**kwargs`` entries are merged in by their own names.
"""

from __future__ import annotations

import inspect
import keyword
from collections.abc import Callable
from enum import Enum
from pathlib import PurePath
from typing import Any

__all__ = ["make_binder"]

_PLAIN = (str, int, float, bool, type(None), list, dict, tuple)


def _plain(value: Any) -> Any:
    """Common non-JSON argument types turned into what a policy can compare."""
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    return value


def _clash(kwargs: dict[str, Any], named: frozenset[str]) -> dict[str, Any]:
    both = sorted(named.intersection(kwargs))
    raise TypeError(
        f"keyword argument(s) {', '.join(both)} share a name with another parameter; "
        "Ringfence cannot check both values under one name, so the call is refused"
    )


def make_binder(fn: Callable[..., Any], *, skip_self: bool = True) -> Callable[..., dict[str, Any]]:
    """A function taking ``fn``'s arguments and returning them as a name → value dict."""
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    dropped = ""
    if (
        skip_self
        and params
        and params[0].name in ("self", "cls")
        and params[0].kind
        in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        )
    ):
        dropped = params[0].name
    ns: dict[str, Any] = {
        "_rf_plain": _plain,
        "_rf_PLAIN": _PLAIN,
        "_rf_list": list,
        "_rf_map": map,
        "_rf_type": type,
    }
    pieces: list[str] = []
    items: list[str] = []
    varkw = None
    seen_kwonly = False
    for i, p in enumerate(params):
        text = p.name
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            text = f"*{p.name}"
            seen_kwonly = True
        elif p.kind is inspect.Parameter.VAR_KEYWORD:
            text = f"**{p.name}"
            varkw = p.name
        elif p.kind is inspect.Parameter.KEYWORD_ONLY and not seen_kwonly:
            pieces.append("*")
            seen_kwonly = True
        if p.default is not inspect.Parameter.empty:
            ns[f"_rf_d{i}"] = p.default
            text += f"=_rf_d{i}"
        pieces.append(text)
        if (
            i < len(params) - 1
            and p.kind is inspect.Parameter.POSITIONAL_ONLY
            and (params[i + 1].kind is not inspect.Parameter.POSITIONAL_ONLY)
        ):
            pieces.append("/")
        if p.name == dropped or p.kind is inspect.Parameter.VAR_KEYWORD:
            continue
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            value = f"_rf_list(_rf_map(_rf_plain, {p.name}))"
        else:
            value = p.name
        items.append(
            f"{p.name!r}: {value} if _rf_type({p.name}) in _rf_PLAIN else _rf_plain({p.name})"
        )
    if params and params[-1].kind is inspect.Parameter.POSITIONAL_ONLY:
        pieces.append("/")
    body = "{" + ", ".join(items) + "}"
    if varkw:
        # A **kwargs entry may share a name with a positional-only parameter or *args
        # (f(path, /, **kw) called as f("/tmp/x", path="/etc/passwd")): both values reach the
        # function, so the call is refused rather than checked with only one of them.
        named = tuple(p.name for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD)
        ns["_rf_named"] = frozenset(named)
        ns["_rf_clash"] = _clash
        body = (
            f"{{**{{k: _rf_plain(v) for k, v in {varkw}.items()}}, **{body}}} "
            f"if _rf_named.isdisjoint({varkw}) else _rf_clash({varkw}, _rf_named)"
        )
    name = getattr(fn, "__name__", "")
    if not name.isidentifier() or keyword.iskeyword(name):
        name = "call"
    source = f"def {name}({', '.join(pieces)}):\n    return {body}\n"
    exec(compile(source, f"<binder for {getattr(fn, '__qualname__', fn)}>", "exec"), ns)  # noqa: S102
    binder: Callable[..., dict[str, Any]] = ns[name]
    # A wrong call raises the TypeError the real call would, which names the qualified name.
    binder.__qualname__ = getattr(fn, "__qualname__", name)
    return binder
