"""A child process for test_kill_switch_processes.py: Controls over a shared store.

controls_child.py STORE watch       print "ready", check until a kill denies, print the
                                    ns (time.time_ns) it was seen
controls_child.py STORE hook        print "ready", make no checks; print the ns when an
                                    on_kill hook fires (the watcher thread's doing)
controls_child.py STORE hammer N    wait for "go" on stdin, then N checks against the
                                    policy's rate limit; print how many were allowed
controls_child.py STORE once        one check; print "killed" or "free"
"""

from __future__ import annotations

import sys
import threading
import time

from ringfence.core.action import Action
from ringfence.core.policy.load import policy_from_text
from ringfence.runtime.controls import open_controls

LIMITS = """\
version: 1
rules: [{id: a, effect: allow}]
limits:
  rate:
    - {id: shared, per: tool, tool: send, limit: 300, window: 1h}
"""


def main() -> None:
    store, mode = sys.argv[1], sys.argv[2]
    limits = policy_from_text(LIMITS).spec.limit_set
    controls = open_controls(store_dir=store, limits=limits, watch_seconds=0.05)
    action = Action(kind="tool_call", tool="send", agent="bot", session="s1")
    try:
        if mode == "watch":
            print("ready", flush=True)
            while True:
                hit = controls.check(action, time.time_ns())
                if hit is not None and hit[0] == "ringfence:kill":
                    print(time.time_ns(), flush=True)
                    return
                time.sleep(0.0005)
        elif mode == "hook":
            fired = threading.Event()
            seen: list[int] = []
            controls.on_kill(lambda kill: (seen.append(time.time_ns()), fired.set()))
            print("ready", flush=True)
            if not fired.wait(30):
                raise SystemExit("no kill seen")
            print(seen[0], flush=True)
        elif mode == "hammer":
            n = int(sys.argv[3])
            sys.stdin.readline()
            allowed = sum(controls.check(action, time.time_ns()) is None for _ in range(n))
            print(allowed, flush=True)
        else:
            print("killed" if controls.check(action, time.time_ns()) else "free", flush=True)
    finally:
        controls.close()


if __name__ == "__main__":
    main()
