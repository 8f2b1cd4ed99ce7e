"""The relay inside a bwrap sandbox whose profile allows named hosts.

Not imported by the sandbox: :mod:`.local` runs this file's source with the profile's
interpreter as the sandbox's command, ahead of the real one::

    python3 -I -S -c <this source> <socket> <port> -- <command...>

It binds ``127.0.0.1:<port>`` in the sandbox's network namespace (which has nothing but
loopback), forks, and

- in the parent, ``exec``s the command, which so stays the namespace's PID 1 (exit status,
  signals and limits as without a network allowlist); its environment names the relay as its
  HTTP proxy;
- in the child (stdin, stdout and stderr on ``/dev/null``, every other descriptor closed)
  relays each accepted TCP connection to the egress proxy's UNIX socket, bound into the
  sandbox at ``<socket>``, byte for byte and both ways (half-closes passed on).

It decides nothing and is no boundary: the sandboxed program may kill it or talk to the
socket itself; the proxy outside checks every request.  When PID 1 exits the kernel ends the
namespace, the relay with it.  Standard library only, one process, no threads (threads would
count against ``RLIMIT_NPROC``), and Python 3.8+ (the sandbox's interpreter is not ours).
It uses ``_socket``, the C module under :mod:`socket`: importing ``socket`` (and with it
``enum``) would add about 5 ms to the start of every run.
"""

from __future__ import annotations

import os
import select
import sys
from _socket import (
    AF_INET,
    AF_UNIX,
    SHUT_WR,
    SO_REUSEADDR,
    SOCK_STREAM,
    SOL_SOCKET,
    socket,
)

_CHUNK = 65536
_HIGH = 1 << 18  # stop reading a side while this much waits to be written to the other
_SETUP_FAILED = 125  # the status when the relay cannot listen (like env(1) and timeout(1))


class _Side:
    """One socket of a relayed pair: what waits to be written to it, and whether it has
    finished sending (``ended``) or we have finished writing to it (``shut``)."""

    def __init__(self, sock: socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.pending = bytearray()
        self.peer: _Side = self
        self.ended = False
        self.shut = False

    def events(self) -> int:
        mask = 0
        if not self.ended and len(self.peer.pending) < _HIGH:
            mask |= select.POLLIN
        if self.pending:
            mask |= select.POLLOUT
        return mask


def _relay_forever(listener: socket, path: str) -> None:
    poller = select.poll()
    sides: dict[int, _Side] = {}
    # A socket that needs nothing is not polled at all: poll reports POLLHUP even for an
    # empty mask, and a half-closed pair waiting on its other side would spin.
    watched: dict[int, int] = {}
    listener.setblocking(False)
    poller.register(listener.fileno(), select.POLLIN)

    def watch(fd: int, mask: int) -> None:
        if mask == watched.get(fd, 0):
            return
        if mask == 0:
            poller.unregister(fd)
            del watched[fd]
        else:
            (poller.modify if fd in watched else poller.register)(fd, mask)
            watched[fd] = mask

    def drop(side: _Side) -> None:
        for one in (side, side.peer):
            if sides.pop(one.fd, None) is not None:
                watch(one.fd, 0)
                one.sock.close()

    while True:
        for fd, each in sides.items():
            watch(fd, each.events())
        for fd, event in poller.poll():
            if fd == listener.fileno():
                _accept(listener, path, sides)
                continue
            side = sides.get(fd)
            if side is None:
                continue
            try:
                if event & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    _read(side)
                if event & select.POLLOUT and side.pending:
                    _write(side)
            except OSError:
                drop(side)
                continue
            if side.ended and side.peer.ended and not side.pending and not side.peer.pending:
                drop(side)


def _accept(listener: socket, path: str, sides: dict[int, _Side]) -> None:
    try:
        fd, _ = listener._accept()  # type: ignore[attr-defined]  # (_socket: no stub)
    except OSError:
        return
    client = socket(fileno=fd)
    proxy = socket(AF_UNIX, SOCK_STREAM)
    try:
        proxy.connect(path)
    except OSError:
        client.close()
        proxy.close()
        return
    a, b = _Side(client), _Side(proxy)
    a.peer, b.peer = b, a
    for side in (a, b):
        side.sock.setblocking(False)
        sides[side.fd] = side


def _read(side: _Side) -> None:
    if side.ended:
        return
    try:
        data = side.sock.recv(_CHUNK)
    except BlockingIOError:
        return
    if data:
        side.peer.pending += data
        return
    side.ended = True
    if not side.peer.pending:
        _shut(side.peer)


def _write(side: _Side) -> None:
    try:
        sent = side.sock.send(side.pending)
    except BlockingIOError:
        return
    del side.pending[:sent]
    if not side.pending and side.peer.ended:
        _shut(side)


def _shut(side: _Side) -> None:
    if not side.shut:
        side.shut = True
        side.sock.shutdown(SHUT_WR)


def main(argv: list[str]) -> None:
    """``<socket> <port> -- <command...>``: listen, fork the relay, exec the command."""
    path, port, _, *command = argv
    listener = socket(AF_INET, SOCK_STREAM)
    try:
        listener.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", int(port)))
        listener.listen(64)
        pid = os.fork()
    except OSError as exc:
        sys.stderr.write(f"ringfence sandbox: the network relay cannot start: {exc}\n")
        sys.stderr.flush()
        os._exit(_SETUP_FAILED)
    if pid == 0:
        try:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            keep = listener.fileno()
            os.closerange(3, keep)
            os.closerange(keep + 1, 1 << 16)
            _relay_forever(listener, path)
        finally:
            os._exit(0)
    listener.close()
    try:
        os.execvp(command[0], command)  # noqa: S606  (the sandboxed command, as given)
    except OSError as exc:
        sys.stderr.write(f"ringfence sandbox: cannot run {command[0]!r}: {exc.strerror}\n")
        sys.stderr.flush()
        os._exit(126 if isinstance(exc, PermissionError) else 127)


if __name__ == "__main__":
    main(sys.argv[1:])
