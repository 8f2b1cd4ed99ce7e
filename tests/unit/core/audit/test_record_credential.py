"""Decision records name the verified credential: its id and the ids it was delegated from.

Real credentials (the project's Authority and Verifier) give the claims an action carries;
the record keeps ``credential: {"chain": [...], "id": ...}`` (null without a credential), still
in canonical form without sorting.  Records written before the field existed lack the key:
a log mixing both verifies and reads.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey

from ringfence.core.action import Action, Resource
from ringfence.core.audit.encoding import canonical, encode_record
from ringfence.core.audit.record import (
    CredentialRef,
    credential_ref,
    decision_record,
)
from ringfence.core.decision import Decision, Effect
from ringfence.runtime.audit import AuditLog
from ringfence.runtime.authority import Authority
from ringfence.runtime.identity import Verifier
from ringfence.stores.identity import MemoryIdentityRegistry
from ringfence.stores.memory import MemoryAuditStore

TD = "corp.example"
NOW_NS = 1_700_000_000 * 10**9
DECISION = Decision(
    effect=Effect.ALLOW, rules=("r",), reasons=("ok",), policy_version="v", decision_id="d-1"
)
ACTION = Action(kind="tool_call", tool="read_file", args={"path": "/w/a"}, agent="claimed")


def stored(record: object) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(canonical(msgspec.to_builtins(record)))
    return out


def chain_of_three() -> tuple[Verifier, list[str]]:
    """A verifier and a root → planner → researcher → fetcher chain, one prefix per step."""
    registry = MemoryIdentityRegistry()
    authority = Authority(registry, trust_domain=TD, clock=lambda: NOW_NS)
    for name in ("planner", "researcher", "fetcher"):
        authority.create_agent(name)
    root = authority.issue("planner", tools=("read_*",), delegable=2, user="alice")
    one = authority.delegate(root, "researcher", tools=("read_file",))
    two = authority.delegate(one, "fetcher", tools=("read_file",))
    return Verifier(registry), [root, one, two]


def jti(token: str) -> str:
    from ringfence.core.identity.token import parse

    return parse(token.rsplit("~", 1)[-1]).claims.jti


def test_a_verified_credential_puts_its_id_and_chain_on_record() -> None:
    verifier, chains = chain_of_three()
    ids = [jti(c) for c in chains]
    for depth, chain in enumerate(chains):
        verified = verifier.verify(chain, NOW_NS)
        action = verified.identify(ACTION)
        record = stored(
            decision_record(action, DECISION, (), time_ns=1, policy_name="p", enforced=True)
        )
        assert record["credential"] == {"id": ids[depth], "chain": ids[:depth]}
        # chain[i] is the credential delegation[i] held.
        assert len(record["delegation"]) == len(record["credential"]["chain"]) == depth
        assert record["agent"] == verified.agent != "claimed"


def test_without_a_credential_the_field_is_null_and_costs_no_struct() -> None:
    record = decision_record(ACTION, DECISION, (), time_ns=1, policy_name="p", enforced=True)
    assert record.credential is None
    assert stored(record)["credential"] is None


def test_credential_ref_takes_only_well_formed_claims() -> None:
    assert credential_ref({"jti": "j-1", "parents": ["a", "b"]}) == CredentialRef(("a", "b"), "j-1")
    assert credential_ref({"jti": "j-1"}) == CredentialRef((), "j-1")
    assert credential_ref({"jti": "j-1", "parents": "ab"}) == CredentialRef((), "j-1")
    assert credential_ref({"jti": "j-1", "parents": ["a", 7, None]}) == CredentialRef(("a",), "j-1")
    for junk in (None, "j-1", ["j-1"], {}, {"jti": 5}, {"parents": ["a"]}):
        assert credential_ref(junk) is None


ids = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)


@given(leaf=ids, parents=st.lists(ids, max_size=4), args=st.dictionaries(ids, ids, max_size=3))
def test_records_with_a_credential_encode_canonically_without_sorting(
    leaf: str, parents: list[str], args: dict[str, str]
) -> None:
    action = msgspec.structs.replace(
        ACTION, args=args, credential={"jti": leaf, "parents": parents}
    )
    record = decision_record(
        action, DECISION, (Resource("path", "/w"),), time_ns=2, policy_name="p", enforced=True
    )
    data = encode_record(record)
    assert data == canonical(msgspec.to_builtins(record))
    assert msgspec.json.decode(data)["credential"] == {"chain": parents, "id": leaf}


def test_a_log_with_records_from_before_the_field_still_verifies_and_reads() -> None:
    log = AuditLog(MemoryAuditStore(log_id="t"), SigningKey.generate(), checkpoint_every=2)
    old = msgspec.to_builtins(
        decision_record(ACTION, DECISION, (), time_ns=1, policy_name="p", enforced=True)
    )
    del old["credential"]  # as a record written before the field existed
    log.append(old)
    verifier, chains = chain_of_three()
    action = verifier.verify(chains[1], NOW_NS).identify(ACTION)
    log.append(decision_record(action, DECISION, (), time_ns=2, policy_name="p", enforced=True))
    log.append(decision_record(ACTION, DECISION, (), time_ns=3, policy_name="p", enforced=True))
    assert log.verify().ok
    records = [json.loads(data) for _, data in log.store.records()]
    assert [r.get("credential") for r in records] == [
        None,
        {"id": jti(chains[1]), "chain": [jti(chains[0])]},
        None,
    ]
    assert "credential" not in records[0] and "credential" in records[2]
    log.close()
