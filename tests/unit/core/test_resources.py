"""Resource normalisation and derivation from arguments."""

from __future__ import annotations

import pytest

from ringfence.core.action import Resource
from ringfence.core.resources import derive, normalise


def norm(rtype: str, value: str) -> list[Resource]:
    return list(normalise(rtype, value))


class TestPaths:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("/data/x", "/data/x"),
            ("/data/../etc/passwd", "/etc/passwd"),
            ("/data/./a//b/", "/data/a/b"),
            ("/../../etc/shadow", "/etc/shadow"),
            ("//etc/passwd", "/etc/passwd"),
            ("///etc/passwd", "/etc/passwd"),
            ("data/../../x", "../x"),
            ("a/b/..", "a"),
            ("", ""),
        ],
    )
    def test_normalised(self, raw: str, expected: str) -> None:
        assert norm("path", raw) == [Resource("path", expected)]

    def test_case_is_kept(self) -> None:
        assert norm("path", "/Data/X") == [Resource("path", "/Data/X")]


class TestUrls:
    def test_scheme_and_host_lowercased_and_host_derived(self) -> None:
        assert norm("url", "HTTPS://Example.COM/Some/Path?Q=1") == [
            Resource("url", "https://example.com/Some/Path?Q=1"),
            Resource("host", "example.com"),
        ]

    def test_path_is_normalised_and_trailing_dot_of_host_dropped(self) -> None:
        assert norm("url", " https://example.com./a/../b ") == [
            Resource("url", "https://example.com/b"),
            Resource("host", "example.com"),
        ]

    def test_userinfo_is_dropped_so_it_cannot_disguise_the_host(self) -> None:
        assert norm("url", "https://trusted.com@evil.com/x") == [
            Resource("url", "https://evil.com/x"),
            Resource("host", "evil.com"),
        ]

    def test_port_is_kept_in_the_url_not_the_host(self) -> None:
        assert norm("url", "http://example.com:8080/") == [
            Resource("url", "http://example.com:8080/"),
            Resource("host", "example.com"),
        ]

    def test_fragment_is_dropped(self) -> None:
        assert norm("url", "https://a.com/p#frag") == [
            Resource("url", "https://a.com/p"),
            Resource("host", "a.com"),
        ]

    @pytest.mark.parametrize(
        "raw", ["http://[::1/", "http://example.com:abc/", "http://example.com:99999/"]
    )
    def test_unparseable_url_yields_only_the_raw_url(self, raw: str) -> None:
        # no host resource, so an allow rule naming hosts cannot match it
        assert norm("url", raw) == [Resource("url", raw)]

    def test_url_without_host(self) -> None:
        assert norm("url", "mailto:someone") == [Resource("url", "mailto://someone")]


class TestOtherTypes:
    @pytest.mark.parametrize("rtype", ["host", "domain", "email", "recipient"])
    def test_case_and_trailing_dot_folded(self, rtype: str) -> None:
        assert norm(rtype, " Bob@Example.COM. ") == [Resource(rtype, "bob@example.com")]

    def test_unknown_type_is_verbatim(self) -> None:
        assert norm("table", " Users ") == [Resource("table", " Users ")]


class TestDerive:
    SPEC = ((("path",), "path"), (("opts", "target"), "url"))

    def test_missing_argument_names_nothing(self) -> None:
        assert derive({}, self.SPEC) == []
        assert derive({"opts": {}}, self.SPEC) == []
        assert derive({"opts": "not a dict"}, self.SPEC) == []
        assert derive({"path": None}, self.SPEC) == []

    def test_scalar_and_nested(self) -> None:
        assert derive({"path": "/a/../b", "opts": {"target": "http://H.com/"}}, self.SPEC) == [
            Resource("path", "/b"),
            Resource("url", "http://h.com/"),
            Resource("host", "h.com"),
        ]

    def test_list_names_each(self) -> None:
        assert derive({"path": ["/x", "/data/../etc/passwd"]}, self.SPEC) == [
            Resource("path", "/x"),
            Resource("path", "/etc/passwd"),
        ]

    @pytest.mark.parametrize(
        ("value", "type_name"), [(5, "int"), ({"a": 1}, "dict"), (["/x", 3], "int"), (True, "bool")]
    )
    def test_wrong_type_raises_type_error(self, value: object, type_name: str) -> None:
        with pytest.raises(TypeError) as info:
            derive({"path": value}, self.SPEC)
        assert str(info.value) == f"args.path names a path resource but is a {type_name}"
