"""Child process for test_crash.py: calls a protected function as fast as it can until killed.

Usage: python crash_child.py DATA_DIR SIDE_FILE THREADS BASE [FLUSH_BATCH ROTATE_BYTES]

Each thread calls ``work(n)`` with its own numbers (BASE + thread * 10**7 + i).  The function
body appends n to SIDE_FILE, so a number is there only if the call actually ran, which is only
after its decision record was durable.  Every 10th call asks for a denied mode and must not run.
Small FLUSH_BATCH / ROTATE_BYTES make the kill land more often inside a move into SQLite or a
journal rotation.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

import ringfence
from ringfence.stores import sqlite as sqlite_store

POLICY = """
version: 1
name: crash
tools:
  work:
    args:
      type: object
      properties:
        n: {type: integer}
        mode: {type: string}
rules:
  - id: work
    effect: allow
    tool: work
  - id: no-bad-mode
    effect: deny
    tool: work
    when: [{arg: mode, eq: bad}]
"""


def main() -> None:
    data_dir, side, threads, base = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    if len(sys.argv) > 5:
        sqlite_store.FLUSH_BATCH = int(sys.argv[5])
        sqlite_store.ROTATE_BYTES = int(sys.argv[6])
    guard = ringfence.open_guard(ringfence.policy_from_text(POLICY), data_dir=data_dir)
    fd = os.open(side, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    @guard.protect
    def work(n: int, mode: str = "ok") -> None:
        os.write(fd, b"%d %s\n" % (n, mode.encode()))

    def loop(start: int) -> None:
        n = start
        while True:
            if n % 10 == 9:
                with contextlib.suppress(ringfence.DeniedError):
                    work(n, mode="bad")  # denied: must not reach the side file
            else:
                work(n)
            n += 1

    workers = [
        threading.Thread(target=loop, args=(base + t * 10**7,), daemon=True) for t in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


if __name__ == "__main__":
    main()
