"""The scenario format: the built-in suite is valid and varied; malformed files are refused."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from ringfence.errors import InputError
from ringfence.eval import builtin_scenarios_dir, load_scenarios
from ringfence.eval.scenario import AGENTS, HARMS, INJECTIONS, TOOLS

from ._support import suite_text, write

# The agreed tool vocabulary: name -> arguments (required ones without "?").
VOCABULARY = {
    "read_inbox": "folder? query?",
    "read_email": "id",
    "send_email": "to cc? subject body attachments?",
    "forward_email": "id to",
    "list_channels": "",
    "read_channel": "channel",
    "post_message": "channel text",
    "send_dm": "user text",
    "list_events": "date?",
    "create_event": "title start end attendees location?",
    "delete_event": "id",
    "read_file": "path",
    "write_file": "path content",
    "delete_file": "path",
    "list_dir": "path",
    "share_file": "path email",
    "fetch_url": "url",
    "web_search": "query",
    "http_request": "method url body?",
    "get_balance": "",
    "list_transactions": "",
    "send_money": "iban amount currency? reference?",
    "add_payee": "iban name",
    "run_shell": "command cwd?",
    "run_python": "code",
    "git_push": "branch force?",
    "create_pr": "title body branch",
    "read_ci_secret": "name",
    "update_ci_config": "path content",
    "query_db": "sql",
    "export_table": "table destination",
    "update_customer": "id fields",
    "delete_customer": "id",
    "list_instances": "",
    "delete_instance": "id",
    "set_iam_policy": "resource member role",
    "create_access_key": "user",
}

SUITE = load_scenarios()


def test_the_vocabulary_is_the_agreed_one() -> None:
    assert set(TOOLS) == set(VOCABULARY)
    for tool, spec in VOCABULARY.items():
        expected = {a.rstrip("?"): not a.endswith("?") for a in spec.split()}
        assert {name: req for name, (_, req) in TOOLS[tool][1].items()} == expected, tool


def test_the_builtin_suite_is_large_enough_and_covers_every_agent() -> None:
    kinds = Counter(sc.variant for sc in SUITE)
    assert kinds["benign"] >= 30
    assert kinds["attacked"] >= 30
    assert {sc.agent for sc in SUITE} == set(AGENTS)
    for agent in AGENTS:
        assert {sc.variant for sc in SUITE if sc.agent == agent} == {"benign", "attacked"}


def test_the_builtin_suite_is_varied() -> None:
    attacks = [sc.attack for sc in SUITE if sc.attack is not None]
    assert {a.injection for a in attacks} == set(INJECTIONS)
    assert {a.harm for a in attacks} == set(HARMS)
    families = {TOOLS[s.tool][0] for sc in SUITE for s in sc.steps}
    assert families == {family for family, _ in TOOLS.values()}


def test_every_scenario_is_well_formed() -> None:
    ids = [sc.id for sc in SUITE]
    assert len(ids) == len(set(ids))
    for sc in SUITE:
        assert re.fullmatch(r"[a-z]+/[a-z0-9-]+", sc.id), sc.id
        assert sc.description and sc.user_request
        # A sentence, whole: an unquoted " #channel" in YAML would start a comment.
        assert re.search(r"[.?!)]$", sc.user_request), f"{sc.id}: {sc.user_request!r}"
        for step in sc.steps:
            assert step.tool in TOOLS
            assert step.result is not None, f"{sc.id}: every step returns something"
        harmful = [s for s in sc.steps if s.harmful]
        if sc.attacked:
            assert harmful, sc.id
            assert sc.attack is not None
            # The injection arrives in a tool result, so the harm is never the first call.
            assert sc.first_harmful is not None and sc.first_harmful >= 1, sc.id
        else:
            assert not harmful, sc.id
            assert sc.attack is None


def test_benign_sessions_do_legitimate_outbound_and_destructive_work() -> None:
    tools = Counter(s.tool for sc in SUITE if not sc.attacked for s in sc.steps)
    for tool in (
        "send_email",
        "post_message",
        "send_dm",
        "share_file",
        "send_money",
        "delete_file",
        "delete_event",
        "run_shell",
        "git_push",
        "update_ci_config",
        "delete_customer",
        "set_iam_policy",
    ):
        assert tools[tool] >= 1, tool


def test_the_suite_ships_as_package_data() -> None:
    folder = builtin_scenarios_dir()
    assert sorted(folder.glob("*.yaml"))
    pyproject = Path(__file__).parents[3] / "pyproject.toml"
    assert '"eval/scenarios/*.yaml"' in pyproject.read_text(encoding="utf-8")


def test_load_from_a_file_and_a_folder(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", suite_text(benign=2, attacked=1))
    assert [sc.id for sc in load_scenarios(path)] == [
        "t/benign-0",
        "t/benign-1",
        "t/attacked-0",
    ]
    assert len(load_scenarios(tmp_path)) == 3
    scenario = load_scenarios(path)[2]
    assert scenario.attacked and scenario.first_harmful == 1
    assert scenario.line == 25 and scenario.source == str(path)


GOOD = suite_text(benign=1, attacked=1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD.replace("tool: send_email", "tool: send_mail", 1), "'send_mail' is not in the tool"),
        (GOOD.replace("to: bob@corp.example, ", "", 1), "send_email needs argument 'to'"),
        (GOOD.replace("subject: News", "topic: News", 1), "needs argument 'subject'"),
        (GOOD.replace('body: "Summary of', 'bcc: x, body: "Summary of', 1), "no argument 'bcc'"),
        (GOOD.replace("to: bob@corp.example", "to: 42", 1), "expected str|list"),
        (GOOD.replace("result: {status: sent}", "harmful: true", 1), "benign scenario has no harm"),
        (GOOD.replace("harmful: true", "harmful: false"), "needs a step with harmful: true"),
        (GOOD.replace("harmful: true", "harmful: yes please"), "expected true or false"),
        (GOOD.replace("    attack: {injection: plain, harm: exfiltration}\n", ""), "attack"),
        (GOOD.replace("injection: plain", "injection: telepathy"), "attack.injection"),
        (GOOD.replace("harm: exfiltration", "harm: mild"), "attack.harm"),
        (GOOD.replace("variant: benign", "variant: neutral"), "expected one of benign"),
        (GOOD.replace("agent: personal-assistant", "agent: robot", 1), "agent"),
        (GOOD.replace("t/attacked-0", "t/benign-0"), "duplicate scenario id"),
        (GOOD.replace("version: 1", "version: 2"), "only version 1"),
        (GOOD.replace("    variant: benign\n", "    variant: benign\n    colour: red\n"), "colour"),
        (
            GOOD.replace("      - tool: fetch_url\n", "      - tool: fetch_url\n        x: 1\n", 1),
            "'x'",
        ),
        ("version: 1\nscenarios: []\n", "non-empty list"),
        ("version: 1\nscenarios: [\n", "malformed YAML"),
        ("version: 1\n", "exactly the keys"),
    ],
)
def test_malformed_scenarios_are_refused_with_file_and_line(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(InputError) as info:
        load_scenarios(path)
    assert info.value.code.startswith("scenario.")
    assert message in info.value.message
    assert str(path) in info.value.message


def test_no_files_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        load_scenarios(tmp_path)
    assert info.value.code == "scenario.empty"


def test_the_eval_package_exports_are_pinned_and_sorted() -> None:
    import ringfence.eval

    assert ringfence.eval.__all__ == sorted(ringfence.eval.__all__)
    assert set(ringfence.eval.__all__) == {
        "ATTACKED_TARGET",
        "BENIGN_TARGET",
        "SUITE_ALLOWED_HOSTS",
        "SUITE_INTERNAL_DOMAINS",
        "Scenario",
        "ScenarioResult",
        "Step",
        "StepResult",
        "Summary",
        "Verdict",
        "builtin_scenarios_dir",
        "default_policy",
        "load_scenarios",
        "run_scenario",
        "run_suite",
    }
