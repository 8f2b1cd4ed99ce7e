"""make_binder: the generated binder returns {name: value} exactly as Python binds the call."""

from __future__ import annotations

import enum
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from ringfence.runtime.binding import make_binder


class Color(enum.Enum):
    RED = "red"


def raised(fn: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(TypeError) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_every_kind_of_parameter() -> None:
    def f(a: int, /, b: int, c: int = 3, *rest: int, d: int, e: int = 5, **more: int) -> None:
        pass

    bind = make_binder(f)
    assert bind(1, 2, d=4) == {"a": 1, "b": 2, "c": 3, "rest": [], "d": 4, "e": 5}
    assert bind(1, 2, 30, 40, 50, d=4, e=6, z=7) == {
        "a": 1,
        "b": 2,
        "c": 30,
        "rest": [40, 50],
        "d": 4,
        "e": 6,
        "z": 7,
    }


def test_positional_only_at_the_end() -> None:
    def f(a: int, b: int = 2, /) -> None:
        pass

    assert make_binder(f)(1) == {"a": 1, "b": 2}
    assert raised(make_binder(f), a=1) == raised(f, a=1)


def test_self_and_cls_are_skipped_only_in_first_position() -> None:
    def method(self: Any, x: int) -> None:
        pass

    def classmethod_like(cls: Any, x: int) -> None:
        pass

    def late_self(x: int, self: int) -> None:
        pass

    def keyword_self(*, self: int) -> None:
        pass

    assert make_binder(method)(object(), 1) == {"x": 1}
    assert make_binder(classmethod_like)(object, 1) == {"x": 1}
    assert make_binder(method, skip_self=False)("me", 1) == {"self": "me", "x": 1}
    assert make_binder(late_self)(1, 2) == {"x": 1, "self": 2}
    assert make_binder(keyword_self)(self=3) == {"self": 3}


def test_values_are_made_plain_at_every_top_level_position() -> None:
    def f(p: Path, *more: Any, color: Color = Color.RED, **kw: Any) -> None:
        pass

    bound = make_binder(f)(Path("/a"), PurePosixPath("/b"), Color.RED, q=Path("/c"))
    assert bound == {"p": "/a", "more": ["/b", "red"], "color": "red", "q": "/c"}
    assert all(type(v) in (str, list) for v in bound.values())


def test_nested_values_are_passed_through_unchanged() -> None:
    def f(items: list[Any], mapping: dict[str, Any]) -> None:
        pass

    items = [Path("/a")]
    mapping = {"k": Color.RED}
    bound = make_binder(f)(items, mapping)
    assert bound["items"] is items  # the input gate refuses these later; nothing is hidden
    assert bound["mapping"] is mapping


def test_defaults_are_the_functions_own_objects() -> None:
    sentinel: list[int] = []

    def f(x: list[int] = sentinel) -> None:
        pass

    assert make_binder(f)()["x"] is sentinel


def test_annotations_are_not_evaluated() -> None:
    def f(x: NoSuchType) -> None:  # type: ignore[name-defined]  # noqa: F821
        pass

    assert make_binder(f)(1) == {"x": 1}


@pytest.mark.parametrize("name", ["import", "None", "class", "not an identifier", ""])
def test_functions_with_odd_names(name: str) -> None:
    def f(x: int) -> None:
        pass

    f.__name__ = name
    assert make_binder(f)(1) == {"x": 1}


def test_lambdas_and_errors_match_python() -> None:
    fn = lambda x, y=2: None  # noqa: E731
    bind = make_binder(fn)
    assert bind(1) == {"x": 1, "y": 2}
    assert raised(bind) == raised(fn)
    assert raised(bind, 1, 2, 3) == raised(fn, 1, 2, 3)
    assert raised(bind, 1, x=1) == raised(fn, 1, x=1)


def test_parameter_named_like_the_function() -> None:
    def path(path: str) -> None:
        pass

    assert make_binder(path)("/a") == {"path": "/a"}


def test_kwargs_sharing_a_positional_only_name_are_refused() -> None:
    from ringfence.runtime.binding import make_binder

    def f(path: str, /, **kw: object) -> None:
        return None

    bind = make_binder(f)
    assert bind("/tmp/x") == {"path": "/tmp/x"}
    assert bind("/tmp/x", mode="r") == {"path": "/tmp/x", "mode": "r"}
    with pytest.raises(TypeError, match="share a name"):
        bind("/tmp/x", path="/etc/passwd")
