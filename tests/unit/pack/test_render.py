"""The pack renders and loads: each family alone, all together, with parameters substituted
and validated; the tool names and labels other code relies on are pinned."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import ringfence
from ringfence import pack
from ringfence.core.policy.lint import lint
from ringfence.errors import InputError

from ._support import Session, pack_policy

TOOLS = {
    "email": ["read_inbox", "read_email", "send_email", "forward_email"],
    "messaging": ["list_channels", "read_channel", "post_message", "send_dm"],
    "calendar": ["list_events", "create_event", "delete_event"],
    "files": ["read_file", "write_file", "delete_file", "list_dir", "share_file"],
    "web": ["fetch_url", "web_search", "http_request"],
    "payments": ["get_balance", "list_transactions", "send_money", "add_payee"],
    "shell": ["run_shell", "run_python"],
    "repo": ["git_push", "create_pr", "read_ci_secret", "update_ci_config"],
    "database": ["query_db", "export_table", "update_customer", "delete_customer"],
    "cloud": ["list_instances", "delete_instance", "set_iam_policy", "create_access_key"],
}
LABELS = {
    "read_inbox": ("untrusted",),
    "read_email": ("untrusted",),
    "list_channels": ("untrusted",),
    "read_channel": ("untrusted",),
    "list_events": ("untrusted",),
    "fetch_url": ("untrusted",),
    "web_search": ("untrusted",),
    "http_request": ("untrusted",),
    "list_transactions": ("sensitive",),
    "query_db": ("pii",),
    "export_table": ("pii", "sensitive"),
    "read_ci_secret": ("secret",),
    "create_access_key": ("secret",),
}


def load(files: dict[str, str], folder: Path) -> ringfence.Policy:
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return ringfence.load_policy(folder)


def test_families_are_the_ten_tool_families() -> None:
    assert pack.families() == list(TOOLS)
    assert list(pack.FAMILIES) == list(TOOLS)


@pytest.mark.parametrize("family", list(TOOLS))
def test_each_family_renders_and_loads_alone(family: str, tmp_path: Path) -> None:
    files = pack.render([family])
    assert list(files) == ["baseline.yaml", f"{family}.yaml"]
    policy = load(files, tmp_path / family)
    assert list(policy.tools) == TOOLS[family]
    assert pack.FAMILIES[family] == ", ".join(TOOLS[family])
    ids = [r.id for r in policy.rules]
    assert all(i.startswith((f"{family}.", "baseline.")) for i in ids)
    assert lint(policy.spec) == []


def test_the_whole_pack_loads_as_one_policy(tmp_path: Path) -> None:
    files = pack.render(pack.families())
    assert list(files) == ["baseline.yaml", *(f"{f}.yaml" for f in TOOLS)]
    policy = load(files, tmp_path / "all")
    ids = [r.id for r in policy.rules]
    assert len(ids) == len(set(ids))
    assert sorted(policy.tools) == sorted(t for tools in TOOLS.values() for t in tools)
    assert lint(policy.spec) == []
    # Rendering a family alone yields exactly its slice of the whole.
    alone = set()
    for family in TOOLS:
        alone |= {r.id for r in load(pack.render([family]), tmp_path / family).rules}
    assert alone == set(ids)


def test_declared_labels_are_pinned() -> None:
    policy = pack_policy()
    assert {n: t.labels for n, t in policy.tools.items() if t.labels} == LABELS


def test_every_tool_has_a_closed_schema_and_every_rule_a_reason() -> None:
    policy = pack_policy()
    for tool in policy.tools.values():
        assert tool.description, tool.name
        assert tool.schema is not None and tool.schema["additionalProperties"] is False, tool.name
    for rule in policy.rules:
        assert rule.reason, rule.id


def test_no_placeholder_survives_and_headers_name_their_settings() -> None:
    files = pack.render(pack.families(), settings={"max_emails": 7})
    for name, text in files.items():
        assert "{{" not in text and "}}" not in text, name
        header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
        for setting, spec in pack.SETTINGS.items():
            if f"{spec.family}.yaml" == name:
                assert re.search(rf"\b{setting}\s+=\s+\d+", header), (name, setting)
    assert "max_emails = 7" in files["email.yaml"]
    assert "ge: 7}" in files["email.yaml"]


def test_parameters_are_substituted() -> None:
    files = pack.render(
        ["email", "web"],
        internal_domains=["Corp.Example.", "corp.example", "sub.corp2.example"],
        allowed_hosts="*.stripe.com",
        settings={"max_repeats": 5},
    )
    assert "internal domains: corp.example, sub.corp2.example" in files["email.yaml"]
    assert r"(?:corp\.example|sub\.corp2\.example)$" in files["email.yaml"]
    assert "'host:*.stripe.com'" in files["web.yaml"]
    assert r"(?:[a-z0-9-]+\.)+stripe\.com" in files["web.yaml"]
    assert "ge: 5}" in files["baseline.yaml"]


def test_a_string_family_and_repeats_are_accepted() -> None:
    assert list(pack.render("web")) == ["baseline.yaml", "web.yaml"]
    assert list(pack.render(["web", "email", "web"])) == ["baseline.yaml", "email.yaml", "web.yaml"]


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"families": ["mail"]}, "input.pack.family"),
        ({"families": []}, "input.pack.family"),
        ({"internal_domains": ["corp.example'), r'.*"]}, "input.pack.domain"),
        ({"internal_domains": ["localhost"]}, "input.pack.domain"),
        ({"internal_domains": []}, "input.pack.domain"),
        ({"internal_domains": ["a@b.example"]}, "input.pack.domain"),
        ({"allowed_hosts": ["api.example.com/path"]}, "input.pack.host"),
        ({"allowed_hosts": ["*"]}, "input.pack.host"),
        ({"allowed_hosts": ["api.*.com"]}, "input.pack.host"),
        ({"allowed_hosts": [""]}, "input.pack.host"),
        ({"settings": {"max_mails": 3}}, "input.pack.setting"),
        ({"settings": {"max_calls": 0}}, "input.pack.setting"),
        ({"settings": {"max_calls": True}}, "input.pack.setting"),
        ({"settings": {"max_calls": 2.5}}, "input.pack.setting"),
        ({"settings": {"payment_approval_above": -1}}, "input.pack.setting"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, object], code: str) -> None:
    families = kwargs.pop("families", ["email"])
    with pytest.raises(InputError) as info:
        pack.render(families, **kwargs)  # type: ignore[arg-type]
    assert info.value.code == code


def test_template_returns_raw_text_and_refuses_unknown_names() -> None:
    assert "{{max_repeats}}" in pack.template("baseline")
    with pytest.raises(InputError):
        pack.template("../pyproject")


def test_the_internal_domain_parameter_changes_decisions(tmp_path: Path) -> None:
    """A colleague's address from an inbound e-mail: internal with corp.example, external
    (and so denied) with the placeholder domain."""
    request = "Reply to Kim about the offsite."
    mail = {"body": "Offsite is on Thursday. Kim (kim@corp.example)"}
    results = {}
    for domains in (["corp.example"], list(pack.DEFAULT_INTERNAL_DOMAINS)):
        policy = load(pack.render(["email"], internal_domains=domains), tmp_path / domains[0])
        session = Session(request=request, policy=policy)
        try:
            assert session.call("read_email", {"id": "m-1"}, mail).allowed
            decision = session.call("send_email", {"to": "kim@corp.example", "body": "I'm in"})
            results[domains[0]] = decision.rules
        finally:
            session.close()
    assert results == {
        "corp.example": ("email.send",),
        "example.com": ("email.injected-recipient",),
    }
