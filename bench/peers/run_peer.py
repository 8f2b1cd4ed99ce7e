"""Run the neutral workload on one peer engine and print its timings.

Run it with the peers' own interpreter (see ``bench/setup-peers.sh``)::

    .venv-bench/bin/python bench/peers/run_peer.py --engine cedar --rules 100 --json
    .venv-bench/bin/python bench/peers/run_peer.py --engine list

For each engine the workload's rules (``bench/workload.py``) are written in that engine's
own policy language and parsed/compiled once, outside the timed region.  Every probe is
then checked against its expected effect (a mismatch exits with status 3: a benchmark of a
wrong answer is worthless), and only then timed with ``harness.measure``.

The timed call always starts from the workload's own ``(tool, args)`` and includes
whatever the engine needs to turn that into its request (a Cedar request dict, a Rego
input, an AGT context dict) and to read the decision back; it never includes parsing the
policies.  See ``bench/peers/README.md`` for how each engine expresses the rules.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_BENCH = Path(__file__).resolve().parent.parent
if str(_BENCH) not in sys.path:
    sys.path.insert(0, str(_BENCH))

import harness  # noqa: E402
import workload  # noqa: E402

ALLOW, DENY = "allow", "deny"

# One timed decision: (tool, args) -> "allow" | "deny".
Decide = Callable[[str, dict[str, Any]], str]


class Unavailable(Exception):
    """The engine's package does not import in this interpreter."""


class WrongAnswer(Exception):
    """The engine returned an effect other than the workload's expected one."""


@dataclass
class Engine:
    """A built engine: its decision function, version and notes."""

    decide: Decide
    version: str
    notes: list[str] = field(default_factory=list)


def _dist_version(*names: str) -> str:
    parts = []
    for name in names:
        try:
            parts.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{name} ?")
    return ", ".join(parts)


def _quiet_import(module: str) -> Any:
    """Import ``module`` with its deprecation chatter silenced (AGT warns on import)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return __import__(module, fromlist=["_"])
    except ImportError as exc:  # pragma: no cover - depends on the venv
        raise Unavailable(f"{module} does not import: {exc}") from exc


def _top_dir(path: str) -> str:
    """``"/data/report.csv"`` -> ``"/data/"``: the first path segment with both slashes.

    For the workload's one-segment prefixes, ``top_dir(p) == "/data/"`` holds exactly when
    ``p.startswith("/data/")``; used only for engines that cannot test a prefix.
    """
    i = path.find("/", 1)
    return path[: i + 1] if i > 0 else path


# --------------------------------------------------------------------------- AGT: agent_os


def build_agt_evaluator(n: int) -> Engine:
    """agent_os.policies.PolicyEvaluator over one PolicyDocument (priority, first match)."""
    policies = _quiet_import("agent_os.policies")
    rules: list[dict[str, Any]] = [
        {
            "name": "deny-etc",
            "condition": {
                "field": "path",
                "operator": "matches",
                "value": "^" + workload.DENY_PREFIX,
            },
            "action": "deny",
            "priority": 100,
        }
    ]
    allows = workload.allow_rules(n)
    if allows:
        # A PolicyRule has exactly ONE condition, so "tool == t AND amount < 1000 AND path
        # starts with /data/" cannot be one rule.  It is split into the per-tool allows
        # (lowest priority) behind two shared deny guards that negate the other two terms.
        rules += [
            {
                "name": "guard-amount",
                "condition": {"field": "amount", "operator": "gte", "value": workload.AMOUNT_LIMIT},
                "action": "deny",
                "priority": 50,
            },
            {
                "name": "guard-path",
                "condition": {
                    "field": "path",
                    "operator": "matches",
                    "value": f"^(?!{workload.ALLOW_PREFIX})",
                },
                "action": "deny",
                "priority": 50,
            },
        ]
        rules += [
            {
                "name": r.rule_id,
                "condition": {"field": "tool_name", "operator": "eq", "value": r.tool},
                "action": "allow",
                "priority": 0,
            }
            for r in allows
        ]
    doc = policies.PolicyDocument.model_validate(
        {"name": "bench", "rules": rules, "defaults": {"action": "deny"}}
    )
    evaluator = policies.PolicyEvaluator(policies=[doc])

    def decide(tool: str, args: dict[str, Any]) -> str:
        decision = evaluator.evaluate({"tool_name": tool, **args})
        return ALLOW if decision.allowed else DENY

    notes = [
        "agent_os.policies.PolicyEvaluator.evaluate(context) on one PolicyDocument built "
        "from a dict (the YAML shape) and validated once; default action deny.",
        "A PolicyRule holds a single condition (no AND), so each allow r{i} is "
        "'tool_name eq tool_i' behind two global deny guards 'amount gte 1000' and "
        "'path matches ^(?!/data/)' (priority 50); deny-etc is 'path matches ^/etc/' "
        f"(priority 100). That is {len(rules)} PolicyRules for {n} workload rules; the "
        "decisions are identical on every input that carries amount and path.",
        "First match wins after a priority sort that evaluate() redoes on every call "
        "(O(n log n) per call); each decision builds a pydantic PolicyDecision with a "
        "timestamped audit_entry (not stored).",
    ]
    return Engine(
        decide, _dist_version("agent-governance-toolkit", "agent-governance-toolkit-core"), notes
    )


# --------------------------------------------------------------------------- AGT: agentmesh


def _agentmesh_policy_yaml(n: int) -> str:
    """The workload as an agentmesh ``governance.toolkit/v1`` policy document (YAML)."""
    lines = [
        "apiVersion: governance.toolkit/v1",
        "name: bench",
        "agents: ['*']",
        "default_action: deny",
        "rules:",
        "  - name: deny-etc",
        "    stage: pre_tool",
        f"    condition: \"path_prefix == '{workload.DENY_PREFIX}'\"",
        "    action: deny",
    ]
    for r in workload.allow_rules(n):
        lines += [
            f"  - name: {r.rule_id}",
            "    stage: pre_tool",
            f"    condition: \"tool_name == '{r.tool}' and amount < {workload.AMOUNT_LIMIT}"
            f" and path_prefix == '{workload.ALLOW_PREFIX}'\"",
            "    action: allow",
        ]
    return "\n".join(lines) + "\n"


_AGENTMESH_NOTES = [
    "Conditions are agentmesh's string expressions ('a == \"x\" and b < 1000'), which it "
    "re-interprets with regexes on every evaluation; all rules are evaluated on every call "
    "(candidates collected, then resolved).",
    "agentmesh expressions have no prefix/regex operator (only ==, !=, in [...], numeric "
    "<,<=,>,>=, and/or), so 'path starts with X' is written 'path_prefix == X' where "
    "path_prefix (the path's first segment, '/data/') is computed from the path inside the "
    "timed call. Exact for these one-segment prefixes; not a general prefix test.",
]


def build_agt_policyengine(n: int) -> Engine:
    """agentmesh.governance.PolicyEngine.evaluate with deny_overrides conflict resolution."""
    gov = _quiet_import("agentmesh.governance")
    engine = gov.PolicyEngine(conflict_strategy="deny_overrides")
    engine.load_yaml(_agentmesh_policy_yaml(n))

    def decide(tool: str, args: dict[str, Any]) -> str:
        path = args["path"]
        context = {
            "tool_name": tool,
            "amount": args["amount"],
            "path": path,
            "path_prefix": _top_dir(path),
        }
        decision = engine.evaluate("did:mesh:bench", context)
        return ALLOW if decision.allowed else DENY

    notes = [
        "agentmesh.governance.PolicyEngine(conflict_strategy='deny_overrides')"
        ".evaluate(agent_did, context) with the policy loaded once via load_yaml "
        "(one rule per workload rule: deny-etc + r{i}, default_action deny, agents ['*']).",
        *_AGENTMESH_NOTES,
    ]
    return Engine(
        decide, _dist_version("agent-governance-toolkit", "agent-governance-toolkit-core"), notes
    )


def build_agt_govern(n: int) -> Engine:
    """agentmesh.governance.govern(fn, policy=yaml): one guarded call of a no-op tool."""
    gov = _quiet_import("agentmesh.governance")
    denied = object()

    def tool_fn(**kwargs: Any) -> str:
        return "ok"

    # govern() builds its context from the call's kwargs only: `action` becomes
    # action.type and every other scalar kwarg k becomes k.value; the function's own name is
    # not used, so the tool name is passed as `action`.
    yaml_text = (
        _agentmesh_policy_yaml(n)
        .replace("tool_name ==", "action.type ==")
        .replace("amount <", "amount.value <")
        .replace("path_prefix ==", "path_prefix.value ==")
    )
    guarded = gov.govern(tool_fn, policy=yaml_text, on_deny=lambda decision: denied)

    def decide(tool: str, args: dict[str, Any]) -> str:
        path = args["path"]
        result = guarded(action=tool, amount=args["amount"], path=path, path_prefix=_top_dir(path))
        return DENY if result is denied else ALLOW

    audit = guarded.audit_log
    notes = [
        "agentmesh.governance.govern(fn, policy=<yaml>, on_deny=...) around a no-op "
        "function; one timed sample = one guarded call (context from kwargs, "
        "PolicyEngine.evaluate with govern's default deny_overrides, audit, then the call "
        "or on_deny). on_deny returns a sentinel instead of the default raise of "
        "GovernanceDenied, so denies are not charged for an exception.",
        f"Audit is govern()'s default: {type(audit).__name__} in memory (a Merkle hash "
        "chain of AuditEntry objects, one SHA-256 leaf + path update per call, kept in a "
        "list that grows for the whole run); no file or sink.",
        "The tool name is passed as the 'action' kwarg (govern() does not use the wrapped "
        "function's name); rules test action.type / amount.value / path_prefix.value.",
        *_AGENTMESH_NOTES,
    ]
    return Engine(
        decide, _dist_version("agent-governance-toolkit", "agent-governance-toolkit-core"), notes
    )


# --------------------------------------------------------------------------- Cedar


def cedar_policies(n: int) -> str:
    """The workload in Cedar: one forbid plus one permit per allow rule."""
    out = [
        '@id("deny-etc")',
        "forbid (principal, action, resource)",
        f'when {{ context.path like "{workload.DENY_PREFIX}*" }};',
    ]
    for r in workload.allow_rules(n):
        out += [
            f'@id("{r.rule_id}")',
            f'permit (principal, action == Action::"{r.tool}", resource)',
            f"when {{ context.amount < {workload.AMOUNT_LIMIT}",
            f'       && context.path like "{workload.ALLOW_PREFIX}*" }};',
        ]
    return "\n".join(out) + "\n"


def build_cedar(n: int) -> Engine:
    """cedarpy.is_authorized with a pre-parsed PolicySet and Entities handle."""
    try:
        import cedarpy
    except ImportError as exc:
        raise Unavailable(f"cedarpy does not import: {exc}") from exc
    policy_set = cedarpy.PolicySet.from_str(cedar_policies(n))
    entities = cedarpy.Entities.from_json_str("[]")
    principal = {"type": "Agent", "id": "bench"}
    allow = cedarpy.Decision.Allow

    def decide(tool: str, args: dict[str, Any]) -> str:
        request = {
            "principal": principal,
            "action": {"type": "Action", "id": tool},
            "resource": {"type": "Tool", "id": tool},
            "context": args,
        }
        result = cedarpy.is_authorized(request, policy_set, entities)
        return ALLOW if result.decision == allow else DENY

    notes = [
        "cedarpy.is_authorized(request, PolicySet, Entities): policies parsed once with "
        "PolicySet.from_str and the (empty) entity set once with Entities.from_json_str, "
        "both reused across calls; no schema.",
        "deny-etc is a forbid (Cedar: any forbid overrides every permit); each r{i} is "
        'permit(principal, action == Action::"tool_i", resource) when '
        '{ context.amount < 1000 && context.path like "/data/*" }; Cedar\'s default is deny.',
        "The request's principal/action/resource are given as {type, id} dicts (measured "
        "faster here than the 'Action::\"tool_i\"' string form, which cedarpy parses per "
        "call); cedarpy json.dumps the context per call and json.loads the response.",
    ]
    return Engine(decide, _dist_version("cedarpy"), notes)


# --------------------------------------------------------------------------- Rego


def rego_module(n: int) -> str:
    """The workload in Rego v1: incremental `permitted` rules, one `forbidden`, default deny."""
    out = [
        "package ringfence",
        "",
        "import rego.v1",
        "",
        "default allow := false",
        "",
        "default permitted := false",
        "",
        "# deny-etc",
        f'forbidden if startswith(input.args.path, "{workload.DENY_PREFIX}")',
        "",
        "allow if {",
        "\tpermitted",
        "\tnot forbidden",
        "}",
    ]
    for r in workload.allow_rules(n):
        out += [
            "",
            f"# {r.rule_id}",
            "permitted if {",
            f'\tinput.tool == "{r.tool}"',
            f"\tinput.args.amount < {workload.AMOUNT_LIMIT}",
            f'\tstartswith(input.args.path, "{workload.ALLOW_PREFIX}")',
            "}",
        ]
    return "\n".join(out) + "\n"


def build_rego(n: int) -> Engine:
    """regopy (rego-cpp): module compiled once into a bundle, input set per call."""
    try:
        import regopy
    except ImportError as exc:
        raise Unavailable(f"regopy does not import: {exc}") from exc
    entrypoint = "ringfence/allow"
    interp = regopy.Interpreter()
    interp.add_module("ringfence.rego", rego_module(n))
    bundle = interp.build(None, [entrypoint])
    if not bundle.ok():
        raise RuntimeError(f"rego bundle failed to build: {bundle.node()}")
    Input = regopy.Input

    def decide(tool: str, args: dict[str, Any]) -> str:
        interp.set_input(Input({"tool": tool, "args": args}))
        output = interp.query_bundle_entrypoint(bundle, entrypoint)
        if not output.ok():
            raise RuntimeError(f"rego query failed: {output}")
        return ALLOW if output[0][0] is True else DENY

    notes = [
        "regopy (rego-cpp, not OPA's Go engine): the module is compiled once with "
        "Interpreter.build(None, ['ringfence/allow']) into a Bundle; each call is "
        "set_input(Input({'tool', 'args'})) + query_bundle_entrypoint (the Output's JSON "
        "is parsed by regopy). Interpreter.query('data.ringfence.allow') recompiles the "
        "module on every call (~0.6 ms for 1 rule), so it is not used.",
        "deny-etc is 'forbidden if startswith(input.args.path, \"/etc/\")'; each r{i} is "
        'an incremental \'permitted if { input.tool == "tool_i"; input.args.amount < 1000; '
        "startswith(input.args.path, \"/data/\") }'; 'allow if { permitted; not forbidden }' "
        "with 'default allow := false'.",
    ]
    return Engine(decide, f"regopy {_safe_meta('regopy')} (rego-cpp {regopy.__version__})", notes)


def _safe_meta(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


# --------------------------------------------------------------------------- driver

BUILDERS: dict[str, Callable[[int], Engine]] = {
    "agt-evaluator": build_agt_evaluator,
    "agt-policyengine": build_agt_policyengine,
    "agt-govern": build_agt_govern,
    "cedar": build_cedar,
    "rego": build_rego,
}

_IMPORTS = {
    "agt-evaluator": "agent_os.policies",
    "agt-policyengine": "agentmesh.governance",
    "agt-govern": "agentmesh.governance",
    "cedar": "cedarpy",
    "rego": "regopy",
}


def available_engines() -> list[str]:
    """Engines whose package imports in this interpreter."""
    out = []
    for name, module in _IMPORTS.items():
        try:
            _quiet_import(module)
        except Exception:
            continue
        out.append(name)
    return out


def edge_cases(n: int) -> list[workload.Probe]:
    """Untimed extra checks that each encoding is faithful at the boundaries."""
    P = workload.Probe
    ok_path = "/data/report.csv"
    tool = f"tool_{max(n - 2, 0)}"
    allow_if = ALLOW if n >= 2 else DENY
    return [
        P("edge-amount-999", tool, {"amount": 999, "path": ok_path}, allow_if),
        P("edge-amount-1000", tool, {"amount": 1000, "path": ok_path}, DENY),
        P("edge-first-tool", "tool_0", {"amount": 5, "path": ok_path}, allow_if),
        P("edge-unknown-tool", "tool_unknown", {"amount": 5, "path": ok_path}, DENY),
        P("edge-no-slash", tool, {"amount": 5, "path": "/data"}, DENY),
        P("edge-longer-dir", tool, {"amount": 5, "path": "/database/x"}, DENY),
        P("edge-etc-only", tool, {"amount": 5000, "path": "/etc/shadow"}, DENY),
    ]


def check(engine: Engine, n_rules: int, name: str) -> None:
    """Every probe (and edge case) must give its expected effect, twice (stable decisions)."""
    for _ in range(2):
        for p in [*workload.probes(n_rules), *edge_cases(n_rules)]:
            got = engine.decide(p.tool, dict(p.args))
            if got != p.expected:
                raise WrongAnswer(
                    f"{name}: probe {p.name!r} ({p.tool} {p.args}) returned {got!r}, "
                    f"expected {p.expected!r}"
                )


def _auto_n(fn: Callable[[], Any], budget_s: float) -> int:
    """Samples that fit ``budget_s`` for this probe, between 1,000 and 20,000."""
    t0 = time.perf_counter()
    calls = 0
    while calls < 20 or (time.perf_counter() - t0 < 0.2 and calls < 2_000):
        fn()
        calls += 1
    per_call = (time.perf_counter() - t0) / calls
    return int(max(1_000, min(20_000, budget_s / (per_call * 1.1))))


def run(name: str, n_rules: int, samples: int | None, budget_s: float) -> dict[str, Any]:
    engine = BUILDERS[name](n_rules)
    probes = workload.probes(n_rules)
    check(engine, n_rules, name)
    results: dict[str, Any] = {}
    auto = samples is None
    for p in probes:
        args = dict(p.args)
        tool = p.tool
        decide = engine.decide

        def fn(decide: Decide = decide, tool: str = tool, args: dict[str, Any] = args) -> str:
            return decide(tool, args)

        n = _auto_n(fn, budget_s) if auto else samples
        assert n is not None
        results[p.name] = harness.measure(fn, n=n, warmup=min(2_000, max(100, n // 10)))
    # Decisions must still be right after the timed runs (state such as audit logs grows).
    check(engine, n_rules, name)
    notes = list(engine.notes)
    if auto:
        notes.append(
            f"Samples per probe chosen to fit ~{budget_s:g} s each (1,000..20,000; "
            "harness default is 20,000); pass --n to fix it."
        )
    notes.append(
        "Timed call: (tool, args) -> engine request -> decision -> 'allow'/'deny'; "
        "policy parsing/compilation happens once, before timing."
    )
    return {
        "engine": name,
        "version": engine.version,
        "rules": n_rules,
        "probes": results,
        "notes": " ".join(notes),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", required=True, help=f"one of {', '.join(BUILDERS)}, or 'list'")
    ap.add_argument("--rules", type=int, default=100, help="workload size n (>= 1)")
    ap.add_argument(
        "--n", type=int, default=None, help="samples per probe (default: auto, <= 20000)"
    )
    ap.add_argument("--budget-s", type=float, default=12.0, help="seconds per probe for auto --n")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args(argv)

    if a.engine == "list":
        for name in available_engines():
            print(name)
        return 0
    if a.engine not in BUILDERS:
        print(
            f"run_peer: unknown engine {a.engine!r} (known: {', '.join(BUILDERS)})", file=sys.stderr
        )
        return 2
    if a.rules < 1 or (a.n is not None and a.n < 1):
        print("run_peer: --rules and --n must be >= 1", file=sys.stderr)
        return 2

    try:
        out = run(a.engine, a.rules, a.n, a.budget_s)
    except Unavailable as exc:
        if a.json:
            print(json.dumps({"engine": a.engine, "rules": a.rules, "unavailable": str(exc)}))
        print(f"run_peer: {a.engine} unavailable: {exc}", file=sys.stderr)
        return 4
    except WrongAnswer as exc:
        print(f"run_peer: WRONG ANSWER, not benchmarked: {exc}", file=sys.stderr)
        return 3

    if a.json:
        print(json.dumps(out))
    else:
        print(f"{out['engine']} ({out['version']}), {out['rules']} rules")
        for pname, m in out["probes"].items():
            p50, p99, n = m["p50_us"], m["p99_us"], int(m["n"])
            print(f"  {pname:8s} p50 {p50:10.2f} us  p99 {p99:10.2f} us  n={n}")
        print(f"  notes: {out['notes']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
