"""Verifying a stored log: every kind of tampering is found and pinned to the right record."""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey

from ringfence.core.audit.checkpoint import key_id
from ringfence.core.audit.merkle import EMPTY_ROOT, leaf_hash, root_of
from ringfence.core.audit.verify import verify_log
from ringfence.runtime.audit import AuditLog
from ringfence.stores.memory import MemoryAuditStore

from .logs import KEY, KEYS, LOG_ID, OTHER_KEY, Log, chain, checkpoint, edit, replace_cp

N = 10
SEALS = (4, N)


def sealed() -> Log:
    return Log.build(N, SEALS)


class TestIntact:
    def test_sealed_log(self) -> None:
        log = sealed()
        report = log.verify()
        assert report.ok
        assert (report.records, report.checkpoints, report.unsealed) == (N, 2, 0)
        assert (report.first_bad, report.bad_range, report.problems) == (None, None, [])
        assert report.root == root_of([leaf_hash(d) for d in log.datas]).hex()

    def test_unsealed_tail_is_reported(self) -> None:
        report = Log.build(N, (4,)).verify()
        assert report.ok
        assert report.unsealed == 6

    def test_empty_log(self) -> None:
        report = Log([]).verify()
        assert report.ok
        assert (report.records, report.root) == (0, EMPTY_ROOT.hex())
        empty_cp = Log([], [checkpoint([], 0)])
        assert empty_cp.verify().ok

    def test_checkpoint_order_does_not_matter(self) -> None:
        log = sealed()
        log.cps.reverse()
        assert log.verify().ok

    def test_several_checkpoints_at_one_size(self) -> None:
        log = sealed()
        log.cps.append(checkpoint(log.datas, 4, time_ns=10_005))
        report = log.verify()
        assert report.ok, report.problems

    def test_log_id_is_only_checked_when_given(self) -> None:
        log = sealed()
        report = verify_log(log.rows(), log.cps, KEYS)
        assert report.ok


class TestEditedRecords:
    @pytest.mark.parametrize("i", range(N))
    def test_edited_field(self, i: int) -> None:
        log = sealed()
        log.datas[i] = edit(log.datas[i], note="changed")
        report = log.verify()
        assert not report.ok
        assert report.first_bad == i
        assert report.bad_range is None
        assert len(report.problems) == 1

    def test_edited_last_sealed_record_names_the_head(self) -> None:
        log = sealed()
        log.datas[N - 1] = edit(log.datas[N - 1], note="changed")
        report = log.verify()
        assert report.problems == [
            f"record {N - 1} does not match the head hash signed at size {N}: changed"
        ]

    def test_edited_record_in_the_middle_names_the_broken_link(self) -> None:
        log = sealed()
        log.datas[5] = edit(log.datas[5], args={"n": 999})
        report = log.verify()
        assert report.problems == [
            "record 6 does not link to record 5: record 5 was changed, or records were reordered"
        ]

    @pytest.mark.parametrize("i", range(1, N))
    def test_edited_prev_blames_the_record_before(self, i: int) -> None:
        # Editing a record's link is indistinguishable from editing the record it links to.
        log = sealed()
        log.datas[i] = edit(log.datas[i], prev="00" * 32)
        report = log.verify()
        assert report.first_bad == i - 1

    def test_edited_prev_of_the_first_record(self) -> None:
        log = sealed()
        log.datas[0] = edit(log.datas[0], prev="00" * 32)
        assert log.verify().first_bad == 0

    @pytest.mark.parametrize("i", range(N))
    def test_edited_seq(self, i: int) -> None:
        log = sealed()
        log.datas[i] = edit(log.datas[i], seq=i + 100)
        report = log.verify()
        assert report.first_bad == i
        assert report.problems == [
            f"record at position {i} says it is record {i + 100}: inserted, deleted or reordered"
        ]

    @pytest.mark.parametrize(
        "data",
        [b"not json", b"[1,2]", b'{"seq":0}', b'{"seq":"0","prev":""}', b'{"seq":0,"prev":"\xff"}'],
    )
    def test_unreadable_record(self, data: bytes) -> None:
        log = sealed()
        log.datas[3] = data
        report = log.verify()
        assert report.first_bad == 3
        assert report.problems[0].startswith("record 3: not a valid record (")

    @pytest.mark.parametrize("i", [0, 3, 7, N - 1])
    def test_byte_level_edits(self, i: int) -> None:
        log = sealed()
        original = log.datas[i]
        for variant in (
            original.replace(b":", b": ", 1),  # whitespace only
            original + b" ",
            original.replace(b"record", b"rekord"),
            original.replace(b'"n":', b'"m":'),
        ):
            log.datas[i] = variant
            report = log.verify()
            assert report.first_bad == i, variant


class TestDeletedInsertedReordered:
    @pytest.mark.parametrize("k", range(N - 1))
    def test_deleted_leaving_a_gap(self, k: int) -> None:
        log = sealed()
        rows = [(p, d) for p, d in log.rows() if p != k]
        report = log.verify(rows)
        assert report.first_bad == k
        assert report.problems == [
            f"record {k} is missing (next stored record is {k + 1}): deleted"
        ]

    @pytest.mark.parametrize("k", range(N - 1))
    def test_deleted_and_renumbered(self, k: int) -> None:
        log = sealed()
        del log.datas[k]
        report = log.verify()
        assert report.first_bad == k
        assert report.problems[0].startswith(f"record at position {k} says it is record {k + 1}")

    def test_deleted_last_sealed_record(self) -> None:
        log = sealed()
        del log.datas[-1]
        report = log.verify()
        assert report.first_bad == N - 1
        assert report.problems == [
            f"the log ends at {N - 1} records but a checkpoint signed size {N}: "
            "records were truncated"
        ]

    @pytest.mark.parametrize(
        ("copy", "at", "first_bad"), [(2, 5, 5), (5, 5, 6), (0, 0, 1), (3, N, N)]
    )
    def test_inserted_copy(self, copy: int, at: int, first_bad: int) -> None:
        log = sealed()
        log.datas.insert(at, log.datas[copy])
        report = log.verify()
        assert report.first_bad == first_bad

    def test_inserted_row_with_a_duplicate_position(self) -> None:
        log = sealed()
        rows = log.rows()
        rows.insert(6, (5, log.datas[5]))
        report = log.verify(rows)
        assert report.first_bad == 6
        assert report.problems == ["record 6 is missing (next stored record is 5): deleted"]

    @pytest.mark.parametrize(("i", "j"), [(0, 1), (2, 7), (3, 4), (8, 9), (0, N - 1)])
    def test_swapped(self, i: int, j: int) -> None:
        log = sealed()
        log.datas[i], log.datas[j] = log.datas[j], log.datas[i]
        report = log.verify()
        assert report.first_bad == i

    def test_swapped_rows_keeping_positions(self) -> None:
        log = sealed()
        rows = log.rows()
        rows[2], rows[3] = rows[3], rows[2]
        assert log.verify(rows).first_bad == 2

    def test_missing_first_record(self) -> None:
        log = sealed()
        report = log.verify(log.rows()[1:])
        assert report.first_bad == 0


class TestTruncated:
    @pytest.mark.parametrize("m", range(N))
    def test_below_a_checkpoint(self, m: int) -> None:
        log = sealed()
        del log.datas[m:]
        report = log.verify()
        assert not report.ok
        assert report.first_bad == m
        next_size = 4 if m < 4 else N
        assert report.problems == [
            f"the log ends at {m} records but a checkpoint signed size {next_size}: "
            "records were truncated"
        ]

    def test_unsealed_records_can_be_cut_without_notice(self) -> None:
        # The limit of any signed log: records after the last checkpoint are not yet covered.
        log = Log.build(N, (4,))
        del log.datas[6:]
        report = log.verify()
        assert report.ok
        assert (report.records, report.unsealed) == (6, 2)


class TestCheckpoints:
    def test_signed_by_an_unknown_key(self) -> None:
        log = sealed()
        forged = checkpoint(log.datas, 7, key=OTHER_KEY)
        log.cps.append(forged)
        report = log.verify()
        assert not report.ok
        assert report.first_bad is None
        assert report.problems == [
            f"checkpoint at size 7: signed by unknown key {forged.key_id} (forged or tampered)"
        ]

    def test_other_key_claiming_the_trusted_key_id(self) -> None:
        log = sealed()
        forged = replace_cp(
            checkpoint(log.datas, 7, key=OTHER_KEY), key_id=key_id(bytes(KEY.verify_key))
        )
        log.cps.append(forged)
        report = log.verify()
        assert report.problems == [
            "checkpoint at size 7: signature does not verify (forged or tampered)"
        ]

    @pytest.mark.parametrize(
        "change",
        [
            {"root": "00" * 32},
            {"size": 9},
            {"size": 11},
            {"head": "00" * 32},
            {"time_ns": 1},
            {"log_id": "log-2"},
            {"signature": "!!!"},
        ],
    )
    def test_tampered_field(self, change: dict[str, object]) -> None:
        log = sealed()
        log.cps[1] = replace_cp(log.cps[1], **change)
        report = log.verify()
        assert not report.ok
        assert report.problems[0].startswith(f"checkpoint at size {log.cps[1].size}: ")
        assert report.problems[0].endswith(" (forged or tampered)")

    def test_checkpoint_of_another_log(self) -> None:
        log = sealed()
        log.cps[0] = checkpoint(log.datas, 4, log_id="log-2")
        report = log.verify()
        assert report.problems[0] == (
            f"checkpoint at size 4: belongs to log log-2, not {LOG_ID} (forged or tampered)"
        )

    def test_checkpoint_older_than_the_one_before_is_a_note_not_a_failure(self) -> None:
        # A clock stepped back (NTP, a restart elsewhere) is not tampering: the signature holds.
        log = sealed()
        log.cps[1] = checkpoint(log.datas, N, time_ns=1)
        report = log.verify()
        assert report.ok
        assert report.notes == [f"checkpoint at size {N} is dated before the one before it"]

    def test_wrong_root_signed_by_the_real_key(self) -> None:
        log = sealed()
        log.cps[1] = checkpoint(log.datas, N, root=b"\x00" * 32)
        report = log.verify()
        assert (report.first_bad, report.bad_range) == (4, (4, N))

    def test_attacker_reseals_a_rewritten_log_with_their_own_key(self) -> None:
        log = sealed()
        log.datas[2] = edit(log.datas[2], note="forged")
        log.datas = chain(log.datas)
        log.cps = [checkpoint(log.datas, s, key=OTHER_KEY) for s in SEALS]
        report = log.verify()
        assert not report.ok
        assert len(report.problems) == 2
        assert all("signed by unknown key" in p for p in report.problems)


class TestRewrittenChain:
    """An attacker without the key edits a record and relinks everything after it."""

    @pytest.mark.parametrize(
        ("i", "bad_range"), [(5, (4, N)), (4, (4, N)), (8, (4, N)), (1, (0, 4))]
    )
    def test_caught_by_the_next_checkpoint(self, i: int, bad_range: tuple[int, int]) -> None:
        log = sealed()
        log.datas[i] = edit(log.datas[i], note="rewritten")
        log.datas = chain(log.datas)
        report = log.verify()
        assert not report.ok
        assert report.bad_range == bad_range
        assert report.first_bad == bad_range[0]
        assert report.problems == [
            f"records {bad_range[0]}..{bad_range[1] - 1} do not match the root signed at "
            f"size {bad_range[1]}: rewritten"
        ]

    def test_only_the_last_record_changed_is_pinned_exactly(self) -> None:
        log = sealed()
        log.datas[N - 1] = edit(log.datas[N - 1], note="rewritten")
        log.datas = chain(log.datas)
        report = log.verify()
        assert (report.first_bad, report.bad_range) == (N - 1, None)

    def test_deleted_record_and_relinked(self) -> None:
        log = sealed()
        del log.datas[6]
        log.datas = chain(log.datas)
        report = log.verify()
        assert not report.ok
        assert report.first_bad == N - 1  # the log is now one short of the last checkpoint

    def test_inserted_record_and_relinked(self) -> None:
        log = sealed()
        log.datas.insert(6, edit(log.datas[6], note="inserted"))
        log.datas = chain(log.datas)
        report = log.verify()
        assert (report.first_bad, report.bad_range) == (4, (4, N))


class TestWithTheRuntimeWriter:
    def build(self) -> tuple[MemoryAuditStore, SigningKey]:
        store = MemoryAuditStore("runtime-log")
        key = SigningKey(b"\x09" * 32)
        log = AuditLog(store, key, clock=lambda: 5_000, checkpoint_every=4)
        for i in range(10):
            log.append({"type": "note", "ts": i, "n": i, "text": f"entry {i}"})
        log.close()
        return store, key

    def test_written_log_verifies(self) -> None:
        store, key = self.build()
        keys = {key_id(bytes(key.verify_key)): key.verify_key}
        report = verify_log(store.records(), store.checkpoints(), keys, log_id="runtime-log")
        assert report.ok, report.problems
        assert (report.records, report.checkpoints, report.unsealed) == (10, 3, 0)

    @pytest.mark.parametrize("i", range(10))
    def test_edited_stored_record(self, i: int) -> None:
        store, key = self.build()
        seq, data = store.rows[i]
        store.rows[i] = (seq, data.replace(f"entry {i}".encode(), b"entry X"))
        keys = {key_id(bytes(key.verify_key)): key.verify_key}
        report = verify_log(store.records(), store.checkpoints(), keys, log_id="runtime-log")
        assert report.first_bad == i

    def test_wrong_verification_key(self) -> None:
        store, _ = self.build()
        report = verify_log(store.records(), store.checkpoints(), KEYS, log_id="runtime-log")
        assert not report.ok
        assert len(report.problems) == 3
