"""``ringfence audit``: verify, prove, verify-proof, tail, show, export."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import click

from ringfence.errors import InputError, VerificationError

DATA_HELP = "Ringfence data folder (holds audit/ and keys/)."


def _store(data: str) -> Any:
    from ringfence.stores.sqlite import SQLiteAuditStore

    return SQLiteAuditStore(Path(data) / "audit", readonly=True)


def _keys(data: str, public_key: str | None) -> Any:
    from ringfence.stores.keys import PUB_FILE, load_public_key

    return load_public_key(public_key or Path(data) / "keys" / PUB_FILE)


@click.group()
def audit() -> None:
    """Inspect and verify the tamper-evident audit log."""


@audit.command()
@click.option("--data", default=".ringfence", show_default=True, help=DATA_HELP)
@click.option(
    "--public-key",
    type=click.Path(),
    help="Trusted public key file (default: the one in --data/keys; keep a copy elsewhere).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(data: str, public_key: str | None, as_json: bool) -> None:
    """Recompute the Merkle tree, check every link and checkpoint signature."""
    from ringfence.core.audit.verify import verify_log

    keys = _keys(data, public_key)
    store = _store(data)
    try:
        report = verify_log(store.records(), store.checkpoints(), keys, log_id=store.log_id)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(report.__dict__, indent=2))
    elif report.ok:
        click.echo(
            f"OK: {report.records} records, {report.checkpoints} signed checkpoints, "
            f"root {report.root[:16]}…"
            + (f" ({report.unsealed} records after the last checkpoint)" if report.unsealed else "")
        )
    else:
        for problem in report.problems:
            click.echo(f"FAIL: {problem}")
        if report.first_bad is not None:
            click.echo(f"first bad record: {report.first_bad}")
    sys.exit(0 if report.ok else 1)


def _leaves(store: Any, size: int) -> tuple[list[bytes], dict[int, bytes]]:
    from ringfence.core.audit.merkle import leaf_hash

    leaves, raw = [], {}
    for seq, data in store.records():
        if seq >= size:
            break
        leaves.append(leaf_hash(data))
        raw[seq] = data
    if len(leaves) != size:
        raise VerificationError(f"log has only {len(leaves)} records, not {size}")
    return leaves, raw


def _checkpoint_at(store: Any, size: int | None, at_least: int = 0) -> Any:
    cps = [c for c in store.checkpoints() if c.size >= max(at_least, 1)]
    if size is not None:
        cps = [c for c in cps if c.size == size]
    if not cps:
        raise InputError(
            f"no signed checkpoint at size {size}"
            if size is not None
            else f"no signed checkpoint covers record {at_least - 1} yet",
            code="input.checkpoint",
        )
    return max(cps, key=lambda c: (c.size, c.time_ns)) if size is None else cps[-1]


@audit.group()
def prove() -> None:
    """Produce inclusion and consistency proofs that verify offline."""


@prove.command("inclusion")
@click.argument("seq", type=int)
@click.option(
    "--size", type=int, help="Prove against the checkpoint of this size (default: latest)."
)
@click.option("--data", default=".ringfence", show_default=True, help=DATA_HELP)
def prove_inclusion(seq: int, size: int | None, data: str) -> None:
    """Prove that record SEQ is in the log, against a signed checkpoint."""
    from ringfence.core.audit.merkle import inclusion_proof

    store = _store(data)
    try:
        cp = _checkpoint_at(store, size, seq + 1)
        if seq >= cp.size:
            raise InputError(f"record {seq} is not covered by the checkpoint of size {cp.size}")
        leaves, raw = _leaves(store, cp.size)
    finally:
        store.close()
    bundle = {
        "type": "inclusion",
        "checkpoint": json.loads(cp.to_json()),
        "seq": seq,
        "record": base64.b64encode(raw[seq]).decode(),
        "proof": [h.hex() for h in inclusion_proof(seq, leaves)],
    }
    click.echo(json.dumps(bundle, indent=2))


@prove.command("consistency")
@click.argument("old_size", type=int)
@click.argument("new_size", type=int, required=False)
@click.option("--data", default=".ringfence", show_default=True, help=DATA_HELP)
def prove_consistency(old_size: int, new_size: int | None, data: str) -> None:
    """Prove that the log at checkpoint OLD_SIZE is a prefix of the log at NEW_SIZE."""
    from ringfence.core.audit.merkle import consistency_proof

    store = _store(data)
    try:
        old = _checkpoint_at(store, old_size)
        new = _checkpoint_at(store, new_size, old_size)
        leaves, _ = _leaves(store, new.size)
    finally:
        store.close()
    bundle = {
        "type": "consistency",
        "old": json.loads(old.to_json()),
        "new": json.loads(new.to_json()),
        "proof": [h.hex() for h in consistency_proof(old.size, leaves)],
    }
    click.echo(json.dumps(bundle, indent=2))


@audit.command("verify-proof")
@click.argument("proof_file", type=click.File("rb"))
@click.option("--public-key", required=True, type=click.Path(), help="Trusted public key file.")
def verify_proof(proof_file: Any, public_key: str) -> None:
    """Check a proof from 'audit prove' offline, with only the public key."""
    from ringfence.core.audit.checkpoint import Checkpoint, verify_checkpoint
    from ringfence.core.audit.merkle import leaf_hash, verify_consistency, verify_inclusion
    from ringfence.stores.keys import load_public_key

    keys = load_public_key(public_key)
    try:
        bundle = json.loads(proof_file.read())
        proof = [bytes.fromhex(h) for h in bundle["proof"]]
        if bundle["type"] == "inclusion":
            cp = Checkpoint.from_json(json.dumps(bundle["checkpoint"]).encode())
            problem = verify_checkpoint(cp, keys)
            record = base64.b64decode(bundle["record"], validate=True)
            seq = int(bundle["seq"])
            ok = problem is None and verify_inclusion(
                seq, cp.size, leaf_hash(record), proof, bytes.fromhex(cp.root)
            )
            what = f"record {seq} is in log {cp.log_id} at size {cp.size}"
            problem = problem or "the record is not in the signed tree"
        elif bundle["type"] == "consistency":
            old = Checkpoint.from_json(json.dumps(bundle["old"]).encode())
            new = Checkpoint.from_json(json.dumps(bundle["new"]).encode())
            problem = verify_checkpoint(old, keys) or verify_checkpoint(new, keys)
            if problem is None and old.log_id != new.log_id:
                problem = "the checkpoints belong to different logs"
            ok = problem is None and verify_consistency(
                old.size, new.size, bytes.fromhex(old.root), bytes.fromhex(new.root), proof
            )
            what = f"log {new.log_id} at size {old.size} is a prefix of size {new.size}"
            problem = problem or "the old tree is not a prefix of the new one"
        else:
            raise InputError(f"unknown proof type {bundle['type']!r}", code="input.proof")
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"malformed proof: {exc}", code="input.proof") from None
    click.echo(f"OK: {what}" if ok else f"FAIL: {problem}")
    sys.exit(0 if ok else 1)


def _rows(data: str) -> list[dict[str, Any]]:
    from ringfence.core.audit.encoding import decode

    store = _store(data)
    try:
        return [decode(d) for _, d in store.records()]
    finally:
        store.close()


def _key_arg(record: dict[str, Any]) -> str:
    args = record.get("args") or {}
    if not isinstance(args, dict) or not args:
        return ""
    key, value = next(iter(args.items()))
    text = value if isinstance(value, str) else json.dumps(value)
    return f"{key}={text[:40]}"


def _answer_row(r: dict[str, Any]) -> list[str]:
    """A table row for an ``approval_answer`` record: which request, how, by whom, why."""
    detail = f"by {r.get('by') or '?'}"
    if r.get("receipt_id"):
        detail += f", receipt {r['receipt_id']}"
    if r.get("note"):
        detail += f": {r['note']}"
    if r.get("problem"):
        detail += f" [{r['problem']}]"
    return [
        str(r["seq"]),
        "answer",
        r.get("agent") or "",
        r.get("tool") or "",
        r["request"],
        r.get("status") or "",
        detail,
    ]


@audit.command()
@click.option("-n", "count", default=20, show_default=True, help="How many records.")
@click.option("--data", default=".ringfence", show_default=True, help=DATA_HELP)
def tail(count: int, data: str) -> None:
    """Show the last records as a table."""
    from rich.console import Console
    from rich.table import Table

    rows = _rows(data)[-count:]
    table = Table("seq", "type", "agent", "tool", "argument", "effect / status", "rules / detail")
    for r in rows:
        if r["type"] == "decision":
            table.add_row(
                str(r["seq"]),
                "decision",
                r["agent"],
                r["tool"],
                _key_arg(r),
                r["effect"],
                ", ".join(r["rules"]),
            )
        elif r["type"] == "outcome":
            table.add_row(
                str(r["seq"]),
                "outcome",
                r["agent"],
                r["tool"],
                "",
                r["status"],
                f"{r['duration_ns'] / 1e6:.2f} ms",
            )
        elif r["type"] == "approval_answer":  # an approval request answered (core/audit/answer.py)
            table.add_row(*_answer_row(r))
        elif r["type"] == "receipt":  # a receipt redeemed or refused (core/approvals.py)
            receipt = r.get("receipt") or {}
            detail = f"receipt {receipt.get('id', '?')} by {receipt.get('approver', '?')}"
            problem = f" ({r['problem']})" if r.get("problem") else ""
            table.add_row(
                str(r["seq"]),
                "receipt",
                r.get("agent") or "",
                r.get("tool") or "",
                "",
                f"{r.get('event', '')}{problem}",
                detail,
            )
        elif r["type"] == "control":  # a kill switch turned on or off (core/audit/control.py)
            scope = "everything" if r["scope"] == "all" else f"{r['scope']}={r['value']}"
            seen = " (seen)" if r["observed"] else ""
            table.add_row(
                str(r["seq"]), "control", "", "", scope, r["op"] + seen, f"{r['by']}: {r['reason']}"
            )
        else:
            table.add_row(
                str(r["seq"]),
                r["type"],
                r.get("agent", ""),
                r.get("tool", ""),
                "",
                "approved" if r.get("approved") else "not approved",
                r.get("approver", ""),
            )
    Console(markup=False, highlight=False).print(table)  # record text is never markup


@audit.command()
@click.argument("key")
@click.option("--data", default=".ringfence", show_default=True, help=DATA_HELP)
def show(key: str, data: str) -> None:
    """Show record KEY (a seq number), every record of decision id KEY, or every answer to
    approval request KEY, as JSON."""
    rows = _rows(data)
    found = [
        r
        for r in rows
        if str(r["seq"]) == key or r.get("decision_id") == key or r.get("request") == key
    ]
    if not found:
        raise InputError(f"no record {key!r}", code="input.not_found")
    for r in found:
        click.echo(json.dumps(r, indent=2, sort_keys=True))


@audit.command()
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@click.option(
    "-o", "--output", type=click.File("wb"), default="-", help="File to write (default stdout)."
)
@click.option("--data", default=".ringfence", show_default=True, help=DATA_HELP)
def export(fmt: str, output: Any, data: str) -> None:
    """Export every record, one canonical JSON object per line."""
    store = _store(data)
    try:
        for _, record in store.records():
            output.write(record + b"\n")
    finally:
        store.close()
