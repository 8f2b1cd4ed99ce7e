"""Credential verification cost, beside the core decision cost.

    .venv/bin/python bench/identity.py [--quick] [--json bench/results/identity.json]

Measures, with the shared harness (every call timed alone, timer overhead subtracted):

* the core decision (Policy.evaluate, one allow rule) — the figure identity adds to;
* a check's credential work when the credential is cached: the verifier alone, and all the
  Guard adds (verify + take the identity + derive resources + scope/budget check);
* a first verification (uncached): a root credential, and chains of 1 and 2 delegations;
* Guard.check with and without a verifier (in-memory audit log, so the record's cost is the
  same on both sides) and a protected function with the durable SQLite audit log;
* reading the registry's generation: the shared word vs ``PRAGMA data_version``;
* the token formats and libraries that were candidates (those installed), on one token.
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import ringfence  # noqa: E402
from harness import measure  # noqa: E402
from ringfence.core.action import Action  # noqa: E402
from ringfence.runtime.authority import Authority  # noqa: E402
from ringfence.runtime.identity import Verifier  # noqa: E402
from ringfence.stores.identity import SQLiteIdentityRegistry  # noqa: E402

POLICY = """
version: 1
tools:
  read_file:
    args: {type: object, properties: {path: {type: string}}, required: [path]}
    resources: {path: path}
rules:
  - {id: read, effect: allow, tool: read_file}
"""
ARGS = {"path": "/workspace/report.csv"}


def setup(folder: Path) -> tuple[Authority, Verifier, dict[str, str]]:
    registry = SQLiteIdentityRegistry(folder / "identity")
    authority = Authority(registry, trust_domain="corp.example")
    for name in ("planner", "researcher", "fetcher"):
        authority.create_agent(name)
    root = authority.issue(
        "planner",
        tools=("read_*", "search"),
        resources=("path:/workspace/**", "host:api.example.com"),
        budgets={"max_cost": 5.0},
        user="alice@example.com",
        delegable=2,
    )
    one = authority.delegate(root, "researcher", tools=("read_file",))
    two = authority.delegate(one, "fetcher")
    return authority, Verifier(registry), {"root": root, "delegated 1": one, "delegated 2": two}


def credential_costs(n: int, folder: Path) -> dict[str, Any]:
    authority, verifier, tokens = setup(folder)
    policy = ringfence.policy_from_text(POLICY)
    now = time.time_ns()
    action = Action(kind="tool_call", tool="read_file", args=ARGS)
    out: dict[str, Any] = {"bytes": {k: len(v) for k, v in tokens.items()}}
    out["core decision (Policy.evaluate)"] = measure(lambda: policy.evaluate(action, "d"), n=n)
    root = tokens["root"]
    verifier.verify(root, now)
    out["cached: verify"] = measure(lambda: verifier.verify(root, now), n=n)

    def guard_adds() -> None:
        verified = verifier.verify(root, now)
        identified = verified.identify(action)
        verifier.admit(verified, "read_file", policy.resources_of(identified))

    out["cached: all a Guard adds"] = measure(guard_adds, n=n)
    for name, token in tokens.items():

        def first(token: str = token) -> None:
            verifier.forget((token,))
            verifier.verify(token, now)

        out[f"uncached: {name}"] = measure(first, n=max(n // 5, 1000), warmup=200)
    out["forget() alone (included in the uncached figures)"] = measure(
        lambda: verifier.forget((root,)), n=n
    )
    registry = verifier.registry
    out["registry generation (shared word)"] = measure(registry.generation, n=n)
    db = sqlite3.connect(folder / "identity" / "registry.sqlite")
    out["PRAGMA data_version (for comparison)"] = measure(
        lambda: db.execute("PRAGMA data_version").fetchone(), n=n
    )
    db.close()
    del authority
    return out


def guard_costs(n: int, folder: Path) -> dict[str, Any]:
    from nacl.signing import SigningKey

    from ringfence.runtime.audit import AuditLog
    from ringfence.stores.memory import MemoryAuditStore

    _, verifier, tokens = setup(folder)
    policy = ringfence.policy_from_text(POLICY)
    out: dict[str, Any] = {}
    for label, options in (("without a verifier", {}), ("with a verifier", {"verifier": verifier})):
        log = AuditLog(MemoryAuditStore(log_id="b"), SigningKey.generate(), checkpoint_every=10**9)
        guard = ringfence.Guard(policy, audit=log, **options)  # type: ignore[arg-type]
        action = Action(kind="tool_call", tool="read_file", args=ARGS)
        token = tokens["root"] if options else None
        assert guard.check(action, token).allowed
        out[f"Guard.check, memory audit, {label}"] = measure(
            lambda g=guard, t=token, a=action: g.check(a, t), n=n
        )
        log.close()
    for label, options in (("without a verifier", {}), ("with a verifier", {"verifier": verifier})):
        with tempfile.TemporaryDirectory() as data:
            guard = ringfence.open_guard(policy, data_dir=data, **options)

            def read_file(path: str) -> None:
                return None

            call = guard.wrap(read_file)
            with guard.context(credential=tokens["root"]):
                call("/workspace/report.csv")
                out[f"protected call, SQLite audit, {label}"] = measure(
                    lambda c=call: c("/workspace/report.csv"), n=n
                )
            guard.close()
    return out


def library_costs(n: int) -> dict[str, Any]:
    """One 0.7 KB token's verification with each candidate that is installed."""
    from nacl.signing import SigningKey

    from ringfence.core.identity.issue import root_credential
    from ringfence.core.identity.token import ALG, jws, parse

    key = SigningKey.generate()
    token = root_credential(
        ring_key=key,
        trust_domain="corp.example",
        agent="spiffe://corp.example/agent/planner",
        agent_public=bytes(SigningKey.generate().verify_key),
        jti="bench-0000000001",
        now_s=int(time.time()),
        ttl_s=900,
        tools=("read_*", "search"),
        resources=("path:/workspace/**", "host:api.example.com"),
        budgets={"max_cost": 5.0},
        user="alice@example.com",
        delegable=2,
    )
    out: dict[str, Any] = {"token bytes": len(token)}
    link = parse(token)
    vk = key.verify_key
    out["PyNaCl Ed25519 verify alone"] = measure(
        lambda: vk.verify(link.signed, link.signature), n=n
    )
    out["ours: strict parse + PyNaCl verify"] = measure(lambda: parse(token).signed_by(vk), n=n)
    out["PyJWT PyJWS.decode_complete, PyNaCl EdDSA"] = measure(
        lambda: jws().decode_complete(token, vk, algorithms=[ALG]), n=n
    )
    try:
        import jwt
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        ckey = Ed25519PublicKey.from_public_bytes(bytes(vk))
        out["cryptography Ed25519 verify alone"] = measure(
            lambda: ckey.verify(link.signature, link.signed), n=n
        )
        options = {"verify_exp": False, "verify_nbf": False, "verify_iat": False}
        out["PyJWT jwt.decode, cryptography EdDSA"] = measure(
            lambda: jwt.decode(
                token, ckey, algorithms=["EdDSA"], audience="ringfence", options=options
            ),
            n=n,
        )
    except ImportError:
        out["PyJWT jwt.decode, cryptography EdDSA"] = "cryptography not installed"
    try:
        import warnings

        from joserfc import jwt as jjwt
        from joserfc.jwk import OKPKey

        okp = OKPKey.import_key(jwk_of(bytes(vk)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out["joserfc jwt.decode"] = measure(
                lambda: jjwt.decode(token, okp, algorithms=["EdDSA"]), n=n
            )
    except ImportError:
        out["joserfc jwt.decode"] = "not installed"
    out.update(biscuit_costs(n))
    return out


def jwk_of(public: bytes) -> dict[str, str]:
    from ringfence.core.identity.token import jwk

    return jwk(public, kid=False)


def biscuit_costs(n: int) -> dict[str, Any]:
    try:
        import datetime

        import biscuit_auth as b  # type: ignore[import-not-found]
    except ImportError:
        return {"biscuit-python": "not installed"}
    now = datetime.datetime.now(tz=datetime.UTC)
    kp = b.KeyPair()
    token = b.BiscuitBuilder(
        'agent("spiffe://corp.example/agent/planner"); user("alice@example.com");'
        'tool("read_*"); resource("path:/workspace/**"); check if time($t), $t < {exp};',
        {"exp": now + datetime.timedelta(minutes=15)},
    ).build(kp.private_key)
    text = token.to_base64()
    attenuated = token.append(b.BlockBuilder('check if tool($t), ["read_file"].contains($t);'))
    text2 = attenuated.to_base64()

    def authorize(s: str) -> Any:
        t = b.Biscuit.from_base64(s, kp.public_key)
        policy = 'time({now}); tool("read_file"); allow if agent($a);'
        return b.AuthorizerBuilder(policy, {"now": now}).build(t).authorize()

    return {
        "biscuit-python parse + authorize": measure(lambda: authorize(text), n=max(n // 5, 500)),
        "biscuit-python, 1 attenuation block": measure(
            lambda: authorize(text2), n=max(n // 5, 500)
        ),
    }


def render(results: dict[str, Any]) -> str:
    lines = [f"Identity benchmarks — {results['machine']} — {results['date']}", ""]
    for section in ("credential", "guard", "libraries"):
        lines.append(f"[{section}]")
        for name, value in results[section].items():
            if isinstance(value, dict) and "p50_us" in value:
                lines.append(
                    f"  {name:<52} p50 {value['p50_us']:>9.3f} µs  p99 {value['p99_us']:>9.3f} µs"
                )
            else:
                lines.append(f"  {name:<52} {value}")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Fewer samples.")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "identity.json")
    opts = parser.parse_args()
    n = 3_000 if opts.quick else 20_000
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
    }
    with tempfile.TemporaryDirectory() as folder:
        results["credential"] = credential_costs(n, Path(folder) / "a")
        results["guard"] = guard_costs(n, Path(folder) / "b")
    results["libraries"] = library_costs(max(n // 4, 1000))
    text = render(results)
    print(text)
    opts.json.parent.mkdir(parents=True, exist_ok=True)
    opts.json.write_text(json.dumps(results, indent=2) + "\n")
    opts.json.with_suffix(".txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
