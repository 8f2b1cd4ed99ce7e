"""Decision ids: unique within a process, across threads and across id sources."""

from __future__ import annotations

import re
import threading

from ringfence.runtime.ids import new_id_source


def test_ids_have_a_random_prefix_and_a_counter() -> None:
    ids = new_id_source()
    first, second = ids(), ids()
    assert re.fullmatch(r"d-[0-9a-f]{12}-1", first)
    assert second == first[:-1] + "2"


def test_custom_prefix() -> None:
    assert new_id_source("approval")().startswith("approval-")


def test_two_sources_never_collide() -> None:
    a, b = new_id_source(), new_id_source()
    assert {a() for _ in range(100)}.isdisjoint({b() for _ in range(100)})


def test_unique_across_threads() -> None:
    ids = new_id_source()
    seen: list[list[str]] = [[] for _ in range(8)]

    def worker(out: list[str]) -> None:
        out.extend(ids() for _ in range(2000))

    threads = [threading.Thread(target=worker, args=(out,)) for out in seen]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for out in seen for i in out]
    assert len(set(everything)) == len(everything) == 16_000
