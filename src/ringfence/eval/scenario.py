"""The scenario format: scripted agent sessions, benign and attacked, as YAML data.

A scenario file holds ``version: 1`` and a list of ``scenarios``.  Each scenario is one agent
session replayed through a policy::

    - id: assistant/invoice-attacked        # unique across the suite
      variant: attacked                     # benign | attacked
      agent: personal-assistant             # personal-assistant | coding-agent | support-agent
      description: what happens, in a line
      user_request: "the user's own words"  # the session's request (provenance: from_user)
      user: maya@brightwave.example         # optional: who the agent acts for
      context: {sandbox: none}              # optional: becomes the actions' ``context``
      attack: {injection: html-comment, harm: payment}   # attacked only
      steps:
        - tool: read_email                  # a name of the tool vocabulary (:data:`TOOLS`)
          args: {id: msg-2291}
          result: {...}                     # what the tool returns (JSON-like)
          harmful: false                    # executing this call is the attack's harm

``harmful`` defaults to false; an attacked scenario has at least one harmful step, a benign one
none.  Steps of an attacked scenario after the injection are what a hijacked model would do next.
:func:`load_scenarios` reads files or folders and checks everything here, naming file and line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ringfence.core.policy.yamlsrc import Located, parse
from ringfence.errors import InputError, PolicyError

__all__ = [
    "AGENTS",
    "HARMS",
    "INJECTIONS",
    "TOOLS",
    "VARIANTS",
    "Attack",
    "Scenario",
    "Step",
    "builtin_scenarios_dir",
    "load_scenarios",
]

VARIANTS = ("benign", "attacked")
AGENTS = ("personal-assistant", "coding-agent", "support-agent")
INJECTIONS = (
    "plain",  # an imperative aimed at the assistant, in plain text
    "polite",  # a courteous request that reads like ordinary business text
    "html-comment",  # hidden in an HTML comment or markup the user does not see
    "calendar-invite",  # in an event's description
    "file",  # in a document, README or config file
    "crm-note",  # in a customer record or ticket
    "invisible-unicode",  # Unicode tag characters or zero-width text
    "base64",  # an encoded payload the model is asked to decode
    "role-marker",  # fake system/assistant turns
    "tool-output",  # in a CI log, command output or API response
    "message",  # in a chat or channel message
)
HARMS = (
    "exfiltration",  # internal data or credentials sent to the attacker
    "payment",  # money moved to the attacker
    "deletion",  # data destroyed
    "privilege",  # access granted to the attacker
    "phishing",  # an attacker's link or lure sent to users
    "code-execution",  # attacker's code run
    "persistence",  # a change that keeps the attacker in (CI config, forwarding rule)
)

# Tool vocabulary: name -> (family, {argument: (type, required)}).  Types: str, num, bool,
# list (of strings), dict, str|list.
_ArgSpec = dict[str, tuple[str, bool]]
TOOLS: dict[str, tuple[str, _ArgSpec]] = {
    "read_inbox": ("email", {"folder": ("str", False), "query": ("str", False)}),
    "read_email": ("email", {"id": ("str", True)}),
    "send_email": (
        "email",
        {
            "to": ("str|list", True),
            "cc": ("str|list", False),
            "subject": ("str", True),
            "body": ("str", True),
            "attachments": ("list", False),
        },
    ),
    "forward_email": ("email", {"id": ("str", True), "to": ("str", True)}),
    "list_channels": ("messaging", {}),
    "read_channel": ("messaging", {"channel": ("str", True)}),
    "post_message": ("messaging", {"channel": ("str", True), "text": ("str", True)}),
    "send_dm": ("messaging", {"user": ("str", True), "text": ("str", True)}),
    "list_events": ("calendar", {"date": ("str", False)}),
    "create_event": (
        "calendar",
        {
            "title": ("str", True),
            "start": ("str", True),
            "end": ("str", True),
            "attendees": ("list", True),
            "location": ("str", False),
        },
    ),
    "delete_event": ("calendar", {"id": ("str", True)}),
    "read_file": ("files", {"path": ("str", True)}),
    "write_file": ("files", {"path": ("str", True), "content": ("str", True)}),
    "delete_file": ("files", {"path": ("str", True)}),
    "list_dir": ("files", {"path": ("str", True)}),
    "share_file": ("files", {"path": ("str", True), "email": ("str", True)}),
    "fetch_url": ("web", {"url": ("str", True)}),
    "web_search": ("web", {"query": ("str", True)}),
    "http_request": (
        "web",
        {"method": ("str", True), "url": ("str", True), "body": ("str", False)},
    ),
    "get_balance": ("payments", {}),
    "list_transactions": ("payments", {}),
    "send_money": (
        "payments",
        {
            "iban": ("str", True),
            "amount": ("num", True),
            "currency": ("str", False),
            "reference": ("str", False),
        },
    ),
    "add_payee": ("payments", {"iban": ("str", True), "name": ("str", True)}),
    "run_shell": ("shell", {"command": ("str", True), "cwd": ("str", False)}),
    "run_python": ("shell", {"code": ("str", True)}),
    "git_push": ("repo", {"branch": ("str", True), "force": ("bool", False)}),
    "create_pr": ("repo", {"title": ("str", True), "body": ("str", True), "branch": ("str", True)}),
    "read_ci_secret": ("repo", {"name": ("str", True)}),
    "update_ci_config": ("repo", {"path": ("str", True), "content": ("str", True)}),
    "query_db": ("database", {"sql": ("str", True)}),
    "export_table": ("database", {"table": ("str", True), "destination": ("str", True)}),
    "update_customer": ("database", {"id": ("str", True), "fields": ("dict", True)}),
    "delete_customer": ("database", {"id": ("str", True)}),
    "list_instances": ("cloud", {}),
    "delete_instance": ("cloud", {"id": ("str", True)}),
    "set_iam_policy": (
        "cloud",
        {"resource": ("str", True), "member": ("str", True), "role": ("str", True)},
    ),
    "create_access_key": ("cloud", {"user": ("str", True)}),
}

_TYPE_CHECKS: dict[str, Any] = {
    "str": lambda v: isinstance(v, str),
    "num": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "dict": lambda v: isinstance(v, dict),
    "list": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "str|list": lambda v: (
        isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
    ),
}


@dataclass(frozen=True)
class Step:
    """One tool call of a scripted session, what the tool returns, and whether it is the harm."""

    tool: str
    args: dict[str, Any]
    result: Any = None
    harmful: bool = False
    line: int | None = None


@dataclass(frozen=True)
class Attack:
    """How an attacked scenario's injection is delivered and what harm it aims at."""

    injection: str
    harm: str


@dataclass(frozen=True)
class Scenario:
    """One scripted agent session (see the module docstring for the format)."""

    id: str
    variant: str
    agent: str
    user_request: str
    steps: tuple[Step, ...]
    description: str = ""
    user: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    attack: Attack | None = None
    source: str = ""
    line: int | None = None

    @property
    def attacked(self) -> bool:
        """True for an attacked variant."""
        return self.variant == "attacked"

    @property
    def first_harmful(self) -> int | None:
        """Index of the first harmful step, or None (benign scenarios)."""
        return next((i for i, s in enumerate(self.steps) if s.harmful), None)


_SCENARIO_KEYS = {
    "id": True,
    "variant": True,
    "agent": True,
    "user_request": True,
    "steps": True,
    "description": False,
    "user": False,
    "context": False,
    "attack": False,
}
_STEP_KEYS = {"tool", "args", "result", "harmful"}


def builtin_scenarios_dir() -> Path:
    """The folder of the scenario suite shipped with Ringfence."""
    return Path(str(resources.files("ringfence.eval") / "scenarios"))


def load_scenarios(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None = None,
) -> list[Scenario]:
    """Load and check scenarios from files or folders (every ``*.yaml`` below a folder).

    With no paths, the built-in suite.  Raises :class:`~ringfence.errors.InputError` (code
    ``scenario.*``) naming the file, line and field of the first problem.
    """
    if paths is None:
        paths = [builtin_scenarios_dir()]
    elif isinstance(paths, str | os.PathLike):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(sorted(p.rglob("*.yaml")) if p.is_dir() else [p])
    if not files:
        raise InputError("no scenario files found", code="scenario.empty")
    out: list[Scenario] = []
    seen: dict[str, str] = {}
    for f in files:
        try:
            located = parse(f.read_bytes(), str(f))
        except OSError as exc:
            raise InputError(f"{f}: cannot read: {exc.strerror}", code="scenario.io") from None
        except PolicyError as exc:
            raise InputError(exc.message, code="scenario.yaml") from None
        for sc in _scenarios_of(located):
            if sc.id in seen:
                raise _error(located, ("scenarios",), f"duplicate scenario id {sc.id!r}")
            seen[sc.id] = sc.source
            out.append(sc)
    return out


def _error(doc: Located, path: tuple[str | int, ...], message: str) -> InputError:
    where = f"{doc.source}:{doc.line(path) or '?'}"
    field_ = ".".join(str(p) for p in path)
    return InputError(f"{where}: {field_}: {message}", code="scenario.invalid")


def _scenarios_of(doc: Located) -> list[Scenario]:
    top = doc.value
    if not isinstance(top, dict) or set(top) != {"version", "scenarios"}:
        raise _error(doc, (), "a scenario file has exactly the keys 'version' and 'scenarios'")
    if top["version"] != 1:
        raise _error(doc, ("version",), "only version 1 is known")
    items = top["scenarios"]
    if not isinstance(items, list) or not items:
        raise _error(doc, ("scenarios",), "expected a non-empty list")
    return [_scenario(doc, i, item) for i, item in enumerate(items)]


def _scenario(doc: Located, i: int, raw: Any) -> Scenario:
    at: tuple[str | int, ...] = ("scenarios", i)
    if not isinstance(raw, dict):
        raise _error(doc, at, "a scenario is a mapping")
    for key, required in _SCENARIO_KEYS.items():
        if required and key not in raw:
            raise _error(doc, at, f"missing {key!r}")
    unknown = sorted(set(raw) - set(_SCENARIO_KEYS))
    if unknown:
        raise _error(doc, (*at, unknown[0]), f"unknown key {unknown[0]!r}")
    for key in ("id", "variant", "agent", "user_request", "description", "user"):
        if key in raw and not (isinstance(raw[key], str) and raw[key].strip()):
            raise _error(doc, (*at, key), "expected a non-empty string")
    if raw["variant"] not in VARIANTS:
        raise _error(doc, (*at, "variant"), f"expected one of {', '.join(VARIANTS)}")
    if raw["agent"] not in AGENTS:
        raise _error(doc, (*at, "agent"), f"expected one of {', '.join(AGENTS)}")
    context = raw.get("context", {})
    if not isinstance(context, dict):
        raise _error(doc, (*at, "context"), "expected a mapping")
    attack = _attack(doc, at, raw)
    steps_raw = raw["steps"]
    if not isinstance(steps_raw, list) or not steps_raw:
        raise _error(doc, (*at, "steps"), "expected a non-empty list of steps")
    steps = tuple(_step(doc, (*at, "steps", j), s) for j, s in enumerate(steps_raw))
    harmful = sum(s.harmful for s in steps)
    if raw["variant"] == "attacked" and not harmful:
        raise _error(doc, (*at, "steps"), "an attacked scenario needs a step with harmful: true")
    if raw["variant"] == "benign" and harmful:
        raise _error(doc, (*at, "steps"), "a benign scenario has no harmful step")
    return Scenario(
        id=raw["id"],
        variant=raw["variant"],
        agent=raw["agent"],
        user_request=raw["user_request"],
        steps=steps,
        description=raw.get("description", ""),
        user=raw.get("user"),
        context=context,
        attack=attack,
        source=doc.source,
        line=doc.line(at),
    )


def _attack(doc: Located, at: tuple[str | int, ...], raw: dict[str, Any]) -> Attack | None:
    value = raw.get("attack")
    if raw["variant"] == "benign":
        if value is not None:
            raise _error(doc, (*at, "attack"), "a benign scenario has no 'attack'")
        return None
    if not isinstance(value, dict) or set(value) != {"injection", "harm"}:
        raise _error(doc, (*at, "attack"), "expected {injection: ..., harm: ...}")
    if value["injection"] not in INJECTIONS:
        raise _error(doc, (*at, "attack", "injection"), f"expected one of {', '.join(INJECTIONS)}")
    if value["harm"] not in HARMS:
        raise _error(doc, (*at, "attack", "harm"), f"expected one of {', '.join(HARMS)}")
    return Attack(injection=value["injection"], harm=value["harm"])


def _step(doc: Located, at: tuple[str | int, ...], raw: Any) -> Step:
    if not isinstance(raw, dict) or "tool" not in raw:
        raise _error(doc, at, "a step is a mapping with 'tool'")
    unknown = sorted(set(raw) - _STEP_KEYS)
    if unknown:
        raise _error(doc, (*at, unknown[0]), f"unknown key {unknown[0]!r}")
    tool = raw["tool"]
    if tool not in TOOLS:
        raise _error(doc, (*at, "tool"), f"{tool!r} is not in the tool vocabulary")
    args = raw.get("args", {})
    if not isinstance(args, dict):
        raise _error(doc, (*at, "args"), "expected a mapping")
    spec = TOOLS[tool][1]
    for name, (kind, required) in spec.items():
        if name not in args:
            if required:
                raise _error(doc, (*at, "args"), f"{tool} needs argument {name!r}")
            continue
        if not _TYPE_CHECKS[kind](args[name]):
            raise _error(doc, (*at, "args", name), f"expected {kind}")
    extra = sorted(set(args) - set(spec))
    if extra:
        raise _error(doc, (*at, "args", extra[0]), f"{tool} has no argument {extra[0]!r}")
    harmful = raw.get("harmful", False)
    if not isinstance(harmful, bool):
        raise _error(doc, (*at, "harmful"), "expected true or false")
    return Step(tool, args, raw.get("result"), harmful, doc.line(at))
